//! The message line: the second line of every frame, `Kind/field/field...`.
//!
//! Hand, Leave and Idle follow RFC 2.2-2.4 field for field; the other kinds
//! are this implementation's extensions in the same style (see
//! docs/PROTOCOL.md for the grammar and the reasons).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

use crate::money::{Bounty, Price};
use crate::node_id::NodeId;

/// Default TCP port of the TLS endpoint, used when a Hand's `IP` has none.
pub const DEFAULT_TLS_PORT: u16 = 47101;
/// Default UDP port for beacons.
pub const DEFAULT_BEACON_PORT: u16 = 47100;

/// A problem with the message line's content (the frame itself was well
/// formed, so a stream reader can skip it and go on).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("unknown message kind {0:?}")]
    UnknownKind(String),
    #[error("{kind} takes {expected} fields, got {got}")]
    FieldCount {
        kind: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("{kind} field {field}: {reason}")]
    Field {
        kind: &'static str,
        field: &'static str,
        reason: String,
    },
}

/// A node's TLS endpoint as carried in the `IP` field: `a.b.c.d[:port]` or
/// `[v6][:port]`. The port defaults to 47101.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint(pub SocketAddr);

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SocketAddr's Display already brackets IPv6.
        write!(f, "{}", self.0)
    }
}

impl FromStr for Endpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(sa) = s.parse::<SocketAddr>() {
            return Ok(Self(sa));
        }
        if let Ok(v4) = s.parse::<Ipv4Addr>() {
            return Ok(Self(SocketAddr::new(IpAddr::V4(v4), DEFAULT_TLS_PORT)));
        }
        if s.starts_with('[') && s.ends_with(']') {
            // Through SocketAddr, which (unlike Ipv6Addr) reads a zone
            // (`[fe80::1%2]`), as it does when the port is given.
            if let Ok(sa) = format!("{s}:{DEFAULT_TLS_PORT}").parse::<SocketAddr>() {
                return Ok(Self(sa));
            }
        }
        Err(format!("{s:?} is not ip[:port] (IPv6 in brackets)"))
    }
}

/// A job's identifier, chosen by the submitting client: 16 lowercase hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl FromStr for JobId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() != 16 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(format!("{s:?} is not 16 lowercase hex digits"));
        }
        u64::from_str_radix(s, 16)
            .map(JobId)
            .map_err(|e| e.to_string())
    }
}

/// A short name made of letters, digits and `-_.:`, at most `max` bytes.
fn check_token(s: &str, max: usize) -> Result<(), String> {
    if s.is_empty() || s.len() > max {
        return Err(format!("must be 1 to {max} characters"));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return Err(format!("{s:?} may hold only letters, digits and -_.:"));
    }
    Ok(())
}

/// A kernel name: a builtin's name or `wasm:<sha256 hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KernelName(String);

