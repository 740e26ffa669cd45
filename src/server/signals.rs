//! Signals: the first SIGINT/SIGTERM stops the server gracefully, a second
//! exits at once; SIGHUP reloads.
//!
//! A reload reads the config file again (the command line's flags still
//! win), reopens the log file (after logrotate moved it away, or at the
//! path the new config names) and serves every connection accepted from
//! then on with the new folder, connection and rate limits, time-outs and
//! token. Connections already open finish under the settings they started
//! with. What cannot change without a restart (the listening address,
//! switching between a log file and stderr only) is logged and kept. A
//! config that does not load changes nothing: the server says why and keeps
//! serving.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use log::{error, info, warn};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use super::{exposure_warning, notify, status, Reloader, Shared};
use crate::error::Error;
use crate::logging;

/// The signals the server handles, caught (not acted on) until [`handle`].
pub(super) struct Caught(signal_hook::iterator::Signals);

/// Catches SIGINT, SIGTERM and SIGHUP from now on: they are queued instead
/// of ending the process.
pub(super) fn catch() -> Result<Caught, Error> {
    signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map(Caught)
        .map_err(|e| Error::io("cannot install signal handler", e))
}

/// Acts on caught signals (those already queued first) on a thread of
/// their own.
pub(super) fn handle(
    caught: Caught,
    current: Arc<RwLock<Arc<Shared>>>,
    reloader: Option<Reloader>,
    local: SocketAddr,
) -> Result<(), Error> {
    let mut signals = caught.0;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let registry = Arc::clone(&current.read().unwrap().registry);
                if sig == SIGHUP {
                    if registry.shutting_down.load(Ordering::SeqCst) {
                        info!("SIGHUP received while shutting down: ignored");
                    } else {
                        reload(&current, reloader.as_ref(), local);
                    }
                    continue;
                }
                if registry.shutting_down.swap(true, Ordering::SeqCst) {
                    warn!("second signal {sig}: exiting now");
                    log::logger().flush();
                    std::process::exit(130);
                }
                info!("signal {sig} received: stopping");
                wake(local);
            }
        })
        .map_err(|e| Error::io("cannot start signal thread", e))?;
    Ok(())
}

/// accept() is blocking; a connection to ourselves wakes it so the loop
/// sees the shutdown flag.
fn wake(local: SocketAddr) {
    let to = if local.ip().is_unspecified() {
        let lo: std::net::IpAddr = if local.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        SocketAddr::new(lo, local.port())
    } else {
        local
    };
    let _ = TcpStream::connect_timeout(&to, Duration::from_secs(1));
}

fn reload(current: &RwLock<Arc<Shared>>, reloader: Option<&Reloader>, local: SocketAddr) {
    let old = Arc::clone(&current.read().unwrap());
    let Some(reloader) = reloader else {
        info!("SIGHUP received: reopening the log file");
        reopen_log(old.settings.log_file.as_deref());
        return;
    };
    info!("SIGHUP received: reloading the configuration");
    notify::reloading();
    let loaded = reloader().and_then(|mut new| {
        if (new.ip, new.port) != (old.settings.ip, old.settings.port) {
            warn!(
                "reload: the listening address cannot change while running; \
                 still on {local} (restart to move it)"
            );
            (new.ip, new.port) = (old.settings.ip, old.settings.port);
        }
        if new.log_file.is_some() != old.settings.log_file.is_some() {
            warn!("reload: switching between a log file and stderr only needs a restart");
            new.log_file.clone_from(&old.settings.log_file);
        }
        Shared::new(new, Arc::clone(&old.digests), Arc::clone(&old.registry))
    });
    let new = match loaded {
        Ok(new) => new,
        Err(e) => {
            error!("reload failed: {e}; still serving with the previous settings");
            reopen_log(old.settings.log_file.as_deref());
            notify::ready(&status(&old, local));
            return;
        }
    };
    reopen_log(new.settings.log_file.as_deref());
    info!(
        "configuration reloaded: serving {} (max {} connections{}); \
         connections already open keep their settings",
        new.root.path().display(),
        new.settings.max_connections,
        if new.auth_keys.is_some() {
            ", token required"
        } else {
            ""
        }
    );
    if let Some(w) = exposure_warning(local, new.auth_keys.is_some()) {
        warn!("{w}");
    }
    let line = status(&new, local);
    if new.identity.as_ref().map(|i| i.0) != old.identity.as_ref().map(|i| i.0) {
        new.log_identity();
    }
    *current.write().unwrap() = Arc::new(new);
    notify::ready(&line);
}

fn reopen_log(path: Option<&std::path::Path>) {
    if let Some(p) = path {
        if let Err(e) = logging::reopen(p) {
            error!("{e}; still writing to the previous log file");
        }
    }
}
