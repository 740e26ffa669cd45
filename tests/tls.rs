//! TLS by default: what an eavesdropper sees, server identities and the
//! known-servers file, pins, token auth bound to the channel, plaintext
//! mismatches, and broken or hostile TLS streams.

use crate::util::proxy::{Proxy, Rules};
use crate::util::*;
use fxfer::protocol::{self, auth, ErrorCode, Hello, Request, Response, AUTH_LEN};
use fxfer::transport::{identity, tls};
use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn known_servers(work: &Path) -> std::path::PathBuf {
    work.join(".local/share/fxfer/known_servers")
}

const SECRET_NAME: &str = "quarterly-secret-plans.txt";

#[test]
fn a_recording_proxy_sees_neither_file_names_nor_file_bytes() {
    let data = bytes(40, 300_000);
    let d2 = data.clone();
    let s = Server::with_files(move |h| write(h, SECRET_NAME, &d2));
    let p = Proxy::start(
        s.port,
        Rules {
            record: true,
            ..Rules::default()
        },
    );
    let o = p.client(&s.work, "ls").output().unwrap();
    assert_exit(&o, 0);
    assert!(stdout(&o).contains(SECRET_NAME));
    let o = p.client(&s.work, "get").arg(SECRET_NAME).output().unwrap();
    assert_exit(&o, 0);
    assert!(std::fs::read(s.downloads().join(SECRET_NAME)).unwrap() == data);
    let cap = p.captured();
    assert!(cap.len() > data.len(), "the proxy saw the whole exchange");
    assert!(
        !contains(&cap, SECRET_NAME.as_bytes()),
        "file name in the clear"
    );
    assert!(!contains(&cap, b"FXFR"), "protocol greeting in the clear");
    for at in [0, 1000, 150_000, 299_000] {
        assert!(
            !contains(&cap, &data[at..at + 32]),
            "file bytes at {at} in the clear"
        );
    }

    // The same proxy in front of a --plaintext server sees everything: the
    // check above can fail.
    let plain = Server::builder()
        .plaintext()
        .files(move |h| write(h, SECRET_NAME, &data))
        .start();
    let p = Proxy::start(
        plain.port,
        Rules {
            record: true,
            ..Rules::default()
        },
    );
    let o = p
        .client(&plain.work, "get")
        .args(["--plaintext", SECRET_NAME])
        .output()
        .unwrap();
    assert_exit(&o, 0);
    assert!(contains(&p.captured(), SECRET_NAME.as_bytes()));
}

