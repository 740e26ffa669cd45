//! Hostile clients against the real server (each case over a real socket),
//! and a hostile server against the real client.

use crate::util::*;
use fxfer::protocol::{self, frame, ErrorCode, Hello, Request, Response};
use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

const SECRET: &[u8] = b"TOP-SECRET-OUTSIDE-THE-ROOT";

/// A served folder full of traps, and a folder outside it with a secret.
fn trap_host(outside: &Path) -> impl FnOnce(&Path) + 'static {
    use std::os::unix::fs::symlink;
    std::fs::write(outside.join("secret.txt"), SECRET).unwrap();
    let outside = outside.to_path_buf();
    move |h: &Path| {
        write(h, "a.txt", b"alpha");
        write(h, "sub/b.txt", b"beta");
        write(h, "sub/.hidden_in_sub", SECRET);
        write(h, ".secret", SECRET);
        write(h, "%2e%2e/x", b"literal percent folder");
        symlink(outside.join("secret.txt"), h.join("link_out")).unwrap();
        symlink(&outside, h.join("dir_link_out")).unwrap();
        symlink("/proc/self/environ", h.join("link_proc")).unwrap();
        symlink("/proc/self/root/etc/hostname", h.join("link_magic")).unwrap();
        symlink("sub/../../secret.txt", h.join("link_climb")).unwrap();
        symlink("a.txt", h.join("link_in")).unwrap();
        let st = std::process::Command::new("mkfifo")
            .arg(h.join("pipe"))
            .status()
            .unwrap();
        assert!(st.success());
        symlink("pipe", h.join("link_fifo")).unwrap();
        std::os::unix::net::UnixListener::bind(h.join("sock")).unwrap();
    }
}

/// Raw GET frame, bypassing the encoder's own checks.
fn raw_get(path: &[u8], offset: u64) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&(path.len() as u16).to_be_bytes());
    p.extend_from_slice(path);
    p.extend_from_slice(&offset.to_be_bytes());
    p.push(0);
    let mut f = vec![frame::GET];
    f.extend_from_slice(&(p.len() as u32).to_be_bytes());
    f.extend_from_slice(&p);
    f
}

/// Reads every byte the server sends until it closes (bounded).
fn drain(r: &mut BufReader<Stream>) -> Vec<u8> {
    let mut all = Vec::new();
    let _ = r
        .get_ref()
        .socket()
        .set_read_timeout(Some(Duration::from_secs(5)));
    let _ = r.read_to_end(&mut all);
    all
}

fn expect_error(r: &mut BufReader<Stream>, code: ErrorCode, case: &str) {
    match Response::read_from(r) {
        Ok(Response::Error(e)) => assert_eq!(e.code, code, "{case}: {e}"),
        other => panic!("{case}: expected {code:?}, got {other:?}"),
    }
}

/// The connection is still usable: a normal GET on it succeeds.
fn still_usable(r: &mut BufReader<Stream>, case: &str) {
    r.get_mut()
        .write_all(&req(&[Request::get("a.txt")]))
        .unwrap();
    assert!(
        matches!(Response::read_from(r), Ok(Response::File(_))),
        "{case}"
    );
}

fn still_serves(s: &Server) {
    let o = s.client("ls").output().unwrap();
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("a.txt"));
}

