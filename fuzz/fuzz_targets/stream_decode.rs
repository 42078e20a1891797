//! Fuzzes `wire::StreamDecoder`.
//!
//! Input: one control byte, then the stream. The stream is decoded twice:
//! once handed over whole, once in pieces (control byte 0: one byte at a
//! time; otherwise pieces of that many bytes, so the first split falls at
//! the control byte's value). Both runs must give the same frames and the
//! same errors, at the same offsets. Every decoded frame must survive
//! encode-then-decode unchanged.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use lppsp_core::wire::{decode_datagram, DecodeError, Frame, Limits, StreamDecoder};

/// Small limits, so that short inputs reach every limit.
const LIMITS: Limits = Limits {
    max_line: 256,
    max_headers: 8,
    max_chunk: 512,
    max_body: 1024,
    max_chunks: 8,
};

#[derive(Debug, PartialEq)]
enum Outcome {
    Frame(Frame),
    Error(DecodeError),
}

fn decode_in_pieces(data: &[u8], piece: usize) -> Vec<Outcome> {
    let mut decoder = StreamDecoder::new(LIMITS);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for part in data.chunks(piece.max(1)) {
        buf.extend_from_slice(part);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => out.push(Outcome::Frame(frame)),
                Ok(None) => break,
                Err(e) if e.is_recoverable() => {
                    assert!(
                        e.offset <= decoder.consumed(),
                        "{e} past the consumed bytes"
                    );
                    let _ = e.to_string();
                    out.push(Outcome::Error(e));
                }
                Err(e) => {
                    let _ = e.to_string();
                    assert!(e.offset <= data.len() as u64, "{e} past the input");
                    // A stream error is final.
                    assert_eq!(decoder.decode(&mut buf), Err(e.clone()));
                    out.push(Outcome::Error(e));
                    return out;
                }
            }
        }
    }
    assert_eq!(decoder.consumed() + buf.len() as u64, data.len() as u64);
    out
}

/// Encodes `frame` and decodes it again with both decoders.
fn check_reencode(frame: &Frame) {
    let _ = frame.to_string();
    let bytes = frame.to_bytes();
    // The encoder writes canonical text, which can be a little longer than
    // what was read ("Name:v" becomes "Name: v", "Leave/10.0.0.1" gains
    // its default port), so allow for that on the second pass.
    let relaxed = Limits {
        max_line: LIMITS.max_line + 16,
        ..LIMITS
    };
    let mut decoder = StreamDecoder::new(relaxed);
    let mut buf = BytesMut::from(&bytes[..]);
    let again = decoder.decode(&mut buf);
    assert_eq!(again.as_ref(), Ok(&Some(frame.clone())), "re-encoded frame");
    assert!(buf.is_empty());
    assert!(decoder.is_idle());
    assert_eq!(decode_datagram(&bytes, &relaxed).as_ref(), Ok(frame));
}

fuzz_target!(|input: &[u8]| {
    let Some((&control, data)) = input.split_first() else {
        return;
    };
    let whole = decode_in_pieces(data, usize::MAX);
    let piece = if control == 0 {
        1
    } else {
        usize::from(control)
    };
    let split = decode_in_pieces(data, piece);
    assert_eq!(whole, split, "the result depends on how the input is split");
    for outcome in &whole {
        if let Outcome::Frame(frame) = outcome {
            check_reencode(frame);
        }
    }
});
