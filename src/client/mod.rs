//! The client side of one connection: connect and greet, list, and receive
//! files into a caller-supplied sink. No progress bars, no files, no menus:
//! `transfer` and `main` decide what to do with what arrives.
//!
//! The greeting is written together with the first request and the server's
//! greeting is read together with the first answer, so a connection costs
//! one round trip, not two.

mod limits;
#[cfg(test)]
mod tests;

pub use limits::{
    Limits, DEFAULT_MAX_LIST_BYTES, DEFAULT_MAX_LIST_ENTRIES, DEFAULT_SPEED_LIMIT,
    DEFAULT_SPEED_TIME,
};

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::ServerAddr;
use crate::error::{describe_io, Error};
use limits::Socket;

use crate::protocol::{
    self, Entry, ErrorCode, ErrorFrame, FileHeader, Hello, ProtocolError, Request, Response,
    Trailer,
};
use crate::ratelimit::RateLimiter;
use crate::transport::identity::Fingerprint;
use crate::transport::known::{self, Trusted};
use crate::transport::tls::{self, ConnectFailure};
use crate::transport::{Link, Stream, Wire};

/// Buffer for frame headers and small bodies. Kept small on purpose: file
/// data is read straight into the sink's buffers (see
/// [`FileSink::buffer`]), and a read larger than this bypasses it.
const RECV_BUF: usize = 64 * 1024;
/// Size of the buffers file data is received into.
pub const CHUNK: usize = 1024 * 1024;
/// Longest wait for the server's greeting (less if --timeout is shorter),
/// like the server's own default handshake time-out.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The start of what a peer sent, as text fit to quote in a message.
fn printable_start(b: &[u8]) -> String {
    let text = String::from_utf8_lossy(&b[..b.len().min(40)]);
    let first = text.lines().next().unwrap_or("");
    crate::paths::display_safe(first).into_owned()
}

/// Where received file bytes go.
pub trait FileSink {
    /// The server accepted the request and is about to send `header.body_len()` bytes.
    fn start(&mut self, header: &FileHeader) -> io::Result<()>;
    /// A buffer of [`CHUNK`] bytes to receive the next piece into.
    fn buffer(&mut self) -> Vec<u8>;
    /// The next piece of the body: `buf[..len]`. The sink owns `buf` now
    /// (it may hand it to another thread and give it back later through
    /// [`FileSink::buffer`]).
    fn write(&mut self, buf: Vec<u8>, len: usize) -> io::Result<()>;
    /// Whether, after an error of its own, the sink still wants the rest
    /// of the body read (and dropped) so the connection stays usable. A
    /// sink that says no gets [`FileError::Abandoned`] at once.
    fn wants_rest(&self) -> bool {
        true
    }
}

/// Why one file did not arrive, while the connection itself is still fine.
#[derive(Debug)]
pub enum FileError {
    /// The server refused or aborted it.
    Refused(ErrorFrame),
    /// Our sink failed (disk full, permission); the rest of the body was
    /// read and dropped so the connection stays in step.
    Local(io::Error),
    /// Our sink failed and wanted no more: the rest of the body was not
    /// read, so the connection is out of step and must be dropped.
    Abandoned(io::Error),
}

/// A file that arrived whole.
#[derive(Debug, Clone)]
pub struct Received {
    pub header: FileHeader,
    pub trailer: Trailer,
}

/// One connection to a server, over a [`Link`] (TLS or plain TCP) unless
/// made with [`Connection::over`].
pub struct Connection<W: Wire = Link> {
    addr: String,
    /// Seconds without progress before the connection counts as dead.
    timeout: Duration,
    token: Option<Vec<u8>>,
    /// A response read ahead during the greeting, to be returned next.
    pending: Option<Response>,
    reader: BufReader<Socket<W>>,
    writer: BufWriter<Socket<W>>,
    greeted: bool,
    limits: Limits,
    /// The server's key and why we trust it (`None` with `--plaintext`).
    identity: Option<(Fingerprint, Trusted)>,
    /// TLS version and cipher suite, or "plaintext".
    transport: String,
    /// The protocol version we greeted with: [`protocol::VERSION`], or one
    /// of [`OLDER_VERSIONS`] for a server that speaks only that.
    version: u16,
    /// The requests sent before the server's greeting came: sent again
    /// over a new connection if the server speaks only an older version.
    early: Vec<u8>,
    /// Connects again greeting in another version (connections made with
    /// [`Connection::connect`]; once per connection).
    reopen: Option<Reopen<W>>,
}

