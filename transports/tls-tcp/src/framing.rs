//! Frames over any byte stream: a buffered, bounded reader on
//! [`StreamDecoder`], and a writer that batches small frames into large
//! writes and hands large chunk data to the stream from its own buffer.
//!
//! Generic over tokio's `AsyncRead`/`AsyncWrite` so that the TLS transport
//! and tests over plain pipes share it.

use std::io;

use bytes::BytesMut;
use lppsp_core::component::TransportError;
use lppsp_core::wire::{
    encode_body_end, encode_chunk_size_line, encode_head, DecodeError, DecodeErrorKind, Frame,
    Limits, StreamDecoder,
};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// Smallest read: the reader asks the stream for at least this much room.
pub const READ_MIN: usize = 64 * 1024;
/// Chunks at least this large are written straight from the frame's own
/// buffer instead of being copied into the write buffer.
pub const DIRECT_MIN: usize = 32 * 1024;
/// The write buffer is handed to the stream once it holds this much.
pub const WRITE_BATCH: usize = 256 * 1024;

/// Reads frames from a byte stream.
#[derive(Debug)]
pub struct FrameSource<R> {
    io: R,
    buf: BytesMut,
    decoder: StreamDecoder,
    eof: bool,
}

impl<R: AsyncRead + Unpin + Send> FrameSource<R> {
    pub fn new(io: R, limits: Limits) -> Self {
        Self {
            io,
            buf: BytesMut::with_capacity(READ_MIN),
            decoder: StreamDecoder::new(limits),
            eof: false,
        }
    }

    /// Bytes decoded so far.
    pub fn consumed(&self) -> u64 {
        self.decoder.consumed()
    }

    /// The next frame; `Ok(None)` at a clean end of stream (at a frame
    /// boundary). Cancel-safe: bytes read so far stay in the buffer.
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, TransportError> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(frame)) => return Ok(Some(frame)),
                Ok(None) => {}
                Err(e) if e.is_recoverable() => return Err(TransportError::BadFrame(e)),
                Err(e) => return Err(TransportError::Protocol(e)),
            }
            if self.eof {
                if self.buf.is_empty() && self.decoder.is_idle() {
                    return Ok(None);
                }
                return Err(TransportError::Protocol(DecodeError {
                    offset: self.decoder.consumed() + self.buf.len() as u64,
                    kind: DecodeErrorKind::Truncated,
                }));
            }
            // Room for the rest of a large chunk in one allocation, and
            // never less than READ_MIN so that small frames come in batches.
            let missing = self.decoder.wanted().saturating_sub(self.buf.len());
            self.buf.reserve(missing.max(READ_MIN));
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                // TLS: the peer closed TCP without close_notify. Harmless
                // between frames; inside one it is reported as truncation.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => self.eof = true,
                Err(e) => return Err(TransportError::Io(e)),
            }
        }
    }
}

/// Writes frames to a byte stream.
#[derive(Debug)]
pub struct FrameSink<W> {
    io: W,
    buf: Vec<u8>,
}

impl<W: AsyncWrite + Unpin + Send> FrameSink<W> {
    pub fn new(io: W) -> Self {
        Self {
            io,
            buf: Vec::with_capacity(16 * 1024),
        }
    }

    /// Writes `frames` in order and flushes once. Not cancel-safe: a write
    /// dropped halfway leaves a partial frame on the stream, so a caller
    /// that gives up on a write must drop the connection.
    pub async fn write_frames(&mut self, frames: &[Frame]) -> io::Result<()> {
        self.buf.clear();
        for frame in frames {
            encode_head(frame, &mut self.buf);
            if let Some(body) = &frame.body {
                for chunk in &body.chunks {
                    let data = &chunk.data;
                    if data.is_empty() {
                        // A zero-size chunk would read as the last chunk.
                        continue;
                    }
                    encode_chunk_size_line(data.len(), &chunk.extensions, &mut self.buf);
                    if data.len() >= DIRECT_MIN {
                        self.io.write_all(&self.buf).await?;
                        self.buf.clear();
                        self.io.write_all(data).await?;
                    } else {
                        self.buf.extend_from_slice(data);
                    }
                    self.buf.extend_from_slice(b"\r\n");
                    if self.buf.len() >= WRITE_BATCH {
                        self.io.write_all(&self.buf).await?;
                        self.buf.clear();
                    }
                }
                encode_body_end(body, &mut self.buf);
            }
            if self.buf.len() >= WRITE_BATCH {
                self.io.write_all(&self.buf).await?;
                self.buf.clear();
            }
        }
        if !self.buf.is_empty() {
            self.io.write_all(&self.buf).await?;
            self.buf.clear();
        }
        // One huge header-only frame must not pin a huge buffer forever.
        if self.buf.capacity() > 4 * WRITE_BATCH {
            self.buf = Vec::with_capacity(16 * 1024);
        }
        self.io.flush().await
    }

