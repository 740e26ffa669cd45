//! Fetching only what changed: times and modes kept, unchanged files cost
//! no file bytes (counted through a proxy), the three ways to compare,
//! --delete's bounds, and --dry-run's promise to change nothing.

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fxfer::protocol::{self, Entry, EntryKind, ErrorCode, ErrorFrame, Hello, Request};

use crate::util::*;

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(o), stderr(o)))
}

/// The `--json` status of `name`.
fn status_of(o: &std::process::Output, name: &str) -> serde_json::Value {
    let v = json(o);
    v["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {v}"))["status"]
        .clone()
}

fn set_mtime(p: &Path, secs: i64, nanos: i64) {
    let f = std::fs::File::options().write(true).open(p).unwrap();
    let t = std::time::UNIX_EPOCH + Duration::new(secs as u64, nanos as u32);
    f.set_modified(t).unwrap();
}

fn mtime(p: &Path) -> (i64, i64) {
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.mtime(), m.mtime_nsec())
}

/// A loopback proxy that counts the bytes the server sends and, when
/// `cut_at` is set, ends every connection after that many of them.
struct Proxy {
    port: u16,
    from_server: Arc<AtomicUsize>,
}

fn proxy(server_port: u16, cut_at: Option<usize>) -> Proxy {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let from_server = Arc::new(AtomicUsize::new(0));
    let total = Arc::clone(&from_server);
    std::thread::spawn(move || {
        for c in l.incoming().take(64) {
            let Ok(client) = c else { break };
            let server = TcpStream::connect(("127.0.0.1", server_port)).unwrap();
            let (mut c_r, mut s_w) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_r, &mut s_w);
                let _ = s_w.shutdown(std::net::Shutdown::Write);
            });
            let (mut s_r, mut c_w) = (server, client);
            let total = Arc::clone(&total);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                let mut sent = 0usize;
                loop {
                    let mut k = match s_r.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => k,
                    };
                    if let Some(cut) = cut_at {
                        k = k.min(cut - sent);
                    }
                    if c_w.write_all(&buf[..k]).is_err() {
                        break;
                    }
                    total.fetch_add(k, Ordering::SeqCst);
                    sent += k;
                    if cut_at == Some(sent) {
                        break;
                    }
                }
                let _ = c_w.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    Proxy { port, from_server }
}

impl Proxy {
    fn take(&self) -> usize {
        self.from_server.swap(0, Ordering::SeqCst)
    }
}

/// Everything under `dir` that a user could notice: kinds, bytes, link
/// targets, modes and modification times.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, d: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            let what = if m.file_type().is_symlink() {
                format!("link {:?}", std::fs::read_link(&p).unwrap())
            } else if m.is_dir() {
                walk(base, &p, out);
                "dir".to_string()
            } else {
                format!("{:?}", blake3::hash(&std::fs::read(&p).unwrap()))
            };
            out.insert(
                rel,
                format!("{what} {:o} {} {}", m.mode(), m.mtime(), m.mtime_nsec()),
            );
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn small_tree(h: &Path) {
    write(h, "tree/a.txt", b"alpha");
    write(h, "tree/sub/b.bin", &bytes(1, 300_000));
    write(h, "tree/sub/deeper/c.txt", b"gamma");
    write(h, "tree/big.bin", &bytes(2, 5 << 20));
}

#[test]
fn times_and_executable_bits_are_kept_for_files_and_folders() {
    let s = Server::with_files(|h| {
        small_tree(h);
        write(h, "tree/run.sh", b"#!/bin/sh\necho hi\n");
        let perm = |p: &str, m: u32| {
            std::fs::set_permissions(h.join(p), std::fs::Permissions::from_mode(m)).unwrap()
        };
        perm("tree/run.sh", 0o4755);
        perm("tree/a.txt", 0o600);
        set_mtime(&h.join("tree/run.sh"), 1_600_000_000, 123_456_789);
        set_mtime(&h.join("tree/big.bin"), 1_500_000_000, 5);
        for (d, t) in [
            ("tree/sub/deeper", 1_400_000_000),
            ("tree/sub", 1_400_000_001),
        ] {
            let f = std::fs::File::open(h.join(d)).unwrap();
            f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(t))
                .unwrap();
        }
    });
    for mode in [&[][..], &["--parallel"][..]] {
        let dir = s.work.join(format!("dl{}", mode.len()));
        let o = s
            .client("get")
            .arg("--dir")
            .arg(&dir)
            .args(mode)
            .args(["-r", "tree"])
            .output()
            .unwrap();
        assert_exit(&o, 0);
        let d = dir.join("tree");
        assert_eq!(mtime(&d.join("run.sh")), (1_600_000_000, 123_456_789));
        assert_eq!(mtime(&d.join("big.bin")), (1_500_000_000, 5));
        for f in ["a.txt", "sub/b.bin", "sub/deeper/c.txt"] {
            assert_eq!(
                mtime(&d.join(f)),
                mtime(&s.host.join("tree").join(f)),
                "{f}"
            );
        }
        // Folders get their times after their contents are in place.
        assert_eq!(mtime(&d.join("sub/deeper")), (1_400_000_000, 0));
        assert_eq!(mtime(&d.join("sub")), (1_400_000_001, 0));
        assert_eq!(mtime(&d), mtime(&s.host.join("tree")));
        // Executable bits travel, set-uid never; the umask decides the rest.
        let mode = |f: &str| std::fs::metadata(d.join(f)).unwrap().mode() & 0o7777;
        assert_eq!(mode("run.sh") & 0o7000, 0);
        assert_eq!(mode("run.sh") & 0o111, 0o111 & !0o022);
        assert_eq!(mode("a.txt") & 0o111, 0);
        assert_eq!(mode("sub/b.bin") & 0o111, 0);
    }
}

