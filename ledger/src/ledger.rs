//! The SQLite ledger: schema, inserts and queries (see the crate doc).

use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lppsp_core::money::Bounty;
use lppsp_core::NodeId;
use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::balance::Balance;
use crate::receipt::Receipt;

/// `PRAGMA application_id`: "LPLG", marks the file as an lppsp ledger.
pub const APPLICATION_ID: i32 = 0x4C50_4C47;
/// `PRAGMA user_version` of the schema this build writes.
pub const SCHEMA_VERSION: i32 = 1;
/// How long a connection waits for another's lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE receipts (
    payer   BLOB    NOT NULL CHECK (length(payer) = 8),
    seq     INTEGER NOT NULL CHECK (seq >= 1),
    payee   BLOB    NOT NULL CHECK (length(payee) = 8 AND payee <> payer),
    job     BLOB    NOT NULL CHECK (length(job) = 8),
    price   INTEGER NOT NULL CHECK (price >= 0),
    power   INTEGER NOT NULL CHECK (power >= 0),
    tasks   INTEGER NOT NULL CHECK (tasks >= 1),
    micros  INTEGER NOT NULL CHECK (micros >= 0),
    fuel    INTEGER          CHECK (fuel >= 0),
    charge  INTEGER NOT NULL CHECK (charge >= 0),
    issued  INTEGER NOT NULL CHECK (issued >= 0),
    market  INTEGER NOT NULL CHECK (market >= 0),
    sig     BLOB    NOT NULL,
    frame   BLOB    NOT NULL,
    PRIMARY KEY (payer, seq)
) STRICT, WITHOUT ROWID;
CREATE INDEX receipts_by_payee ON receipts (payee, payer, seq, charge);
CREATE TABLE conflicts (
    payer   BLOB    NOT NULL,
    seq     INTEGER NOT NULL,
    frame   BLOB    NOT NULL,
    PRIMARY KEY (payer, seq)
) STRICT, WITHOUT ROWID;
";

/// A ledger that cannot be opened, read or written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    #[error("sqlite: {0}")]
    Sqlite(Arc<rusqlite::Error>),
    #[error("ledger database is corrupt: {0}")]
    Corrupt(String),
    #[error("not an lppsp ledger: {0}")]
    NotALedger(String),
    #[error("ledger schema version {found} is newer than this build's {SCHEMA_VERSION}")]
    SchemaTooNew { found: i32 },
    #[error("PRAGMA {pragma} is {value:?} after setting it")]
    Pragma { pragma: &'static str, value: String },
    #[error("payer {payer} signed two different receipts with seq {seq}; the first is kept")]
    Conflict { payer: NodeId, seq: u64 },
    #[error("stored receipt {row} is invalid: {reason}")]
    BadRow { row: String, reason: String },
    #[error("ledger is open read-only")]
    ReadOnly,
    #[error("ledger writer has stopped")]
    WriterClosed,
    #[error("cannot start the ledger writer: {0}")]
    Spawn(String),
}

impl From<rusqlite::Error> for LedgerError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
                Self::Corrupt(e.to_string())
            }
            _ => Self::Sqlite(Arc::new(e)),
        }
    }
}

/// What appending a receipt did. (Same `(payer, seq)` with different bytes
/// is [`LedgerError::Conflict`].)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Newly stored.
    Inserted,
    /// Already stored, byte for byte; nothing changed.
    Duplicate,
}

/// Which receipts [`Ledger::receipts`] lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Party {
    Any,
    PaidBy(NodeId),
    PaidTo(NodeId),
    /// Paid by or to the node.
    Involving(NodeId),
}

/// A page of receipts, in `(payer, seq)` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReceiptFilter {
    pub party: Party,
    /// Only receipts strictly after this `(payer, seq)`: pass the last one
    /// of a page to get the next page.
    pub after: Option<(NodeId, u64)>,
    pub limit: usize,
}

impl ReceiptFilter {
    /// Page size unless [`ReceiptFilter::limit`] says otherwise.
    pub const DEFAULT_LIMIT: usize = 1000;

