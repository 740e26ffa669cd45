//! The handshake phase: from `accept` until a connection has greeted us
//! (and proved the token, when one is required), every connection lives
//! here, on one thread, in one epoll loop, and costs a small struct and a
//! descriptor, not a thread or a session slot. Modelled on OpenSSH:
//!
//! - **MaxStartups.** Unfinished handshakes have their own bound,
//!   `start:rate:full`: below `start` every connection is taken; from
//!   `start` on, a new one is dropped with a probability that grows from
//!   `rate`% to 100% at `full`. A flood of silent connections cannot grow
//!   without bound, yet a real client still gets in with good odds.
//! - **LoginGraceTime.** Each connection has one deadline for the whole
//!   handshake (`--handshake-timeout`), counted from `accept`; there is no
//!   per-read time-out to stretch by trickling bytes. A refusal is sent
//!   and the connection drained for at most [`CLOSE_GRACE`] in all.
//! - **Sessions only for the finished.** A connection takes one of the
//!   `--max-connections` session slots (and a thread) only once its
//!   handshake is done; until then it competes only with other handshakes.
//!
//! Why an event loop rather than a thread per handshake: a thread costs a
//! stack and a scheduler entry, and 10,000 silent peers would need 10,000
//! of them; here they cost about 200 bytes each plus the kernel's socket.
//! Why not an async runtime: only this phase needs it, sessions are plain
//! blocking code with sendfile, and epoll through rustix is a few calls.
//!
//! The byte stream is read and written through [`Wire`], so a transport
//! with a handshake of its own (TLS, which rustls drives sans-IO with
//! `read_tls`/`process_new_packets`/`write_tls`) becomes one more step in
//! front of the greeting without a thread of its own.

use std::collections::{BinaryHeap, HashMap};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use rustix::event::epoll;

use super::source::Source;
use super::{IpSlot, Registry, Shared};
use crate::error::describe_io;
use crate::protocol::{self, handshake, ErrorCode, ErrorFrame, Hello};
use crate::transport::tls::{self as tlsx, BINDING_LABEL, BINDING_LEN, TLS_HANDSHAKE};
use crate::transport::TrafficSecrets;

/// After a refusal: the longest we keep sending our reply and reading
/// what the client still sends, in all.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// After a refusal: the most bytes read and discarded before closing.
const DRAIN_BUDGET: usize = 64 * 1024;
/// Pause before answering a failed token proof.
pub const AUTH_FAIL_DELAY: Duration = Duration::from_secs(1);
/// The most a client may send during the handshake before we stop reading
/// (what it pipelined goes to the session with the connection).
const MAX_EARLY: usize = protocol::HELLO_LEN + protocol::FRAME_HEADER_LEN + 2 * protocol::AUTH_LEN;
/// How often the loop says what it refused and dropped.
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// The listener's key in the epoll set.
const LISTENER: u64 = 0;

/// The MaxStartups setting: `start:rate:full`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Startups {
    pub start: usize,
    /// Percent dropped at `start`.
    pub rate: u32,
    pub full: usize,
}

impl Startups {
    pub const DEFAULT: Startups = Startups {
        start: 4096,
        rate: 30,
        full: 16384,
    };

    /// Parses `N` (a hard limit) or `START:RATE:FULL`, as sshd does.
    pub fn parse(text: &str) -> Result<Startups, String> {
        let bad = || format!("'{text}' is not START or START:RATE:FULL (e.g. 4096:30:16384)");
        let parts: Vec<&str> = text.split(':').collect();
        let num = |s: &str| s.trim().parse::<usize>().map_err(|_| bad());
        let s = match parts.as_slice() {
            [n] => {
                let n = num(n)?;
                Startups {
                    start: n,
                    rate: 100,
                    full: n,
                }
            }
            [a, r, f] => Startups {
                start: num(a)?,
                rate: num(r)? as u32,
                full: num(f)?,
            },
            _ => return Err(bad()),
        };
        if s.start == 0 || s.full < s.start || s.rate > 100 {
            return Err(format!(
                "'{text}': needs 1 <= START <= FULL and RATE between 0 and 100"
            ));
        }
        Ok(s)
    }