/// How a connection connects again, in the version given.
type Reopen<W> = Box<dyn FnMut(u16) -> Result<Connection<W>, Error> + Send>;

/// The older versions this client also speaks, to a server that speaks no
/// newer one. Version 6 differs from 7 only in refusing a ranged GET of an
/// empty file, which this client answers by asking for the file whole.
pub const OLDER_VERSIONS: &[u16] = &[6];

/// The servers (by address) found to speak only an older version, and
/// which: the later connections of a run greet them in it at once.
static OLDER_SERVERS: Mutex<Vec<(String, u16)>> = Mutex::new(Vec::new());

/// "versions 6, 7": what this client speaks, for messages.
fn spoken_text() -> String {
    let mut all = OLDER_VERSIONS.to_vec();
    all.push(protocol::VERSION);
    protocol::versions_text(&all)
}

/// The version to greet the server `addr` with.
fn version_for(addr: &str) -> u16 {
    let known = OLDER_SERVERS.lock().unwrap_or_else(|p| p.into_inner());
    known
        .iter()
        .find(|(a, _)| a == addr)
        .map_or(protocol::VERSION, |&(_, v)| v)
}

impl Connection<Link> {
    /// Opens a TCP connection, runs the TLS handshake and checks the
    /// server's identity (unless `--plaintext`), and queues our greeting
    /// (sent with the first request).
    pub fn connect(server: &ServerAddr, limits: &Limits) -> Result<Connection, Error> {
        let (again, lim) = (server.clone(), *limits);
        let reopen: Reopen<Link> =
            Box::new(move |version| Connection::connect_in(&again, &lim, version, None));
        let version = version_for(&server.to_string());
        Connection::connect_in(server, limits, version, Some(reopen))
    }

    /// [`Connection::connect`], greeting in `version`.
    fn connect_in(
        server: &ServerAddr,
        limits: &Limits,
        version: u16,
        reopen: Option<Reopen<Link>>,
    ) -> Result<Connection, Error> {
        let addr = server.to_string();
        let fail = |reason: String| Error::Connect {
            addr: addr.clone(),
            reason,
        };
        let addrs: Vec<_> = (server.host.as_str(), server.port)
            .to_socket_addrs()
            .map_err(|e| fail(format!("cannot resolve host '{}': {e}", server.host)))?
            .collect();
        let mut last = None;
        let mut stream = None;
        for a in &addrs {
            let wait = limits.wait().map_err(|e| fail(e.to_string()))?;
            match TcpStream::connect_timeout(a, wait) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let stream = match (stream, last) {
            (Some(s), _) => s,
            (None, Some(e)) => {
                let hint = if e.kind() == io::ErrorKind::ConnectionRefused {
                    " (is fxfer serve running?)"
                } else {
                    ""
                };
                return Err(fail(format!("{}{hint}", describe_io(&e))));
            }
            (None, None) => return Err(fail("host name has no addresses".into())),
        };
        let setup = |s: &TcpStream| -> io::Result<()> {
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(limits.timeout.min(limits::POLL)))?;
            s.set_write_timeout(Some(limits.timeout))
        };
        setup(&stream).map_err(|e| fail(describe_io(&e)))?;
        if let Ok(local) = stream.local_addr() {
            log::debug!("connected to {addr} from {local}");
        }
        let peer = stream.peer_addr().map_err(|e| fail(describe_io(&e)))?;
        let (stream, identity) = if server.plaintext {
            (Stream::plain(stream), None)
        } else {
            // Something else on that port (a web server waiting for more of
            // a request, say) is told apart within the handshake time-out.
            let limit = limits.timeout.min(HANDSHAKE_TIMEOUT);
            let wait = limits.wait().map_err(|e| fail(e.to_string()))?.min(limit);
            let s = tls::connect(
                stream,
                &server.host,
                std::time::Instant::now() + wait,
                &crate::interrupt::requested,
            )
            .map_err(|f| handshake_error(&addr, f, limit))?;
            let certs = s.peer_certificates().unwrap_or_default();
            let trusted = known::check(&server.trust, &addr, &server.host, peer.ip(), &certs)
                .map_err(|reason| Error::Untrusted {
                    addr: addr.clone(),
                    reason,
                })?;
            let fp = certs
                .first()
                .and_then(|c| Fingerprint::of_cert(c).ok())
                .expect("a trusted server showed a readable certificate");
            log::info!("{addr}: server key {fp} ({trusted})");
            (s, Some((fp, trusted)))
        };
        let transport = stream.describe();
        log::debug!("{addr}: {transport}");
        let mut conn = Connection::over_in(
            Link::new(stream),
            addr,
            server.token.clone(),
            limits,
            transport,
            (version, reopen),
        )?;
        // (Unless it connected again: that connection has its own.)
        conn.identity = conn.identity.take().or(identity);
        Ok(conn)
    }
}

