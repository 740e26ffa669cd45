//! File descriptors: what the connection limits need, checked against
//! RLIMIT_NOFILE at start. The soft limit is raised as far as needed (up
//! to the hard limit); a setting that cannot work even then is refused
//! with the numbers, rather than failing later as EMFILE under load.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Descriptors one session may hold at once: its socket, a file being
/// sent, and a folder being listed (plus the one beneath it being opened).
pub const PER_SESSION: u64 = 4;
/// Descriptors one connection holds before its handshake is done.
pub const PER_STARTUP: u64 = 1;
/// Descriptors the server holds besides connections: standard streams,
/// the listener, the log file, the event loop, signal handling, the
/// served folder, and some room.
pub const BASE: u64 = 64;

/// What `sessions` sessions and `startups` unfinished handshakes need.
pub fn needed(sessions: usize, startups: usize) -> u64 {
    BASE + sessions as u64 * PER_SESSION + startups as u64 * PER_STARTUP
}

/// The most descriptors this process may ever have open (the hard limit).
pub fn hard_limit() -> u64 {
    getrlimit(Resource::Nofile).maximum.unwrap_or(u64::MAX)
}

/// Makes sure `need` descriptors can be open: raises the soft limit when
/// it is lower (never above the hard limit). Returns the limit now in force.
pub fn ensure(need: u64, what: impl Fn() -> String) -> Result<u64, String> {
    let lim = getrlimit(Resource::Nofile);
    let (soft, hard) = (
        lim.current.unwrap_or(u64::MAX),
        lim.maximum.unwrap_or(u64::MAX),
    );
    if soft >= need {
        return Ok(soft);
    }
    if hard < need {
        return Err(format!(
            "{} needs about {need} open files, but this process may open at most {hard} \
             (raise the hard limit: ulimit -Hn, or LimitNOFILE= in the systemd unit)",
            what()
        ));
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(need),
            maximum: lim.maximum,
        },
    )
    .map_err(|e| format!("cannot raise the open-file limit to {need}: {e}"))?;
    Ok(need)
}
