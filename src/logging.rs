//! Log set-up. The client logs to stderr (warnings by default, more with
//! `-v`); the server logs every major action to its log file (if it has
//! one) and to stderr as far as the situation calls for: everything under a
//! service manager or without a log file, warnings (or more with `-v`) on a
//! terminal.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use log::{Level, LevelFilter, Log, Metadata, Record};

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

/// How a server log line starts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Style {
    /// `2026-11-25T00:59:17.251Z INFO  ...`: log files and terminals.
    Timestamped,
    /// `<6>INFO  ...`: stderr read by journald, which adds its own
    /// timestamp and takes the priority from the `<N>` prefix
    /// (sd-daemon(3)), so `journalctl -p warning` works.
    Journal,
}

/// The syslog priority journald reads from a `<N>` line prefix.
fn priority(l: Level) -> u8 {
    match l {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

fn builder(filter: LevelFilter, style: Style) -> env_logger::Builder {
    let mut b = env_logger::Builder::new();
    b.filter_level(filter)
        // Our own crate only; dependencies stay quiet unless asked via FXFER_LOG.
        .parse_env(env_logger::Env::new().filter("FXFER_LOG"));
    match style {
        Style::Timestamped => b.format(|buf, record| {
            writeln!(
                buf,
                "{} {:<5} {}",
                buf.timestamp_millis(),
                record.level(),
                crate::paths::display_safe(&record.args().to_string())
            )
        }),
        Style::Journal => b.format(|buf, record| {
            writeln!(
                buf,
                "<{}>{:<5} {}",
                priority(record.level()),
                record.level(),
                record.args()
            )
        }),
    };
    b
}

/// Client logging: stderr only.
pub fn init_client(verbose: u8, quiet: bool) {
    let mut b = env_logger::Builder::new();
    b.filter_level(level(verbose, quiet, LevelFilter::Warn))
        .parse_env(env_logger::Env::new().filter("FXFER_LOG"))
        .format(|buf, record| {
            writeln!(
                buf,
                "{}fxfer: {}",
                journal_prefix(record.level()),
                crate::paths::display_safe(&record.args().to_string())
            )
        });
    // A second init (tests calling twice) is harmless.
    let _ = b.try_init();
}

/// Log target for lines the user already sees another way (on stderr as
/// the program's own error line): written to the log file only.
pub const FILE_ONLY: &str = "fxfer::file_only";

/// The open log file, shared with the logger so SIGHUP can swap it for a
/// freshly opened one (after logrotate moved the old one away).
#[derive(Clone)]
struct Sink(Arc<Mutex<File>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).flush()
    }
}

/// The server's log file, when it has one.
static LOG_FILE: OnceLock<Sink> = OnceLock::new();
/// The most verbose level that reaches stderr (as `LevelFilter as u8`).
static STDERR_LEVEL: AtomicU8 = AtomicU8::new(0);

/// Sends each record to the log file and, as far as configured, to stderr.
struct ServerLogger {
    file: Option<env_logger::Logger>,
    stderr: env_logger::Logger,
}

impl Log for ServerLogger {
    fn enabled(&self, m: &Metadata) -> bool {
        self.file.as_ref().is_some_and(|f| f.enabled(m)) || self.stderr.enabled(m)
    }
    fn log(&self, r: &Record) {
        if let Some(f) = self.file.as_ref().filter(|f| f.matches(r)) {
            f.log(r);
        }
        if self.stderr.matches(r) && r.target() != FILE_ONLY {
            self.stderr.log(r);
        }
    }
    fn flush(&self) {
        if let Some(f) = &self.file {
            f.flush();
        }
        self.stderr.flush();
    }
}

fn open_log(path: &Path) -> Result<File, Error> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            Error::Usage(format!(
                "cannot create log folder {}: {}",
                parent.display(),
                describe_io(&e)
            ))
        })?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            Error::Usage(format!(
                "cannot open log file {}: {}",
                path.display(),
                describe_io(&e)
            ))
        })
}

/// Whether stderr is the stream journald gave this service (checked once).
fn stderr_is_journal() -> bool {
    static IS: OnceLock<bool> = OnceLock::new();
    *IS.get_or_init(journal_stream_is_stderr)
}

