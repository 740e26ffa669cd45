//! Tab completion, including the server's own file names.
//!
//! We use clap_complete's dynamic completion: the script a shell sources
//! (`fxfer completions SHELL`, committed in `completions/`) is a few lines
//! that call `fxfer` itself on every Tab with [`VAR`] set; the binary then
//! completes from the same clap definitions as `--help` (so flags and
//! subcommands can never go stale), and the names after `get` and `ls`
//! come from the server. Static scripts cannot ask a server anything.
//!
//! The server is the one the command line being completed names (`--ip`,
//! `--port`, `--token-file`, `--config`), else the config file's, as the
//! command itself would use. Asking it is bounded by [`DEADLINE`] (or
//! [`DEADLINE_VAR`], in milliseconds, for a server far away or a machine
//! under load): with no server, a dead address or a server that never
//! answers, Tab offers nothing rather than hanging the shell.

use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

use clap_complete::engine::CompletionCandidate;
use clap_complete::env::Shells;

use clap::CommandFactory;

use crate::cli::{Cli, ServerAddrArgs};
use crate::client::Connection;
use crate::config::{self, ServerAddr};
use crate::protocol::{Entry, EntryKind};

/// The environment variable that asks the binary for completions.
pub const VAR: &str = "FXFER_COMPLETE";
/// The longest a Tab waits for the server, connecting included.
pub const DEADLINE: Duration = Duration::from_millis(1500);
/// The environment variable that sets another deadline, in milliseconds.
pub const DEADLINE_VAR: &str = "FXFER_COMPLETE_DEADLINE_MS";

/// [`DEADLINE`], unless [`DEADLINE_VAR`] holds a whole number of
/// milliseconds (anything else is ignored: a Tab has no way to report it).
fn deadline() -> Duration {
    crate::config::millis_from_env(DEADLINE_VAR, DEADLINE)
}

/// The shell asking, as [`VAR`] named it (clap_complete clears the
/// variable before the completers run).
static SHELL: OnceLock<String> = OnceLock::new();

/// When a shell is asking for completions, answers and exits; otherwise
/// returns at once. Call it first thing in `main`.
pub fn answer_if_asked() {
    let Some(shell) = std::env::var_os(VAR).filter(|v| !v.is_empty()) else {
        return;
    };
    let shell = Path::new(&shell)
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let _ = SHELL.set(shell);
    clap_complete::CompleteEnv::with_factory(Cli::command)
        .var(VAR)
        .bin("fxfer")
        .completer("fxfer")
        .complete();
}

/// Names `fxfer get` takes: files, and folders (to descend into, or to
/// fetch whole with `-r`).
pub fn get_names(current: &OsStr) -> Vec<CompletionCandidate> {
    remote(current, false)
}

/// Folders `fxfer ls` lists.
pub fn ls_folders(current: &OsStr) -> Vec<CompletionCandidate> {
    remote(current, true)
}

/// Writes the script that makes `shell` complete `fxfer` (an unknown
/// shell is a usage error caught by clap before this).
pub fn registration(shell: &str, out: &mut dyn Write) -> io::Result<()> {
    let shells = Shells::builtins();
    let Some(c) = shells.completer(shell) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("no completion for shell '{shell}'"),
        ));
    };
    // `fxfer`, not this binary's path: the script keeps working after the
    // binary moves, and the committed copies are the same on every machine.
    c.write_registration(VAR, "fxfer", "fxfer", "fxfer", out)?;
    if shell == "zsh" {
        // Autoloaded from $fpath, the file is the body of `_fxfer`: it
        // must also complete on that first call, not only register.
        writeln!(
            out,
            "if [[ \"${{funcstack[1]}}\" == \"_fxfer\" ]]; then\n    \
             _clap_dynamic_completer_fxfer \"$@\"\nfi"
        )?;
    }
    Ok(())
}

/// The words of the command line being completed: what the shell passed
/// after `--`.
fn words() -> Vec<OsString> {
    let mut args = std::env::args_os().skip_while(|a| a != "--");
    args.next();
    args.collect()
}

/// The server the command line names, resolved as the command would.
fn server(words: &[OsString]) -> Option<ServerAddr> {
    let mut addr = ServerAddrArgs::default();
    let mut config_file: Option<PathBuf> = None;
    let mut it = words.iter().map(|w| w.to_string_lossy().into_owned());
    while let Some(w) = it.next() {
        let (flag, inline) = match w.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (w.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| it.next());
        match flag.as_str() {
            "--ip" => addr.ip = value(),
            "--port" => addr.port = value().and_then(|p| p.parse().ok()),
            "--token-file" => addr.token_file = value().map(PathBuf::from),
            "--config" => config_file = value().map(PathBuf::from),
            _ => {}
        }
    }
    let loaded = config::load(config_file.as_deref()).ok()?;
    ServerAddr::resolve(&addr, &loaded).ok()
}

