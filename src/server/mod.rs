//! `fxfer serve`: the accept loop, the connection limit, the registry of
//! connected clients, graceful shutdown on Ctrl-C / SIGTERM, and reloading
//! the config on SIGHUP.
//!
//! Connections spend their handshake in [`admission`]'s event loop (no
//! thread, no session slot, a bound and a deadline of their own); once
//! done, each gets a thread (small stack) for its session, bounded by
//! `max_connections`. A thread whose client left waits a few seconds for
//! the next connection instead of exiting.

mod admission;
mod digest;
mod fds;
mod notify;
mod penalty;
mod session;
mod signals;
mod source;

pub use admission::Startups;

use std::collections::HashMap;
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use log::{error, info, warn};

use crate::config::ServerSettings;
use crate::error::{describe_io, Error};
use crate::logging;
use crate::paths::Root;
use crate::protocol;
use crate::transport::identity::{self, Fingerprint};
use crate::transport::tls;

/// Stack for connection threads: sessions keep their buffers on the heap,
/// so a small stack keeps thousands of connections cheap.
const SESSION_STACK: usize = 256 * 1024;
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
    admitted: Box<admission::Admitted>,
    id: u64,
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
    /// The session's socket (shared, not duplicated: one descriptor per
    /// session), so shutdown can wake a blocked reader.
    stream: Arc<TcpStream>,
}

/// What a session is served under: the folder and settings of one config.
/// A reload builds a new one for connections accepted from then on;
/// connections already open keep theirs.
pub(crate) struct Shared {
    pub root: Root,
    /// Digests are keyed by file identity, so one cache serves every config.
    pub digests: Arc<digest::Cache>,
    pub settings: ServerSettings,
    /// MAC keys derived from the shared token, when one is required (one
    /// per way of making proofs: versions 3 to 5, and 6).
    pub auth_keys: Option<protocol::auth::Keys>,
    /// TLS configuration (`None` with `--plaintext`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The server's fingerprint and where its identity came from.
    pub identity: Option<(Fingerprint, String)>,
    /// The connected clients, the same across reloads.
    pub registry: Arc<Registry>,
}

impl Shared {
    fn new(
        settings: ServerSettings,
        digests: Arc<digest::Cache>,
        registry: Arc<Registry>,
    ) -> Result<Shared, Error> {
        let mut settings = settings;
        // The default bound on unfinished handshakes shrinks to what the
        // hard open-file limit leaves; one given explicitly must fit.
        if settings.max_startups == Startups::DEFAULT {
            let hard = fds::hard_limit();
            let room = hard.saturating_sub(fds::needed(settings.max_connections, 0));
            let room = usize::try_from(room).unwrap_or(usize::MAX);
            if room < settings.max_startups.full && room > 0 {
                settings.max_startups = Startups {
                    start: (room / 4).max(1),
                    rate: Startups::DEFAULT.rate,
                    full: room,
                };
                warn!(
                    "the open-file limit ({hard}) leaves room for {room} unfinished handshakes; \
                     max-startups lowered to {}",
                    settings.max_startups
                );
            }
        }
        // At start and on every reload: the limits must fit the open-file
        // limit.
        let need = fds::needed(settings.max_connections, settings.max_startups.full);
        let limit = fds::ensure(need, || {
            format!(
                "'--max-connections' {} with '--max-startups' {}",
                settings.max_connections, settings.max_startups
            )
        })
        .map_err(Error::Usage)?;
        log::debug!("open-file limit {limit} (about {need} needed)");
        let root = Root::new(&settings.dir, settings.hidden).map_err(Error::Usage)?;
        // The identity is read (or made) again on reload: the same key from
        // the state folder, or a renewed --cert from its files.
        let (tls, identity) = if settings.plaintext {
            (None, None)
        } else {
            let id = match &settings.cert {
                Some((cert, key)) => identity::from_files(cert, key)?,
                None => identity::load_or_create(&settings.state_dir)?,
            };
            let cfg = tls::server_config(&id).map_err(Error::Config)?;
            (Some(cfg), Some((id.fingerprint, id.origin)))
        };
        Ok(Shared {
            root,
            digests,
            auth_keys: settings.token.as_deref().map(protocol::auth::Keys::new),
            tls,
            identity,
            settings,
            registry,
        })
    }

    /// The start-up (and reload) line about encryption.
    fn log_identity(&self) {
        match &self.identity {
            Some((fp, origin)) => info!("TLS 1.3; {origin}; fingerprint {fp}"),
            None => warn!(
                "running without TLS (--plaintext): names and files cross the network in \
                 the clear, and clients cannot tell this server from an impostor"
            ),
        }
    }
}

/// Who is connected, and whether the server is stopping.
#[derive(Default)]
pub(crate) struct Registry {
    /// Open connections per source (an IPv4 address or an IPv6 /64, as
    /// the penalties count).
    per_ip: Mutex<HashMap<source::Source, usize>>,
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

