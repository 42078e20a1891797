//! Signed settlement receipts and their wire form.
//!
//! A receipt is one LPPSP frame:
//!
//! ```text
//! LPPSP/<market price>
//! Receipt/<job>/<payer>/<payee>/<price>/<power>/<micros>/<charge>
//! Seq: <seq>
//! Tasks: <tasks>
//! Fuel: <fuel>                      (only when known)
//! Date: <RFC 1123 date>
//! Sig: <base64 signature by the payer over every byte above this line>
//!
//! ```
//!
//! The layout is strict: exactly these headers, in this order, with these
//! spellings, no body, and the bytes must be the canonical encoding of the
//! frame they decode to. So one receipt has exactly one byte form, and two
//! different byte strings under one `(payer, seq)` mean the payer signed two
//! different receipts.

use std::ops::RangeInclusive;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use lppsp_core::money::{self, Bounty, ChargeOverflow, Price};
use lppsp_core::wire::{self, DecodeError, Frame, JobId, Limits, Message};
use lppsp_core::NodeId;

/// Largest receipt frame accepted, signature included. A receipt with an
/// Ed25519 signature is about 300 bytes; this leaves room for larger keys.
pub const MAX_FRAME_LEN: usize = 4096;

/// Largest value of any integer field (seq, power, tasks, micros, fuel, and
/// the micro-units of price and charge): SQLite stores signed 64-bit
/// integers, and refusing larger values at the edge keeps every stored
/// number exact and ordered.
pub const MAX_INT: u64 = i64::MAX as u64;

/// Last second `httpdate` can write (9999-12-31 23:59:59 GMT).
const LAST_DATE_SECS: u64 = 253_402_300_799;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Signs the bytes of a receipt on behalf of its payer. The runtime
/// implements it with the node's TLS identity key; any closure
/// `Fn(&[u8]) -> Vec<u8>` is one too.
pub trait Signer {
    /// The signature over `msg`.
    fn sign(&self, msg: &[u8]) -> Vec<u8>;
}

impl<F: Fn(&[u8]) -> Vec<u8> + ?Sized> Signer for F {
    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self(msg)
    }
}

/// Checks a payer's signature: `verify(payer, signed bytes, signature)`.
/// The runtime implements it with the peers' certificates; any closure
/// `Fn(&NodeId, &[u8], &[u8]) -> bool` is one too.
pub trait Verifier {
    /// True when `sig` is `payer`'s signature over `msg`.
    fn verify(&self, payer: &NodeId, msg: &[u8], sig: &[u8]) -> bool;
}

impl<F: Fn(&NodeId, &[u8], &[u8]) -> bool + ?Sized> Verifier for F {
    fn verify(&self, payer: &NodeId, msg: &[u8], sig: &[u8]) -> bool {
        self(payer, msg, sig)
    }
}

