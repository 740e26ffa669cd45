//! `fxfer serve`: the accept loop, the connection limit, the registry of
//! connected clients, graceful shutdown on Ctrl-C / SIGTERM, and reloading
//! the config on SIGHUP.
//!
//! One thread per connection (small stack), bounded by `max_connections`;
//! a thread whose client left waits a few seconds for the next connection
//! instead of exiting. Clients over the bound get a BUSY error frame from a
//! short-lived thread so the accept loop never waits on a slow peer.

mod digest;
mod fds;
mod notify;
mod penalty;
mod session;
mod signals;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use log::{error, info, warn};

use crate::config::ServerSettings;
use crate::error::{describe_io, Error};
use crate::logging;
use crate::paths::Root;
use crate::protocol::{self, ErrorCode, ErrorFrame, Hello};

/// Stack for connection threads: sessions keep their buffers on the heap,
/// so a small stack keeps thousands of connections cheap.
const SESSION_STACK: usize = 256 * 1024;
/// At most this many BUSY replies are in flight; beyond it, excess
/// connections are simply closed.
const MAX_REJECTERS: usize = 32;
/// How long a refused client gets to send its greeting and read our reply.
const REJECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a connection thread waits for another client before exiting.
/// Starting a thread takes more system calls than a whole small-file
/// session, so a burst of short connections (`get --parallel` of many
/// small files) reuses threads.
const IDLE_KEEP: Duration = Duration::from_secs(10);
/// At most this many threads wait idle.
const MAX_IDLE: usize = 64;

/// One accepted connection, on its way to a thread, with the settings it
/// is served under.
struct Job {
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    shared: Arc<Shared>,
}

/// Connection threads between clients.
#[derive(Default)]
struct Idle {
    /// (connections handed over but not yet taken, threads waiting)
    state: Mutex<(Vec<Job>, usize)>,
    wake: Condvar,
}

impl Idle {
    /// Hands `job` to a waiting thread, or gives it back when none waits.
    fn offer(&self, job: Job) -> Result<(), Job> {
        let mut st = self.state.lock().unwrap();
        if st.1 > st.0.len() {
            st.0.push(job);
            self.wake.notify_one();
            Ok(())
        } else {
            Err(job)
        }
    }

    /// Waits up to [`IDLE_KEEP`] for the next connection.
    fn next(&self) -> Option<Job> {
        let mut st = self.state.lock().unwrap();
        if st.1 >= MAX_IDLE {
            return None;
        }
        st.1 += 1;
        let deadline = Instant::now() + IDLE_KEEP;
        loop {
            // Checked before giving up too: a job offered while we waited
            // counted on us.
            if let Some(job) = st.0.pop() {
                st.1 -= 1;
                return Some(job);
            }
            let now = Instant::now();
            if now >= deadline {
                st.1 -= 1;
                return None;
            }
            st = self.wake.wait_timeout(st, deadline - now).unwrap().0;
        }
    }
}

/// A connected client, as the registry knows it.
struct Client {
    peer: SocketAddr,
    /// A second handle on the socket, so shutdown can wake a blocked reader.
    stream: TcpStream,
}

/// What a session is served under: the folder and settings of one config.
/// A reload builds a new one for connections accepted from then on;
/// connections already open keep theirs.
pub(crate) struct Shared {
    pub root: Root,
    /// Digests are keyed by file identity, so one cache serves every config.
    pub digests: Arc<digest::Cache>,
    pub settings: ServerSettings,
    /// MAC key derived from the shared token, when one is required.
    pub auth_key: Option<[u8; 32]>,
    /// The connected clients, the same across reloads.
    pub registry: Arc<Registry>,
}

impl Shared {
    fn new(
        settings: ServerSettings,
        digests: Arc<digest::Cache>,
        registry: Arc<Registry>,
    ) -> Result<Shared, Error> {
        // At start and on every reload: the limits must fit the open-file
        // limit.
        let need = fds::needed(settings.max_connections, MAX_REJECTERS);
        let limit = fds::ensure(need, || {
            format!("'--max-connections' {}", settings.max_connections)
        })
        .map_err(Error::Usage)?;
        log::debug!("open-file limit {limit} (about {need} needed)");
        Ok(Shared {
            root: Root::new(&settings.dir, settings.hidden).map_err(Error::Usage)?,
            digests,
            auth_key: settings.token.as_deref().map(protocol::auth::key),
            settings,
            registry,
        })
    }
}

