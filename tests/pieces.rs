//! `get --parallel`: kept-alive connections sharing one queue, and large
//! files fetched in pieces (ranged GETs) over several connections: cut
//! pieces retried, interrupted downloads resumed piece by piece, sources
//! rewritten between pieces never delivered as a mix.

use crate::util::proxy::{Get, Proxy, Rules};
use crate::util::*;
use std::time::{Duration, SystemTime};

const MIB: usize = 1 << 20;

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

/// `fxfer get` through a proxy (in the clear, so that the proxy can pick
/// a connection by the GET it carries).
fn get_via(s: &Server, p: &Proxy, args: &[&str]) -> std::process::Output {
    via(s, p).args(args).output().unwrap()
}

/// A `get` command aimed at the proxy in front of `s`.
fn via(s: &Server, p: &Proxy) -> std::process::Command {
    let mut c = fxfer(&s.work);
    c.arg("get").args(["--port", &p.port.to_string()]);
    if s.plaintext {
        c.arg("--plaintext");
    }
    c
}

/// A --plaintext server hosting `data` as big.bin.
fn serving(data: &[u8]) -> Server {
    let d = data.to_vec();
    Server::builder()
        .plaintext()
        .files(move |h| write(h, "big.bin", &d))
        .start()
}

/// The second of the two pieces of an 8 MiB big.bin.
const SECOND_PIECE: Get = Get {
    path: "big.bin",
    offset: 4 * MIB as u64,
};

/// A server hosting `data` as big.bin, and a first `get --parallel -j 2`
/// of it whose connection carrying the second piece was cut 2.5 MiB into
/// it (no retries): the first piece finished, the second partly kept.
fn interrupted_in_pieces(data: &[u8]) -> Server {
    let s = serving(data);
    let cut = Proxy::start(
        s.port,
        Rules {
            cut: Some((SECOND_PIECE, (2 * MIB + MIB / 2) as u64)),
            ..Rules::default()
        },
    );
    // At 8 MB/s the cut comes a good half second in: the other connection
    // (started once the pieces are planned) has long taken the first
    // piece. Unpaced, a loaded machine could start it only after the
    // first connection took both, and lose the first with the second.
    let o = get_via(
        &s,
        &cut,
        &[
            "--parallel",
            "--jobs",
            "2",
            "--retries",
            "0",
            "--limit-rate",
            "8M",
            "big.bin",
        ],
    );
    assert_exit(&o, 3);
    s
}

#[test]
fn five_hundred_small_files_over_four_kept_connections() {
    let names: Vec<String> = (0..500).map(|i| format!("d{}/f{i:03}", i % 3)).collect();
    let files = names.clone();
    let s = Server::with_files(move |h| {
        for (i, n) in files.iter().enumerate() {
            write(h, n, &bytes(i as u64, (i * 53) % 20_000));
        }
    });
    let mut args = vec!["--parallel", "--jobs", "4"];
    args.extend(names.iter().map(String::as_str));
    let o = s.get(&args);
    assert_exit(&o, 0);
    for (i, n) in names.iter().enumerate() {
        let got = std::fs::read(s.downloads().join(n)).unwrap();
        assert!(got == bytes(i as u64, (i * 53) % 20_000), "{n} differs");
    }
    let mut want = names.clone();
    want.sort();
    assert_eq!(tree(&s.downloads()), want, "no leftovers");
    // --jobs bounds the connections: never one per file.
    let log = s.wait_log("disconnected");
    let n = log.matches(": connected").count();
    assert!((1..=4).contains(&n), "{n} connections: {log}");
}

/// The peers ("127.0.0.1:PORT") that the server's log says sent files
/// whose names start with `prefix`.
fn senders(log: &str, prefix: &str) -> std::collections::BTreeSet<String> {
    let needle = format!(": sent \"{prefix}");
    log.lines()
        .filter_map(|l| l.split_once(&needle))
        .filter_map(|(head, _)| head.split_whitespace().last().map(str::to_string))
        .collect()
}

/// A `get` command for `s` that decides as a short round trip does: small
/// files over one connection (a loaded machine may take more than the
/// 4 ms of a real one to connect, so the threshold is raised).
fn at_a_short_round_trip(s: &Server) -> std::process::Command {
    let mut c = s.client("get");
    c.env("FXFER_SHORT_HANDSHAKE_MS", "2000");
    c
}