#[test]
fn another_identity_behind_a_known_address_is_refused() {
    let a = Server::with_files(|h| write(h, "a.txt", b"from the real server"));
    let b = Server::with_files(|h| write(h, "a.txt", b"from an impostor"));
    let (fa, fb) = (a.fingerprint(), b.fingerprint());
    assert_ne!(fa, fb, "each server has its own identity");
    let p = Proxy::start(a.port, Rules::default());
    // First contact on 127.0.0.1: recorded without asking.
    let o = p.client(&a.work, "get").arg("a.txt").output().unwrap();
    assert_exit(&o, 0);
    let file = known_servers(&a.work);
    let before = std::fs::read_to_string(&file).unwrap();
    assert_eq!(before, format!("127.0.0.1:{} {fa}\n", p.port));

    // Another server behind the same address: refused, nothing written.
    p.point_at(b.port);
    std::fs::remove_dir_all(a.downloads()).unwrap();
    for sub in ["get", "ls"] {
        let mut c = p.client(&a.work, sub);
        if sub == "get" {
            c.args(["--parallel", "a.txt"]);
        }
        let o = c.output().unwrap();
        assert_exit(&o, 3);
        let err = stderr(&o);
        assert!(err.contains("SERVER KEY CHANGED"), "{err}");
        assert!(err.contains(&fa) && err.contains(&fb), "{err}");
        assert!(
            err.contains(&format!("line 1 of {}", file.display())),
            "{err}"
        );
        assert!(tree(&a.work.join("downloads")).is_empty());
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
    assert!(
        !b.log_text().contains("sent \"a.txt\""),
        "nothing was asked"
    );

    // Back to the real server: trusted again.
    p.point_at(a.port);
    let o = p.client(&a.work, "get").arg("a.txt").output().unwrap();
    assert_exit(&o, 0);
}

#[test]
fn a_pin_is_checked_and_bypasses_the_known_servers_file() {
    let s = Server::with_files(|h| write(h, "a.txt", b"alpha"));
    let fp = s.fingerprint();
    let other = identity::Fingerprint([7; 32]).to_string();
    let o = s
        .client("ls")
        .args(["--fingerprint", &other])
        .output()
        .unwrap();
    assert_exit(&o, 3);
    let err = stderr(&o);
    assert!(
        err.contains("does not match --fingerprint") && err.contains(&fp) && err.contains(&other),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let o = s
        .client("get")
        .args(["--fingerprint", &fp, "a.txt"])
        .output()
        .unwrap();
    assert_exit(&o, 0);
    let o = s
        .client("ls")
        .env("FXFER_FINGERPRINT", &fp)
        .output()
        .unwrap();
    assert_exit(&o, 0);
    assert!(!known_servers(&s.work).exists(), "a pin records nothing");
    let o = s
        .client("ls")
        .args(["--fingerprint", "SHA256:nope"])
        .output()
        .unwrap();
    assert_exit(&o, 2);
}

#[test]
fn a_new_server_off_localhost_needs_a_pin_or_trust_new() {
    let s = Server::with_files(|h| write(h, "a.txt", b"alpha"));
    let fp = s.fingerprint();
    // 127.0.0.2 is not this machine's 127.0.0.1: not taken on trust.
    let p = Proxy::start_on("127.0.0.2", s.port, Rules::default());
    let o = p.client(&s.work, "get").arg("a.txt").output().unwrap();
    assert_exit(&o, 3);
    let err = stderr(&o);
    assert!(
        err.contains("unknown server")
            && err.contains(&format!("--fingerprint {fp}"))
            && err.contains("--trust-new"),
        "{err}"
    );
    assert!(!known_servers(&s.work).exists());
    assert!(!s.downloads().join("a.txt").exists());
    let o = p
        .client(&s.work, "get")
        .args(["--trust-new", "a.txt"])
        .output()
        .unwrap();
    assert_exit(&o, 0);
    assert_eq!(
        std::fs::read_to_string(known_servers(&s.work)).unwrap(),
        format!("127.0.0.2:{} {fp}\n", p.port)
    );
    // Known now: no flag needed.
    let o = p.client(&s.work, "ls").output().unwrap();
    assert_exit(&o, 0);
}

#[test]
fn plaintext_and_tls_mismatches_fail_clearly_both_ways() {
    let tls_server = Server::with_files(|h| write(h, "a.txt", b"alpha"));
    let o = tls_server
        .client("get")
        .args(["--plaintext", "a.txt"])
        .output()
        .unwrap();
    assert_exit(&o, 3);
    let err = stderr(&o);
    assert!(
        err.contains("requires TLS") && err.contains("without --plaintext"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(tls_server
        .wait_log("client spoke without TLS")
        .contains("refused"));

    let plain = Server::builder()
        .plaintext()
        .files(|h| write(h, "a.txt", b"alpha"))
        .start();
    let o = fxfer(&plain.work)
        .args(["ls", "--port", &plain.port.to_string()])
        .output()
        .unwrap();
    assert_exit(&o, 3);
    let err = stderr(&o);
    assert!(
        err.contains("runs without TLS") && err.contains("connect with --plaintext"),
        "{err}"
    );
    assert!(plain
        .wait_log("client wants TLS")
        .contains("this server runs --plaintext"));
    // Neither server was hurt.
    for s in [&tls_server, &plain] {
        let o = s.client("get").arg("a.txt").output().unwrap();
        assert_exit(&o, 0);
    }
    assert!(plain.stderr().contains("without TLS"), "{}", plain.stderr());
}

#[test]
fn a_cut_or_damaged_tls_stream_never_leaves_a_file_under_its_name() {
    let data = bytes(41, 3 << 20);
    let d2 = data.clone();
    let s = Server::with_files(move |h| write(h, "f.bin", &d2));
    let cut = |at| Rules {
        cut_each: Some(at),
        ..Rules::default()
    };
    let flip = |at| Rules {
        flip_each: Some(at),
        ..Rules::default()
    };
    for rules in [cut(1 << 20), flip(2 << 20), cut(300), flip(100)] {
        let p = Proxy::start(s.port, rules);
        let o = p
            .client(&s.work, "get")
            .args(["--retries", "0", "f.bin"])
            .output()
            .unwrap();
        assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(!s.downloads().join("f.bin").exists());
        // A clear line or two, never a panic.
        let err = stderr(&o);
        assert!(
            err.lines().count() <= 3 && !err.contains("panicked"),
            "{err}"
        );
    }
    // What was kept is genuine: a clean run resumes it and verifies.
    let o = s.client("get").arg("f.bin").output().unwrap();
    assert_exit(&o, 0);
    assert!(std::fs::read(s.downloads().join("f.bin")).unwrap() == data);
    assert!(tree(&s.downloads()) == ["f.bin"]);
}

#[test]
fn garbage_half_open_and_silent_tls_handshakes_are_dropped() {
    let s = Server::builder()
        .files(|h| write(h, "a.txt", b"alpha"))
        .arg("--handshake-timeout")
        .arg("1")
        .start();
    // Silent, and half a ClientHello (a record header promising 512 bytes).
    for opening in [&[][..], &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00][..]] {
        let mut c = s.tcp();
        c.write_all(opening).unwrap();
        let started = Instant::now();
        let mut got = Vec::new();
        let _ = c.read_to_end(&mut got);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(got.is_empty(), "{got:?}");
    }
    assert!(s.wait_log("TLS handshake timed out").contains("refused"));
    // A ClientHello that is not TLS inside.
    let mut c = s.tcp();
    c.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
        .unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert!(got.len() < 16, "at most an alert: {got:?}");
    assert!(s.wait_log("TLS handshake failed").contains("refused"));
    let o = s.client("get").arg("a.txt").output().unwrap();
    assert_exit(&o, 0);
}

/// A test impostor: the client was led to it (a wrong address) and trusts
/// it; it relays the real server's token challenge to the client and the
/// client's proof back, on every connection the client makes, until `done`.
/// Returns how many relayed proofs the real server accepted.
fn relay_token_handshakes(
    impostor: TcpListener,
    real_port: u16,
    state: &Path,
    done: &AtomicBool,
) -> usize {
    let id = identity::load_or_create(state).unwrap();
    let cfg = tls::server_config(&id).unwrap();
    impostor.set_nonblocking(true).unwrap();
    let mut accepted = 0;
    let mut seen = 0u8;
    while !done.load(Ordering::SeqCst) {
        match impostor.accept() {
            Ok((sock, _)) => {
                sock.set_nonblocking(false).unwrap();
                let from = std::net::Ipv4Addr::new(127, 0, 0, 4 + seen);
                seen += 1;
                accepted += usize::from(relay_one(sock, &cfg, real_port, from));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    accepted
}

/// Relays one token handshake; whether the server sent AUTH_OK.
fn relay_one(
    sock: TcpStream,
    cfg: &Arc<rustls::ServerConfig>,
    real_port: u16,
    from: std::net::Ipv4Addr,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    let Ok(client) = tls::accept_blocking(sock, cfg, deadline) else {
        return false;
    };
    // Each from a source address of its own: a failed proof earns its
    // source a penalty (the test's own, above, 127.0.0.1's).
    let real = connect_from(from, real_port);
    real.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // (A second try of the client's meets the penalty its first earned.)
    let Ok(server) = tls::connect(real, "127.0.0.1", deadline, &|| false) else {
        return false;
    };
    let (mut c, mut s) = (BufReader::new(client), BufReader::new(server));
    let mut hello = [0u8; 8];
    if c.read_exact(&mut hello).is_err() {
        return false;
    }
    s.get_mut().write_all(&hello).unwrap();
    // Greeting + AUTH_CHALLENGE from the server, AUTH from the client,
    // then the server's verdict, each passed on unchanged.
    let mut greet = [0u8; 8 + 5 + AUTH_LEN];
    s.read_exact(&mut greet).unwrap();
    c.get_mut().write_all(&greet).unwrap();
    let mut auth_frame = [0u8; 5 + 2 * AUTH_LEN];
    if c.read_exact(&mut auth_frame).is_err() {
        return false;
    }
    s.get_mut().write_all(&auth_frame).unwrap();
    let verdict = Response::read_from(&mut s);
    if let Ok(Response::Error(e)) = &verdict {
        let _ = protocol::write_error(c.get_mut(), e);
    }
    matches!(verdict, Ok(Response::AuthOk { .. }))
}

#[test]
fn the_token_works_over_tls_and_a_relayed_proof_fails() {
    const TOKEN: &str = "tls-bound-token-0123456789";
    let tf = tempfile::tempdir().unwrap().keep().join("token");
    secret(&tf, TOKEN);
    let s = Server::builder()
        .files(|h| write(h, "a.txt", b"alpha"))
        .arg("--token-file")
        .arg(tf.to_str().unwrap())
        .start();
    let o = s
        .client("get")
        .env("FXFER_TOKEN", TOKEN)
        .arg("a.txt")
        .output()
        .unwrap();
    assert_exit(&o, 0);
    assert!(s.wait_log(": authenticated").contains(": authenticated"));

    // A proof made for one TLS connection fails on another.
    let key = auth::key(TOKEN.as_bytes());
    let mut c = BufReader::new(s.connect());
    Hello::current().write_to(c.get_mut()).unwrap();
    let binding = c.get_ref().binding();
    Hello::read_from(&mut c).unwrap();
    let Response::AuthChallenge { nonce } = Response::read_from(&mut c).unwrap() else {
        panic!("no challenge")
    };
    let ours = [5u8; AUTH_LEN];
    let mut elsewhere = binding;
    elsewhere[0] ^= 1;
    Request::Auth {
        nonce: ours,
        mac: auth::client_mac(&key, &nonce, &ours, &elsewhere),
    }
    .write_to(c.get_mut())
    .unwrap();
    match Response::read_from(&mut c).unwrap() {
        Response::Error(e) => assert_eq!(e.code, ErrorCode::AuthFailed),
        other => panic!("accepted: {other:?}"),
    }

    // An impostor relaying the real exchange gets nowhere, and the client,
    // which trusted the impostor, receives nothing.
    let impostor = TcpListener::bind("127.0.0.1:0").unwrap();
    let iport = impostor.local_addr().unwrap().port();
    let state = s.work.join("impostor-state");
    let (real, st) = (s.port, state.clone());
    let done = Arc::new(AtomicBool::new(false));
    let d2 = Arc::clone(&done);
    let relay = std::thread::spawn(move || relay_token_handshakes(impostor, real, &st, &d2));
    let o = fxfer(&s.work)
        .args([
            "get",
            "--retries",
            "0",
            "--port",
            &iport.to_string(),
            "a.txt",
        ])
        .env("FXFER_TOKEN", TOKEN)
        .current_dir(&s.work)
        .arg("--dir")
        .arg("relayed")
        .output()
        .unwrap();
    done.store(true, Ordering::SeqCst);
    assert_eq!(relay.join().unwrap(), 0, "a relayed proof was accepted");
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("authentication failed: wrong token"),
        "{}",
        stderr(&o)
    );
    assert!(!s.work.join("relayed/a.txt").exists());
    assert!(s.wait_log("wrong token").matches("wrong token").count() >= 2);
}

#[test]
fn a_reader_that_stops_is_dropped_after_one_write_timeout() {
    const WRITE_TIMEOUT: Duration = Duration::from_secs(4);
    for plaintext in [false, true] {
        let mut b = Server::builder()
            .files(|h| write(h, "big.bin", &vec![0u8; 64 << 20]))
            .arg("--write-timeout")
            .arg(WRITE_TIMEOUT.as_secs().to_string().as_str());
        if plaintext {
            b = b.plaintext();
        }
        let s = b.start();
        let r = session(&s, &req(&[Request::get("big.bin")]));
        // Read nothing more: the socket buffers fill, the server stalls.
        let started = Instant::now();
        let log = s.wait_log("stopped reading");
        let took = started.elapsed();
        assert!(log.contains("write timed out"), "{log}");
        // One time-out plus filling the buffers, not several: a server that
        // retried the partial write would wait at least two time-outs after
        // the fill. A long time-out leaves a loaded machine's debug build
        // time to fill the buffers (over 2 s was seen) without hiding that.
        assert!(
            took < WRITE_TIMEOUT * 2 - Duration::from_millis(100),
            "plaintext {plaintext}: {took:?}"
        );
        drop(r);
    }
}

#[test]
fn a_refusal_at_acceptance_reaches_a_tls_client_in_the_clear() {
    let s = Server::builder()
        .files(|h| write(h, "a.txt", b"alpha"))
        .arg("--max-connections-per-ip")
        .arg("1")
        .start();
    let held = hold(&s);
    let o = s.client("ls").args(["--timeout", "5"]).output().unwrap();
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("too many connections from your address"),
        "{}",
        stderr(&o)
    );
    drop(held);
}

/// A certificate authority of the test's own in `dir` and a certificate it
/// issued for `localhost`, as PEM files: (CA certificate, leaf, leaf key).
fn ca_and_leaf(dir: &Path, ca_name: &str) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    std::fs::create_dir_all(dir).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf.signed_by(&key, &ca).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("leaf.pem"),
        dir.join("leaf-key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, leaf.pem()).unwrap();
    secret(&paths.2, &key.serialize_pem());
    paths
}

#[test]
fn a_ca_issued_certificate_is_trusted_for_its_name_under_the_systems_cas_only() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, leaf, key) = ca_and_leaf(&tmp.path().join("pki"), "fxfer test root");
    let (other_ca, ..) = ca_and_leaf(&tmp.path().join("other"), "some other root");
    let data = bytes(43, 700_000);
    let d2 = data.clone();
    let s = Server::builder()
        .files(move |h| write(h, "f.bin", &d2))
        .arg("--cert")
        .arg(leaf.to_str().unwrap())
        .arg("--key")
        .arg(key.to_str().unwrap())
        .start();
    let fp = s.fingerprint();
    assert!(s.wait_log("fingerprint").contains("certificate "));
    // The system's CAs, as rustls-native-certs reads them: the file
    // SSL_CERT_FILE names, in place of the distribution's bundle.
    let get = |roots: &Path, host: &str, extra: &[&str]| {
        fxfer(&s.work)
            .args(["get", "--ip", host, "--port", &s.port.to_string()])
            .args(extra)
            .arg("f.bin")
            .env("SSL_CERT_FILE", roots)
            .env_remove("SSL_CERT_DIR")
            .output()
            .unwrap()
    };
    let refused = |o: &std::process::Output, why: &str| {
        assert_exit(o, 3);
        let err = stderr(o);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("certificate not valid for")
                && err.contains(why)
                && err.contains(&format!("--fingerprint {fp}")),
            "{err}"
        );
        assert!(tree(&s.downloads()).is_empty(), "{err}");
        assert!(!known_servers(&s.work).exists());
    };

    // The name the certificate is for, under the CA that issued it.
    let o = get(&ca, "localhost", &["-v"]);
    assert_exit(&o, 0);
    assert!(
        stderr(&o).contains("certificate valid for the host name (system CAs)"),
        "{}",
        stderr(&o)
    );
    assert!(std::fs::read(s.downloads().join("f.bin")).unwrap() == data);
    assert!(
        !known_servers(&s.work).exists(),
        "a CA's word is checked every time, not recorded"
    );
    std::fs::remove_dir_all(s.downloads()).unwrap();

    // Another name (the certificate is for localhost, not 127.0.0.1, even
    // though that is where localhost leads): refused, even on loopback.
    refused(&get(&ca, "127.0.0.1", &[]), "\"127.0.0.1\"");
    // A CA this system does not trust.
    refused(
        &get(&other_ca, "localhost", &[]),
        "certificate authority this system does not trust",
    );
    // --trust-new records new self-signed servers, and does not turn a
    // failed CA check into a first contact.
    refused(
        &get(&other_ca, "localhost", &["--trust-new"]),
        "does not trust",
    );
    // The key pinned: the user's word instead of a CA's.
    let o = get(&other_ca, "127.0.0.1", &["--fingerprint", &fp]);
    assert_exit(&o, 0);
    assert!(std::fs::read(s.downloads().join("f.bin")).unwrap() == data);
}

/// `fxfer get NAME` through `p`, at a terminal (a pseudo-terminal of its
/// own for stdin, stdout and stderr).
fn get_at_a_terminal(p: &Proxy, work: &Path, args: &[&str]) -> rexpect::session::PtySession {
    let mut c = p.client(work, "get");
    c.args(args)
        .stdin(std::process::Stdio::inherit())
        .env("TERM", "xterm");
    rexpect::session::spawn_command(c, Some(30_000)).expect("spawn get in a pty")
}

/// The exit code of a process in a pseudo-terminal, once its output ended.
fn exit_code(mut t: rexpect::session::PtySession) -> i32 {
    use rexpect::process::wait::WaitStatus;
    let _ = t.exp_eof();
    match t.process.wait().unwrap() {
        WaitStatus::Exited(_, code) => code,
        other => panic!("ended by {other:?}"),
    }
}

#[test]
fn at_a_terminal_a_new_server_is_shown_and_asked_about() {
    let s = Server::with_files(|h| {
        for f in ["a.txt", "b.txt", "c.txt"] {
            write(h, f, b"alpha")
        }
    });
    let fp = s.fingerprint();
    // 127.0.0.2 is loopback, but only 127.0.0.1 and ::1 are taken on trust.
    let p = Proxy::start_on("127.0.0.2", s.port, Rules::default());
    let file = known_servers(&s.work);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let before = format!(
        "# kept as it is\n127.0.0.1:1 {}\n",
        identity::Fingerprint([9; 32])
    );
    std::fs::write(&file, &before).unwrap();
    let ask = |args: &[&str], answer: &str| {
        let mut t = get_at_a_terminal(&p, &s.work, args);
        t.exp_string(&format!("The server 127.0.0.2:{} is not known yet", p.port))
            .unwrap();
        t.exp_string(&fp).unwrap();
        t.exp_string("Trust this server and remember it?").unwrap();
        // Keys sent while the prompt is still setting the terminal up can
        // be lost.
        std::thread::sleep(Duration::from_millis(300));
        t.send(answer).unwrap();
        t.flush().unwrap();
        t
    };

    // No: nothing is fetched and nothing recorded, and the other
    // connections of the run do not ask again.
    for args in [
        &["a.txt"][..],
        &["--parallel", "-j", "3", "a.txt", "b.txt", "c.txt"],
    ] {
        let mut t = ask(args, "n");
        t.exp_string(&format!("server {fp} not trusted")).unwrap();
        let rest = t.exp_eof().unwrap();
        assert!(!rest.contains("not known yet"), "asked again: {rest}");
        assert_eq!(exit_code(t), 3);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
        assert!(tree(&s.work.join("downloads")).is_empty());
        assert!(!s.log_text().contains("sent \""));
    }

    // Yes: recorded under the address as given, then fetched.
    let t = ask(&["a.txt"], "y");
    assert_eq!(exit_code(t), 0);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        format!("{before}127.0.0.2:{} {fp}\n", p.port)
    );
    assert_eq!(
        std::fs::read(s.downloads().join("a.txt")).unwrap(),
        b"alpha"
    );
    // Known now: no question, even without a terminal.
    let o = p.client(&s.work, "ls").output().unwrap();
    assert_exit(&o, 0);
}
