//! What an attack review found: a server that serves stale digests or
//! breaks its listings on odd paths, a token that is weaker than it looks,
//! and a client that a server (or a shared download folder) can trick.

use crate::util::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// 1 MiB: large enough for the server's digest cache (small files are
/// hashed as they are read).
const BIG: usize = 1024 * 1024;

#[test]
fn a_file_rewritten_in_place_with_the_same_size_and_mtime_is_served_fresh() {
    let s = Server::with_files(|h| write(h, "big.bin", &bytes(1, BIG)));
    assert_exit(&s.get(&["big.bin"]), 0);
    // Same size, mtime set back: only the ctime (and the bytes) differ.
    let p = s.host.join("big.bin");
    let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
    std::fs::write(&p, bytes(2, BIG)).unwrap();
    let f = std::fs::File::options().write(true).open(&p).unwrap();
    f.set_times(std::fs::FileTimes::new().set_modified(mtime))
        .unwrap();
    drop(f);
    let o = s.get(&["big.bin"]);
    assert_exit(&o, 0);
    assert!(!stderr(&o).contains("mismatch"), "{}", stderr(&o));
    assert!(
        std::fs::read(s.downloads().join("big.bin")).unwrap() == bytes(2, BIG),
        "the old bytes were kept"
    );
}

/// Creates folders under `base` (relative, component by component, since
/// the whole path is longer than the kernel takes in one call) and returns
/// the relative path made.
fn deep_dirs(base: &Path, total: usize) -> String {
    use rustix::fs::{mkdirat, openat, Mode, OFlags};
    let mut fd = openat(
        rustix::fs::CWD,
        base,
        OFlags::PATH | OFlags::DIRECTORY,
        Mode::empty(),
    )
    .unwrap();
    let mut rel = String::new();
    while rel.len() < total {
        let left = total - rel.len() - usize::from(!rel.is_empty());
        let name = "d".repeat(left.min(200));
        mkdirat(&fd, name.as_str(), Mode::from_raw_mode(0o755)).unwrap();
        fd = openat(
            &fd,
            name.as_str(),
            OFlags::PATH | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        if !rel.is_empty() {
            rel.push('/');
        }
        rel.push_str(&name);
    }
    rel
}

#[test]
fn a_path_of_4096_bytes_is_left_out_and_the_rest_of_the_listing_stands() {
    let s = Server::with_files(|h| {
        write(h, "a.txt", b"alpha");
        write(h, "z/zz.txt", b"zed");
        deep_dirs(h, 4096);
    });
    let o = s.client("ls").arg("-R").output().unwrap();
    assert_exit(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("a.txt") && out.contains("z/zz.txt"), "{out}");
    assert!(
        !out.lines().any(|l| l.trim_end().len() > 4096),
        "an entry no request can name was listed"
    );
    let log = s.wait_log("cannot be served");
    assert!(log.contains("cannot be served"), "{log}");
    // Globs stand on the same listing.
    let o = s.get(&["*.txt"]);
    assert_exit(&o, 0);
    assert!(s.downloads().join("a.txt").exists());
}

fn token_file(dir: &Path, text: &str, mode: u32) -> std::path::PathBuf {
    let p = dir.join("token");
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

#[test]
fn a_blank_or_exposed_token_is_refused_and_a_short_one_warned_about() {
    let work = tempfile::tempdir().unwrap();
    let host = work.path().join("host");
    std::fs::create_dir(&host).unwrap();
    let serve = |extra: &[&str]| {
        fxfer(work.path())
            .args(["serve", "--port", "0", "--dir"])
            .arg(&host)
            .args(extra)
            .output()
            .unwrap()
    };
    // White space only: not a token at all (the client, so the test never
    // waits on a server that should not have started).
    let o = fxfer(work.path())
        .args(["ls", "--port", &dead_port().to_string()])
        .env("FXFER_TOKEN", " \t \n")
        .output()
        .unwrap();
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("FXFER_TOKEN is empty"),
        "{}",
        stderr(&o)
    );
    // Readable by everyone: refused, with the fix.
    let tf = token_file(work.path(), "a-long-enough-token-0123456789", 0o644);
    let o = serve(&["--token-file", tf.to_str().unwrap()]);
    assert_exit(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains("readable by others") && err.contains("chmod 600"),
        "{err}"
    );
    // The client is held to the same rule.
    let o = fxfer(work.path())
        .args(["ls", "--port", &dead_port().to_string(), "--token-file"])
        .arg(&tf)
        .output()
        .unwrap();
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("readable by others"), "{}", stderr(&o));
    // Short: served, with a loud warning.
    let tf = token_file(work.path(), "abc", 0o600);
    let s = Server::builder()
        .host(&host)
        .arg("--token-file")
        .arg(tf.to_str().unwrap())
        .start();
    let log = s.wait_log("only 3 bytes");
    assert!(log.contains("token is only 3 bytes"), "{log}");
    let err = s.wait_stderr("only 3 bytes");
    assert!(err.contains("token is only 3 bytes"), "{err}");
}