#[test]
fn at_a_short_round_trip_small_files_share_one_connection_and_pieces_all() {
    // On loopback one pipelined connection keeps up with small files, and
    // more connections would only compete for the CPU with the thread that
    // writes them: they all come over one. A large file among them still
    // comes in pieces over several.
    let names: Vec<String> = (0..300).map(|i| format!("f{i:03}")).collect();
    let files = names.clone();
    let big = bytes(38, 8 * MIB);
    let b = big.clone();
    let s = Server::builder()
        .plaintext()
        .files(move |h| {
            for (i, n) in files.iter().enumerate() {
                write(h, n, &bytes(i as u64, 4096 + i));
            }
            write(h, "big.bin", &b);
        })
        .start();
    let mut args = vec!["--parallel", "--jobs", "4", "big.bin"];
    args.extend(names.iter().map(String::as_str));
    let o = at_a_short_round_trip(&s).args(&args).output().unwrap();
    assert_exit(&o, 0);
    assert!(std::fs::read(s.downloads().join("big.bin")).unwrap() == big);
    for (i, n) in names.iter().enumerate() {
        let got = std::fs::read(s.downloads().join(n)).unwrap();
        assert!(got == bytes(i as u64, 4096 + i), "{n} differs");
    }
    // Every connection has closed (so every "sent" is logged).
    let mut log = s.wait_log("disconnected");
    for _ in 0..100 {
        if log.matches(": connected").count() == log.matches(": disconnected").count() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        log = s.log_text();
    }
    let small = senders(&log, "f");
    assert_eq!(small.len(), 1, "small files from {small:?}: {log}");
    let pieces = senders(&log, "big.bin");
    assert!(pieces.len() > 1, "big.bin from {pieces:?}: {log}");
}

#[test]
fn at_a_short_round_trip_small_files_come_without_a_listing() {
    // The one connection fetches them as the serial get does: nothing
    // needs their sizes (no total is shown), and a listing ahead of them
    // would only hold up the first (the server walks the folder, the
    // client reads every entry).
    let names: Vec<String> = (0..200).map(|i| format!("f{i:03}")).collect();
    let files = names.clone();
    let s = Server::with_files(move |h| {
        for (i, n) in files.iter().enumerate() {
            write(h, n, &bytes(i as u64, 1000 + 37 * i));
        }
        write(h, "unasked.bin", b"not asked for");
    });
    let o = at_a_short_round_trip(&s)
        .args(["-q", "--parallel", "--jobs", "4"])
        .args(&names)
        .output()
        .unwrap();
    assert_exit(&o, 0);
    for (i, n) in names.iter().enumerate() {
        let got = std::fs::read(s.downloads().join(n)).unwrap();
        assert!(got == bytes(i as u64, 1000 + 37 * i), "{n} differs");
    }
    let log = s.wait_log("disconnected");
    assert!(!log.contains(": list "), "{log}");
    assert_eq!(log.matches(": connected").count(), 1, "{log}");
}

#[test]
fn files_found_large_wait_for_the_listing_to_be_planned() {
    // Four files of 8 MiB for two connections: each is a fair share, so
    // each comes whole (after its first 256 KiB). Without the run's total
    // each would look like a file alone, and come in two pieces.
    let names = ["a.bin", "b.bin", "c.bin", "d.bin"];
    let s = Server::builder()
        .plaintext()
        .files(move |h| {
            for (i, n) in names.iter().enumerate() {
                write(h, n, &bytes(40 + i as u64, 8 * MIB));
            }
        })
        .start();
    let o = at_a_short_round_trip(&s)
        .args(["-q", "--parallel", "--jobs", "2"])
        .args(names)
        .output()
        .unwrap();
    assert_exit(&o, 0);
    for (i, n) in names.iter().enumerate() {
        let got = std::fs::read(s.downloads().join(n)).unwrap();
        assert!(got == bytes(40 + i as u64, 8 * MIB), "{n} differs");
    }
    let log = s.wait_log("disconnected");
    assert_eq!(log.matches(": list ").count(), 1, "{log}");
    for n in names {
        let rest = format!(
            "sent \"{n}\" ({} bytes from offset 262144)",
            8 * MIB - 256 * 1024
        );
        assert!(log.contains(&rest), "{rest}: {log}");
    }
}

#[test]
fn without_a_terminal_the_first_progress_line_has_the_whole_total() {
    // Small files, at 1 MiB/s: the line every few seconds shows the total
    // of all of them, which only the listing knows that early.
    let names: Vec<String> = (0..24).map(|i| format!("f{i:02}")).collect();
    let files = names.clone();
    let s = Server::with_files(move |h| {
        for (i, n) in files.iter().enumerate() {
            write(h, n, &bytes(i as u64, 200 * 1024));
        }
    });
    let o = at_a_short_round_trip(&s)
        .args(["--parallel", "--jobs", "4", "--limit-rate", "1M"])
        .args(&names)
        .output()
        .unwrap();
    assert_exit(&o, 0);
    let err = stderr(&o);
    let first = err
        .lines()
        .find(|l| l.contains(" at ") && l.contains("ETA"));
    assert!(first.is_some_and(|l| l.contains(" of 4.7 MiB")), "{err}");
}

