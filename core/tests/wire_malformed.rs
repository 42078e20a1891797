//! One row per malformed input: the bytes, the error kind the decoders must
//! report and the byte offset it must name.
//!
//! Each stream row is checked with the input handed over whole, fed one byte
//! at a time, and as a datagram; all three must give the same error. After a
//! recoverable error the stream must go on with the next frame; after any
//! other error the decoder must keep returning that error.

use bytes::BytesMut;
use lppsp_core::money::AmountError;
use lppsp_core::wire::{
    decode_datagram, DecodeError, DecodeErrorKind as K, Frame, Limits, MessageError as M,
    StreamDecoder,
};

const JOB: &str = "00c0ffee00000001";
const NODE: &str = "0123456789abcdef";
/// A valid frame, 22 bytes.
const VALID: &[u8] = b"LPPSP/1\r\nIdle/true\r\n\r\n";
/// The head of a chunked frame; its body starts at byte 50.
const CHUNKED: &str = "LPPSP/1\r\nIdle/true\r\nTransfer-Encoding: chunked\r\n\r\n";
const BODY_AT: u64 = 50;
/// Headers of `frame("Idle/true", ..)` start here.
const HEADERS_AT: u64 = 20;

/// A frame with the given message line and header lines (each ending CRLF).
fn frame(message: &str, headers: &str) -> Vec<u8> {
    format!("LPPSP/1\r\n{message}\r\n{headers}\r\n").into_bytes()
}

/// A frame whose message line is `message`, no headers.
fn msg(message: &str) -> Vec<u8> {
    frame(message, "")
}

fn idle_with(headers: &str) -> Vec<u8> {
    frame("Idle/true", headers)
}

