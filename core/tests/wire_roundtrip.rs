//! Property tests of the wire codec: encode/decode round trips, incremental
//! decoding, truncation, random mutation and recovery after a bad frame.
//! Also keeps the fuzz seed corpus (fuzz/seeds/) in step with the codec.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::{Duration, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use lppsp_core::money::{Bounty, Price};
use lppsp_core::node_id::NodeId;
use lppsp_core::wire::{
    self, decode_datagram, Arch, Body, Chunk, ChunkExtension, DecodeError, DecodeErrorKind,
    Endpoint, Frame, Hand, Headers, JobId, KernelName, Limits, Message, RefuseReason,
    StreamDecoder,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

/// RFC 7230 tchar.
const TCHARS: &[u8] =
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// What Arch and KernelName allow.
const NAME_CHARS: &[u8] = b"-_.:0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const KINDS: [&str; 17] = [
    "Hand",
    "Leave",
    "Idle",
    "Task",
    "Accept",
    "Refuse",
    "Result",
    "Cancel",
    "Integrate",
    "Integrated",
    "Module",
    "Heads",
    "Want",
    "Propose",
    "Vote",
    "Commit",
    "Receipt",
];
/// Seconds from the epoch to 9999-12-31T23:59:59Z, the last RFC 1123 date.
const LAST_DATE: u64 = 253_402_300_799;

fn chars_from(set: &'static [u8], len: std::ops::RangeInclusive<usize>) -> BoxedStrategy<String> {
    vec(select(set), len)
        .prop_map(|v| v.into_iter().map(char::from).collect())
        .boxed()
}

fn token(max: usize) -> BoxedStrategy<String> {
    chars_from(TCHARS, 1..=max)
}

fn u64_field() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => any::<u64>(),
        2 => 0u64..20,
        1 => Just(u64::MAX),
    ]
}

fn micros() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => any::<u64>(),
        2 => (0u64..1000).prop_map(|u| u * 1_000_000),
        2 => 0u64..1_000_000,
        1 => Just(u64::MAX),
    ]
}

fn price() -> impl Strategy<Value = Price> {
    micros().prop_map(Price::from_micros)
}

fn bounty() -> impl Strategy<Value = Bounty> {
    micros().prop_map(Bounty::from_micros)
}

fn node_id() -> impl Strategy<Value = NodeId> {
    any::<[u8; 8]>().prop_map(NodeId::from_bytes)
}

fn job() -> impl Strategy<Value = JobId> {
    any::<u64>().prop_map(JobId)
}

fn ipv6() -> impl Strategy<Value = Ipv6Addr> {
    prop_oneof![
        any::<u128>().prop_map(Ipv6Addr::from),
        // Runs of zero groups, so that "::" compression shows up.
        prop::array::uniform8(prop_oneof![Just(0u16), any::<u16>()]).prop_map(Ipv6Addr::from),
        any::<[u8; 4]>().prop_map(|b| Ipv4Addr::from(b).to_ipv6_mapped()),
        Just(Ipv6Addr::LOCALHOST),
        Just(Ipv6Addr::UNSPECIFIED),
    ]
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| Endpoint(SocketAddr::V4(SocketAddrV4::new(ip.into(), port)))),
        (
            ipv6(),
            any::<u16>(),
            prop_oneof![3 => Just(0u32), 1 => any::<u32>()]
        )
            .prop_map(
                |(ip, port, scope)| Endpoint(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, scope)))
            ),
    ]
}

fn arch() -> impl Strategy<Value = Arch> {
    prop_oneof![
        select(vec!["x86_64", "aarch64", "riscv64"]).prop_map(String::from),
        chars_from(NAME_CHARS, 1..=Arch::MAX_LEN),
    ]
    .prop_map(|s| Arch::new(s).expect("valid arch"))
}

