//! Signed beacons: how Hand, Leave and Idle datagrams are laid out, signed
//! and checked (DESIGN 4.4).
//!
//! A beacon is one frame in one UDP datagram. Its headers are, in order:
//! `Date`, `Node`, `Seq`, then kind-specific ones (`Cert`, `Protocol`,
//! `Software`, `Slots`, `Reserve` and `Epoch` on Hand, `Queue` on Idle),
//! and last `Sig`. The signature
//! covers every byte of the datagram before the `Sig` line, so a receiver
//! verifies the bytes it received, not a re-encoding. `Seq` grows with every
//! beacon a node sends (it starts from the node's wall clock in ms, so it
//! keeps growing across restarts); with the `Date` it stops replays.
//!
//! The cryptography is behind [`BeaconCrypto`], implemented by the identity
//! code next to TLS, so this module stays pure.

use std::time::SystemTime;

use base64::Engine as _;

use crate::money::Price;
use crate::node_id::NodeId;
use crate::wire::{self, Frame, Limits, Message};

/// Checks certificates and signatures (implemented with the community CA).
pub trait BeaconCrypto {
    /// Verifies that `cert_der` chains to the community CA and is valid at
    /// `now`; returns the NodeId of its key.
    fn verify_cert(&self, cert_der: &[u8], now: SystemTime) -> Result<NodeId, String>;
    /// Verifies `sig` over `msg` with the key in `cert_der`.
    fn verify_signature(&self, cert_der: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), String>;
}

/// Why a beacon was dropped. Each is counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Not a decodable frame, or not a beacon kind.
    Malformed,
    /// No `Sig`, `Node`, `Seq` or `Date`, or `Sig` not last.
    Unsigned,
    /// The certificate does not chain to our community CA.
    ForeignCa,
    /// The `Node` header is not the certificate's key.
    NodeMismatch,
    /// The signature does not verify.
    BadSignature,
    /// Sequence number not above the last one seen from that node.
    Replayed,
    /// `Date` too far from our clock.
    Stale,
    /// Leave or Idle from a node with no Hand in the book (its key is unknown).
    UnknownSender,
}

impl DropReason {
    pub const ALL: [DropReason; 8] = [
        Self::Malformed,
        Self::Unsigned,
        Self::ForeignCa,
        Self::NodeMismatch,
        Self::BadSignature,
        Self::Replayed,
        Self::Stale,
        Self::UnknownSender,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Unsigned => "unsigned",
            Self::ForeignCa => "foreign_ca",
            Self::NodeMismatch => "node_mismatch",
            Self::BadSignature => "bad_signature",
            Self::Replayed => "replayed",
            Self::Stale => "stale",
            Self::UnknownSender => "unknown_sender",
        }
    }
}

/// The header names of a beacon, as written on the wire (read
/// case-insensitively); [`BeaconHeaders`] and [`VerifiedBeacon`] are the
/// only readers and writers.
pub mod name {
    pub const DATE: &str = "Date";
    pub const NODE: &str = "Node";
    pub const SEQ: &str = "Seq";
    /// Hand: the sender's certificate, DER in base64.
    pub const CERT: &str = "Cert";
    pub const PROTOCOL: &str = "Protocol";
    pub const SOFTWARE: &str = "Software";
    /// Idle: tasks queued or running at the sender.
    pub const QUEUE: &str = "Queue";
    /// Hand: slots offered at the frame's price.
    pub const SLOTS: &str = "Slots";
    /// Hand: the sender's reserve price.
    pub const RESERVE: &str = "Reserve";
    /// Hand: the round behind the committed price.
    pub const EPOCH: &str = "Epoch";
    /// The signature, last.
    pub const SIG: &str = "Sig";
}

