//! The durable ledger of signed settlement receipts and the balances computed from them.
//!
//! # Receipts
//!
//! A client pays for the tasks compute nodes ran for it with *receipts*:
//! one per `(job, payee)` settlement (and periodically during long jobs),
//! signed by the payer, so small tasks do not each cost a signature and an
//! fsync. A [`Receipt`] is an LPPSP frame (`Receipt/job/payer/payee/price/
//! power/micros/charge` plus `Seq`, `Tasks`, optional `Fuel`, `Date`, and
//! last `Sig` over every byte before it; see [`receipt`]). Its identity is
//! `(payer, seq)`, seq counting up from 1 per payer. Its charge must be one
//! that per-task metering can produce ([`metered_range`]). Signatures are
//! made and checked through callbacks: the runtime holds the keys, this
//! crate holds none and links no TLS.
//!
//! Both parties store a receipt before acknowledging it, and receipts
//! spread to every node, so any node computes any balance: the community
//! grant (the same for all, from config) plus what the node earned minus
//! what it spent ([`Ledger::balance`]). Every charge moves bounty from one
//! node to another, so the balances of N nodes always sum to N x grant.
//!
//! # Schema (SQLite, `PRAGMA user_version = 1`, `application_id = "LPLG"`)
//!
//! ```text
//! receipts (payer BLOB(8), seq INTEGER >= 1,  -- PRIMARY KEY (payer, seq), WITHOUT ROWID
//!           payee BLOB(8), job BLOB(8, big-endian), price, power, tasks, micros,
//!           fuel NULL, charge, issued (unix s), market (frame price) INTEGER,
//!           sig BLOB, frame BLOB)              -- frame: the exact signed bytes
//! receipts_by_payee INDEX (payee, payer, seq, charge)
//! conflicts (payer, seq, frame)                -- first conflicting receipt per (payer, seq)
//! ```
//!
//! The clustered key serves one payer's receipts in seq order (anti-entropy,
//! `next_seq`, spending); the payee index covers earnings. `frame` lets a
//! receipt be re-sent and re-verified byte for byte; every read re-parses
//! it and checks it against its key columns. Integer fields are capped at
//! 2^63 - 1 ([`MAX_INT`]) so SQLite stores them exactly; sums are computed
//! in 128 bits ([`Balance`]).
//!
//! Inserting a receipt already held (same bytes) is [`Outcome::Duplicate`]
//! and changes nothing. Same `(payer, seq)` with other bytes is
//! [`LedgerError::Conflict`]: the payer signed two receipts with one seq;
//! the first is kept, the second stored in `conflicts` as evidence.
//!
//! # Durability
//!
//! WAL journal with `synchronous=FULL`: every commit fsyncs the WAL before
//! returning, so an acknowledged receipt survives a process kill and a power
//! cut (WAL with `NORMAL` would only survive the former). WAL also lets
//! readers ([`Ledger::open_read_only`]) run alongside the writer. `open`
//! runs `PRAGMA quick_check` and refuses a corrupt file with
//! [`LedgerError::Corrupt`].
//!
//! # Group commit
//!
//! [`LedgerWriter`] owns the write connection on its own thread. Appends
//! queue on a channel; the thread takes everything queued (up to
//! [`MAX_BATCH`]), inserts it in one transaction, commits (one fsync), and
//! only then completes each append's ack with its [`Outcome`] or error. N
//! concurrent appends cost one fsync instead of N. A failed commit fails
//! every ack in the batch: nothing is acknowledged that is not on disk.

#![forbid(unsafe_code)]

mod balance;
mod ledger;
pub mod meters;
pub mod receipt;
pub mod sync;
mod writer;

pub use balance::Balance;
pub use ledger::{
    Head, Ledger, LedgerError, Outcome, Party, ReceiptFilter, SeqRange, APPLICATION_ID,
    BUSY_TIMEOUT, SCHEMA_VERSION,
};
pub use meters::{Meters, Settlement, TaskCharge};
pub use receipt::{
    metered_range, unix_secs, Receipt, ReceiptError, ReceiptFields, Signer, Verifier,
    MAX_FRAME_LEN, MAX_INT,
};
pub use writer::{AckFuture, LedgerWriter, WriterStats, MAX_BATCH};
