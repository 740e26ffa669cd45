//! The handshake's byte-level decisions, as pure functions over what has
//! arrived so far: is it a greeting yet, and is it a valid token proof.
//! The server's admission loop calls them with whatever bytes a socket
//! gave it (any prefix of the stream), and the fuzzers call them with
//! arbitrary input, so the decisions are made in one place and tested
//! without sockets.

use super::{auth, frame, Hello, Request, AUTH_LEN, FRAME_HEADER_LEN, HELLO_LEN, MAGIC};

/// Bytes of a whole AUTH frame.
pub const PROOF_LEN: usize = FRAME_HEADER_LEN + 2 * AUTH_LEN;

/// What the first bytes from a client amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Greeting {
    /// A prefix of a greeting: wait for more.
    NeedMore,
    /// Not the fxfer magic: close without a word.
    NotFxfer,
    /// A whole greeting, the first [`HELLO_LEN`] bytes.
    Hello(Hello),
}

/// Looks at the start of what a client sent.
pub fn greeting(input: &[u8]) -> Greeting {
    let head = &input[..input.len().min(MAGIC.len())];
    if !MAGIC.starts_with(head) {
        return Greeting::NotFxfer;
    }
    if input.len() < HELLO_LEN {
        return Greeting::NeedMore;
    }
    match Hello::read_from(&mut &input[..HELLO_LEN]) {
        Ok(h) => Greeting::Hello(h),
        Err(_) => Greeting::NotFxfer,
    }
}

/// What the client sent in answer to our AUTH_CHALLENGE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// A prefix of an AUTH frame: wait for more.
    NeedMore,
    /// Another frame came first: the client has no token.
    NotAuth,
    /// An AUTH frame of the wrong length or layout.
    Malformed,
    /// A well-formed AUTH frame whose MAC is wrong.
    Wrong,
    /// The proof holds; the frame is the first [`PROOF_LEN`] bytes.
    Valid { client_nonce: [u8; AUTH_LEN] },
}

impl Proof {
    /// Whether this outcome is a guess at the token (and so counts toward
    /// the source's penalty); a missing token is not.
    pub fn is_guess(&self) -> bool {
        matches!(self, Proof::Malformed | Proof::Wrong)
    }
}

/// What a proof must be checked against: the token's keys, the version
/// the connection speaks (which decides how its proofs are made) and the
/// channel binding (used from version 6 on).
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    pub keys: &'a auth::Keys,
    pub version: u16,
    pub server_nonce: &'a [u8; AUTH_LEN],
    pub binding: &'a [u8; 32],
}

/// Checks the AUTH frame at the start of `input` against what we expect.
pub fn proof(input: &[u8], want: Expect) -> Proof {
    if input.is_empty() {
        return Proof::NeedMore;
    }
    if input[0] != frame::AUTH {
        return Proof::NotAuth;
    }
    if input.len() < FRAME_HEADER_LEN {
        return Proof::NeedMore;
    }
    let len = u32::from_be_bytes([input[1], input[2], input[3], input[4]]);
    if len as usize != 2 * AUTH_LEN {
        return Proof::Malformed;
    }
    if input.len() < PROOF_LEN {
        return Proof::NeedMore;
    }
    match Request::read_from(&mut &input[..PROOF_LEN]) {
        Ok(Request::Auth { nonce, mac }) => {
            let expected =
                want.keys
                    .client_mac(want.version, want.server_nonce, &nonce, want.binding);
            if auth::verify(&expected, &mac) {
                Proof::Valid {
                    client_nonce: nonce,
                }
            } else {
                Proof::Wrong
            }
        }
        _ => Proof::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A channel binding, as the TLS exporter would give.
    const B: [u8; 32] = [9; 32];

    #[test]
    fn every_prefix_of_a_greeting_waits_and_the_whole_one_is_read() {
        let bytes = Hello::current().to_bytes();
        for n in 0..HELLO_LEN {
            assert_eq!(greeting(&bytes[..n]), Greeting::NeedMore, "{n}");
        }
        assert_eq!(greeting(&bytes), Greeting::Hello(Hello::current()));
        assert_eq!(greeting(b"GET / HTTP/1.1"), Greeting::NotFxfer);
        assert_eq!(greeting(b"FXG"), Greeting::NotFxfer);
    }

    fn auth_frame(nonce: [u8; AUTH_LEN], mac: [u8; 32]) -> Vec<u8> {
        let mut v = Vec::new();
        Request::Auth { nonce, mac }.write_to(&mut v).unwrap();
        v
    }

    #[test]
    fn proofs_are_told_apart() {
        let keys = auth::Keys::new(b"token");
        let other = auth::Keys::new(b"other");
        let ns = [3u8; AUTH_LEN];
        let nc = [4u8; AUTH_LEN];
        let want = |keys, version| Expect {
            keys,
            version,
            server_nonce: &ns,
            binding: &B,
        };
        let good = auth_frame(nc, auth::client_mac(&auth::key(b"token"), &ns, &nc, &B));
        for n in 0..PROOF_LEN {
            assert_eq!(proof(&good[..n], want(&keys, 6)), Proof::NeedMore, "{n}");
        }
        assert_eq!(
            proof(&good, want(&keys, 6)),
            Proof::Valid { client_nonce: nc }
        );
        assert_eq!(proof(&good, want(&other, 6)), Proof::Wrong);
        // A version 6 proof is not a version 5 one, nor the other way round.
        assert_eq!(proof(&good, want(&keys, 5)), Proof::Wrong);
        let v5 = auth_frame(nc, keys.client_mac(5, &ns, &nc, &B));
        assert_eq!(
            proof(&v5, want(&keys, 5)),
            Proof::Valid { client_nonce: nc }
        );
        assert_eq!(proof(&v5, want(&keys, 6)), Proof::Wrong);
        assert_eq!(
            proof(&[frame::LIST, 0, 0, 0, 1], want(&keys, 6)),
            Proof::NotAuth
        );
        assert_eq!(
            proof(&[frame::AUTH, 0, 0, 0, 1, 0], want(&keys, 6)),
            Proof::Malformed
        );
        assert!(Proof::Wrong.is_guess() && !Proof::NotAuth.is_guess());
    }
}
