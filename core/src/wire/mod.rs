//! The LPPSP/1.0 wire codec.
//!
//! A frame is, in order (docs/PROTOCOL.md has the ABNF):
//!
//! ```text
//! LPPSP/<price> CRLF                     protocol header line (RFC 2.1)
//! <Kind>/<field>/... CRLF                one message line (RFC 2.2-2.4 + extensions)
//! *( <Name>: <value> CRLF )              header lines (Date: RFC 1123, Node: ...)
//! CRLF
//! [ chunked body ]                       only with "Transfer-Encoding: chunked" (RFC 2.7)
//! ```
//!
//! Decoding never panics and never blocks: [`StreamDecoder`] takes whatever
//! bytes have arrived and answers "a frame", "need more" or an error with
//! the byte offset where the input went wrong; [`decode_datagram`] takes one
//! whole datagram. Every size read from the input is bounded by [`Limits`].
//!
//! Errors come in two weights. A *frame* error (unknown message kind, a bad
//! field, a bad `Date`) leaves the framing intact: the decoder has consumed
//! exactly that frame and the stream goes on. A *stream* error (bad syntax,
//! a limit exceeded) means the framing can no longer be trusted: the
//! connection must be closed.

mod decode;
mod encode;
pub mod headers;
mod message;

use std::fmt;

use bytes::Bytes;

pub use decode::{decode_datagram, DecodeError, DecodeErrorKind, StreamDecoder};
pub use encode::{encode, encode_body_end, encode_chunk_size_line, encode_head};
pub use message::{
    Arch, Endpoint, Hand, JobId, KernelName, Message, MessageError, RefuseReason,
    DEFAULT_BEACON_PORT, DEFAULT_TLS_PORT,
};

use crate::money::Price;

/// The protocol name in the first line.
pub const PROTOCOL: &str = "LPPSP";

/// Bounds on everything a decoder reads. Exceeding one is a stream error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Longest line (protocol, message, header, chunk-size, trailer), CRLF excluded.
    pub max_line: usize,
    /// Most header lines in one frame (and most trailer lines).
    pub max_headers: usize,
    /// Largest single chunk.
    pub max_chunk: usize,
    /// Largest body, all chunks together.
    pub max_body: usize,
    /// Most chunks in one body (bounds per-chunk bookkeeping).
    pub max_chunks: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_line: 8 * 1024,
            max_headers: 64,
            max_chunk: 16 * 1024 * 1024,
            max_body: 64 * 1024 * 1024,
            max_chunks: 4096,
        }
    }
}

impl Limits {
    /// Limits for UDP beacons: one datagram, no large bodies.
    pub fn datagram() -> Self {
        Self {
            max_line: 4096,
            max_headers: 32,
            max_chunk: 8192,
            max_body: 8192,
            max_chunks: 16,
        }
    }
}

/// One `Name: value` line. Names are tokens and compare case-insensitively;
/// values are UTF-8 without control characters, trimmed of surrounding blanks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// An ordered list of headers (order is kept: signatures cover bytes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers(pub Vec<Header>);

impl Headers {
    pub fn new() -> Self {
        Self(Vec::new())
    }
    /// The first value of `name`, compared case-insensitively.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }
    /// Appends a header. The caller supplies a valid name and value; the
    /// encoder writes what it is given, so invalid text makes an invalid frame.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push(Header {
            name: name.into(),
            value: value.into(),
        });
    }
    /// Builder form of [`Headers::push`].
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.push(name, value);
        self
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }
}

/// One chunk extension, `;name` or `;name=value` (value unquoted here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkExtension {
    pub name: String,
    pub value: Option<String>,
}

/// One data chunk of a body, with its extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub data: Bytes,
    pub extensions: Vec<ChunkExtension>,
}