impl KernelName {
    /// Longest kernel name accepted.
    pub const MAX_LEN: usize = 80;
    /// Checks and wraps a kernel name.
    pub fn new(s: impl Into<String>) -> Result<Self, String> {
        let s = s.into();
        check_token(&s, Self::MAX_LEN)?;
        Ok(Self(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KernelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A processor architecture name as the host reports it (`x86_64`, `aarch64`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Arch(String);

impl Arch {
    /// Longest architecture name accepted.
    pub const MAX_LEN: usize = 32;
    pub fn new(s: impl Into<String>) -> Result<Self, String> {
        let s = s.into();
        check_token(&s, Self::MAX_LEN)?;
        Ok(Self(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Raise hand beacon (RFC 2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hand {
    pub addr: Endpoint,
    /// Processing power in MFLOPS (RFC 1.3: 1 processing power = 1 MFLOPS).
    pub power: u64,
    pub arch: Arch,
    pub is_client: bool,
    /// Present exactly when `is_client` is true (RFC: "or NULL").
    pub remaining_bounty: Option<Bounty>,
}

/// Why a node refused a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefuseReason {
    /// All execution slots are taken.
    Busy,
    /// The node has no executor for this kernel.
    UnknownKernel,
    /// The client's balance does not cover the task.
    CannotPay,
    /// The node is not sharing now (owner active, outside its hours).
    Unavailable,
    /// The task's input or limits exceed what the node accepts.
    TooLarge,
    /// The task was placed at a price below the node's reserve price.
    BelowReserve,
}

impl RefuseReason {
    pub const ALL: [RefuseReason; 6] = [
        Self::Busy,
        Self::UnknownKernel,
        Self::CannotPay,
        Self::Unavailable,
        Self::TooLarge,
        Self::BelowReserve,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Busy => "busy",
            Self::UnknownKernel => "unknown-kernel",
            Self::CannotPay => "cannot-pay",
            Self::Unavailable => "unavailable",
            Self::TooLarge => "too-large",
            Self::BelowReserve => "below-reserve",
        }
    }
}

impl FromStr for RefuseReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "{s:?} is not one of busy, unknown-kernel, cannot-pay, unavailable, too-large, below-reserve"
                )
            })
    }
}

/// One message line. See docs/PROTOCOL.md for each kind's meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `Hand/IP/Processing_Power/Architecture/Is_Client/Remaining_Bounty|NULL`
    Hand(Hand),
    /// `Leave/IP`
    Leave { addr: Endpoint },
    /// `Idle/Is_Idle`
    Idle { idle: bool },
    /// `Task/job/task/kernel`: place a task; the body is its input.
    Task {
        job: JobId,
        task: u64,
        kernel: KernelName,
    },
    /// `Accept/job/task`: the compute node took the task.
    Accept { job: JobId, task: u64 },
    /// `Refuse/job/task/reason`: the compute node will not run it.
    Refuse {
        job: JobId,
        task: u64,
        reason: RefuseReason,
    },
    /// `Result/job/task/ok|error`: the body is the result or the error text.
    Result { job: JobId, task: u64, ok: bool },
    /// `Cancel/job/task|*`: stop one task, or every task of the job.
    Cancel { job: JobId, task: Option<u64> },
    /// `Integrate/job/tasks/kernel`: the client asks the node that holds the
    /// job's results (the scheduler's `result_to`) to integrate tasks
    /// `0..tasks` with `kernel`'s reduce and send back the job result.
    Integrate {
        job: JobId,
        tasks: u64,
        kernel: KernelName,
    },
    /// `Integrated/job/ok|error`: the body is the job result or the error text.
    Integrated { job: JobId, ok: bool },
    /// `Module/job/kernel`: the body is the user code (a WASM module) that
    /// `kernel` names by its content hash; sent once per job to each node
    /// that runs or integrates its tasks, before the first of them.
    Module { job: JobId, kernel: KernelName },
    /// `Heads/count`: the sender's ledger heads, `count` body lines
    /// (anti-entropy; docs/PROTOCOL.md).
    Heads { count: u64 },
    /// `Want/count`: receipt seq ranges the sender lacks, `count` body lines.
    Want { count: u64 },
    /// `Propose/epoch/price/proposer`: open a price agreement round.
    Propose {
        epoch: u64,
        price: Price,
        proposer: NodeId,
    },
    /// `Vote/epoch/proposer/price/yes|no`: a member's answer to the round
    /// `(epoch, proposer)` at `price`; the price binds the vote to the one
    /// proposal the voter saw.
    Vote {
        epoch: u64,
        proposer: NodeId,
        price: Price,
        yes: bool,
    },
    /// `Commit/epoch/price/proposer`: the price every live member agreed on.
    Commit {
        epoch: u64,
        price: Price,
        proposer: NodeId,
    },
    /// `Receipt/job/payer/payee/price/power/micros/charge`: a settlement.
    Receipt {
        job: JobId,
        payer: NodeId,
        payee: NodeId,
        price: Price,
        power: u64,
        micros: u64,
        charge: Bounty,
    },
}

impl Message {
    /// The kind, the first field of the line.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hand(_) => "Hand",
            Message::Leave { .. } => "Leave",
            Message::Idle { .. } => "Idle",
            Message::Task { .. } => "Task",
            Message::Accept { .. } => "Accept",
            Message::Refuse { .. } => "Refuse",
            Message::Result { .. } => "Result",
            Message::Cancel { .. } => "Cancel",
            Message::Integrate { .. } => "Integrate",
            Message::Integrated { .. } => "Integrated",
            Message::Module { .. } => "Module",
            Message::Heads { .. } => "Heads",
            Message::Want { .. } => "Want",
            Message::Propose { .. } => "Propose",
            Message::Vote { .. } => "Vote",
            Message::Commit { .. } => "Commit",
            Message::Receipt { .. } => "Receipt",
        }
    }

