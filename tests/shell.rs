use crate::util::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const DOWN: &str = "\x1b[B";
const RIGHT: &str = "\x1b[C";
const LEFT: &str = "\x1b[D";
const HOME: &str = "\x1b[H";
const END: &str = "\x1b[F";
const PAGE_DOWN: &str = "\x1b[6~";
const ESC: &str = "\x1b";
const ENTER: &str = "\r";

/// `fxfer shell` inside a real pseudo-terminal of 80x24.
fn spawn_shell(s: &Server, dl: &str) -> rexpect::session::PtySession {
    spawn_shell_at(&s.work, s.port, dl)
}

fn spawn_shell_at(work: &Path, port: u16, dl: &str) -> rexpect::session::PtySession {
    let mut c = Command::new("sh");
    c.current_dir(work)
        .env_remove("FXFER_CONFIG")
        .env("HOME", work)
        .env("XDG_CONFIG_HOME", work.join(".config"))
        .env("TERM", "xterm")
        .args(["-c", "stty rows 24 cols 80 && exec \"$0\" \"$@\"", BIN])
        .args(["shell", "--port", &port.to_string(), "--dir", dl]);
    rexpect::session::spawn_command(c, Some(30_000)).expect("spawn shell in a pty")
}

/// Waits until `text` is on screen and the prompt reads keys: input sent
/// while the terminal is still switching modes can be dropped.
fn at(p: &mut rexpect::session::PtySession, text: &str) {
    p.exp_string(text).unwrap();
    std::thread::sleep(Duration::from_millis(300));
}

/// Sends keys and flushes them to the terminal.
fn key(p: &mut rexpect::session::PtySession, keys: &str) {
    p.send(keys).unwrap();
    p.flush().unwrap();
    std::thread::sleep(Duration::from_millis(50));
}

fn wait_exit(p: &mut rexpect::session::PtySession) -> i32 {
    use rexpect::process::wait::WaitStatus;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match p.process.status() {
            Some(WaitStatus::Exited(_, code)) => return code,
            Some(WaitStatus::StillAlive) | None if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            other => panic!("shell did not exit: {other:?}"),
        }
    }
}

/// From the browser (Esc) to the menu's last entry, Quit.
fn quit_from_browser(p: &mut rexpect::session::PtySession) {
    key(p, ESC);
    at(p, "Quit");
    key(p, "q");
}

#[test]
fn shell_ticks_two_files_downloads_in_parallel_and_quits() {
    let s = Server::with_files(|h| {
        write(h, "a.txt", b"first file");
        write(h, "b.bin", &bytes(11, 200_000));
        write(h, "c.txt", b"not picked");
    });
    let mut p = spawn_shell(&s, "picked");
    // The shell opens on the server's files.
    at(&mut p, "c.txt");
    // a.txt is first, b.bin second (sorted): tick both.
    key(&mut p, " ");
    key(&mut p, DOWN);
    key(&mut p, " ");
    p.exp_string("Ticked: 2 files, 195.3 KiB").unwrap();
    key(&mut p, ENTER);
    at(&mut p, "Serial");
    // Ctrl-C at the prompt goes back to the browser, ticks kept.
    key(&mut p, "\x03");
    at(&mut p, "Ticked: 2 files, 195.3 KiB");
    key(&mut p, ENTER);
    at(&mut p, "Serial");
    key(&mut p, ENTER); // Parallel is the default
    p.exp_string("2 files downloaded").unwrap();
    // Back in the browser, which shows the summary and nothing ticked.
    at(&mut p, "2 files downloaded");
    key(&mut p, ESC);
    at(&mut p, "Quit");
    for _ in 0..3 {
        key(&mut p, DOWN);
    }
    key(&mut p, ENTER);
    assert_eq!(wait_exit(&mut p), 0);
    let dl = s.work.join("picked");
    assert_eq!(tree(&dl), ["a.txt", "b.bin"]);
    assert_eq!(std::fs::read(dl.join("a.txt")).unwrap(), b"first file");
    assert_eq!(std::fs::read(dl.join("b.bin")).unwrap(), bytes(11, 200_000));
    // Parallel: its own connections (at most one per file), besides the
    // shell's.
    let log = s.wait_log("sent \"b.bin\"");
    let n = log.matches(": connected").count();
    assert!((2..=3).contains(&n), "{log}");
}