/// `<N>` before a line on stderr when journald reads it, so the line gets
/// priority N (an error that ends a service run is shown as one); nothing
/// otherwise.
pub fn journal_prefix(l: Level) -> String {
    if stderr_is_journal() {
        format!("<{}>", priority(l))
    } else {
        String::new()
    }
}

/// `$JOURNAL_STREAM` holds the `device:inode` of the stream journald gave
/// the service (systemd.exec(5)). Checking the inode keeps a child whose
/// stderr was redirected from taking the journal format.
fn journal_stream_is_stderr() -> bool {
    let Some(v) = std::env::var("JOURNAL_STREAM").ok() else {
        return false;
    };
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    rustix::fs::fstat(std::io::stderr()).is_ok_and(|st| st.st_dev == dev && st.st_ino == ino)
}

/// Server logging. The log file (appended to, so restarts keep history)
/// gets every major action (info; `-v` adds debug detail). Stderr gets:
/// errors only with `-q`; the same as the file under a service manager
/// (stderr not a terminal) or without a log file (`log_file` `None`, from
/// `--log-file -`); on a terminal, warnings, or with `-v` connections and
/// transfers too. Under journald stderr lines carry no timestamp of their
/// own.
pub fn init_server(log_file: Option<&Path>, verbose: u8, quiet: bool) -> Result<(), Error> {
    let file_level = level(verbose.saturating_add(1), false, LevelFilter::Info);
    let file_logger = match log_file {
        Some(path) => {
            let sink = Sink(Arc::new(Mutex::new(open_log(path)?)));
            let _ = LOG_FILE.set(sink.clone());
            Some(
                builder(file_level, Style::Timestamped)
                    .target(env_logger::Target::Pipe(Box::new(sink)))
                    .build(),
            )
        }
        None => None,
    };
    let stderr_level = if quiet {
        LevelFilter::Error
    } else if log_file.is_none() || !std::io::stderr().is_terminal() {
        file_level
    } else {
        level(verbose, false, LevelFilter::Warn)
    };
    let style = if stderr_is_journal() {
        Style::Journal
    } else {
        Style::Timestamped
    };
    let stderr_logger = builder(stderr_level, style)
        .target(env_logger::Target::Stderr)
        .build();
    STDERR_LEVEL.store(stderr_logger.filter() as u8, Ordering::Relaxed);
    let max = file_logger
        .as_ref()
        .map_or(LevelFilter::Off, |f| f.filter())
        .max(stderr_logger.filter());
    log::set_boxed_logger(Box::new(ServerLogger {
        file: file_logger,
        stderr: stderr_logger,
    }))
    .map_err(|_| Error::Usage("logging was already initialised".into()))?;
    log::set_max_level(max);
    Ok(())
}

/// Prints a line on stderr outside the log (the server's fingerprint),
/// with a notice priority under journald, unless `-q` keeps stderr to
/// errors.
pub fn notice(line: &str) {
    if !stderr_shows(Level::Warn) {
        return;
    }
    let prefix = if stderr_is_journal() { "<5>" } else { "" };
    let _ = writeln!(std::io::stderr(), "{prefix}{line}");
}

/// Whether server log lines at `l` reach stderr (so a message printed
/// there anyway need not be repeated).
pub fn stderr_shows(l: Level) -> bool {
    (l as u8) <= STDERR_LEVEL.load(Ordering::Relaxed)
}

/// Closes the server's log file and opens `path` in its place (the same
/// path after logrotate moved the old file away, or a new one from a
/// reloaded config). Without a log file at start there is nothing to swap.
pub fn reopen(path: &Path) -> Result<(), Error> {
    let Some(sink) = LOG_FILE.get() else {
        return Ok(());
    };
    let file = open_log(path)?;
    let mut cur = sink.0.lock().unwrap_or_else(|p| p.into_inner());
    let _ = cur.flush();
    *cur = file;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_priorities_follow_syslog() {
        assert_eq!(priority(Level::Error), 3);
        assert_eq!(priority(Level::Warn), 4);
        assert_eq!(priority(Level::Info), 6);
        assert_eq!(priority(Level::Debug), 7);
    }
}
