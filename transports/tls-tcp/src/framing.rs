//! Frames over any byte stream: a buffered, bounded reader on
//! [`StreamDecoder`], and a writer that batches small frames into large
//! writes and hands large chunk data to the stream from its own buffer.
//!
//! Generic over tokio's `AsyncRead`/`AsyncWrite` so that the TLS transport
//! and tests over plain pipes share it.

use std::io;

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
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

/// Chunks at least this large are read into buffers that are reused once
/// every user of an earlier large chunk has dropped it.
pub const RECYCLE_MIN: usize = 1024 * 1024;
/// Extra room in a new large-chunk buffer (see [`FrameSource::read_frame`]).
const LARGE_SLACK: usize = 64 * 1024;
/// Most large chunks kept for reuse (most are still in use by their task).
const MAX_SPARES: usize = 8;
/// Most bytes of large chunks kept for reuse.
const MAX_SPARE_BYTES: usize = 128 * 1024 * 1024;
/// Kept chunks are let go when no data arrives for this long, so that an
/// idle connection holds no memory beyond its read buffer.
const SPARE_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads frames from a byte stream.
///
/// Buffer reuse: a large chunk (a task input of many MiB) needs a buffer of
/// its own, because its bytes go to whoever handles the frame. Allocating a
/// fresh one per frame costs a page fault and the zeroing of every page
/// (the allocator maps and unmaps blocks that large), which was a tenth of
/// a compute node's time on W3. So the reader keeps a handle on the last
/// few large chunks it decoded and, when the next one comes, reads it into
/// the memory of one whose users have all let go of it. Those handles cost
/// nothing while the chunks are in use; free ones are bounded by
/// [`MAX_SPARES`] and [`MAX_SPARE_BYTES`] and dropped after [`SPARE_IDLE`]
/// without input.
#[derive(Debug)]
pub struct FrameSource<R> {
    io: R,
    buf: BytesMut,
    decoder: StreamDecoder,
    eof: bool,
    /// Large chunks handed out, oldest first, to reuse once unique.
    spares: VecDeque<Bytes>,
    /// Longest a frame may take from its first byte to its last.
    frame_deadline: Option<std::time::Duration>,
    /// When the first byte of the frame in progress arrived.
    frame_started: Option<tokio::time::Instant>,
}

impl<R: AsyncRead + Unpin + Send> FrameSource<R> {
    pub fn new(io: R, limits: Limits) -> Self {
        Self {
            io,
            buf: BytesMut::with_capacity(READ_MIN),
            decoder: StreamDecoder::new(limits),
            eof: false,
            spares: VecDeque::new(),
            frame_deadline: None,
            frame_started: None,
        }
    }

    /// Bounds how long one frame may take to arrive, from its first byte
    /// to its last: a peer that sends a frame a byte at a time (slowloris)
    /// gets an error of kind [`io::ErrorKind::TimedOut`] instead of holding
    /// the connection forever. Between frames there is no deadline.
    pub fn with_frame_deadline(mut self, deadline: std::time::Duration) -> Self {
        self.frame_deadline = Some(deadline);
        self
    }

    /// Large chunks held for reuse (in use or free).
    pub fn spares(&self) -> usize {
        self.spares.len()
    }

    /// Remembers the large chunks of a frame just decoded.
    #[inline(never)]
    fn keep_spares(&mut self, frame: &Frame) {
        let Some(body) = &frame.body else { return };
        for chunk in &body.chunks {
            if chunk.data.len() >= RECYCLE_MIN {
                self.spares.push_back(chunk.data.clone());
            }
        }
        let mut bytes: usize = self.spares.iter().map(Bytes::len).sum();
        while self.spares.len() > MAX_SPARES || bytes > MAX_SPARE_BYTES {
            match self.spares.pop_front() {
                Some(old) => bytes -= old.len(),
                None => break,
            }
        }
    }

