//! Incremental, bounded frame decoding.
//!
//! The decoder is a small state machine over lines and chunk data. It
//! consumes complete lines from the caller's buffer as they arrive and keeps
//! the parts of the frame parsed so far, so input that trickles in one byte
//! at a time costs linear work, and chunk data is split off the buffer
//! without copying.

use bytes::{Buf, Bytes, BytesMut};

use super::{
    Body, Chunk, ChunkExtension, Frame, Header, Headers, Limits, Message, MessageError, PROTOCOL,
};
use crate::money::{AmountError, Price};
use crate::node_id::NodeId;

/// What went wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {offset}: {kind}")]
pub struct DecodeError {
    /// Offset in the stream (or datagram) of the byte or line at fault.
    pub offset: u64,
    pub kind: DecodeErrorKind,
}

impl DecodeError {
    /// True when only this frame is bad: it has been consumed whole, and
    /// the stream can go on with the next frame. False when the framing is
    /// lost and the connection must be closed.
    pub fn is_recoverable(&self) -> bool {
        matches!(
            self.kind,
            DecodeErrorKind::Message(_)
                | DecodeErrorKind::BadHeaderValue { .. }
                | DecodeErrorKind::ForbiddenTrailer(_)
        )
    }
}

/// The kinds of decoding error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    #[error("line ends in LF without CR")]
    BareLf,
    #[error("CR inside a line")]
    BareCr,
    #[error("line longer than the limit of {limit} bytes")]
    LineTooLong { limit: usize },
    #[error("first line is not LPPSP/<price>: {0:?}")]
    BadProtocolLine(String),
    #[error("bad price in protocol line: {0}")]
    BadPrice(AmountError),
    #[error("message line holds a byte outside visible US-ASCII")]
    BadMessageChar,
    #[error("{0}")]
    Message(MessageError),
    #[error("bad header line: {0}")]
    BadHeaderLine(&'static str),
    #[error("more than {limit} header lines")]
    TooManyHeaders { limit: usize },
    #[error("header {name}: {reason}")]
    BadHeaderValue { name: String, reason: String },
    #[error("Transfer-Encoding {0:?} is not supported (only chunked)")]
    UnsupportedTransferEncoding(String),
    #[error("Content-Length is not used by LPPSP; bodies are chunked")]
    ContentLength,
    #[error("trailer {0} is not allowed")]
    ForbiddenTrailer(String),
    #[error("bad chunk-size line: {0}")]
    BadChunkSize(&'static str),
    #[error("bad chunk extension: {0}")]
    BadChunkExtension(&'static str),
    #[error("chunk of {size} bytes exceeds the limit of {limit}")]
    ChunkTooLarge { size: u64, limit: usize },
    #[error("body exceeds the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("more than {limit} chunks")]
    TooManyChunks { limit: usize },
    #[error("chunk data not followed by CRLF")]
    MissingChunkCrlf,
    #[error("input ends inside a frame")]
    Truncated,
    #[error("{0} bytes after the end of the frame")]
    TrailingBytes(usize),
}

#[derive(Debug)]
enum State {
    Protocol,
    Message,
    Header,
    ChunkSize,
    ChunkData {
        remaining: usize,
        extensions: Vec<ChunkExtension>,
    },
    ChunkEnd,
    Trailer,
}

/// Decodes frames from a byte stream; see the module doc.
#[derive(Debug)]
pub struct StreamDecoder {
    limits: Limits,
    /// Stream offset of the caller's `buf[0]`.
    offset: u64,
    /// Leading bytes of `buf` already searched for LF without success.
    scanned: usize,
    state: State,
    price: Price,
    message: Option<Message>,
    headers: Headers,
    chunked: bool,
    body: Body,
    body_len: usize,
    /// The first frame-level error; reported once the frame is consumed.
    soft_error: Option<DecodeError>,
    /// Set after a stream error; every later call returns it.
    failed: Option<DecodeError>,
}

impl StreamDecoder {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            offset: 0,
            scanned: 0,
            state: State::Protocol,
            price: Price::ZERO,
            message: None,
            headers: Headers::new(),
            chunked: false,
            body: Body::default(),
            body_len: 0,
            soft_error: None,
            failed: None,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Total bytes consumed from the stream so far.
    pub fn consumed(&self) -> u64 {
        self.offset
    }

    /// How many more bytes the current chunk needs; a reader may reserve
    /// this much so that a large chunk lands in one allocation.
    pub fn wanted(&self) -> usize {
        match &self.state {
            State::ChunkData { remaining, .. } => remaining.saturating_add(2),
            _ => 0,
        }
    }

    /// True when no frame is partly decoded.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Protocol) && self.scanned == 0
    }

    /// Decodes the next frame from `buf`, consuming its bytes.
    ///
    /// `Ok(None)`: more input is needed (what was read is kept). An error
    /// with [`DecodeError::is_recoverable`] has consumed exactly the bad
    /// frame; any other error is final for this stream.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.step(buf) {
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
            Ok(Some(())) => {
                let soft = self.soft_error.take();
                let frame = self.take_frame();
                match soft {
                    Some(e) => Err(e),
                    // A missing message would have been a soft error.
                    None => Ok(frame),
                }
            }
            Ok(None) => Ok(None),
        }
    }

    fn take_frame(&mut self) -> Option<Frame> {
        let body = std::mem::take(&mut self.body);
        let frame = self.message.take().map(|message| Frame {
            price: self.price,
            message,
            headers: std::mem::take(&mut self.headers),
            body: self.chunked.then_some(body),
        });
        self.headers = Headers::new();
        self.chunked = false;
        self.body_len = 0;
        self.state = State::Protocol;
        frame
    }

    fn err(&self, offset: u64, kind: DecodeErrorKind) -> DecodeError {
        DecodeError { offset, kind }
    }

    fn soft(&mut self, offset: u64, kind: DecodeErrorKind) {
        if self.soft_error.is_none() {
            self.soft_error = Some(DecodeError { offset, kind });
        }
    }

    /// Splits the next CRLF-terminated line off `buf`.
    /// Returns the line without CRLF and the stream offset of its first byte.
    fn next_line(&mut self, buf: &mut BytesMut) -> Result<Option<(Bytes, u64)>, DecodeError> {
        let start = self.scanned.min(buf.len());
        let Some(pos) = buf[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| p + start)
        else {
            self.scanned = buf.len();
            // Allow for the CR that may still come.
            if buf.len() > self.limits.max_line.saturating_add(1) {
                return Err(self.err(
                    self.offset,
                    DecodeErrorKind::LineTooLong {
                        limit: self.limits.max_line,
                    },
                ));
            }
            return Ok(None);
        };
        let line_start = self.offset;
        // The length check comes first, as in the no-LF case above, so that
        // the error does not depend on how the input was split.
        if pos > self.limits.max_line.saturating_add(1) {
            return Err(self.err(
                line_start,
                DecodeErrorKind::LineTooLong {
                    limit: self.limits.max_line,
                },
            ));
        }
        if pos == 0 || buf[pos - 1] != b'\r' {
            return Err(self.err(line_start + pos as u64, DecodeErrorKind::BareLf));
        }
        let len = pos - 1;
        if let Some(cr) = buf[..len].iter().position(|&b| b == b'\r') {
            return Err(self.err(line_start + cr as u64, DecodeErrorKind::BareCr));
        }
        let mut line = buf.split_to(pos + 1).freeze();
        line.truncate(len);
        self.offset += (pos + 1) as u64;
        self.scanned = 0;
        Ok(Some((line, line_start)))
    }

    /// Advances until a frame is complete (`Some`) or input runs out (`None`).
    fn step(&mut self, buf: &mut BytesMut) -> Result<Option<()>, DecodeError> {
        loop {
            match std::mem::replace(&mut self.state, State::Protocol) {
                State::Protocol => {
                    let Some((line, at)) = self.next_line(buf)? else {
                        self.state = State::Protocol;
                        return Ok(None);
                    };
                    self.price = parse_protocol_line(&line).map_err(|k| self.err(at, k))?;
                    self.state = State::Message;
                }
                State::Message => {
                    let Some((line, at)) = self.next_line(buf)? else {
                        self.state = State::Message;
                        return Ok(None);
                    };
                    if let Some(i) = line.iter().position(|b| !(0x21..=0x7e).contains(b)) {
                        return Err(self.err(at + i as u64, DecodeErrorKind::BadMessageChar));
                    }
                    // Visible ASCII is valid UTF-8.
                    let text = std::str::from_utf8(&line).unwrap_or_default();
                    match Message::parse(text) {
                        Ok(m) => self.message = Some(m),
                        Err(e) => self.soft(at, DecodeErrorKind::Message(e)),
                    }
                    self.state = State::Header;
                }
                State::Header => {
                    let Some((line, at)) = self.next_line(buf)? else {
                        self.state = State::Header;
                        return Ok(None);
                    };
                    if line.is_empty() {
                        if self.chunked {
                            self.state = State::ChunkSize;
                            continue;
                        }
                        return Ok(Some(()));
                    }
                    if self.headers.len() >= self.limits.max_headers {
                        return Err(self.err(
                            at,
                            DecodeErrorKind::TooManyHeaders {
                                limit: self.limits.max_headers,
                            },
                        ));
                    }
                    let header =
                        parse_header_line(&line).map_err(|(i, k)| self.err(at + i as u64, k))?;
                    self.state = State::Header;
                    self.accept_header(header, at)?;
                }
                State::ChunkSize => {
                    let Some((line, at)) = self.next_line(buf)? else {
                        self.state = State::ChunkSize;
                        return Ok(None);
                    };
                    let (size, extensions) =
                        parse_chunk_size_line(&line, &self.limits).map_err(|k| self.err(at, k))?;
                    if size == 0 {
                        self.body.last_extensions = extensions;
                        self.state = State::Trailer;
                        continue;
                    }
                    if self.body.chunks.len() >= self.limits.max_chunks {
                        return Err(self.err(
                            at,
                            DecodeErrorKind::TooManyChunks {
                                limit: self.limits.max_chunks,
                            },
                        ));
                    }
                    let total = self.body_len.saturating_add(size);
                    if total > self.limits.max_body {
                        return Err(self.err(
                            at,
                            DecodeErrorKind::BodyTooLarge {
                                limit: self.limits.max_body,
                            },
                        ));
                    }
                    self.body_len = total;
                    self.state = State::ChunkData {
                        remaining: size,
                        extensions,
                    };
                }
                State::ChunkData {
                    remaining,
                    extensions,
                } => {
                    if buf.len() < remaining {
                        self.state = State::ChunkData {
                            remaining,
                            extensions,
                        };
                        return Ok(None);
                    }
                    let data = buf.split_to(remaining).freeze();
                    self.offset += remaining as u64;
                    self.body.chunks.push(Chunk { data, extensions });
                    self.state = State::ChunkEnd;
                }
                State::ChunkEnd => {
                    if buf.len() < 2 {
                        if buf.first().is_some_and(|&b| b != b'\r') {
                            return Err(self.err(self.offset, DecodeErrorKind::MissingChunkCrlf));
                        }
                        self.state = State::ChunkEnd;
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(self.err(self.offset, DecodeErrorKind::MissingChunkCrlf));
                    }
                    buf.advance(2);
                    self.offset += 2;
                    self.state = State::ChunkSize;
                }
                State::Trailer => {
                    let Some((line, at)) = self.next_line(buf)? else {
                        self.state = State::Trailer;
                        return Ok(None);
                    };
                    if line.is_empty() {
                        return Ok(Some(()));
                    }
                    if self.body.trailers.len() >= self.limits.max_headers {
                        return Err(self.err(
                            at,
                            DecodeErrorKind::TooManyHeaders {
                                limit: self.limits.max_headers,
                            },
                        ));
                    }
                    let header =
                        parse_header_line(&line).map_err(|(i, k)| self.err(at + i as u64, k))?;
                    self.state = State::Trailer;
                    if is_framing_header(&header.name) {
                        self.soft(at, DecodeErrorKind::ForbiddenTrailer(header.name.clone()));
                    }
                    // Kept even when forbidden (the frame is dropped then
                    // anyway) so that every trailer line counts toward the limit.
                    self.body.trailers.0.push(header);
                }
            }
        }
    }

    fn accept_header(&mut self, header: Header, at: u64) -> Result<(), DecodeError> {
        if header.name.eq_ignore_ascii_case("Transfer-Encoding") {
            if self.chunked || header.value != "chunked" {
                return Err(self.err(
                    at,
                    DecodeErrorKind::UnsupportedTransferEncoding(header.value),
                ));
            }
            self.chunked = true;
            return Ok(());
        }
        if header.name.eq_ignore_ascii_case("Content-Length") {
            return Err(self.err(at, DecodeErrorKind::ContentLength));
        }
        if header.name.eq_ignore_ascii_case("Date") {
            if let Err(reason) = check_rfc1123(&header.value) {
                self.soft(
                    at,
                    DecodeErrorKind::BadHeaderValue {
                        name: header.name.clone(),
                        reason,
                    },
                );
            }
        } else if header.name.eq_ignore_ascii_case("Node") {
            if let Err(e) = header.value.parse::<NodeId>() {
                self.soft(
                    at,
                    DecodeErrorKind::BadHeaderValue {
                        name: header.name.clone(),
                        reason: e.to_string(),
                    },
                );
            }
        }
        self.headers.0.push(header);
        Ok(())
    }
}

