use crate::util::*;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

fn small_host(h: &std::path::Path) {
    write(h, "a.txt", b"hello");
}

/// One `ls` and one `get` against `s`, both successful.
fn list_and_fetch(s: &Server) {
    assert_exit(&s.client("ls").output().unwrap(), 0);
    assert_exit(&s.get(&["a.txt"]), 0);
}

#[test]
fn log_file_dash_logs_to_stderr_only() {
    let s = Server::builder()
        .files(small_host)
        .no_log_file()
        .args(&["--log-file", "-"])
        .start();
    list_and_fetch(&s);
    let err = s.wait_stderr("disconnected");
    for needle in [
        "server started on",
        ": connected",
        ": sent \"a.txt\"",
        ": disconnected",
    ] {
        assert!(
            err.contains(needle),
            "{needle:?} missing from stderr:\n{err}"
        );
    }
    let files: Vec<String> = std::fs::read_dir(&s.work)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !files.iter().any(|f| f == "-"),
        "a file named '-': {files:?}"
    );
    assert!(!s.log.exists());
}

#[test]
fn under_journald_stderr_lines_have_a_priority_and_no_timestamp() {
    let tmp = tempfile::tempdir().unwrap();
    let err_path = tmp.path().join("stderr");
    std::fs::write(&err_path, b"").unwrap();
    let md = std::fs::metadata(&err_path).unwrap();
    let s = Server::builder()
        .files(small_host)
        .stderr_file(&err_path)
        .env("JOURNAL_STREAM", &format!("{}:{}", md.dev(), md.ino()))
        .start();
    list_and_fetch(&s);
    assert_exit(&s.get(&["nope"]), 1);
    let err = s.wait_stderr("refused GET \"nope\"");
    let first = err.lines().next().unwrap_or("");
    assert!(first.starts_with("<6>INFO  server started on"), "{err}");
    assert!(err.contains("<6>INFO  127.0.0.1:"), "{err}");
    assert!(err.contains("<4>WARN  127.0.0.1:"), "{err}");
    for line in err.lines() {
        assert!(line.starts_with('<') && !line.contains("Z INFO"), "{line}");
    }
    // The log file keeps its timestamps.
    let log = s.wait_log("refused GET");
    assert!(log.lines().all(|l| l.starts_with("20")), "{log}");
}

#[test]
fn journal_stream_naming_another_file_changes_nothing() {
    // A child whose stderr went elsewhere inherits JOURNAL_STREAM but is not
    // talking to journald.
    let tmp = tempfile::tempdir().unwrap();
    let err_path = tmp.path().join("stderr");
    std::fs::write(&err_path, b"").unwrap();
    let s = Server::builder()
        .files(small_host)
        .stderr_file(&err_path)
        .env("JOURNAL_STREAM", "1:1")
        .start();
    let err = s.wait_stderr("server started");
    assert!(
        err.starts_with("20") && err.contains("Z INFO  server started"),
        "{err}"
    );
}

#[test]
fn serve_on_a_terminal_with_v_shows_connections_and_transfers() {
    let s = Server::with_files(small_host);
    // A second server, on a terminal, serving the same folder.
    let mut c = Command::new(BIN);
    c.current_dir(&s.work)
        .env_remove("FXFER_CONFIG")
        .env("HOME", &s.work)
        .env("TERM", "xterm")
        .args([
            "serve",
            "-v",
            "--port",
            "0",
            "--log-file",
            "tty.log",
            "--dir",
        ])
        .arg(&s.host);
    let mut p = rexpect::session::spawn_command(c, Some(15_000)).expect("spawn in a pty");
    let (_, addr) = p.exp_regex(r"listening on 127\.0\.0\.1:\d+").unwrap();
    let port = addr.rsplit(':').next().unwrap();
    let o = fxfer(&s.work)
        .args(["get", "--port", port, "a.txt"])
        .output()
        .unwrap();
    assert_exit(&o, 0);
    p.exp_string(": connected").unwrap();
    p.exp_string(": sent \"a.txt\" (5 bytes").unwrap();
    p.exp_string(": disconnected").unwrap();
    p.send_control('c').unwrap();
    p.exp_string("shutting down").unwrap();
}

const UNIT: &str = include_str!("../config/fxfer.service");
const README: &str = include_str!("../README.md");