fn chunked(body: &[u8]) -> Vec<u8> {
    let mut v = CHUNKED.as_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

struct Check {
    desc: &'static str,
    f: fn(&K) -> bool,
}

macro_rules! is {
    ($($pat:tt)+) => {
        Check {
            desc: stringify!($($pat)+),
            f: |k: &K| matches!(k, $($pat)+),
        }
    };
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    /// Stream decoder and datagram decoder report the same error.
    Stream,
    /// Only the datagram decoder errs (truncation, trailing bytes).
    Datagram,
}

struct Case {
    name: String,
    input: Vec<u8>,
    limits: Limits,
    offset: u64,
    recoverable: bool,
    check: Check,
    mode: Mode,
    /// For message errors: `kind/field` of a Field error, or
    /// `kind/expected/got` of a FieldCount error.
    detail: Option<String>,
}

fn fatal(name: impl Into<String>, input: Vec<u8>, offset: u64, check: Check) -> Case {
    Case {
        name: name.into(),
        input,
        limits: Limits::default(),
        offset,
        recoverable: false,
        check,
        mode: Mode::Stream,
        detail: None,
    }
}

fn soft(name: impl Into<String>, input: Vec<u8>, offset: u64, check: Check) -> Case {
    Case {
        recoverable: true,
        ..fatal(name, input, offset, check)
    }
}

fn datagram(name: impl Into<String>, input: Vec<u8>, offset: u64, check: Check) -> Case {
    Case {
        mode: Mode::Datagram,
        ..fatal(name, input, offset, check)
    }
}

impl Case {
    fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}

fn small(f: impl FnOnce(&mut Limits)) -> Limits {
    let mut l = Limits::default();
    f(&mut l);
    l
}

/// A `Field` error of `kind` naming `field`.
fn field_error(line: &str, kind: &str, field: &str) -> Case {
    Case {
        detail: Some(format!("{kind}/{field}")),
        ..soft(
            format!("bad {kind} {field}: {line}"),
            msg(line),
            9,
            is!(K::Message(M::Field { .. })),
        )
    }
}

fn cases() -> Vec<Case> {
    let j = JOB;
    let n = NODE;
    let mut v = vec![
        // --- Line framing ---------------------------------------------------
        fatal(
            "bare LF ends the protocol line",
            b"LPPSP/1\nIdle/true\r\n\r\n".to_vec(),
            7,
            is!(K::BareLf),
        ),
        fatal(
            "bare LF ends a header line",
            b"LPPSP/1\r\nIdle/true\r\nA: b\n\r\n".to_vec(),
            24,
            is!(K::BareLf),
        ),
        fatal(
            "bare LF as the blank line",
            b"LPPSP/1\r\nIdle/true\r\n\n".to_vec(),
            20,
            is!(K::BareLf),
        ),
        fatal(
            "bare CR in the message line",
            b"LPPSP/1\r\nIdle/tr\rue\r\n\r\n".to_vec(),
            16,
            is!(K::BareCr),
        ),
        fatal(
            "bare CR in a header value",
            b"LPPSP/1\r\nIdle/true\r\nA: b\rc\r\n\r\n".to_vec(),
            24,
            is!(K::BareCr),
        ),
        fatal(
            "CR CR LF",
            b"LPPSP/1\r\r\nIdle/true\r\n\r\n".to_vec(),
            7,
            is!(K::BareCr),
        ),
        fatal(
            "line too long",
            msg(&format!("Hand/{}", "x".repeat(20))),
            9,
            is!(K::LineTooLong { limit: 16 }),
        )
        .limits(small(|l| l.max_line = 16)),
        fatal(
            "line too long, no LF yet",
            format!("LPPSP/1\r\nIdle/{}", "x".repeat(30)).into_bytes(),
            9,
            is!(K::LineTooLong { limit: 16 }),
        )
        .limits(small(|l| l.max_line = 16)),
        fatal(
            "line too long, ends in a bare LF",
            format!("LPPSP/1\r\n{}\n", "x".repeat(18)).into_bytes(),
            9,
            is!(K::LineTooLong { limit: 16 }),
        )
        .limits(small(|l| l.max_line = 16)),
        fatal(
            "line one over the limit, ends in a bare LF",
            format!("LPPSP/1\r\n{}\n", "x".repeat(17)).into_bytes(),
            26,
            is!(K::BareLf),
        )
        .limits(small(|l| l.max_line = 16)),
        fatal(
            "header line too long",
            idle_with(&format!("X: {}\r\n", "y".repeat(14))),
            HEADERS_AT,
            is!(K::LineTooLong { limit: 16 }),
        )
        .limits(small(|l| l.max_line = 16)),
        // --- Protocol line --------------------------------------------------
        fatal(
            "HTTP request line",
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            0,
            is!(K::BadProtocolLine(l) if l == "GET / HTTP/1.1"),
        ),
        fatal(
            "lowercase protocol name",
            b"lppsp/1\r\nIdle/true\r\n\r\n".to_vec(),
            0,
            is!(K::BadProtocolLine(l) if l == "lppsp/1"),
        ),
        fatal(
            "no slash after LPPSP",
            b"LPPSP 1\r\nIdle/true\r\n\r\n".to_vec(),
            0,
            is!(K::BadProtocolLine(_)),
        ),
        fatal(
            "empty first line",
            b"\r\nIdle/true\r\n\r\n".to_vec(),
            0,
            is!(K::BadProtocolLine(l) if l.is_empty()),
        ),
        fatal(
            "non-UTF-8 protocol line",
            b"LPPSP\xff/1\r\nIdle/true\r\n\r\n".to_vec(),
            0,
            is!(K::BadProtocolLine(l) if l == "LPPSP\u{fffd}/1"),
        ),
        fatal(
            "message line first",
            b"Idle/true\r\n\r\n".to_vec(),
            0,
            is!(K::BadProtocolLine(_)),
        ),
        // --- Price ----------------------------------------------------------
        fatal(
            "empty price",
            b"LPPSP/\r\nIdle/true\r\n\r\n".to_vec(),
            0,
            is!(K::BadPrice(AmountError::Empty)),
        ),
        fatal(
            "negative price",
            b"LPPSP/-1\r\nIdle/true\r\n\r\n".to_vec(),
            0,
            is!(K::BadPrice(AmountError::Syntax(s)) if s == "-1"),
        ),
        fatal(
            "blank before the price",
            b"LPPSP/ 1\r\nIdle/true\r\n\r\n".to_vec(),
            0,
            is!(K::BadPrice(AmountError::Syntax(_))),
        ),
        fatal(
            "two decimal points",
            b"LPPSP/1.5.0\r\nIdle/true\r\n\r\n".to_vec(),
            0,
            is!(K::BadPrice(AmountError::Syntax(_))),
        ),
        fatal(
            "price ends in a point",
            b"LPPSP/1.\r\nIdle/true\r\n\r\n".to_vec(),
            0,
            is!(K::BadPrice(AmountError::Syntax(_))),
        ),
        fatal(
            "price starts with a point",
            b"LPPSP/.5\r\nIdle/true\r\n\r\n".to_vec(),
            0,
            is!(K::BadPrice(AmountError::Syntax(_))),
        ),
        fatal(
            "price with exponent",
            b"LPPSP/1e3\r\nIdle/true\r\n\r\n".to_vec(),
            0,
            is!(K::BadPrice(AmountError::Syntax(_))),
        ),
        fatal(
            "price with leading zero",
            b"LPPSP/01\r\nIdle/true\r\n\r\n".to_vec(),
            0,
            is!(K::BadPrice(AmountError::LeadingZero(s)) if s == "01"),
        ),
        fatal(
            "price with 7 decimals",
            b"LPPSP/1.0000001\r\nIdle/true\r\n\r\n".to_vec(),
            0,
            is!(K::BadPrice(AmountError::TooPrecise(_))),
        ),
        fatal(
            "price too large",
            b"LPPSP/18446744073710\r\nIdle/true\r\n\r\n".to_vec(),
            0,
            is!(K::BadPrice(AmountError::Overflow(_))),
        ),
        fatal(
            "price one micro-unit too large",
            b"LPPSP/18446744073709.551616\r\nIdle/true\r\n\r\n".to_vec(),
            0,
            is!(K::BadPrice(AmountError::Overflow(_))),
        ),
        // --- Message line characters ------------------------------------------
        fatal(
            "non-ASCII in the message line",
            b"LPPSP/1\r\nIdle/tr\xc3\xbce\r\n\r\n".to_vec(),
            16,
            is!(K::BadMessageChar),
        ),
        fatal(
            "space in the message line",
            msg("Idle/ true"),
            14,
            is!(K::BadMessageChar),
        ),
        fatal(
            "tab in the message line",
            msg("Idle/\ttrue"),
            14,
            is!(K::BadMessageChar),
        ),
        fatal(
            "DEL in the message line",
            msg("Idle/true\x7f"),
            18,
            is!(K::BadMessageChar),
        ),
        fatal(
            "NUL starts the message line",
            msg("\0Idle/true"),
            9,
            is!(K::BadMessageChar),
        ),
        // --- Message kind and field count (recoverable) -----------------------
        soft(
            "unknown kind",
            msg("Hello/1"),
            9,
            is!(K::Message(M::UnknownKind(k)) if k == "Hello"),
        ),
        soft(
            "kind in lowercase",
            msg("idle/true"),
            9,
            is!(K::Message(M::UnknownKind(k)) if k == "idle"),
        ),
        soft(
            "empty message line",
            b"LPPSP/1\r\n\r\n\r\n".to_vec(),
            9,
            is!(K::Message(M::UnknownKind(k)) if k.is_empty()),
        ),
        soft(
            "unknown kind with headers and a body",
            chunked(b"3\r\nabc\r\n0\r\n\r\n").replace_message("Gossip/x/y"),
            9,
            is!(K::Message(M::UnknownKind(k)) if k == "Gossip"),
        ),
    ];

    // Wrong field counts, one or more per kind.
    let counts: Vec<(String, &str, usize, usize)> = vec![
        ("Hand/10.0.0.1/1000/x86_64/false".into(), "Hand", 5, 4),
        (
            "Hand/10.0.0.1/1000/x86_64/false/NULL/x".into(),
            "Hand",
            5,
            6,
        ),
        ("Leave".into(), "Leave", 1, 0),
        ("Leave/10.0.0.1/x".into(), "Leave", 1, 2),
        ("Idle".into(), "Idle", 1, 0),
        ("Idle/true/false".into(), "Idle", 1, 2),
        (format!("Task/{j}/1"), "Task", 3, 2),
        (format!("Accept/{j}/1/2"), "Accept", 2, 3),
        (format!("Refuse/{j}/1"), "Refuse", 3, 2),
        (format!("Result/{j}/1/ok/x"), "Result", 3, 4),
        (format!("Cancel/{j}"), "Cancel", 2, 1),
        (format!("Integrate/{j}/3"), "Integrate", 3, 2),
        (format!("Integrated/{j}/ok/x"), "Integrated", 2, 3),
        (format!("Module/{j}"), "Module", 2, 1),
        ("Heads/1/2".into(), "Heads", 1, 2),
        ("Want".into(), "Want", 1, 0),
        ("Propose/1/2".into(), "Propose", 3, 2),
        (format!("Vote/1/{n}/2/yes/x"), "Vote", 4, 5),
        (format!("Commit/1/2/{n}/x"), "Commit", 3, 4),
        (format!("Receipt/{j}/{n}/{n}/1/2/3"), "Receipt", 7, 6),
    ];
    for (line, kind, expected, got) in counts {
        v.push(Case {
            detail: Some(format!("{kind}/{expected}/{got}")),
            ..soft(
                format!("field count: {line}"),
                msg(&line),
                9,
                is!(K::Message(M::FieldCount { .. })),
            )
        });
    }

    // A bad value in each field of each kind.
    let h = |ip: &str, power: &str, arch: &str, client: &str, bounty: &str| {
        format!("Hand/{ip}/{power}/{arch}/{client}/{bounty}")
    };
    let fields: Vec<(String, &'static str, &'static str)> = vec![
        (h("10.0.0", "1000", "x86_64", "false", "NULL"), "Hand", "IP"),
        (
            h("10.0.0.1:65536", "1000", "x86_64", "false", "NULL"),
            "Hand",
            "IP",
        ),
        (h("::1", "1000", "x86_64", "false", "NULL"), "Hand", "IP"),
        (h("[::1", "1000", "x86_64", "false", "NULL"), "Hand", "IP"),
        (
            h("host.lan", "1000", "x86_64", "false", "NULL"),
            "Hand",
            "IP",
        ),
        (
            h("10.0.0.1", "-1", "x86_64", "false", "NULL"),
            "Hand",
            "Processing_Power",
        ),
        (
            h("10.0.0.1", "01", "x86_64", "false", "NULL"),
            "Hand",
            "Processing_Power",
        ),
        (
            h("10.0.0.1", "", "x86_64", "false", "NULL"),
            "Hand",
            "Processing_Power",
        ),
        (
            h(
                "10.0.0.1",
                "18446744073709551616",
                "x86_64",
                "false",
                "NULL",
            ),
            "Hand",
            "Processing_Power",
        ),
        (
            h("10.0.0.1", "1.5", "x86_64", "false", "NULL"),
            "Hand",
            "Processing_Power",
        ),
        (
            h("10.0.0.1", "1000", "x86$64", "false", "NULL"),
            "Hand",
            "Architecture",
        ),
        (
            h("10.0.0.1", "1000", "", "false", "NULL"),
            "Hand",
            "Architecture",
        ),
        (
            h("10.0.0.1", "1000", &"a".repeat(33), "false", "NULL"),
            "Hand",
            "Architecture",
        ),
        (
            h("10.0.0.1", "1000", "x86_64", "yes", "NULL"),
            "Hand",
            "Is_Client",
        ),
        (
            h("10.0.0.1", "1000", "x86_64", "True", "NULL"),
            "Hand",
            "Is_Client",
        ),
        (
            h("10.0.0.1", "1000", "x86_64", "true", "NULL"),
            "Hand",
            "Remaining_Bounty",
        ),
        (
            h("10.0.0.1", "1000", "x86_64", "false", "12"),
            "Hand",
            "Remaining_Bounty",
        ),
        (
            h("10.0.0.1", "1000", "x86_64", "false", "null"),
            "Hand",
            "Remaining_Bounty",
        ),
        (
            h("10.0.0.1", "1000", "x86_64", "true", "1.2345678"),
            "Hand",
            "Remaining_Bounty",
        ),
        (
            h("10.0.0.1", "1000", "x86_64", "true", "-3"),
            "Hand",
            "Remaining_Bounty",
        ),
        ("Leave/host.lan".into(), "Leave", "IP"),
        ("Leave/10.0.0.1:".into(), "Leave", "IP"),
        ("Leave/[fe80::1%2".into(), "Leave", "IP"),
        ("Idle/yes".into(), "Idle", "Is_Idle"),
        ("Idle/1".into(), "Idle", "Is_Idle"),
        ("Idle/".into(), "Idle", "Is_Idle"),
        ("Task/00C0FFEE00000001/1/sum".into(), "Task", "job"),
        ("Task/c0ffee/1/sum".into(), "Task", "job"),
        ("Task/00c0ffee000000011/1/sum".into(), "Task", "job"),
        ("Task/g0c0ffee00000001/1/sum".into(), "Task", "job"),
        (format!("Task/{j}/x/sum"), "Task", "task"),
        (format!("Task/{j}/007/sum"), "Task", "task"),
        (format!("Task/{j}/-1/sum"), "Task", "task"),
        (format!("Task/{j}/1/s+m"), "Task", "kernel"),
        (format!("Task/{j}/1/"), "Task", "kernel"),
        (format!("Task/{j}/1/{}", "k".repeat(81)), "Task", "kernel"),
        ("Accept//1".into(), "Accept", "job"),
        (format!("Accept/{j}/18446744073709551616"), "Accept", "task"),
        ("Refuse/1/1/busy".into(), "Refuse", "job"),
        (format!("Refuse/{j}/a/busy"), "Refuse", "task"),
        (format!("Refuse/{j}/1/Busy"), "Refuse", "reason"),
        (format!("Refuse/{j}/1/lazy"), "Refuse", "reason"),
        ("Result/x/1/ok".into(), "Result", "job"),
        (format!("Result/{j}/+1/ok"), "Result", "task"),
        (format!("Result/{j}/1/OK"), "Result", "status"),
        (format!("Result/{j}/1/failed"), "Result", "status"),
        ("Cancel/*/*".into(), "Cancel", "job"),
        (format!("Cancel/{j}/**"), "Cancel", "task"),
        (format!("Cancel/{j}/all"), "Cancel", "task"),
        (format!("Cancel/{j}/"), "Cancel", "task"),
        (format!("Integrate/{j}/-1/w1"), "Integrate", "tasks"),
        (format!("Integrate/{j}/3/k+k"), "Integrate", "kernel"),
        ("Integrated/zz/ok".into(), "Integrated", "job"),
        (format!("Integrated/{j}/fine"), "Integrated", "status"),
        ("Module/zz/wasm:00".into(), "Module", "job"),
        (format!("Module/{j}/k+k"), "Module", "kernel"),
        ("Heads/-1".into(), "Heads", "count"),
        ("Want/x".into(), "Want", "count"),
        (format!("Propose/e1/2/{n}"), "Propose", "epoch"),
        (format!("Propose/1/2./{n}"), "Propose", "price"),
        ("Propose/1/2/0123".into(), "Propose", "proposer"),
        (format!("Vote/01/{n}/2/yes"), "Vote", "epoch"),
        ("Vote/1/0123456789ABCDEF/2/yes".into(), "Vote", "proposer"),
        (format!("Vote/1/{n}/-2/yes"), "Vote", "price"),
        (format!("Vote/1/{n}/2/Yes"), "Vote", "vote"),
        (format!("Commit//2/{n}"), "Commit", "epoch"),
        (format!("Commit/1/-2/{n}"), "Commit", "price"),
        ("Commit/1/2/xyz".into(), "Commit", "proposer"),
        (format!("Receipt/{n}x/{n}/{n}/1/2/3/4"), "Receipt", "job"),
        (format!("Receipt/{j}/{n}0/{n}/1/2/3/4"), "Receipt", "payer"),
        (
            format!("Receipt/{j}/{n}/ABCDEF0123456789/1/2/3/4"),
            "Receipt",
            "payee",
        ),
        (
            format!("Receipt/{j}/{n}/{n}/1.0000001/2/3/4"),
            "Receipt",
            "price",
        ),
        (format!("Receipt/{j}/{n}/{n}/1/2.0/3/4"), "Receipt", "power"),
        (format!("Receipt/{j}/{n}/{n}/1/2/03/4"), "Receipt", "micros"),
        (format!("Receipt/{j}/{n}/{n}/1/2/3/04"), "Receipt", "charge"),
    ];
    for (line, kind, field) in fields {
        v.push(field_error(&line, kind, field));
    }

    v.extend([
        // --- Header lines ---------------------------------------------------
        fatal(
            "header without colon",
            idle_with("NoColon\r\n"),
            HEADERS_AT,
            is!(K::BadHeaderLine("no colon")),
        ),
        fatal(
            "folded header (space)",
            idle_with("A: b\r\n c\r\n"),
            HEADERS_AT + 6,
            is!(K::BadHeaderLine("folded (obsolete) header line")),
        ),
        fatal(
            "folded header (tab)",
            idle_with("A: b\r\n\tc\r\n"),
            HEADERS_AT + 6,
            is!(K::BadHeaderLine("folded (obsolete) header line")),
        ),
        fatal(
            "first header line starts with a blank",
            idle_with(" A: b\r\n"),
            HEADERS_AT,
            is!(K::BadHeaderLine("folded (obsolete) header line")),
        ),
        fatal(
            "empty header name",
            idle_with(": v\r\n"),
            HEADERS_AT,
            is!(K::BadHeaderLine("empty name")),
        ),
        fatal(
            "space in header name",
            idle_with("Bad Name: v\r\n"),
            HEADERS_AT + 3,
            is!(K::BadHeaderLine("name is not a token")),
        ),
        fatal(
            "space before the colon",
            idle_with("Name : v\r\n"),
            HEADERS_AT + 4,
            is!(K::BadHeaderLine("name is not a token")),
        ),
        fatal(
            "separator in header name",
            idle_with("Ba(d: v\r\n"),
            HEADERS_AT + 2,
            is!(K::BadHeaderLine("name is not a token")),
        ),
        fatal(
            "non-ASCII header name",
            idle_with("N\u{e4}me: v\r\n"),
            HEADERS_AT + 1,
            is!(K::BadHeaderLine("name is not a token")),
        ),
        fatal(
            "control character in header value",
            idle_with("A: b\x01c\r\n"),
            HEADERS_AT + 4,
            is!(K::BadHeaderLine("control character in value")),
        ),
        fatal(
            "NUL in header value",
            idle_with("A: \0\r\n"),
            HEADERS_AT + 3,
            is!(K::BadHeaderLine("control character in value")),
        ),
        fatal(
            "DEL in header value",
            idle_with("A: x\x7f\r\n"),
            HEADERS_AT + 4,
            is!(K::BadHeaderLine("control character in value")),
        ),
        fatal(
            "ESC in header value",
            idle_with("A: \x1b[31m\r\n"),
            HEADERS_AT + 3,
            is!(K::BadHeaderLine("control character in value")),
        ),
        fatal(
            "header value not UTF-8",
            cat(&[&VALID[..20], b"A: ok\xc3\r\n\r\n"]),
            HEADERS_AT + 5,
            is!(K::BadHeaderLine("value is not UTF-8")),
        ),
        fatal(
            "too many headers",
            idle_with("A: 1\r\nB: 2\r\nC: 3\r\n"),
            HEADERS_AT + 12,
            is!(K::TooManyHeaders { limit: 2 }),
        )
        .limits(small(|l| l.max_headers = 2)),
        fatal(
            "too many headers, bad Date among them",
            idle_with("Date: x\r\nB: 2\r\nC: 3\r\n"),
            HEADERS_AT + 15,
            is!(K::TooManyHeaders { limit: 2 }),
        )
        .limits(small(|l| l.max_headers = 2)),
        // --- Framing headers --------------------------------------------------
        fatal(
            "Transfer-Encoding gzip",
            idle_with("Transfer-Encoding: gzip\r\n"),
            HEADERS_AT,
            is!(K::UnsupportedTransferEncoding(v) if v == "gzip"),
        ),
        fatal(
            "Transfer-Encoding gzip, chunked",
            idle_with("Transfer-Encoding: gzip, chunked\r\n"),
            HEADERS_AT,
            is!(K::UnsupportedTransferEncoding(v) if v == "gzip, chunked"),
        ),
        fatal(
            "Transfer-Encoding identity (lowercase name)",
            idle_with("transfer-encoding: identity\r\n"),
            HEADERS_AT,
            is!(K::UnsupportedTransferEncoding(v) if v == "identity"),
        ),
        fatal(
            "Transfer-Encoding chunked twice",
            idle_with("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
            HEADERS_AT + 28,
            is!(K::UnsupportedTransferEncoding(v) if v == "chunked"),
        ),
        fatal(
            "Content-Length",
            idle_with("Content-Length: 0\r\n"),
            HEADERS_AT,
            is!(K::ContentLength),
        ),
        fatal(
            "Content-Length (lowercase) after Transfer-Encoding",
            idle_with("Transfer-Encoding: chunked\r\ncontent-length: 5\r\n"),
            HEADERS_AT + 28,
            is!(K::ContentLength),
        ),
        // --- Date and Node (recoverable) --------------------------------------
        soft(
            "Date in RFC 850 form",
            idle_with("Date: Sunday, 06-Nov-94 08:49:37 GMT\r\n"),
            HEADERS_AT,
            is!(K::BadHeaderValue { name, .. } if name == "Date"),
        ),
        soft(
            "Date in asctime form",
            idle_with("Date: Sun Nov  6 08:49:37 1994\r\n"),
            HEADERS_AT,
            is!(K::BadHeaderValue { name, .. } if name == "Date"),
        ),
        soft(
            "Date with the wrong weekday",
            idle_with("Date: Mon, 06 Nov 1994 08:49:37 GMT\r\n"),
            HEADERS_AT,
            is!(K::BadHeaderValue { name, .. } if name == "Date"),
        ),
        soft(
            "Date with a numeric zone",
            idle_with("Date: Sun, 06 Nov 1994 08:49:37 +0000\r\n"),
            HEADERS_AT,
            is!(K::BadHeaderValue { name, .. } if name == "Date"),
        ),
        soft(
            "Date with a one-digit day",
            idle_with("Date: Sun, 6 Nov 1994 08:49:37 GMT\r\n"),
            HEADERS_AT,
            is!(K::BadHeaderValue { name, .. } if name == "Date"),
        ),
        soft(
            "Date before 1970",
            idle_with("Date: Wed, 31 Dec 1969 23:59:59 GMT\r\n"),
            HEADERS_AT,
            is!(K::BadHeaderValue { name, .. } if name == "Date"),
        ),
        soft(
            "date (lowercase name) not a date",
            idle_with("A: 1\r\ndate: yesterday\r\n"),
            HEADERS_AT + 6,
            is!(K::BadHeaderValue { name, .. } if name == "date"),
        ),
        soft(
            "empty Date",
            idle_with("Date:\r\n"),
            HEADERS_AT,
            is!(K::BadHeaderValue { name, .. } if name == "Date"),
        ),
        soft(
            "Node in uppercase",
            idle_with("Node: 0123456789ABCDEF\r\n"),
            HEADERS_AT,
            is!(K::BadHeaderValue { name, .. } if name == "Node"),
        ),
        soft(
            "Node too short",
            idle_with("Node: 0123456789abcde\r\n"),
            HEADERS_AT,
            is!(K::BadHeaderValue { name, .. } if name == "Node"),
        ),
        soft(
            "Node too long",
            idle_with("Node: 0123456789abcdef0\r\n"),
            HEADERS_AT,
            is!(K::BadHeaderValue { name, .. } if name == "Node"),
        ),
        soft(
            "Node not hex",
            idle_with("node: 0123456789abcdeg\r\n"),
            HEADERS_AT,
            is!(K::BadHeaderValue { name, .. } if name == "node"),
        ),
        soft(
            "first of two soft errors wins",
            frame("Nope", "Date: never\r\n"),
            9,
            is!(K::Message(M::UnknownKind(k)) if k == "Nope"),
        ),
        // --- Chunk-size lines -------------------------------------------------
        fatal(
            "chunk size not hex",
            chunked(b"zz\r\n"),
            BODY_AT,
            is!(K::BadChunkSize("no hex size")),
        ),
        fatal(
            "empty chunk-size line",
            chunked(b"\r\n"),
            BODY_AT,
            is!(K::BadChunkSize("no hex size")),
        ),
        fatal(
            "blank before chunk size",
            chunked(b" 5\r\nabcde\r\n"),
            BODY_AT,
            is!(K::BadChunkSize("no hex size")),
        ),
        fatal(
            "negative chunk size",
            chunked(b"-5\r\n"),
            BODY_AT,
            is!(K::BadChunkSize("no hex size")),
        ),
        fatal(
            "body missing after the head",
            cat(&[CHUNKED.as_bytes(), VALID]),
            BODY_AT,
            is!(K::BadChunkSize("no hex size")),
        ),
        fatal(
            "chunk too large",
            chunked(b"11\r\n"),
            BODY_AT,
            is!(K::ChunkTooLarge {
                size: 17,
                limit: 16
            }),
        )
        .limits(small(|l| l.max_chunk = 16)),
        fatal(
            "chunk size overflows u64",
            chunked(b"10000000000000000\r\n"),
            BODY_AT,
            is!(K::ChunkTooLarge { size: u64::MAX, .. }),
        ),
        fatal(
            "body too large",
            chunked(b"10\r\n0123456789abcdef\r\n5\r\n"),
            BODY_AT + 22,
            is!(K::BodyTooLarge { limit: 20 }),
        )
        .limits(small(|l| {
            l.max_chunk = 16;
            l.max_body = 20
        })),
        fatal(
            "too many chunks",
            chunked(b"1\r\na\r\n1\r\nb\r\n1\r\nc\r\n0\r\n\r\n"),
            BODY_AT + 12,
            is!(K::TooManyChunks { limit: 2 }),
        )
        .limits(small(|l| l.max_chunks = 2)),
        // --- Chunk extensions -------------------------------------------------
        fatal(
            "blank after chunk size",
            chunked(b"5 \r\n"),
            BODY_AT,
            is!(K::BadChunkExtension("expected ';'")),
        ),
        fatal(
            "0x before chunk size",
            chunked(b"0x5\r\n"),
            BODY_AT,
            is!(K::BadChunkExtension("expected ';'")),
        ),
        fatal(
            "extension without name",
            chunked(b"5;\r\n"),
            BODY_AT,
            is!(K::BadChunkExtension("empty name")),
        ),
        fatal(
            "extension with only a value",
            chunked(b"5;=x\r\n"),
            BODY_AT,
            is!(K::BadChunkExtension("empty name")),
        ),
        fatal(
            "trailing ';' after extensions",
            chunked(b"5;a=b;\r\n"),
            BODY_AT,
            is!(K::BadChunkExtension("empty name")),
        ),
        fatal(
            "extension with empty value",
            chunked(b"5;a=\r\n"),
            BODY_AT,
            is!(K::BadChunkExtension("empty value")),
        ),
        fatal(
            "unterminated quoted value",
            chunked(b"5;a=\"xx\r\n"),
            BODY_AT,
            is!(K::BadChunkExtension("unterminated quoted-string")),
        ),
        fatal(
            "quoted value ends in a backslash",
            chunked(b"5;a=\"x\\\r\n"),
            BODY_AT,
            is!(K::BadChunkExtension("unterminated quoted-string")),
        ),
        fatal(
            "escaped closing quote leaves the value open",
            chunked(b"5;a=\"x\\\"\r\n"),
            BODY_AT,
            is!(K::BadChunkExtension("unterminated quoted-string")),
        ),
        fatal(
            "control character in quoted value",
            chunked(b"5;a=\"x\x01\"\r\n"),
            BODY_AT,
            is!(K::BadChunkExtension("control character in quoted-string")),
        ),
        fatal(
            "control character in quoted-pair",
            chunked(b"5;a=\"\\\x01\"\r\n"),
            BODY_AT,
            is!(K::BadChunkExtension("control character in quoted-pair")),
        ),
        fatal(
            "quoted value not UTF-8",
            chunked(b"5;a=\"\xff\"\r\n"),
            BODY_AT,
            is!(K::BadChunkExtension("not UTF-8")),
        ),
        fatal(
            "blank inside a token value",
            chunked(b"5;a=b c\r\n"),
            BODY_AT,
            is!(K::BadChunkExtension("expected ';'")),
        ),
        fatal(
            "text after a quoted value",
            chunked(b"5;a=\"x\"y\r\n"),
            BODY_AT,
            is!(K::BadChunkExtension("expected ';'")),
        ),
        fatal(
            "blank around '='",
            chunked(b"5;a = b\r\n"),
            BODY_AT,
            is!(K::BadChunkExtension("expected ';'")),
        ),
        fatal(
            "bad extension on the last chunk",
            chunked(b"0;\"x\"\r\n\r\n"),
            BODY_AT,
            is!(K::BadChunkExtension("empty name")),
        ),
        // --- Chunk data -------------------------------------------------------
        fatal(
            "chunk data followed by a letter",
            chunked(b"3\r\nabcX\r\n"),
            BODY_AT + 6,
            is!(K::MissingChunkCrlf),
        ),
        fatal(
            "chunk longer than its size",
            chunked(b"3\r\nabcd\r\n0\r\n\r\n"),
            BODY_AT + 6,
            is!(K::MissingChunkCrlf),
        ),
        fatal(
            "chunk data followed by a bare LF",
            chunked(b"3\r\nabc\n"),
            BODY_AT + 6,
            is!(K::MissingChunkCrlf),
        ),
        fatal(
            "chunk data followed by CR and a letter",
            chunked(b"3\r\nabc\rX"),
            BODY_AT + 6,
            is!(K::MissingChunkCrlf),
        ),
        // --- Trailers ---------------------------------------------------------
        soft(
            "Content-Length trailer",
            chunked(b"0\r\nContent-Length: 3\r\n\r\n"),
            BODY_AT + 3,
            is!(K::ForbiddenTrailer(n) if n == "Content-Length"),
        ),
        soft(
            "Transfer-Encoding trailer (lowercase)",
            chunked(b"3\r\nabc\r\n0\r\nA: 1\r\ntransfer-encoding: chunked\r\n\r\n"),
            BODY_AT + 8 + 3 + 6,
            is!(K::ForbiddenTrailer(n) if n == "transfer-encoding"),
        ),
        fatal(
            "trailer without colon",
            chunked(b"0\r\nNoColon\r\n\r\n"),
            BODY_AT + 3,
            is!(K::BadHeaderLine("no colon")),
        ),
        fatal(
            "folded trailer",
            chunked(b"0\r\nA: 1\r\n 2\r\n\r\n"),
            BODY_AT + 9,
            is!(K::BadHeaderLine("folded (obsolete) header line")),
        ),
        fatal(
            "control character in trailer",
            chunked(b"0\r\nA: \x08\r\n\r\n"),
            BODY_AT + 6,
            is!(K::BadHeaderLine("control character in value")),
        ),
        fatal(
            "too many trailers",
            chunked(b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"),
            BODY_AT + 15,
            is!(K::TooManyHeaders { limit: 2 }),
        )
        .limits(small(|l| l.max_headers = 2)),
        fatal(
            "too many forbidden trailers",
            chunked(b"0\r\nContent-Length: 1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"),
            BODY_AT + 3 + 2 * 19,
            is!(K::TooManyHeaders { limit: 2 }),
        )
        .limits(small(|l| l.max_headers = 2)),
        // --- Datagrams ----------------------------------------------------------
        datagram(
            "byte after the frame",
            cat(&[VALID, b"X"]),
            22,
            is!(K::TrailingBytes(1)),
        ),
        datagram(
            "CRLF after the frame",
            cat(&[VALID, b"\r\n"]),
            22,
            is!(K::TrailingBytes(2)),
        ),
        datagram(
            "two frames in one datagram",
            cat(&[VALID, VALID]),
            22,
            is!(K::TrailingBytes(22)),
        ),
        datagram(
            "bytes after a chunked body",
            chunked(b"1\r\na\r\n0\r\n\r\n\0"),
            BODY_AT + 11,
            is!(K::TrailingBytes(1)),
        ),
        datagram("empty datagram", Vec::new(), 0, is!(K::Truncated)),
        datagram(
            "datagram ends in the protocol line",
            b"LPPSP/1\r".to_vec(),
            8,
            is!(K::Truncated),
        ),
        datagram(
            "datagram ends before the blank line",
            VALID[..20].to_vec(),
            20,
            is!(K::Truncated),
        ),
        datagram(
            "datagram ends after the head of a chunked frame",
            chunked(b""),
            BODY_AT,
            is!(K::Truncated),
        ),
        datagram(
            "datagram ends inside chunk data",
            chunked(b"5\r\nab"),
            BODY_AT + 5,
            is!(K::Truncated),
        ),
        datagram(
            "datagram ends between chunk data and its CR",
            chunked(b"5\r\nabcde"),
            BODY_AT + 8,
            is!(K::Truncated),
        ),
        datagram(
            "datagram ends between CR and LF after chunk data",
            chunked(b"5\r\nabcde\r"),
            BODY_AT + 9,
            is!(K::Truncated),
        ),
        datagram(
            "datagram ends before the trailer's blank line",
            chunked(b"0\r\nA: 1\r\n"),
            BODY_AT + 9,
            is!(K::Truncated),
        ),
    ]);
    v
}

trait ReplaceMessage {
    fn replace_message(self, line: &str) -> Vec<u8>;
}

impl ReplaceMessage for Vec<u8> {
    /// Swaps the second line of a frame for `line`.
    fn replace_message(self, line: &str) -> Vec<u8> {
        let start = self.iter().position(|&b| b == b'\n').expect("first line") + 1;
        let len = self[start..]
            .iter()
            .position(|&b| b == b'\r')
            .expect("second line");
        let mut out = self[..start].to_vec();
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(&self[start + len..]);
        out
    }
}

/// Decodes `input` fed in `piece`-byte pieces until the first error;
/// returns it with the decoder and the unconsumed bytes.
fn first_error(
    input: &[u8],
    piece: usize,
    limits: Limits,
) -> Option<(DecodeError, StreamDecoder, BytesMut)> {
    let mut decoder = StreamDecoder::new(limits);
    let mut buf = BytesMut::new();
    for part in input.chunks(piece) {
        buf.extend_from_slice(part);
        // Every row's input fails in its first frame.
        match decoder.decode(&mut buf) {
            Ok(Some(frame)) => panic!("decoded {frame:?}"),
            Ok(None) => {}
            Err(e) => return Some((e, decoder, buf)),
        }
    }
    None
}

/// For Field and FieldCount rows: the kind and field named.
fn check_message_details(case: &Case, e: &DecodeError) {
    let Some(expect) = &case.detail else {
        return;
    };
    let got = match &e.kind {
        K::Message(M::Field { kind, field, .. }) => format!("{kind}/{field}"),
        K::Message(M::FieldCount {
            kind,
            expected,
            got,
        }) => format!("{kind}/{expected}/{got}"),
        other => format!("{other:?}"),
    };
    assert_eq!(&got, expect, "{}", case.name);
}

fn run(case: &Case) {
    let name = &case.name;
    let want_offset = case.offset;
    let check = |e: &DecodeError, how: &str| {
        assert!(
            (case.check.f)(&e.kind),
            "{name} ({how}): got {:?}, want {}",
            e.kind,
            case.check.desc
        );
        assert_eq!(e.offset, want_offset, "{name} ({how}): offset of {e}");
        assert_eq!(e.is_recoverable(), case.recoverable, "{name}: {e}");
        assert!(
            e.to_string()
                .starts_with(&format!("at byte {want_offset}: ")),
            "{name}: {e}"
        );
        check_message_details(case, e);
    };
    match case.mode {
        Mode::Datagram => {
            let e = decode_datagram(&case.input, &case.limits).expect_err(name);
            check(&e, "datagram");
            // The stream decoder is not wrong: it waits, or has a frame.
            let mut decoder = StreamDecoder::new(case.limits);
            let mut buf = BytesMut::from(&case.input[..]);
            let got = decoder.decode(&mut buf).expect(name);
            match e.kind {
                K::Truncated => assert_eq!(got, None, "{name}"),
                _ => assert!(got.is_some(), "{name}"),
            }
        }
        Mode::Stream => {
            let (e, mut decoder, mut buf) =
                first_error(&case.input, usize::MAX, case.limits).expect(name);
            check(&e, "whole");
            let (e1, _, _) = first_error(&case.input, 1, case.limits).expect(name);
            assert_eq!(e1, e, "{name}: byte by byte");
            let e2 = decode_datagram(&case.input, &case.limits).expect_err(name);
            assert_eq!(e2, e, "{name}: datagram");
            buf.extend_from_slice(VALID);
            if case.recoverable {
                // Exactly the bad frame was consumed; the stream goes on.
                assert!(decoder.is_idle(), "{name}");
                assert_eq!(decoder.consumed(), case.input.len() as u64, "{name}");
                let next = decoder.decode(&mut buf).expect(name).expect(name);
                assert_eq!(next, decode_datagram(VALID, &case.limits).expect("valid"));
                assert!(buf.is_empty());
            } else {
                // Final: more input changes nothing.
                let consumed = decoder.consumed();
                for _ in 0..3 {
                    assert_eq!(decoder.decode(&mut buf), Err(e.clone()), "{name}");
                }
                assert_eq!(decoder.consumed(), consumed, "{name}");
            }
        }
    }
}

#[test]
fn malformed_inputs() {
    let cases = cases();
    let mut names = std::collections::HashSet::new();
    for case in &cases {
        assert!(
            names.insert(case.name.clone()),
            "duplicate row {}",
            case.name
        );
        run(case);
    }
    eprintln!("{} malformed inputs checked", cases.len());
    assert!(cases.len() > 150, "{} rows", cases.len());
}

#[test]
fn stream_error_is_final() {
    let limits = Limits::default();
    let mut decoder = StreamDecoder::new(limits);
    let mut buf = BytesMut::from(&b"LPPSP/1\r\nIdle/true\r\nContent-Length: 0\r\n\r\n"[..]);
    let e = decoder.decode(&mut buf).expect_err("Content-Length");
    assert_eq!(
        e,
        DecodeError {
            offset: 20,
            kind: K::ContentLength
        }
    );
    assert!(!e.is_recoverable());
    // Valid frames after it are never decoded, however they arrive.
    for _ in 0..3 {
        buf.extend_from_slice(VALID);
        assert_eq!(decoder.decode(&mut buf), Err(e.clone()));
        assert_eq!(decoder.decode(&mut BytesMut::new()), Err(e.clone()));
        assert_eq!(decoder.decode(&mut BytesMut::from(VALID)), Err(e.clone()));
    }
}

#[test]
fn recoverable_errors_do_not_stick() {
    let mut input = msg("Nope/1");
    let second = input.len() as u64;
    input.extend_from_slice(&idle_with("Date: Sunday, 06-Nov-94 08:49:37 GMT\r\n"));
    input.extend_from_slice(VALID);
    let mut decoder = StreamDecoder::new(Limits::default());
    let mut buf = BytesMut::from(&input[..]);
    let e = decoder.decode(&mut buf).expect_err("unknown kind");
    assert!(matches!(e.kind, K::Message(M::UnknownKind(_))), "{e}");
    let e = decoder.decode(&mut buf).expect_err("bad date");
    assert!(matches!(e.kind, K::BadHeaderValue { .. }), "{e}");
    assert_eq!(e.offset, second + HEADERS_AT);
    let frame: Frame = decoder.decode(&mut buf).expect("valid").expect("frame");
    assert_eq!(frame.to_bytes(), VALID);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
}

#[test]
fn line_limit_boundary() {
    // A line of exactly max_line bytes is fine; one more is not.
    let limits = Limits {
        max_line: 9,
        ..Limits::default()
    };
    assert!(decode_datagram(b"LPPSP/1\r\nIdle/true\r\n\r\n", &limits).is_ok());
    let e = decode_datagram(b"LPPSP/1\r\nIdle/false\r\n\r\n", &limits).expect_err("too long");
    assert_eq!(
        e,
        DecodeError {
            offset: 9,
            kind: K::LineTooLong { limit: 9 }
        }
    );
    // A header line counts the same way.
    assert!(decode_datagram(b"LPPSP/1\r\nIdle/true\r\nA: 123456\r\n\r\n", &limits).is_ok());
    assert!(decode_datagram(b"LPPSP/1\r\nIdle/true\r\nA: 1234567\r\n\r\n", &limits).is_err());
}

#[test]
fn limits_at_their_bounds_are_accepted() {
    let limits = Limits {
        max_line: 64,
        max_headers: 2,
        max_chunk: 4,
        max_body: 8,
        max_chunks: 2,
    };
    // Two headers (Transfer-Encoding aside), two chunks of 4, two trailers.
    let input = b"LPPSP/1\r\nIdle/true\r\nA: 1\r\nTransfer-Encoding: chunked\r\nB: 2\r\n\r\n\
        4\r\nabcd\r\n4\r\nefgh\r\n0\r\nC: 3\r\nD: 4\r\n\r\n";
    let frame = decode_datagram(input, &limits).expect("at the limits");
    let body = frame.body.expect("body");
    assert_eq!(&body.to_bytes()[..], b"abcdefgh");
    assert_eq!(body.trailers.len(), 2);
    assert_eq!(frame.headers.len(), 2);
}
