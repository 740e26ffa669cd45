use crate::util::*;
use fxfer::protocol::{ErrorCode, Request, Response};
use fxfer::transfer::{note_name, part_name};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIG: usize = 256 << 20;

/// Waits (bounded) until `cond` holds.
fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

fn size_of(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Writes the note that makes the part file of `dl/NAME` resumable against the
/// server's current `host/NAME`.
fn resume_note(dl: &Path, host: &Path, name: &str) {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(host.join(name)).unwrap();
    std::fs::write(
        dl.join(note_name(name)),
        format!(
            "fxfer-resume 1\n{} {} {}\n",
            md.len(),
            md.mtime(),
            md.mtime_nsec()
        ),
    )
    .unwrap();
}

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

#[test]
fn server_killed_mid_file_then_rerun_resumes_and_sends_only_the_rest() {
    let mut s1 = Server::with_files(|h| write(h, "big.bin", &bytes(21, BIG)));
    let dl = s1.work.join("dl");
    let part = dl.join(part_name("big.bin"));
    let client = s1
        .client("get")
        .args(["--retries", "1", "--dir", "dl", "big.bin"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || size_of(&part) > 16 << 20),
        "download never got going"
    );
    s1.child.kill().unwrap(); // SIGKILL
    let _ = s1.child.wait();
    let out = client.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        !dl.join("big.bin").exists(),
        "no final file after a failed download"
    );
    let have = size_of(&part);
    assert!(have > 0 && (have as usize) < BIG, "partial kept: {have}");
    assert!(dl.join(note_name("big.bin")).exists());

    // A new server on the same folder; the rerun resumes.
    let s2 = Server::builder().host(&s1.host).start();
    let o = fxfer(&s1.work)
        .args([
            "get",
            "--json",
            "--dir",
            "dl",
            "--port",
            &s2.port.to_string(),
            "big.bin",
        ])
        .output()
        .unwrap();
    assert_exit(&o, 0);
    let v = json(&o);
    let f = &v["files"][0];
    let from = f["resumed_from"].as_u64().unwrap();
    assert!(from > 0 && from <= have, "resumed from {from}, had {have}");
    assert_eq!(f["bytes"].as_u64().unwrap(), BIG as u64 - from);
    let got = std::fs::read(dl.join("big.bin")).unwrap();
    assert!(got == bytes(21, BIG), "resumed file differs");
    assert_eq!(
        f["digest"].as_str().unwrap(),
        format!("blake3:{}", blake3::hash(&got).to_hex())
    );
    assert!(!part.exists() && !dl.join(note_name("big.bin")).exists());
    let log = s2.wait_log("sent \"big.bin\"");
    assert!(
        log.contains(&format!("({} bytes from offset {from})", BIG as u64 - from)),
        "{log}"
    );
}

#[test]
fn changed_source_restarts_a_resume_from_zero() {
    let s = Server::with_files(|h| write(h, "f.bin", &bytes(1, 4 << 20)));
    let dl = s.work.join("downloads");
    std::fs::create_dir_all(&dl).unwrap();
    // A partial copy of an older version of the file.
    std::fs::write(dl.join(part_name("f.bin")), bytes(2, 1 << 20)).unwrap();
    std::fs::write(dl.join(note_name("f.bin")), "fxfer-resume 1\n4194304 1 0\n").unwrap();
    let o = s.get(&["--json", "f.bin"]);
    assert_exit(&o, 0);
    assert_eq!(json(&o)["files"][0]["resumed_from"], 0);
    assert!(std::fs::read(dl.join("f.bin")).unwrap() == bytes(1, 4 << 20));
    // --no-resume ignores a matching partial too.
    std::fs::write(dl.join(part_name("f.bin")), bytes(1, 1 << 20)).unwrap();
    let o = s.get(&["--json", "--no-resume", "f.bin"]);
    assert_exit(&o, 0);
    assert_eq!(json(&o)["files"][0]["resumed_from"], 0);
    assert_eq!(tree(&dl), ["f.bin"], "no partial lingers");
}