#[test]
fn shell_offers_only_changed_files_when_some_are_already_here() {
    let s = Server::with_files(|h| {
        write(h, "a.txt", b"first file");
        write(h, "b.txt", b"second file");
    });
    let o = s.get(&["--dir", "picked", "a.txt", "b.txt"]);
    assert_exit(&o, 0);
    write(&s.host, "b.txt", b"second file, changed");
    let mut p = spawn_shell(&s, "picked");
    at(&mut p, "b.txt");
    key(&mut p, " ");
    key(&mut p, DOWN);
    key(&mut p, " ");
    p.exp_string("Ticked: 2 files").unwrap();
    key(&mut p, ENTER);
    at(&mut p, "Serial");
    key(&mut p, ENTER);
    at(&mut p, "2 of 2 already here");
    at(&mut p, "All of them again");
    key(&mut p, ENTER); // Only changed files is the default
    p.exp_string("1 file downloaded").unwrap();
    p.exp_string("1 unchanged").unwrap();
    key(&mut p, ESC);
    at(&mut p, "Quit");
    for _ in 0..3 {
        key(&mut p, DOWN);
    }
    key(&mut p, ENTER);
    assert_eq!(wait_exit(&mut p), 0);
    let dl = s.work.join("picked");
    assert_eq!(
        std::fs::read(dl.join("b.txt")).unwrap(),
        b"second file, changed"
    );
    let log = s.wait_log("sent \"b.txt\"");
    assert_eq!(log.matches("sent \"a.txt\"").count(), 1, "{log}");
}

#[test]
fn shell_browses_folders_ticks_in_two_of_them_and_downloads_serially() {
    let s = Server::with_files(|h| {
        write(h, "top.txt", b"top");
        for i in 0..40 {
            write(
                h,
                &format!("logs/{i:02}.log"),
                format!("log {i}").as_bytes(),
            );
        }
        write(h, "data/deep/x.bin", &bytes(3, 50_000));
        write(h, "data/y.txt", b"y");
    });
    let mut p = spawn_shell(&s, "dl");
    // Folders first: data/, logs/, then top.txt; sizes and file counts.
    p.exp_string("data/  (2 files)").unwrap();
    p.exp_string("logs/  (40 files)").unwrap();
    at(&mut p, "top.txt");
    // Into logs (the second row): 40 files do not fit 24 lines; End
    // reaches the last, Home the first, PageDown a screen further.
    key(&mut p, DOWN);
    key(&mut p, RIGHT);
    at(&mut p, "/logs");
    key(&mut p, END);
    at(&mut p, "41/41");
    key(&mut p, " "); // ticks 39.log
    at(&mut p, "Ticked: 1 file");
    key(&mut p, HOME);
    at(&mut p, "1/41");
    key(&mut p, PAGE_DOWN);
    at(&mut p, "21/41"); // 20 rows a screen; row 21 is 19.log
    key(&mut p, " ");
    at(&mut p, "Ticked: 2 files, 12 B");
    // Up again, then tick the whole of data/ (two files, one deeper).
    key(&mut p, LEFT);
    at(&mut p, "[-] logs/");
    key(&mut p, HOME);
    key(&mut p, " ");
    at(&mut p, "Ticked: 4 files, 48.8 KiB");
    // Typing filters: only top.txt matches "top"; Esc clears the filter.
    key(&mut p, "top");
    at(&mut p, "1 match");
    key(&mut p, ESC);
    at(&mut p, "1/3");
    // Enter on a file downloads what is ticked.
    key(&mut p, END);
    key(&mut p, ENTER);
    at(&mut p, "Download 4 files, 48.8 KiB");
    key(&mut p, DOWN);
    key(&mut p, ENTER); // Serial
    p.exp_string("4 files downloaded").unwrap();
    // Back in the browser: the summary in the status line.
    at(&mut p, "4 files downloaded");
    quit_from_browser(&mut p);
    assert_eq!(wait_exit(&mut p), 0);
    let dl = s.work.join("dl");
    assert_eq!(
        tree(&dl),
        [
            "data/deep/x.bin",
            "data/y.txt",
            "logs/19.log",
            "logs/39.log"
        ]
    );
    assert_eq!(std::fs::read(dl.join("logs/19.log")).unwrap(), b"log 19");
    assert_eq!(std::fs::read(dl.join("logs/39.log")).unwrap(), b"log 39");
    assert_eq!(
        std::fs::read(dl.join("data/deep/x.bin")).unwrap(),
        bytes(3, 50_000)
    );
    // Serial: the downloads share one connection.
    let log = s.wait_log("sent \"logs/39.log\"");
    assert_eq!(log.matches(": connected").count(), 2, "{log}");
}