fn is_framing_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("Transfer-Encoding") || name.eq_ignore_ascii_case("Content-Length")
}

/// Decodes one whole datagram holding exactly one frame.
pub fn decode_datagram(data: &[u8], limits: &Limits) -> Result<Frame, DecodeError> {
    let mut decoder = StreamDecoder::new(*limits);
    let mut buf = BytesMut::from(data);
    match decoder.decode(&mut buf)? {
        Some(frame) if buf.is_empty() => Ok(frame),
        Some(_) => Err(DecodeError {
            offset: (data.len() - buf.len()) as u64,
            kind: DecodeErrorKind::TrailingBytes(buf.len()),
        }),
        None => Err(DecodeError {
            offset: data.len() as u64,
            kind: DecodeErrorKind::Truncated,
        }),
    }
}

fn parse_protocol_line(line: &[u8]) -> Result<Price, DecodeErrorKind> {
    let text = std::str::from_utf8(line).ok();
    let rest = text
        .and_then(|t| t.strip_prefix(PROTOCOL))
        .and_then(|t| t.strip_prefix('/'))
        .ok_or_else(|| {
            DecodeErrorKind::BadProtocolLine(String::from_utf8_lossy(line).into_owned())
        })?;
    rest.parse::<Price>().map_err(DecodeErrorKind::BadPrice)
}