#[test]
fn a_file_too_small_to_resume_clears_the_partial_of_its_larger_past() {
    // Listed (a pattern), so the client knows the file is small and never
    // looks for its note; the leftover part and note must still go.
    let s = Server::with_files(|h| write(h, "f.bin", &bytes(3, 8 << 10)));
    let dl = s.work.join("downloads");
    std::fs::create_dir_all(&dl).unwrap();
    std::fs::write(dl.join(part_name("f.bin")), bytes(2, 1 << 20)).unwrap();
    std::fs::write(dl.join(note_name("f.bin")), "fxfer-resume 1\n4194304 1 0\n").unwrap();
    for extra in [&[][..], &["--parallel", "-j", "2"][..]] {
        let o = s.get(&[extra, &["--json", "f*"]].concat());
        assert_exit(&o, 0);
        assert_eq!(json(&o)["files"][0]["resumed_from"], 0);
        assert!(std::fs::read(dl.join("f.bin")).unwrap() == bytes(3, 8 << 10));
        assert_eq!(tree(&dl), ["f.bin"], "no partial lingers");
        std::fs::remove_file(dl.join("f.bin")).unwrap();
        std::fs::write(dl.join(part_name("f.bin")), bytes(2, 1 << 20)).unwrap();
        std::fs::write(dl.join(note_name("f.bin")), "fxfer-resume 1\n4194304 1 0\n").unwrap();
    }
}

/// A TCP proxy between client and server that damages the server's
/// answers: flips one byte in every `flip.0` bytes of the first `flip.1`
/// bytes, or ends the stream
/// after `cut_at` bytes. Only the first `bad_conns` connections are damaged.
/// A proxy in front of a server that can flip bits in, or cut, what the
/// server sends on its first `bad_conns` connections.
pub(crate) struct Proxy {
    pub port: u16,
    pub conns: Arc<AtomicUsize>,
}

pub(crate) fn proxy(
    server_port: u16,
    flip: Option<(usize, usize)>,
    cut_at: Option<usize>,
    bad_conns: usize,
) -> Proxy {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let conns = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&conns);
    std::thread::spawn(move || {
        for c in l.incoming().take(16) {
            let Ok(client) = c else { break };
            let n = count.fetch_add(1, Ordering::SeqCst);
            let bad = n < bad_conns;
            let server = TcpStream::connect(("127.0.0.1", server_port)).unwrap();
            let (mut c_r, mut s_w) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_r, &mut s_w);
                let _ = s_w.shutdown(std::net::Shutdown::Write);
            });
            let (mut s_r, mut c_w) = (server, client);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                let mut pos = 0usize;
                loop {
                    let k = match s_r.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => k,
                    };
                    let mut end = k;
                    if bad {
                        if let Some((every, until)) = flip {
                            for (i, b) in buf[..k].iter_mut().enumerate() {
                                if pos + i < until && (pos + i) % every == every - 1 {
                                    *b ^= 0x01;
                                }
                            }
                        }
                        if let Some(cut) = cut_at {
                            if pos + k >= cut {
                                end = cut - pos;
                                let _ = c_w.write_all(&buf[..end]);
                                break;
                            }
                        }
                    }
                    if c_w.write_all(&buf[..end]).is_err() {
                        break;
                    }
                    pos += k;
                }
                let _ = c_w.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    Proxy { port, conns }
}

