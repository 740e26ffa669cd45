use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use crate::util::*;

fn many_files(h: &std::path::Path) {
    for i in 0..300 {
        write(h, &format!("f{i:03}.txt"), format!("file {i}").as_bytes());
    }
}

#[test]
fn a_closed_stdout_never_panics_and_the_downloads_go_on() {
    let s = Server::with_files(many_files);
    let mut child = s
        .client("get")
        .arg("*.txt")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `| head -3`: read three lines, then close the pipe.
    let mut out = BufReader::new(child.stdout.take().unwrap());
    for _ in 0..3 {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(line.starts_with("ok "), "{line:?}");
    }
    drop(out);
    let o = child.wait_with_output().unwrap();
    assert_exit(&o, 0);
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert_eq!(tree(&s.downloads()).len(), 300);
}

#[test]
fn dir_naming_a_file_says_so() {
    let s = Server::with_files(|h| write(h, "a.txt", b"a"));
    std::fs::write(s.work.join("plain"), b"not a folder").unwrap();
    for dir in ["plain", "plain/sub/deeper"] {
        let o = s.get(&["--dir", dir, "a.txt"]);
        assert_exit(&o, 1);
        let err = stderr(&o);
        assert!(err.contains("plain is a file, not a folder"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert_eq!(
        std::fs::read(s.work.join("plain")).unwrap(),
        b"not a folder"
    );
}

#[test]
fn ip_accepts_host_port_and_bracketed_ipv6() {
    let s = Server::with_files(|h| write(h, "a.txt", b"abc"));
    let hp = format!("127.0.0.1:{}", s.port);
    let o = fxfer(&s.work).args(["ls", "--ip", &hp]).output().unwrap();
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("a.txt"), "{}", stdout(&o));
    let o = fxfer(&s.work)
        .args(["get", "--ip", &hp, "a.txt"])
        .output()
        .unwrap();
    assert_exit(&o, 0);
    assert_eq!(std::fs::read(s.downloads().join("a.txt")).unwrap(), b"abc");
    // A port in --ip that contradicts --port is an error naming both.
    let o = fxfer(&s.work)
        .args(["ls", "--ip", &hp, "--port", "1"])
        .output()
        .unwrap();
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("--port"), "{}", stderr(&o));
}

#[test]
fn ip_accepts_bracketed_ipv6_with_port_on_both_ends() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let host = tmp.path().join("host");
    write(&host, "six.txt", b"six");
    let mut child = fxfer(tmp.path())
        .args(["serve", "--ip", "[::1]:0", "--log-file", "s.log", "--dir"])
        .arg(&host)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    assert!(addr.starts_with("[::1]:"), "{line}");
    let o = fxfer(tmp.path())
        .args(["get", "--ip", &addr, "six.txt"])
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_exit(&o, 0);
    assert_eq!(
        std::fs::read(tmp.path().join("downloads/six.txt")).unwrap(),
        b"six"
    );
}

