//! Log set-up. The client logs to stderr (warnings by default, more with
//! `-v`); the server logs every major action to its log file and repeats
//! warnings and errors on stderr.

use std::fs::OpenOptions;
use std::io::{IsTerminal, Write};
use std::path::Path;

use log::{LevelFilter, Log, Metadata, Record};

use crate::error::{describe_io, Error};

fn level(verbose: u8, quiet: bool, default: LevelFilter) -> LevelFilter {
    if quiet {
        return LevelFilter::Error;
    }
    match verbose {
        0 => default,
        1 => LevelFilter::Info,
        2 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

fn builder(filter: LevelFilter) -> env_logger::Builder {
    let mut b = env_logger::Builder::new();
    b.filter_level(filter)
        // Our own crate only; dependencies stay quiet unless asked via FXFER_LOG.
        .parse_env(env_logger::Env::new().filter("FXFER_LOG"))
        .format(|buf, record| {
            writeln!(
                buf,
                "{} {:<5} {}",
                buf.timestamp_millis(),
                record.level(),
                record.args()
            )
        });
    b
}

/// Client logging: stderr only.
pub fn init_client(verbose: u8, quiet: bool) {
    let mut b = env_logger::Builder::new();
    b.filter_level(level(verbose, quiet, LevelFilter::Warn))
        .parse_env(env_logger::Env::new().filter("FXFER_LOG"))
        .format(|buf, record| writeln!(buf, "fxfer: {}", record.args()));
    // A second init (tests calling twice) is harmless.
    let _ = b.try_init();
}

/// Log target for lines the user already sees another way (on stderr as
/// the program's own error line): written to the log file only.
pub const FILE_ONLY: &str = "fxfer::file_only";

/// Sends each record to the log file and, at warning and above, to stderr.
struct ServerLogger {
    file: env_logger::Logger,
    stderr: env_logger::Logger,
}

impl Log for ServerLogger {
    fn enabled(&self, m: &Metadata) -> bool {
        self.file.enabled(m) || self.stderr.enabled(m)
    }
    fn log(&self, r: &Record) {
        if self.file.matches(r) {
            self.file.log(r);
        }
        if self.stderr.matches(r) && r.target() != FILE_ONLY {
            self.stderr.log(r);
        }
    }
    fn flush(&self) {
        self.file.flush();
        self.stderr.flush();
    }
}

/// Server logging: the log file (info and up, more with `-v`) plus stderr
/// (warnings and errors). The file is opened for appending, so restarts keep
/// history.
pub fn init_server(log_file: &Path, verbose: u8, quiet: bool) -> Result<(), Error> {
    if let Some(parent) = log_file.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            Error::Usage(format!(
                "cannot create log folder {}: {}",
                parent.display(),
                describe_io(&e)
            ))
        })?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file)
        .map_err(|e| {
            Error::Usage(format!(
                "cannot open log file {}: {}",
                log_file.display(),
                describe_io(&e)
            ))
        })?;
    // The file always gets every major action (info); -v adds debug detail.
    let file_level = level(verbose.saturating_add(1), false, LevelFilter::Info);
    let file_logger = builder(file_level)
        .target(env_logger::Target::Pipe(Box::new(file)))
        .build();
    // Under a service manager (stderr not a terminal) everything the file
    // gets goes to stderr too, so journald has the full story.
    let stderr_level = if quiet {
        LevelFilter::Error
    } else if !std::io::stderr().is_terminal() {
        file_level
    } else {
        LevelFilter::Warn
    };
    let stderr_logger = builder(stderr_level)
        .target(env_logger::Target::Stderr)
        .build();
    let max = file_logger.filter().max(stderr_logger.filter());
    log::set_boxed_logger(Box::new(ServerLogger {
        file: file_logger,
        stderr: stderr_logger,
    }))
    .map_err(|_| Error::Usage("logging was already initialised".into()))?;
    log::set_max_level(max);
    Ok(())
}