    /// Parses a message line (without its CRLF). The line's characters have
    /// already been checked by the frame decoder.
    pub fn parse(line: &str) -> Result<Message, MessageError> {
        let mut parts = line.split('/');
        let kind = parts.next().unwrap_or_default();
        let fields: Vec<&str> = parts.collect();
        let f = Fields {
            kind: "",
            fields: &fields,
        };
        match kind {
            "Hand" => {
                let f = f.arity("Hand", 5)?;
                let is_client = f.parse_with(3, "Is_Client", parse_bool)?;
                let remaining_bounty = match f.get(4) {
                    "NULL" => None,
                    _ => Some(f.parse(4, "Remaining_Bounty")?),
                };
                if is_client != remaining_bounty.is_some() {
                    return Err(f.err(
                        "Remaining_Bounty",
                        "is NULL exactly when Is_Client is false",
                    ));
                }
                Ok(Message::Hand(Hand {
                    addr: f.parse(0, "IP")?,
                    power: f.parse_with(1, "Processing_Power", parse_u64)?,
                    arch: f.parse_with(2, "Architecture", |s| Arch::new(s))?,
                    is_client,
                    remaining_bounty,
                }))
            }
            "Leave" => {
                let f = f.arity("Leave", 1)?;
                Ok(Message::Leave {
                    addr: f.parse(0, "IP")?,
                })
            }
            "Idle" => {
                let f = f.arity("Idle", 1)?;
                Ok(Message::Idle {
                    idle: f.parse_with(0, "Is_Idle", parse_bool)?,
                })
            }
            "Task" => {
                let f = f.arity("Task", 3)?;
                Ok(Message::Task {
                    job: f.parse(0, "job")?,
                    task: f.parse_with(1, "task", parse_u64)?,
                    kernel: f.parse_with(2, "kernel", |s| KernelName::new(s))?,
                })
            }
            "Accept" => {
                let f = f.arity("Accept", 2)?;
                Ok(Message::Accept {
                    job: f.parse(0, "job")?,
                    task: f.parse_with(1, "task", parse_u64)?,
                })
            }
            "Refuse" => {
                let f = f.arity("Refuse", 3)?;
                Ok(Message::Refuse {
                    job: f.parse(0, "job")?,
                    task: f.parse_with(1, "task", parse_u64)?,
                    reason: f.parse(2, "reason")?,
                })
            }
            "Result" => {
                let f = f.arity("Result", 3)?;
                Ok(Message::Result {
                    job: f.parse(0, "job")?,
                    task: f.parse_with(1, "task", parse_u64)?,
                    ok: f.parse_with(2, "status", parse_status)?,
                })
            }
            "Integrate" => {
                let f = f.arity("Integrate", 3)?;
                Ok(Message::Integrate {
                    job: f.parse(0, "job")?,
                    tasks: f.parse_with(1, "tasks", parse_u64)?,
                    kernel: f.parse_with(2, "kernel", |s| KernelName::new(s))?,
                })
            }
            "Integrated" => {
                let f = f.arity("Integrated", 2)?;
                Ok(Message::Integrated {
                    job: f.parse(0, "job")?,
                    ok: f.parse_with(1, "status", parse_status)?,
                })
            }
            "Module" => {
                let f = f.arity("Module", 2)?;
                Ok(Message::Module {
                    job: f.parse(0, "job")?,
                    kernel: f.parse_with(1, "kernel", |s| KernelName::new(s))?,
                })
            }
            "Heads" => {
                let f = f.arity("Heads", 1)?;
                Ok(Message::Heads {
                    count: f.parse_with(0, "count", parse_u64)?,
                })
            }
            "Want" => {
                let f = f.arity("Want", 1)?;
                Ok(Message::Want {
                    count: f.parse_with(0, "count", parse_u64)?,
                })
            }
            "Cancel" => {
                let f = f.arity("Cancel", 2)?;
                Ok(Message::Cancel {
                    job: f.parse(0, "job")?,
                    task: match f.get(1) {
                        "*" => None,
                        _ => Some(f.parse_with(1, "task", parse_u64)?),
                    },
                })
            }
            "Propose" | "Commit" => {
                let (name, is_propose) = if kind == "Propose" {
                    ("Propose", true)
                } else {
                    ("Commit", false)
                };
                let f = f.arity(name, 3)?;
                let epoch = f.parse_with(0, "epoch", parse_u64)?;
                let price = f.parse(1, "price")?;
                let proposer = f.parse(2, "proposer")?;
                Ok(if is_propose {
                    Message::Propose {
                        epoch,
                        price,
                        proposer,
                    }
                } else {
                    Message::Commit {
                        epoch,
                        price,
                        proposer,
                    }
                })
            }
            "Vote" => {
                let f = f.arity("Vote", 4)?;
                Ok(Message::Vote {
                    epoch: f.parse_with(0, "epoch", parse_u64)?,
                    proposer: f.parse(1, "proposer")?,
                    price: f.parse(2, "price")?,
                    yes: f.parse_with(3, "vote", |s| match s {
                        "yes" => Ok(true),
                        "no" => Ok(false),
                        _ => Err(format!("{s:?} is not yes or no")),
                    })?,
                })
            }
            "Receipt" => {
                let f = f.arity("Receipt", 7)?;
                Ok(Message::Receipt {
                    job: f.parse(0, "job")?,
                    payer: f.parse(1, "payer")?,
                    payee: f.parse(2, "payee")?,
                    price: f.parse(3, "price")?,
                    power: f.parse_with(4, "power", parse_u64)?,
                    micros: f.parse_with(5, "micros", parse_u64)?,
                    charge: f.parse(6, "charge")?,
                })
            }
            other => Err(MessageError::UnknownKind(other.to_string())),
        }
    }
}