/// `name ":" OWS value OWS`; returns the column and kind on error.
fn parse_header_line(line: &[u8]) -> Result<Header, (usize, DecodeErrorKind)> {
    if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
        return Err((
            0,
            DecodeErrorKind::BadHeaderLine("folded (obsolete) header line"),
        ));
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or((0, DecodeErrorKind::BadHeaderLine("no colon")))?;
    let name = &line[..colon];
    if name.is_empty() {
        return Err((0, DecodeErrorKind::BadHeaderLine("empty name")));
    }
    if let Some(i) = name.iter().position(|&b| !super::is_tchar(b)) {
        return Err((i, DecodeErrorKind::BadHeaderLine("name is not a token")));
    }
    let raw = &line[colon + 1..];
    if let Some(i) = raw
        .iter()
        .position(|&b| b != b'\t' && (b < 0x20 || b == 0x7f))
    {
        return Err((
            colon + 1 + i,
            DecodeErrorKind::BadHeaderLine("control character in value"),
        ));
    }
    let value = std::str::from_utf8(raw).map_err(|e| {
        (
            colon + 1 + e.valid_up_to(),
            DecodeErrorKind::BadHeaderLine("value is not UTF-8"),
        )
    })?;
    Ok(Header {
        // The name is all tchar, so ASCII.
        name: String::from_utf8_lossy(name).into_owned(),
        value: value.trim_matches(|c| c == ' ' || c == '\t').to_string(),
    })
}