/// A chunked body (RFC 2.7): data chunks, the last chunk's extensions and
/// the trailer headers. Chunks are kept as sent so that extensions stay
/// attached to their data and large inputs are never copied.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Body {
    pub chunks: Vec<Chunk>,
    pub last_extensions: Vec<ChunkExtension>,
    pub trailers: Headers,
}

impl Body {
    /// A body of one chunk holding `data` (or no chunk when empty).
    pub fn from_bytes(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        let chunks = if data.is_empty() {
            Vec::new()
        } else {
            vec![Chunk {
                data,
                extensions: Vec::new(),
            }]
        };
        Self {
            chunks,
            last_extensions: Vec::new(),
            trailers: Headers::new(),
        }
    }
    /// Total payload length.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(|c| c.data.len()).sum()
    }
    pub fn is_empty(&self) -> bool {
        self.chunks.iter().all(|c| c.data.is_empty())
    }
    /// The payload as one buffer; free when the body is a single chunk.
    pub fn to_bytes(&self) -> Bytes {
        match self.chunks.as_slice() {
            [] => Bytes::new(),
            [one] => one.data.clone(),
            many => {
                let mut v = Vec::with_capacity(self.len());
                for c in many {
                    v.extend_from_slice(&c.data);
                }
                Bytes::from(v)
            }
        }
    }
}

/// A whole frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The committed market price the sender holds (RFC 2.1).
    pub price: Price,
    pub message: Message,
    /// Headers, without `Transfer-Encoding` (that is implied by `body`).
    pub headers: Headers,
    pub body: Option<Body>,
}

impl Frame {
    /// A frame with no headers and no body.
    pub fn new(price: Price, message: Message) -> Self {
        Self {
            price,
            message,
            headers: Headers::new(),
            body: None,
        }
    }
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push(name, value);
        self
    }
    pub fn with_body(mut self, body: Body) -> Self {
        self.body = Some(body);
        self
    }
    /// The frame's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        encode(self, &mut out);
        out
    }
}

/// Encodes a frame without a body, has `sign` sign every byte up to the
/// end of its last header, and appends that signature as a final
/// `Sig: <base64>` header: the layout of signed beacons and receipts.
pub fn encode_signed(frame: &Frame, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> Vec<u8> {
    use base64::Engine as _;
    let mut out = Vec::with_capacity(1024);
    encode(frame, &mut out);
    // Drop the blank line, sign the head, then append Sig and the blank line.
    out.truncate(out.len().saturating_sub(2));
    let sig = sign(&out);
    out.extend_from_slice(b"Sig: ");
    out.extend_from_slice(
        base64::engine::general_purpose::STANDARD
            .encode(sig)
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n\r\n");
    out
}

impl fmt::Display for Frame {
    /// A readable rendering for logs and `lppsp frame decode`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{PROTOCOL}/{}", self.price)?;
        writeln!(f, "{}", self.message)?;
        for h in self.headers.iter() {
            writeln!(f, "{}: {}", h.name, h.value)?;
        }
        if let Some(body) = &self.body {
            writeln!(
                f,
                "-- body: {} bytes in {} chunks",
                body.len(),
                body.chunks.len()
            )?;
            for (i, c) in body.chunks.iter().enumerate() {
                if !c.extensions.is_empty() {
                    writeln!(f, "   chunk {i} extensions: {}", fmt_exts(&c.extensions))?;
                }
            }
            if !body.last_extensions.is_empty() {
                writeln!(
                    f,
                    "   last-chunk extensions: {}",
                    fmt_exts(&body.last_extensions)
                )?;
            }
            for t in body.trailers.iter() {
                writeln!(f, "   trailer {}: {}", t.name, t.value)?;
            }
        }
        Ok(())
    }
}

fn fmt_exts(exts: &[ChunkExtension]) -> String {
    exts.iter()
        .map(|e| match &e.value {
            Some(v) => format!("{}={v:?}", e.name),
            None => e.name.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// RFC 7230 `tchar`.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// True when `s` is a non-empty token.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}
