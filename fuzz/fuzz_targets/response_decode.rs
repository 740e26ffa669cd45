//! The client's view: arbitrary bytes from an untrusted server.
//!
//! Loops `Response::read_from` over a `BufReader`; DATA payloads are drained
//! with `read_data_payload` into a sink that drops them. Stops on the first
//! error. Properties: no panic, no allocation beyond the frame limits
//! (libFuzzer's `-rss_limit_mb` / `-malloc_limit_mb` catch the latter).
#![no_main]

use std::io::{BufReader, Cursor};

use fxfer::protocol::{read_data_payload, ProtocolError, Response};
use libfuzzer_sys::fuzz_target;

/// One control frame's worth (see `fxfer_fuzz::FRAME_BOUND`); the live
/// bound leaves room for the reader's buffer and a frame being re-encoded.
#[global_allocator]
static ALLOC: fxfer_fuzz::Bounded = fxfer_fuzz::Bounded::new(fxfer_fuzz::FRAME_BOUND, 4 << 20);

fuzz_target!(init: ALLOC.from_env(), |data: &[u8]| {
    let mut reader = BufReader::new(Cursor::new(data));
    loop {
        match Response::read_from(&mut reader) {
            Ok(Response::Data { len }) => {
                let drained = read_data_payload(
                    &mut reader,
                    len,
                    |_chunk: &[u8]| -> Result<(), ProtocolError> { Ok(()) },
                );
                if drained.is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    fxfer_fuzz::report_peak(&ALLOC);
});
