//! Man pages: `man/fxfer.1` and one page per subcommand (`fxfer-get.1`,
//! ...), generated from the clap definitions with clap_mangen plus the
//! sections clap knows nothing about (exit status, environment, files,
//! signals). The test fails when a committed page is stale; run it with
//! `FXFER_BLESS=1` to rewrite them.

use clap::CommandFactory;
use fxfer::cli::{Cli, EXIT_CODES};
use roff::{bold, italic, roman, Inline, Roff};

use crate::util::bless_write;

/// One `.TP` entry: a bold term and its description.
fn entry(r: &mut Roff, term: &str, text: &str) {
    r.control("TP", []);
    r.text([bold(term)]);
    r.text([roman(text)]);
}

fn exit_status(r: &mut Roff) {
    r.control("SH", ["EXIT STATUS"]);
    for line in EXIT_CODES.lines().skip(1) {
        let (code, text) = line.trim().split_once(' ').unwrap();
        entry(r, code, text.trim());
    }
}

fn see_also(r: &mut Roff, pages: &[&str]) {
    r.control("SH", ["SEE ALSO"]);
    let mut inl: Vec<Inline> = Vec::new();
    for (i, p) in pages.iter().enumerate() {
        if i > 0 {
            inl.push(roman(", "));
        }
        inl.push(bold(*p));
        inl.push(roman("(1)"));
    }
    inl.push(roman(
        "; README.md and docs/PROTOCOL.md in the source distribution.",
    ));
    r.text(inl);
}

/// The sections after OPTIONS for the page of `name` ("fxfer" or a
/// subcommand).
fn extra(name: &str, subcommands: &[String]) -> Roff {
    let mut r = Roff::new();
    if name == "fxfer" {
        r.control("SH", ["ENVIRONMENT"]);
        entry(
            &mut r,
            "FXFER_CONFIG",
            "The config file to use when --config is not given.",
        );
        entry(
            &mut r,
            "FXFER_TOKEN",
            "The shared token, instead of --token-file.",
        );
        entry(
            &mut r,
            "FXFER_LOG",
            "Log filter (error, warn, info, debug, trace); overrides -q and -v.",
        );
        entry(
            &mut r,
            "FXFER_COMPLETE",
            "Set by the completion scripts (fxfer completions SHELL) to the shell's name: \
             fxfer then prints completions for the command line after -- instead of running \
             it.",
        );
        entry(
            &mut r,
            "NO_COLOR",
            "When set and not empty, nothing is coloured.",
        );
        entry(
            &mut r,
            "JOURNAL_STREAM",
            "Set by systemd. When it names stderr, fxfer serve writes its log lines there \
             without a timestamp of their own and with a syslog priority prefix.",
        );
        r.control("SH", ["FILES"]);
        r.text([roman(
            "Defaults come from the first config file found: --config PATH, $FXFER_CONFIG, \
             ./fxfer.toml, then $XDG_CONFIG_HOME/fxfer/config.toml (or \
             ~/.config/fxfer/config.toml). Its [server] table holds defaults for fxfer serve, \
             its [client] table for the other subcommands; keys are the long flag names with \
             underscores (max_connections). Flags always win.",
        )]);
    }
    match name {
        "fxfer-serve" => {
            r.control("SH", ["SIGNALS"]);
            entry(
                &mut r,
                "SIGINT, SIGTERM",
                "Stop accepting, name the clients still connected, let transfers in flight \
                 finish for the grace period, exit 0. A second signal exits at once.",
            );
            entry(
                &mut r,
                "SIGHUP",
                "Read the config file again and reopen the log file. New connections get the \
                 new settings; open ones keep theirs. The listening address needs a restart. \
                 A config that does not load changes nothing.",
            );
            r.control("SH", ["LOGGING"]);
            r.text([roman(
                "Every major action goes to the log file (--log-file, appended to). On a \
                 terminal stderr shows warnings, with -v connections and transfers too. \
                 Without a terminal, or with --log-file -, stderr gets the whole log; when \
                 $JOURNAL_STREAM names stderr (under systemd), its lines carry a syslog \
                 priority and no timestamp of their own.",
            )]);
        }
        "fxfer-get" => {
            r.control("SH", ["SIGNALS"]);
            entry(
                &mut r,
                "SIGINT, SIGTERM",
                "Stop cleanly: files that arrived whole are put in place, large partial files \
                 stay resumable, one line says what was kept; exit 130. Running the same \
                 command again resumes. A second signal exits at once.",
            );
            r.control("SH", ["FILES"]);
            r.text([
                roman("."),
                italic("NAME"),
                roman("."),
                italic("HASH"),
                roman(".fxfer-part and ."),
                italic("NAME"),
                roman("."),
                italic("HASH"),
                roman(
                    ".fxfer-resume beside a file in the download folder hold an interrupted \
                     download (HASH: 16 hex digits of the BLAKE3 of the name; NAME shortened \
                     to fit); the next get of that file resumes from them. A file appears \
                     under its own name only once it is complete and verified.",
                ),
            ]);
        }
        "fxfer-shell" => {
            r.control("SH", ["KEYS"]);
            for (keys, what) in [
                (
                    "Up, Down, PageUp, PageDown, Home, End",
                    "Move in the current folder.",
                ),
                ("Enter, Right", "Open the folder under the cursor."),
                (
                    "Left, Backspace",
                    "Go up to the folder above (Backspace first deletes the filter).",
                ),
                (
                    "Space",
                    "Tick or untick a file, or everything beneath a folder.",
                ),
                ("Ctrl-T", "Tick or untick everything shown."),
                (
                    "Enter on a file",
                    "Download what is ticked (or that file), parallel or serial.",
                ),
                (
                    "any other character",
                    "Filter the current folder by name (a glob such as *.log, or any part of \
                     the name); Esc clears the filter.",
                ),
                ("Ctrl-R", "Fetch the server's listing again."),
                (
                    "Ctrl-C during a download",
                    "Stop it, keeping finished files and partial data; the unfinished files \
                     stay ticked, so Enter resumes them.",
                ),
                (
                    "Esc, Ctrl-C",
                    "The menu: browse, change download folder, server info, quit.",
                ),
            ] {
                entry(&mut r, keys, what);
            }
        }
        "fxfer-completions" => {
            r.control("SH", ["NOTES"]);
            r.text([roman(
                "The script runs fxfer (from PATH) on every Tab with FXFER_COMPLETE set. Names \
                 after get and ls come from the server the command line names (--ip, --port, \
                 --token-file, --config) or the config file's; a server that does not answer \
                 within 1.5 seconds adds nothing.",
            )]);
        }
        _ => {}
    }
    exit_status(&mut r);
    let mut refs: Vec<&str> = if name == "fxfer" {
        subcommands.iter().map(String::as_str).collect()
    } else {
        vec!["fxfer"]
    };
    refs.retain(|p| *p != name);
    see_also(&mut r, &refs);
    r
}

