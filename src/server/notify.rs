//! Tells a service manager how the server is doing (sd_notify(3)): ready
//! once it listens, reloading while SIGHUP is handled, stopping on
//! shutdown. With `Type=notify` in the unit, `systemctl start` returns only
//! once the port is bound (and fails when it cannot be), and `systemctl
//! reload` waits for the reload to finish. Nothing happens without
//! `$NOTIFY_SOCKET`.

use log::warn;
use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!("cannot notify the service manager: {e}");
    }
}

/// Listening, serving `what`.
pub(super) fn ready(what: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(what)]);
}

/// A reload begins; [`ready`] ends it.
pub(super) fn reloading() {
    // systemd wants the time the reload began, to match it with its own.
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

pub(super) fn stopping() {
    send(&[NotifyState::Stopping]);
}
