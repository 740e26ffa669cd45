use crate::util::*;
use std::process::Command;
use std::time::{Duration, Instant};

const DOWN: &str = "\x1b[B";
const ENTER: &str = "\r";

/// `fxfer shell` inside a real pseudo-terminal.
fn spawn_shell(s: &Server, dl: &str) -> rexpect::session::PtySession {
    let mut c = Command::new(BIN);
    c.current_dir(&s.work)
        .env_remove("FXFER_CONFIG")
        .env("HOME", &s.work)
        .env("XDG_CONFIG_HOME", s.work.join(".config"))
        .env("TERM", "xterm")
        .args(["shell", "--port", &s.port.to_string(), "--dir", dl]);
    rexpect::session::spawn_command(c, Some(20_000)).expect("spawn shell in a pty")
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

#[test]
fn shell_ticks_two_files_downloads_in_parallel_and_quits() {
    let s = Server::with_files(|h| {
        write(h, "a.txt", b"first file");
        write(h, "b.bin", &bytes(11, 200_000));
        write(h, "c.txt", b"not picked");
    });
    let mut p = spawn_shell(&s, "picked");
    at(&mut p, "Quit");
    key(&mut p, DOWN);
    key(&mut p, ENTER);
    at(&mut p, "c.txt");
    // a.txt is first, b.bin second (sorted): tick both.
    key(&mut p, " ");
    key(&mut p, DOWN);
    key(&mut p, " ");
    key(&mut p, ENTER);
    at(&mut p, "Serial");
    key(&mut p, ENTER); // Parallel is the default
    p.exp_string("2 files downloaded").unwrap();
    // Back at the menu (on "Download files"): go down to Quit.
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
    // Parallel: one connection per file, besides the shell's own.
    let log = s.wait_log("sent \"b.bin\"");
    assert!(log.matches(": connected").count() >= 3, "{log}");
}

#[test]
fn shell_lists_shows_info_and_quits_on_q() {
    let s = Server::with_files(|h| {
        write(h, "only.txt", b"12345");
        write(h, "sub/inner.txt", b"x");
    });
    let mut p = spawn_shell(&s, "dl");
    at(&mut p, "Quit");
    key(&mut p, ENTER);
    p.exp_string("sub/inner.txt").unwrap();
    at(&mut p, "Quit");
    for _ in 0..3 {
        key(&mut p, DOWN);
    }
    key(&mut p, ENTER);
    p.exp_string("Files:           2").unwrap();
    p.exp_string("Total size:      6 B").unwrap();
    at(&mut p, "Quit");
    key(&mut p, "q");
    assert_eq!(wait_exit(&mut p), 0);
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
    change_folder(&mut p, 2, "plain/sub");
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