    /// Percent chance that a new connection is dropped when `n`
    /// handshakes are already under way.
    fn drop_percent(&self, n: usize) -> u32 {
        if n >= self.full {
            100
        } else if n < self.start {
            0
        } else {
            let span = (self.full - self.start).max(1) as u64;
            self.rate + ((100 - self.rate) as u64 * (n - self.start) as u64 / span) as u32
        }
    }
}

impl std::fmt::Display for Startups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.start, self.rate, self.full)
    }
}

/// A connection whose handshake is done, on its way to a session.
pub struct Admitted {
    /// Shared by the session's reader and writer and the registry: one
    /// descriptor per session.
    pub stream: Arc<TcpStream>,
    pub peer: SocketAddr,
    pub slot: IpSlot,
    pub shared: Arc<Shared>,
    /// What the client sent beyond the handshake (pipelined requests).
    pub early: Vec<u8>,
    /// What we still owe the client of the handshake (our greeting).
    pub owed: Vec<u8>,
    /// The protocol version the client greeted with (one we speak): the
    /// session reads its requests by that version's rules.
    pub version: u16,
    /// The TLS connection, when the server speaks TLS (it may still hold
    /// decrypted bytes and encrypted ones not yet sent).
    pub tls: Option<Box<tlsx::Established>>,
}

/// How bytes move during the handshake: plain TCP, or through rustls's
/// TLS state machine, driven here without I/O of its own (`read_tls`,
/// `process_new_packets`, `write_tls` on the non-blocking socket).
enum Wire {
    Plain,
    /// `decided`: the first byte showed a TLS ClientHello.
    Tls {
        conn: Box<rustls::ServerConnection>,
        /// What its key log caught, for the session's record layer.
        secrets: Arc<TrafficSecrets>,
        /// Bytes read and not yet given to rustls: it is fed whole records
        /// only, so the session can take the connection over from it.
        raw: Vec<u8>,
        decided: bool,
    },
}