    /// Flushes and closes the sending half (TLS: close_notify, then FIN).
    pub async fn close(&mut self) -> io::Result<()> {
        self.io.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use lppsp_core::wire::{
        encode, Body, Chunk, ChunkExtension, Headers, JobId, KernelName, Message,
    };
    use lppsp_core::Price;

    fn frames() -> Vec<Frame> {
        let price = Price::from_micros(1_500_000);
        let task = Message::Task {
            job: JobId(0xabc),
            task: 7,
            kernel: KernelName::new("sum").unwrap(),
        };
        let ext = |n: &str, v: Option<&str>| ChunkExtension {
            name: n.into(),
            value: v.map(Into::into),
        };
        vec![
            Frame::new(price, Message::Idle { idle: true }),
            Frame::new(Price::ZERO, Message::Idle { idle: false })
                .with_header("Date", "Wed, 25 Nov 2026 09:30:00 GMT")
                .with_header("X-Thing", "a b c"),
            Frame::new(price, task.clone()).with_body(Body::from_bytes(&b"hello"[..])),
            Frame::new(price, task.clone()).with_body(Body::default()),
            Frame::new(price, task.clone()).with_body(Body {
                chunks: vec![
                    Chunk {
                        data: Bytes::from(vec![7u8; 3 * DIRECT_MIN]),
                        extensions: vec![ext("a", None), ext("b", Some("tok"))],
                    },
                    Chunk {
                        data: Bytes::new(),
                        extensions: vec![],
                    },
                    Chunk {
                        data: Bytes::from_static(b"tail"),
                        extensions: vec![ext("q", Some("has \"quotes\" \\ and space"))],
                    },
                ],
                last_extensions: vec![ext("end", Some("1"))],
                trailers: Headers::new().with("Digest", "sha-256=abc"),
            }),
        ]
    }

    #[tokio::test]
    async fn same_bytes_as_core_encoder() {
        let frames = frames();
        let mut expected = Vec::new();
        for f in &frames {
            encode(f, &mut expected);
        }
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let writer = tokio::spawn(async move {
            let mut sink = FrameSink::new(a);
            sink.write_frames(&frames).await.unwrap();
            sink.close().await.unwrap();
        });
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn round_trip_and_clean_eof() {
        let frames = frames();
        let (a, b) = tokio::io::duplex(4096);
        let sent = frames.clone();
        let writer = tokio::spawn(async move {
            let mut sink = FrameSink::new(a);
            sink.write_frames(&sent[..2]).await.unwrap();
            sink.write_frames(&sent[2..]).await.unwrap();
            sink.close().await.unwrap();
        });
        let mut src = FrameSource::new(b, Limits::default());
        for f in &frames {
            let mut want = f.clone();
            // Empty chunks are not sent.
            if let Some(body) = &mut want.body {
                body.chunks.retain(|c| !c.data.is_empty());
            }
            assert_eq!(src.read_frame().await.unwrap().as_ref(), Some(&want));
        }
        assert!(src.read_frame().await.unwrap().is_none());
        assert!(src.read_frame().await.unwrap().is_none());
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn truncated_stream_is_protocol_error() {
        let (mut a, b) = tokio::io::duplex(4096);
        a.write_all(b"LPPSP/1\r\nIdle/true\r\n").await.unwrap();
        drop(a);
        let mut src = FrameSource::new(b, Limits::default());
        match src.read_frame().await {
            Err(TransportError::Protocol(e)) => assert_eq!(e.kind, DecodeErrorKind::Truncated),
            other => panic!("{other:?}"),
        }
    }
}
