//! Receipt wire form: round trips, signature coverage, strict checks.

mod common;

use bytes::BytesMut;
use common::*;
use lppsp_core::money::{Bounty, Price};
use lppsp_core::wire::{self, Body, Frame, Limits, StreamDecoder};
use lppsp_ledger::{metered_range, Receipt, ReceiptError, ReceiptFields, MAX_FRAME_LEN, MAX_INT};
use proptest::prelude::*;

#[test]
fn round_trips_through_bytes_and_frames() {
    for fuel in [None, Some(0), Some(123_456_789)] {
        let f = ReceiptFields {
            fuel,
            ..fields(node(1), node(2), 7)
        };
        let r = sign(f.clone());
        assert_eq!(r.fields(), &f);
        assert_eq!(
            r.issued_time(),
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(ISSUED)
        );
        r.verify(&verify).unwrap();

        let bytes = r.to_frame_bytes();
        assert_eq!(Receipt::from_bytes(&bytes).unwrap(), r);
        assert_eq!(r.to_frame().to_bytes(), bytes);
        assert!(bytes.ends_with(b"\r\n\r\n"));
        assert!(r.signed_bytes().ends_with(b"\r\n"));
        assert_eq!(bytes.len(), r.signed_bytes().len() + "Sig: ".len() + 44 + 4);

        // Through the stream decoder, as a frame read from a connection.
        let mut buf = BytesMut::from(&bytes[..]);
        let frame = StreamDecoder::new(Limits::default())
            .decode(&mut buf)
            .unwrap()
            .unwrap();
        let again = Receipt::from_frame(&frame).unwrap();
        assert_eq!(again, r);
        again.verify(&verify).unwrap();
    }
}

#[test]
fn wire_form_is_as_documented() {
    let r = sign(ReceiptFields {
        fuel: Some(42),
        ..fields_for(node(1), node(2), 9, "1.5".parse().unwrap(), &[183_250])
    });
    let text = String::from_utf8(r.to_frame_bytes()).unwrap();
    let sig = text.lines().nth(6).unwrap();
    assert_eq!(
        text,
        format!(
            "LPPSP/2.5\r\n\
             Receipt/5d1e7a3900c2b4f8/5eed000000000001/5eed000000000002/1.5/2400/183250/659.7\r\n\
             Seq: 9\r\n\
             Tasks: 1\r\n\
             Fuel: 42\r\n\
             Date: Wed, 25 Nov 2026 09:35:02 GMT\r\n\
             {sig}\r\n\r\n"
        )
    );
    assert!(sig.starts_with("Sig: "));
}

#[test]
fn every_byte_is_covered() {
    let r = receipt(node(1), node(2), 3);
    let bytes = r.to_frame_bytes();
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x20, 0x80] {
            let mut t = bytes.clone();
            t[i] ^= flip;
            let accepted = Receipt::from_bytes(&t).and_then(|t| t.verify(&verify));
            assert!(accepted.is_err(), "byte {i} ^ {flip:#x} went unnoticed");
        }
    }
    // Truncated or extended.
    for n in 0..bytes.len() {
        assert!(Receipt::from_bytes(&bytes[..n]).is_err(), "prefix {n}");
    }
    let mut longer = bytes.clone();
    longer.extend_from_slice(b"\r\n");
    assert!(Receipt::from_bytes(&longer).is_err());
}

#[test]
fn another_key_does_not_verify() {
    let f = fields(node(1), node(2), 1);
    // Signed by node 3, claiming to be node 1.
    let forged = Receipt::signed(f, &signer(node(3))).unwrap();
    assert_eq!(
        forged.verify(&verify),
        Err(ReceiptError::BadSignature {
            payer: node(1),
            seq: 1
        })
    );
}

/// The receipt's frame with its headers replaced, re-signed by the payer:
/// layouts a correct signature cannot rescue.
fn with_headers(r: &Receipt, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut frame = r.to_frame();
    frame.headers = wire::Headers::new();
    for (n, v) in headers {
        frame.headers.push(*n, *v);
    }
    frame.to_bytes()
}

