//! Frame encoding. Encoding cannot fail: the types only hold valid values,
//! except header text, which the caller vouches for (see [`Headers::push`]).
//!
//! [`encode`] writes a whole frame into one buffer. A transport that wants
//! to hand large chunk data to the socket without copying it uses the parts
//! instead: [`encode_head`], then per chunk [`encode_chunk_size_line`], the
//! data and CRLF, then [`encode_body_end`]; the bytes are the same.
//!
//! [`Headers::push`]: super::Headers::push

use super::{is_token, Body, ChunkExtension, Frame, Header, PROTOCOL};

/// Appends `frame`'s bytes to `out`.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) {
    encode_head(frame, out);
    let Some(body) = &frame.body else { return };
    for chunk in &body.chunks {
        if chunk.data.is_empty() {
            // A zero-size chunk would read as the last chunk.
            continue;
        }
        encode_chunk_size_line(chunk.data.len(), &chunk.extensions, out);
        out.extend_from_slice(&chunk.data);
        out.extend_from_slice(b"\r\n");
    }
    encode_body_end(body, out);
}

/// Everything up to and including the blank line after the headers.
pub fn encode_head(frame: &Frame, out: &mut Vec<u8>) {
    use std::io::Write as _;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{PROTOCOL}/{}\r\n{}\r\n", frame.price, frame.message);
    if frame.body.is_some() {
        // First, so that a signature header may stay last.
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    write_headers(frame.headers.iter(), out);
    out.extend_from_slice(b"\r\n");
}

/// The `chunk-size [chunk-extension] CRLF` line of a non-empty chunk.
pub fn encode_chunk_size_line(len: usize, extensions: &[ChunkExtension], out: &mut Vec<u8>) {
    use std::io::Write as _;
    let _ = write!(out, "{len:x}");
    write_extensions(extensions, out);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk, the trailers and the final CRLF.
pub fn encode_body_end(body: &Body, out: &mut Vec<u8>) {
    out.push(b'0');
    write_extensions(&body.last_extensions, out);
    out.extend_from_slice(b"\r\n");
    write_headers(body.trailers.iter(), out);
    out.extend_from_slice(b"\r\n");
}

fn write_headers<'a>(headers: impl Iterator<Item = &'a Header>, out: &mut Vec<u8>) {
    for h in headers {
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

fn write_extensions(exts: &[ChunkExtension], out: &mut Vec<u8>) {
    for e in exts {
        out.push(b';');
        out.extend_from_slice(e.name.as_bytes());
        if let Some(v) = &e.value {
            out.push(b'=');
            if is_token(v) {
                out.extend_from_slice(v.as_bytes());
            } else {
                out.push(b'"');
                for b in v.bytes() {
                    if b == b'"' || b == b'\\' {
                        out.push(b'\\');
                    }
                    out.push(b);
                }
                out.push(b'"');
            }
        }
    }
}