impl<W: Wire> Connection<W> {
    /// A connection over `wire`, a byte stream already set up (any TLS
    /// handshake and identity check done), to the server `addr` (which
    /// names it in messages). Queues our greeting; with a token, also runs
    /// the token handshake.
    pub fn over(
        wire: W,
        addr: String,
        token: Option<Vec<u8>>,
        limits: &Limits,
        transport: String,
    ) -> Result<Connection<W>, Error> {
        let version = (protocol::VERSION, None);
        Connection::over_in(wire, addr, token, limits, transport, version)
    }

    /// [`Connection::over`], greeting in `version`.
    fn over_in(
        wire: W,
        addr: String,
        token: Option<Vec<u8>>,
        limits: &Limits,
        transport: String,
        (version, reopen): (u16, Option<Reopen<W>>),
    ) -> Result<Connection<W>, Error> {
        let (r, w) = Socket::pair(wire, *limits);
        let mut conn = Connection {
            addr,
            timeout: limits.timeout,
            token,
            pending: None,
            reader: BufReader::with_capacity(RECV_BUF, r),
            writer: BufWriter::with_capacity(64 * 1024, w),
            greeted: false,
            limits: *limits,
            identity: None,
            transport,
            version,
            early: Vec::new(),
            reopen,
        };
        Hello { version, flags: 0 }
            .write_to(&mut conn.writer)
            .map_err(|e| conn.lost(e))?;
        // With a token, finish the handshake before any request goes out;
        // without one, the greeting travels with the first request.
        if conn.token.is_some() {
            conn.greet()?;
        }
        Ok(conn)
    }

    /// The server's fingerprint and why it is trusted (`None` without TLS).
    pub fn identity(&self) -> Option<&(Fingerprint, Trusted)> {
        self.identity.as_ref()
    }

    /// "TLS 1.3, TLS13_AES_256_GCM_SHA384" or "plaintext (no TLS)".
    pub fn transport(&self) -> &str {
        &self.transport
    }