/// Every page, as (file name, roff text).
fn pages() -> Vec<(String, Vec<u8>)> {
    let mut top = Cli::command().disable_help_subcommand(true);
    top.build();
    let mut cmds = vec![top.clone()];
    cmds.extend(top.get_subcommands().filter(|c| !c.is_hide_set()).cloned());
    let names: Vec<String> = cmds[1..]
        .iter()
        .map(|c| format!("fxfer-{}", c.get_name()))
        .collect();
    cmds.into_iter()
        .map(|cmd| {
            let man = clap_mangen::Man::new(cmd.clone()).manual("fxfer manual");
            let name = man.get_filename().trim_end_matches(".1").to_string();
            let mut out = Vec::new();
            man.render_title(&mut out).unwrap();
            man.render_name_section(&mut out).unwrap();
            man.render_synopsis_section(&mut out).unwrap();
            man.render_description_section(&mut out).unwrap();
            man.render_options_section(&mut out).unwrap();
            if cmd.has_subcommands() {
                man.render_subcommands_section(&mut out).unwrap();
            }
            extra(&name, &names).to_writer(&mut out).unwrap();
            if cmd.get_version().is_some() {
                man.render_version_section(&mut out).unwrap();
            }
            (man.get_filename(), out)
        })
        .collect()
}

#[test]
fn committed_man_pages_are_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let pages = pages();
    let bless = std::env::var_os("FXFER_BLESS").is_some();
    if bless {
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".1") && !pages.iter().any(|(f, _)| *f == name) {
                std::fs::remove_file(p).unwrap();
            }
        }
    }
    for (file, text) in &pages {
        let path = dir.join(file);
        if bless {
            bless_write(&path, text);
        }
        let committed = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run FXFER_BLESS=1 cargo test)", path.display()));
        assert!(
            &committed == text,
            "{} is stale: run FXFER_BLESS=1 cargo test committed_man_pages",
            path.display()
        );
    }
    // No page for a subcommand that is gone.
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".1"))
        .collect();
    on_disk.sort();
    let mut expected: Vec<String> = pages.into_iter().map(|(f, _)| f).collect();
    expected.sort();
    assert_eq!(
        on_disk, expected,
        "run FXFER_BLESS=1 cargo test committed_man_pages"
    );
}

/// The pages render without warnings where groff is installed.
#[test]
fn man_pages_render_cleanly() {
    for (file, text) in pages() {
        let child = std::process::Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            eprintln!("groff not available: pages not rendered");
            return;
        };
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&text).unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(
            o.status.success() && o.stderr.is_empty(),
            "{file}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