#[test]
fn one_small_file_or_one_job_uses_one_connection() {
    let s = Server::with_files(|h| {
        write(h, "a.txt", b"alpha");
        write(h, "b.txt", b"beta");
    });
    let o = s.get(&["--parallel", "a.txt"]);
    assert_exit(&o, 0);
    let log = s.wait_log("disconnected");
    assert_eq!(log.matches(": connected").count(), 1, "{log}");
    // --jobs 1 is the serial download: one connection for both.
    let o = s.get(&["--parallel", "--jobs", "1", "a.txt", "b.txt"]);
    assert_exit(&o, 0);
    let log = s.wait_log("sent \"b.txt\"");
    assert_eq!(log.matches(": connected").count(), 2, "{log}");
}

#[test]
fn a_cut_piece_is_fetched_again_and_the_file_verifies() {
    let data = bytes(31, 8 * MIB);
    let s = serving(&data);
    // Two connections, two pieces; the one carrying the second piece dies
    // 1 MiB into it.
    let p = Proxy::start(
        s.port,
        Rules {
            cut: Some((SECOND_PIECE, MIB as u64)),
            ..Rules::default()
        },
    );
    let o = get_via(&s, &p, &["--parallel", "--jobs", "2", "big.bin"]);
    assert_exit(&o, 0);
    assert!(std::fs::read(s.downloads().join("big.bin")).unwrap() == data);
    assert!(stderr(&o).contains("retrying in"), "{}", stderr(&o));
    assert_eq!(tree(&s.downloads()), ["big.bin"]);
    // The second piece was sent whole once, after the cut.
    let log = s.wait_log("(4194304 bytes from offset 4194304)");
    assert!(
        log.contains("sent \"big.bin\" (4194304 bytes from offset 4194304)"),
        "{log}"
    );
}

#[test]
fn an_interrupted_download_resumes_with_only_the_missing_pieces() {
    let data = bytes(32, 8 * MIB);
    let s = interrupted_in_pieces(&data);
    assert!(!s.downloads().join("big.bin").exists());
    // The second run fetches only what is missing: the rest of the piece
    // that was cut (the 2 MiB that arrived of it stay), not the piece that
    // finished.
    let count = Proxy::start(s.port, Rules::default());
    let o = get_via(
        &s,
        &count,
        &["--parallel", "--jobs", "2", "--json", "big.bin"],
    );
    assert_exit(&o, 0);
    assert!(std::fs::read(s.downloads().join("big.bin")).unwrap() == data);
    let v = json(&o);
    assert_eq!(v["files"][0]["resumed_from"], 6 * MIB, "{v}");
    let down = count.down();
    assert!(
        down > 2 * MIB as u64 && down < 2 * MIB as u64 + 64 * 1024,
        "{down} bytes came from the server"
    );
    // Bytes no server vouched for piece by piece: the whole file's digest
    // was checked too (a GET from the end of the file).
    let log = s.wait_log("bytes from offset 8388608");
    assert!(
        log.contains("sent \"big.bin\" (0 bytes from offset 8388608)"),
        "{log}"
    );
    assert_eq!(tree(&s.downloads()), ["big.bin"]);
}

#[test]
fn a_source_rewritten_between_pieces_is_never_delivered_as_a_mix() {
    let old = bytes(33, 8 * MIB);
    let new = bytes(34, 8 * MIB);
    let s = serving(&old);
    // The first piece is fetched; every other GET of the file is held
    // until the source has been rewritten (otherwise the connection done
    // with that piece may ask for the next before the rewrite when this
    // thread is slow).
    let p = Proxy::start(
        s.port,
        Rules {
            only: Some(Get::of("big.bin", 0)),
            ..Rules::default()
        },
    );
    let client = {
        let mut c = via(&s, &p);
        c.args(["--parallel", "--jobs", "2", "big.bin"]);
        std::thread::spawn(move || c.output().unwrap())
    };
    // Wait until the server has committed to the first piece's END (it
    // checks the file once more before that), so the rewrite falls between
    // the pieces, not inside the first.
    // (The first piece is the first 256 KiB, which the client asked for
    // before it knew the size.)
    let sent = "\"big.bin\" (262144 bytes from offset 0)";
    let log = s.wait_log(sent);
    assert!(log.contains(sent), "{log}");
    let path = s.host.join("big.bin");
    std::fs::write(&path, &new).unwrap();
    let later = SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(later)
        .unwrap();
    p.release();
    let o = client.join().unwrap();
    assert_exit(&o, 0);
    let got = std::fs::read(s.downloads().join("big.bin")).unwrap();
    assert!(got == new, "not the new version whole");
    assert!(
        stderr(&o).contains("downloading it again from the start"),
        "{}",
        stderr(&o)
    );
    assert_eq!(tree(&s.downloads()), ["big.bin"]);
}