    pub fn all() -> Self {
        Self {
            party: Party::Any,
            after: None,
            limit: Self::DEFAULT_LIMIT,
        }
    }
    pub fn paid_by(node: NodeId) -> Self {
        Self {
            party: Party::PaidBy(node),
            ..Self::all()
        }
    }
    pub fn paid_to(node: NodeId) -> Self {
        Self {
            party: Party::PaidTo(node),
            ..Self::all()
        }
    }
    pub fn involving(node: NodeId) -> Self {
        Self {
            party: Party::Involving(node),
            ..Self::all()
        }
    }
    /// Strictly after `(payer, seq)`. For one payer's receipts after seq
    /// `h`: `ReceiptFilter::paid_by(p).after(p, h)`.
    pub fn after(self, payer: NodeId, seq: u64) -> Self {
        Self {
            after: Some((payer, seq)),
            ..self
        }
    }
    pub fn limit(self, limit: usize) -> Self {
        Self { limit, ..self }
    }
}

/// How far a ledger holds one payer's receipts, for anti-entropy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Head {
    pub payer: NodeId,
    /// Highest seq held.
    pub max_seq: u64,
    /// Receipts held; less than `max_seq` means some in between are missing.
    pub count: u64,
}

/// Seqs of one payer that a ledger lacks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeqRange {
    pub payer: NodeId,
    pub seqs: RangeInclusive<u64>,
}

/// The receipt ledger: one SQLite database file.
///
/// `Ledger` is `Send`, not `Sync`: each thread opens its own. Writes from
/// many threads go through one [`crate::LedgerWriter`], which batches them.
#[derive(Debug)]
pub struct Ledger {
    conn: Connection,
    read_only: bool,
}