#[test]
fn corrupted_bytes_are_caught_and_never_renamed_into_place() {
    // Without TLS (which would catch the damage first), the digest does.
    let s = Server::builder()
        .plaintext()
        .files(|h| write(h, "f.bin", &bytes(5, 3 << 20)))
        .start();
    // Damaged on every connection: fails after one fresh retry.
    let p = proxy(s.port, Some((1 << 20, usize::MAX)), None, usize::MAX);
    let o = fxfer(&s.work)
        .args([
            "get",
            "--plaintext",
            "--json",
            "--port",
            &p.port.to_string(),
            "f.bin",
        ])
        .output()
        .unwrap();
    assert_exit(&o, 1);
    let v = json(&o);
    assert!(
        v["files"][0]["error"]
            .as_str()
            .unwrap()
            .contains("digest mismatch"),
        "{v}"
    );
    assert_eq!(v["files"][0]["retries"], 1);
    assert!(
        tree(&s.downloads()).is_empty(),
        "{:?}",
        tree(&s.downloads())
    );
    assert_eq!(p.conns.load(Ordering::SeqCst), 1);

    // Damaged only in the first answer: the fresh retry gets clean bytes.
    let p = proxy(s.port, Some((2 << 20, 3 << 20)), None, 1);
    let o = fxfer(&s.work)
        .args([
            "get",
            "--plaintext",
            "--json",
            "--port",
            &p.port.to_string(),
            "f.bin",
        ])
        .output()
        .unwrap();
    assert_exit(&o, 0);
    assert_eq!(json(&o)["files"][0]["retries"], 1);
    assert!(std::fs::read(s.downloads().join("f.bin")).unwrap() == bytes(5, 3 << 20));
}

#[test]
fn truncated_stream_is_retried_and_resumed() {
    let s = Server::with_files(|h| write(h, "f.bin", &bytes(6, 8 << 20)));
    // The first two connections end after ~3 MiB; the third gets through.
    let p = proxy(s.port, None, Some(3 << 20), 2);
    let o = fxfer(&s.work)
        .args([
            "get",
            "--json",
            "--retries",
            "3",
            "--port",
            &p.port.to_string(),
            "f.bin",
        ])
        .output()
        .unwrap();
    assert_exit(&o, 0);
    let v = json(&o);
    assert_eq!(v["files"][0]["retries"], 2, "{v}");
    assert!(v["files"][0]["resumed_from"].as_u64().unwrap() > 0, "{v}");
    assert!(std::fs::read(s.downloads().join("f.bin")).unwrap() == bytes(6, 8 << 20));
    assert!(
        stderr(&o).matches("retrying in").count() == 2,
        "{}",
        stderr(&o)
    );

    // With no retries allowed, a cut stream fails cleanly and keeps the part.
    let _ = std::fs::remove_dir_all(s.downloads());
    let p = proxy(s.port, None, Some(3 << 20), usize::MAX);
    let o = fxfer(&s.work)
        .args([
            "get",
            "--retries",
            "0",
            "--port",
            &p.port.to_string(),
            "f.bin",
        ])
        .output()
        .unwrap();
    // Every failure was the connection's: exit 3.
    assert_exit(&o, 3);
    assert!(!s.downloads().join("f.bin").exists());
    assert!(s.downloads().join(part_name("f.bin")).exists());
}

/// Reads a GET's answer slowly so the server is mid-send; `mutate` runs
/// then. The answer must not end in a clean END.
fn source_change_is_detected(mutate: impl FnOnce(&Path)) {
    let s = Server::with_files(|h| write(h, "f.bin", &bytes(8, 64 << 20)));
    let mut r = session(&s, &req(&[Request::get("f.bin")]));
    assert!(matches!(
        Response::read_from(&mut r).unwrap(),
        Response::File(_)
    ));
    let mut sink = vec![0u8; 1 << 20];
    r.read_exact(&mut sink).unwrap();
    // Give the server time to fill the socket buffers, then change the file.
    std::thread::sleep(Duration::from_millis(200));
    mutate(&s.host.join("f.bin"));
    let verdict = loop {
        match Response::read_from(&mut r) {
            Ok(Response::Data { len }) => {
                let mut left = len as usize;
                while left > 0 {
                    let n = left.min(sink.len());
                    if r.read_exact(&mut sink[..n]).is_err() {
                        break;
                    }
                    left -= n;
                }
            }
            Ok(Response::End(_)) => break "clean end",
            Ok(Response::Error(e)) => {
                assert_eq!(e.code, ErrorCode::SourceChanged, "{e}");
                break "error frame";
            }
            Ok(other) => panic!("{other:?}"),
            Err(_) => break "connection closed",
        }
    };
    assert_ne!(
        verdict, "clean end",
        "a changed file was delivered as complete"
    );
}