/// Names that try to reach the terminal: ESC, a C1 CSI, a newline, and a
/// right-to-left override.
const NASTY: [&str; 4] = [
    "esc\x1b[31mred.txt",
    "csi\u{9b}2Jclear.txt",
    "new\nline.txt",
    "rlo\u{202e}txt.exe",
];

fn assert_clean(err: &str) {
    for bad in ['\x1b', '\u{9b}', '\u{202e}', '\r'] {
        assert!(!err.contains(bad), "{bad:?} reached stderr: {err:?}");
    }
    for line in err.lines() {
        assert!(
            line.starts_with("fxfer: "),
            "a forged line: {line:?}\n{err}"
        );
    }
}

#[test]
fn names_in_notices_and_errors_reach_the_terminal_escaped() {
    let s = Server::with_files(|h| {
        for (i, n) in NASTY.iter().enumerate() {
            write(h, n, &bytes(i as u64, 100));
        }
    });
    let names: Vec<&str> = NASTY.to_vec();
    // Folders in the way of every name: each rename fails with a message
    // that names the local path.
    let blocked = s.work.join("blocked");
    for n in NASTY {
        std::fs::create_dir_all(blocked.join(n)).unwrap();
    }
    let mut args = vec!["--dir", "blocked"];
    args.extend(&names);
    let o = s.get(&args);
    assert_exit(&o, 1);
    let err = stderr(&o);
    assert_eq!(err.matches("cannot move").count(), 4, "{err}");
    assert_clean(&err);
    assert!(err.contains("esc\\u{1b}[31mred.txt"), "{err}");
    // --no-clobber names the local file it keeps.
    let kept = s.work.join("kept");
    for n in NASTY {
        write(&kept, n, b"mine");
    }
    let mut args = vec!["--dir", "kept", "-n"];
    args.extend(&names);
    let o = s.get(&args);
    assert_exit(&o, 0);
    let err = stderr(&o);
    assert_eq!(err.matches("skipped").count(), 4, "{err}");
    assert_clean(&err);
    assert!(err.contains("rlo\\u{202e}txt.exe"), "{err}");
    // The server's log lines too.
    let log = s.log_text();
    assert!(!log.contains('\x1b') && !log.contains('\u{202e}'), "{log}");
}

/// What a hostile server does with each request.
#[derive(Clone, Copy)]
enum Hostile {
    /// Answers LIST with entries and never with LIST_END.
    EndlessListing,
    /// Answers GET with a 100-byte file, one byte every 0.4 s.
    Drip,
}

fn hostile_server(mode: Hostile) -> u16 {
    use fxfer::protocol::{self, Entry, EntryKind, Hello, Request};
    use std::io::{BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming().take(8) {
            let Ok(mut w) = c else { break };
            std::thread::spawn(move || -> Option<()> {
                let mut r = BufReader::new(w.try_clone().ok()?);
                Hello::read_from(&mut r).ok()?;
                Hello::current().write_to(&mut w).ok()?;
                let req = Request::read_from(&mut r).ok()?;
                match (mode, req) {
                    (Hostile::EndlessListing, Request::List { .. }) => {
                        // At most ~1.4 GiB, if the client never gives up.
                        for batch in 0..40_000u32 {
                            let entries: Vec<Entry> = (0..500)
                                .map(|i| Entry {
                                    path: format!("{batch:08}/{i:040}"),
                                    kind: EntryKind::File,
                                    size: 1,
                                    mtime: 0,
                                    mtime_nanos: 0,
                                    mode: 0o644,
                                    digest: None,
                                })
                                .collect();
                            let mut out = Vec::new();
                            protocol::write_entries(&mut out, &entries).ok()?;
                            w.write_all(&out).ok()?;
                        }
                    }
                    (Hostile::Drip, Request::Get { .. }) => {
                        let mut out = Vec::new();
                        let header = protocol::FileHeader {
                            size: 100,
                            offset: 0,
                            mtime: 0,
                            mtime_nanos: 0,
                            mode: 0o644,
                        };
                        protocol::write_file_header(&mut out, &header).ok()?;
                        w.write_all(&out).ok()?;
                        for _ in 0..100 {
                            std::thread::sleep(std::time::Duration::from_millis(400));
                            let mut f = Vec::new();
                            protocol::write_data_header(&mut f, 1).ok()?;
                            f.push(b'x');
                            w.write_all(&f).ok()?;
                        }
                    }
                    _ => {}
                }
                Some(())
            });
        }
    });
    port
}

