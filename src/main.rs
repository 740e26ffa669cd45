//! The `fxfer` binary: parse, set up logging, dispatch, and turn the result
//! into one line on stderr and an exit code. No logic lives here.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;
use serde::Serialize;

use fxfer::cli::{Cli, Command, CompletionsArgs, GetArgs, LsArgs, ServeArgs, ShellArgs};
use fxfer::client::Connection;
use fxfer::config::{self, GetSettings, Loaded, Output, ServerAddr, ServerSettings};
use fxfer::error::{Error, Exit};
use fxfer::progress::Progress;
use fxfer::protocol::EntryKind;
use fxfer::server::Server;
use fxfer::shell::{self, ShellSettings};
use fxfer::transfer::Report;
use fxfer::{human, logging, paths, transfer};

fn main() -> ExitCode {
    // A shell asking for completions (see `complete.rs`): answer and exit.
    fxfer::complete::answer_if_asked();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code.into(),
        Err(e) => {
            // A closed stdout (`fxfer ls | head`) is not an error.
            if let Error::Io { cause, .. } = &e {
                if cause.kind() == io::ErrorKind::BrokenPipe {
                    return Exit::Success.into();
                }
            }
            let prefix = logging::journal_prefix(log::Level::Error);
            let _ = writeln!(
                io::stderr(),
                "{prefix}fxfer: {}",
                paths::display_safe(&e.to_string())
            );
            e.exit().into()
        }
    }
}

fn run(cli: Cli) -> Result<Exit, Error> {
    // NO_COLOR (https://no-color.org) and pipes: no colour anywhere.
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        console::set_colors_enabled(false);
        console::set_colors_enabled_stderr(false);
    }
    if let Command::Serve(_) = cli.command {
        // The server sets up its own logging once it knows its log file.
    } else {
        logging::init_client(cli.verbose, cli.quiet);
        use std::io::IsTerminal;
        if io::stdin().is_terminal() && io::stderr().is_terminal() {
            fxfer::transport::known::set_prompt(Box::new(|addr, fp| {
                fxfer::progress::with_bars_hidden(|| shell::confirm_new_server(addr, fp))
            }));
        }
    }
    match &cli.command {
        Command::Completions(a) => completions(a),
        Command::Serve(a) => serve(&cli, a),
        Command::Ls(a) => ls(&cli, a),
        Command::Get(a) => get(&cli, a),
        Command::Shell(a) => shell_cmd(&cli, a),
    }
}

fn load_config(cli: &Cli) -> Result<Loaded, Error> {
    let loaded = config::load(cli.config.as_deref())?;
    if let Some(p) = &loaded.path {
        log::info!("using config file {}", p.display());
    }
    Ok(loaded)
}

fn completions(a: &CompletionsArgs) -> Result<Exit, Error> {
    let mut out = io::stdout().lock();
    fxfer::complete::registration(&a.shell.to_string(), &mut out)
        .and_then(|_| out.flush())
        .map_err(|e| Error::io("cannot write to stdout", e))?;
    Ok(Exit::Success)
}

fn serve(cli: &Cli, a: &ServeArgs) -> Result<Exit, Error> {
    let loaded = load_config(cli)?;
    let settings = ServerSettings::resolve(a, &loaded)?;
    logging::init_server(settings.log_file.as_deref(), cli.verbose, cli.quiet)?;
    if let Some(p) = &loaded.path {
        log::info!("using config file {}", p.display());
    }
    // SIGHUP reads the same config file again; the flags still win.
    let (explicit, args) = (cli.config.clone(), a.clone());
    let server = Server::bind(settings)
        .inspect_err(|e| log::error!(target: logging::FILE_ONLY, "cannot start: {e}"))?
        .reload_with(Box::new(move || {
            let loaded = config::load(explicit.as_deref())?;
            if let Some(p) = &loaded.path {
                log::info!("reading config file {}", p.display());
            }
            ServerSettings::resolve(&args, &loaded)
        }));
    // Exactly one line on stdout: scripts and tests read the port from it.
    let mut out = io::stdout().lock();
    writeln!(out, "listening on {}", server.local_addr())
        .and_then(|_| out.flush())
        .map_err(|e| Error::io("cannot write to stdout", e))?;
    drop(out);
    server.run()?;
    Ok(Exit::Success)
}

#[derive(Serialize)]
struct JsonEntry<'a> {
    name: &'a str,
    kind: &'static str,
    size: u64,
    mtime: i64,
}

