use crate::util::*;
use fxfer::protocol::{self, ErrorCode, Hello, Request, Response};
use std::io::{BufReader, Read, Write};
use std::time::Duration;

fn small_host(h: &std::path::Path) {
    write(h, "a.txt", b"alpha");
    write(h, "big.bin", &bytes(3, 32 << 20));
}

/// After whatever a test did, a normal client must still be served.
fn still_serves(s: &Server) {
    let o = s.client("ls").output().unwrap();
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("a.txt"));
}

#[test]
fn garbage_and_http_peers_are_refused_without_harm() {
    let mut s = Server::with_files(small_host);
    for junk in [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        bytes(5, 4096),
        b"FX".to_vec(),
    ] {
        // Before any TLS: garbage where the ClientHello should be.
        let mut c = s.tcp();
        c.write_all(&junk).unwrap();
        let _ = c.shutdown(std::net::Shutdown::Write);
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
        // Nothing that looks like file data comes back.
        assert!(rest.len() < 64, "{} bytes answered to junk", rest.len());
    }
    // A valid greeting followed by garbage frames.
    let mut r = session(&s, &[0x02, 0xff, 0xff, 0xff, 0xff]);
    match Response::read_from(&mut r).unwrap() {
        Response::Error(e) => assert_eq!(e.code, ErrorCode::BadRequest),
        other => panic!("{other:?}"),
    }
    let log = s.wait_log("not an fxfer client");
    assert!(log.contains("refused: not an fxfer client"), "{log}");
    assert!(s.alive());
    still_serves(&s);
}

#[test]
fn client_vanishing_mid_transfer_does_not_hurt_the_server() {
    let mut s = Server::with_files(small_host);
    for _ in 0..3 {
        let mut r = session(&s, &req(&[Request::get("big.bin")]));
        let mut some = vec![0u8; 100_000];
        r.read_exact(&mut some).unwrap();
        drop(r);
    }
    let log = s.wait_log("connection error");
    assert!(s.alive(), "{log}");
    still_serves(&s);
    let o = s.get(&["big.bin"]);
    assert_exit(&o, 0);
    assert_eq!(
        std::fs::read(s.downloads().join("big.bin")).unwrap(),
        bytes(3, 32 << 20)
    );
}

