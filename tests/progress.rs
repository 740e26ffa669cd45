use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// Drops escape sequences (CSI and the like) from terminal output.
fn strip_escapes(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        if it.peek() == Some(&'[') {
            it.next();
            // Parameters, then one final byte in @..~.
            for c in it.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            it.next();
        }
    }
    out
}

#[test]
fn bars_fit_an_80_column_terminal_with_names_shortened_and_an_eta() {
    bars_at_80_columns("--no-parallel");
}

#[test]
fn parallel_bars_fit_an_80_column_terminal_too() {
    bars_at_80_columns("--parallel");
}

fn bars_at_80_columns(mode: &str) {
    let long = format!("folder/{}-the-end.bin", "a-very-long-name".repeat(5));
    let l = long.clone();
    let s = Server::with_files(move |h| {
        write(h, &l, &bytes(1, 1 << 20));
        write(h, "second.bin", &bytes(2, 2 << 20));
    });
    let cmd = format!(
        "stty cols 80 rows 24; exec {BIN} get {mode} --port {} --limit-rate 1M '{long}' second.bin",
        s.port
    );
    let mut c = Command::new("sh");
    c.args(["-c", &cmd])
        .current_dir(&s.work)
        .env_remove("FXFER_CONFIG")
        .env("HOME", &s.work)
        .env("TERM", "xterm");
    let mut p = rexpect::session::spawn_command(c, Some(30_000)).unwrap();
    // rexpect hands back one char per byte: decode the UTF-8 again.
    let raw: Vec<u8> = p
        .exp_eof()
        .unwrap()
        .chars()
        .map(|c| c as u32 as u8)
        .collect();
    let text = strip_escapes(&String::from_utf8_lossy(&raw));
    let mut saw_eta = false;
    let mut saw_full_total = false;
    let mut saw_short_name = false;
    for line in text.split(['\r', '\n']) {
        let w = console::measure_text_width(line);
        assert!(w <= 80, "{w} columns: {line:?}");
        saw_eta |= line.contains("ETA");
        // The total counts both files from the first one on.
        saw_full_total |= line.contains("0/2 files") && line.contains("/3.00 MiB");
        saw_short_name |=
            line.contains("folder/a-very") && line.contains("…") && line.contains("end.bin");
    }
    assert!(saw_eta, "{text}");
    assert!(saw_full_total, "{text}");
    assert!(saw_short_name, "{text}");
    assert_eq!(
        std::fs::read(s.downloads().join("second.bin")).unwrap(),
        bytes(2, 2 << 20)
    );
}

#[test]
fn a_pipe_gets_a_plain_progress_line_every_few_seconds() {
    let s = Server::with_files(|h| write(h, "slow.bin", &bytes(3, 4 << 20)));
    let o = s.get(&["--limit-rate", "1M", "slow.bin"]);
    assert_exit(&o, 0);
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains(" of 4.0 MiB")).collect();
    assert!(!lines.is_empty(), "{err}");
    assert!(
        lines[0].contains("iB/s") && lines[0].contains("ETA"),
        "{err}"
    );
    assert!(
        !err.contains('\x1b') && !stdout(&o).contains('\x1b'),
        "{err}"
    );
    // Quiet means quiet.
    let o = s.get(&["-q", "--limit-rate", "1M", "slow.bin"]);
    assert_exit(&o, 0);
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}

#[test]
fn ctrl_c_keeps_what_arrived_says_so_and_the_same_command_resumes() {
    ctrl_c("--no-parallel");
}

#[test]
fn ctrl_c_in_a_parallel_get_keeps_what_arrived_too() {
    ctrl_c("--parallel");
}

fn ctrl_c(mode: &str) {
    let s = Server::with_files(|h| {
        write(h, "done.bin", b"small and first");
        write(h, "big.bin", &bytes(8, 8 << 20));
    });
    let args = [
        "get",
        "--port",
        &s.port.to_string(),
        "--limit-rate",
        "2M",
        mode,
        "done.bin",
        "big.bin",
    ];
    let child = fxfer(&s.work)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let part = s.downloads().join(fxfer::transfer::part_name("big.bin"));
    let deadline = Instant::now() + Duration::from_secs(20);
    // Bytes on disk, not the length: in parallel the file comes in pieces,
    // written in place into a part of its full size.
    let written = |p: &std::path::Path| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).map_or(0, |m| m.blocks() * 512)
    };
    while written(&part) < 2 << 20 {
        assert!(Instant::now() < deadline, "no partial download appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let started = Instant::now();
    let o = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_exit(&o, 130);
    let err = stderr(&o);
    assert!(err.contains("kept 1 finished file"), "{err}");
    assert!(err.contains("partial download of big.bin"), "{err}");
    assert!(
        err.contains("run the same command again to resume"),
        "{err}"
    );
    let out = stdout(&o);
    let summary = out.lines().last().unwrap_or("");
    assert!(summary.contains("1 file downloaded"), "{out}");
    assert!(!summary.contains(" 0 B "), "{out}");
    assert!(summary.contains("MiB"), "{out}");
    let kept = std::fs::metadata(&part).unwrap().len();
    assert!(kept >= 2 << 20, "{kept}");

    // The same command again asks only for the rest.
    let o = fxfer(&s.work).args(args).output().unwrap();
    assert_exit(&o, 0);
    assert_eq!(
        std::fs::read(s.downloads().join("big.bin")).unwrap(),
        bytes(8, 8 << 20)
    );
    let log = s.wait_log("sent \"big.bin\" (");
    assert!(
        log.lines()
            .any(|l| l.contains("sent \"big.bin\"") && !l.contains("from offset 0)")),
        "{log}"
    );
}

#[test]
fn ctrl_c_while_a_silent_server_keeps_us_waiting_stops_at_once() {
    let port = crate::conventions::impostor(None);
    let dir = tempfile::tempdir().unwrap();
    for names in [&["x"][..], &["*.txt"][..]] {
        let child = fxfer(dir.path())
            .args(["get", "--port", &port.to_string()])
            .args(names)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let st = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let started = Instant::now();
        let o = child.wait_with_output().unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_exit(&o, 130);
        assert!(
            stderr(&o).contains("interrupted before any file arrived"),
            "{}",
            stderr(&o)
        );
    }
}