impl Ledger {
    /// Opens (creating if need be) the ledger at `path` for reading and
    /// writing: WAL journal, `synchronous=FULL`, busy timeout, schema
    /// created or checked, and `PRAGMA quick_check`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, LedgerError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let fresh = check_identity(&conn)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(LedgerError::Pragma {
                pragma: "journal_mode",
                value: mode,
            });
        }
        // FULL: WAL mode with NORMAL syncs only at checkpoints, so a power
        // cut could lose commits already acknowledged to a peer. FULL
        // fsyncs the WAL at every commit; group commit pays that once per
        // batch.
        conn.execute_batch("PRAGMA synchronous = FULL")?;
        let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
        if sync != 2 {
            return Err(LedgerError::Pragma {
                pragma: "synchronous",
                value: sync.to_string(),
            });
        }
        let mut ledger = Self {
            conn,
            read_only: false,
        };
        ledger.quick_check()?;
        if fresh {
            ledger.create_schema()?;
        }
        Ok(ledger)
    }

    /// Opens an existing ledger for queries only, for a thread that reads
    /// while a [`crate::LedgerWriter`] writes (WAL readers never block the
    /// writer, nor it them). The writer's open has checked the file.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self, LedgerError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        if check_identity(&conn)? {
            return Err(LedgerError::NotALedger("no ledger schema yet".into()));
        }
        Ok(Self {
            conn,
            read_only: true,
        })
    }

    /// `PRAGMA quick_check`: fast structural checks (run at every [`Ledger::open`]).
    pub fn quick_check(&self) -> Result<(), LedgerError> {
        self.check_pragma("PRAGMA quick_check")
    }

    /// `PRAGMA integrity_check`: the full check, including indexes against
    /// their tables. Reads the whole file.
    pub fn integrity_check(&self) -> Result<(), LedgerError> {
        self.check_pragma("PRAGMA integrity_check")
    }

    fn check_pragma(&self, sql: &str) -> Result<(), LedgerError> {
        let mut stmt = self.conn.prepare(sql)?;
        let lines = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        if lines.len() == 1 && lines.first().is_some_and(|l| l == "ok") {
            Ok(())
        } else {
            Err(LedgerError::Corrupt(lines.join("; ")))
        }
    }

    fn create_schema(&mut self) -> Result<(), LedgerError> {
        // IMMEDIATE, and the version read again inside: two processes
        // opening a new file at once create the schema once.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version == 0 {
            tx.execute_batch(SCHEMA)?;
            tx.execute_batch(&format!(
                "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};"
            ))?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Stores one receipt in its own transaction (one fsync). Many writers
    /// should share a [`crate::LedgerWriter`] instead.
    ///
    /// The caller must have checked the signature ([`Receipt::verify`]):
    /// the ledger holds no keys.
    pub fn insert(&mut self, receipt: &Receipt) -> Result<Outcome, LedgerError> {
        let tx = self.write_transaction()?;
        let outcome = apply(&tx, receipt)?;
        tx.commit()?;
        outcome
    }

    /// Stores receipts in one transaction, in order. The outer error means
    /// nothing was stored; otherwise each receipt has its own outcome (a
    /// conflict does not stop the others, and its evidence is kept).
    pub fn insert_batch<'a>(
        &mut self,
        receipts: impl IntoIterator<Item = &'a Receipt>,
    ) -> Result<Vec<Result<Outcome, LedgerError>>, LedgerError> {
        let tx = self.write_transaction()?;
        let results = receipts
            .into_iter()
            .map(|r| apply(&tx, r))
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit()?;
        Ok(results)
    }

    fn write_transaction(&mut self) -> Result<rusqlite::Transaction<'_>, LedgerError> {
        if self.read_only {
            return Err(LedgerError::ReadOnly);
        }
        // IMMEDIATE takes the write lock at BEGIN, where the busy timeout
        // applies, rather than failing at the first write.
        Ok(self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?)
    }

    /// The receipt `(payer, seq)`, if held.
    pub fn get(&self, payer: NodeId, seq: u64) -> Result<Option<Receipt>, LedgerError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT payer, seq, payee, charge, frame FROM receipts WHERE payer = ?1 AND seq = ?2",
        )?;
        let row = stmt
            .query_row(params![payer.as_bytes().as_slice(), int(seq)], RawRow::read)
            .optional()?;
        row.map(RawRow::into_receipt).transpose()
    }

    /// Whether `(payer, seq)` is held.
    pub fn contains(&self, payer: NodeId, seq: u64) -> Result<bool, LedgerError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM receipts WHERE payer = ?1 AND seq = ?2")?;
        Ok(stmt.exists(params![payer.as_bytes().as_slice(), int(seq)])?)
    }

    /// Number of receipts held.
    pub fn count(&self) -> Result<u64, LedgerError> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM receipts", [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The seq `payer` should sign next: one more than the highest held
    /// (1 for none). A node calls it at start for its own id, then counts
    /// on from there.
    pub fn next_seq(&self, payer: NodeId) -> Result<u64, LedgerError> {
        let max: Option<i64> = self.conn.query_row(
            "SELECT MAX(seq) FROM receipts WHERE payer = ?1",
            params![payer.as_bytes().as_slice()],
            |r| r.get(0),
        )?;
        Ok(max.map_or(1, |m| u64::try_from(m).unwrap_or(0).saturating_add(1)))
    }

    /// `grant + earned - spent` for `node`.
    pub fn balance(&self, node: NodeId, grant: Bounty) -> Result<Balance, LedgerError> {
        let id = node.as_bytes().as_slice();
        let earned = self.sum(
            "SELECT SUM(charge >> 32), SUM(charge & 4294967295) FROM receipts WHERE payee = ?1",
            id,
        )?;
        let spent = self.sum(
            "SELECT SUM(charge >> 32), SUM(charge & 4294967295) FROM receipts WHERE payer = ?1",
            id,
        )?;
        Ok(Balance::from_micros(
            i128::from(grant.micros()) + earned - spent,
        ))
    }

    /// Sums charges exactly. SQLite's SUM is 64-bit and fails on overflow,
    /// so charges (< 2^63) are summed as high and low 32-bit halves, which
    /// cannot overflow below 2^31 rows, and joined here in 128 bits.
    fn sum(&self, sql: &str, id: &[u8]) -> Result<i128, LedgerError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let (hi, lo): (Option<i64>, Option<i64>) =
            stmt.query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(join_halves(hi.unwrap_or(0), lo.unwrap_or(0)))
    }

    /// Every node that appears in a receipt, with its balance, in id order.
    /// A node in no receipt has the grant.
    pub fn balances(&self, grant: Bounty) -> Result<Vec<(NodeId, Balance)>, LedgerError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT node, SUM(ehi), SUM(elo), SUM(shi), SUM(slo) FROM (
                 SELECT payee AS node, charge >> 32 AS ehi, charge & 4294967295 AS elo,
                        0 AS shi, 0 AS slo FROM receipts
                 UNION ALL
                 SELECT payer, 0, 0, charge >> 32, charge & 4294967295 FROM receipts
             ) GROUP BY node ORDER BY node",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        let grant = i128::from(grant.micros());
        let mut out = Vec::new();
        for row in rows {
            let (id, ehi, elo, shi, slo) = row?;
            let node = node_id(&id).ok_or_else(|| bad_row(&id, None, "node id is not 8 bytes"))?;
            let balance = grant + join_halves(ehi, elo) - join_halves(shi, slo);
            out.push((node, Balance::from_micros(balance)));
        }
        Ok(out)
    }

    /// A page of receipts; see [`ReceiptFilter`].
    pub fn receipts(&self, filter: &ReceiptFilter) -> Result<Vec<Receipt>, LedgerError> {
        let (party, node) = match filter.party {
            Party::Any => ("1", None),
            Party::PaidBy(n) => ("payer = ?1", Some(n)),
            Party::PaidTo(n) => ("payee = ?1", Some(n)),
            Party::Involving(n) => ("(payer = ?1 OR payee = ?1)", Some(n)),
        };
        let after = if filter.after.is_some() {
            "AND (payer, seq) > (?2, ?3)"
        } else {
            ""
        };
        let sql = format!(
            "SELECT payer, seq, payee, charge, frame FROM receipts \
             WHERE {party} {after} ORDER BY payer, seq LIMIT ?4"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![
                node.map(|n| n.as_bytes().to_vec()),
                filter.after.map(|(p, _)| p.as_bytes().to_vec()),
                filter.after.map(|(_, s)| int(s)),
                i64::try_from(filter.limit).unwrap_or(i64::MAX),
            ],
            RawRow::read,
        )?;
        rows.map(|r| r?.into_receipt()).collect()
    }

    /// `payer`'s receipts with seq in `seqs`, in seq order, at most `limit`.
    pub fn range(
        &self,
        payer: NodeId,
        seqs: RangeInclusive<u64>,
        limit: usize,
    ) -> Result<Vec<Receipt>, LedgerError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT payer, seq, payee, charge, frame FROM receipts \
             WHERE payer = ?1 AND seq BETWEEN ?2 AND ?3 ORDER BY seq LIMIT ?4",
        )?;
        let rows = stmt.query_map(
            params![
                payer.as_bytes().as_slice(),
                int(*seqs.start()),
                int(*seqs.end()),
                i64::try_from(limit).unwrap_or(i64::MAX),
            ],
            RawRow::read,
        )?;
        rows.map(|r| r?.into_receipt()).collect()
    }

    /// Per payer: the highest seq held and how many. Two nodes exchange
    /// heads, then each asks the other for [`Ledger::wanted`].
    pub fn heads(&self) -> Result<Vec<Head>, LedgerError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT payer, MAX(seq), COUNT(*) FROM receipts GROUP BY payer ORDER BY payer",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, max, count) = row?;
            let payer = node_id(&id).ok_or_else(|| bad_row(&id, None, "payer is not 8 bytes"))?;
            out.push(Head {
                payer,
                max_seq: u64::try_from(max).unwrap_or(0),
                count: u64::try_from(count).unwrap_or(0),
            });
        }
        Ok(out)
    }

    /// The seqs of `payer` in `1..=up_to` not held, as ranges in order.
    pub fn missing(
        &self,
        payer: NodeId,
        up_to: u64,
    ) -> Result<Vec<RangeInclusive<u64>>, LedgerError> {
        let id = payer.as_bytes().as_slice();
        let up = int(up_to);
        let mut stmt = self.conn.prepare_cached(
            "SELECT prev + 1, seq - 1 FROM (
                 SELECT seq, LAG(seq, 1, 0) OVER (ORDER BY seq) AS prev
                 FROM receipts WHERE payer = ?1 AND seq <= ?2
             ) WHERE seq > prev + 1 ORDER BY seq",
        )?;
        let mut out = stmt
            .query_map(params![id, up], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })?
            .map(|r| {
                let (a, b) = r?;
                Ok(u64::try_from(a).unwrap_or(0)..=u64::try_from(b).unwrap_or(0))
            })
            .collect::<Result<Vec<_>, LedgerError>>()?;
        let max: Option<i64> = self.conn.query_row(
            "SELECT MAX(seq) FROM receipts WHERE payer = ?1 AND seq <= ?2",
            params![id, up],
            |r| r.get(0),
        )?;
        let held = max.map_or(0, |m| u64::try_from(m).unwrap_or(0));
        if held < up_to {
            out.push(held + 1..=up_to);
        }
        Ok(out)
    }

    /// What to ask a peer for, given its [`Ledger::heads`]: every seq up to
    /// its head for each payer that this ledger lacks. (The peer may lack
    /// some of them too; it sends what it has.)
    pub fn wanted(&self, theirs: &[Head]) -> Result<Vec<SeqRange>, LedgerError> {
        let ours = self.heads()?;
        let mut out = Vec::new();
        for h in theirs {
            let mine = ours
                .binary_search_by(|o| o.payer.cmp(&h.payer))
                .ok()
                .and_then(|i| ours.get(i));
            // Dense up to their head already: nothing to ask for.
            if let Some(m) = mine {
                if m.count == m.max_seq && m.max_seq >= h.max_seq {
                    continue;
                }
            }
            for seqs in self.missing(h.payer, h.max_seq)? {
                out.push(SeqRange {
                    payer: h.payer,
                    seqs,
                });
            }
        }
        Ok(out)
    }

    /// The conflicting receipts seen (one per `(payer, seq)`, the first
    /// seen), each proof that its payer signed two receipts with one seq
    /// if its signature verifies.
    pub fn conflicts(&self) -> Result<Vec<Receipt>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT payer, seq, frame FROM conflicts ORDER BY payer, seq")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, seq, frame) = row?;
            let r =
                Receipt::from_bytes(&frame).map_err(|e| bad_row(&id, Some(seq), &e.to_string()))?;
            if r.payer().as_bytes().as_slice() != id.as_slice() || int(r.seq()) != seq {
                return Err(bad_row(&id, Some(seq), "frame does not match its key"));
            }
            out.push(r);
        }
        Ok(out)
    }
}