    fn lost(&self, e: ProtocolError) -> Error {
        match e {
            ProtocolError::Closed => Error::protocol(
                format!("server {}", self.addr),
                ProtocolError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed unexpectedly",
                )),
            ),
            ProtocolError::Io(ref io) => Error::protocol(
                format!("connection to {}", self.addr),
                ProtocolError::Io(io::Error::new(io.kind(), describe_io(io))),
            ),
            other => Error::protocol(format!("server {}", self.addr), other),
        }
    }

    /// Changes how long the server may make no progress (from the one
    /// given to [`Connection::connect`]).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
        self.reader.get_mut().timeout = timeout;
        let link = &self.reader.get_ref().link;
        let _ = link.set_read_timeout(timeout.min(limits::POLL));
        let _ = link.set_write_timeout(timeout);
    }

    /// Receives at most `limit`'s rate from now on (shared with the other
    /// connections that use it).
    pub fn limit_rate(&mut self, limit: Arc<RateLimiter>) {
        self.reader.get_mut().limit = Some(limit);
    }

    /// Queues a request; [`Connection::flush`] sends what is queued.
    pub fn send(&mut self, req: &Request) -> Result<(), Error> {
        if !self.greeted && self.reopen.is_some() {
            // Kept until the greeting says whether they must go again.
            req.write_to(&mut self.early).map_err(|e| self.lost(e))?;
        }
        req.write_to(&mut self.writer).map_err(|e| self.lost(e))
    }

    pub fn flush(&mut self) -> Result<(), Error> {
        self.writer
            .flush()
            .map_err(|e| self.lost(ProtocolError::Io(e)))
    }

    fn greet(&mut self) -> Result<(), Error> {
        self.flush()?;
        // Something else on that port (a web server waiting for more of a
        // request, say) is told apart within the handshake time-out, not
        // after the transfer time-out.
        let limit = self.timeout.min(HANDSHAKE_TIMEOUT);
        let not_fxfer = |what: String| {
            Error::protocol(
                format!("server {}", self.addr),
                ProtocolError::Incompatible(what),
            )
        };
        self.reader.get_mut().timeout = limit;
        match self.reader.fill_buf() {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(not_fxfer(format!(
                    "timed out after {}s waiting for the fxfer greeting; \
                     is something other than fxfer serve listening there?",
                    limit.as_secs()
                )));
            }
            Ok(b) if !b.is_empty() && !protocol::MAGIC.starts_with(&b[..b.len().min(4)]) => {
                return Err(not_fxfer(format!(
                    "the peer is not an fxfer server (it answered {:?})",
                    printable_start(b)
                )));
            }
            _ => {}
        }
        let hello = Hello::read_from(&mut self.reader).map_err(|e| match e {
            ProtocolError::BadMagic => not_fxfer("the peer is not an fxfer server".into()),
            ProtocolError::Io(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                not_fxfer(format!(
                    "incomplete fxfer greeting after {}s",
                    limit.as_secs()
                ))
            }
            e => self.lost(e),
        })?;
        self.reader.get_mut().timeout = self.timeout;
        self.greeted = true;
        // The server speaks the version we greeted with, or says in its
        // greeting the highest it speaks, and why in an ERROR frame.
        if hello.version != self.version {
            let why = match self.read_response() {
                Ok(Response::Error(e)) if e.code == ErrorCode::UnsupportedVersion => e.message,
                // Refused before the server read our greeting (its address
                // limit, a penalty), so behind its own version's greeting:
                // that refusal, not a version to speak.
                Ok(Response::Error(e)) => return Err(self.refusal(e)),
                _ => format!("server speaks protocol version {}", hello.version),
            };
            if hello.version < self.version && OLDER_VERSIONS.contains(&hello.version) {
                if let Some(reopen) = self.reopen.take() {
                    return self.speak_older(hello.version, reopen, &why);
                }
            }
            return Err(Error::protocol(
                format!("server {}", self.addr),
                ProtocolError::Incompatible(format!(
                    "protocol version mismatch: {why} (this client speaks {})",
                    spoken_text()
                )),
            ));
        }
        self.early = Vec::new();
        log::debug!("{}: speaks protocol v{}", self.addr, hello.version);
        if hello.flags & protocol::HELLO_AUTH != 0 {
            self.authenticate()?;
            log::info!("{}: authenticated with the shared token", self.addr);
        } else if self.reader.buffer().first() == Some(&protocol::frame::ERROR) {
            // A refusal (busy, version) arrives with the greeting: report it
            // as what it is.
            if let Response::Error(e) = self.read_response()? {
                if self.token.is_some()
                    || matches!(
                        e.code,
                        ErrorCode::Busy
                            | ErrorCode::UnsupportedVersion
                            | ErrorCode::TransportMismatch
                    )
                {
                    return Err(self.refusal(e));
                }
                // An answer to a pipelined request; nothing is lost by
                // re-reading it, so hand it back.
                self.pending = Some(Response::Error(e));
            }
        } else if self.token.is_some() {
            // We expected to prove ourselves and see the server prove it
            // knows the token; a server that skips that is not trusted.
            return Err(self.auth_error(
                "the server did not ask for the token, so it cannot prove it knows it \
                 (connect without --token-file / FXFER_TOKEN to trust it anyway)",
            ));
        }
        Ok(())
    }

    /// The server speaks only `version`, an older one we speak too: connect
    /// again in it, send again what was sent, and go on over the new
    /// connection. Later connections to this server greet in it at once.
    fn speak_older(&mut self, version: u16, mut reopen: Reopen<W>, why: &str) -> Result<(), Error> {
        log::info!("{}: {why}; speaking protocol v{version} with it", self.addr);
        {
            let mut known = OLDER_SERVERS.lock().unwrap_or_else(|p| p.into_inner());
            known.retain(|(a, _)| *a != self.addr);
            known.push((self.addr.clone(), version));
        }
        let mut fresh = reopen(version)?;
        fresh.set_timeout(self.timeout);
        if let Some(l) = self.reader.get_ref().limit.clone() {
            fresh.limit_rate(l);
        }
        fresh
            .writer
            .write_all(&self.early)
            .map_err(|e| fresh.lost(ProtocolError::Io(e)))?;
        *self = fresh;
        if self.greeted {
            // It had a token: the greeting came before any request.
            self.flush()
        } else {
            self.greet()
        }
    }

    /// The protocol version this connection speaks (once greeted).
    pub fn version(&self) -> u16 {
        self.version
    }

    fn auth_error(&self, reason: impl Into<String>) -> Error {
        Error::Auth {
            addr: self.addr.clone(),
            reason: reason.into(),
        }
    }

    /// Answers the server's challenge with proof that we know the token,
    /// and checks the server's proof in return.
    fn authenticate(&mut self) -> Result<(), Error> {
        let Some(token) = self.token.clone() else {
            return Err(self.auth_error(
                "the server requires a token (give it with --token-file or FXFER_TOKEN)",
            ));
        };
        let server_nonce = match self.read_response()? {
            Response::AuthChallenge { nonce } => nonce,
            other => return Err(self.unexpected(&other, "AUTH_CHALLENGE")),
        };
        let key = protocol::auth::key(&token);
        let mut ours = [0u8; protocol::AUTH_LEN];
        getrandom::fill(&mut ours)
            .map_err(|e| self.auth_error(format!("no random numbers: {e}")))?;
        // Bound to this TLS connection: relayed elsewhere, it proves nothing.
        let binding = self.writer.get_ref().link.binding();
        let mac = protocol::auth::client_mac(&key, &server_nonce, &ours, &binding);
        self.send(&Request::Auth { nonce: ours, mac })?;
        self.flush()?;
        match self.read_response()? {
            Response::AuthOk { proof } => {
                if protocol::auth::verify(
                    &protocol::auth::server_proof(&key, &server_nonce, &ours, &binding),
                    &proof,
                ) {
                    Ok(())
                } else {
                    Err(self.auth_error("the server could not prove it knows the token"))
                }
            }
            // All sessions taken while we proved ourselves: busy, which is
            // worth a retry, unlike a wrong token.
            Response::Error(e) if e.code == ErrorCode::Busy => Err(self.refusal(e)),
            Response::Error(e) => Err(self.auth_error(e.message)),
            other => Err(self.unexpected(&other, "AUTH_OK")),
        }
    }

    /// Reads one response frame. Messages from the server are made safe to
    /// print here, once: a hostile server cannot reach the terminal with
    /// control characters.
    fn read_response(&mut self) -> Result<Response, Error> {
        if let Some(r) = self.pending.take() {
            return Ok(r);
        }
        match Response::read_from(&mut self.reader).map_err(|e| self.lost(e))? {
            Response::Error(mut e) => {
                if let std::borrow::Cow::Owned(safe) = crate::paths::display_safe(&e.message) {
                    e.message = safe;
                }
                Ok(Response::Error(e))
            }
            r => Ok(r),
        }
    }

    /// An ERROR frame that ends the connection, as an error.
    fn refusal(&self, e: ErrorFrame) -> Error {
        match e.code {
            ErrorCode::Busy => Error::Connect {
                addr: self.addr.clone(),
                reason: e.to_string(),
            },
            ErrorCode::UnsupportedVersion | ErrorCode::TransportMismatch => Error::protocol(
                format!("server {}", self.addr),
                ProtocolError::Incompatible(e.to_string()),
            ),
            ErrorCode::AuthFailed => self.auth_error(e.message),
            _ => Error::Remote(e),
        }
    }

    /// Reads the next response, turning connection-level refusals (busy,
    /// version) into errors.
    fn recv(&mut self) -> Result<Response, Error> {
        if !self.greeted {
            self.greet()?;
        } else if !self.writer.buffer().is_empty() {
            // Never wait for an answer to a request still in our buffer.
            self.flush()?;
        }
        match self.read_response()? {
            Response::Error(e)
                if matches!(
                    e.code,
                    ErrorCode::Busy
                        | ErrorCode::UnsupportedVersion
                        | ErrorCode::AuthFailed
                        | ErrorCode::TransportMismatch
                ) =>
            {
                Err(self.refusal(e))
            }
            r => Ok(r),
        }
    }

    fn unexpected(&self, got: &Response, expected: &'static str) -> Error {
        Error::protocol(
            format!("server {}", self.addr),
            ProtocolError::Unexpected {
                got: got.name(),
                expected,
            },
        )
    }

    /// Lists `path` ("" = the root).
    pub fn list(&mut self, path: &str, recursive: bool) -> Result<Vec<Entry>, Error> {
        self.list_with(path, recursive, false)
    }

    /// Lists `path`, with each file's BLAKE3 digest when `digests` is set.
    pub fn list_with(
        &mut self,
        path: &str,
        recursive: bool,
        digests: bool,
    ) -> Result<Vec<Entry>, Error> {
        self.send(&Request::List {
            path: path.into(),
            recursive,
            digests,
        })?;
        self.read_listing()
    }

    /// Lists each of `folders` (not recursively), all requests pipelined:
    /// one round trip for all. A folder the server refuses to list is
    /// `None`; only a broken connection is an error.
    pub fn list_many(&mut self, folders: &[&str]) -> Result<Vec<Option<Vec<Entry>>>, Error> {
        for f in folders {
            self.send(&Request::List {
                path: (*f).into(),
                recursive: false,
                digests: false,
            })?;
        }
        folders
            .iter()
            .map(|_| match self.read_listing() {
                Ok(l) => Ok(Some(l)),
                Err(Error::Remote(_)) => Ok(None),
                Err(e) => Err(e),
            })
            .collect()
    }

    /// Reads the answer to the next LIST in line: the whole listing, or
    /// `Err(Error::Remote)` when the server refused it (the connection is
    /// still usable then).
    pub fn read_listing(&mut self) -> Result<Vec<Entry>, Error> {
        let mut entries = Vec::new();
        // What the listing has cost so far, as encoded on the wire: a
        // server that never says LIST_END must not take all our memory.
        let mut bytes = 0u64;
        loop {
            match self.recv()? {
                // An empty frame is no progress: refuse it, so a hostile
                // server cannot keep us busy forever.
                Response::Entries(es) if es.is_empty() => {
                    return Err(self.malformed("ENTRIES", "empty frame".into()))
                }
                Response::Entries(mut es) => {
                    bytes += es
                        .iter()
                        .map(|e| protocol::entry_len(e) as u64)
                        .sum::<u64>();
                    if entries.len() as u64 + es.len() as u64 > self.limits.max_list_entries {
                        return Err(self.too_big(format!(
                            "more than {} entries (raise --max-list-entries if that is expected)",
                            self.limits.max_list_entries
                        )));
                    }
                    if bytes > self.limits.max_list_bytes {
                        return Err(self.too_big(format!(
                            "more than {} bytes (raise --max-list-bytes if that is expected)",
                            self.limits.max_list_bytes
                        )));
                    }
                    entries.append(&mut es)
                }
                Response::ListEnd { count } => {
                    if count != entries.len() as u64 {
                        return Err(Error::protocol(
                            format!("server {}", self.addr),
                            ProtocolError::Malformed {
                                frame: "LIST_END",
                                what: format!(
                                    "server counted {count} entries but sent {}",
                                    entries.len()
                                ),
                            },
                        ));
                    }
                    return Ok(entries);
                }
                Response::Error(e) => return Err(Error::Remote(e)),
                other => return Err(self.unexpected(&other, "ENTRIES")),
            }
        }
    }

    /// Receives the answer to the next GET in line (asked from `offset`,
    /// for at most `len` bytes if ranged) into `sink`. The server may answer
    /// a GET that is not ranged from offset 0 instead when the file changed
    /// since a partial copy was made.
    ///
    /// `Ok(Err(_))`: this file failed but the connection is still usable.
    /// `Err(_)`: the connection is broken.
    pub fn receive_file(
        &mut self,
        offset: u64,
        len: Option<u64>,
        sink: &mut dyn FileSink,
    ) -> Result<Result<Received, FileError>, Error> {
        let header = match self.recv()? {
            // A range starts before the end of the file, except that from
            // version 7 an empty file's range from 0 is the whole file.
            Response::File(h)
                if h.offset == offset
                    && (len.is_none()
                        || h.offset < h.size
                        || (h.size == 0 && self.version >= protocol::EMPTY_RANGE_VERSION)) =>
            {
                h
            }
            Response::File(h) if h.offset == 0 && len.is_none() => h,
            Response::File(h) => {
                return Err(Error::protocol(
                    format!("server {}", self.addr),
                    ProtocolError::Malformed {
                        frame: "FILE",
                        what: format!("asked for offset {offset}, got {}", h.offset),
                    },
                ))
            }
            Response::Error(e) => return Ok(Err(FileError::Refused(e))),
            other => return Err(self.unexpected(&other, "FILE")),
        };
        let body = header.range_len(len);
        let mut local: Option<io::Error> = sink.start(&header).err();
        // The sink's buffer being filled, and how much of it is: it goes to
        // the sink when full or when the body ends, so a server that sends
        // small DATA frames (the protocol allows any size) costs the sink
        // one hand-off per buffer, not one per frame.
        let mut held: Option<(Vec<u8>, usize)> = None;
        let r = self.receive_body(header, body, sink, &mut local, &mut held);
        // However the body ended, what arrived reaches the sink, as it
        // would have frame by frame: a part file that can resume keeps it.
        if let Some((buf, n)) = held.filter(|&(_, n)| n > 0 && local.is_none()) {
            let _ = sink.write(buf, n);
        }
        r
    }

    fn receive_body(
        &mut self,
        header: FileHeader,
        body: u64,
        sink: &mut dyn FileSink,
        local: &mut Option<io::Error>,
        held: &mut Option<(Vec<u8>, usize)>,
    ) -> Result<Result<Received, FileError>, Error> {
        let mut got = 0u64;
        loop {
            if let Some(e) = local.take_if(|_| !sink.wants_rest()) {
                return Ok(Err(FileError::Abandoned(e)));
            }
            match self.recv()? {
                Response::Data { len: 0 } => {
                    return Err(self.malformed("DATA", "empty frame".into()))
                }
                Response::Data { len } => {
                    if got + u64::from(len) > body {
                        return Err(self.overrun(body));
                    }
                    // Straight from the socket into the sink's buffers: one
                    // read per megabyte, no copy through our own buffer.
                    let mut left = len as usize;
                    while left > 0 {
                        let (mut buf, filled) = match held.take() {
                            Some(h) => h,
                            None => {
                                let mut buf = sink.buffer();
                                if buf.len() < left.min(CHUNK) {
                                    buf.resize(CHUNK, 0);
                                }
                                (buf, 0)
                            }
                        };
                        let n = left.min(buf.len() - filled);
                        if let Err(e) = self.reader.read_exact(&mut buf[filled..filled + n]) {
                            *held = Some((buf, filled));
                            return Err(self.lost(ProtocolError::Io(e)));
                        }
                        left -= n;
                        if filled + n < buf.len() {
                            *held = Some((buf, filled + n));
                        } else if local.is_none() {
                            *local = sink.write(buf, filled + n).err();
                        }
                    }
                    got += u64::from(len);
                }
                Response::End(trailer) => {
                    if let Some((buf, n)) = held.take().filter(|_| local.is_none()) {
                        *local = sink.write(buf, n).err();
                    }
                    if got != body {
                        return Err(Error::protocol(
                            format!("server {}", self.addr),
                            ProtocolError::Malformed {
                                frame: "END",
                                what: format!("file ended after {got} of {body} bytes"),
                            },
                        ));
                    }
                    return Ok(match local.take() {
                        Some(e) => Err(FileError::Local(e)),
                        None => Ok(Received { header, trailer }),
                    });
                }
                // The server aborted this file (e.g. it changed while sent).
                Response::Error(e) => return Ok(Err(FileError::Refused(e))),
                other => return Err(self.unexpected(&other, "DATA or END")),
            }
        }
    }

    fn too_big(&self, what: String) -> Error {
        Error::protocol(
            format!("server {}", self.addr),
            ProtocolError::Incompatible(format!("the listing has {what}")),
        )
    }

    fn malformed(&self, frame: &'static str, what: String) -> Error {
        Error::protocol(
            format!("server {}", self.addr),
            ProtocolError::Malformed { frame, what },
        )
    }

    fn overrun(&self, body: u64) -> Error {
        Error::protocol(
            format!("server {}", self.addr),
            ProtocolError::Malformed {
                frame: "DATA",
                what: format!("server sent more than the {body} bytes it announced"),
            },
        )
    }

    /// Says goodbye; errors do not matter any more.
    pub fn quit(mut self) {
        let _ = self.send(&Request::Quit);
        let _ = self.flush();
        self.writer.get_ref().link.close_write();
    }
}