/// What the sender of a beacon needs to put in it.
#[derive(Debug, Clone)]
pub struct BeaconHeaders<'a> {
    pub node: NodeId,
    pub seq: u64,
    pub date: SystemTime,
    /// Hand only: the sender's certificate, DER.
    pub cert_der: Option<&'a [u8]>,
    /// Hand only: protocol version spoken (`1.0`).
    pub protocol: Option<&'a str>,
    /// Hand only: software name and version.
    pub software: Option<&'a str>,
    /// Idle only: tasks queued or running at the sender.
    pub queue: Option<u64>,
    /// Hand only: task slots offered at the frame's price (0 for a node
    /// that does not compute, or whose reserve is above that price).
    pub slots: Option<u32>,
    /// Hand only: the sender's reserve price, the lowest at which it offers
    /// any slot; left out when it is 0 (any price).
    pub reserve: Option<Price>,
    /// Hand only: the round that set the committed price the frame carries
    /// (`Epoch: <epoch> <proposer or ->`), so that peers converge on it.
    pub epoch: Option<(u64, Option<NodeId>)>,
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Builds a signed beacon datagram. `sign` signs the bytes it is given.
pub fn build(
    price: Price,
    message: Message,
    h: &BeaconHeaders<'_>,
    sign: impl FnOnce(&[u8]) -> Vec<u8>,
) -> Vec<u8> {
    let mut frame = Frame::new(price, message)
        .with_header(name::DATE, httpdate::fmt_http_date(h.date))
        .with_header(name::NODE, h.node.to_string())
        .with_header(name::SEQ, h.seq.to_string());
    if let Some(cert) = h.cert_der {
        frame = frame.with_header(name::CERT, B64.encode(cert));
    }
    if let Some(p) = h.protocol {
        frame = frame.with_header(name::PROTOCOL, p);
    }
    if let Some(s) = h.software {
        frame = frame.with_header(name::SOFTWARE, s);
    }
    if let Some(q) = h.queue {
        frame = frame.with_header(name::QUEUE, q.to_string());
    }
    if let Some(n) = h.slots {
        frame = frame.with_header(name::SLOTS, n.to_string());
    }
    if let Some(r) = h.reserve.filter(|r| *r > Price::ZERO) {
        frame = frame.with_header(name::RESERVE, r.to_string());
    }
    if let Some((epoch, proposer)) = h.epoch {
        let who = proposer.map_or_else(|| "-".to_string(), |p| p.to_string());
        frame = frame.with_header(name::EPOCH, format!("{epoch} {who}"));
    }
    wire::encode_signed(&frame, sign)
}

/// A beacon whose signature and freshness have been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedBeacon {
    pub node: NodeId,
    pub seq: u64,
    pub price: Price,
    pub message: Message,
    /// Hand only.
    pub cert_der: Option<Vec<u8>>,
    pub protocol: Option<String>,
    pub software: Option<String>,
    pub queue: Option<u64>,
    pub slots: Option<u32>,
    /// Hand only: the sender's reserve price (a `Price`, so bounded by the
    /// amount grammar); `None` when absent or not an amount.
    pub reserve: Option<Price>,
    /// Hand only: the sender's committed (epoch, proposer).
    pub epoch: Option<(u64, Option<NodeId>)>,
}

/// Parses an `Epoch` header value: `<epoch> <proposer or ->`.
fn parse_epoch(v: &str) -> Option<(u64, Option<NodeId>)> {
    let (e, who) = v.split_once(' ')?;
    let epoch = e.parse().ok()?;
    let proposer = match who {
        "-" => None,
        w => Some(w.parse().ok()?),
    };
    Some((epoch, proposer))
}

/// A beacon decoded but not yet checked against the book's state
/// (sequence numbers, keys of known peers).
#[derive(Debug)]
pub struct ParsedBeacon<'a> {
    pub frame: Frame,
    pub node: NodeId,
    pub seq: u64,
    pub date: SystemTime,
    pub cert_der: Option<Vec<u8>>,
    /// The bytes the signature covers.
    pub signed: &'a [u8],
    pub sig: Vec<u8>,
}

