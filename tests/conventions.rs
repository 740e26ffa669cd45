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