fn kernel() -> impl Strategy<Value = KernelName> {
    prop_oneof![
        chars_from(NAME_CHARS, 1..=KernelName::MAX_LEN),
        chars_from(b"0123456789abcdef", 64..=64).prop_map(|h| format!("wasm:{h}")),
    ]
    .prop_map(|s| KernelName::new(s).expect("valid kernel"))
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        // Remaining_Bounty is present exactly for a client.
        (endpoint(), u64_field(), arch(), prop::option::of(bounty())).prop_map(
            |(addr, power, arch, b)| Message::Hand(Hand {
                addr,
                power,
                arch,
                is_client: b.is_some(),
                remaining_bounty: b,
            })
        ),
        endpoint().prop_map(|addr| Message::Leave { addr }),
        any::<bool>().prop_map(|idle| Message::Idle { idle }),
        (job(), u64_field(), kernel()).prop_map(|(job, task, kernel)| Message::Task {
            job,
            task,
            kernel
        }),
        (job(), u64_field()).prop_map(|(job, task)| Message::Accept { job, task }),
        (job(), u64_field(), select(RefuseReason::ALL.to_vec()))
            .prop_map(|(job, task, reason)| Message::Refuse { job, task, reason }),
        (job(), u64_field(), any::<bool>()).prop_map(|(job, task, ok)| Message::Result {
            job,
            task,
            ok
        }),
        (job(), prop::option::of(u64_field()))
            .prop_map(|(job, task)| Message::Cancel { job, task }),
        (job(), u64_field(), kernel()).prop_map(|(job, tasks, kernel)| Message::Integrate {
            job,
            tasks,
            kernel
        }),
        (job(), any::<bool>()).prop_map(|(job, ok)| Message::Integrated { job, ok }),
        (job(), kernel()).prop_map(|(job, kernel)| Message::Module { job, kernel }),
        u64_field().prop_map(|count| Message::Heads { count }),
        u64_field().prop_map(|count| Message::Want { count }),
        (u64_field(), price(), node_id()).prop_map(|(epoch, price, proposer)| Message::Propose {
            epoch,
            price,
            proposer
        }),
        (u64_field(), node_id(), price(), any::<bool>()).prop_map(
            |(epoch, proposer, price, yes)| Message::Vote {
                epoch,
                proposer,
                price,
                yes
            }
        ),
        (u64_field(), price(), node_id()).prop_map(|(epoch, price, proposer)| Message::Commit {
            epoch,
            price,
            proposer
        }),
        (
            job(),
            node_id(),
            node_id(),
            price(),
            u64_field(),
            u64_field(),
            bounty()
        )
            .prop_map(|(job, payer, payee, price, power, micros, charge)| {
                Message::Receipt {
                    job,
                    payer,
                    payee,
                    price,
                    power,
                    micros,
                    charge,
                }
            }),
    ]
}

fn visible_ascii() -> BoxedStrategy<char> {
    (0x21u8..=0x7e).prop_map(char::from).boxed()
}

fn non_ascii() -> BoxedStrategy<char> {
    select(vec!['é', 'ß', '€', '中', '😀', '\u{a0}']).boxed()
}

/// A header value: no control characters (inner tabs are allowed), no
/// leading or trailing space or tab (the decoder trims those).
fn header_value() -> impl Strategy<Value = String> {
    let edge = || prop_oneof![4 => visible_ascii(), 1 => non_ascii()];
    let inner = prop_oneof![
        8 => visible_ascii(),
        2 => Just(' '),
        1 => Just('\t'),
        1 => non_ascii(),
    ];
    prop_oneof![
        1 => Just(String::new()),
        2 => edge().prop_map(String::from),
        6 => (edge(), vec(inner, 0..40), edge()).prop_map(|(a, mid, b)| {
            let mut s = String::from(a);
            s.extend(mid);
            s.push(b);
            s
        }),
    ]
}

fn is_reserved(name: &str, reserved: &[&str]) -> bool {
    reserved.iter().any(|r| name.eq_ignore_ascii_case(r))
}

/// A header name the decoder takes as is (not checked, not framing).
fn plain_header_name() -> impl Strategy<Value = String> {
    token(20).prop_filter("reserved header name", |n| {
        !is_reserved(n, &["Transfer-Encoding", "Content-Length", "Date", "Node"])
    })
}

fn http_date() -> impl Strategy<Value = String> {
    (0..=LAST_DATE).prop_map(|s| httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(s)))
}

fn header() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        6 => (plain_header_name(), header_value()),
        1 => (select(vec!["Date", "date", "DATE"]), http_date())
            .prop_map(|(n, v)| (n.to_string(), v)),
        1 => (select(vec!["Node", "node"]), node_id()).prop_map(|(n, id)| (n.to_string(), id.to_string())),
    ]
}

fn headers_from(list: Vec<(String, String)>) -> Headers {
    let mut h = Headers::new();
    for (name, value) in list {
        h.push(name, value);
    }
    h
}

fn headers() -> impl Strategy<Value = Headers> {
    vec(header(), 0..8).prop_map(headers_from)
}

fn trailers() -> impl Strategy<Value = Headers> {
    let name = token(20).prop_filter("framing header", |n| {
        !is_reserved(n, &["Transfer-Encoding", "Content-Length"])
    });
    vec((name, header_value()), 0..4).prop_map(headers_from)
}

/// A chunk extension value: a token (sent bare) or anything a quoted-string
/// can carry, quotes and backslashes included (sent quoted and escaped).
fn extension_value() -> impl Strategy<Value = String> {
    let quoted_char = prop_oneof![
        6 => visible_ascii(),
        2 => Just('"'),
        2 => Just('\\'),
        1 => Just(' '),
        1 => Just('\t'),
        1 => non_ascii(),
    ];
    prop_oneof![
        2 => token(12),
        1 => Just(String::new()),
        4 => vec(quoted_char, 0..16).prop_map(String::from_iter),
    ]
}

fn extension() -> impl Strategy<Value = ChunkExtension> {
    (token(12), prop::option::of(extension_value()))
        .prop_map(|(name, value)| ChunkExtension { name, value })
}