#[test]
fn source_truncated_while_sent_is_detected() {
    source_change_is_detected(|p| {
        let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
        f.set_len(8 << 20).unwrap();
    });
}

#[test]
fn source_rewritten_while_sent_is_detected() {
    source_change_is_detected(|p| {
        // Same size, new content and modification time.
        std::thread::sleep(Duration::from_millis(20));
        let mut f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
        f.write_all(&bytes(9, 1 << 20)).unwrap();
    });
}

/// A small filesystem mounted for one test (root only); unmounted on drop.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, opts: &str) -> Option<Mount> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mount(dir.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn full_disk_is_a_clear_error_and_leaves_nothing() {
    let s = Server::with_files(|h| {
        write(h, "big.bin", &bytes(3, 4 << 20));
        write(h, "small.txt", b"fits");
    });
    let dir = s.work.join("tiny");
    let Some(_m) = Mount::tmpfs(&dir, "size=1m") else {
        eprintln!("skipping: cannot mount a tmpfs here (needs root)");
        return;
    };
    // Serially: the big file fails alone, the small one after it fits.
    let o = s
        .client("get")
        .args(["--dir", "tiny", "big.bin", "small.txt"])
        .output()
        .unwrap();
    assert_exit(&o, 1);
    let err = stderr(&o);
    assert!(err.contains("big.bin: cannot write"), "{err}");
    assert!(
        err.contains(&format!(
            "{}: no space left on device",
            part_name("big.bin")
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(tree(&dir), ["small.txt"], "only the file that fit");
    std::fs::remove_file(dir.join("small.txt")).unwrap();
    // In parallel: whatever fails, nothing incomplete is left behind.
    let o = s
        .client("get")
        .args(["--parallel", "--dir", "tiny", "big.bin", "small.txt"])
        .output()
        .unwrap();
    assert_exit(&o, 1);
    assert!(stderr(&o).contains("no space left on device"));
    assert!(!dir.join("big.bin").exists());
    assert!(
        tree(&dir).iter().all(|f| f == "small.txt"),
        "{:?}",
        tree(&dir)
    );
}

#[test]
fn read_only_download_folder_is_a_clear_error() {
    let s = Server::with_files(|h| write(h, "f.txt", b"x"));
    let dir = s.work.join("ro");
    let mount = Mount::tmpfs(&dir, "ro,size=1m");
    if mount.is_none() {
        std::fs::create_dir_all(&dir).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    let o = s
        .client("get")
        .args(["--dir", "ro", "f.txt"])
        .output()
        .unwrap();
    assert_exit(&o, 1);
    let err = stderr(&o);
    assert!(
        err.contains("cannot create") && err.contains(&format!("ro/{}", part_name("f.txt"))),
        "{err}"
    );
    assert!(
        err.contains("read-only file system") || err.contains("permission denied"),
        "{err}"
    );
    assert!(!dir.join("f.txt").exists());
}

#[test]
fn client_killed_mid_parallel_run_then_rerun_completes_everything() {
    let n = 24;
    let s = Server::with_files(move |h| {
        for i in 0..n {
            write(h, &format!("f{i:02}.bin"), &bytes(100 + i as u64, 6 << 20));
        }
    });
    let names: Vec<String> = (0..n).map(|i| format!("f{i:02}.bin")).collect();
    let mut client = s
        .client("get")
        .args(["--parallel", "--jobs", "4"])
        .args(&names)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let dl = s.downloads();
    wait_until(Duration::from_secs(30), || {
        std::fs::read_dir(&dl)
            .map(|d| d.count() >= 6)
            .unwrap_or(false)
    });
    client.kill().unwrap();
    let _ = client.wait();
    let o = s
        .client("get")
        .args(["--parallel", "--jobs", "4", "--json"])
        .args(&names)
        .output()
        .unwrap();
    assert_exit(&o, 0);
    for (i, name) in names.iter().enumerate() {
        let got = std::fs::read(dl.join(name)).unwrap();
        assert!(got == bytes(100 + i as u64, 6 << 20), "{name} differs");
    }
    assert_eq!(tree(&dl), names, "no partial files linger");
}

#[test]
fn no_clobber_keeps_existing_files_and_reports_them_skipped() {
    let s = Server::with_files(|h| {
        write(h, "a.txt", b"server a");
        write(h, "b.txt", b"server b");
    });
    std::fs::create_dir_all(s.downloads()).unwrap();
    std::fs::write(s.downloads().join("a.txt"), b"mine").unwrap();
    let o = s.get(&["--json", "--no-clobber", "a.txt", "b.txt"]);
    assert_exit(&o, 0);
    let v = json(&o);
    assert_eq!(v["files"][0]["status"], "skipped");
    assert_eq!(v["totals"]["skipped"], 1);
    assert_eq!(std::fs::read(s.downloads().join("a.txt")).unwrap(), b"mine");
    assert_eq!(
        std::fs::read(s.downloads().join("b.txt")).unwrap(),
        b"server b"
    );
    // Without it, the existing file is replaced.
    assert_exit(&s.get(&["a.txt"]), 0);
    assert_eq!(
        std::fs::read(s.downloads().join("a.txt")).unwrap(),
        b"server a"
    );
}

#[test]
fn stalled_server_times_out_instead_of_hanging() {
    // A listener that accepts and then says nothing.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let held = std::thread::spawn(move || {
        let mut keep = Vec::new();
        for c in l.incoming().take(2) {
            keep.push(c);
        }
        std::thread::sleep(Duration::from_secs(5));
    });
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let o = fxfer(dir.path())
        .args([
            "get",
            "--timeout",
            "1",
            "--retries",
            "1",
            "--port",
            &port.to_string(),
            "x",
        ])
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("timed out"), "{}", stderr(&o));
    drop(held);
}