/// Who is connected, and whether the server is stopping.
#[derive(Default)]
pub(crate) struct Registry {
    /// Open connections per client address.
    per_ip: Mutex<HashMap<std::net::IpAddr, usize>>,
    /// Sources that failed token proofs, and until when they wait.
    pub penalties: penalty::Penalties,
    pub shutting_down: AtomicBool,
    clients: Mutex<HashMap<u64, Client>>,
    all_gone: Condvar,
}

impl Registry {
    fn register(&self, id: u64, client: Client) {
        self.clients.lock().unwrap().insert(id, client);
    }

    fn release_ip(&self, ip: std::net::IpAddr) {
        let mut per_ip = self.per_ip.lock().unwrap();
        if let Some(n) = per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&ip);
            }
        }
    }

    fn unregister(&self, id: u64, peer: SocketAddr) {
        self.release_ip(peer.ip());
        let mut clients = self.clients.lock().unwrap();
        clients.remove(&id);
        if clients.is_empty() {
            self.all_gone.notify_all();
        }
    }

    fn connected(&self) -> Vec<SocketAddr> {
        let mut v: Vec<SocketAddr> = self
            .clients
            .lock()
            .unwrap()
            .values()
            .map(|c| c.peer)
            .collect();
        v.sort();
        v
    }
}

/// Reads the settings again (config file and the command line's flags) for
/// a reload.
pub type Reloader = Box<dyn Fn() -> Result<ServerSettings, Error> + Send>;

/// A bound server, ready to run.
pub struct Server {
    listener: TcpListener,
    /// The settings new connections get; replaced on reload.
    current: Arc<RwLock<Arc<Shared>>>,
    reloader: Option<Reloader>,
    /// Caught from `bind` on (a signal sent as soon as the address is
    /// printed must not kill the server); handled once `run` starts.
    signals: Option<signals::Caught>,
}

impl Server {
    /// Checks the folder and binds the port; errors here are start-up
    /// errors with one clear line.
    pub fn bind(settings: ServerSettings) -> Result<Server, Error> {
        let addr = SocketAddr::new(settings.ip, settings.port);
        let shared = Shared::new(settings, Arc::default(), Arc::default())?;
        let listener = TcpListener::bind(addr)
            .map_err(|e| Error::Usage(format!("cannot listen on {addr}: {}", describe_io(&e))))?;
        Ok(Server {
            listener,
            current: Arc::new(RwLock::new(Arc::new(shared))),
            reloader: None,
            signals: Some(signals::catch()?),
        })
    }

    /// How to read the settings again on SIGHUP. Without one, SIGHUP only
    /// reopens the log file.
    pub fn reload_with(mut self, reloader: Reloader) -> Server {
        self.reloader = Some(reloader);
        self
    }

