//! The `fxfer` binary: parse, set up logging, dispatch, and turn the result
//! into one line on stderr and an exit code. No logic lives here.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use serde::Serialize;

use fxfer::cli::{Cli, Command, CompletionsArgs, GetArgs, LsArgs, ServeArgs};
use fxfer::client::Connection;
use fxfer::config::{self, GetSettings, Loaded, ServerAddr, ServerSettings};
use fxfer::error::{Error, Exit};
use fxfer::progress::Progress;
use fxfer::protocol::EntryKind;
use fxfer::server::Server;
use fxfer::{human, logging, paths, transfer};

fn main() -> ExitCode {
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
            eprintln!("fxfer: {e}");
            e.exit().into()
        }
    }
}

fn run(cli: Cli) -> Result<Exit, Error> {
    if let Command::Serve(_) = cli.command {
        // The server sets up its own logging once it knows its log file.
    } else {
        logging::init_client(cli.verbose, cli.quiet);
    }
    match &cli.command {
        Command::Completions(a) => completions(a),
        Command::Serve(a) => serve(&cli, a),
        Command::Ls(a) => ls(&cli, a),
        Command::Get(a) => get(&cli, a),
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
    let mut cmd = Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "fxfer", &mut io::stdout());
    Ok(Exit::Success)
}

fn serve(cli: &Cli, a: &ServeArgs) -> Result<Exit, Error> {
    let loaded = load_config(cli)?;
    let settings = ServerSettings::resolve(a, &loaded)?;
    logging::init_server(&settings.log_file, cli.verbose, cli.quiet)?;
    if let Some(p) = &loaded.path {
        log::info!("using config file {}", p.display());
    }
    let server = Server::bind(settings).inspect_err(|e| log::error!("{e}"))?;
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
    let server = ServerAddr::resolve(&a.server, &loaded);
    let mut conn = Connection::connect(&server)?;
    let mut entries = conn.list("", false)?;
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
            eprintln!("fxfer: the server hosts no files");
        }
    }
    out.flush().map_err(write_err)?;
    Ok(Exit::Success)
}

fn get(cli: &Cli, a: &GetArgs) -> Result<Exit, Error> {
    let loaded = load_config(cli)?;
    let settings = GetSettings::resolve(a, &loaded)?;
    let progress = Progress::new(a.names.len(), cli.quiet);
    let report = transfer::get(&settings, &a.names, &progress)?;
    progress.finish(&report.summary());
    Ok(if report.unreachable() {
        Exit::Connection
    } else if report.failed() > 0 {
        Exit::Failed
    } else {
        Exit::Success
    })
}
