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
        // The admission rules, in the clear (tls.rs covers them under TLS).
        .plaintext()
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
        err.contains("'--max-connections' 5000 with '--max-startups'")
            && err.contains("needs about")
            && err.contains("at most 512"),
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

/// The server's thread count, from /proc.
fn threads(s: &Server) -> usize {
    let st = std::fs::read_to_string(format!("/proc/{}/status", s.child.id())).unwrap();
    st.lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn silent_connections_take_no_session_slot_and_no_thread() {
    let s = Server::builder()
        // The admission rules, in the clear (tls.rs covers them under TLS).
        .plaintext()
        .files(|h| write(h, "a.txt", b"alpha"))
        .arg("--max-connections")
        .arg("2")
        .start();
    let before = threads(&s);
    // 200 connections that never greet, from 40 addresses (5 each, under
    // the per-address limit).
    let silent: Vec<_> = (0..200)
        .map(|i| connect_from(Ipv4Addr::new(127, 0, 3, 1 + (i % 40) as u8), s.port))
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let during = threads(&s);
    assert!(
        during <= before + 2,
        "{during} threads with 200 silent connections (was {before})"
    );
    // Real clients still get both sessions.
    for _ in 0..3 {
        let o = s.client("ls").output().unwrap();
        assert_exit(&o, 0);
        assert!(stdout(&o).contains("a.txt"));
    }
    drop(silent);
}

#[test]
fn a_refused_client_trickling_bytes_is_closed_on_one_deadline() {
    use std::io::Write;
    let s = Server::builder()
        // The admission rules, in the clear (tls.rs covers them under TLS).
        .plaintext()
        .files(|h| write(h, "a.txt", b"alpha"))
        .arg("--max-connections-per-ip")
        .arg("1")
        .start();
    let _first = hold(&s);
    // Over the address's limit: the busy sequence, then a drain.
    let mut c = s.tcp();
    Hello::current().write_to(&mut c).unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let _ = Hello::read_from(&mut r).unwrap();
    match Response::read_from(&mut r).unwrap() {
        Response::Error(e) => assert_eq!(e.code, ErrorCode::Busy),
        other => panic!("{other:?}"),
    }
    // One byte every 0.4 s, for at most 20 s: each read alone would be in
    // time, but the drain has one deadline.
    let started = std::time::Instant::now();
    let mut closed = false;
    for _ in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(400));
        // The server shut its side at once; only a write that fails shows
        // it has let go of the connection completely.
        if c.write_all(b"x").is_err() {
            closed = true;
            break;
        }
    }
    assert!(closed, "still open after {:?}", started.elapsed());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn beyond_max_startups_connections_are_dropped_and_the_rest_still_served() {
    use std::io::Read;
    let s = Server::builder()
        // The admission rules, in the clear (tls.rs covers them under TLS).
        .plaintext()
        .files(|h| write(h, "a.txt", b"alpha"))
        .arg("--max-startups")
        .arg("5")
        .arg("--max-connections-per-ip")
        .arg("100")
        .start();
    let held: Vec<_> = (0..5).map(|_| s.connect()).collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    // The sixth is closed at once, without a word.
    let mut sixth = s.connect();
    let mut b = [0u8; 8];
    let started = std::time::Instant::now();
    let n = sixth.read(&mut b).unwrap_or(0);
    assert_eq!(n, 0, "a reply beyond max-startups");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    drop(held);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let o = s.client("ls").output().unwrap();
    assert_exit(&o, 0);
    let log = s.wait_log("dropped: 5 handshakes under way");
    assert!(log.contains("(max-startups 5:100:5)"), "{log}");
}

#[test]
fn a_descriptor_storm_leaks_no_per_address_slot() {
    use std::io::{Read, Write};
    // Few descriptors, so a storm runs the server out of them.
    let s = Server::builder()
        // The admission rules, in the clear (tls.rs covers them under TLS).
        .plaintext()
        .files(|h| write(h, "a.txt", b"alpha"))
        .arg("--max-connections")
        .arg("8")
        .arg("--max-connections-per-ip")
        .arg("6")
        .nofile(256)
        .start();
    let storm: Vec<_> = (0..400)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", s.port)).ok())
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(500));
    drop(storm);
    // Everything the storm held is given back: the address gets all six
    // of its places again (no busy reply on any), and a seventh is busy.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let mut held: Vec<_> = (0..6).map(|_| s.tcp()).collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    for (i, c) in held.iter_mut().enumerate() {
        c.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        let got = c.read(&mut b);
        assert!(
            matches!(&got, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "place {i} was refused: {got:?}"
        );
    }
    let mut seventh = s.tcp();
    seventh.write_all(&Hello::current().to_bytes()).unwrap();
    let mut r = BufReader::new(seventh);
    let _ = Hello::read_from(&mut r).unwrap();
    match Response::read_from(&mut r).unwrap() {
        Response::Error(e) => {
            assert_eq!(e.code, ErrorCode::Busy, "{e}");
            assert!(e.message.contains("from your address"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    drop(held);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_exit(&s.client("ls").output().unwrap(), 0);
}

#[test]
fn a_refusal_at_acceptance_greets_in_version_6_which_a_version_6_client_reads_as_one() {
    use std::io::{Read, Write};
    // Refused before its greeting is read, a client's version is unknown:
    // a version 6 client takes any other greeting for a version mismatch
    // (and gives up, where busy is worth a retry), and a version 7 client
    // reads a refusal behind a version 6 greeting as that refusal.
    let s = Server::builder()
        .plaintext()
        .files(|h| write(h, "a.txt", b"alpha"))
        .arg("--max-connections-per-ip")
        .arg("1")
        .start();
    let _first = hold(&s);
    for version in [6u16, 7] {
        let mut c = s.tcp();
        let mut hello = b"FXFR".to_vec();
        hello.extend(version.to_be_bytes());
        hello.extend([0, 0]);
        c.write_all(&hello).unwrap();
        let mut got = [0u8; 8];
        c.read_exact(&mut got).unwrap();
        assert_eq!(got, *b"FXFR\x00\x06\x00\x00", "a version {version} client");
        let mut r = BufReader::new(c);
        match Response::read_from(&mut r).unwrap() {
            Response::Error(e) => assert_eq!(e.code, ErrorCode::Busy),
            other => panic!("{other:?}"),
        }
    }
}
