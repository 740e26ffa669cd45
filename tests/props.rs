//! Property tests on every run: random bytes never panic either decoder,
//! and every request that decodes re-encodes to the same value.

use fxfer::protocol::{read_data_payload, Hello, ProtocolError, Request, Response};
use proptest::prelude::*;
use std::io::{BufReader, Cursor};

fn decode_all_requests(bytes: &[u8]) {
    let _ = Hello::read_from(&mut Cursor::new(bytes));
    let mut cur = Cursor::new(bytes);
    while let Ok(r) = Request::read_from(&mut cur) {
        let mut again = Vec::new();
        r.write_to(&mut again).unwrap();
        assert_eq!(Request::read_from(&mut Cursor::new(&again)).unwrap(), r);
    }
}

fn decode_all_responses(bytes: &[u8]) {
    let mut r = BufReader::new(Cursor::new(bytes));
    while let Ok(resp) = Response::read_from(&mut r) {
        if let Response::Data { len } = resp {
            if read_data_payload(&mut r, len, |_: &[u8]| -> Result<(), ProtocolError> {
                Ok(())
            })
            .is_err()
            {
                break;
            }
        }
    }
}

/// Bytes that start like a frame more often than pure noise would.
fn framed() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec![
            0x01u8, 0x02, 0x03, 0x04, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0xEE,
        ]),
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(kind, body)| {
            let mut v = vec![kind];
            v.extend_from_slice(&(body.len() as u32).to_be_bytes());
            v.extend(body);
            v
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_the_server_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_all_requests(&bytes);
    }

    #[test]
    fn random_bytes_never_panic_the_client_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_all_responses(&bytes);
    }

    #[test]
    fn plausible_frames_never_panic_either_decoder(frames in prop::collection::vec(framed(), 1..6)) {
        let bytes: Vec<u8> = frames.concat();
        decode_all_requests(&bytes);
        decode_all_responses(&bytes);
    }
}