/// Decodes a datagram and checks its beacon layout (not yet its signature).
pub fn parse(datagram: &[u8]) -> Result<ParsedBeacon<'_>, DropReason> {
    let frame =
        wire::decode_datagram(datagram, &Limits::datagram()).map_err(|_| DropReason::Malformed)?;
    // Beacons, and the price agreement messages that ride the same signed
    // channel so that every node hears every round.
    if !matches!(
        frame.message,
        Message::Hand(_)
            | Message::Leave { .. }
            | Message::Idle { .. }
            | Message::Propose { .. }
            | Message::Vote { .. }
            | Message::Commit { .. }
    ) || frame.body.is_some()
    {
        return Err(DropReason::Malformed);
    }
    let last = frame.headers.0.last().ok_or(DropReason::Unsigned)?;
    if !last.name.eq_ignore_ascii_case(name::SIG) {
        return Err(DropReason::Unsigned);
    }
    let sig = B64.decode(&last.value).map_err(|_| DropReason::Unsigned)?;
    // The datagram decoded whole and ends with "Sig: <value>\r\n\r\n", so
    // the signed part is what precedes the Sig line.
    let sig_line_len = last.name.len() + 2 + last.value.len() + 4;
    let signed = datagram
        .len()
        .checked_sub(sig_line_len)
        .and_then(|n| datagram.get(..n))
        .ok_or(DropReason::Unsigned)?;
    if !signed.ends_with(b"\r\n") {
        // The Sig value had surrounding blanks; the layout is not ours.
        return Err(DropReason::Unsigned);
    }
    let node = frame
        .headers
        .get(name::NODE)
        .and_then(|v| v.parse().ok())
        .ok_or(DropReason::Unsigned)?;
    let seq = frame
        .headers
        .get(name::SEQ)
        .and_then(|v| v.parse().ok())
        .ok_or(DropReason::Unsigned)?;
    let date = frame
        .headers
        .get(name::DATE)
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .ok_or(DropReason::Unsigned)?;
    let cert_der = match frame.headers.get(name::CERT) {
        Some(v) => Some(B64.decode(v).map_err(|_| DropReason::Malformed)?),
        None => None,
    };
    if matches!(frame.message, Message::Hand(_)) && cert_der.is_none() {
        return Err(DropReason::Unsigned);
    }
    Ok(ParsedBeacon {
        frame,
        node,
        seq,
        date,
        cert_der,
        signed,
        sig,
    })
}

impl ParsedBeacon<'_> {
    /// Checks freshness, the certificate (when `known_cert` is None, the
    /// beacon must carry one) and the signature.
    pub fn verify(
        self,
        crypto: &dyn BeaconCrypto,
        known_cert: Option<&[u8]>,
        now: SystemTime,
        max_skew: std::time::Duration,
    ) -> Result<VerifiedBeacon, DropReason> {
        let skew = match now.duration_since(self.date) {
            Ok(d) => d,
            Err(e) => e.duration(),
        };
        if skew > max_skew {
            return Err(DropReason::Stale);
        }
        let cert: &[u8] = match (&self.cert_der, known_cert) {
            // A Hand's own certificate is checked every time: it may be a
            // new certificate for the same key (re-issued).
            (Some(c), _) => {
                let id = crypto
                    .verify_cert(c, now)
                    .map_err(|_| DropReason::ForeignCa)?;
                if id != self.node {
                    return Err(DropReason::NodeMismatch);
                }
                c
            }
            (None, Some(k)) => k,
            (None, None) => return Err(DropReason::UnknownSender),
        };
        crypto
            .verify_signature(cert, self.signed, &self.sig)
            .map_err(|_| DropReason::BadSignature)?;
        let h = &self.frame.headers;
        Ok(VerifiedBeacon {
            node: self.node,
            seq: self.seq,
            price: self.frame.price,
            protocol: h.get(name::PROTOCOL).map(str::to_string),
            software: h.get(name::SOFTWARE).map(str::to_string),
            queue: h.get(name::QUEUE).and_then(|q| q.parse().ok()),
            slots: h.get(name::SLOTS).and_then(|q| q.parse().ok()),
            reserve: h.get(name::RESERVE).and_then(|r| r.parse().ok()),
            epoch: h.get(name::EPOCH).and_then(parse_epoch),
            message: self.frame.message,
            cert_der: self.cert_der,
        })
    }
}
