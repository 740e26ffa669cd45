use crate::util::*;
use std::path::Path;

/// The files every get test serves: empty, big, many small, odd names.
fn corpus(host: &Path) {
    write(host, "empty.bin", b"");
    write(host, "big.bin", &bytes(7, 64 << 20));
    write(host, "with space.txt", b"spaces are fine\n");
    write(host, "naïve résumé ü.txt", &bytes(8, 3000));
    write(host, "日本語.dat", &bytes(9, 70_000));
    for i in 0..300 {
        write(
            host,
            &format!("small/{i:03}.bin"),
            &bytes(100 + i, (i as usize * 37) % 9000),
        );
    }
}

fn names() -> Vec<String> {
    let mut v: Vec<String> = [
        "empty.bin",
        "big.bin",
        "with space.txt",
        "naïve résumé ü.txt",
        "日本語.dat",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend((0..300).map(|i| format!("small/{i:03}.bin")));
    v
}

fn assert_identical(host: &Path, dl: &Path, names: &[String]) {
    for n in names {
        let a = std::fs::read(host.join(n)).unwrap();
        let b = std::fs::read(dl.join(n)).unwrap_or_else(|e| panic!("{n} missing: {e}"));
        assert!(a == b, "{n} differs ({} vs {} bytes)", a.len(), b.len());
    }
    // Nothing else: no temporary files left behind.
    assert_eq!(tree(dl).len(), names.len(), "{:?}", tree(dl));
}

#[test]
fn serial_get_delivers_identical_files() {
    let s = Server::with_files(corpus);
    let n = names();
    let o = s.client("get").args(&n).output().unwrap();
    assert_exit(&o, 0);
    assert_identical(&s.host, &s.downloads(), &n);
    let out = stdout(&o);
    assert!(out.contains("305 files downloaded"), "{out}");
    // One connection for everything.
    let log = s.wait_log("disconnected");
    assert_eq!(log.matches(": connected\n").count(), 1, "{log}");
}

#[test]
fn a_serial_get_sends_its_requests_in_batches_not_one_per_answer() {
    // Each write the client makes is a TLS record to seal and open and a
    // wake-up of the server; the window of requests is topped up 32
    // requests at a time, so 300 small files take a handful of writes,
    // not one per file.
    let s = Server::with_files(|h| {
        for i in 0..300 {
            write(h, &format!("s{i:03}.bin"), &bytes(500 + i, 100));
        }
    });
    let p = crate::util::proxy::Proxy::start(s.port, crate::util::proxy::Rules::default());
    let n: Vec<String> = (0..300).map(|i| format!("s{i:03}.bin")).collect();
    let o = fxfer(&s.work)
        .args(["get", "--port", &p.port.to_string()])
        .args(&n)
        .output()
        .unwrap();
    assert_exit(&o, 0);
    assert_identical(&s.host, &s.downloads(), &n);
    let reads = p.up_reads();
    // The handshake and greeting take a few; one write per file would be
    // well over 200.
    assert!(
        reads <= 300 / 8,
        "{reads} reads of client bytes for 300 files"
    );
}

#[test]
fn parallel_get_delivers_identical_files() {
    let s = Server::with_files(corpus);
    let n = names();
    let o = s
        .client("get")
        .arg("--parallel")
        .args(["--jobs", "4"])
        .args(&n)
        .output()
        .unwrap();
    assert_exit(&o, 0);
    assert_identical(&s.host, &s.downloads(), &n);
    // Connections are kept: --jobs of them for 305 files, not one each.
    let log = s.wait_log("disconnected");
    let n = log.matches(": connected").count();
    assert!((1..=4).contains(&n), "{n} connections: {log}");
    // The 64 MiB file is the bulk of the work: fetched in pieces of 16
    // MiB, the first of them made of the first 256 KiB (asked for before
    // its size was known) and the rest of that piece. No byte came twice.
    let sent: Vec<(u64, u64)> = log
        .lines()
        .filter_map(|l| l.split_once("sent \"big.bin\" (")?.1.split_once(')'))
        .map(|(what, _)| {
            let (n, at) = what.split_once(" bytes from offset ").unwrap();
            (at.parse().unwrap(), n.parse().unwrap())
        })
        .collect();
    assert_eq!(sent.iter().map(|p| p.1).sum::<u64>(), 64 << 20, "{log}");
    assert!(sent.contains(&(0, 256 << 10)), "{log}");
    let whole = sent.iter().filter(|p| p.1 == 16 << 20).count();
    assert_eq!(whole, 3, "{log}");
}

#[test]
fn missing_file_fails_alone_and_leaves_nothing_under_its_name() {
    let s = Server::with_files(|h| {
        write(h, "a.txt", b"a");
        write(h, "c.txt", b"c");
    });
    for mode in [&[][..], &["--parallel"][..]] {
        let _ = std::fs::remove_dir_all(s.downloads());
        let o = s
            .client("get")
            .args(mode)
            .args(["a.txt", "nope.txt", "c.txt"])
            .output()
            .unwrap();
        assert_exit(&o, 1);
        assert_eq!(tree(&s.downloads()), ["a.txt", "c.txt"], "{mode:?}");
        let err = stderr(&o);
        assert!(
            err.contains("nope.txt: no such file on the server"),
            "{err}"
        );
        assert!(stdout(&o).contains("1 failed"));
    }
}

#[test]
fn traversal_and_escaping_symlinks_are_refused_and_logged() {
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "secret.txt", b"top secret");
    let secret = outside.path().join("secret.txt");
    let s = Server::with_files(move |h| {
        write(h, "ok.txt", b"fine");
        std::os::unix::fs::symlink(&secret, h.join("escape")).unwrap();
        std::os::unix::fs::symlink("ok.txt", h.join("inside")).unwrap();
    });
    let abs = outside.path().join("secret.txt");
    let bad = [
        "../secret.txt",
        "a/../../secret.txt",
        abs.to_str().unwrap(),
        "escape",
    ];
    // The client refuses unsafe names itself; the escaping link is the
    // server's to refuse.
    let o = s.client("get").args(bad).arg("inside").output().unwrap();
    assert_exit(&o, 1);
    assert_eq!(tree(&s.downloads()), ["inside"]);
    assert_eq!(
        std::fs::read(s.downloads().join("inside")).unwrap(),
        b"fine"
    );
    let err = stderr(&o);
    assert_eq!(err.matches("refusing to save").count(), 3, "{err}");
    assert!(err.contains("escape: forbidden path"), "{err}");
    // The server refuses (and logs) every one of them on the wire too.
    use fxfer::protocol::{ErrorCode, Request, Response};
    let requests: Vec<Request> = bad.iter().map(|b| Request::get(*b)).collect();
    let mut r = session(&s, &req(&requests));
    for _ in bad {
        match Response::read_from(&mut r).unwrap() {
            Response::Error(e) => assert_eq!(e.code, ErrorCode::ForbiddenPath),
            other => panic!("{other:?}"),
        }
    }
    let log = s.wait_log("secret.txt\": forbidden");
    for b in bad {
        assert!(
            log.contains(&format!("refused GET {b:?}: forbidden path")),
            "{b} not logged:\n{log}"
        );
    }
    // The escaping link is not even listed.
    let ls = s.client("ls").output().unwrap();
    assert!(!stdout(&ls).contains("escape"));
    assert!(stdout(&ls).contains("inside"));
}