#[test]
fn a_second_download_of_the_same_file_into_the_same_folder_is_refused() {
    let s = Server::with_files(|h| write(h, "f.bin", &bytes(4, 4 << 20)));
    let dl = s.downloads();
    std::fs::create_dir_all(&dl).unwrap();
    // Another download holds the part (as a running fxfer would).
    let part = dl.join(part_name("f.bin"));
    std::fs::write(&part, bytes(4, 1 << 20)).unwrap();
    std::fs::write(dl.join(note_name("f.bin")), "fxfer-resume 1\n4194304 1 0\n").unwrap();
    let held = std::fs::OpenOptions::new().write(true).open(&part).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    let o = s.get(&["f.bin"]);
    assert_exit(&o, 1);
    assert!(
        stderr(&o).contains("another download is writing"),
        "{}",
        stderr(&o)
    );
    assert!(!dl.join("f.bin").exists());
    assert_eq!(
        std::fs::metadata(&part).unwrap().len(),
        1 << 20,
        "the other download's data is untouched"
    );
    drop(held);
    let o = s.get(&["f.bin"]);
    assert_exit(&o, 0);
    assert!(std::fs::read(dl.join("f.bin")).unwrap() == bytes(4, 4 << 20));
}

#[test]
fn a_partial_survives_a_connection_that_fails_before_any_data() {
    let s = Server::builder()
        .files(|h| write(h, "big.bin", &bytes(12, 4 << 20)))
        .arg("--max-connections")
        .arg("1")
        .start();
    let dl = s.downloads();
    std::fs::create_dir_all(&dl).unwrap();
    std::fs::write(
        dl.join(part_name("big.bin")),
        &bytes(12, 4 << 20)[..1 << 20],
    )
    .unwrap();
    resume_note(&dl, &s.host, "big.bin");
    // Hold the only slot: the download is refused as busy before any data.
    let holder = hold(&s);
    let names: Vec<String> = (0..5).map(|_| "big.bin".to_string()).collect();
    let o = s
        .client("get")
        .args(["--retries", "1"])
        .args(&names)
        .output()
        .unwrap();
    assert_exit(&o, 3);
    assert!(
        stderr(&o).matches("retrying in").count() <= 2,
        "{}",
        stderr(&o)
    );
    assert!(dl.join(part_name("big.bin")).exists() && dl.join(note_name("big.bin")).exists());
    drop(holder);
    std::thread::sleep(Duration::from_millis(300));
    let o = s.get(&["--json", "big.bin"]);
    assert_exit(&o, 0);
    assert_eq!(json(&o)["files"][0]["resumed_from"], 1 << 20);
    assert!(std::fs::read(dl.join("big.bin")).unwrap() == bytes(12, 4 << 20));
}