#[test]
fn unknown_version_gets_an_error_naming_supported_versions() {
    let s = Server::with_files(small_host);
    let mut c = s.connect();
    Hello {
        version: 99,
        flags: 0,
    }
    .write_to(&mut c)
    .unwrap();
    let mut r = BufReader::new(c);
    let h = Hello::read_from(&mut r).unwrap();
    assert_eq!(h.version, protocol::VERSION);
    match Response::read_from(&mut r).unwrap() {
        Response::Error(e) => {
            assert_eq!(e.code, ErrorCode::UnsupportedVersion);
            assert!(
                e.message
                    .contains(&protocol::versions_text(protocol::TLS_VERSIONS)),
                "{}",
                e.message
            );
            assert!(e.message.contains("99"), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        Response::read_from(&mut r),
        Err(protocol::ProtocolError::Closed)
    ));
    still_serves(&s);
}

#[test]
fn pipelined_requests_in_one_packet_are_all_answered_in_order() {
    let s = Server::with_files(small_host);
    let mut r = session(
        &s,
        &req(&[
            Request::get("a.txt"),
            Request::get("missing"),
            Request::get("a.txt"),
            Request::Get {
                path: "a.txt".into(),
                offset: 2,
                if_unchanged: None,
                len: None,
            },
            Request::Quit,
        ]),
    );
    let mut bodies = Vec::new();
    let mut errors = 0;
    let mut ends = 0;
    while ends + errors < 4 {
        match Response::read_from(&mut r).unwrap() {
            Response::File(_) => bodies.push(Vec::new()),
            Response::Data { len } => {
                let mut b = vec![0; len as usize];
                r.read_exact(&mut b).unwrap();
                bodies.last_mut().unwrap().extend(b);
            }
            Response::End(_) => ends += 1,
            Response::Error(e) => {
                assert_eq!(e.code, ErrorCode::NotFound);
                assert_eq!(bodies.len(), 1, "error answered out of order");
                errors += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        bodies,
        [b"alpha".to_vec(), b"alpha".to_vec(), b"pha".to_vec()]
    );
    assert!(matches!(
        Response::read_from(&mut r),
        Err(protocol::ProtocolError::Closed)
    ));
}

#[test]
fn clients_over_the_limit_get_busy_and_others_keep_going() {
    let s = Server::builder()
        .files(small_host)
        .arg("--max-connections")
        .arg("1")
        .start();
    // Hold the only slot with a handshaken, idle connection.
    let holder = hold(&s);
    let o = s.client("ls").output().unwrap();
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("server busy"), "{}", stderr(&o));
    assert!(s.wait_log("server busy").contains("refused: server busy"));
    drop(holder);
    // The slot frees once the server notices the hang-up.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let o = s.client("ls").output().unwrap();
        if o.status.success() || std::time::Instant::now() > deadline {
            assert_exit(&o, 0);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn log_file_records_start_list_send_refusal_and_disconnect() {
    let s = Server::with_files(small_host);
    assert_exit(&s.client("ls").output().unwrap(), 0);
    assert_exit(&s.get(&["a.txt", "nope"]), 1);
    let log = s.wait_log("disconnected (client quit; 3 requests");
    for needle in [
        "INFO  server started on 127.0.0.1:",
        ": connected",
        ": list \"/\"",
        ": sent \"a.txt\" (5 bytes from offset 0) in ",
        " MB/s)",
        ": refused GET \"nope\": not found",
        ": disconnected (client quit",
    ] {
        assert!(log.contains(needle), "{needle:?} missing from log:\n{log}");
    }
    // Every line starts with a timestamp.
    for line in log.lines() {
        assert!(
            line.starts_with("20") && line.as_bytes()[10] == b'T',
            "{line}"
        );
    }
    // Warnings also reach stderr.
    assert!(s.stderr().contains("refused GET \"nope\""));
}

#[test]
fn sigint_names_connected_clients_and_exits_zero() {
    let mut s = Server::with_files(small_host);
    let idle = hold(&s);
    let local = idle.socket().local_addr().unwrap();
    s.signal("-INT");
    let st = s
        .wait_exit(Duration::from_secs(15))
        .expect("server exits after SIGINT");
    assert_eq!(st.code(), Some(0));
    let log = s.log_text();
    assert!(log.contains("signal 2 received"), "{log}");
    assert!(
        log.contains(&format!("1 client(s) still connected: {local}")),
        "{log}"
    );
    assert!(log.contains("server stopped"), "{log}");
    assert!(s.stderr().contains(&local.to_string()));
}

#[test]
fn sigterm_lets_a_transfer_in_flight_finish() {
    let mut s = Server::with_files(small_host);
    let mut r = session(&s, &req(&[Request::get("big.bin")]));
    assert!(matches!(
        Response::read_from(&mut r).unwrap(),
        Response::File(_)
    ));
    // The server is now blocked sending to us; ask it to stop.
    s.signal("-TERM");
    std::thread::sleep(Duration::from_millis(200));
    let mut got = 0u64;
    loop {
        match Response::read_from(&mut r).unwrap() {
            Response::Data { len } => {
                std::io::copy(&mut (&mut r).take(len.into()), &mut std::io::sink()).unwrap();
                got += u64::from(len);
            }
            Response::End(_) => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, 32 << 20);
    let st = s.wait_exit(Duration::from_secs(15)).expect("server exits");
    assert_eq!(st.code(), Some(0));
}

#[test]
fn missing_folder_and_taken_port_fail_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let o = fxfer(dir.path())
        .args(["serve", "--port", "0", "--dir", "no/such/dir"])
        .output()
        .unwrap();
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("cannot serve no/such/dir: no such file or directory"),
        "{}",
        stderr(&o)
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    std::fs::create_dir(dir.path().join("h")).unwrap();
    let o = fxfer(dir.path())
        .args(["serve", "--port", &port, "--dir", "h"])
        .output()
        .unwrap();
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("address already in use"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_file_fetched_again_reuses_its_cached_digest() {
    let s = Server::builder().files(small_host).arg("-v").start();
    assert_exit(&s.get(&["big.bin"]), 0);
    // (--compare none: fetched again although the copy is the same.)
    assert_exit(&s.get(&["--no-resume", "--compare", "none", "big.bin"]), 0);
    let log = s.wait_log("from cache");
    assert_eq!(
        log.matches("digest of \"big.bin\" computed while sending")
            .count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("digest of \"big.bin\" from cache").count(),
        1,
        "{log}"
    );
    // A changed file is hashed afresh.
    std::thread::sleep(std::time::Duration::from_millis(20));
    write(&s.host, "big.bin", &bytes(4, 32 << 20));
    assert_exit(&s.get(&["--compare", "none", "big.bin"]), 0);
    // Logged before the END frame, so it is there once the client is done.
    let log = s.log_text();
    assert_eq!(log.matches("computed while sending").count(), 2, "{log}");
}

#[test]
fn many_short_connections_reuse_threads_and_free_their_slots() {
    // Threads wait for the next client after a session; each must still
    // give its connection slot back, or later clients would get BUSY.
    let names: Vec<String> = (0..8).map(|i| format!("f{i:02}.bin")).collect();
    let files = names.clone();
    let s = Server::builder()
        .files(move |h| {
            for (i, n) in files.iter().enumerate() {
                write(h, n, &bytes(i as u64, 1000 + i * 37));
            }
        })
        .arg("--max-connections")
        .arg("4")
        .start();
    let args: Vec<&str> = [
        "--parallel",
        "--jobs",
        "2",
        "--no-resume",
        "--compare",
        "none",
    ]
    .into_iter()
    .chain(names.iter().map(String::as_str))
    .collect();
    for round in 0..15 {
        let o = s.get(&args);
        assert_exit(&o, 0);
        for (i, n) in names.iter().enumerate() {
            let got = std::fs::read(s.downloads().join(n)).unwrap();
            assert_eq!(got, bytes(i as u64, 1000 + i * 37), "{n} in round {round}");
        }
    }
    let log = s.wait_log("server started");
    // Each get keeps (at most) two connections for all eight files; a
    // worker that finds the work done before it connects opens none.
    let n = log.matches(": connected").count();
    assert!((15..=30).contains(&n), "{n} connections: {log}");
    // One `ls` more must find a free slot at once.
    let o = s.client("ls").output().unwrap();
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("f00.bin"), "{}", stdout(&o));
}