impl fmt::Display for Message {
    /// The message line, without CRLF.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = self.kind();
        match self {
            Message::Hand(h) => {
                write!(f, "{k}/{}/{}/{}/{}/", h.addr, h.power, h.arch, h.is_client)?;
                match h.remaining_bounty {
                    Some(b) => write!(f, "{b}"),
                    None => f.write_str("NULL"),
                }
            }
            Message::Leave { addr } => write!(f, "{k}/{addr}"),
            Message::Idle { idle } => write!(f, "{k}/{idle}"),
            Message::Task { job, task, kernel } => write!(f, "{k}/{job}/{task}/{kernel}"),
            Message::Accept { job, task } => write!(f, "{k}/{job}/{task}"),
            Message::Refuse { job, task, reason } => {
                write!(f, "{k}/{job}/{task}/{}", reason.as_str())
            }
            Message::Result { job, task, ok } => {
                write!(f, "{k}/{job}/{task}/{}", if *ok { "ok" } else { "error" })
            }
            Message::Integrate { job, tasks, kernel } => write!(f, "{k}/{job}/{tasks}/{kernel}"),
            Message::Module { job, kernel } => write!(f, "{k}/{job}/{kernel}"),
            Message::Heads { count } | Message::Want { count } => write!(f, "{k}/{count}"),
            Message::Integrated { job, ok } => {
                write!(f, "{k}/{job}/{}", if *ok { "ok" } else { "error" })
            }
            Message::Cancel { job, task } => match task {
                Some(t) => write!(f, "{k}/{job}/{t}"),
                None => write!(f, "{k}/{job}/*"),
            },
            Message::Propose {
                epoch,
                price,
                proposer,
            }
            | Message::Commit {
                epoch,
                price,
                proposer,
            } => {
                write!(f, "{k}/{epoch}/{price}/{proposer}")
            }
            Message::Vote {
                epoch,
                proposer,
                price,
                yes,
            } => {
                write!(
                    f,
                    "{k}/{epoch}/{proposer}/{price}/{}",
                    if *yes { "yes" } else { "no" }
                )
            }
            Message::Receipt {
                job,
                payer,
                payee,
                price,
                power,
                micros,
                charge,
            } => {
                write!(
                    f,
                    "{k}/{job}/{payer}/{payee}/{price}/{power}/{micros}/{charge}"
                )
            }
        }
    }
}

fn parse_status(s: &str) -> Result<bool, String> {
    match s {
        "ok" => Ok(true),
        "error" => Ok(false),
        _ => Err(format!("{s:?} is not ok or error")),
    }
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{s:?} is not true or false")),
    }
}

/// Decimal without sign or leading zeros, so that every value has one text.
fn parse_u64(s: &str) -> Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?} is not a decimal number"));
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(format!("{s:?} has a leading zero"));
    }
    s.parse().map_err(|_| format!("{s:?} is too large"))
}

struct Fields<'a> {
    kind: &'static str,
    fields: &'a [&'a str],
}

impl<'a> Fields<'a> {
    fn arity(self, kind: &'static str, n: usize) -> Result<Fields<'a>, MessageError> {
        if self.fields.len() != n {
            return Err(MessageError::FieldCount {
                kind,
                expected: n,
                got: self.fields.len(),
            });
        }
        Ok(Fields {
            kind,
            fields: self.fields,
        })
    }
    fn get(&self, i: usize) -> &'a str {
        self.fields.get(i).copied().unwrap_or_default()
    }
    fn err(&self, field: &'static str, reason: impl Into<String>) -> MessageError {
        MessageError::Field {
            kind: self.kind,
            field,
            reason: reason.into(),
        }
    }
    fn parse<T: FromStr>(&self, i: usize, field: &'static str) -> Result<T, MessageError>
    where
        T::Err: fmt::Display,
    {
        self.get(i)
            .parse::<T>()
            .map_err(|e| self.err(field, e.to_string()))
    }
    fn parse_with<T>(
        &self,
        i: usize,
        field: &'static str,
        p: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, MessageError> {
        p(self.get(i)).map_err(|e| self.err(field, e))
    }
}