/// Chunk data is never empty: a zero-size chunk is the last chunk.
fn chunk(max_data: usize) -> impl Strategy<Value = Chunk> {
    let small = max_data.min(48);
    let data = prop_oneof![
        6 => vec(any::<u8>(), 1..=small),
        1 => vec(any::<u8>(), small..=max_data),
    ];
    (data, vec(extension(), 0..3)).prop_map(|(data, extensions)| Chunk {
        data: Bytes::from(data),
        extensions,
    })
}

fn body(max_data: usize) -> impl Strategy<Value = Body> {
    (
        vec(chunk(max_data), 0..5),
        vec(extension(), 0..3),
        trailers(),
    )
        .prop_map(|(chunks, last_extensions, trailers)| Body {
            chunks,
            last_extensions,
            trailers,
        })
}

fn frame_with(max_data: usize) -> impl Strategy<Value = Frame> {
    (
        price(),
        message(),
        headers(),
        prop::option::of(body(max_data)),
    )
        .prop_map(|(price, message, headers, body)| Frame {
            price,
            message,
            headers,
            body,
        })
}

fn frame() -> impl Strategy<Value = Frame> {
    frame_with(1200)
}

/// Frames with small bodies, for the tests that are quadratic in the size.
fn small_frame() -> impl Strategy<Value = Frame> {
    frame_with(24)
}

/// Piece sizes to feed a decoder with; used in turn, cyclically.
fn pieces() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        1 => Just(vec![1]),
        4 => vec(1usize..64, 1..16),
        1 => vec(prop_oneof![Just(1usize), 100usize..2000], 1..4),
    ]
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Small limits, so that short inputs reach every limit.
const SMALL: Limits = Limits {
    max_line: 256,
    max_headers: 8,
    max_chunk: 512,
    max_body: 1024,
    max_chunks: 8,
};

/// Limits with room for the canonical re-encoding of a decoded frame, which
/// can be a few bytes longer per line ("Name:v" becomes "Name: v").
fn relaxed(limits: Limits) -> Limits {
    Limits {
        max_line: limits.max_line + 16,
        ..limits
    }
}