/// Stores one receipt inside `tx`. The outer error is a storage failure
/// (the transaction must not commit); the inner one a conflict.
fn apply(
    tx: &rusqlite::Transaction<'_>,
    r: &Receipt,
) -> Result<Result<Outcome, LedgerError>, LedgerError> {
    let f = r.fields();
    let payer = f.payer.as_bytes().as_slice();
    let seq = int(f.seq);
    let inserted = tx
        .prepare_cached(
            "INSERT INTO receipts (payer, seq, payee, job, price, power, tasks, micros, \
             fuel, charge, issued, market, sig, frame) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
             ON CONFLICT (payer, seq) DO NOTHING",
        )?
        .execute(params![
            payer,
            seq,
            f.payee.as_bytes().as_slice(),
            f.job.0.to_be_bytes().as_slice(),
            int(f.price.micros()),
            int(f.power),
            int(f.tasks),
            int(f.micros),
            f.fuel.map(int),
            int(f.charge.micros()),
            int(f.issued),
            int(f.market_price.micros()),
            r.signature(),
            r.as_bytes(),
        ])?;
    if inserted == 1 {
        return Ok(Ok(Outcome::Inserted));
    }
    let stored: Vec<u8> = tx
        .prepare_cached("SELECT frame FROM receipts WHERE payer = ?1 AND seq = ?2")?
        .query_row(params![payer, seq], |row| row.get(0))?;
    if stored == r.as_bytes() {
        return Ok(Ok(Outcome::Duplicate));
    }
    // Equivocation: keep the first, keep one piece of evidence (at most one
    // per seq, so a payer cannot fill the disk), report it.
    tx.prepare_cached(
        "INSERT INTO conflicts (payer, seq, frame) VALUES (?1, ?2, ?3) \
         ON CONFLICT (payer, seq) DO NOTHING",
    )?
    .execute(params![payer, seq, r.as_bytes()])?;
    tracing::warn!(payer = %f.payer, seq = f.seq, "conflicting receipt");
    Ok(Err(LedgerError::Conflict {
        payer: f.payer,
        seq: f.seq,
    }))
}