/// The values of every `KEY=` line of the unit, in order.
fn unit_values(key: &str) -> Vec<&'static str> {
    UNIT.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .collect()
}

/// The shell block under README's "Running as a service".
fn readme_service_steps() -> Vec<&'static str> {
    let section = &README[README.find("## Running as a service").expect("section")..];
    let block = &section[section.find("```sh\n").expect("shell block") + 6..];
    block[..block.find("```").unwrap()].lines().collect()
}

/// A path of the real system, moved under `root`; other words unchanged.
fn under(root: &std::path::Path, word: &str) -> String {
    match word.strip_prefix('/') {
        Some(rest) => root.join(rest).to_string_lossy().into_owned(),
        None => word.to_string(),
    }
}

/// Follows README's service install steps with `/` moved to a scratch
/// folder, then runs the unit's exact `Environment=` and `ExecStart=` lines
/// there, as systemd would (clean environment, working folder `/`), and
/// expects a server that serves the installed folder.
#[test]
fn readme_service_steps_and_unit_command_give_a_running_server() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // What any system has; /etc/fxfer and /srv/fxfer are up to README.
    for d in ["usr/local/bin", "etc/systemd/system", "srv", "var/log"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    // A release build is what README installs; the test binary stands in.
    let mut installs = 0;
    for line in readme_service_steps() {
        let line = line.split('#').next().unwrap().trim();
        let Some(cmd) = line.strip_prefix("sudo install ") else {
            continue;
        };
        let words: Vec<String> = cmd
            .split_whitespace()
            .map(|w| match w {
                "target/release/fxfer" => BIN.to_string(),
                w if w.starts_with('/') => under(root, w),
                w if !w.starts_with('-') && repo.join(w).exists() => {
                    repo.join(w).to_string_lossy().into_owned()
                }
                w => w.to_string(),
            })
            .collect();
        let o = Command::new("install").args(&words).output().unwrap();
        assert!(o.status.success(), "install {words:?}: {}", stderr(&o));
        installs += 1;
    }
    assert!(
        installs >= 4,
        "README's service steps: {:?}",
        readme_service_steps()
    );

    // The installed config, with its absolute paths moved like the rest and
    // a free port instead of 9000 (other servers may run on this machine).
    let config_path = root.join("etc/fxfer/config.toml");
    let text = std::fs::read_to_string(&config_path)
        .expect("README's steps install the config file the unit names");
    let text = text.replace("= \"/", &format!("= \"{}/", root.display()));
    assert!(text.contains("\nport = 9000\n"), "{text}");
    std::fs::write(
        &config_path,
        text.replace("\nport = 9000\n", "\nport = 0\n"),
    )
    .unwrap();
    write(&root.join("srv/fxfer"), "shared.txt", b"from the service");

    let exec = unit_values("ExecStart");
    assert_eq!(exec.len(), 1, "{exec:?}");
    let argv: Vec<String> = exec[0].split_whitespace().map(|w| under(root, w)).collect();
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir(root)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for env in unit_values("Environment") {
        let (k, v) = env.split_once('=').unwrap();
        cmd.env(k, under(root, v));
    }
    let (mut child, port, err) = spawn_listening(&mut cmd);
    let get = || {
        fxfer(root)
            .args([
                "get",
                "--port",
                &port.to_string(),
                "--dir",
                "got",
                "shared.txt",
            ])
            .output()
            .unwrap()
    };
    let o = get();
    assert_exit(&o, 0);
    assert_eq!(
        std::fs::read(root.join("got/shared.txt")).unwrap(),
        b"from the service"
    );
    // `systemctl reload`: the unit's ExecReload, as systemd runs it.
    let reload = unit_values("ExecReload");
    assert_eq!(reload.len(), 1, "{reload:?}");
    let line = reload[0].replace("$MAINPID", &child.id().to_string());
    let words: Vec<&str> = line.split_whitespace().collect();
    let st = Command::new(words[0]).args(&words[1..]).status().unwrap();
    assert!(st.success(), "{line}");
    let text = wait_for(|| err.text(), "configuration reloaded");
    let alive = child.try_wait().unwrap().is_none();
    let o = get();
    let _ = child.kill();
    let _ = child.wait();
    assert!(alive && text.contains("configuration reloaded"), "{text}");
    assert_exit(&o, 0);
    // The log went to stderr, that is the journal.
    let err = err.text();
    assert!(err.contains("sent \"shared.txt\""), "{err}");
}