/// Feeds `data` to a fresh decoder in pieces of the given sizes (in turn,
/// cyclically; the last piece may be shorter) and collects every frame and
/// error, up to the first stream error. Checks on the way that a stream error
/// is final and that the byte count adds up.
fn decode_pieces(data: &[u8], sizes: &[usize], limits: Limits) -> Vec<Result<Frame, DecodeError>> {
    let mut decoder = StreamDecoder::new(limits);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut at = 0;
    let mut sizes = sizes.iter().copied().cycle();
    while at < data.len() {
        let n = sizes.next().unwrap_or(1).max(1).min(data.len() - at);
        buf.extend_from_slice(&data[at..at + n]);
        at += n;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => out.push(Ok(frame)),
                Ok(None) => break,
                Err(e) if e.is_recoverable() => {
                    assert!(e.offset < decoder.consumed(), "{e}");
                    out.push(Err(e));
                }
                Err(e) => {
                    assert!(e.offset <= data.len() as u64, "{e}");
                    // A stream error is final, even with more input.
                    buf.extend_from_slice(b"LPPSP/1\r\nIdle/true\r\n\r\n");
                    assert_eq!(decoder.decode(&mut buf), Err(e.clone()));
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }
    assert_eq!(decoder.consumed() + buf.len() as u64, data.len() as u64);
    out
}

fn decode_whole(data: &[u8], limits: Limits) -> Vec<Result<Frame, DecodeError>> {
    decode_pieces(data, &[usize::MAX], limits)
}

/// Decoding must not depend on how the input is split; and whatever decodes
/// must encode to bytes that decode to the same frame.
fn check_consistent(data: &[u8], sizes: &[usize], limits: Limits) {
    let whole = decode_whole(data, limits);
    assert_eq!(
        decode_pieces(data, sizes, limits),
        whole,
        "pieces {sizes:?}"
    );
    assert_eq!(decode_pieces(data, &[1], limits), whole, "byte by byte");
    let datagram = decode_datagram(data, &limits);
    match (&datagram, whole.first()) {
        (Ok(f), Some(Ok(g))) => {
            assert_eq!(f, g);
            assert_eq!(whole.len(), 1);
        }
        (Err(e), first) => {
            assert!(e.offset <= data.len() as u64);
            match &e.kind {
                DecodeErrorKind::Truncated => {
                    assert_eq!(e.offset, data.len() as u64);
                    assert!(first.is_none(), "{first:?}");
                }
                DecodeErrorKind::TrailingBytes(n) => {
                    assert!(matches!(first, Some(Ok(_))));
                    assert_eq!(e.offset + *n as u64, data.len() as u64);
                }
                _ => assert_eq!(first, Some(&Err(e.clone()))),
            }
        }
        (Ok(f), other) => panic!("datagram gave {f:?}, stream {other:?}"),
    }
    for frame in whole.iter().flatten() {
        let bytes = frame.to_bytes();
        assert_eq!(
            decode_whole(&bytes, relaxed(limits)),
            vec![Ok(frame.clone())],
            "re-encoded {frame:?}"
        );
    }
}

fn message_line_span(bytes: &[u8]) -> (usize, usize) {
    let start = find(bytes, b"\r\n", 0).expect("protocol line") + 2;
    let end = find(bytes, b"\r\n", start).expect("message line");
    (start, end)
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

// ---------------------------------------------------------------------------
// Bad frames that the stream survives
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Flaw {
    /// Replace the message line.
    MessageLine(String),
    /// Insert `Date: <value>` among the headers.
    Date(Index, String),
    /// Insert `Node: <value>` among the headers.
    Node(Index, String),
    /// Insert a framing header among the trailers.
    Trailer(Index, &'static str),
}

fn bad_message_line() -> impl Strategy<Value = String> {
    let unknown_kind = (
        chars_from(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_!*",
            0..=12,
        ),
        vec(chars_from(b"0123456789abcdef:.*", 0..=8), 0..4),
    )
        .prop_filter("known kind", |(k, _)| !KINDS.contains(&k.as_str()))
        .prop_map(|(k, fields)| {
            let mut line = k;
            for f in fields {
                line.push('/');
                line.push_str(&f);
            }
            line
        });
    let extra_field = message().prop_map(|m| format!("{m}/1"));
    let missing_field = message().prop_map(|m| {
        let line = m.to_string();
        line.rsplit_once('/')
            .map(|(head, _)| head.to_string())
            .unwrap_or(line)
    });
    let bad_value = select(vec![
        "Hand/10.0.0.1:99999/1000/x86_64/false/NULL",
        "Hand/10.0.0.1/-5/x86_64/false/NULL",
        "Hand/10.0.0.1/1000/x86$64/false/NULL",
        "Hand/10.0.0.1/1000/x86_64/no/NULL",
        "Hand/10.0.0.1/1000/x86_64/true/NULL",
        "Hand/10.0.0.1/1000/x86_64/false/12",
        "Leave/::1",
        "Idle/TRUE",
        "Task/00000000000000AB/1/sum",
        "Task/00000000000000ab/01/sum",
        "Task/00000000000000ab/1/s+m",
        "Accept/ab/1",
        "Refuse/00000000000000ab/1/lazy",
        "Result/00000000000000ab/1/fine",
        "Cancel/00000000000000ab/all",
        "Propose/1/1.0000001/0123456789abcdef",
        "Vote/1/0123456789abcdef/2/maybe",
        "Commit/1/2/0123456789ABCDEF",
        "Receipt/00000000000000ab/0123456789abcdef/0123456789abcdef/1/2/3/-4",
    ])
    .prop_map(String::from);
    prop_oneof![unknown_kind, extra_field, missing_field, bad_value]
}

fn bad_date() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            // RFC 850 and asctime forms: HTTP dates, but not RFC 1123.
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            // Wrong weekday.
            "Mon, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "yesterday",
            "",
        ])
        .prop_map(String::from),
        http_date().prop_map(|d| d.to_lowercase()),
        http_date().prop_map(|d| d.replace(" GMT", " +0000")),
    ]
}

fn bad_node() -> impl Strategy<Value = String> {
    prop_oneof![
        chars_from(b"0123456789abcdef", 0..=15),
        chars_from(b"0123456789abcdef", 17..=24),
        (
            chars_from(b"0123456789abcdef", 15..=15),
            select(b"ABCDEFgxyz-".to_vec())
        )
            .prop_map(|(s, c)| format!("{s}{}", char::from(c))),
    ]
}

fn flaw() -> impl Strategy<Value = Flaw> {
    prop_oneof![
        3 => bad_message_line().prop_map(Flaw::MessageLine),
        1 => (any::<Index>(), bad_date()).prop_map(|(i, v)| Flaw::Date(i, v)),
        1 => (any::<Index>(), bad_node()).prop_map(|(i, v)| Flaw::Node(i, v)),
        1 => (
            any::<Index>(),
            select(vec!["Content-Length", "Transfer-Encoding", "content-length"])
        )
            .prop_map(|(i, n)| Flaw::Trailer(i, n)),
    ]
}