#[test]
fn shell_lists_shows_info_and_quits_on_q() {
    let s = Server::with_files(|h| {
        write(h, "only.txt", b"12345");
        write(h, "sub/inner.txt", b"x");
    });
    let mut p = spawn_shell(&s, "dl");
    at(&mut p, "only.txt");
    key(&mut p, ENTER); // into sub/
    at(&mut p, "inner.txt");
    key(&mut p, "\x03"); // Ctrl-C, like Esc, leads to the menu
    at(&mut p, "Quit");
    for _ in 0..2 {
        key(&mut p, DOWN);
    }
    key(&mut p, ENTER);
    p.exp_string(&format!("Fingerprint:     {}", s.fingerprint()))
        .unwrap();
    p.exp_string("Files:           2").unwrap();
    p.exp_string("Total size:      6 B").unwrap();
    at(&mut p, "Quit");
    key(&mut p, "q");
    assert_eq!(wait_exit(&mut p), 0);
}

#[test]
fn shell_with_no_server_offers_retry_and_connects_once_one_is_up() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut p = spawn_shell_at(tmp.path(), port, "dl");
    p.exp_string("connection refused").unwrap();
    at(&mut p, "Change the server address");
    let s = Server::builder()
        .port(port)
        .files(|h| write(h, "hello.txt", b"hi"))
        .start();
    key(&mut p, ENTER); // Retry
    at(&mut p, "hello.txt");
    key(&mut p, ENTER);
    at(&mut p, "Serial");
    key(&mut p, ENTER);
    p.exp_string("1 file downloaded").unwrap();
    at(&mut p, "1 file downloaded");
    quit_from_browser(&mut p);
    assert_eq!(wait_exit(&mut p), 0);
    assert_eq!(
        std::fs::read(tmp.path().join("dl/hello.txt")).unwrap(),
        b"hi"
    );
    drop(s);
}

#[test]
fn shell_with_no_server_can_change_the_address_or_quit() {
    let s = Server::with_files(|h| write(h, "there.txt", b"x"));
    let mut p = spawn_shell_at(&s.work, free_port(), "dl");
    at(&mut p, "Change the server address");
    key(&mut p, DOWN);
    key(&mut p, ENTER);
    at(&mut p, "Server address");
    // Replace the offered address.
    key(&mut p, &"\x7f".repeat(30));
    key(&mut p, &format!("127.0.0.1:{}", s.port));
    key(&mut p, ENTER);
    at(&mut p, "there.txt");
    quit_from_browser(&mut p);
    assert_eq!(wait_exit(&mut p), 0);

    // Quitting when no server ever answered: exit status 3.
    let mut p = spawn_shell_at(&s.work, free_port(), "dl");
    at(&mut p, "Change the server address");
    key(&mut p, "q");
    assert_eq!(wait_exit(&mut p), 3);
}

const BIG: usize = 256 << 20;