/// A proxy that passes the client's bytes on at once but holds the
/// server's answer back until `open` is set; `asked` is set once the client
/// has sent something.
fn gate(server_port: u16, asked: Arc<AtomicUsize>, open: Arc<AtomicUsize>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming().take(4) {
            let Ok(client) = c else { break };
            let server = TcpStream::connect(("127.0.0.1", server_port)).unwrap();
            let (mut c_r, mut s_w) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let asked = Arc::clone(&asked);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(k) = c_r.read(&mut buf) {
                    if k == 0 || s_w.write_all(&buf[..k]).is_err() {
                        break;
                    }
                    asked.fetch_add(1, Ordering::SeqCst);
                }
                let _ = s_w.shutdown(std::net::Shutdown::Write);
            });
            let open = Arc::clone(&open);
            std::thread::spawn(move || {
                let (mut s_r, mut c_w) = (server, client);
                wait_until(Duration::from_secs(20), || open.load(Ordering::SeqCst) > 0);
                let _ = std::io::copy(&mut s_r, &mut c_w);
                let _ = c_w.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    port
}

/// Resumes `f.bin` from a correct 1.5 MiB partial copy, but lets `tamper`
/// change that copy after the resume was planned (and its prefix hashed)
/// and before the server's answer arrives. Whatever it did, the file must
/// end up byte-exact, with no partial copy left.
fn resume_survives_tampering(tamper: impl FnOnce(&Path)) {
    const SIZE: usize = 3 << 20;
    let s = Server::with_files(|h| write(h, "f.bin", &bytes(21, SIZE)));
    let dl = s.downloads();
    std::fs::create_dir_all(&dl).unwrap();
    let part = dl.join(part_name("f.bin"));
    std::fs::write(&part, &bytes(21, SIZE)[..3 << 19]).unwrap();
    resume_note(&dl, &s.host, "f.bin");
    let (asked, open) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let port = gate(s.port, Arc::clone(&asked), Arc::clone(&open));
    let child = fxfer(&s.work)
        .args(["get", "--json", "--port", &port.to_string(), "f.bin"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || asked
        .load(Ordering::SeqCst)
        > 0));
    tamper(&part);
    open.store(1, Ordering::SeqCst);
    let o = child.wait_with_output().unwrap();
    assert_exit(&o, 0);
    assert!(
        std::fs::read(dl.join("f.bin")).unwrap() == bytes(21, SIZE),
        "the file was delivered with wrong bytes"
    );
    assert_eq!(tree(&dl), ["f.bin"], "no partial lingers");
}

#[test]
fn a_partial_that_shrinks_after_planning_is_never_padded_into_place() {
    // Extending it back would fill the gap with zeros.
    resume_survives_tampering(|part| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(part)
            .unwrap()
            .set_len(1 << 19)
            .unwrap();
    });
}

#[test]
fn a_partial_rewritten_after_planning_is_not_trusted_by_its_old_hash() {
    // Same length, other bytes: the hash taken at planning time no longer
    // describes the file, so it must not vouch for it.
    resume_survives_tampering(|part| {
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(part, bytes(99, 3 << 19)).unwrap();
    });
}