/// Why bytes or fields are not a valid receipt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("receipt frame is {0} bytes, more than {MAX_FRAME_LEN}")]
    TooLarge(usize),
    #[error("not a frame: {0}")]
    Decode(#[from] DecodeError),
    #[error("frame is a {0}, not a Receipt")]
    NotAReceipt(&'static str),
    #[error("a receipt frame has no body")]
    HasBody,
    #[error("receipt headers must be Seq, Tasks, [Fuel,] Date, Sig in that order; found {0}")]
    Layout(String),
    #[error("header {name}: {reason}")]
    BadHeader { name: &'static str, reason: String },
    #[error("receipt bytes are not the canonical encoding of their frame")]
    NotCanonical,
    #[error("{0} must not be zero")]
    Zero(&'static str),
    #[error("{field} = {value} exceeds {MAX_INT}")]
    OutOfRange { field: &'static str, value: u64 },
    #[error("payer and payee are both {0}")]
    SelfPayment(NodeId),
    #[error("issued time {0} s is after the year 9999")]
    DateOutOfRange(u64),
    #[error("charge {charge} is outside {min}..={max}, what metering {tasks} task(s) over {micros} us at price {price} and {power} MFLOPS can produce")]
    ChargeMismatch {
        charge: Bounty,
        min: Bounty,
        max: Bounty,
        tasks: u64,
        micros: u64,
        price: Price,
        power: u64,
    },
    #[error(transparent)]
    ChargeOverflow(#[from] ChargeOverflow),
    #[error("signature of receipt ({payer}, {seq}) does not verify")]
    BadSignature { payer: NodeId, seq: u64 },
}

/// What a receipt says, before it is signed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReceiptFields {
    pub job: JobId,
    pub payer: NodeId,
    pub payee: NodeId,
    /// Per payer, from 1, one more for every receipt it signs; `(payer,
    /// seq)` is the receipt's identity.
    pub seq: u64,
    /// The price the settled tasks ran at.
    pub price: Price,
    /// The payee's processing power, MFLOPS.
    pub power: u64,
    /// Number of tasks settled (at least 1).
    pub tasks: u64,
    /// Their execution times, summed, in microseconds.
    pub micros: u64,
    /// WASM fuel the tasks consumed, where known.
    pub fuel: Option<u64>,
    /// The sum of the tasks' charges (see [`metered_range`]).
    pub charge: Bounty,
    /// When the payer signed, in whole seconds since the Unix epoch (the
    /// `Date` header has one-second resolution).
    pub issued: u64,
    /// The committed market price the payer held when signing: the
    /// frame's first line. Signed like the rest, but plays no part in the
    /// charge (tasks settle at the price they ran at, `price`).
    pub market_price: Price,
}

/// The range of charges per-task metering can produce for a receipt.
///
/// Each task `i` is charged `c_i = money::charge(price, power, t_i)`, that
/// is `floor(x_i)` with `x_i = price * power * t_i / 10^6`; the receipt
/// carries `charge = sum(c_i)` and `micros = sum(t_i)`. Since
/// `floor(a) + floor(b) <= floor(a + b) <= floor(a) + floor(b) + 1`,
///
/// ```text
/// money::charge(price, power, micros) - (tasks - 1)  <=  charge  <=  money::charge(price, power, micros)
/// ```
///
/// The upper bound means nobody is charged more than the summed time at the
/// receipt's price and power justifies; the lower bound that rounding alone
/// cannot explain a smaller charge. Both are exact: no float, no slack.
pub fn metered_range(
    price: Price,
    power: u64,
    tasks: u64,
    micros: u64,
) -> Result<RangeInclusive<Bounty>, ChargeOverflow> {
    let max = money::charge(price, power, micros)?;
    let slack = Bounty::from_micros(tasks.saturating_sub(1));
    Ok(max.saturating_sub(slack)..=max)
}

impl ReceiptFields {
    /// Checks the fields against each other; see [`ReceiptError`].
    pub fn check(&self) -> Result<(), ReceiptError> {
        for (field, value) in [
            ("seq", self.seq),
            ("price", self.price.micros()),
            ("power", self.power),
            ("tasks", self.tasks),
            ("micros", self.micros),
            ("fuel", self.fuel.unwrap_or(0)),
            ("charge", self.charge.micros()),
            ("market price", self.market_price.micros()),
        ] {
            if value > MAX_INT {
                return Err(ReceiptError::OutOfRange { field, value });
            }
        }
        if self.seq == 0 {
            return Err(ReceiptError::Zero("seq"));
        }
        if self.tasks == 0 {
            return Err(ReceiptError::Zero("tasks"));
        }
        if self.payer == self.payee {
            // Paying oneself moves nothing; refusing it keeps a node from
            // inflating its own history.
            return Err(ReceiptError::SelfPayment(self.payer));
        }
        if self.issued > LAST_DATE_SECS {
            return Err(ReceiptError::DateOutOfRange(self.issued));
        }
        let range = metered_range(self.price, self.power, self.tasks, self.micros)?;
        if !range.contains(&self.charge) {
            return Err(ReceiptError::ChargeMismatch {
                charge: self.charge,
                min: *range.start(),
                max: *range.end(),
                tasks: self.tasks,
                micros: self.micros,
                price: self.price,
                power: self.power,
            });
        }
        Ok(())
    }

    /// The frame without its `Sig` header.
    fn unsigned_frame(&self) -> Frame {
        let mut frame = Frame::new(
            self.market_price,
            Message::Receipt {
                job: self.job,
                payer: self.payer,
                payee: self.payee,
                price: self.price,
                power: self.power,
                micros: self.micros,
                charge: self.charge,
            },
        )
        .with_header("Seq", self.seq.to_string())
        .with_header("Tasks", self.tasks.to_string());
        if let Some(fuel) = self.fuel {
            frame = frame.with_header("Fuel", fuel.to_string());
        }
        // Only called on checked fields, whose `issued` is within what
        // SystemTime holds and httpdate formats.
        let issued = UNIX_EPOCH
            .checked_add(Duration::from_secs(self.issued))
            .unwrap_or(UNIX_EPOCH);
        frame.with_header("Date", httpdate::fmt_http_date(issued))
    }
}

/// Whole seconds since the Unix epoch (0 before it), for
/// [`ReceiptFields::issued`].
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A signed receipt: its fields, and the exact bytes the payer signed.
///
/// It is only ever built from those bytes (or by signing), so the fields
/// always say what the bytes say. Equality is byte equality.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Receipt {
    fields: ReceiptFields,
    signature: Vec<u8>,
    bytes: Bytes,
    /// Length of the prefix of `bytes` the signature covers.
    signed_len: usize,
}

const HEADERS_WITH_FUEL: [&str; 5] = ["Seq", "Tasks", "Fuel", "Date", "Sig"];
const HEADERS_NO_FUEL: [&str; 4] = ["Seq", "Tasks", "Date", "Sig"];

impl Receipt {
    /// Checks `fields`, encodes them, has `signer` sign the bytes, and
    /// returns the receipt.
    pub fn signed(fields: ReceiptFields, signer: &dyn Signer) -> Result<Self, ReceiptError> {
        fields.check()?;
        let out = wire::encode_signed(&fields.unsigned_frame(), |m| signer.sign(m));
        // Parsing what we built keeps one definition of validity.
        Self::from_bytes(&out)
    }

    /// Decodes and checks a receipt received or stored as bytes. The bytes
    /// must be exactly the canonical encoding (see the module doc). The
    /// signature is not checked here: see [`Receipt::verify`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ReceiptError> {
        if bytes.len() > MAX_FRAME_LEN {
            return Err(ReceiptError::TooLarge(bytes.len()));
        }
        let frame = wire::decode_datagram(bytes, &Limits::datagram())?;
        let receipt = Self::from_frame(&frame)?;
        if receipt.bytes != bytes {
            return Err(ReceiptError::NotCanonical);
        }
        Ok(receipt)
    }

    /// Checks a decoded frame and takes it as a receipt. Its bytes are the
    /// frame's canonical encoding; if the sender's bytes differed, the
    /// signature will not verify. Prefer [`Receipt::from_bytes`] when the
    /// bytes are at hand.
    pub fn from_frame(frame: &Frame) -> Result<Self, ReceiptError> {
        let Message::Receipt {
            job,
            payer,
            payee,
            price,
            power,
            micros,
            charge,
        } = frame.message
        else {
            return Err(ReceiptError::NotAReceipt(frame.message.kind()));
        };
        if frame.body.is_some() {
            return Err(ReceiptError::HasBody);
        }
        let names: Vec<&str> = frame.headers.iter().map(|h| h.name.as_str()).collect();
        if names != HEADERS_WITH_FUEL && names != HEADERS_NO_FUEL {
            return Err(ReceiptError::Layout(names.join(", ")));
        }
        let h = &frame.headers;
        let header = |name: &'static str| -> Result<&str, ReceiptError> {
            h.get(name).ok_or(ReceiptError::BadHeader {
                name,
                reason: "missing".into(),
            })
        };
        let seq = parse_decimal("Seq", header("Seq")?)?;
        let tasks = parse_decimal("Tasks", header("Tasks")?)?;
        let fuel = match h.get("Fuel") {
            Some(v) => Some(parse_decimal("Fuel", v)?),
            None => None,
        };
        let issued = parse_date(header("Date")?)?;
        let sig_text = header("Sig")?;
        let signature = B64.decode(sig_text).map_err(|e| ReceiptError::BadHeader {
            name: "Sig",
            reason: e.to_string(),
        })?;
        if signature.is_empty() {
            return Err(ReceiptError::BadHeader {
                name: "Sig",
                reason: "empty".into(),
            });
        }
        let fields = ReceiptFields {
            job,
            payer,
            payee,
            seq,
            price,
            power,
            tasks,
            micros,
            fuel,
            charge,
            issued,
            market_price: frame.price,
        };
        fields.check()?;
        let bytes = frame.to_bytes();
        if bytes.len() > MAX_FRAME_LEN {
            return Err(ReceiptError::TooLarge(bytes.len()));
        }
        // The encoding ends "Sig: <value>\r\n\r\n"; the signature covers
        // everything before that line.
        let sig_line = "Sig: ".len() + sig_text.len() + 2;
        let signed_len = bytes
            .len()
            .checked_sub(sig_line + 2)
            .ok_or(ReceiptError::NotCanonical)?;
        Ok(Self {
            fields,
            signature,
            bytes: Bytes::from(bytes),
            signed_len,
        })
    }

    /// Checks the payer's signature over [`Receipt::signed_bytes`]. The
    /// caller holds the certificates; this crate has none.
    pub fn verify(&self, verifier: &dyn Verifier) -> Result<(), ReceiptError> {
        if verifier.verify(&self.fields.payer, self.signed_bytes(), &self.signature) {
            Ok(())
        } else {
            Err(ReceiptError::BadSignature {
                payer: self.fields.payer,
                seq: self.fields.seq,
            })
        }
    }

    pub fn fields(&self) -> &ReceiptFields {
        &self.fields
    }
    pub fn payer(&self) -> NodeId {
        self.fields.payer
    }
    pub fn payee(&self) -> NodeId {
        self.fields.payee
    }
    pub fn seq(&self) -> u64 {
        self.fields.seq
    }
    pub fn job(&self) -> JobId {
        self.fields.job
    }
    pub fn charge(&self) -> Bounty {
        self.fields.charge
    }
    /// When the payer signed (the `Date` header).
    pub fn issued_time(&self) -> SystemTime {
        // Checked fields hold a date before the year 10000.
        UNIX_EPOCH
            .checked_add(Duration::from_secs(self.fields.issued))
            .unwrap_or(UNIX_EPOCH)
    }
    /// The payer's signature (decoded from the `Sig` header).
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }
    /// The whole signed frame, exactly as signed.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
    /// The whole signed frame, shared without copying (for sending to many peers).
    pub fn bytes(&self) -> Bytes {
        self.bytes.clone()
    }
    /// The whole signed frame, as an owned buffer.
    pub fn to_frame_bytes(&self) -> Vec<u8> {
        self.bytes.to_vec()
    }
    /// The part of the frame the signature covers.
    pub fn signed_bytes(&self) -> &[u8] {
        self.bytes.get(..self.signed_len).unwrap_or_default()
    }
    /// The receipt as a frame (encodes back to [`Receipt::as_bytes`]).
    pub fn to_frame(&self) -> Frame {
        self.fields
            .unsigned_frame()
            .with_header("Sig", B64.encode(&self.signature))
    }
}