/// `systemd-analyze verify` accepts the unit (with the binary it names
/// pointing at the one under test). CI installs systemd's tools; where they
/// are missing the test says so and passes.
#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let tmp = tempfile::tempdir().unwrap();
    let unit = tmp.path().join("fxfer.service");
    std::fs::write(&unit, UNIT.replace("/usr/local/bin/fxfer", BIN)).unwrap();
    // verify runs `man` for each Documentation= page: let it find ours.
    let man1 = tmp.path().join("man/man1");
    std::fs::create_dir_all(&man1).unwrap();
    let pages = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    for e in std::fs::read_dir(pages).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "1") {
            std::fs::copy(&p, man1.join(p.file_name().unwrap())).unwrap();
        }
    }
    let mut verify = Command::new("systemd-analyze");
    verify.arg("verify");
    if Command::new("man").arg("--version").output().is_err() {
        eprintln!("man not available: Documentation= pages not checked");
        verify.arg("--man=no");
    }
    let o = match verify
        .arg(&unit)
        .env("MANPATH", tmp.path().join("man"))
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("systemd-analyze not available ({e}): unit not verified");
            return;
        }
    };
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        stdout(&o),
        stderr(&o)
    );
}

/// Names `ls` prints, in order.
fn listed(s: &Server) -> Vec<String> {
    let o = s.client("ls").output().unwrap();
    assert_exit(&o, 0);
    stdout(&o)
        .lines()
        .map(|l| l.rsplit("  ").next().unwrap().to_string())
        .collect()
}

#[test]
fn sighup_reloads_the_config_for_new_connections_and_keeps_serving() {
    use fxfer::protocol::{Request, Response};
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("server.toml");
    std::fs::write(&cfg, "[server]\nhidden = false\n").unwrap();
    let mut s = Server::builder()
        .files(|h| {
            write(h, "a.txt", b"a");
            write(h, ".env", b"secret");
        })
        .args(&["--config", cfg.to_str().unwrap()])
        .start();
    assert_eq!(listed(&s), ["a.txt"]);
    // A client connected before the reload stays connected.
    let mut before = session(&s, &[]);

    std::fs::write(&cfg, "[server]\nhidden = true\n").unwrap();
    s.signal("-HUP");
    let log = s.wait_log("configuration reloaded");
    assert!(
        log.contains("SIGHUP received: reloading the configuration"),
        "{log}"
    );
    assert!(log.contains("configuration reloaded"), "{log}");
    assert!(s.alive(), "SIGHUP stopped the server: {}", s.stderr());
    assert_eq!(listed(&s), [".env", "a.txt"]);
    before
        .get_mut()
        .write_all(&req(&[Request::List {
            path: String::new(),
            recursive: false,
            digests: false,
        }]))
        .unwrap();
    // ... under the settings it started with.
    let mut names = Vec::new();
    loop {
        match Response::read_from(&mut before).unwrap() {
            Response::Entries(v) => names.extend(v.into_iter().map(|e| e.path)),
            Response::ListEnd { .. } => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(names, ["a.txt"]);

    // A config that does not load changes nothing.
    std::fs::write(&cfg, "[server]\nhidden = true\nmax_connections = 0\n").unwrap();
    s.signal("-HUP");
    let log = s.wait_log("reload failed");
    assert!(
        log.contains("reload failed: config file")
            && log.contains("line 3, key `max_connections`: must be at least 1")
            && log.contains("still serving with the previous settings"),
        "{log}"
    );
    assert_eq!(listed(&s), [".env", "a.txt"]);

    s.signal("-INT");
    let st = s.wait_exit(Duration::from_secs(15)).expect("server exits");
    assert_eq!(st.code(), Some(0));
}

#[test]
fn sighup_reopens_the_log_file_after_it_was_moved_away() {
    let mut s = Server::with_files(small_host);
    s.wait_log("server started");
    let rotated = s.work.join("server.log.1");
    std::fs::rename(&s.log, &rotated).unwrap();
    s.signal("-HUP");
    let log = s.wait_log("configuration reloaded");
    assert!(log.contains("configuration reloaded"), "new log: {log}");
    list_and_fetch(&s);
    let log = s.wait_log("disconnected");
    assert!(log.contains(": sent \"a.txt\""), "{log}");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(
        old.contains("server started") && !old.contains("sent"),
        "{old}"
    );
    assert!(s.alive());
}

/// Runs `cmd` to the end with stderr going to a file that JOURNAL_STREAM
/// names, as under systemd; returns its exit code and stderr.
fn run_under_journald(cmd: &mut Command) -> (Option<i32>, String) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("stderr");
    let file = std::fs::File::create(&path).unwrap();
    let md = file.metadata().unwrap();
    let st = cmd
        .env("JOURNAL_STREAM", format!("{}:{}", md.dev(), md.ino()))
        .stderr(file)
        .status()
        .unwrap();
    (st.code(), std::fs::read_to_string(&path).unwrap())
}

#[test]
fn under_journald_errors_that_end_a_run_have_error_priority() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = run_under_journald(fxfer(dir.path()).args([
        "serve",
        "--port",
        "0",
        "--log-file",
        "-",
        "--dir",
        "no/such/dir",
    ]));
    assert_eq!(code, Some(2));
    assert!(
        err.starts_with("<3>fxfer: cannot serve no/such/dir"),
        "{err}"
    );
    let port = dead_port().to_string();
    let (code, err) = run_under_journald(fxfer(dir.path()).args(["ls", "--port", &port]));
    assert_eq!(code, Some(3));
    assert!(err.starts_with("<3>fxfer: cannot connect"), "{err}");
}