/// A failed TLS handshake as one clear line. A server that answers in the
/// clear runs `--plaintext` (or predates TLS): say so, with its own words.
fn handshake_error(addr: &str, f: ConnectFailure, limit: Duration) -> Error {
    let incompatible =
        |why: String| Error::protocol(format!("server {addr}"), ProtocolError::Incompatible(why));
    match f {
        ConnectFailure::PlaintextServer(bytes) => {
            let mut r = &bytes[..];
            let hello = Hello::read_from(&mut r).ok();
            let said = match Response::read_from(&mut r) {
                Ok(Response::Error(e)) => {
                    let msg = crate::paths::display_safe(&e.message).into_owned();
                    // A busy server says so before any TLS: worth a retry.
                    if e.code == ErrorCode::Busy {
                        return Error::Connect {
                            addr: addr.to_string(),
                            reason: msg,
                        };
                    }
                    msg
                }
                _ => String::new(),
            };
            let version = hello.map(|h| h.version).unwrap_or(0);
            incompatible(if !said.is_empty() {
                said
            } else {
                format!(
                    "the server answered without TLS (protocol v{version}): it runs with \
                     --plaintext or is an older fxfer; use --plaintext to talk to it unencrypted"
                )
            })
        }
        ConnectFailure::NotTls(b) => incompatible(format!(
            "the peer is not an fxfer server (it answered {:?})",
            printable_start(&b)
        )),
        ConnectFailure::Closed => Error::Connect {
            addr: addr.to_string(),
            reason: "the server closed the connection during the TLS handshake \
                     (an fxfer older than protocol v4, or not an fxfer server?)"
                .into(),
        },
        ConnectFailure::Tls(e) => incompatible(format!("TLS handshake failed: {e}")),
        ConnectFailure::Io(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            incompatible(format!(
                "timed out after {}s waiting for the TLS handshake; is something other \
                 than fxfer serve listening there?",
                limit.as_secs()
            ))
        }
        ConnectFailure::Io(e) => Error::Connect {
            addr: addr.to_string(),
            reason: format!("TLS handshake: {}", describe_io(&e)),
        },
    }
}