    fn current(&self) -> Arc<Shared> {
        Arc::clone(&self.current.read().unwrap())
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until the first SIGINT/SIGTERM, then shuts down gracefully;
    /// SIGHUP reloads (see [`signals`]).
    pub fn run(mut self) -> Result<(), Error> {
        let local = self.local_addr();
        let first = self.current();
        info!(
            "server started on {local}, serving {} (max {} connections, protocol v{})",
            first.root.path().display(),
            first.settings.max_connections,
            protocol::VERSION
        );
        if first.auth_key.is_some() {
            info!("clients must prove they know the shared token");
        }
        if let Some(w) = first
            .settings
            .token
            .as_deref()
            .and_then(crate::config::token_warning)
        {
            warn!("{w}");
        }
        if let Some(w) = exposure_warning(local, first.auth_key.is_some()) {
            warn!("{w}");
        }
        let registry = Arc::clone(&first.registry);
        if let Some(caught) = self.signals.take() {
            signals::handle(
                caught,
                Arc::clone(&self.current),
                self.reloader.take(),
                local,
            )?;
        }
        notify::ready(&status(&first, local));
        drop(first);

        let active = Arc::new(AtomicUsize::new(0));
        let rejecters = Arc::new(AtomicUsize::new(0));
        let idle = Arc::new(Idle::default());
        let next_id = AtomicU64::new(1);
        for conn in self.listener.incoming() {
            if registry.shutting_down.load(Ordering::SeqCst) {
                break;
            }
            let stream = match conn {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: say so, pause briefly, go on.
                    error!("accept failed: {}", describe_io(&e));
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            let peer = match stream.peer_addr() {
                Ok(p) => p,
                Err(_) => continue, // already gone
            };
            let shared = self.current();
            // Cheapest check first: a source serving a penalty for failed
            // token proofs gets nothing else.
            if let Some(wait) = registry.penalties.pending(peer.ip(), Instant::now()) {
                warn!(
                    "{peer}: refused: failed token proofs from {}; {}s of penalty left",
                    peer.ip(),
                    wait.as_secs()
                );
                reject_busy(
                    stream,
                    peer,
                    &rejecters,
                    ErrorCode::AuthFailed,
                    format!(
                        "authentication failed too often from your address; try again in {}s",
                        wait.as_secs().max(1)
                    ),
                );
                continue;
            }
            if active.load(Ordering::SeqCst) >= shared.settings.max_connections {
                warn!(
                    "{peer}: refused: server busy ({} connections)",
                    shared.settings.max_connections
                );
                reject_busy(
                    stream,
                    peer,
                    &rejecters,
                    ErrorCode::Busy,
                    "server busy: too many connections, try again later".into(),
                );
                continue;
            }
            {
                let mut per_ip = registry.per_ip.lock().unwrap();
                let n = per_ip.entry(peer.ip()).or_insert(0);
                if *n >= shared.settings.max_connections_per_ip {
                    drop(per_ip);
                    warn!(
                        "{peer}: refused: server busy ({} connections from {})",
                        shared.settings.max_connections_per_ip,
                        peer.ip()
                    );
                    reject_busy(
                        stream,
                        peer,
                        &rejecters,
                        ErrorCode::Busy,
                        "server busy: too many connections from your address, try again later"
                            .into(),
                    );
                    continue;
                }
                *n += 1;
            }
            let id = next_id.fetch_add(1, Ordering::Relaxed);
            let clone = match stream.try_clone() {
                Ok(c) => c,
                Err(e) => {
                    error!("{peer}: cannot set up connection: {}", describe_io(&e));
                    // Give back the address's slot taken above.
                    registry.release_ip(peer.ip());
                    continue;
                }
            };
            registry.register(
                id,
                Client {
                    peer,
                    stream: clone,
                },
            );
            active.fetch_add(1, Ordering::SeqCst);
            info!("{peer}: connected");
            let job = match idle.offer(Job {
                stream,
                peer,
                id,
                shared,
            }) {
                Ok(()) => continue,
                Err(job) => job,
            };
            let (active2, idle2) = (Arc::clone(&active), Arc::clone(&idle));
            let spawned = std::thread::Builder::new()
                .name("conn".into())
                .stack_size(SESSION_STACK)
                .spawn(move || {
                    let mut job = Some(job);
                    while let Some(Job {
                        stream,
                        peer,
                        id,
                        shared,
                    }) = job.take()
                    {
                        session::run(stream, peer, &shared);
                        shared.registry.unregister(id, peer);
                        active2.fetch_sub(1, Ordering::SeqCst);
                        if !shared.registry.shutting_down.load(Ordering::SeqCst) {
                            drop(shared);
                            job = idle2.next();
                        }
                    }
                });
            if let Err(e) = spawned {
                error!("{peer}: cannot start a thread: {e}");
                registry.unregister(id, peer);
                active.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.shutdown();
        Ok(())
    }

    fn shutdown(&self) {
        notify::stopping();
        let shared = self.current();
        let registry = &shared.registry;
        let still = registry.connected();
        let names = still
            .iter()
            .map(SocketAddr::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let line = if still.is_empty() {
            "shutting down: no clients connected".to_string()
        } else {
            format!(
                "shutting down: {} client(s) still connected: {names}; waiting up to {}s for transfers in flight",
                still.len(),
                shared.settings.grace_period.as_secs()
            )
        };
        // Said on stderr even when the log there shows warnings only.
        if !logging::stderr_shows(log::Level::Info) {
            eprintln!("{line}");
        }
        info!("{line}");

        // Wake idle sessions (blocked reading the next request): they see
        // end-of-stream and leave. Sessions mid-transfer keep writing.
        for c in registry.clients.lock().unwrap().values() {
            let _ = c.stream.shutdown(Shutdown::Read);
        }
        let deadline = Instant::now() + shared.settings.grace_period;
        let mut clients = registry.clients.lock().unwrap();
        while !clients.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            clients = registry
                .all_gone
                .wait_timeout(clients, deadline - now)
                .unwrap()
                .0;
        }
        if !clients.is_empty() {
            let left: Vec<String> = clients.values().map(|c| c.peer.to_string()).collect();
            warn!(
                "grace period over; closing {} connection(s): {}",
                left.len(),
                left.join(", ")
            );
            for c in clients.values() {
                let _ = c.stream.shutdown(Shutdown::Both);
            }
        }
        drop(clients);
        info!("server stopped");
        log::logger().flush();
    }
}

/// One line for `systemctl status`.
fn status(shared: &Shared, local: SocketAddr) -> String {
    format!(
        "serving {} on {local}{}",
        shared.root.path().display(),
        if shared.auth_key.is_some() {
            " (token required)"
        } else {
            ""
        }
    )
}

/// The start-up warning for a server others can reach without a token.
pub(crate) fn exposure_warning(local: SocketAddr, has_token: bool) -> Option<String> {
    (!has_token && !local.ip().is_loopback()).then(|| {
        format!(
            "listening on {local} without a token: anyone who can reach this address \
             can download the hosted files (see --token-file)"
        )
    })
}

/// Tells a client over the connection limit that we are busy: read its
/// greeting (so closing does not reset the connection and lose our reply),
/// answer with our greeting and a BUSY error, then close.
fn reject_busy(
    stream: TcpStream,
    peer: SocketAddr,
    rejecters: &Arc<AtomicUsize>,
    code: ErrorCode,
    why: String,
) {
    if rejecters.fetch_add(1, Ordering::SeqCst) >= MAX_REJECTERS {
        rejecters.fetch_sub(1, Ordering::SeqCst);
        return; // dropping closes it
    }
    let rejecters = Arc::clone(rejecters);
    let spawned = std::thread::Builder::new()
        .name("busy".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let _ = send_busy(stream, code, &why);
            rejecters.fetch_sub(1, Ordering::SeqCst);
        });
    if spawned.is_err() {
        warn!("{peer}: could not send busy reply");
    }
}

fn send_busy(mut stream: TcpStream, code: ErrorCode, why: &str) -> std::io::Result<()> {
    stream.set_read_timeout(Some(REJECT_TIMEOUT))?;
    stream.set_write_timeout(Some(REJECT_TIMEOUT))?;
    let mut hello = [0u8; protocol::HELLO_LEN];
    let _ = stream.read_exact(&mut hello);
    let mut out = Vec::new();
    let _ = Hello::current().write_to(&mut out);
    let _ = protocol::write_error(&mut out, &ErrorFrame::new(code, why));
    stream.write_all(&out)?;
    stream.shutdown(Shutdown::Write)?;
    // Drain (boundedly) what the client pipelined so the close is orderly.
    let mut sink = [0u8; 4096];
    let mut budget = 64 * 1024;
    while budget > 0 {
        match stream.read(&mut sink) {
            Ok(n) if n > 0 => budget -= n.min(budget),
            _ => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_reachable_server_without_a_token_is_warned_about() {
        let at = |a: &str| a.parse::<SocketAddr>().unwrap();
        assert!(exposure_warning(at("0.0.0.0:9000"), false).is_some());
        assert!(exposure_warning(at("192.168.1.5:9000"), false).is_some());
        assert!(exposure_warning(at("[::]:9000"), false).is_some());
        assert!(exposure_warning(at("0.0.0.0:9000"), true).is_none());
        assert!(exposure_warning(at("127.0.0.1:9000"), false).is_none());
        assert!(exposure_warning(at("[::1]:9000"), false).is_none());
    }
}