#[test]
fn an_unchanged_rerun_sends_no_file_bytes() {
    let s = Server::builder().files(small_tree).arg("-v").start();
    let p = proxy(s.port, None);
    let get = |extra: &[&str]| {
        let o = fxfer(&s.work)
            .args(["get", "--port", &p.port.to_string(), "--json", "-r", "tree"])
            .args(extra)
            .output()
            .unwrap();
        assert_exit(&o, 0);
        json(&o)
    };
    let first = get(&[]);
    assert_eq!(first["totals"]["ok"], 4);
    let full = p.take();
    assert!(full > 5 << 20, "{full}");
    for extra in [&[][..], &["--update"], &["--checksum"], &["--parallel"]] {
        let v = get(extra);
        let wire = p.take();
        assert_eq!(v["totals"]["unchanged"], 4, "{extra:?}: {v}");
        assert_eq!(v["totals"]["ok"], 0, "{extra:?}");
        assert_eq!(v["totals"]["bytes"], 0, "{extra:?}");
        for f in v["files"].as_array().unwrap() {
            assert_eq!(f["status"], "unchanged", "{extra:?}: {f}");
        }
        // A listing, with digests unless --update: far less than a file.
        assert!(wire < 2_000, "{extra:?}: {wire} bytes from the server");
    }
    assert_eq!(
        s.log_text().matches(": sent ").count(),
        4,
        "{}",
        s.log_text()
    );
    // One file changed: only it crosses the wire.
    write(&s.host, "tree/sub/b.bin", &bytes(3, 300_001));
    let v = get(&["--update"]);
    assert_eq!(v["totals"]["ok"], 1);
    assert_eq!(v["totals"]["unchanged"], 3);
    let wire = p.take();
    assert!((300_001..300_001 + 2_000).contains(&wire), "{wire}");
    assert_eq!(
        std::fs::read(s.downloads().join("tree/sub/b.bin")).unwrap(),
        bytes(3, 300_001)
    );
}

#[test]
fn a_change_keeping_size_and_time_is_caught_by_checksum_not_by_update() {
    let s = Server::with_files(|h| {
        write(h, "f.txt", b"version one");
        write(h, "g.txt", b"same here");
    });
    let dl = s.downloads();
    assert_exit(&s.get(&["f.txt", "g.txt"]), 0);
    // Rewritten on the server with the same size, then its time put back.
    let before = mtime(&s.host.join("f.txt"));
    std::fs::write(s.host.join("f.txt"), b"version two").unwrap();
    set_mtime(&s.host.join("f.txt"), before.0, before.1);
    let status = |o: &std::process::Output| status_of(o, "f.txt");
    // --update trusts size and time: the stale copy stays (as documented).
    let o = s.get(&["--json", "--update", "f.txt", "g.txt"]);
    assert_exit(&o, 0);
    assert_eq!(status(&o), "unchanged");
    assert_eq!(std::fs::read(dl.join("f.txt")).unwrap(), b"version one");
    // --checksum, and the default, compare content.
    for flags in [&["--checksum"][..], &[]] {
        std::fs::write(dl.join("f.txt"), b"version one").unwrap();
        set_mtime(&dl.join("f.txt"), before.0, before.1);
        let o = s.get(&[&["--json"][..], flags, &["f.txt", "g.txt"]].concat());
        assert_exit(&o, 0);
        assert_eq!(status(&o), "ok", "{flags:?}");
        assert_eq!(status_of(&o, "g.txt"), "unchanged", "{flags:?}");
        assert_eq!(std::fs::read(dl.join("f.txt")).unwrap(), b"version two");
    }
    // A copy touched locally: the default fetches it again, --checksum sees
    // the same content and only puts the server's time back.
    set_mtime(&dl.join("g.txt"), 1_000, 0);
    let o = s.get(&["--json", "--checksum", "g.txt"]);
    assert_eq!(status_of(&o, "g.txt"), "unchanged");
    assert_eq!(mtime(&dl.join("g.txt")), mtime(&s.host.join("g.txt")));
    set_mtime(&dl.join("g.txt"), 1_000, 0);
    let o = s.get(&["--json", "g.txt"]);
    assert_eq!(status_of(&o, "g.txt"), "ok");
    // The config key sets the default.
    std::fs::write(
        s.work.join("fxfer.toml"),
        "[client]\ncompare = \"update\"\n",
    )
    .unwrap();
    set_mtime(&s.host.join("f.txt"), before.0, before.1);
    std::fs::write(dl.join("f.txt"), b"version one").unwrap();
    set_mtime(&dl.join("f.txt"), before.0, before.1);
    let o = s.get(&["--json", "f.txt"]);
    assert_eq!(status(&o), "unchanged");
}