    fn release_ip(&self, src: source::Source) {
        let mut per_ip = self.per_ip.lock().unwrap();
        if let Some(n) = per_ip.get_mut(&src) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&src);
            }
        }
    }

    fn unregister(&self, id: u64) {
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

/// One connection's place in the per-address count (per source: an IPv4
/// address or an IPv6 /64), from accept to close (given back when dropped,
/// whatever path the connection took).
pub(crate) struct IpSlot {
    registry: Arc<Registry>,
    src: Option<source::Source>,
}

impl IpSlot {
    /// A place for `ip`'s source, unless it already has `max` connections.
    fn take(registry: &Arc<Registry>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let src = source::Source::of(ip);
        let mut per_ip = registry.per_ip.lock().unwrap();
        let n = per_ip.entry(src).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            registry: Arc::clone(registry),
            src: Some(src),
        })
    }

    /// No place (for a connection being refused).
    fn none(registry: &Arc<Registry>) -> IpSlot {
        IpSlot {
            registry: Arc::clone(registry),
            src: None,
        }
    }

    fn held(&self) -> bool {
        self.src.is_some()
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Some(src) = self.src {
            self.registry.release_ip(src);
        }
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

    /// The fingerprint clients pin (`None` with `--plaintext`).
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        self.current().identity.as_ref().map(|(f, _)| *f)
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
        first.log_identity();
        if let Some((fp, _)) = &first.identity {
            // What clients pin; on stderr so stdout keeps its one line.
            logging::notice(&format!("fingerprint {fp}"));
        }
        if first.auth_keys.is_some() {
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
        if let Some(w) = exposure_warning(local, first.auth_keys.is_some()) {
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
        let idle = Arc::new(Idle::default());
        let next_id = AtomicU64::new(1);
        let handshakes = admission::Loop::new(
            self.listener
                .try_clone()
                .map_err(|e| Error::io("cannot use the listener", e))?,
            Arc::clone(&self.current),
            Arc::clone(&active),
        )
        .map_err(|e| Error::io("cannot start the handshake loop", e))?;
        // Every finished handshake holds a session slot (taken in the
        // loop); here it gets a thread.
        handshakes.run(|admitted| {
            let id = next_id.fetch_add(1, Ordering::Relaxed);
            let peer = admitted.peer;
            let stream = Arc::clone(&admitted.stream);
            registry.register(id, Client { peer, stream });
            if admitted.version == protocol::VERSION {
                info!("{peer}: connected");
            } else {
                // An older client, answered in its own version.
                info!("{peer}: connected (protocol v{})", admitted.version);
            }
            let job = match idle.offer(Job {
                admitted: Box::new(admitted),
                id,
            }) {
                Ok(()) => return,
                Err(job) => job,
            };
            let (active2, idle2) = (Arc::clone(&active), Arc::clone(&idle));
            let registry2 = Arc::clone(&registry);
            let spawned = std::thread::Builder::new()
                .name("conn".into())
                .stack_size(SESSION_STACK)
                .spawn(move || {
                    let mut job = Some(job);
                    while let Some(Job { admitted, id }) = job.take() {
                        let shared = Arc::clone(&admitted.shared);
                        session::run(*admitted);
                        shared.registry.unregister(id);
                        active2.fetch_sub(1, Ordering::SeqCst);
                        if !shared.registry.shutting_down.load(Ordering::SeqCst) {
                            drop(shared);
                            job = idle2.next();
                        }
                    }
                });
            if let Err(e) = spawned {
                error!("{peer}: cannot start a thread: {e}");
                registry2.unregister(id);
                active.fetch_sub(1, Ordering::SeqCst);
            }
        });
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
        if shared.auth_keys.is_some() {
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

    #[test]
    fn the_per_address_limit_counts_what_the_penalty_counts() {
        let r = Arc::new(Registry::default());
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Two addresses of one IPv6 /64 share one allowance...
        let a = IpSlot::take(&r, ip("2001:db8::1"), 2).unwrap();
        let b = IpSlot::take(&r, ip("2001:db8::ffff:2"), 2).unwrap();
        assert!(IpSlot::take(&r, ip("2001:db8::3"), 2).is_none());
        // ... another /64 has its own, and IPv4 counts per address (its
        // mapped form included).
        let c = IpSlot::take(&r, ip("2001:db8:0:1::1"), 2).unwrap();
        let d = IpSlot::take(&r, ip("10.0.0.1"), 1).unwrap();
        assert!(IpSlot::take(&r, ip("::ffff:10.0.0.1"), 1).is_none());
        let e = IpSlot::take(&r, ip("10.0.0.2"), 1).unwrap();
        // The same source is what a failed proof penalizes.
        let now = std::time::Instant::now();
        r.penalties.fail(ip("2001:db8::1"), now);
        assert!(r.penalties.pending(ip("2001:db8::3"), now).is_some());
        // Slots are given back on drop.
        drop(a);
        let f = IpSlot::take(&r, ip("2001:db8::3"), 2).unwrap();
        drop((b, c, d, e, f));
        assert!(r.per_ip.lock().unwrap().is_empty());
    }
}
