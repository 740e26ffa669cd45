//! Token authentication against the real server and client.

use crate::util::*;
use fxfer::protocol::{self, auth, ErrorCode, Hello, Request, Response, AUTH_LEN};
use std::io::{BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "s3cret-token-for-tests-0123456789";

fn token_server() -> Server {
    let dir = tempfile::tempdir().unwrap().keep();
    let tf = dir.join("token");
    secret(&tf, &format!("{TOKEN}\n"));
    Server::builder()
        .files(|h| write(h, "a.txt", b"alpha"))
        .arg("--token-file")
        .arg(tf.to_str().unwrap())
        .start()
}

#[test]
fn without_the_token_nothing_is_listed_or_served() {
    let s = token_server();
    let started = Instant::now();
    let o = s.client("ls").output().unwrap();
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("requires a token"), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    let o = s.get(&["a.txt"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(!s.downloads().join("a.txt").exists());
    // Wrong token: refused, slowly, and logged with the peer's address.
    let o = s.client("ls").env("FXFER_TOKEN", "wrong").output().unwrap();
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("authentication failed: wrong token"),
        "{}",
        stderr(&o)
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "failures are slowed down"
    );
    // get says the same, with the connection's exit status.
    let o = s.get(&["a.txt"]);
    assert_exit(&o, 3);
    let log = s.wait_log("wrong token");
    assert!(
        log.contains("127.0.0.1:") && log.contains("refused: authentication failed: wrong token"),
        "{log}"
    );
}

#[test]
fn the_token_works_from_flag_environment_and_config() {
    let s = token_server();
    let tf = s.work.join("client-token");
    secret(&tf, TOKEN);
    let o = s
        .client("ls")
        .arg("--token-file")
        .arg(&tf)
        .output()
        .unwrap();
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("a.txt"));
    let o = s
        .client("get")
        .env("FXFER_TOKEN", TOKEN)
        .args(["--parallel", "a.txt"])
        .output()
        .unwrap();
    assert_exit(&o, 0);
    assert_eq!(
        std::fs::read(s.downloads().join("a.txt")).unwrap(),
        b"alpha"
    );
    std::fs::write(
        s.work.join("fxfer.toml"),
        format!("[client]\ntoken_file = \"{}\"\n", tf.display()),
    )
    .unwrap();
    let o = s.client("get").arg("a.txt").output().unwrap();
    assert_exit(&o, 0);
    assert!(s.wait_log("authenticated").contains(": authenticated"));
}

/// Drives the handshake by hand; returns the AUTH frame sent and whether
/// the server accepted it.
fn handshake(
    s: &Server,
    answer: impl FnOnce([u8; AUTH_LEN], [u8; 32]) -> Request,
) -> (Request, Response) {
    let mut c = s.connect();
    Hello::current().write_to(&mut c).unwrap();
    let binding = c.binding();
    let mut r = BufReader::new(c);
    let h = Hello::read_from(&mut r).unwrap();
    assert_eq!(h.flags & protocol::HELLO_AUTH, protocol::HELLO_AUTH);
    let Response::AuthChallenge { nonce } = Response::read_from(&mut r).unwrap() else {
        panic!("no challenge")
    };
    let a = answer(nonce, binding);
    a.write_to(r.get_mut()).unwrap();
    (a, Response::read_from(&mut r).unwrap())
}

#[test]
fn a_recorded_handshake_cannot_be_replayed() {
    let s = token_server();
    let key = auth::key(TOKEN.as_bytes());
    let ours = [7u8; AUTH_LEN];
    let (recorded, answer) = handshake(&s, |server, binding| Request::Auth {
        nonce: ours,
        mac: auth::client_mac(&key, &server, &ours, &binding),
    });
    match answer {
        Response::AuthOk { proof } => {
            // (The server's proof is checked by the real client; here just
            // its presence.)
            assert_ne!(proof, [0; 32]);
        }
        other => panic!("{other:?}"),
    }
    let (_, answer) = handshake(&s, |_, _| recorded);
    match answer {
        Response::Error(e) => assert_eq!(e.code, ErrorCode::AuthFailed),
        other => panic!("replay accepted: {other:?}"),
    }
}

#[test]
fn the_token_never_crosses_the_wire() {
    let s = token_server();
    // A recording proxy between client and server.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::<u8>::new()));
    let rec = Arc::clone(&seen);
    let server_port = s.port;
    std::thread::spawn(move || {
        for c in l.incoming().take(4) {
            let Ok(client) = c else { break };
            let server = std::net::TcpStream::connect(("127.0.0.1", server_port)).unwrap();
            let (mut cr, mut sw) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let rec = Arc::clone(&rec);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = cr.read(&mut buf) {
                    if n == 0 || sw.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    rec.lock().unwrap().extend_from_slice(&buf[..n]);
                }
                let _ = sw.shutdown(std::net::Shutdown::Write);
            });
            let (mut sr, mut cw) = (server, client);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut sr, &mut cw);
                let _ = cw.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    let o = fxfer(&s.work)
        .args(["get", "--port", &port.to_string(), "a.txt"])
        .env("FXFER_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_exit(&o, 0);
    let sent = seen.lock().unwrap().clone();
    assert!(sent.len() > 64, "proxy saw the traffic");
    let hay = String::from_utf8_lossy(&sent);
    assert!(!hay.contains(TOKEN), "the token was sent in the clear");
}
