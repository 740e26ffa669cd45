//! The error type every fallible fxfer operation returns, and the one place
//! where errors become exit codes.

use std::io;
use std::process::ExitCode;

use crate::protocol::{ErrorFrame, ProtocolError};

/// Exit statuses, the same for every subcommand (documented in README and
/// `--help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked for was done.
    Success = 0,
    /// Some files (or the whole job) failed.
    Failed = 1,
    /// Bad usage or configuration.
    Usage = 2,
    /// Cannot connect, or the peer broke the protocol.
    Connection = 3,
    /// Stopped by Ctrl-C (what arrived is kept), as shells report SIGINT.
    Interrupted = 130,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// What failed, with enough context to print as one line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag or argument that cannot be used.
    #[error("{0}")]
    Usage(String),
    /// A config file that cannot be read or understood.
    #[error("{0}")]
    Config(String),
    /// The server could not be reached.
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// The peer broke the protocol, or the connection dropped mid-message.
    #[error("{context}: {cause}")]
    Protocol {
        context: String,
        cause: ProtocolError,
    },
    /// The server wants a token we do not have, or refused ours.
    #[error("{addr}: {reason}")]
    Auth { addr: String, reason: String },
    /// The server's identity is not the one we trust (or not yet known).
    #[error("{addr}: {reason}")]
    Untrusted { addr: String, reason: String },
    /// The server refused a request.
    #[error("{0}")]
    Remote(ErrorFrame),
    /// A local I/O failure, with what we were doing.
    #[error("{context}: {}", describe_io(cause))]
    Io { context: String, cause: io::Error },
}

impl Error {
    pub fn io(context: impl Into<String>, cause: io::Error) -> Error {
        Error::Io {
            context: context.into(),
            cause,
        }
    }

    pub fn protocol(context: impl Into<String>, cause: ProtocolError) -> Error {
        Error::Protocol {
            context: context.into(),
            cause,
        }
    }

    /// The exit status this error leads to when it ends the program.
    pub fn exit(&self) -> Exit {
        match self {
            Error::Usage(_) | Error::Config(_) => Exit::Usage,
            Error::Connect { .. }
            | Error::Protocol { .. }
            | Error::Auth { .. }
            | Error::Untrusted { .. } => Exit::Connection,
            Error::Remote(_) | Error::Io { .. } => Exit::Failed,
        }
    }
}

/// Renders an `io::Error` the way people say it ("connection refused"),
/// without Rust's "(os error 111)" suffix.
pub fn describe_io(e: &io::Error) -> String {
    use io::ErrorKind::*;
    // An error that carries its own message already says it best.
    if e.get_ref().is_some() {
        return e.to_string();
    }
    let text = match e.kind() {
        NotFound => "no such file or directory",
        PermissionDenied => "permission denied",
        ConnectionRefused => "connection refused",
        ConnectionReset => "connection reset by peer",
        ConnectionAborted => "connection aborted",
        AddrInUse => "address already in use",
        AddrNotAvailable => "address not available on this machine",
        BrokenPipe => "connection closed by peer",
        AlreadyExists => "already exists",
        TimedOut | WouldBlock => "timed out",
        UnexpectedEof => "connection closed unexpectedly",
        _ => "",
    };
    if !text.is_empty() {
        return text.to_string();
    }
    let s = e.to_string();
    // "No space left on device (os error 28)" -> "no space left on device"
    let s = match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_stable() {
        assert_eq!(Exit::Success as u8, 0);
        assert_eq!(Exit::Failed as u8, 1);
        assert_eq!(Exit::Usage as u8, 2);
        assert_eq!(Exit::Connection as u8, 3);
        assert_eq!(Exit::Interrupted as u8, crate::interrupt::EXIT_CODE);
        assert_eq!(Error::Usage("x".into()).exit(), Exit::Usage);
        assert_eq!(
            Error::Connect {
                addr: "a".into(),
                reason: "b".into()
            }
            .exit(),
            Exit::Connection
        );
    }

    #[test]
    fn io_errors_read_like_sentences() {
        let e = io::Error::from_raw_os_error(28);
        assert_eq!(describe_io(&e), "no space left on device");
        let e = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(describe_io(&e), "connection refused");
    }
}