fn check_rfc1123(value: &str) -> Result<(), String> {
    let t = httpdate::parse_http_date(value)
        .map_err(|_| format!("{value:?} is not an RFC 1123 date"))?;
    // httpdate also reads RFC 850 and asctime forms; LPPSP takes RFC 1123 only.
    if httpdate::fmt_http_date(t) != value {
        return Err(format!(
            "{value:?} is not in RFC 1123 form (e.g. \"Wed, 25 Nov 2026 09:30:00 GMT\")"
        ));
    }
    Ok(())
}

/// `chunk-size [chunk-extension]`, size in hex.
fn parse_chunk_size_line(
    line: &[u8],
    limits: &Limits,
) -> Result<(usize, Vec<ChunkExtension>), DecodeErrorKind> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(DecodeErrorKind::BadChunkSize("no hex size"));
    }
    let mut size: u64 = 0;
    for &b in &line[..digits] {
        // Hex digits are checked above; a nibble fits.
        let nibble = (b as char).to_digit(16).unwrap_or(0) as u64;
        size = match size.checked_mul(16).and_then(|s| s.checked_add(nibble)) {
            Some(s) => s,
            None => {
                return Err(DecodeErrorKind::ChunkTooLarge {
                    size: u64::MAX,
                    limit: limits.max_chunk,
                })
            }
        };
    }
    if size > limits.max_chunk as u64 {
        return Err(DecodeErrorKind::ChunkTooLarge {
            size,
            limit: limits.max_chunk,
        });
    }
    let extensions = parse_extensions(&line[digits..])?;
    // size <= max_chunk, which is a usize.
    Ok((size as usize, extensions))
}