#[test]
fn files_from_reads_names_from_a_file_or_stdin() {
    let s = Server::with_files(|h| {
        write(h, "a.txt", b"a");
        write(h, "b c.txt", b"bc");
        write(h, "logs/x.log", b"x");
        write(h, "skip.txt", b"no");
    });
    std::fs::write(s.work.join("list"), "a.txt\n\n# a comment\nb c.txt\r\n").unwrap();
    let o = s.get(&["--files-from", "list", "logs/*.log"]);
    assert_exit(&o, 0);
    assert_eq!(tree(&s.downloads()), ["a.txt", "b c.txt", "logs/x.log"]);

    let mut child = s
        .client("get")
        .args(["--files-from", "-", "--dir", "from-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"skip.txt\na.txt\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_exit(&o, 0);
    assert_eq!(tree(&s.work.join("from-stdin")), ["a.txt", "skip.txt"]);

    // No names at all is a usage error; so is a missing list.
    std::fs::write(s.work.join("empty"), "\n# nothing\n").unwrap();
    let o = s.get(&["--files-from", "empty"]);
    assert_exit(&o, 2);
    let o = s.get(&["--files-from", "nope"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("nope"), "{}", stderr(&o));
}

fn elapsed_secs(o: &std::process::Output) -> f64 {
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["totals"]["seconds"].as_f64().unwrap()
}

#[test]
fn limit_rate_holds_a_get_to_its_rate() {
    let s = Server::with_files(|h| {
        write(h, "a.bin", &bytes(1, 1 << 20));
        write(h, "b.bin", &bytes(2, 1 << 20));
    });
    // 2 MiB at 1 MiB/s, both connections together, takes about two
    // seconds (the bucket holds a tenth of a second at most).
    for mode in ["--no-parallel", "--parallel"] {
        let o = s.get(&[
            "--json",
            "--limit-rate",
            "1M",
            mode,
            "a.bin",
            "b.bin",
            "--no-resume",
            // Fetched again although the copies are the same.
            "--compare",
            "none",
        ]);
        assert_exit(&o, 0);
        let secs = elapsed_secs(&o);
        assert!(secs >= 1.7, "{mode}: {secs}s");
        assert_eq!(
            std::fs::read(s.downloads().join("b.bin")).unwrap(),
            bytes(2, 1 << 20)
        );
    }
    // The same from the config file.
    std::fs::write(s.work.join("fxfer.toml"), "[client]\nlimit_rate = \"2M\"\n").unwrap();
    let o = s.get(&["--json", "--compare", "none", "a.bin", "b.bin"]);
    assert_exit(&o, 0);
    assert!(elapsed_secs(&o) >= 0.8, "{}", elapsed_secs(&o));
    std::fs::write(
        s.work.join("fxfer.toml"),
        "[client]\nlimit_rate = \"fast\"\n",
    )
    .unwrap();
    let o = s.get(&["a.bin"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("limit_rate"), "{}", stderr(&o));
    let o = s.get(&["--limit-rate", "0", "a.bin"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("--limit-rate"), "{}", stderr(&o));
}

#[test]
fn serve_limit_rate_holds_each_connection() {
    let s = Server::builder()
        .files(|h| write(h, "big.bin", &bytes(3, 2 << 20)))
        .arg("--limit-rate")
        .arg("1M")
        .start();
    let o = s.get(&["--json", "big.bin"]);
    assert_exit(&o, 0);
    assert!(elapsed_secs(&o) >= 1.7, "{}", elapsed_secs(&o));
    assert_eq!(
        std::fs::read(s.downloads().join("big.bin")).unwrap(),
        bytes(3, 2 << 20)
    );
    // Small files (sent in one write) are held to it too.
    let s = Server::builder()
        .files(|h| {
            for i in 0..8 {
                write(h, &format!("s{i}.bin"), &bytes(i, 200_000));
            }
        })
        .arg("--limit-rate")
        .arg("800K")
        .start();
    let o = s.get(&["--json", "*.bin"]);
    assert_exit(&o, 0);
    assert!(elapsed_secs(&o) >= 1.5, "{}", elapsed_secs(&o));
}

/// A listener that is not fxfer: it answers `reply` (or nothing, holding
/// the connection) to whatever arrives.
pub(crate) fn impostor(reply: Option<&'static [u8]>) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming().take(4) {
            let Ok(mut c) = c else { break };
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                let _ = std::io::Read::read(&mut c, &mut buf);
                match reply {
                    Some(r) => {
                        let _ = c.write_all(r);
                    }
                    // Like a web server waiting for the rest of a request.
                    None => std::thread::sleep(std::time::Duration::from_secs(40)),
                }
            });
        }
    });
    port
}

