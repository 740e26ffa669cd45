//! Admission: who gets in, how soon, at what cost. Penalties for failed
//! token proofs, file-descriptor limits, and connections that never finish
//! their handshake.

use crate::util::*;
use fxfer::protocol::{self, ErrorCode, Hello, Request, Response, AUTH_LEN};
use std::io::BufReader;
use std::net::Ipv4Addr;

const TOKEN: &str = "admission-test-token-0123456789";

fn token_server() -> Server {
    let dir = tempfile::tempdir().unwrap().keep();
    let tf = dir.join("token");
    secret(&tf, TOKEN);
    Server::builder()
        .files(|h| write(h, "a.txt", b"alpha"))
        .arg("--token-file")
        .arg(tf.to_str().unwrap())
        .start()
}

/// One guess from `from`: the server's first answer after our greeting
/// (and, when it challenged us, after a wrong proof).
fn guess(s: &Server, from: Ipv4Addr) -> Response {
    let mut c = connect_from(from, s.port);
    Hello::current().write_to(&mut c).unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let h = Hello::read_from(&mut r).unwrap();
    if h.flags & protocol::HELLO_AUTH == 0 {
        return Response::read_from(&mut r).unwrap();
    }
    match Response::read_from(&mut r).unwrap() {
        Response::AuthChallenge { .. } => {}
        other => return other,
    }
    Request::Auth {
        nonce: [1; AUTH_LEN],
        mac: [2; AUTH_LEN],
    }
    .write_to(&mut c)
    .unwrap();
    Response::read_from(&mut r).unwrap()
}

#[test]
fn a_token_guesser_is_penalized_and_other_sources_are_not() {
    let s = token_server();
    let guesser = Ipv4Addr::new(127, 0, 0, 2);
    // The first wrong proof is answered as such...
    match guess(&s, guesser) {
        Response::Error(e) => {
            assert_eq!(e.code, ErrorCode::AuthFailed);
            assert!(e.message.contains("wrong token"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    // ...the next try from the same source gets no challenge at all.
    match guess(&s, guesser) {
        Response::Error(e) => {
            assert_eq!(e.code, ErrorCode::AuthFailed);
            assert!(e.message.contains("try again in"), "{e}");
        }
        other => panic!("a penalized source was challenged again: {other:?}"),
    }
    // Another address with the right token is not affected at all.
    let o = s.client("ls").env("FXFER_TOKEN", TOKEN).output().unwrap();
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("a.txt"));
    // And a third address still gets its own chance.
    match guess(&s, Ipv4Addr::new(127, 0, 0, 3)) {
        Response::Error(e) => assert!(e.message.contains("wrong token"), "{e}"),
        other => panic!("{other:?}"),
    }
    let log = s.wait_log("penalty left");
    assert!(log.contains("127.0.0.2 may try again in 15s"), "{log}");
}

#[test]
fn a_connection_limit_the_open_file_limit_cannot_carry_is_refused() {
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir(work.path().join("host")).unwrap();
    let serve = |n: &str| {
        let mut c = fxfer(work.path());
        c.args([
            "serve",
            "--port",
            "0",
            "--dir",
            "host",
            "--max-connections",
            n,
        ]);
        limit_files(&mut c, 512);
        c
    };
    let o = serve("5000").output().unwrap();
    assert_exit(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains("'--max-connections' 5000 needs about") && err.contains("at most 512"),
        "{err}"
    );
    // A setting that fits starts (and is stopped here).
    let mut child = serve("16")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.starts_with("listening on"), "{line}");
}
