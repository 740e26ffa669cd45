//! The server's view: arbitrary bytes from an untrusted client.
//!
//! * `Hello::read_from` must return (Ok or Err) without panicking.
//! * `Request::read_from`, looped until the first error, must never panic or
//!   allocate more than the frame limits allow.
//! * Every request that decodes must re-encode with `write_to`, and decoding
//!   that encoding must give back the same value (round trip).
#![no_main]

use std::io::Cursor;

use fxfer::protocol::{Hello, Request};
use libfuzzer_sys::fuzz_target;

/// One control frame's worth (see `fxfer_fuzz::FRAME_BOUND`); the live
/// bound leaves room for the reader's buffer and a frame being re-encoded.
#[global_allocator]
static ALLOC: fxfer_fuzz::Bounded = fxfer_fuzz::Bounded::new(fxfer_fuzz::FRAME_BOUND, 4 << 20);

fuzz_target!(init: ALLOC.from_env(), |data: &[u8]| {
    // Handshake, on its own cursor.
    let _ = Hello::read_from(&mut Cursor::new(data));

    // Requests, one after another, until the stream errors or ends.
    let mut cur = Cursor::new(data);
    while let Ok(req) = Request::read_from(&mut cur) {
        let mut encoded = Vec::new();
        req.write_to(&mut encoded)
            .unwrap_or_else(|e| panic!("decoded request {req:?} does not re-encode: {e}"));
        let mut back = Cursor::new(&encoded[..]);
        let again = Request::read_from(&mut back)
            .unwrap_or_else(|e| panic!("re-encoded {req:?} does not decode: {e}"));
        assert_eq!(req, again, "round trip changed the request");
        assert_eq!(
            back.position() as usize,
            encoded.len(),
            "decoder left bytes of its own encoding unread"
        );
    }
    fxfer_fuzz::report_peak(&ALLOC);
});
