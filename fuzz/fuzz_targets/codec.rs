//! Framing and message parsing: arbitrary bytes, fed in arbitrary pieces, must either
//! frame into values that parse or fail cleanly; never panic, and framing must not depend
//! on where the reads were cut.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ovnlb::ovsdb::{Datum, Framer, Message};

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    // First byte picks a read size; the rest is the stream.
    let step = (data[0] as usize % 64) + 1;
    let stream = &data[1..];

    let mut whole = Framer::new(1 << 20);
    whole.extend(stream);
    let mut expect = Vec::new();
    let whole_err = loop {
        match whole.next_frame() {
            Ok(Some(f)) => expect.push(f.to_vec()),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };

    let mut pieces = Framer::new(1 << 20);
    let mut got = Vec::new();
    let mut piece_err = false;
    'outer: for chunk in stream.chunks(step) {
        pieces.extend(chunk);
        loop {
            match pieces.next_frame() {
                Ok(Some(f)) => got.push(f.to_vec()),
                Ok(None) => break,
                Err(_) => {
                    piece_err = true;
                    break 'outer;
                }
            }
        }
    }
    if !whole_err && !piece_err {
        assert_eq!(expect, got, "framing depends on read boundaries");
    }

    for f in &expect {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(f) {
            let _ = Message::from_value(v.clone());
            if let Ok(d) = Datum::from_json(&v) {
                // Canonical encoding round-trips.
                assert_eq!(Datum::from_json(&d.to_json()).ok(), Some(d));
            }
        }
    }
});