#[test]
fn delete_removes_exactly_the_extras_and_nothing_outside() {
    let s = Server::with_files(small_tree);
    let dl = s.downloads();
    assert_exit(&s.get(&["-r", "tree"]), 0);
    let outside = s.work.join("outside");
    write(&outside, "precious.txt", b"keep me");
    write(&dl, "tree/extra.txt", b"x");
    write(&dl, "tree/old/gone.txt", b"x");
    write(&dl, "tree/.mine", b"dot-files stay");
    write(&dl, "not-mirrored.txt", b"outside the named folder");
    std::os::unix::fs::symlink(&outside, dl.join("tree/link-out")).unwrap();
    // A folder the server has, replaced locally by a link out: not followed.
    std::fs::remove_dir_all(dl.join("tree/sub/deeper")).unwrap();
    std::os::unix::fs::symlink(&outside, dl.join("tree/sub/deeper")).unwrap();
    let o = s.get(&["--json", "-r", "--delete", "tree"]);
    let v = json(&o);
    let mut deleted: Vec<&str> = v["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    deleted.sort();
    assert_eq!(
        deleted,
        [
            "tree/extra.txt",
            "tree/link-out",
            "tree/old",
            "tree/old/gone.txt"
        ]
    );
    assert_eq!(v["totals"]["deleted"], 4);
    assert!(!dl.join("tree/extra.txt").exists() && !dl.join("tree/old").exists());
    assert!(std::fs::symlink_metadata(dl.join("tree/link-out")).is_err());
    assert_eq!(
        std::fs::read(outside.join("precious.txt")).unwrap(),
        b"keep me"
    );
    assert_eq!(tree(&outside), ["precious.txt"]);
    assert!(dl.join("tree/.mine").exists() && dl.join("not-mirrored.txt").exists());
    // Refusing to write through the planted link is this run's one failure.
    assert_exit(&o, 1);
    assert!(stderr(&o).contains("deeper"), "{}", stderr(&o));
    // The whole server ("." with -r) mirrors the download folder itself.
    std::fs::remove_file(dl.join("tree/sub/deeper")).unwrap();
    let o = s.get(&["-r", "--delete", "."]);
    assert_exit(&o, 0);
    assert!(!dl.join("not-mirrored.txt").exists() && dl.join("tree/.mine").exists());
    // --delete needs -r.
    assert_exit(&s.get(&["--delete", "tree"]), 2);
}

/// A server whose listing breaks off: one ENTRIES frame of `names`, then
/// an ERROR frame instead of the rest.
fn server_failing_mid_listing(names: &'static [&'static str]) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming().take(4) {
            let Ok(c) = c else { break };
            let _ = (|| -> Result<(), Box<dyn std::error::Error>> {
                c.set_read_timeout(Some(Duration::from_secs(10)))?;
                let mut r = BufReader::new(c.try_clone()?);
                let mut w = c;
                Hello::read_from(&mut r)?;
                Hello::current().write_to(&mut w)?;
                while let Request::List { .. } = Request::read_from(&mut r)? {
                    let entries: Vec<Entry> = names
                        .iter()
                        .map(|n| Entry {
                            path: n.to_string(),
                            kind: if n.contains('.') {
                                EntryKind::File
                            } else {
                                EntryKind::Dir
                            },
                            size: 1,
                            mtime: 0,
                            mtime_nanos: 0,
                            mode: 0o644,
                            digest: None,
                        })
                        .collect();
                    let mut out = Vec::new();
                    protocol::write_entries(&mut out, &entries)?;
                    protocol::write_error(
                        &mut out,
                        &ErrorFrame::new(ErrorCode::Internal, "server cannot read it: I/O error"),
                    )?;
                    w.write_all(&out)?;
                }
                Ok(())
            })();
        }
    });
    port
}

