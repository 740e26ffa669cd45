//! Ctrl-C during `fxfer get`: the first one asks the download to stop
//! cleanly (what arrived is kept, partial files stay resumable); a second
//! one exits at once. Connections check [`requested`] before every read
//! and while waiting for data (every quarter second), so a transfer stops
//! at once even when the peer is silent.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Exit status after an interrupt, as shells report a SIGINT death.
pub const EXIT_CODE: u8 = 130;

/// Whether Ctrl-C (SIGINT) or SIGTERM asked us to stop.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

/// Asks running transfers to stop, as Ctrl-C does (the shell's own
/// signal handler, which stops a download but not the session).
pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Forgets a stop request, so that the next download runs (the shell,
/// after a download that Ctrl-C stopped).
pub fn reset() {
    REQUESTED.store(false, Ordering::SeqCst);
}

/// The error a read returns once a stop was requested.
pub fn error() -> io::Error {
    io::Error::other("interrupted")
}

/// Handles SIGINT and SIGTERM from now on: the first sets the flag and
/// says so on stderr, a second exits at once with status 130.
pub fn install() -> io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for _ in signals.forever() {
                if REQUESTED.swap(true, Ordering::SeqCst) {
                    std::process::exit(i32::from(EXIT_CODE));
                }
                use std::io::Write;
                let _ = writeln!(
                    io::stderr(),
                    "\nfxfer: stopping: keeping what arrived (Ctrl-C again to quit at once)"
                );
            }
        })?;
    Ok(())
}