/// A shell downloading a.txt and a big file serially, the big one a good
/// way in (16 MiB of it arrived).
fn big_download_under_way(seed: u64) -> (Server, rexpect::session::PtySession) {
    let s = Server::with_files(move |h| {
        write(h, "a.txt", b"small");
        write(h, "big.bin", &bytes(seed, BIG));
    });
    let mut p = spawn_shell(&s, "dl");
    at(&mut p, "big.bin");
    key(&mut p, "\x14"); // Ctrl-T: tick all
    key(&mut p, ENTER);
    at(&mut p, "Serial");
    key(&mut p, DOWN);
    key(&mut p, ENTER);
    let part = s
        .work
        .join("dl")
        .join(fxfer::transfer::part_name("big.bin"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&part).map_or(0, |m| m.len()) < 16 << 20 {
        assert!(Instant::now() < deadline, "download never got going");
        std::thread::sleep(Duration::from_millis(2));
    }
    (s, p)
}

#[test]
fn shell_says_what_was_kept_when_the_server_dies_and_resumes() {
    let (mut s1, mut p) = big_download_under_way(21);
    s1.child.kill().unwrap();
    let _ = s1.child.wait();
    p.exp_string("Kept: 1 of 2 files complete").unwrap();
    p.exp_string("1 partial (").unwrap();
    at(&mut p, "Resume the download");
    // The same server again: the same identity (its work folder), so the
    // client still trusts it.
    let s2 = Server::builder()
        .port(s1.port)
        .host(&s1.host)
        .work(&s1.work)
        .start();
    key(&mut p, ENTER);
    p.exp_string("1 file downloaded").unwrap();
    at(&mut p, "1 file downloaded");
    quit_from_browser(&mut p);
    assert_eq!(wait_exit(&mut p), 0);
    let dl = s1.work.join("dl");
    assert_eq!(tree(&dl), ["a.txt", "big.bin"]);
    assert!(std::fs::read(dl.join("big.bin")).unwrap() == bytes(21, BIG));
    // Resumed, not sent again from the start.
    let log = s2.wait_log("sent \"big.bin\"");
    // (The log file is s1's too: look at what s2 did.)
    let since = &log[log.rfind("server started").unwrap()..];
    assert!(!since.contains("from offset 0)"), "{log}");
}

#[test]
fn shell_without_a_terminal_exits_2_with_advice() {
    let s = Server::with_files(|h| write(h, "a", b"a"));
    let o = s.client("shell").output().unwrap();
    assert_exit(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains("needs a terminal") && err.contains("fxfer get"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);
}

#[test]
fn shell_folder_prompt_refuses_a_file_and_expands_tilde() {
    let s = Server::with_files(|h| write(h, "a.txt", b"a"));
    std::fs::write(s.work.join("plain"), b"x").unwrap();
    let mut p = spawn_shell(&s, "dl");
    at(&mut p, "a.txt");
    key(&mut p, ESC);
    at(&mut p, "Quit");
    // The menu comes back on the last choice made.
    let change_folder = |p: &mut rexpect::session::PtySession, downs: usize, to: &str| {
        for _ in 0..downs {
            key(p, DOWN);
        }
        key(p, ENTER);
        at(p, "Download folder");
        key(p, to);
        key(p, ENTER);
    };
    change_folder(&mut p, 1, "plain/sub");
    p.exp_string("plain is a file, not a folder").unwrap();
    at(&mut p, "Quit");
    change_folder(&mut p, 0, "~/picked");
    let home = s.work.display().to_string();
    p.exp_string(&format!("Downloads now go to {home}/picked"))
        .unwrap();
    at(&mut p, "Quit");
    key(&mut p, "q");
    assert_eq!(wait_exit(&mut p), 0);
}

#[test]
fn ctrl_c_stops_a_shell_download_keeps_what_arrived_and_enter_resumes() {
    let (s, mut p) = big_download_under_way(22);
    key(&mut p, "\x03");
    p.exp_string("Stopped. Kept: 1 of 2 files complete")
        .unwrap();
    // Back in the browser, the session alive, the unfinished file ticked.
    at(&mut p, "Enter downloads the rest");
    key(&mut p, ENTER);
    at(&mut p, "Download 1 file, 256.0 MiB");
    key(&mut p, ENTER);
    p.exp_string("1 file downloaded").unwrap();
    at(&mut p, "1 file downloaded");
    quit_from_browser(&mut p);
    assert_eq!(wait_exit(&mut p), 0);
    let dl = s.work.join("dl");
    assert_eq!(tree(&dl), ["a.txt", "big.bin"]);
    assert!(std::fs::read(dl.join("big.bin")).unwrap() == bytes(22, BIG));
    let log = s.log_text();
    let sent: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("sent \"big.bin\""))
        .collect();
    assert_eq!(sent.len(), 1, "{log}");
    assert!(
        !sent[0].contains("from offset 0)"),
        "resumed, not started over: {log}"
    );
}