#[test]
fn delete_removes_nothing_when_the_listing_fails_midway() {
    let s = Server::with_files(small_tree);
    let dl = s.downloads();
    assert_exit(&s.get(&["-r", "tree"]), 0);
    write(
        &dl,
        "tree/extra.txt",
        b"only the listing's end would say to delete me",
    );
    let before = snapshot(&dl);
    // A server answering with part of a listing and then an error.
    let port = server_failing_mid_listing(&["tree", "tree/a.txt"]);
    let o = fxfer(&s.work)
        .args(["get", "--port", &port.to_string(), "-r", "--delete", "tree"])
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("nothing was deleted"), "{}", stderr(&o));
    assert_eq!(snapshot(&dl), before);
    // The real server, its listing cut off in the middle by the network.
    let host = s.host.clone();
    for i in 0..3000 {
        write(
            &host,
            &format!("tree/many/{i:04}-with-a-longish-name.txt"),
            b"m",
        );
    }
    let p = proxy(s.port, Some(40_000));
    let o = fxfer(&s.work)
        .args([
            "get",
            "--port",
            &p.port.to_string(),
            "--retries",
            "1",
            "-r",
            "--delete",
            "tree",
        ])
        .output()
        .unwrap();
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("nothing was deleted"), "{}", stderr(&o));
    assert_eq!(snapshot(&dl), before);
}