fn check_path_cases(portable: bool) {
    let outside = tempfile::tempdir().unwrap();
    let mut b = Server::builder().files(trap_host(outside.path()));
    if portable {
        b = b.env("FXFER_PORTABLE_OPEN", "1");
    }
    let s = b.start();
    use ErrorCode::*;
    let long = "x".repeat(4000) + "/../../secret.txt";
    let cases: Vec<(&str, Vec<u8>, ErrorCode)> = vec![
        ("dot-dot", raw_get(b"..", 0), ForbiddenPath),
        ("dot-dot slash", raw_get(b"../secret.txt", 0), ForbiddenPath),
        (
            "climb after a folder",
            raw_get(b"a/../../secret.txt", 0),
            ForbiddenPath,
        ),
        ("dot-dot inside", raw_get(b"sub/../a.txt", 0), ForbiddenPath),
        ("absolute", raw_get(b"/etc/passwd", 0), ForbiddenPath),
        (
            "double slash absolute",
            raw_get(b"//etc/passwd", 0),
            ForbiddenPath,
        ),
        ("dot component", raw_get(b"./a.txt", 0), ForbiddenPath),
        ("trailing slash", raw_get(b"a.txt/", 0), ForbiddenPath),
        ("empty component", raw_get(b"sub//b.txt", 0), ForbiddenPath),
        (
            "backslashes",
            raw_get(b"..\\..\\etc\\passwd", 0),
            ForbiddenPath,
        ),
        (
            "backslash dot-dot",
            raw_get(b"sub\\..\\..\\secret.txt", 0),
            ForbiddenPath,
        ),
        ("NUL byte", raw_get(b"a.txt\0.jpg", 0), ForbiddenPath),
        ("empty path", raw_get(b"", 0), ForbiddenPath),
        ("root slash", raw_get(b"/", 0), ForbiddenPath),
        (
            "percent-encoded dots",
            raw_get(b"%2e%2e/secret.txt", 0),
            NotFound,
        ),
        (
            "percent-encoded slash",
            raw_get(b"..%2f..%2fsecret.txt", 0),
            NotFound,
        ),
        (
            "overlong UTF-8 slash",
            raw_get(b"..%c0%af..%c0%afsecret.txt", 0),
            NotFound,
        ),
        (
            "fullwidth dots",
            raw_get("．．/secret.txt".as_bytes(), 0),
            NotFound,
        ),
        (
            "two-dot leader",
            raw_get("‥/secret.txt".as_bytes(), 0),
            NotFound,
        ),
        (
            "division slash",
            raw_get("..∕secret.txt".as_bytes(), 0),
            NotFound,
        ),
        ("long climb", raw_get(long.as_bytes(), 0), ForbiddenPath),
        ("symlink out", raw_get(b"link_out", 0), ForbiddenPath),
        (
            "folder symlink out",
            raw_get(b"dir_link_out/secret.txt", 0),
            ForbiddenPath,
        ),
        ("symlink climbing", raw_get(b"link_climb", 0), ForbiddenPath),
        (
            "symlink to /proc/self",
            raw_get(b"link_proc", 0),
            ForbiddenPath,
        ),
        ("magic link", raw_get(b"link_magic", 0), ForbiddenPath),
        ("FIFO", raw_get(b"pipe", 0), NotRegularFile),
        (
            "symlink to a FIFO",
            raw_get(b"link_fifo", 0),
            NotRegularFile,
        ),
        ("socket", raw_get(b"sock", 0), NotRegularFile),
        ("folder", raw_get(b"sub", 0), NotRegularFile),
        ("dot-file", raw_get(b".secret", 0), NotFound),
        (
            "dot-file in a folder",
            raw_get(b"sub/.hidden_in_sub", 0),
            NotFound,
        ),
        ("offset past the end", raw_get(b"a.txt", 99), BadRequest),
        ("missing", raw_get(b"nope.txt", 0), NotFound),
        (
            "LIST climbing",
            req(&[Request::List {
                path: "../".into(),
                recursive: false,
                digests: false,
            }]),
            ForbiddenPath,
        ),
        (
            "LIST symlink out",
            req(&[Request::List {
                path: "dir_link_out".into(),
                recursive: true,
                digests: true,
            }]),
            ForbiddenPath,
        ),
        (
            "LIST a FIFO",
            req(&[Request::List {
                path: "pipe".into(),
                recursive: false,
                digests: true,
            }]),
            NotRegularFile,
        ),
        (
            "AUTH without auth",
            req(&[Request::Auth {
                nonce: [0; 32],
                mac: [0; 32],
            }]),
            BadRequest,
        ),
    ];
    assert!(cases.len() >= 30);
    for (case, frames, code) in &cases {
        let started = Instant::now();
        let mut r = session(&s, frames);
        expect_error(&mut r, *code, case);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{case} was slow (a hang?)"
        );
        still_usable(&mut r, case);
    }
    // Nothing from outside was ever sent, and every refusal was logged.
    let log = s.log_text();
    assert!(log.matches("refused").count() >= cases.len() - 1, "{log}");
    still_serves(&s);
    // Listings never show the traps.
    let o = s.client("ls").args(["-R", "--json"]).output().unwrap();
    let out = stdout(&o);
    for hidden in [
        "link_out",
        "dir_link_out",
        "link_proc",
        "link_magic",
        "link_climb",
        "pipe",
        "sock",
        ".secret",
        ".hidden",
    ] {
        assert!(
            !out.contains(&format!("\"{hidden}")),
            "{hidden} listed: {out}"
        );
    }
    assert!(out.contains("\"link_in\""), "{out}");
}

#[test]
fn hostile_paths_are_refused_with_openat2() {
    check_path_cases(false);
}

#[test]
fn hostile_paths_are_refused_by_the_portable_walk() {
    check_path_cases(true);
}