/// Applies `flaw` to `frame`: the bad frame's bytes, the offset the error
/// must name, and a check of its kind.
fn apply_flaw(mut frame: Frame, flaw: &Flaw) -> (Vec<u8>, u64, fn(&DecodeErrorKind) -> bool) {
    fn insert_header(frame: &mut Frame, i: &Index, name: &str, value: &str) -> Vec<u8> {
        // The only header of that name, so that the error is about this one.
        frame
            .headers
            .0
            .retain(|h| !h.name.eq_ignore_ascii_case(name));
        let at = i.index(frame.headers.len() + 1);
        frame.headers.0.insert(
            at,
            wire::Header {
                name: name.to_string(),
                value: value.to_string(),
            },
        );
        frame.to_bytes()
    }
    /// Offset of the unique head line starting "Name: ".
    fn head_line(bytes: &[u8], name: &str) -> u64 {
        let head_end = find(bytes, b"\r\n\r\n", 0).expect("end of head");
        let at = find(
            &bytes[..head_end + 2],
            format!("\r\n{name}: ").as_bytes(),
            0,
        )
        .expect("header line");
        (at + 2) as u64
    }
    match flaw {
        Flaw::MessageLine(line) => {
            let bytes = frame.to_bytes();
            let (start, end) = message_line_span(&bytes);
            let mut bad = bytes[..start].to_vec();
            bad.extend_from_slice(line.as_bytes());
            bad.extend_from_slice(&bytes[end..]);
            (bad, start as u64, |k| {
                matches!(k, DecodeErrorKind::Message(_))
            })
        }
        Flaw::Date(i, value) => {
            let bytes = insert_header(&mut frame, i, "Date", value);
            let at = head_line(&bytes, "Date");
            (
                bytes,
                at,
                |k| matches!(k, DecodeErrorKind::BadHeaderValue { name, .. } if name == "Date"),
            )
        }
        Flaw::Node(i, value) => {
            let bytes = insert_header(&mut frame, i, "Node", value);
            let at = head_line(&bytes, "Node");
            (
                bytes,
                at,
                |k| matches!(k, DecodeErrorKind::BadHeaderValue { name, .. } if name == "Node"),
            )
        }
        Flaw::Trailer(i, name) => {
            let body = frame.body.get_or_insert_with(Body::default);
            let at = i.index(body.trailers.len() + 1);
            body.trailers.0.insert(
                at,
                wire::Header {
                    name: name.to_string(),
                    value: "5".to_string(),
                },
            );
            let bytes = frame.to_bytes();
            let line = rfind(&bytes, format!("\r\n{name}: 5\r\n").as_bytes()).expect("trailer");
            (bytes, (line + 2) as u64, |k| {
                matches!(k, DecodeErrorKind::ForbiddenTrailer(_))
            })
        }
    }
}

// ---------------------------------------------------------------------------
// Mutations
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Set(Index, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = select(b"\r\n \t:;=\"\\/0aF*\x00\x7f\xff".to_vec());
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, bit)| Mutation::Flip(i, 1 << bit)),
        (
            any::<Index>(),
            prop_oneof![any::<u8>(), interesting.clone()]
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Delete),
        (any::<Index>(), interesting).prop_map(|(i, b)| Mutation::Set(i, b)),
    ]
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::Insert(i, b) => bytes.insert(i.index(bytes.len() + 1), *b),
        _ if bytes.is_empty() => {}
        Mutation::Flip(i, mask) => {
            let at = i.index(bytes.len());
            bytes[at] ^= mask;
        }
        Mutation::Delete(i) => {
            bytes.remove(i.index(bytes.len()));
        }
        Mutation::Set(i, b) => {
            let at = i.index(bytes.len());
            bytes[at] = *b;
        }
    }
}