/// One folder of the server, or nothing if it does not answer in time.
fn list(server: ServerAddr, folder: String) -> Option<Vec<Entry>> {
    let (tx, rx) = mpsc::channel();
    let deadline = deadline();
    // A thread, so that even a name lookup that hangs cannot hold us past
    // the deadline: the process exits right after printing.
    std::thread::spawn(move || {
        let got = Connection::connect(&server, &crate::client::Limits::new(deadline)).and_then(
            |mut c| {
                let l = c.list(&folder, false);
                c.quit();
                l
            },
        );
        let _ = tx.send(got);
    });
    rx.recv_timeout(deadline).ok()?.ok()
}

fn remote(current: &OsStr, folders_only: bool) -> Vec<CompletionCandidate> {
    let bash = SHELL.get().is_some_and(|s| s == "bash");
    // Shells hand over the word as typed, backslashes and quotes included;
    // only bash also takes its candidates as they are (zsh and fish quote
    // them themselves).
    let typed = unescape(&current.to_string_lossy());
    let folder = typed.rsplit_once('/').map_or("", |(dir, _)| dir);
    let words = words();
    let Some(server) = server(&words) else {
        return Vec::new();
    };
    let Some(entries) = list(server, folder.to_string()) else {
        return Vec::new();
    };
    let mut out: Vec<CompletionCandidate> = entries
        .iter()
        .filter(|e| !folders_only || e.kind == EntryKind::Dir)
        .filter(|e| e.path.starts_with(typed.as_str()))
        .map(|e| {
            let (value, help) = match e.kind {
                EntryKind::Dir => (format!("{}/", e.path), "folder".to_string()),
                EntryKind::File => (e.path.clone(), crate::human::size(e.size)),
            };
            let value = if bash { escape(&value) } else { value };
            CompletionCandidate::new(value).help(Some(help.into()))
        })
        .collect();
    out.sort_by(|a, b| a.get_value().cmp(b.get_value()));
    out
}

/// Characters bash would split or expand in a word.
fn needs_backslash(c: char) -> bool {
    !(c.is_alphanumeric() || "/._-+,:@%=".contains(c))
}

/// A name as a bash word: each special character behind a backslash (bash
/// inserts candidates as they are).
fn escape(name: &str) -> String {
    let mut s = String::with_capacity(name.len());
    for c in name.chars() {
        if needs_backslash(c) {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

/// The word a shell passes, as the name it means: backslashes and quotes
/// removed.
fn unescape(word: &str) -> String {
    let mut s = String::with_capacity(word.len());
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => s.extend(chars.next()),
            '\'' | '"' => {}
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<OsString> {
        w.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_server_comes_from_the_line_being_completed() {
        // No config file can leak in: an explicit one that is empty.
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("c.toml");
        std::fs::write(&cfg, "[client]\nport = 7001\n").unwrap();
        let cfg = cfg.to_str().unwrap();
        let s = server(&words(&[
            "fxfer", "get", "--config", cfg, "--ip", "10.0.0.5", "x",
        ]))
        .unwrap();
        assert_eq!((s.host.as_str(), s.port), ("10.0.0.5", 7001));
        let s = server(&words(&["fxfer", "ls", "--port=7100", "--config", cfg, ""])).unwrap();
        assert_eq!(s.port, 7100);
        let s = server(&words(&["fxfer", "get", "--config", cfg, "--ip", "h:7200"])).unwrap();
        assert_eq!((s.host.as_str(), s.port), ("h", 7200));
    }

    #[test]
    fn bash_words_round_trip() {
        let name = "my file (1)$.txt";
        assert_eq!(escape(name), r"my\ file\ \(1\)\$.txt");
        assert_eq!(unescape(&escape(name)), name);
        assert_eq!(unescape("'my fi"), "my fi");
        assert_eq!(escape("logs/2026-11/a_b.log"), "logs/2026-11/a_b.log");
    }

    #[test]
    fn every_shell_has_a_script() {
        for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
            let mut out = Vec::new();
            registration(shell, &mut out).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains(VAR), "{shell}: {text}");
        }
        assert!(registration("tcsh", &mut Vec::new()).is_err());
    }
}
