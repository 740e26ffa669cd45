use crate::util::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longer than any completion may take (the binary gives the server 1.5 s):
/// past this, the completion counts as hung.
const HUNG: Duration = Duration::from_secs(8);

/// Runs the completion entry point exactly as the scripts in
/// `completions/` call it for `shell`: `FXFER_COMPLETE=SHELL fxfer --
/// WORDS...` with that shell's variables; `words` ends with the word being
/// completed. Returns the offered values (help text stripped) and whether
/// it answered before [`HUNG`].
fn complete(work: &Path, shell: &str, words: &[&str]) -> (Vec<String>, bool) {
    let mut c = fxfer(work);
    c.env("FXFER_COMPLETE", shell).arg("--").args(words);
    let index = (words.len() - 1).to_string();
    match shell {
        "bash" => {
            c.env("_CLAP_COMPLETE_INDEX", &index)
                .env("_CLAP_COMPLETE_COMP_TYPE", "9")
                .env("_CLAP_COMPLETE_SPACE", "false")
                .env("_CLAP_IFS", "\x0b");
        }
        "zsh" => {
            c.env("_CLAP_COMPLETE_INDEX", &index).env("_CLAP_IFS", "\n");
        }
        _ => {}
    }
    let mut child = c.stdout(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + HUNG;
    let mut in_time = true;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            in_time = false;
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        !in_time || out.status.success(),
        "{shell} {words:?}: {out:?}"
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let values = match shell {
        "bash" => text.split('\x0b').map(str::to_string).collect(),
        // zsh: "value:help" (a ':' in a value is escaped); fish: "value\thelp".
        "zsh" => text
            .lines()
            .map(|l| l.split(':').next().unwrap().to_string())
            .collect(),
        _ => text
            .lines()
            .map(|l| l.split('\t').next().unwrap().to_string())
            .collect(),
    };
    (values, in_time)
}

fn names_host(h: &Path) {
    write(h, "a.txt", b"a");
    write(h, "sub dir/b c.txt", b"b");
    write(h, "logs/x.log", b"x");
    write(h, "logs/2026/y.log", b"y");
}

fn names(values: &[String]) -> Vec<&str> {
    let mut v: Vec<&str> = values
        .iter()
        .map(String::as_str)
        .filter(|v| !v.is_empty() && !v.starts_with('-'))
        .collect();
    v.sort();
    v
}

#[test]
fn get_and_ls_complete_the_servers_names_in_bash_zsh_and_fish() {
    let s = Server::with_files(names_host);
    let port = s.port.to_string();
    let p = port.as_str();
    for shell in ["bash", "zsh", "fish"] {
        // bash inserts what it is given: names come escaped for it.
        let sub = if shell == "bash" {
            r"sub\ dir/"
        } else {
            "sub dir/"
        };
        let (v, _) = complete(&s.work, shell, &["fxfer", "get", "--port", p, ""]);
        assert_eq!(names(&v), ["a.txt", "logs/", sub], "{shell}");
        // Flags still complete from the same command line.
        assert!(v.iter().any(|f| f == "--parallel"), "{shell}: {v:?}");
        let (v, _) = complete(&s.work, shell, &["fxfer", "get", "--port", p, "logs/"]);
        assert_eq!(names(&v), ["logs/2026/", "logs/x.log"], "{shell}");
        // The word as typed, with a backslash or a quote: shells pass it so.
        for typed in [r"sub\ d", "'sub d", "\"sub d"] {
            let port = format!("--port={p}");
            let (v, _) = complete(&s.work, shell, &["fxfer", "get", &port, typed]);
            assert_eq!(names(&v), [sub], "{shell} {typed}");
        }
        // ls and get -r: folders are what they take.
        let (v, _) = complete(&s.work, shell, &["fxfer", "ls", "--port", p, ""]);
        assert_eq!(names(&v), ["logs/", sub], "{shell}");
        let (v, _) = complete(&s.work, shell, &["fxfer", "get", "-r", "--port", p, "l"]);
        assert_eq!(names(&v), ["logs/"], "{shell}");
    }
}

/// A script in `completions/`.
fn committed(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("completions")
        .join(name)
}

/// A real `shell` in `work` that finds this build as `fxfer` on its PATH,
/// as the scripts expect of an installed fxfer.
fn real_shell(shell: &str, work: &Path) -> Command {
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = Command::new(shell);
    // The server is there: on a loaded machine a debug build's handshake
    // can take longer than a Tab's usual 1.5 s, and the names would then
    // be missing for want of time, not of a server.
    c.current_dir(work)
        .env("PATH", path)
        .env("HOME", work)
        .env(fxfer::complete::DEADLINE_VAR, "30000")
        .env_remove("FXFER_CONFIG");
    c
}

#[test]
fn the_committed_bash_script_completes_names_in_a_real_bash() {
    let s = Server::with_files(names_host);
    let script = committed("fxfer.bash");
    // What bash sets before calling a -F function: the words, the index of
    // the current one, and the function's arguments (command, word, word
    // before).
    let run = format!(
        r#"source '{}'
COMP_WORDS=(fxfer get --port {p} 'sub\ d'); COMP_CWORD=4; COMP_TYPE=9
_clap_complete_fxfer fxfer 'sub\ d' {p}
printf '<%s>\n' "${{COMPREPLY[@]}}"
COMP_WORDS=(fxfer get --port {p} logs/2); COMP_CWORD=4
_clap_complete_fxfer fxfer logs/2 {p}
printf '<%s>\n' "${{COMPREPLY[@]}}""#,
        script.display(),
        p = s.port
    );
    let o = real_shell("bash", &s.work)
        .args(["--norc", "--noprofile", "-c", &run])
        .output()
        .unwrap();
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "<sub\\ dir/>\n<logs/2026/>\n");
}

#[test]
fn the_config_files_server_is_asked_when_the_line_names_none() {
    let s = Server::with_files(names_host);
    std::fs::write(
        s.work.join("fxfer.toml"),
        format!("[client]\nport = {}\n", s.port),
    )
    .unwrap();
    let (v, _) = complete(&s.work, "fish", &["fxfer", "get", "a"]);
    assert_eq!(names(&v), ["a.txt"]);
}

#[test]
fn with_no_server_completion_offers_no_names_and_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let refused = free_port().to_string();
    // A server that never answers: the kernel completes the handshake
    // (backlog) but nothing ever reads or writes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = listener.local_addr().unwrap().port().to_string();
    for port in [&refused, &silent] {
        for shell in ["bash", "zsh", "fish"] {
            let (v, in_time) = complete(dir.path(), shell, &["fxfer", "get", "--port", port, ""]);
            assert!(in_time, "{shell} hung on port {port}");
            assert!(names(&v).is_empty(), "{shell}: {v:?}");
            assert!(v.iter().any(|f| f == "--parallel"), "{shell}: {v:?}");
        }
    }
}

/// The committed fish script in a real fish, where fish is installed.
#[test]
fn the_committed_fish_script_completes_names_in_a_real_fish() {
    if Command::new("fish").arg("--version").output().is_err() {
        eprintln!("fish not installed: skipped");
        return;
    }
    let s = Server::with_files(names_host);
    let script = committed("fxfer.fish");
    let run = format!(
        "source '{}'; complete -C 'fxfer get --port {p} sub\\ d'; complete -C 'fxfer ls --port {p} l'",
        script.display(),
        p = s.port
    );
    let o = real_shell("fish", &s.work)
        .args(["--no-config", "-c", &run])
        .output()
        .unwrap();
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "sub dir/\tfolder\nlogs/\tfolder\n");
}