#[test]
fn a_listing_that_never_ends_is_capped() {
    let port = hostile_server(Hostile::EndlessListing).to_string();
    let work = tempfile::tempdir().unwrap();
    let o = fxfer(work.path())
        .args([
            "ls",
            "--plaintext",
            "--port",
            &port,
            "--max-list-entries",
            "50000",
        ])
        .output()
        .unwrap();
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("more than 50000 entries"),
        "{}",
        stderr(&o)
    );
    // Bytes too, and `get` of a pattern (which needs the listing) alike;
    // the cap can come from the config file.
    std::fs::write(
        work.path().join("fxfer.toml"),
        "[client]\nmax_list_bytes = 1000000\n",
    )
    .unwrap();
    let o = fxfer(work.path())
        .args(["get", "--plaintext", "--port", &port, "--retries", "0", "*"])
        .output()
        .unwrap();
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("more than 1000000 bytes"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_dripping_server_is_dropped_by_speed_limit_and_max_time() {
    let port = hostile_server(Hostile::Drip).to_string();
    let work = tempfile::tempdir().unwrap();
    // Each byte comes well within --timeout, so only the rate catches it.
    let get = |extra: &[&str]| {
        fxfer(work.path())
            .args([
                "get",
                "--plaintext",
                "--port",
                &port,
                "--retries",
                "0",
                "--timeout",
                "5",
            ])
            .args(extra)
            .arg("slow.bin")
            .output()
            .unwrap()
    };
    let o = get(&["--speed-limit", "100", "--speed-time", "2"]);
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("transfer too slow"), "{}", stderr(&o));
    let o = get(&["--speed-limit", "0", "--max-time", "2"]);
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("--max-time of 2s is over"),
        "{}",
        stderr(&o)
    );
    assert!(tree(&work.path().join("downloads")).is_empty());
}

#[test]
fn symlinks_planted_in_the_download_folder_lead_nothing_outside() {
    use std::os::unix::fs::symlink;
    let s = Server::with_files(|h| {
        write(h, "big.bin", &bytes(3, 2 * BIG));
        write(h, "sub/new/f.txt", b"fresh");
    });
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let dl = s.downloads();
    std::fs::create_dir_all(&dl).unwrap();
    // The resume note's name points at a file outside; the part file's
    // folder points outside.
    symlink(&victim, dl.join(fxfer::transfer::note_name("big.bin"))).unwrap();
    symlink(outside.path(), dl.join("sub")).unwrap();
    let o = s.get(&["big.bin", "sub/new/f.txt"]);
    assert_exit(&o, 1);
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(
        !outside.path().join("new").exists(),
        "a folder was made outside"
    );
    assert!(
        stderr(&o).contains("leads outside the download folder"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read(dl.join("big.bin")).unwrap(),
        bytes(3, 2 * BIG)
    );
}

#[test]
fn part_files_collide_with_no_real_file_and_fit_any_name() {
    let long = format!("{}.bin", "n".repeat(248)); // 252 bytes, a legal name
    let (l2, long2) = (long.clone(), long.clone());
    let s = Server::with_files(move |h| {
        write(h, "x.bin", &bytes(4, BIG));
        write(h, "x.bin.fxfer-part", &bytes(5, 1000));
        write(h, "x.bin.fxfer-resume", &bytes(6, 1000));
        write(h, &l2, &bytes(7, 2 * BIG));
    });
    let o = s.get(&["x.bin", "x.bin.fxfer-part", "x.bin.fxfer-resume", &long2]);
    assert_exit(&o, 0);
    let dl = s.downloads();
    assert_eq!(std::fs::read(dl.join("x.bin")).unwrap(), bytes(4, BIG));
    assert_eq!(
        std::fs::read(dl.join("x.bin.fxfer-part")).unwrap(),
        bytes(5, 1000)
    );
    assert_eq!(
        std::fs::read(dl.join("x.bin.fxfer-resume")).unwrap(),
        bytes(6, 1000)
    );
    assert_eq!(std::fs::read(dl.join(&long)).unwrap(), bytes(7, 2 * BIG));
    assert_eq!(tree(&dl).len(), 4, "{:?}", tree(&dl));
}