impl Wire {
    fn read(&mut self, s: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        let Wire::Tls { conn, raw, .. } = self else {
            return s.read(buf);
        };
        loop {
            match conn.reader().read(buf) {
                // 0: the client's close_notify.
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            let mut got = [0u8; 4096];
            let n = s.read(&mut got)?;
            if n == 0 {
                return Ok(0);
            }
            raw.extend_from_slice(&got[..n]);
            match tlsx::feed_records(conn, raw, |_| false) {
                Ok(()) => {}
                Err(tlsx::FeedError::Io(e)) => return Err(e),
                Err(tlsx::FeedError::Tls(e)) => {
                    // The alert that says why, if the socket takes it.
                    let _ = Self::flush_conn(conn, s);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
            // Our handshake messages go out now, or from the next flush.
            match Self::flush_conn(conn, s) {
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
                _ => {}
            }
        }
    }

    fn write(&mut self, s: &mut TcpStream, buf: &[u8]) -> io::Result<usize> {
        let Wire::Tls { conn, .. } = self else {
            return s.write(buf);
        };
        // Held by rustls until the handshake is done, then encrypted.
        let n = conn.writer().write(buf)?;
        match Self::flush_conn(conn, s) {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(n),
        }
    }

    /// Sends what TLS holds for the client; `WouldBlock` when some is left.
    fn flush(&mut self, s: &mut TcpStream) -> io::Result<()> {
        match self {
            Wire::Plain => Ok(()),
            Wire::Tls { conn, .. } => Self::flush_conn(conn, s),
        }
    }

    fn flush_conn(conn: &mut rustls::ServerConnection, s: &mut TcpStream) -> io::Result<()> {
        while conn.wants_write() {
            conn.write_tls(s)?;
        }
        Ok(())
    }

    fn wants_write(&self) -> bool {
        matches!(self, Wire::Tls { conn, .. } if conn.wants_write())
    }

    /// The channel binding the token MACs cover (zeros without TLS).
    fn binding(&self) -> [u8; BINDING_LEN] {
        let mut out = [0u8; BINDING_LEN];
        if let Wire::Tls { conn, .. } = self {
            if conn
                .export_keying_material(&mut out, BINDING_LABEL, None)
                .is_err()
            {
                out = [0u8; BINDING_LEN];
            }
        }
        out
    }

    /// Still in the TLS handshake.
    fn handshaking(&self) -> bool {
        matches!(self, Wire::Tls { conn, .. } if conn.is_handshaking())
    }
}

enum State {
    /// Waiting for the client's 8-byte greeting.
    Greeting,
    /// Challenge sent; waiting for the AUTH frame.
    Proof { nonce: [u8; protocol::AUTH_LEN] },
    /// A wrong proof: the refusal goes out at `at`.
    Slowed { at: Instant, reply: Vec<u8> },
    /// Refused: sending what is owed, then reading and discarding until
    /// the client closes, the budget is spent or `until`.
    Closing { until: Instant, drained: usize },
}

struct Pending {
    stream: TcpStream,
    peer: SocketAddr,
    slot: IpSlot,
    shared: Arc<Shared>,
    wire: Wire,
    /// The whole handshake's deadline, from accept.
    deadline: Instant,
    state: State,
    input: Vec<u8>,
    out: Vec<u8>,
    sent: usize,
    shut: bool,
    /// A TLS server whose client greeted in the clear (`--plaintext`).
    plain_client: bool,
    /// The version the connection speaks: the client's, once its greeting
    /// came and we speak it; ours until then.
    version: u16,
}

/// What handling an event came to.
enum Step {
    Wait,
    Close(&'static str),
    Done,
}

impl Pending {
    /// When this connection next needs the loop's attention by itself.
    fn wake_at(&self) -> Instant {
        match &self.state {
            State::Greeting | State::Proof { .. } => self.deadline,
            State::Slowed { at, .. } => *at,
            State::Closing { until, .. } => *until,
        }
    }

    /// Queues a refusal: our greeting when not sent yet (in the client's
    /// version once we know it is one we speak, else in ours), the ERROR
    /// frame, then the close.
    fn refuse(&mut self, greet: bool, code: ErrorCode, why: &str, now: Instant) {
        if greet {
            let _ = Hello {
                version: self.version,
                flags: 0,
            }
            .write_to(&mut self.out);
        }
        let _ = protocol::write_error(&mut self.out, &ErrorFrame::new(code, why));
        self.state = State::Closing {
            until: now + CLOSE_GRACE,
            drained: 0,
        };
    }

    /// Writes what is owed, as far as the socket takes it.
    fn flush(&mut self) -> io::Result<()> {
        while self.sent < self.out.len() {
            match self.wire.write(&mut self.stream, &self.out[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.sent = 0;
        self.wire.flush(&mut self.stream)
    }

    /// On a TLS server, looks at the first byte before anything is read:
    /// a TLS ClientHello, an fxfer greeting in the clear (a `--plaintext`
    /// client, answered in the clear), or garbage.
    fn classify(&mut self) -> io::Result<()> {
        let Wire::Tls { decided: false, .. } = &self.wire else {
            return Ok(());
        };
        let mut first = [0u8; 1];
        match self.stream.peek(&mut first) {
            Ok(0) => Ok(()),
            Ok(_) if first[0] == TLS_HANDSHAKE => {
                if let Wire::Tls { decided, .. } = &mut self.wire {
                    *decided = true;
                }
                Ok(())
            }
            Ok(_) if first[0] == protocol::MAGIC[0] => {
                self.wire = Wire::Plain;
                self.plain_client = true;
                Ok(())
            }
            Ok(_) => {
                warn!(
                    "{}: refused: not an fxfer client (no TLS ClientHello; first byte 0x{:02x})",
                    self.peer, first[0]
                );
                Err(io::Error::new(io::ErrorKind::InvalidInput, "not TLS"))
            }
            Err(e) => Err(e),
        }
    }

    /// Reads what has arrived (up to [`MAX_EARLY`] kept); `Ok(true)` at end
    /// of stream.
    fn fill(&mut self) -> io::Result<bool> {
        match self.classify() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            r => r?,
        }
        let mut buf = [0u8; 512];
        loop {
            let room = MAX_EARLY.saturating_sub(self.input.len());
            if room == 0 {
                return Ok(false);
            }
            let want = room.min(buf.len());
            match self.wire.read(&mut self.stream, &mut buf[..want]) {
                Ok(0) => return Ok(true),
                Ok(n) => self.input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads and discards (while closing); `Ok(true)` when done.
    fn drain(&mut self) -> io::Result<bool> {
        let State::Closing { drained, .. } = &mut self.state else {
            return Ok(true);
        };
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Ok(true),
                Ok(n) => {
                    *drained += n;
                    if *drained >= DRAIN_BUDGET {
                        return Ok(true);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }
}

/// Counts for the periodic report.
#[derive(Default)]
struct Tally {
    dropped: u64,
    expired: u64,
}

/// The handshake loop and what it needs.
pub struct Loop {
    listener: TcpListener,
    current: Arc<RwLock<Arc<Shared>>>,
    registry: Arc<Registry>,
    /// Sessions running now (the `--max-connections` slots).
    active: Arc<AtomicUsize>,
    epoll: std::os::fd::OwnedFd,
    pending: HashMap<u64, Pending>,
    timers: BinaryHeap<std::cmp::Reverse<(Instant, u64)>>,
    next_key: u64,
    rng: u64,
    tally: Tally,
    reported: Instant,
}

impl Loop {
    pub fn new(
        listener: TcpListener,
        current: Arc<RwLock<Arc<Shared>>>,
        active: Arc<AtomicUsize>,
    ) -> io::Result<Loop> {
        listener.set_nonblocking(true)?;
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        epoll::add(
            &epoll,
            &listener,
            epoll::EventData::new_u64(LISTENER),
            epoll::EventFlags::IN,
        )?;
        let mut seed = [0u8; 8];
        let _ = getrandom::fill(&mut seed);
        let registry = Arc::clone(&current.read().unwrap().registry);
        Ok(Loop {
            listener,
            current,
            registry,
            active,
            epoll,
            pending: HashMap::new(),
            timers: BinaryHeap::new(),
            next_key: LISTENER + 1,
            rng: u64::from_le_bytes(seed) | 1,
            tally: Tally::default(),
            reported: Instant::now(),
        })
    }

    /// Runs until the server is stopping; every finished handshake goes to
    /// `start`.
    pub fn run(mut self, mut start: impl FnMut(Admitted)) {
        let mut events = Vec::with_capacity(1024);
        while !self.registry.shutting_down.load(Ordering::SeqCst) {
            let now = Instant::now();
            let wait = self
                .timers
                .peek()
                .map(|t| t.0 .0.saturating_duration_since(now))
                .unwrap_or(REPORT_EVERY)
                .min(Duration::from_millis(500));
            let ts = rustix::event::Timespec {
                tv_sec: wait.as_secs() as i64,
                tv_nsec: i64::from(wait.subsec_nanos()),
            };
            events.clear();
            match epoll::wait(
                &self.epoll,
                rustix::buffer::spare_capacity(&mut events),
                Some(&ts),
            ) {
                Ok(_) => {}
                Err(e) if e == rustix::io::Errno::INTR => continue,
                Err(e) => {
                    warn!("handshake loop: epoll failed: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            }
            for ev in events.drain(..) {
                match ev.data.u64() {
                    LISTENER => self.accept_all(&mut start),
                    key => self.advance(key, &mut start),
                }
            }
            self.expire(&mut start);
            self.report();
        }
        let left = self.pending.len();
        if left > 0 {
            info!("shutting down: closing {left} connection(s) still in their handshake");
        }
    }

    fn random_percent(&mut self) -> u32 {
        // xorshift64: cheap, and good enough to pick who is dropped.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % 100) as u32
    }

    fn accept_all(&mut self, start: &mut dyn FnMut(Admitted)) {
        loop {
            let (stream, peer) = match self.listener.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: say so and come back on the next
                    // event (the listener stays readable).
                    warn!("accept failed: {}", describe_io(&e));
                    return;
                }
            };
            self.admit(stream, peer, start);
        }
    }

    /// The cheap decisions, in sshd's order: drop early when too many
    /// handshakes are under way, then penalties, then per-address limits.
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr, start: &mut dyn FnMut(Admitted)) {
        let shared = Arc::clone(&self.current.read().unwrap());
        let limit = shared.settings.max_startups;
        let chance = limit.drop_percent(self.pending.len());
        if chance > 0 && (chance >= 100 || self.random_percent() < chance) {
            // The first drop of a report period is logged at once, the
            // rest counted (a flood must not flood the log too).
            if self.tally.dropped == 0 {
                warn!(
                    "{peer}: dropped: {} handshakes under way (max-startups {limit}); \
                     further drops are counted and reported every {}s",
                    self.pending.len(),
                    REPORT_EVERY.as_secs()
                );
            } else {
                debug!("{peer}: dropped (max-startups {limit})");
            }
            self.tally.dropped += 1;
            return; // closing is the whole answer, as sshd does
        }
        if stream.set_nonblocking(true).is_err() || stream.set_nodelay(true).is_err() {
            return;
        }
        let now = Instant::now();
        let slot = IpSlot::take(
            &self.registry,
            peer.ip(),
            shared.settings.max_connections_per_ip,
        );
        let mut p = Pending {
            stream,
            peer,
            slot: slot.unwrap_or_else(|| IpSlot::none(&self.registry)),
            deadline: now + shared.settings.handshake_timeout,
            wire: match &shared.tls {
                Some(cfg) => {
                    let (conn, secrets) = tlsx::server_connection(cfg);
                    Wire::Tls {
                        conn: Box::new(conn),
                        secrets,
                        raw: Vec::new(),
                        decided: false,
                    }
                }
                None => Wire::Plain,
            },
            state: State::Greeting,
            input: Vec::new(),
            out: Vec::new(),
            sent: 0,
            shut: false,
            plain_client: false,
            version: protocol::VERSION,
            shared,
        };
        let refused_at_once =
            self.registry.penalties.pending(peer.ip(), now).is_some() || !p.slot.held();
        if refused_at_once {
            // Decided before reading anything: answered in the clear, so a
            // refusal costs no cryptography.
            p.wire = Wire::Plain;
            // And before the client said its version: greeted in 6, which
            // a version 7 client reads a refusal behind too, where a
            // version 6 one takes any other greeting for a mismatch (and
            // gives up, where busy is worth a retry).
            p.version = protocol::TLS_VERSIONS[0];
        }
        if let Some(wait) = self.registry.penalties.pending(peer.ip(), now) {
            warn!(
                "{peer}: refused: failed token proofs from {}; {}s of penalty left",
                Source::of(peer.ip()),
                wait.as_secs()
            );
            p.refuse(
                true,
                ErrorCode::AuthFailed,
                &format!(
                    "authentication failed too often from your address; try again in {}s",
                    wait.as_secs().max(1)
                ),
                now,
            );
        } else if !p.slot.held() {
            warn!(
                "{peer}: refused: server busy ({} connections from {})",
                p.shared.settings.max_connections_per_ip,
                Source::of(peer.ip())
            );
            p.refuse(
                true,
                ErrorCode::Busy,
                "server busy: too many connections from your address, try again later",
                now,
            );
        } else {
            debug!("{peer}: accepted; handshake under way");
        }
        let key = self.next_key;
        self.next_key += 1;
        let flags = epoll::EventFlags::IN
            | epoll::EventFlags::OUT
            | epoll::EventFlags::RDHUP
            | epoll::EventFlags::ET;
        if epoll::add(
            &self.epoll,
            &p.stream,
            epoll::EventData::new_u64(key),
            flags,
        )
        .is_err()
        {
            return;
        }
        self.timers.push(std::cmp::Reverse((p.wake_at(), key)));
        self.pending.insert(key, p);
        // Whatever already arrived (or is owed) is handled now: edge
        // triggering reports only what comes later.
        self.advance(key, start);
    }

    fn advance(&mut self, key: u64, start: &mut dyn FnMut(Admitted)) {
        let Some(mut p) = self.pending.remove(&key) else {
            return;
        };
        let before = p.wake_at();
        let now = Instant::now();
        match self.step(&mut p, now) {
            Step::Wait => {
                if p.wake_at() != before {
                    self.timers.push(std::cmp::Reverse((p.wake_at(), key)));
                }
                self.pending.insert(key, p);
            }
            Step::Close(why) => {
                debug!("{}: closed during the handshake: {why}", p.peer);
                let _ = epoll::delete(&self.epoll, &p.stream);
            }
            Step::Done => {
                let _ = epoll::delete(&self.epoll, &p.stream);
                self.hand_over(p, start);
            }
        }
    }

    /// Moves one connection as far as its bytes allow.
    fn step(&mut self, p: &mut Pending, now: Instant) -> Step {
        loop {
            match p.flush() {
                Ok(()) => {}
                // Edge-triggered: the loop hears again once it is writable.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Wait,
                Err(_) => return Step::Close("connection lost"),
            }
            match &p.state {
                State::Closing { .. } => {
                    if !p.shut {
                        if let Wire::Tls { conn, .. } = &mut p.wire {
                            // An orderly end inside TLS, after the refusal.
                            conn.send_close_notify();
                            let _ = Wire::flush_conn(conn, &mut p.stream);
                        }
                        let _ = p.stream.shutdown(Shutdown::Write);
                        p.shut = true;
                    }
                    return match p.drain() {
                        Ok(false) => Step::Wait,
                        _ => Step::Close("refused"),
                    };
                }
                State::Slowed { .. } => return Step::Wait,
                State::Greeting | State::Proof { .. } => {}
            }
            let eof = match p.fill() {
                Ok(eof) => eof,
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    warn!("{}: refused: TLS handshake failed: {e}", p.peer);
                    return Step::Close("TLS handshake failed");
                }
                Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                    return Step::Close("not TLS");
                }
                Err(_) => return Step::Close("connection lost"),
            };
            let held = p.input.len();
            if let Some(step) = self.parse(p, now) {
                return step;
            }
            // A reply was queued or a message consumed: go round again.
            if !p.out.is_empty() || p.input.len() != held || p.wire.wants_write() {
                continue;
            }
            return if eof {
                Step::Close("client hung up")
            } else {
                Step::Wait
            };
        }
    }

    /// Acts on the bytes held. `None`: more are needed (or a reply was
    /// queued and the loop goes on).
    fn parse(&mut self, p: &mut Pending, now: Instant) -> Option<Step> {
        match p.state {
            State::Greeting => match handshake::greeting(&p.input) {
                handshake::Greeting::NeedMore => None,
                handshake::Greeting::NotFxfer
                    if p.shared.tls.is_none() && p.input.first() == Some(&TLS_HANDSHAKE) =>
                {
                    // A TLS ClientHello: the client did not ask for
                    // --plaintext. Said in the clear.
                    warn!(
                        "{}: refused: client wants TLS, this server runs --plaintext",
                        p.peer
                    );
                    p.input.clear();
                    p.refuse(
                        true,
                        ErrorCode::TransportMismatch,
                        "this server runs without TLS (--plaintext); connect with \
                         --plaintext to use it unencrypted",
                        now,
                    );
                    None
                }
                handshake::Greeting::NotFxfer => {
                    warn!("{}: refused: not an fxfer client (bad magic bytes)", p.peer);
                    Some(Step::Close("bad magic"))
                }
                handshake::Greeting::Hello(hello) => {
                    p.input.drain(..protocol::HELLO_LEN);
                    self.greeted(p, hello, now);
                    if matches!(p.state, State::Greeting) {
                        return Some(Step::Done);
                    }
                    None
                }
            },
            State::Proof { nonce } => {
                let keys = p.shared.auth_keys.expect("a challenge means a token");
                // Bound to this TLS connection: a proof relayed from another
                // one does not verify. (Versions 3 to 5, in the clear, bind
                // their proofs to the nonces alone, as they always did.)
                let binding = p.wire.binding();
                let want = handshake::Expect {
                    keys: &keys,
                    version: p.version,
                    server_nonce: &nonce,
                    binding: &binding,
                };
                let got = handshake::proof(&p.input, want);
                let why = match got {
                    handshake::Proof::NeedMore => return None,
                    handshake::Proof::Valid { client_nonce } => {
                        p.input.drain(..handshake::PROOF_LEN);
                        info!("{}: authenticated", p.peer);
                        // The busy refusal takes AUTH_OK's place.
                        if !self.reserve_session(p, false, now) {
                            return None;
                        }
                        let _ = protocol::write_auth_ok(
                            &mut p.out,
                            &keys.server_proof(p.version, &nonce, &client_nonce, &binding),
                        );
                        return Some(Step::Done);
                    }
                    handshake::Proof::NotAuth => "no token (a request came before AUTH)",
                    handshake::Proof::Malformed => "malformed AUTH frame",
                    handshake::Proof::Wrong => "wrong token",
                };
                self.failed_proof(p, why, got.is_guess(), now);
                None
            }
            State::Slowed { .. } | State::Closing { .. } => None,
        }
    }

    /// The client's greeting arrived: refuse a version we do not speak,
    /// challenge for the token, or finish.
    fn greeted(&mut self, p: &mut Pending, hello: Hello, now: Instant) {
        let tls = p.shared.tls.is_some();
        if p.plain_client {
            // At a TLS server, in the clear: refused, in the clear.
            let (code, msg) = if protocol::TLS_VERSIONS.contains(&hello.version) {
                // In the client's own version, which it reads the refusal
                // as (a version 6 client gets the bytes it always got).
                p.version = hello.version;
                (
                    ErrorCode::TransportMismatch,
                    "this server requires TLS; connect without --plaintext".to_string(),
                )
            } else {
                (
                    ErrorCode::UnsupportedVersion,
                    format!(
                        "unsupported protocol version {}; this server speaks {} over TLS",
                        hello.version,
                        protocol::versions_text(protocol::TLS_VERSIONS)
                    ),
                )
            };
            warn!(
                "{}: refused: client spoke without TLS (protocol v{}; --plaintext?)",
                p.peer, hello.version
            );
            p.refuse(true, code, &msg, now);
            return;
        }
        let spoken = protocol::versions_spoken(tls);
        if !spoken.contains(&hello.version) {
            let msg = format!(
                "unsupported protocol version {}; this server speaks {}",
                hello.version,
                protocol::versions_text(spoken)
            );
            warn!("{}: refused: {msg}", p.peer);
            p.refuse(true, ErrorCode::UnsupportedVersion, &msg, now);
            return;
        }
        // From here on every greeting we send, a refusal's too, carries
        // the client's version, and the session speaks it.
        p.version = hello.version;
        match p.shared.auth_keys {
            None => {
                if !self.reserve_session(p, true, now) {
                    return;
                }
                let _ = Hello {
                    version: hello.version,
                    flags: 0,
                }
                .write_to(&mut p.out);
            }
            Some(_) => {
                // No slot now means none soon: say so before any challenge
                // (the slot itself is taken once the proof is in).
                let max = p.shared.settings.max_connections;
                if self.active.load(Ordering::SeqCst) >= max {
                    warn!("{}: refused: server busy ({max} connections)", p.peer);
                    p.refuse(
                        true,
                        ErrorCode::Busy,
                        "server busy: too many connections, try again later",
                        now,
                    );
                    return;
                }
                let mut nonce = [0u8; protocol::AUTH_LEN];
                if getrandom::fill(&mut nonce).is_err() {
                    p.refuse(true, ErrorCode::Internal, "no random numbers", now);
                    return;
                }
                let _ = Hello {
                    version: hello.version,
                    flags: protocol::HELLO_AUTH,
                }
                .write_to(&mut p.out);
                let _ = protocol::write_auth_challenge(&mut p.out, &nonce);
                p.state = State::Proof { nonce };
            }
        }
    }

    /// Takes a session slot, or queues the busy refusal. `greet`: our
    /// greeting has not gone out yet.
    fn reserve_session(&mut self, p: &mut Pending, greet: bool, now: Instant) -> bool {
        let max = p.shared.settings.max_connections;
        let taken = self
            .active
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if !taken {
            warn!("{}: refused: server busy ({max} connections)", p.peer);
            p.refuse(
                greet,
                ErrorCode::Busy,
                "server busy: too many connections, try again later",
                now,
            );
        }
        taken
    }

    fn failed_proof(&mut self, p: &mut Pending, why: &str, guessed: bool, now: Instant) {
        if guessed {
            let penalty = self.registry.penalties.fail(p.peer.ip(), now);
            warn!(
                "{}: refused: authentication failed: {why}; {} may try again in {}s",
                p.peer,
                Source::of(p.peer.ip()),
                penalty.as_secs()
            );
        } else {
            warn!("{}: refused: authentication failed: {why}", p.peer);
        }
        let mut reply = Vec::new();
        let _ = protocol::write_error(
            &mut reply,
            &ErrorFrame::new(
                ErrorCode::AuthFailed,
                format!("authentication failed: {why}"),
            ),
        );
        p.state = State::Slowed {
            at: now + AUTH_FAIL_DELAY,
            reply,
        };
    }

    /// Connections whose time has come: past their deadline, or due to be
    /// answered.
    fn expire(&mut self, start: &mut dyn FnMut(Admitted)) {
        let now = Instant::now();
        while let Some(std::cmp::Reverse((at, key))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(mut p) = self.pending.remove(&key) else {
                continue;
            };
            if p.wake_at() > now {
                // An old timer; a newer one is queued.
                self.pending.insert(key, p);
                continue;
            }
            let answer = match &mut p.state {
                State::Slowed { reply, .. } => {
                    p.out.append(reply);
                    true
                }
                State::Proof { .. } => {
                    self.tally.expired += 1;
                    warn!(
                        "{}: refused: authentication failed: no token (handshake timed out)",
                        p.peer
                    );
                    let _ = protocol::write_error(
                        &mut p.out,
                        &ErrorFrame::new(
                            ErrorCode::AuthFailed,
                            "authentication failed: no token (handshake timed out)",
                        ),
                    );
                    true
                }
                State::Greeting => {
                    self.tally.expired += 1;
                    if p.wire.handshaking() {
                        warn!("{}: refused: TLS handshake timed out", p.peer);
                    } else {
                        debug!(
                            "{}: closed: no greeting within the handshake time-out",
                            p.peer
                        );
                    }
                    false
                }
                State::Closing { .. } => false,
            };
            if answer {
                p.state = State::Closing {
                    until: now + CLOSE_GRACE,
                    drained: 0,
                };
                self.timers
                    .push(std::cmp::Reverse((now + CLOSE_GRACE, key)));
                self.pending.insert(key, p);
                self.advance(key, start);
            } else {
                let _ = epoll::delete(&self.epoll, &p.stream);
            }
        }
    }

    fn hand_over(&mut self, p: Pending, start: &mut dyn FnMut(Admitted)) {
        let Pending {
            stream,
            peer,
            slot,
            shared,
            input,
            mut out,
            sent,
            version,
            wire,
            ..
        } = p;
        if stream.set_nonblocking(false).is_err() {
            self.active.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        out.drain(..sent);
        start(Admitted {
            stream: Arc::new(stream),
            peer,
            slot,
            shared,
            early: input,
            owed: out,
            version,
            tls: match wire {
                Wire::Tls {
                    conn, secrets, raw, ..
                } => Some(Box::new(tlsx::Established::server(*conn, secrets, raw))),
                Wire::Plain => None,
            },
        });
    }

    fn report(&mut self) {
        if self.reported.elapsed() < REPORT_EVERY {
            return;
        }
        self.reported = Instant::now();
        let t = std::mem::take(&mut self.tally);
        if t.dropped + t.expired > 0 {
            info!(
                "handshakes in the last {}s: {} dropped early (max-startups), {} closed unfinished \
                 at the handshake time-out; {} under way now",
                REPORT_EVERY.as_secs(),
                t.dropped,
                t.expired,
                self.pending.len()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_startups_parses_like_sshd_and_drops_more_as_it_fills() {
        let s = Startups::parse("10:30:100").unwrap();
        assert_eq!(s.drop_percent(9), 0);
        assert_eq!(s.drop_percent(10), 30);
        assert_eq!(s.drop_percent(55), 65);
        assert_eq!(s.drop_percent(100), 100);
        let hard = Startups::parse("50").unwrap();
        assert_eq!(hard.drop_percent(49), 0);
        assert_eq!(hard.drop_percent(50), 100);
        for bad in ["", "a", "10:30", "10:130:100", "100:30:10", "0"] {
            assert!(Startups::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Startups::DEFAULT.to_string(), "4096:30:16384");
    }
}
