#![no_main]
//! The server's handshake decisions (`protocol::handshake`) on arbitrary
//! bytes from a client, as the admission loop makes them: on every prefix
//! of the stream, since it decides again after each read.
//!
//! Properties: no panic; a decision made on a prefix never changes when
//! more bytes arrive; a proof is accepted only when it is exactly the AUTH
//! frame computed with the key.

use fxfer::protocol::handshake::{self, Greeting, Proof, PROOF_LEN};
use fxfer::protocol::{auth, Request, AUTH_LEN, HELLO_LEN};
use libfuzzer_sys::fuzz_target;

/// One control frame's worth (see `fxfer_fuzz::FRAME_BOUND`); the live
/// bound leaves room for the reader's buffer and a frame being re-encoded.
#[global_allocator]
static ALLOC: fxfer_fuzz::Bounded = fxfer_fuzz::Bounded::new(fxfer_fuzz::FRAME_BOUND, 4 << 20);

fuzz_target!(init: ALLOC.from_env(), |data: &[u8]| {
    let whole = handshake::greeting(data);
    for n in 0..data.len().min(HELLO_LEN + 1) {
        let part = handshake::greeting(&data[..n]);
        if part != Greeting::NeedMore {
            assert_eq!(part, whole, "greeting decided on {n} bytes changed");
        }
    }
    let rest = match whole {
        Greeting::Hello(_) => &data[HELLO_LEN..],
        _ => data,
    };
    let keys = auth::Keys::new(b"fuzz token");
    let nonce = [7u8; AUTH_LEN];
    // The version the greeting asked for decides how the proof is made.
    let version = match whole {
        Greeting::Hello(h) => h.version,
        _ => 6,
    };
    let want = handshake::Expect {
        keys: &keys,
        version,
        server_nonce: &nonce,
        binding: &[7; 32],
    };
    let got = handshake::proof(rest, want);
    for n in 0..rest.len().min(PROOF_LEN + 1) {
        let part = handshake::proof(&rest[..n], want);
        if part != Proof::NeedMore {
            assert_eq!(part, got, "proof decided on {n} bytes changed");
        }
    }
    if let Proof::Valid { client_nonce } = got {
        let mut expected = Vec::new();
        Request::Auth {
            nonce: client_nonce,
            mac: keys.client_mac(version, &nonce, &client_nonce, &[7; 32]),
        }
        .write_to(&mut expected)
        .unwrap();
        assert_eq!(&rest[..PROOF_LEN], &expected[..]);
    }
    fxfer_fuzz::report_peak(&ALLOC);
});