#[test]
fn dry_run_reports_everything_and_changes_nothing() {
    let s = Server::with_files(small_tree);
    let dl = s.downloads();
    // No download folder yet: a dry run does not create it.
    let o = s.get(&["--dry-run", "--json", "-r", "tree"]);
    assert_exit(&o, 0);
    let v = json(&o);
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["totals"]["would_fetch"], 4);
    assert!(!dl.exists());
    assert_exit(&s.get(&["-r", "tree"]), 0);
    write(&s.host, "tree/a.txt", b"alpha, changed");
    write(&dl, "tree/extra.txt", b"x");
    write(
        &dl,
        "tree/sub/b.bin.fxfer-part",
        b"partial of something else",
    );
    std::fs::write(dl.join("tree/sub/deeper/c.txt"), b"gamme").unwrap();
    let before = snapshot(&dl);
    let o = s.get(&["--dry-run", "--json", "-r", "--delete", "tree"]);
    assert_exit(&o, 0);
    let v = json(&o);
    let status = |name: &str| {
        v["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status("tree/a.txt"), "would_fetch");
    assert_eq!(status("tree/sub/deeper/c.txt"), "would_fetch");
    assert_eq!(status("tree/big.bin"), "unchanged");
    assert_eq!(v["deleted"][0]["path"], "tree/extra.txt");
    assert_eq!(v["totals"]["bytes"], 0);
    assert_eq!(snapshot(&dl), before, "a dry run changed the disk");
    // The same without --json: one line each, and a summary.
    let o = s.get(&["--dry-run", "-r", "--delete", "tree"]);
    let out = stdout(&o);
    assert!(out.contains("fetch   tree/a.txt"), "{out}");
    assert!(out.contains("unchanged tree/big.bin"), "{out}");
    assert!(out.contains("delete  tree/extra.txt"), "{out}");
    assert!(
        out.contains("dry run, nothing changed: 2 files to fetch"),
        "{out}"
    );
    assert_eq!(snapshot(&dl), before);
    // A plain name, and one the server lacks.
    let o = s.get(&["--dry-run", "--json", "tree/a.txt", "nope.txt"]);
    assert_exit(&o, 1);
    let v = json(&o);
    assert_eq!(v["files"][0]["status"], "would_fetch");
    assert_eq!(v["files"][1]["status"], "failed");
    assert_eq!(snapshot(&dl), before);
}

#[test]
fn a_single_file_lists_as_its_own_entry() {
    let s = Server::with_files(|h| write(h, "dir/f.txt", b"12345"));
    let o = s
        .client("ls")
        .args(["--json", "dir/f.txt"])
        .output()
        .unwrap();
    assert_exit(&o, 0);
    let v = json(&o);
    assert_eq!(v[0]["name"], "dir/f.txt");
    assert_eq!(v[0]["size"], 5);
}

#[test]
fn delete_removes_our_leftovers_of_files_the_server_no_longer_has() {
    use fxfer::transfer::{note_name, part_name};
    use std::os::fd::AsRawFd;
    let s = Server::with_files(small_tree);
    let dl = s.downloads();
    assert_exit(&s.get(&["-r", "tree"]), 0);
    // A resumable partial download of a file the server no longer has,
    // one of a file it still lists, one another download is writing, and
    // dot-files that only look alike.
    let gone = [
        format!("tree/{}", part_name("gone.bin")),
        format!("tree/{}", note_name("gone.bin")),
        format!("tree/sub/{}", part_name("old.txt")),
    ];
    let kept = [
        format!("tree/sub/{}", part_name("b.bin")),
        format!("tree/sub/{}", note_name("b.bin")),
        format!("tree/{}", part_name("busy.bin")),
        format!("tree/{}", note_name("busy.bin")),
        "tree/.gone.bin.fxfer-part".to_string(),
        "tree/.mine".to_string(),
    ];
    for f in gone.iter().chain(&kept) {
        write(&dl, f, b"partial");
    }
    let busy = std::fs::File::open(dl.join(&kept[2])).unwrap();
    let held = unsafe { libc::flock(busy.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(held, 0);
    let before = snapshot(&dl);
    let deleted = |v: &serde_json::Value| {
        let mut d: Vec<String> = v["deleted"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                assert_eq!(d["kind"], "file", "{d}");
                d["path"].as_str().unwrap().to_string()
            })
            .collect();
        d.sort();
        d
    };
    let mut want: Vec<String> = gone.to_vec();
    want.sort();
    let o = s.get(&["--dry-run", "--json", "-r", "--delete", "tree"]);
    assert_exit(&o, 0);
    assert_eq!(deleted(&json(&o)), want);
    assert_eq!(snapshot(&dl), before, "a dry run changed the disk");
    let o = s.get(&["--dry-run", "-r", "--delete", "tree"]);
    assert!(
        stdout(&o).contains(&format!("delete  {}", gone[0])),
        "{}",
        stdout(&o)
    );
    // Without --delete they stay; the partial copy of b.bin, a version
    // already here, goes as on any re-run.
    assert_exit(&s.get(&["-r", "tree"]), 0);
    for f in &gone {
        assert!(dl.join(f).exists(), "{f} was removed");
    }
    for f in &kept[..2] {
        assert!(!dl.join(f).exists(), "{f} stayed");
    }
    let o = s.get(&["--json", "-r", "--delete", "tree"]);
    assert_exit(&o, 0);
    assert_eq!(deleted(&json(&o)), want);
    for f in &gone {
        assert!(std::fs::symlink_metadata(dl.join(f)).is_err(), "{f} stayed");
    }
    for f in &kept[2..] {
        assert!(dl.join(f).exists(), "{f} was removed");
    }
    drop(busy);
    // Once nobody writes it, the leftover of busy.bin goes too.
    let o = s.get(&["--json", "-r", "--delete", "tree"]);
    let mut want = vec![kept[2].clone(), kept[3].clone()];
    want.sort();
    assert_eq!(deleted(&json(&o)), want);
}

#[test]
fn json_lists_files_in_the_order_asked_whatever_the_order_they_finish() {
    let s = Server::with_files(|h| {
        write(h, "a-small.txt", b"small, settled with the last batch");
        write(h, "b-large.bin", &bytes(4, 2 << 20));
        write(h, "c-small.txt", b"also small");
        write(h, "d/x.txt", b"x");
        write(h, "d/y.bin", &bytes(5, 2 << 20));
        write(h, "d/z.txt", b"z");
    });
    let names = [
        "c-small.txt",
        "a-small.txt",
        "missing.txt",
        "b-large.bin",
        "d",
    ];
    let want = [
        "c-small.txt",
        "a-small.txt",
        "missing.txt",
        "b-large.bin",
        "d/x.txt",
        "d/y.bin",
        "d/z.txt",
    ];
    for extra in [&[][..], &["--parallel"], &["--dry-run"]] {
        std::fs::remove_dir_all(s.downloads()).ok();
        let o = s
            .client("get")
            .args(["--json", "-r"])
            .args(extra)
            .args(names)
            .output()
            .unwrap();
        // Without a download folder, a dry run cannot tell that the
        // server lacks missing.txt.
        assert_exit(&o, if extra == ["--dry-run"] { 0 } else { 1 });
        let v = json(&o);
        let got: Vec<&str> = v["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(got, want, "{extra:?}");
    }
}