#[test]
fn the_service_manager_hears_ready_reloading_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("notify");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let next = || {
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut s = Server::builder()
        .files(small_host)
        .env("NOTIFY_SOCKET", path.to_str().unwrap())
        .start();
    let msg = next();
    assert!(msg.starts_with("READY=1\nSTATUS=serving "), "{msg}");
    assert!(msg.contains(&format!("on 127.0.0.1:{}", s.port)), "{msg}");
    s.signal("-HUP");
    let msg = next();
    assert!(msg.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{msg}");
    assert!(next().starts_with("READY=1\n"));
    s.signal("-TERM");
    assert_eq!(next(), "STOPPING=1\n");
    assert_eq!(
        s.wait_exit(Duration::from_secs(15)).unwrap().code(),
        Some(0)
    );
}

/// What the unit's sandbox must leave the server: the notification socket
/// when systemd waits for it, and a stop timeout longer than the grace
/// period.
#[test]
fn the_unit_sandbox_leaves_the_server_what_it_needs() {
    let families = unit_values("RestrictAddressFamilies").join(" ");
    assert!(
        families.contains("AF_INET") && families.contains("AF_INET6"),
        "{families}"
    );
    if unit_values("Type").contains(&"notify") {
        assert!(
            families.contains("AF_UNIX"),
            "Type=notify needs AF_UNIX: {families}"
        );
    }
    let stop: u64 = unit_values("TimeoutStopSec")[0]
        .trim_end_matches('s')
        .parse()
        .unwrap();
    assert!(
        stop > fxfer::config::DEFAULT_GRACE_SECS,
        "TimeoutStopSec={stop}"
    );
    assert_eq!(unit_values("KillSignal"), ["SIGTERM"]);
    // The install steps in the unit's own comments are README's.
    let in_unit: Vec<&str> = UNIT
        .lines()
        .filter_map(|l| l.strip_prefix("#   sudo install "))
        .map(|l| l.split('#').next().unwrap().trim())
        .collect();
    let in_readme: Vec<&str> = readme_service_steps()
        .into_iter()
        .filter_map(|l| l.strip_prefix("sudo install "))
        .map(|l| l.split('#').next().unwrap().trim())
        .collect();
    assert_eq!(in_unit, in_readme);
}

#[test]
fn a_signal_right_after_the_address_is_printed_is_handled() {
    for _ in 0..5 {
        let mut s = Server::with_files(small_host);
        // No waiting: the address line is the first sign of life.
        s.signal("-HUP");
        let log = s.wait_log("configuration reloaded");
        assert!(s.alive(), "SIGHUP at start killed the server: {log}");
        s.signal("-TERM");
        let st = s.wait_exit(Duration::from_secs(15)).expect("server exits");
        assert_eq!(st.code(), Some(0), "{}", s.log_text());
    }
}