#[test]
fn kept_bytes_damaged_on_disk_are_caught_before_use() {
    let data = bytes(35, 8 * MIB);
    let s = interrupted_in_pieces(&data);
    // Damage every kept megabyte of the part: the finished piece and what
    // arrived of the cut one.
    let part = s.downloads().join(fxfer::transfer::part_name("big.bin"));
    let f = std::fs::File::options().write(true).open(&part).unwrap();
    for at in (0..8).map(|i| i * MIB as u64 + 4096) {
        std::os::unix::fs::FileExt::write_all_at(&f, b"damage", at).unwrap();
    }
    drop(f);
    let o = get_via(
        &s,
        &Proxy::start(s.port, Rules::default()),
        &["--parallel", "--jobs", "2", "big.bin"],
    );
    assert_exit(&o, 0);
    assert!(std::fs::read(s.downloads().join("big.bin")).unwrap() == data);
    // The damaged rest of the cut piece was only caught by the whole
    // file's digest: the file was fetched again from the start.
    assert!(
        stderr(&o).contains("does not match the server's file"),
        "{}",
        stderr(&o)
    );
    assert_eq!(tree(&s.downloads()), ["big.bin"]);
}

#[test]
fn a_named_large_file_is_probed_then_fetched_in_pieces_and_nothing_twice() {
    // A name whose size the client does not know yet: its first 256 KiB
    // come with the first request, before the listing, and stay as the
    // start of its first piece; the rest comes in pieces over the other
    // connections.
    let data = bytes(36, 8 * MIB);
    let s = serving(&data);
    let count = Proxy::start(s.port, Rules::default());
    let o = get_via(&s, &count, &["--parallel", "--jobs", "4", "big.bin"]);
    assert_exit(&o, 0);
    assert!(std::fs::read(s.downloads().join("big.bin")).unwrap() == data);
    assert_eq!(tree(&s.downloads()), ["big.bin"]);
    let log = s.wait_log("disconnected");
    assert!(
        log.contains("sent \"big.bin\" (262144 bytes from offset 0)"),
        "{log}"
    );
    assert!(
        log.contains("sent \"big.bin\" (2097152 bytes from offset 2097152)"),
        "{log}"
    );
    assert!(log.matches(": connected").count() > 1, "{log}");
    // Every byte once, plus the frames around them.
    let down = count.down();
    assert!(
        down >= 8 * MIB as u64 && down < 8 * MIB as u64 + 16 * 1024,
        "{down} bytes came from the server"
    );
}

#[test]
fn parallel_names_of_every_kind_before_the_listing() {
    // Fetched at once, without waiting for the listing: folders, missing
    // names, an empty file (which has no range to probe), a file a little
    // larger than the first request and one larger than a resumable part,
    // both continued where that request stopped.
    let mid = bytes(37, 600 * 1024);
    let large = bytes(38, 3 * MIB);
    let (m, l) = (mid.clone(), large.clone());
    let s = Server::with_files(move |h| {
        write(h, "dir/inner.txt", b"inside");
        write(h, "empty.bin", b"");
        write(h, "mid.bin", &m);
        write(h, "large.bin", &l);
        write(h, "small.txt", b"small");
    });
    let o = s.get(&[
        "--parallel",
        "--jobs",
        "4",
        "dir",
        "nope.txt",
        "empty.bin",
        "mid.bin",
        "large.bin",
        "small.txt",
    ]);
    assert_exit(&o, 1);
    let err = stderr(&o);
    assert!(
        err.contains("dir: not a regular file (use -r to download folders)"),
        "{err}"
    );
    assert!(
        err.contains("nope.txt: no such file on the server"),
        "{err}"
    );
    let d = s.downloads();
    assert_eq!(tree(&d), ["empty.bin", "large.bin", "mid.bin", "small.txt"]);
    assert!(std::fs::read(d.join("empty.bin")).unwrap().is_empty());
    assert!(std::fs::read(d.join("mid.bin")).unwrap() == mid);
    assert!(std::fs::read(d.join("large.bin")).unwrap() == large);
    assert_eq!(std::fs::read(d.join("small.txt")).unwrap(), b"small");
    let log = s.wait_log("disconnected");
    for (name, rest) in [("mid.bin", 600 * 1024), ("large.bin", 3 * MIB)] {
        let line = format!(
            "sent \"{name}\" ({} bytes from offset 262144)",
            rest - 256 * 1024
        );
        assert!(log.contains(&line), "{line}: {log}");
    }
    // Still one connection per job at most.
    let n = log.matches(": connected").count();
    assert!((1..=4).contains(&n), "{n} connections: {log}");
}