    /// A free kept buffer with room for `need` bytes, if there is one;
    /// kept buffers found free but too small are let go. The most recent
    /// free one is taken: its memory is the likeliest to be in cache.
    #[inline(never)]
    fn reuse_spare(&mut self, need: usize) -> Option<BytesMut> {
        let mut i = self.spares.len();
        while i > 0 {
            i -= 1;
            if !self.spares[i].is_unique() {
                continue;
            }
            let spare = self.spares.remove(i)?;
            if let Ok(mut buf) = spare.try_into_mut() {
                buf.clear();
                if buf.try_reclaim(need) {
                    return Some(buf);
                }
            }
        }
        None
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
                Ok(Some(frame)) => {
                    let large = |b: &lppsp_core::wire::Body| {
                        b.chunks.iter().any(|c| c.data.len() >= RECYCLE_MIN)
                    };
                    if frame.body.as_ref().is_some_and(large) {
                        self.keep_spares(&frame);
                    }
                    self.frame_started = None;
                    return Ok(Some(frame));
                }
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
            // A large chunk gets a buffer of its own (once per chunk: from
            // then on there is room): a free kept one, else a new one with
            // some slack, so that it fits the next chunk of the same size
            // even when that frame's head is a little longer.
            let room = self.buf.capacity() - self.buf.len();
            if missing >= RECYCLE_MIN && room < missing {
                let need = self.buf.len() + missing;
                let mut large = match self.reuse_spare(need) {
                    Some(b) => b,
                    None => BytesMut::with_capacity(need.saturating_add(LARGE_SLACK)),
                };
                large.extend_from_slice(&self.buf);
                self.buf = large;
            }
            self.buf.reserve(missing.max(READ_MIN));
            // Between frames, kept buffers are let go after SPARE_IDLE
            // without input; inside a frame no timer is set.
            let between_frames = self.buf.is_empty() && self.decoder.is_idle();
            let frame_deadline = match self.frame_deadline {
                Some(limit) if !between_frames => {
                    let started = *self
                        .frame_started
                        .get_or_insert_with(tokio::time::Instant::now);
                    Some((started + limit, limit))
                }
                _ => None,
            };
            let read = if let Some((deadline, limit)) = frame_deadline {
                // Cancel-safe: a read that times out has read nothing.
                match tokio::time::timeout_at(deadline, self.io.read_buf(&mut self.buf)).await {
                    Ok(r) => r,
                    Err(_) => {
                        return Err(TransportError::Io(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("frame not complete within {} ms", limit.as_millis()),
                        )))
                    }
                }
            } else if self.spares.is_empty() || !between_frames {
                self.io.read_buf(&mut self.buf).await
            } else {
                // Cancel-safe: a read that times out has read nothing.
                match tokio::time::timeout(SPARE_IDLE, self.io.read_buf(&mut self.buf)).await {
                    Ok(r) => r,
                    Err(_) => {
                        self.spares.clear();
                        continue;
                    }
                }
            };
            match read {
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

    fn big_task(task: u64, fill: u8) -> Frame {
        let message = Message::Task {
            job: JobId(1),
            task,
            kernel: KernelName::new("sum").unwrap(),
        };
        Frame::new(Price::ZERO, message).with_body(Body::from_bytes(vec![fill; 3 * RECYCLE_MIN]))
    }

    /// The range of addresses a chunk's bytes occupy.
    fn span(b: &Bytes) -> std::ops::Range<usize> {
        let p = b.as_ptr() as usize;
        p..p + b.len()
    }

    #[tokio::test]
    async fn large_chunk_buffers_are_reused_once_free() {
        let sent: Vec<Frame> = (0..4).map(|i| big_task(i, i as u8 + 1)).collect();
        let (a, b) = tokio::io::duplex(1 << 20);
        let frames = sent.clone();
        let writer = tokio::spawn(async move {
            let mut sink = FrameSink::new(a);
            for f in &frames {
                sink.write_frames(std::slice::from_ref(f)).await.unwrap();
            }
            sink.close().await.unwrap();
        });
        let mut src = FrameSource::new(b, Limits::default());
        let chunk = |f: &Frame| f.body.as_ref().unwrap().chunks[0].data.clone();

        let f0 = src.read_frame().await.unwrap().unwrap();
        let f1 = src.read_frame().await.unwrap().unwrap();
        assert_eq!(f0, sent[0]);
        assert_eq!(f1, sent[1]);
        let first = span(&chunk(&f0));
        // Frame 0 still in use: frame 2 gets other memory.
        let f2 = src.read_frame().await.unwrap().unwrap();
        assert_eq!(f2, sent[2]);
        let c2 = span(&chunk(&f2));
        assert!(c2.start >= first.end || c2.end <= first.start);
        assert!(src.spares() >= 3);
        // Frame 0 done with: frame 3 lands in its memory, intact.
        drop(f0);
        let f3 = src.read_frame().await.unwrap().unwrap();
        assert_eq!(f3, sent[3]);
        let c3 = span(&chunk(&f3));
        assert!(
            c3.start < first.end && first.start < c3.end,
            "{c3:?} vs {first:?}"
        );
        // Frames 1 and 2 are untouched by the reuse.
        assert_eq!(f1, sent[1]);
        assert_eq!(f2, sent[2]);
        assert!(src.read_frame().await.unwrap().is_none());
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn kept_buffers_are_let_go_when_idle() {
        let (mut a, b) = tokio::io::duplex(1 << 20);
        let mut src = FrameSource::new(b, Limits::default());
        let frame = big_task(0, 9);
        let mut bytes = Vec::new();
        lppsp_core::wire::encode(&frame, &mut bytes);
        let writer = tokio::spawn(async move {
            a.write_all(&bytes).await.unwrap();
            // Silence, then the end of the stream.
            tokio::time::sleep(SPARE_IDLE + std::time::Duration::from_millis(300)).await;
            drop(a);
        });
        assert_eq!(src.read_frame().await.unwrap().as_ref(), Some(&frame));
        assert_eq!(src.spares(), 1);
        assert!(src.read_frame().await.unwrap().is_none());
        assert_eq!(src.spares(), 0);
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

    #[tokio::test]
    async fn a_frame_that_does_not_finish_in_time_is_an_error_but_idling_is_not() {
        use tokio::io::AsyncWriteExt as _;
        let deadline = std::time::Duration::from_millis(200);
        let (mut a, b) = tokio::io::duplex(4096);
        let mut source = FrameSource::new(b, Limits::default()).with_frame_deadline(deadline);
        // Idle longer than the deadline between frames, then a whole frame.
        let mut whole = Vec::new();
        encode(&frames()[0], &mut whole);
        let half = whole[..whole.len() / 2].to_vec();
        let (done, wait_done) = tokio::sync::oneshot::channel::<()>();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(deadline * 2).await;
            a.write_all(&whole).await.unwrap();
            // Then half a frame, and nothing more: the stream stays open
            // until the reader has given up, however slow the machine.
            a.write_all(&half).await.unwrap();
            let _ = wait_done.await;
            drop(a);
        });
        let first = source.read_frame().await;
        assert!(matches!(first, Ok(Some(_))), "{first:?}");
        match source.read_frame().await {
            Err(TransportError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::TimedOut),
            other => panic!("{other:?}"),
        }
        let _ = done.send(());
        writer.await.unwrap();
    }
}