#[test]
fn rejects_other_layouts() {
    let r = receipt(node(1), node(2), 3);
    let sig = r.to_frame().headers.get("Sig").unwrap().to_string();
    let date = "Wed, 25 Nov 2026 09:35:02 GMT";
    let layouts: &[&[(&str, &str)]] = &[
        &[("Seq", "3"), ("Tasks", "3"), ("Date", date)],
        &[("Tasks", "3"), ("Seq", "3"), ("Date", date), ("Sig", &sig)],
        &[("seq", "3"), ("Tasks", "3"), ("Date", date), ("Sig", &sig)],
        &[
            ("Seq", "3"),
            ("Tasks", "3"),
            ("Date", date),
            ("Sig", &sig),
            ("Node", "5eed000000000001"),
        ],
        &[("Seq", "3"), ("Tasks", "3"), ("Sig", &sig), ("Date", date)],
        &[
            ("Seq", "3"),
            ("Fuel", "1"),
            ("Tasks", "3"),
            ("Date", date),
            ("Sig", &sig),
        ],
        &[
            ("Seq", "3"),
            ("Tasks", "3"),
            ("Date", date),
            ("Sig", &sig),
            ("Sig", &sig),
        ],
    ];
    for h in layouts {
        let bytes = with_headers(&r, h);
        assert!(
            matches!(Receipt::from_bytes(&bytes), Err(ReceiptError::Layout(_))),
            "{h:?}"
        );
    }
    let bad_values: &[(&[(&str, &str)], &str)] = &[
        (
            &[("Seq", "03"), ("Tasks", "3"), ("Date", date), ("Sig", &sig)],
            "Seq",
        ),
        (
            &[("Seq", "3"), ("Tasks", "x"), ("Date", date), ("Sig", &sig)],
            "Tasks",
        ),
        (
            &[
                ("Seq", "3"),
                ("Tasks", "3"),
                ("Fuel", "-1"),
                ("Date", date),
                ("Sig", &sig),
            ],
            "Fuel",
        ),
        (
            &[
                ("Seq", "3"),
                ("Tasks", "3"),
                ("Date", date),
                ("Sig", "not base64!"),
            ],
            "Sig",
        ),
        (
            &[("Seq", "3"), ("Tasks", "3"), ("Date", date), ("Sig", "")],
            "Sig",
        ),
        (
            &[("Seq", "3"), ("Tasks", "3"), ("Date", date), ("Sig", "QQ")],
            "Sig",
        ),
    ];
    for (h, name) in bad_values {
        let bytes = with_headers(&r, h);
        match Receipt::from_bytes(&bytes) {
            Err(ReceiptError::BadHeader { name: n, .. }) => assert_eq!(n, *name, "{h:?}"),
            other => panic!("{h:?}: {other:?}"),
        }
    }
    // A bad Date is already refused by the frame decoder.
    let bytes = with_headers(
        &r,
        &[
            ("Seq", "3"),
            ("Tasks", "3"),
            ("Date", "Wednesday, 25-Nov-26 09:35:02 GMT"),
            ("Sig", &sig),
        ],
    );
    assert!(matches!(
        Receipt::from_bytes(&bytes),
        Err(ReceiptError::Decode(_))
    ));
}

#[test]
fn rejects_non_canonical_bytes_and_other_frames() {
    let r = receipt(node(1), node(2), 3);
    let text = String::from_utf8(r.to_frame_bytes()).unwrap();
    // Same frame once decoded, different bytes.
    for variant in [
        text.replacen("Seq: 3", "Seq:  3", 1),
        text.replacen("Seq: 3", "Seq:3", 1),
        text.replacen("Tasks: 3", "Tasks: 3 ", 1),
    ] {
        assert_eq!(
            Receipt::from_bytes(variant.as_bytes()),
            Err(ReceiptError::NotCanonical),
            "{variant:?}"
        );
    }
    // A body.
    let with_body = r
        .to_frame()
        .with_body(Body::from_bytes(&b"x"[..]))
        .to_bytes();
    assert_eq!(Receipt::from_bytes(&with_body), Err(ReceiptError::HasBody));
    // Another kind.
    let other = Frame::new(Price::ZERO, wire::Message::Idle { idle: true }).to_bytes();
    assert_eq!(
        Receipt::from_bytes(&other),
        Err(ReceiptError::NotAReceipt("Idle"))
    );
    // Too large: a huge signature.
    let huge = Receipt::signed(fields(node(1), node(2), 1), &|_: &[u8]| vec![7u8; 4000]);
    assert!(matches!(
        huge,
        Err(ReceiptError::TooLarge(_)) | Err(ReceiptError::Decode(_))
    ));
    assert!(matches!(
        Receipt::from_bytes(&vec![b'a'; MAX_FRAME_LEN + 1]),
        Err(ReceiptError::TooLarge(_))
    ));
    // An empty signature.
    assert!(matches!(
        Receipt::signed(fields(node(1), node(2), 1), &|_: &[u8]| Vec::new()),
        Err(ReceiptError::BadHeader { name: "Sig", .. })
    ));
}