/// Bytes that look a little like frames, so that random input gets past
/// the first line now and then.
fn noise() -> impl Strategy<Value = Vec<u8>> {
    let alphabet = select(
        b"LPSPHandLeaveIdleTask/0123456789abcdef.:;=\"\\[]*\r\n\r\n \tDate:Node:Transfer-Encoding:chunked\x00\xc3\xff"
            .to_vec(),
    );
    prop_oneof![
        vec(any::<u8>(), 0..512),
        vec(alphabet.clone(), 0..512),
        vec(alphabet, 0..256).prop_map(|tail| {
            let mut v = b"LPPSP/1\r\nIdle/true\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            v.extend(tail);
            v
        }),
    ]
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

/// 96 cases per property (the whole file runs in about a second in debug);
/// set PROPTEST_CASES for a longer soak.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(96);
    ProptestConfig {
        cases,
        // Failures print the minimal input; nothing is written to the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// (a) encode, then decode with the stream decoder fed in pieces.
    #[test]
    fn stream_round_trip(frame in frame(), sizes in pieces()) {
        let bytes = frame.to_bytes();
        for sizes in [&sizes[..], &[1], &[usize::MAX]] {
            let mut decoder = StreamDecoder::new(Limits::default());
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut at = 0;
            for n in sizes.iter().cycle() {
                if at == bytes.len() {
                    break;
                }
                let n = (*n).min(bytes.len() - at);
                buf.extend_from_slice(&bytes[at..at + n]);
                at += n;
                loop {
                    match decoder.decode(&mut buf) {
                        Ok(Some(f)) => got.push(f),
                        Ok(None) => break,
                        Err(e) => prop_assert!(false, "{} decoding {:?}", e, frame),
                    }
                }
            }
            prop_assert_eq!(&got, &vec![frame.clone()]);
            prop_assert!(buf.is_empty());
            prop_assert!(decoder.is_idle());
            prop_assert_eq!(decoder.consumed(), bytes.len() as u64);
        }
    }

    /// (b) encode, then decode as a datagram.
    #[test]
    fn datagram_round_trip(frame in frame()) {
        let bytes = frame.to_bytes();
        prop_assert_eq!(decode_datagram(&bytes, &Limits::default()), Ok(frame.clone()));
        // Encoding appends.
        let mut out = b"xyz".to_vec();
        wire::encode(&frame, &mut out);
        prop_assert_eq!(&out[..3], b"xyz");
        prop_assert_eq!(&out[3..], &bytes[..]);
    }

    /// (c) several frames back to back in one stream.
    #[test]
    fn back_to_back_frames(frames in vec(frame(), 1..5), sizes in pieces()) {
        let mut bytes = Vec::new();
        for f in &frames {
            wire::encode(f, &mut bytes);
        }
        let want: Vec<_> = frames.into_iter().map(Ok).collect();
        prop_assert_eq!(decode_pieces(&bytes, &sizes, Limits::default()), want);
    }

    /// (d) arbitrary bytes: no panic, and the same answers however split.
    #[test]
    fn arbitrary_bytes(data in noise(), sizes in pieces()) {
        check_consistent(&data, &sizes, Limits::default());
        check_consistent(&data, &sizes, SMALL);
    }

    /// (e) every proper prefix of a frame is "need more" to the stream
    /// decoder and Truncated to the datagram decoder.
    #[test]
    fn truncation(frame in small_frame()) {
        let bytes = frame.to_bytes();
        for n in 0..bytes.len() {
            let mut decoder = StreamDecoder::new(Limits::default());
            let mut buf = BytesMut::from(&bytes[..n]);
            prop_assert_eq!(decoder.decode(&mut buf), Ok(None), "prefix of {}", n);
            prop_assert_eq!(decoder.is_idle(), n == 0);
            prop_assert_eq!(
                decode_datagram(&bytes[..n], &Limits::default()),
                Err(DecodeError { offset: n as u64, kind: DecodeErrorKind::Truncated })
            );
        }
    }

    /// (f) random mutations of valid frames: no panic, the same answers
    /// however split, and whatever decodes round-trips.
    #[test]
    fn mutations(frame in small_frame(), ms in vec(mutation(), 1..6), sizes in pieces()) {
        let mut bytes = frame.to_bytes();
        for m in &ms {
            mutate(&mut bytes, m);
        }
        check_consistent(&bytes, &sizes, Limits::default());
        check_consistent(&bytes, &sizes, SMALL);
    }

    /// (g) a frame with a recoverable error, then a valid frame: the error
    /// (naming the bad line), then the frame.
    #[test]
    fn recovery_after_bad_frame(
        bad in small_frame(),
        flaw in flaw(),
        good in small_frame(),
        sizes in pieces(),
    ) {
        let (mut bytes, offset, check) = apply_flaw(bad, &flaw);
        let bad_len = bytes.len();
        let dg = decode_datagram(&bytes, &Limits::default());
        prop_assert!(matches!(&dg, Err(e) if e.is_recoverable() && check(&e.kind)), "{:?}", dg);
        wire::encode(&good, &mut bytes);
        let got = decode_pieces(&bytes, &sizes, Limits::default());
        prop_assert_eq!(got.len(), 2, "{:?}", got);
        match &got[0] {
            Err(e) => {
                prop_assert!(e.is_recoverable(), "{}", e);
                prop_assert!(check(&e.kind), "{:?}", e);
                prop_assert_eq!(e.offset, offset);
            }
            Ok(f) => prop_assert!(false, "bad frame decoded: {:?}", f),
        }
        prop_assert_eq!(&got[1], &Ok(good));
        // The error also comes first when the bad frame arrives all at once
        // and the good one later.
        let mut decoder = StreamDecoder::new(Limits::default());
        let mut buf = BytesMut::from(&bytes[..bad_len]);
        prop_assert!(decoder.decode(&mut buf).is_err());
        prop_assert!(buf.is_empty());
        prop_assert!(decoder.is_idle());
        prop_assert_eq!(decoder.consumed(), bad_len as u64);
    }

    /// Parsing a message line gives back the message (the frame decoder's
    /// view of the second line).
    #[test]
    fn message_line_round_trip(m in message()) {
        prop_assert_eq!(Message::parse(&m.to_string()), Ok(m));
    }
}

#[test]
fn ipv6_endpoints_keep_brackets_and_scope() {
    let frame = Frame::new(
        Price::ZERO,
        Message::Leave {
            addr: Endpoint(SocketAddr::V6(SocketAddrV6::new(
                "fe80::1".parse().expect("v6"),
                47101,
                0,
                3,
            ))),
        },
    );
    let bytes = frame.to_bytes();
    assert_eq!(bytes, b"LPPSP/0\r\nLeave/[fe80::1%3]:47101\r\n\r\n");
    assert_eq!(decode_datagram(&bytes, &Limits::default()), Ok(frame));
}

#[test]
fn default_port_is_filled_in() {
    let got = decode_datagram(b"LPPSP/1\r\nLeave/10.0.0.7\r\n\r\n", &Limits::default());
    let want = Frame::new(
        Price::from_micros(1_000_000),
        Message::Leave {
            addr: "10.0.0.7:47101".parse().expect("endpoint"),
        },
    );
    assert_eq!(got, Ok(want));
    for (sent, meant) in [
        ("[::1]", "[::1]:47101"),
        // A link-local address needs its zone, port or not.
        ("[fe80::1%2]", "[fe80::1%2]:47101"),
    ] {
        let input = format!("LPPSP/1\r\nLeave/{sent}\r\n\r\n");
        let got = decode_datagram(input.as_bytes(), &Limits::default());
        let addr: Endpoint = meant.parse().expect("endpoint");
        assert!(
            matches!(&got, Ok(f) if f.message == Message::Leave { addr }),
            "{sent}: {got:?}"
        );
        assert_eq!(addr.to_string(), meant);
    }
}

// ---------------------------------------------------------------------------
// Fuzz seeds
// ---------------------------------------------------------------------------

/// The limits of fuzz/fuzz_targets/stream_decode.rs.
const FUZZ_STREAM_LIMITS: Limits = SMALL;

fn seed_frames() -> Vec<(&'static str, Frame)> {
    let node: NodeId = "0123456789abcdef".parse().expect("node id");
    let other: NodeId = "fedcba9876543210".parse().expect("node id");
    let job = JobId(0x00c0_ffee_0000_0001);
    let date = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(1_795_600_000));
    let price: Price = "1.5".parse().expect("price");
    let head = |m: Message| {
        Frame::new(price, m)
            .with_header("Date", date.clone())
            .with_header("Node", node.to_string())
    };
    let v4: Endpoint = "192.168.1.20:47101".parse().expect("endpoint");
    let v6: Endpoint = "[fe80::1%2]:47200".parse().expect("endpoint");
    let body = Body {
        chunks: vec![
            Chunk {
                data: Bytes::from_static(b"[1,2,3,4]"),
                extensions: vec![ChunkExtension {
                    name: "part".into(),
                    value: Some("1".into()),
                }],
            },
            Chunk {
                data: Bytes::from_static(b"\x00\x01\x02\xff binary \r\n"),
                extensions: vec![
                    ChunkExtension {
                        name: "note".into(),
                        value: Some("a \"quoted\" \\ value".into()),
                    },
                    ChunkExtension {
                        name: "flag".into(),
                        value: None,
                    },
                ],
            },
        ],
        last_extensions: vec![ChunkExtension {
            name: "end".into(),
            value: None,
        }],
        trailers: Headers::new().with("Checksum", "sha256:00ff"),
    };
    vec![
        (
            "hand-client",
            head(Message::Hand(Hand {
                addr: v4,
                power: 12_000,
                arch: Arch::new("x86_64").expect("arch"),
                is_client: true,
                remaining_bounty: Some("250.75".parse().expect("bounty")),
            })),
        ),
        (
            "hand-compute-v6",
            head(Message::Hand(Hand {
                addr: v6,
                power: 3_500,
                arch: Arch::new("aarch64").expect("arch"),
                is_client: false,
                remaining_bounty: None,
            }))
            .with_header("Seq", "42"),
        ),
        ("leave", head(Message::Leave { addr: v4 })),
        (
            "idle",
            head(Message::Idle { idle: true }).with_header("Queue", "3"),
        ),
        (
            "task-body",
            head(Message::Task {
                job,
                task: 7,
                kernel: KernelName::new("sum").expect("kernel"),
            })
            .with_body(body.clone()),
        ),
        ("accept", head(Message::Accept { job, task: 7 })),
        (
            "refuse",
            head(Message::Refuse {
                job,
                task: 7,
                reason: RefuseReason::CannotPay,
            }),
        ),
        (
            "result-body",
            head(Message::Result {
                job,
                task: 7,
                ok: true,
            })
            .with_body(Body::from_bytes(&b"10"[..])),
        ),
        (
            "result-error",
            head(Message::Result {
                job,
                task: 8,
                ok: false,
            })
            .with_body(Body::from_bytes(&b"kernel panicked"[..])),
        ),
        ("cancel-task", head(Message::Cancel { job, task: Some(8) })),
        ("cancel-job", head(Message::Cancel { job, task: None })),
        (
            "integrate",
            head(Message::Integrate {
                job,
                tasks: 100,
                kernel: KernelName::new("w1-sum-squares").expect("kernel"),
            }),
        ),
        (
            "integrated",
            head(Message::Integrated { job, ok: true }).with_body(Body::from_bytes(&b"42"[..])),
        ),
        (
            "module",
            head(Message::Module {
                job,
                kernel: KernelName::new(format!("wasm:{}", "ab".repeat(32))).expect("kernel"),
            })
            .with_body(Body::from_bytes(&b"\0asm\x01\0\0\0"[..])),
        ),
        (
            "heads",
            head(Message::Heads { count: 1 })
                .with_body(Body::from_bytes(&b"0123456789abcdef 12 12\n"[..])),
        ),
        (
            "want",
            head(Message::Want { count: 1 })
                .with_body(Body::from_bytes(&b"0123456789abcdef 3 5\n"[..])),
        ),
        (
            "propose",
            head(Message::Propose {
                epoch: 3,
                price: "2.5".parse().expect("price"),
                proposer: other,
            }),
        ),
        (
            "vote",
            head(Message::Vote {
                epoch: 3,
                proposer: other,
                price: "2.5".parse().expect("price"),
                yes: false,
            }),
        ),
        (
            "commit",
            head(Message::Commit {
                epoch: 3,
                price: "2.5".parse().expect("price"),
                proposer: other,
            }),
        ),
        (
            "receipt",
            head(Message::Receipt {
                job,
                payer: node,
                payee: other,
                price,
                power: 2_000,
                micros: 250_000,
                charge: "750".parse().expect("bounty"),
            })
            .with_header("Signature", "ZmFrZQ=="),
        ),
        (
            "empty-body",
            Frame::new(Price::ZERO, Message::Idle { idle: false }).with_body(Body::default()),
        ),
    ]
}