/// Decimal without sign or leading zeros, so that every value has one text.
fn parse_decimal(name: &'static str, s: &str) -> Result<u64, ReceiptError> {
    let bad = |reason: &str| ReceiptError::BadHeader {
        name,
        reason: format!("{s:?} {reason}"),
    };
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("is not a decimal number"));
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(bad("has a leading zero"));
    }
    s.parse().map_err(|_| bad("is too large"))
}

/// An RFC 1123 date (only that form) as whole seconds since the epoch.
fn parse_date(s: &str) -> Result<u64, ReceiptError> {
    let bad = || ReceiptError::BadHeader {
        name: "Date",
        reason: format!("{s:?} is not an RFC 1123 date"),
    };
    let t = httpdate::parse_http_date(s).map_err(|_| bad())?;
    let secs = t.duration_since(UNIX_EPOCH).map_err(|_| bad())?.as_secs();
    // httpdate also reads the RFC 850 and asctime forms.
    if secs > LAST_DATE_SECS || httpdate::fmt_http_date(t) != s {
        return Err(bad());
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metered_range_brackets_per_task_sums() {
        let price: Price = "1.5".parse().unwrap();
        // Three tasks of 1 us at 1 MFLOPS: each charges floor(1.5) = 1, the
        // sum of times charges floor(4.5) = 4.
        let r = metered_range(price, 1, 3, 3).unwrap();
        assert_eq!(r, Bounty::from_micros(2)..=Bounty::from_micros(4));
        assert!(r.contains(&Bounty::from_micros(3)));
        // One task: exactly money::charge.
        let r = metered_range(price, 2400, 1, 183_250).unwrap();
        assert_eq!(r.start(), r.end());
        assert_eq!(*r.end(), "659.7".parse().unwrap());
    }

    #[test]
    fn decimals_are_canonical() {
        assert_eq!(parse_decimal("Seq", "7").unwrap(), 7);
        for bad in ["", "07", "+7", "-7", "7 ", "1e3", "18446744073709551616"] {
            assert!(parse_decimal("Seq", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dates_are_rfc1123_only() {
        assert_eq!(
            parse_date("Wed, 25 Nov 2026 09:35:02 GMT").unwrap(),
            1_795_599_302
        );
        assert!(parse_date("Wednesday, 25-Nov-26 09:35:02 GMT").is_err());
        assert!(parse_date("Wed Nov 25 09:35:02 2026").is_err());
    }
}