#[test]
fn checks_fields() {
    let s = signer(node(1));
    let base = fields(node(1), node(2), 1);
    let sign = |f: ReceiptFields| Receipt::signed(f, &s);
    assert_eq!(
        sign(ReceiptFields {
            seq: 0,
            ..base.clone()
        }),
        Err(ReceiptError::Zero("seq"))
    );
    assert_eq!(
        sign(ReceiptFields {
            tasks: 0,
            ..base.clone()
        }),
        Err(ReceiptError::Zero("tasks"))
    );
    assert_eq!(
        sign(ReceiptFields {
            payee: node(1),
            ..base.clone()
        }),
        Err(ReceiptError::SelfPayment(node(1)))
    );
    assert_eq!(
        sign(ReceiptFields {
            seq: MAX_INT + 1,
            ..base.clone()
        }),
        Err(ReceiptError::OutOfRange {
            field: "seq",
            value: MAX_INT + 1
        })
    );
    assert!(matches!(
        sign(ReceiptFields {
            fuel: Some(u64::MAX),
            ..base.clone()
        }),
        Err(ReceiptError::OutOfRange { field: "fuel", .. })
    ));
    assert!(matches!(
        sign(ReceiptFields {
            issued: u64::MAX,
            ..base.clone()
        }),
        Err(ReceiptError::DateOutOfRange(_))
    ));
    assert!(matches!(
        sign(ReceiptFields {
            power: MAX_INT,
            micros: MAX_INT,
            ..base.clone()
        }),
        Err(ReceiptError::ChargeOverflow(_))
    ));
    // Charges: the metered range for these three tasks, and one off either end.
    let range = metered_range(base.price, base.power, base.tasks, base.micros).unwrap();
    assert!(range.contains(&base.charge));
    assert_eq!(range.end().micros() - range.start().micros(), 2);
    for c in [range.start().micros(), range.end().micros()] {
        sign(ReceiptFields {
            charge: Bounty::from_micros(c),
            ..base.clone()
        })
        .unwrap();
    }
    for c in [range.start().micros() - 1, range.end().micros() + 1] {
        assert!(matches!(
            sign(ReceiptFields {
                charge: Bounty::from_micros(c),
                ..base.clone()
            }),
            Err(ReceiptError::ChargeMismatch { .. })
        ));
    }
}

proptest! {
    /// Whatever the task times, per-task metering yields a charge the
    /// receipt check accepts, and the receipt round-trips.
    #[test]
    fn per_task_metering_is_accepted(
        price in 0u64..=1_000_000_000,
        times in prop::collection::vec(0u64..=10_000_000_000, 1..40),
        fuel in prop::option::of(0u64..=MAX_INT),
        seq in 1u64..=MAX_INT,
        issued in 0u64..=253_402_300_799,
    ) {
        let f = ReceiptFields {
            fuel,
            issued,
            ..fields_for(node(1), node(2), seq, Price::from_micros(price), &times)
        };
        let r = Receipt::signed(f.clone(), &signer(node(1))).unwrap();
        prop_assert_eq!(r.fields(), &f);
        let back = Receipt::from_bytes(r.as_bytes()).unwrap();
        prop_assert_eq!(&back, &r);
        back.verify(&verify).unwrap();
    }
}