/// File name -> contents, for each fuzz target.
fn fuzz_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let frames = seed_frames();
    let mut seeds = Vec::new();
    for (i, (name, frame)) in frames.iter().enumerate() {
        let bytes = frame.to_bytes();
        seeds.push(("datagram_decode", format!("{name}.bin"), bytes.clone()));
        // stream_decode reads a control byte first: 0 feeds one byte at a
        // time, n feeds n bytes at a time.
        let control = [0u8, 1, 5, 17, 64, 255][i % 6];
        let mut stream = vec![control];
        stream.extend_from_slice(&bytes);
        seeds.push(("stream_decode", format!("{name}.bin"), stream));
    }
    let mut all = vec![3u8];
    for (_, frame) in &frames {
        wire::encode(frame, &mut all);
    }
    seeds.push(("stream_decode", "all-kinds.bin".into(), all));
    // A frame the stream survives, then a good one.
    let mut recover = vec![0u8];
    recover
        .extend_from_slice(b"LPPSP/1\r\nShrug/1\r\nDate: Sunday, 06-Nov-94 08:49:37 GMT\r\n\r\n");
    wire::encode(&frames[2].1, &mut recover);
    seeds.push(("stream_decode", "recover.bin".into(), recover));
    seeds
}

/// The checked-in seeds are exactly what `fuzz_seeds` makes, and each one
/// decodes as meant. `LPPSP_WRITE_FUZZ_SEEDS=1 cargo test -p lppsp-core
/// --test wire_roundtrip fuzz_seeds` rewrites them.
#[test]
fn fuzz_seeds_are_current() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    let seeds = fuzz_seeds();
    for (target, name, data) in &seeds {
        match *target {
            "datagram_decode" => {
                assert!(decode_datagram(data, &Limits::datagram()).is_ok(), "{name}");
            }
            _ => {
                let got = decode_whole(&data[1..], FUZZ_STREAM_LIMITS);
                assert!(!got.is_empty(), "{name}");
                for (i, r) in got.iter().enumerate() {
                    let ok = match r {
                        Ok(_) => true,
                        Err(e) => name == "recover.bin" && i == 0 && e.is_recoverable(),
                    };
                    assert!(ok, "{name}: {r:?}");
                }
            }
        }
    }
    if std::env::var_os("LPPSP_WRITE_FUZZ_SEEDS").is_some() {
        for target in ["datagram_decode", "stream_decode"] {
            let dir = root.join(target);
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create seed dir");
        }
        for (target, name, data) in &seeds {
            std::fs::write(root.join(target).join(name), data).expect("write seed");
        }
    }
    for target in ["datagram_decode", "stream_decode"] {
        let mut on_disk: Vec<(String, Vec<u8>)> = std::fs::read_dir(root.join(target))
            .expect("fuzz/seeds/<target> exists (LPPSP_WRITE_FUZZ_SEEDS=1 writes it)")
            .map(|e| {
                let e = e.expect("dir entry");
                let name = e.file_name().to_string_lossy().into_owned();
                (name, std::fs::read(e.path()).expect("read seed"))
            })
            .collect();
        on_disk.sort();
        let mut want: Vec<(String, Vec<u8>)> = seeds
            .iter()
            .filter(|(t, _, _)| *t == target)
            .map(|(_, n, d)| (n.clone(), d.clone()))
            .collect();
        want.sort();
        assert!(
            on_disk == want,
            "fuzz/seeds/{target} is stale; rerun with LPPSP_WRITE_FUZZ_SEEDS=1"
        );
    }
}