#[test]
fn hidden_files_are_served_only_with_hidden() {
    let s = Server::builder()
        .files(|h| write(h, ".env", b"KEY=1"))
        .arg("--hidden")
        .start();
    assert_exit(&s.get(&[".env"]), 0);
    let o = s.client("ls").output().unwrap();
    assert!(stdout(&o).contains(".env"));
}

#[test]
fn hostile_framing_is_refused_and_the_server_carries_on() {
    let outside = tempfile::tempdir().unwrap();
    let s = Server::builder()
        .files(trap_host(outside.path()))
        .args_handshake_timeout()
        .start();
    // Oversized length field.
    let mut r = session(&s, &[frame::GET, 0xff, 0xff, 0xff, 0xff]);
    expect_error(&mut r, ErrorCode::BadRequest, "oversized length");
    assert!(drain(&mut r).is_empty());
    // Unknown frame type; a response frame sent as a request.
    for f in [vec![0x42, 0, 0, 0, 0], vec![frame::FILE, 0, 0, 0, 0]] {
        let mut r = session(&s, &f);
        expect_error(&mut r, ErrorCode::BadRequest, "bad frame type");
    }
    // Truncated frame, then the client stops writing.
    let mut r = session(&s, &[frame::GET, 0, 0, 0, 100, 0, 5]);
    r.get_mut().close_write();
    assert!(drain(&mut r).len() < 64);
    // Wrong magic, a request before the handshake, HTTP, random bytes.
    let mut early = req(&[Request::get("a.txt")]);
    early.extend_from_slice(&[0; 8]);
    for junk in [
        b"FXFX\0\x03\0\0".to_vec(),
        early,
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        bytes(77, 100_000),
    ] {
        let mut c = s.connect();
        let _ = c.write_all(&junk);
        let mut got = Vec::new();
        c.socket()
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let _ = c.read_to_end(&mut got);
        assert!(got.is_empty(), "answered junk with {} bytes", got.len());
    }
    // Wrong version.
    let mut c = s.connect();
    Hello {
        version: 1,
        flags: 0,
    }
    .write_to(&mut c)
    .unwrap();
    let mut r = BufReader::new(c);
    Hello::read_from(&mut r).unwrap();
    expect_error(&mut r, ErrorCode::UnsupportedVersion, "old version");
    // A silent client is dropped after the handshake time-out.
    let mut c = s.connect();
    let started = Instant::now();
    let mut buf = [0u8; 1];
    c.socket()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(c.read(&mut buf).unwrap_or(0), 0);
    assert!(started.elapsed() < Duration::from_secs(5));
    still_serves(&s);
}

impl ServerBuilder {
    fn args_handshake_timeout(self) -> Self {
        self.arg("--handshake-timeout")
            .arg("1")
            .arg("--idle-timeout")
            .arg("2")
    }
}

#[test]
fn thousands_of_pipelined_requests_are_answered_in_order() {
    let s = Server::with_files(|h| {
        write(h, "a.txt", b"alpha");
        write(h, "b.txt", b"beta!");
    });
    let n = 5000;
    let mut frames = Vec::new();
    for i in 0..n {
        frames.extend(req(&[Request::get(if i % 2 == 0 {
            "a.txt"
        } else {
            "b.txt"
        })]));
    }
    frames.extend(req(&[Request::Quit]));
    let mut r = session(&s, &frames);
    let mut files = 0;
    let mut body = Vec::new();
    loop {
        match Response::read_from(&mut r) {
            Ok(Response::File(_)) => body.clear(),
            Ok(Response::Data { len }) => {
                let mut b = vec![0; len as usize];
                r.read_exact(&mut b).unwrap();
                body.extend(b);
            }
            Ok(Response::End(_)) => {
                let want: &[u8] = if files % 2 == 0 { b"alpha" } else { b"beta!" };
                assert_eq!(body, want, "answer {files} out of order");
                files += 1;
            }
            Ok(other) => panic!("{other:?}"),
            Err(_) => break,
        }
    }
    assert_eq!(files, n);
    still_serves(&s);
}

#[test]
fn idle_connections_are_closed_and_per_ip_limit_holds() {
    let s = Server::builder()
        .files(|h| write(h, "a.txt", b"alpha"))
        .arg("--idle-timeout")
        .arg("1")
        .arg("--max-connections-per-ip")
        .arg("2")
        .start();
    let (mut a, _b) = (hold(&s), hold(&s));
    let o = s.client("ls").output().unwrap();
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("too many connections from your address"),
        "{}",
        stderr(&o)
    );
    // Idle connections are dropped after a second, which frees the slots.
    let started = Instant::now();
    let mut buf = [0u8; 1];
    a.socket()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(a.read(&mut buf).unwrap_or(0), 0);
    assert!(started.elapsed() < Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(300));
    assert_exit(&s.client("ls").output().unwrap(), 0);
}