#[test]
fn download_folder_is_created_and_existing_files_are_replaced_whole() {
    let s = Server::with_files(|h| write(h, "f.txt", b"new contents"));
    let dl = s.work.join("deep/new/folder");
    let fetch = || {
        let o = s.client("get").arg("--dir").arg(&dl).arg("f.txt").output();
        assert_exit(&o.unwrap(), 0);
        assert_eq!(std::fs::read(dl.join("f.txt")).unwrap(), b"new contents");
    };
    fetch();
    std::fs::write(dl.join("f.txt"), b"old").unwrap();
    fetch();
}

#[test]
fn unwritable_download_folder_is_a_clear_error() {
    let s = Server::with_files(|h| write(h, "f.txt", b"x"));
    // A file where the folder should be.
    std::fs::write(s.work.join("blocker"), b"").unwrap();
    let o = s
        .client("get")
        .args(["--dir", "blocker/sub", "f.txt"])
        .output()
        .unwrap();
    assert_exit(&o, 1);
    let err = stderr(&o);
    assert!(
        err.contains("cannot create download folder blocker/sub"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn quiet_get_prints_nothing_on_success_and_plain_lines_otherwise() {
    let s = Server::with_files(|h| write(h, "f.txt", b"x"));
    let o = s.client("get").args(["-q", "f.txt"]).output().unwrap();
    assert_exit(&o, 0);
    assert!(o.stdout.is_empty() && o.stderr.is_empty());
    let o = s
        .client("get")
        .args(["--compare", "none", "f.txt"])
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(out.starts_with("ok      f.txt"), "{out}");
    assert!(
        !out.contains('\x1b') && !stderr(&o).contains('\x1b'),
        "escape codes in a pipe"
    );
}