fn ls(cli: &Cli, a: &LsArgs) -> Result<Exit, Error> {
    let loaded = load_config(cli)?;
    let server = ServerAddr::resolve(&a.server, &loaded)?;
    let mut conn = Connection::connect(&server, &config::limits(&a.limits, &loaded)?)?;
    let path = a.path.as_deref().unwrap_or("").trim_end_matches('/');
    let mut entries = conn.list(path, a.recursive).map_err(|e| match e {
        // Name what could not be listed.
        Error::Remote(f) if !path.is_empty() => Error::Remote(fxfer::protocol::ErrorFrame::new(
            f.code,
            format!("{}: {}", paths::display_safe(path), f.message),
        )),
        e => e,
    })?;
    conn.quit();
    entries.sort_by(|x, y| x.path.cmp(&y.path));

    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let write_err = |e| Error::io("cannot write to stdout", e);
    if a.json {
        let json: Vec<JsonEntry> = entries
            .iter()
            .map(|e| JsonEntry {
                name: &e.path,
                kind: match e.kind {
                    EntryKind::File => "file",
                    EntryKind::Dir => "dir",
                },
                size: e.size,
                mtime: e.mtime,
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &json).map_err(|e| write_err(e.into()))?;
        writeln!(out).map_err(write_err)?;
    } else {
        for e in &entries {
            let (size, suffix) = match e.kind {
                EntryKind::File => (human::size(e.size), ""),
                EntryKind::Dir => ("-".to_string(), "/"),
            };
            writeln!(
                out,
                "{size:>10}  {}  {}{suffix}",
                human::time(e.mtime),
                paths::display_safe(&e.path)
            )
            .map_err(write_err)?;
        }
        if entries.is_empty() && !cli.quiet {
            if path.is_empty() {
                eprintln!("fxfer: the hosted folder is empty");
            } else {
                eprintln!("fxfer: folder {} is empty", paths::display_safe(path));
            }
        }
    }
    out.flush().map_err(write_err)?;
    Ok(Exit::Success)
}

fn get(cli: &Cli, a: &GetArgs) -> Result<Exit, Error> {
    let loaded = load_config(cli)?;
    let settings = GetSettings::resolve(a, &loaded)?;
    let names = names(a)?;
    // Ctrl-C stops cleanly: what arrived is kept and can be resumed.
    fxfer::interrupt::install().map_err(|e| Error::io("cannot install signal handler", e))?;
    // With -o -, stdout carries the file: no lines of ours on it.
    let to_stdout = settings.output == Some(Output::Stdout);
    if to_stdout && a.json {
        return Err(Error::Usage(
            "'--json' and '-o -' cannot share stdout".into(),
        ));
    }
    let progress = Progress::new(cli.quiet, a.json || to_stdout);
    let report = match transfer::get(&settings, &names, &progress) {
        Ok(r) => r,
        Err(_) if fxfer::interrupt::requested() => {
            progress.finish("");
            let why = "interrupted before any file arrived; nothing was kept";
            if a.json {
                print_json(&serde_json::json!({ "error": why, "files": [] }))?;
            }
            let _ = writeln!(io::stderr(), "fxfer: {why}");
            return Ok(Exit::Interrupted);
        }
        Err(e) if a.json => {
            // Scripts still get a JSON document saying what went wrong.
            print_json(&serde_json::json!({ "error": e.to_string(), "files": [] }))?;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    progress.finish(&report.summary());
    if report.interrupted && !to_stdout {
        let _ = writeln!(io::stderr(), "fxfer: {}", report.interrupted_message());
    }
    if a.json {
        print_json(&get_json(&report))?;
    }
    Ok(if report.interrupted {
        Exit::Interrupted
    } else if report.unreachable() {
        Exit::Connection
    } else if report.failed() > 0 {
        Exit::Failed
    } else {
        Exit::Success
    })
}

/// The names on the command line, then those of `--files-from`.
fn names(a: &GetArgs) -> Result<Vec<String>, Error> {
    let mut names = a.names.clone();
    if let Some(p) = &a.files_from {
        let text = if p.as_os_str() == "-" {
            io::read_to_string(io::stdin())
        } else {
            std::fs::read_to_string(p)
        }
        .map_err(|e| {
            Error::Usage(format!(
                "cannot read --files-from {}: {}",
                p.display(),
                fxfer::error::describe_io(&e)
            ))
        })?;
        names.extend(fxfer::select::read_names(&text));
    }
    if names.is_empty() {
        return Err(Error::Usage(
            "no names to download (the --files-from list is empty)".into(),
        ));
    }
    Ok(names)
}

fn print_json(v: &serde_json::Value) -> Result<(), Error> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)
        .map_err(io::Error::from)
        .and_then(|_| writeln!(out))
        .and_then(|_| out.flush())
        .map_err(|e| Error::io("cannot write to stdout", e))
}

/// The `get --json` report: one object per file plus totals.
fn get_json(report: &Report) -> serde_json::Value {
    let files: Vec<serde_json::Value> = report
        .outcomes
        .iter()
        .map(|o| match &o.result {
            Ok(d) => serde_json::json!({
                "name": o.name,
                "status": d.status(),
                "bytes": d.bytes,
                "seconds": d.secs,
                "path": d.path,
                "digest": d.digest.map(|h| format!("blake3:{}", transfer::hex(&h))),
                "resumed_from": d.resumed_from,
                "retries": o.retries,
            }),
            Err(why) => serde_json::json!({
                "name": o.name,
                "status": "failed",
                "error": why,
                "bytes": o.kept,
                "seconds": 0.0,
                "path": null,
                "digest": null,
                "resumed_from": 0,
                "retries": o.retries,
            }),
        })
        .collect();
    let deleted: Vec<serde_json::Value> = report
        .deleted
        .iter()
        .map(|r| {
            serde_json::json!({
                "path": r.path,
                "kind": if r.folder { "dir" } else { "file" },
            })
        })
        .collect();
    serde_json::json!({
        "dry_run": report.dry_run,
        "files": files,
        "deleted": deleted,
        "totals": {
            "files": report.outcomes.len(),
            "ok": report.fetched(),
            "skipped": report.skipped(),
            "unchanged": report.unchanged(),
            "would_fetch": report.planned(),
            "failed": report.failed(),
            "deleted": report.deleted.len(),
            "bytes": report.bytes(),
            "retries": report.retries(),
            "seconds": report.secs,
        }
    })
}

fn shell_cmd(cli: &Cli, a: &ShellArgs) -> Result<Exit, Error> {
    let loaded = load_config(cli)?;
    let get = GetSettings::resolve_shell(a, &loaded)?;
    shell::run(ShellSettings {
        server: get.server,
        download_dir: get.download_dir,
        jobs: get.jobs,
        retries: get.retries,
        limits: get.limits,
        fsync: get.fsync,
        limit_rate: get.limit_rate,
    })
}