// ------------------------------------------------------ a hostile server

/// What the fake server does with each request.
#[derive(Clone, Copy)]
enum Evil {
    /// Lists names that try to escape or garble the terminal.
    Names,
    /// Announces 10 bytes, sends 20.
    Overrun,
    /// Announces 100 bytes, sends 10, then END.
    Short,
    /// Announces 10 bytes, then sends DATA forever.
    Endless,
    /// Sends empty DATA frames forever.
    Empty,
    /// Refuses with a message full of terminal escapes.
    EscapeError,
}

fn evil_server(mode: Evil) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming().take(8) {
            let Ok(c) = c else { break };
            std::thread::spawn(move || {
                let _ = serve_evil(c, mode);
            });
        }
    });
    port
}

fn serve_evil(c: TcpStream, mode: Evil) -> Result<(), Box<dyn std::error::Error>> {
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut r = BufReader::new(c.try_clone()?);
    let mut w = c;
    Hello::read_from(&mut r)?;
    Hello::current().write_to(&mut w)?;
    let names = [
        "../evil1.txt",
        "/tmp/fxfer-evil2.txt",
        "a/../../evil3.txt",
        "ok.txt",
        "bad\nname\x1b[31mred\x07.txt",
    ];
    loop {
        let req = Request::read_from(&mut r)?;
        let mut out = Vec::new();
        match (req, mode) {
            (Request::List { .. }, _) => {
                let mut lw = protocol::ListWriter::default();
                for n in names {
                    lw.push(
                        &mut out,
                        protocol::Entry {
                            path: n.into(),
                            kind: protocol::EntryKind::File,
                            size: 5,
                            mtime: 0,
                            mtime_nanos: 0,
                            mode: 0o644,
                            digest: None,
                        },
                    )?;
                }
                lw.finish(&mut out)?;
            }
            (Request::Get { .. }, Evil::EscapeError) => {
                protocol::write_error(
                    &mut out,
                    &protocol::ErrorFrame::new(
                        ErrorCode::NotFound,
                        "\x1b[2J\x1b[31mPWNED\x07\rfake line",
                    ),
                )?;
            }
            (Request::Get { .. }, Evil::Empty) => {
                let header = protocol::FileHeader {
                    size: 10,
                    offset: 0,
                    mtime: 0,
                    mtime_nanos: 0,
                    mode: 0o644,
                };
                protocol::write_file_header(&mut out, &header)?;
                w.write_all(&out)?;
                for _ in 0..1_000_000 {
                    protocol::write_data_header(&mut w, 0)?;
                }
                return Ok(());
            }
            (Request::Get { .. }, m) => {
                let (size, sent): (u64, usize) = match m {
                    Evil::Overrun => (10, 20),
                    Evil::Short => (100, 10),
                    Evil::Endless => (10, usize::MAX),
                    _ => (5, 5),
                };
                let header = protocol::FileHeader {
                    size,
                    offset: 0,
                    mtime: 0,
                    mtime_nanos: 0,
                    mode: 0o644,
                };
                protocol::write_file_header(&mut out, &header)?;
                if sent == usize::MAX {
                    w.write_all(&out)?;
                    let chunk = vec![b'A'; 4096];
                    for _ in 0..100_000 {
                        let mut f = Vec::new();
                        protocol::write_data_header(&mut f, chunk.len() as u32)?;
                        f.extend_from_slice(&chunk);
                        w.write_all(&f)?;
                    }
                    return Ok(());
                }
                let body = vec![b'x'; sent];
                protocol::write_data_header(&mut out, sent as u32)?;
                out.extend_from_slice(&body);
                protocol::write_trailer(
                    &mut out,
                    &protocol::Trailer::blake3(*blake3::hash(&body).as_bytes()),
                )?;
            }
            (Request::Quit, _) => return Ok(()),
            (Request::Auth { .. }, _) => return Ok(()),
        }
        w.write_all(&out)?;
    }
}