/// Checks the file is an lppsp ledger this build can read; true when it is
/// a new, empty database the caller should initialise.
fn check_identity(conn: &Connection) -> Result<bool, LedgerError> {
    // The first read of the file: a file that is not SQLite fails here.
    let app: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let version: i32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let objects: i64 = conn.query_row("SELECT COUNT(*) FROM sqlite_schema", [], |r| r.get(0))?;
    if app == 0 && version == 0 && objects == 0 {
        return Ok(true);
    }
    if app != APPLICATION_ID {
        return Err(LedgerError::NotALedger(format!(
            "application_id is {app:#x}, not {APPLICATION_ID:#x}"
        )));
    }
    if version > SCHEMA_VERSION {
        return Err(LedgerError::SchemaTooNew { found: version });
    }
    if version < 1 {
        return Err(LedgerError::NotALedger(format!("schema version {version}")));
    }
    Ok(false)
}

/// A receipt row as read, checked in [`RawRow::into_receipt`].
struct RawRow {
    payer: Vec<u8>,
    seq: i64,
    payee: Vec<u8>,
    charge: i64,
    frame: Vec<u8>,
}

impl RawRow {
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            payer: r.get(0)?,
            seq: r.get(1)?,
            payee: r.get(2)?,
            charge: r.get(3)?,
            frame: r.get(4)?,
        })
    }

    /// Parses the stored frame and checks that the columns balances are
    /// computed from say what the signed bytes say.
    fn into_receipt(self) -> Result<Receipt, LedgerError> {
        let r = Receipt::from_bytes(&self.frame)
            .map_err(|e| bad_row(&self.payer, Some(self.seq), &e.to_string()))?;
        let f = r.fields();
        if f.payer.as_bytes().as_slice() != self.payer.as_slice()
            || int(f.seq) != self.seq
            || f.payee.as_bytes().as_slice() != self.payee.as_slice()
            || int(f.charge.micros()) != self.charge
        {
            return Err(bad_row(
                &self.payer,
                Some(self.seq),
                "columns do not match the signed frame",
            ));
        }
        Ok(r)
    }
}

/// A u64 as SQLite's i64. Receipt fields are at most [`crate::MAX_INT`];
/// larger query bounds clamp, which selects the same rows.
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn join_halves(hi: i64, lo: i64) -> i128 {
    (i128::from(hi) << 32) + i128::from(lo)
}

fn node_id(bytes: &[u8]) -> Option<NodeId> {
    <[u8; 8]>::try_from(bytes).ok().map(NodeId::from_bytes)
}

fn bad_row(payer: &[u8], seq: Option<i64>, reason: &str) -> LedgerError {
    let payer: String = payer.iter().map(|b| format!("{b:02x}")).collect();
    LedgerError::BadRow {
        row: match seq {
            Some(s) => format!("({payer}, {s})"),
            None => format!("({payer})"),
        },
        reason: reason.to_string(),
    }
}
