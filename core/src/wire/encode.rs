//! Frame encoding. Encoding cannot fail: the types only hold valid values,
//! except header text, which the caller vouches for (see [`Headers::push`]).

use super::{is_token, ChunkExtension, Frame, PROTOCOL};

/// Appends `frame`'s bytes to `out`.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) {
    use std::io::Write as _;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{PROTOCOL}/{}\r\n{}\r\n", frame.price, frame.message);
    if frame.body.is_some() {
        // First, so that a signature header may stay last.
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    for h in frame.headers.iter() {
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let Some(body) = &frame.body else { return };
    for chunk in &body.chunks {
        if chunk.data.is_empty() {
            // A zero-size chunk would read as the last chunk.
            continue;
        }
        let _ = write!(out, "{:x}", chunk.data.len());
        write_extensions(&chunk.extensions, out);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&chunk.data);
        out.extend_from_slice(b"\r\n");
    }
    out.push(b'0');
    write_extensions(&body.last_extensions, out);
    out.extend_from_slice(b"\r\n");
    for t in body.trailers.iter() {
        out.extend_from_slice(t.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(t.value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
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