#[test]
fn hostile_server_names_cannot_escape_or_garble_the_terminal() {
    let port = evil_server(Evil::Names).to_string();
    let work = tempfile::tempdir().unwrap();
    let dl = work.path().join("dl");
    let o = fxfer(work.path())
        .args(["ls", "--plaintext", "--port", &port])
        .output()
        .unwrap();
    assert_exit(&o, 0);
    let out = stdout(&o);
    assert!(
        !out.contains('\x1b') && !out.contains('\x07'),
        "raw escapes reached the terminal: {out:?}"
    );
    assert_eq!(
        out.lines().count(),
        5,
        "a newline in a name split a line: {out:?}"
    );
    assert!(
        out.contains("bad\\u{a}name\\u{1b}[31mred\\u{7}.txt"),
        "{out}"
    );
    // Fetch everything the listing offers.
    let o = fxfer(work.path())
        .args(["get", "--plaintext", "--dir", "dl", "--port", &port, "**"])
        .output()
        .unwrap();
    assert_exit(&o, 1);
    let err = stderr(&o);
    assert!(!err.contains('\x1b'), "{err:?}");
    assert_eq!(err.matches("refusing to save").count(), 3, "{err}");
    // Only the harmless names landed, inside the download folder.
    let got = tree(&dl);
    assert!(got.contains(&"ok.txt".to_string()), "{got:?}");
    assert!(got.iter().all(|f| !f.contains("evil")), "{got:?}");
    assert!(!work.path().join("evil1.txt").exists());
    assert!(!Path::new("/tmp/fxfer-evil2.txt").exists());
    assert!(!work.path().join("evil3.txt").exists());
}

#[test]
fn hostile_server_sizes_and_endless_bodies_fail_cleanly() {
    for mode in [Evil::Overrun, Evil::Short, Evil::Endless, Evil::Empty] {
        let port = evil_server(mode).to_string();
        let work = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let o = fxfer(work.path())
            .args([
                "get",
                "--plaintext",
                "--retries",
                "0",
                "--dir",
                "dl",
                "--port",
                &port,
                "ok.txt",
            ])
            .output()
            .unwrap();
        assert_exit(&o, 3);
        assert!(started.elapsed() < Duration::from_secs(20));
        let err = stderr(&o);
        assert!(
            err.contains("more than the 10 bytes")
                || err.contains("file ended after 10 of 100")
                || err.contains("empty frame"),
            "{err}"
        );
        assert!(
            tree(&work.path().join("dl")).is_empty(),
            "{:?}",
            tree(&work.path().join("dl"))
        );
    }
}

#[test]
fn hostile_server_error_messages_reach_the_terminal_escaped() {
    let port = evil_server(Evil::EscapeError).to_string();
    let work = tempfile::tempdir().unwrap();
    let o = fxfer(work.path())
        .args([
            "get",
            "--plaintext",
            "--dir",
            "dl",
            "--port",
            &port,
            "ok.txt",
        ])
        .output()
        .unwrap();
    assert_exit(&o, 1);
    let err = stderr(&o);
    assert!(
        !err.contains('\x1b') && !err.contains('\x07') && !err.contains('\r'),
        "{err:?}"
    );
    assert!(err.contains("PWNED"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err:?}");
}

#[test]
fn trickling_a_request_does_not_keep_a_connection_alive() {
    let s = Server::builder()
        .files(|h| write(h, "a.txt", b"alpha"))
        .arg("--idle-timeout")
        .arg("2")
        .start();
    let mut c = hold(&s);
    // A LIST frame announcing 1000 bytes, one byte every 0.5 s.
    c.write_all(&[frame::LIST, 0, 0, 3, 232]).unwrap();
    let started = Instant::now();
    let mut closed = false;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(500));
        if c.write_all(b"x").is_err() {
            closed = true;
            break;
        }
        let mut b = [0u8; 1];
        c.socket().set_nonblocking(true).unwrap();
        if matches!(c.read(&mut b), Ok(0)) {
            closed = true;
            break;
        }
        c.socket().set_nonblocking(false).unwrap();
    }
    assert!(closed, "still open after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(6));
}

#[test]
fn missing_paths_up_to_the_length_limit_are_not_found() {
    let s = Server::with_files(|h| write(h, "a.txt", b"alpha"));
    let long_name = "n".repeat(300);
    let deep = ["d/"; 2047].concat() + "x";
    let full = "p".repeat(protocol::MAX_PATH_LEN);
    for path in [long_name, deep, full] {
        let mut r = session(
            &s,
            &req(&[
                Request::get(path.clone()),
                Request::List {
                    path: path.clone(),
                    recursive: false,
                    digests: false,
                },
            ]),
        );
        expect_error(&mut r, ErrorCode::NotFound, &format!("GET {}", path.len()));
        expect_error(&mut r, ErrorCode::NotFound, &format!("LIST {}", path.len()));
        still_usable(&mut r, "after a long path");
    }
}
