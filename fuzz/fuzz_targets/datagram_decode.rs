//! Fuzzes `wire::decode_datagram` with the datagram limits. Every decoded
//! frame must survive encode-then-decode unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lppsp_core::wire::{decode_datagram, DecodeErrorKind, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::datagram();
    match decode_datagram(data, &limits) {
        Ok(frame) => {
            let _ = frame.to_string();
            let bytes = frame.to_bytes();
            // Canonical text may be a little longer than the input's
            // ("Name:v" becomes "Name: v"); allow for that.
            let relaxed = Limits {
                max_line: limits.max_line + 16,
                ..limits
            };
            assert_eq!(decode_datagram(&bytes, &relaxed).as_ref(), Ok(&frame));
        }
        Err(e) => {
            let _ = e.to_string();
            assert!(e.offset <= data.len() as u64, "{e} past the input");
            match e.kind {
                DecodeErrorKind::Truncated => assert_eq!(e.offset, data.len() as u64),
                DecodeErrorKind::TrailingBytes(n) => {
                    assert!(n > 0);
                    assert_eq!(e.offset + n as u64, data.len() as u64);
                }
                _ => {}
            }
        }
    }
});