fn parse_extensions(mut s: &[u8]) -> Result<Vec<ChunkExtension>, DecodeErrorKind> {
    let mut out = Vec::new();
    while let Some((&first, rest)) = s.split_first() {
        if first != b';' {
            return Err(DecodeErrorKind::BadChunkExtension("expected ';'"));
        }
        s = rest;
        let n = s.iter().take_while(|&&b| super::is_tchar(b)).count();
        if n == 0 {
            return Err(DecodeErrorKind::BadChunkExtension("empty name"));
        }
        let name = String::from_utf8_lossy(&s[..n]).into_owned();
        s = &s[n..];
        let value = if let Some(rest) = s.strip_prefix(b"=") {
            s = rest;
            if let Some(rest) = s.strip_prefix(b"\"") {
                let (v, used) = parse_quoted(rest)?;
                s = &rest[used..];
                Some(v)
            } else {
                let n = s.iter().take_while(|&&b| super::is_tchar(b)).count();
                if n == 0 {
                    return Err(DecodeErrorKind::BadChunkExtension("empty value"));
                }
                let v = String::from_utf8_lossy(&s[..n]).into_owned();
                s = &s[n..];
                Some(v)
            }
        } else {
            None
        };
        out.push(ChunkExtension { name, value });
    }
    Ok(out)
}

/// The rest of a quoted-string after its opening quote: the unescaped text
/// and the bytes used, closing quote included.
fn parse_quoted(s: &[u8]) -> Result<(String, usize), DecodeErrorKind> {
    let mut v = Vec::new();
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        match b {
            b'"' => {
                let text = String::from_utf8(v)
                    .map_err(|_| DecodeErrorKind::BadChunkExtension("not UTF-8"))?;
                return Ok((text, i + 1));
            }
            b'\\' => {
                let esc = *s.get(i + 1).ok_or(DecodeErrorKind::BadChunkExtension(
                    "unterminated quoted-string",
                ))?;
                if esc != b'\t' && (esc < 0x20 || esc == 0x7f) {
                    return Err(DecodeErrorKind::BadChunkExtension(
                        "control character in quoted-pair",
                    ));
                }
                v.push(esc);
                i += 2;
            }
            b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => {
                v.push(b);
                i += 1;
            }
            _ => {
                return Err(DecodeErrorKind::BadChunkExtension(
                    "control character in quoted-string",
                ))
            }
        }
    }
    Err(DecodeErrorKind::BadChunkExtension(
        "unterminated quoted-string",
    ))
}