#[test]
fn a_server_that_is_not_fxfer_is_recognised_within_the_handshake_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let http = impostor(Some(
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
    ));
    let o = fxfer(dir.path())
        .args(["ls", "--port", &http.to_string()])
        .output()
        .unwrap();
    assert_exit(&o, 3);
    let err = stderr(&o);
    assert!(
        err.contains("not an fxfer server") && err.contains("HTTP/1.1 400 Bad Request"),
        "{err}"
    );
    // Silent: given up after the handshake time-out (10 s), not the
    // 30 s transfer time-out, and not retried.
    let silent = impostor(None);
    let started = std::time::Instant::now();
    let o = fxfer(dir.path())
        .args(["get", "--port", &silent.to_string(), "x"])
        .output()
        .unwrap();
    let took = started.elapsed();
    assert_exit(&o, 3);
    assert!(took < std::time::Duration::from_secs(15), "{took:?}");
    let err = stderr(&o);
    assert!(
        err.contains("waiting for the TLS handshake")
            && err.contains("something other than fxfer serve"),
        "{err}"
    );
    assert!(!err.contains("retrying"), "{err}");
    // The same without TLS, where the greeting is what is waited for.
    let started = std::time::Instant::now();
    let o = fxfer(dir.path())
        .args(["get", "--plaintext", "--port", &silent.to_string(), "x"])
        .output()
        .unwrap();
    assert_exit(&o, 3);
    assert!(started.elapsed() < std::time::Duration::from_secs(25));
    assert!(
        stderr(&o).contains("waiting for the fxfer greeting"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn output_dash_writes_one_verified_file_to_stdout() {
    let data = bytes(9, 3 << 20);
    let d = data.clone();
    let s = Server::with_files(move |h| {
        write(h, "x.bin", &d);
        write(h, "y.bin", b"y");
    });
    let o = s.get(&["-o", "-", "x.bin"]);
    assert_exit(&o, 0);
    assert!(o.stdout == data, "stdout is exactly the file");
    assert!(
        !s.downloads().exists(),
        "nothing saved in the download folder"
    );
    // --stdout is the same; a pattern naming one file is fine.
    let o = s.get(&["--stdout", "x.*"]);
    assert_exit(&o, 0);
    assert!(o.stdout == data);
    // More than one file is a usage error; so is --json with it.
    let o = s.get(&["-o", "-", "*.bin"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("one file"), "{}", stderr(&o));
    let o = s.get(&["-o", "-", "--json", "x.bin"]);
    assert_exit(&o, 2);
    // A missing file: non-zero, nothing on stdout.
    let o = s.get(&["-o", "-", "nope"]);
    assert_exit(&o, 1);
    assert!(o.stdout.is_empty());
}

#[test]
fn output_dash_feeds_tar_through_a_real_pipe() {
    let s = Server::with_files(|h| {
        write(&h.join("src"), "one.txt", b"one");
        write(&h.join("src"), "two.txt", &bytes(4, 100_000));
    });
    let st = std::process::Command::new("tar")
        .args(["cf", "x.tar", "-C"])
        .arg(s.host.join("src"))
        .args(["one.txt", "two.txt"])
        .current_dir(&s.host)
        .status();
    if !st.is_ok_and(|s| s.success()) {
        eprintln!("no tar here; skipped");
        return;
    }
    std::fs::create_dir_all(s.work.join("out")).unwrap();
    let cmd = format!(
        "set -o pipefail; {} get --port {} -o - x.tar | tar xf - -C out",
        BIN, s.port
    );
    let o = std::process::Command::new("bash")
        .args(["-c", &cmd])
        .current_dir(&s.work)
        .env_remove("FXFER_CONFIG")
        .env("HOME", &s.work)
        .output()
        .unwrap();
    assert_exit(&o, 0);
    assert_eq!(std::fs::read(s.work.join("out/one.txt")).unwrap(), b"one");
    assert_eq!(
        std::fs::read(s.work.join("out/two.txt")).unwrap(),
        bytes(4, 100_000)
    );
}

#[test]
fn output_dash_with_a_bad_digest_exits_non_zero_after_the_bytes() {
    // Without TLS, which would catch the damage before the digest does.
    let s = Server::builder()
        .plaintext()
        .files(|h| write(h, "f.bin", &bytes(5, 3 << 20)))
        .start();
    let p = crate::faults::proxy(s.port, Some((1 << 20, usize::MAX)), None, usize::MAX);
    let o = fxfer(&s.work)
        .args([
            "get",
            "--plaintext",
            "--port",
            &p.port.to_string(),
            "-o",
            "-",
            "f.bin",
        ])
        .output()
        .unwrap();
    assert_exit(&o, 1);
    assert_eq!(o.stdout.len(), 3 << 20, "the bytes went out");
    assert!(stderr(&o).contains("digest mismatch"), "{}", stderr(&o));
}

#[test]
fn output_dash_into_a_reader_that_stops_early_is_no_error() {
    let s = Server::with_files(|h| write(h, "big.bin", &bytes(7, 32 << 20)));
    let mut child = s
        .client("get")
        .args(["-o", "-", "big.bin"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 100];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut head).unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_exit(&o, 0);
    assert_eq!(&head[..], &bytes(7, 100)[..]);
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}

#[test]
fn output_file_saves_the_one_file_under_that_name() {
    let s = Server::with_files(|h| write(h, "logs/a.txt", b"abc"));
    let o = s.get(&["-o", "saved/renamed.txt", "logs/a.txt"]);
    assert_exit(&o, 0);
    assert_eq!(
        std::fs::read(s.work.join("saved/renamed.txt")).unwrap(),
        b"abc"
    );
    assert_eq!(tree(&s.work.join("saved")), ["renamed.txt"]);
    assert!(!s.downloads().exists());
}

#[test]
fn get_json_counts_listing_retries_in_its_totals() {
    let tmp = tempfile::tempdir().unwrap();
    let host = tmp.path().join("host");
    write(&host, "a.txt", b"a");
    let port = dead_port();
    let client = fxfer(tmp.path())
        .args([
            "get",
            "--json",
            "--retries",
            "6",
            "--port",
            &port.to_string(),
            "*.txt",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The server comes up while the client retries the listing.
    std::thread::sleep(std::time::Duration::from_millis(400));
    let mut server = fxfer(tmp.path())
        .args([
            "serve",
            "--port",
            &port.to_string(),
            "--log-file",
            "s.log",
            "--dir",
        ])
        .arg(&host)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let o = client.wait_with_output().unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert_exit(&o, 0);
    let printed = stderr(&o).matches("retrying in").count() as u64;
    assert!(printed >= 1, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["totals"]["retries"], printed, "{v}");
    assert_eq!(v["files"][0]["retries"], 0, "{v}");
}

#[test]
fn output_dash_resumes_a_broken_connection_where_the_output_stopped() {
    let data = bytes(10, 3 << 20);
    let d = data.clone();
    let s = Server::with_files(move |h| write(h, "f.bin", &d));
    // The first connection is cut after 2 MiB (of which 1 MiB made it out:
    // the client hands on whole pieces of 1 MiB).
    let p = crate::faults::proxy(s.port, None, Some(2 << 20), 1);
    let o = fxfer(&s.work)
        .args(["get", "--port", &p.port.to_string(), "-o", "-", "f.bin"])
        .output()
        .unwrap();
    assert_exit(&o, 0);
    assert!(o.stdout == data, "stdout is the whole file, once");
    assert!(stderr(&o).contains("from byte"), "{}", stderr(&o));
    let log = s.wait_log("from offset");
    assert!(
        log.lines()
            .any(|l| l.contains("sent \"f.bin\"") && !l.contains("from offset 0)")),
        "{log}"
    );
}