#[test]
fn empty_files_arrive_with_their_probe_one_get_each_without_a_warning() {
    // An empty file has no range (BLAKE3 has no chaining value for an
    // empty subtree), so its probe is answered as the whole file: one GET
    // for it, no refusal in the server's log and no second request. Over
    // one connection (a short round trip) and over several.
    let t = SystemTime::UNIX_EPOCH + Duration::new(1_600_000_000, 987_654_321);
    let empties: Vec<String> = (0..12).map(|i| format!("e{i:02}")).collect();
    let names = empties.clone();
    let s = Server::with_files(move |h| {
        use std::os::unix::fs::PermissionsExt;
        for (i, n) in names.iter().enumerate() {
            write(h, n, b"");
            let f = std::fs::File::options()
                .write(true)
                .open(h.join(n))
                .unwrap();
            f.set_modified(t).unwrap();
            let mode = if i % 2 == 0 { 0o755 } else { 0o644 };
            f.set_permissions(std::fs::Permissions::from_mode(mode))
                .unwrap();
        }
        write(h, "small.txt", b"small");
    });
    for (round, short_ms) in [(0, "2000"), (1, "0")] {
        let o = s
            .client("get")
            .env("FXFER_SHORT_HANDSHAKE_MS", short_ms)
            .args(["-q", "--parallel", "--jobs", "4", "--dir"])
            .arg(format!("round{round}"))
            .arg("small.txt")
            .args(&empties)
            .output()
            .unwrap();
        assert_exit(&o, 0);
        let d = s.work.join(format!("round{round}"));
        for (i, n) in empties.iter().enumerate() {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(d.join(n)).unwrap();
            assert_eq!(m.len(), 0, "{n}");
            assert_eq!(
                (m.mtime(), m.mtime_nsec()),
                (1_600_000_000, 987_654_321),
                "{n}"
            );
            let x = if i % 2 == 0 { 0o111 } else { 0 };
            assert_eq!(m.mode() & 0o111, x, "{n}: mode {:o}", m.mode());
        }
        assert_eq!(std::fs::read(d.join("small.txt")).unwrap(), b"small");
        // Every connection of this round has closed, so every GET it
        // made is in the log.
        let mut log = s.wait_log("disconnected");
        for _ in 0..100 {
            let (c, gone) = (
                log.matches(": connected").count(),
                log.matches(": disconnected").count(),
            );
            if c == gone && gone > round {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            log = s.log_text();
        }
        assert!(!log.contains(" WARN "), "round {round}: {log}");
        for n in &empties {
            let line = format!(": sent \"{n}\" (0 bytes from offset 0)");
            assert_eq!(
                log.matches(&line).count(),
                round + 1,
                "round {round}, {n}: one GET a run: {log}"
            );
        }
    }
}

#[test]
fn a_parallel_get_of_a_dead_server_gives_up_after_its_retries() {
    // Each connection tries --retries more times, then leaves; the last to
    // leave reports every file. Nobody starts the series over.
    let work = tempfile::tempdir().unwrap();
    let port = dead_port().to_string();
    let o = fxfer(work.path())
        .args(["get", "--port", &port, "--parallel", "--jobs", "4"])
        .args(["--retries", "2", "a", "b", "c", "d", "e"])
        .output()
        .unwrap();
    assert_exit(&o, 3);
    let err = stderr(&o);
    let retries = err.matches("retrying in").count();
    assert!((1..=4 * 2).contains(&retries), "{retries} retries: {err}");
    // Each retry is announced for a file.
    assert!(!err.contains("fxfer: : "), "{err}");
    for n in ["a", "b", "c", "d", "e"] {
        assert!(
            err.contains(&format!("fxfer: {n}: cannot connect")),
            "{err}"
        );
    }
}
