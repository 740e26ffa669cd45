//! The byte stream under the protocol: TLS 1.3 by default, plain TCP when
//! both sides ask for `--plaintext`. The protocol module reads and writes
//! a [`Link`] without knowing which it is.
//!
//! - [`tls`]: rustls configurations and handshakes (the server's can be
//!   driven without a thread of its own);
//! - [`record`]: the TLS records after the handshake (sealed and opened
//!   in place, key updates, alerts);
//! - [`identity`]: the server's key, certificate and fingerprint;
//! - [`known`]: the client's known-servers file and trust decisions.

mod batch;
pub mod identity;
pub mod known;
mod memory;
mod record;
pub mod tls;

pub use batch::Batch;
pub use memory::Memory;
pub use record::{Suite, TrafficSecrets};

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::net::RecvFlags;
use rustls::pki_types::CertificateDer;

use record::{Keys, Messages, PostHandshake, ALERT, APPLICATION_DATA, HANDSHAKE};

/// Bytes read from the socket at a time on a TLS connection; records are
/// opened in place in this buffer.
const TLS_READ_BUF: usize = 256 * 1024;
/// Reads into buffers at least this large open records in them (room for
/// a record's first part and several whole ones).
const DIRECT_READ: usize = 64 * 1024;
/// Sealed records are written to the socket once this many are waiting
/// (and at the end of every write).
const TLS_SEND_AT: usize = 256 * 1024;
/// The most records in a row that hand on no application data (empty
/// ones, key updates, session tickets, warnings) before the peer is
/// refused.
const QUIET_RECORDS: u32 = 32;

/// One connection's byte stream, plain or TLS.
pub enum Stream {
    Plain(Arc<TcpStream>),
    Tls(Box<TlsStream>),
}

/// What a TLS connection's records travel over after the handshake: the
/// TCP socket (shared with whoever may need to shut it down from outside,
/// the server's registry), or, for tests and the fuzzer, bytes in memory.
pub trait Carrier {
    /// Reads what has arrived, waiting (up to the read time-out) when
    /// nothing has; 0: the peer closed.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Reads what has arrived without waiting (`WouldBlock`: nothing).
    fn recv_now(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Sends all of `data`.
    fn send_all(&self, data: &[u8]) -> io::Result<()>;
    /// The longest one wait in [`Carrier::recv`] may last (the socket's
    /// read time-out).
    fn read_timeout(&self) -> Option<Duration> {
        None
    }
}

impl Carrier for Arc<TcpStream> {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&**self).read(buf)
    }

    fn recv_now(&self, buf: &mut [u8]) -> io::Result<usize> {
        rustix::net::recv(&**self, buf, RecvFlags::DONTWAIT)
            .map(|(n, _)| n)
            .map_err(io::Error::from)
    }

    fn send_all(&self, data: &[u8]) -> io::Result<()> {
        Watched(self).write_all(data)
    }

    fn read_timeout(&self) -> Option<Duration> {
        (**self).read_timeout().ok().flatten()
    }
}

/// A TLS 1.3 connection after its handshake: rustls ran the handshake,
/// [`record`] moves the records (see there why).
pub struct TlsStream<C: Carrier = Arc<TcpStream>> {
    sock: C,
    keys: Keys,
    client: bool,
    /// Bytes read from the socket. `plain` is the opened content of a
    /// record not yet handed on; `start..end` are bytes after it not yet
    /// opened.
    inbuf: Vec<u8>,
    plain: Range<usize>,
    start: usize,
    end: usize,
    /// Records sealed and not yet written.
    out: Vec<u8>,
    /// Post-handshake handshake messages, until whole.
    messages: Messages,
    /// The peer's close_notify arrived.
    closed: bool,
    /// A fatal error met while more was being opened after some bytes
    /// were handed on, for the next read (and every one after).
    failed: Option<(io::ErrorKind, String)>,
    /// Why nothing more may be sent: a fatal alert went one way or the
    /// other (RFC 8446 6.2), or a write failed part way (what follows
    /// would not be a record to the peer), for every later write.
    dead: Option<(io::ErrorKind, String)>,
    /// Records in a row that handed on no application data.
    quiet: u32,
    binding: [u8; tls::BINDING_LEN],
    certs: Option<Vec<CertificateDer<'static>>>,
    suite: String,
}

impl Stream {
    pub fn plain(sock: TcpStream) -> Stream {
        Stream::Plain(Arc::new(sock))
    }

    /// A server's stream once its handshake is done: TLS when `tls` is
    /// given.
    pub fn server(tls: Option<tls::Established>, sock: Arc<TcpStream>) -> io::Result<Stream> {
        match tls {
            Some(t) => Stream::tls(t, sock),
            None => Ok(Stream::Plain(sock)),
        }
    }

    /// Takes a finished handshake over: what rustls still holds (bytes it
    /// decrypted, records it has yet to send) is taken out of it, the
    /// channel binding and the peer's certificates kept, and its keys
    /// handed to our record layer.
    pub(crate) fn tls(t: tls::Established, sock: Arc<TcpStream>) -> io::Result<Stream> {
        let tls::Established {
            mut conn,
            secrets,
            raw,
        } = t;
        let mut early = Vec::new();
        let mut closed = false;
        loop {
            let mut chunk = [0u8; 4096];
            match conn.reader().read(&mut chunk) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => early.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        while conn.wants_write() {
            conn.write_tls(&mut Watched(&sock))?;
        }
        let mut binding = [0u8; tls::BINDING_LEN];
        conn.export_keying_material(&mut binding, tls::BINDING_LABEL, None)
            .map_err(|e| record::takeover_error(&e.to_string()))?;
        let certs = conn
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect());
        let suite = match conn.negotiated_cipher_suite() {
            Some(s) => format!("TLS 1.3, {:?}", s.suite()),
            None => "TLS".into(),
        };
        let client = matches!(conn, rustls::Connection::Client(_));
        let extracted = conn
            .dangerous_extract_secrets()
            .map_err(|e| record::takeover_error(&e.to_string()))?;
        let keys = Keys::new(extracted, &secrets, client)?;
        // What rustls decrypted comes first, then the records after it.
        let plain = early.len();
        let mut inbuf = early;
        inbuf.extend_from_slice(&raw);
        let mut t = TlsStream::over(sock, keys, client, inbuf, plain, closed);
        t.binding = binding;
        t.certs = certs;
        t.suite = suite;
        Ok(Stream::Tls(Box::new(t)))
    }

    /// The TCP socket underneath (for time-outs and shutdown).
    pub fn socket(&self) -> &Arc<TcpStream> {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.sock,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// The channel binding token authentication mixes into its MACs: a TLS
    /// exporter value, unique to this connection; 32 zero bytes without TLS
    /// (where nothing can bind a proof to the channel).
    pub fn binding(&self) -> [u8; tls::BINDING_LEN] {
        match self {
            Stream::Tls(t) => t.binding,
            Stream::Plain(_) => [0u8; tls::BINDING_LEN],
        }
    }

    /// The certificates the server showed (client side, TLS only).
    pub fn peer_certificates(&self) -> Option<Vec<CertificateDer<'static>>> {
        match self {
            Stream::Tls(t) => t.certs.clone(),
            Stream::Plain(_) => None,
        }
    }

    /// The TLS version and cipher suite, for `-v` output.
    pub fn describe(&self) -> String {
        match self {
            Stream::Plain(_) => "plaintext (no TLS)".into(),
            Stream::Tls(t) => t.suite.clone(),
        }
    }

    /// Sends what a [`Batch`] gathered, in one write: with TLS its
    /// records are sealed where they lie.
    fn send_batch(&mut self, buf: &mut [u8]) -> io::Result<()> {
        match self {
            Stream::Plain(s) => Watched(s).write_all(buf),
            Stream::Tls(t) => t.send_batch(buf),
        }
    }

    /// Ends our sending side: a TLS close_notify, then a TCP shutdown.
    pub fn close_write(&mut self) {
        if let Stream::Tls(t) = self {
            let _ = t.close_notify();
        }
        let _ = self.socket().shutdown(Shutdown::Write);
    }

    /// Sends `len` bytes of `file` from `offset`. Without TLS the kernel
    /// copies them straight from the page cache (sendfile); with TLS they
    /// must pass through here to be encrypted, a buffer at a time.
    pub fn send_file(
        &mut self,
        file: &File,
        offset: u64,
        len: u64,
        buf: &mut Vec<u8>,
    ) -> io::Result<()> {
        match self {
            Stream::Plain(sock) => send_file_plain(sock, file, offset, len),
            Stream::Tls(t) => t.send_file(file, offset, len, buf),
        }
    }
}

fn send_file_plain(sock: &TcpStream, file: &File, offset: u64, len: u64) -> io::Result<()> {
    let timeout = sock.write_timeout()?;
    let mut pos = offset;
    let end = offset + len;
    while pos < end {
        let want = (end - pos) as usize;
        let started = Instant::now();
        match rustix::fs::sendfile(sock, file, Some(&mut pos), want) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "source file shrank during transfer",
                ))
            }
            Ok(n) => stalled(n < want, started, timeout)?,
            Err(e) if e == rustix::io::Errno::INTR => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The socket's send time-out bounds each system call, and a call that
/// sent part of its data before timing out returns that part: retrying it
/// would let a peer that stopped reading hold the connection for several
/// time-outs. A short write that waited the whole time-out is a stall.
fn stalled(short: bool, started: Instant, timeout: Option<Duration>) -> io::Result<()> {
    match timeout {
        Some(t) if short && started.elapsed() >= t => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the peer stopped reading (write timed out)",
        )),
        _ => Ok(()),
    }
}

/// Socket writes with [`stalled`] applied. The time-out is looked up (a
/// system call) only after a short write: a whole write cannot be a
/// stall.
struct Watched<'a>(&'a TcpStream);

impl Write for Watched<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let started = Instant::now();
        let n = (&*self.0).write(buf)?;
        if n < buf.len() {
            stalled(true, started, self.0.write_timeout()?)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<C: Carrier> TlsStream<C> {
    /// A stream over `sock` whose handshake happened elsewhere, with keys
    /// from the two traffic secrets (the client's, the server's), both
    /// sequences at 0: for tests and the fuzzer, which play the peer. No
    /// channel binding (zeros), no certificates.
    #[doc(hidden)]
    pub fn with_secrets(
        sock: C,
        suite: Suite,
        client_secret: &[u8],
        server_secret: &[u8],
        client: bool,
    ) -> io::Result<Self> {
        let keys = Keys::from_secrets(suite, client_secret, server_secret, client)?;
        Ok(TlsStream::over(sock, keys, client, Vec::new(), 0, false))
    }

    /// A stream over `sock` with `keys`: `inbuf[..plain]` is plaintext
    /// already opened, what follows it up to its end records not yet
    /// opened; `closed`: the peer's close_notify came already.
    fn over(
        sock: C,
        keys: Keys,
        client: bool,
        mut inbuf: Vec<u8>,
        plain: usize,
        closed: bool,
    ) -> Self {
        let end = inbuf.len();
        if inbuf.len() < TLS_READ_BUF {
            inbuf.resize(TLS_READ_BUF, 0);
        }
        TlsStream {
            sock,
            keys,
            client,
            inbuf,
            plain: 0..plain,
            start: plain,
            end,
            out: Vec::new(),
            messages: Messages::default(),
            closed,
            failed: None,
            dead: None,
            quiet: 0,
            binding: [0u8; tls::BINDING_LEN],
            certs: None,
            suite: "TLS 1.3".into(),
        }
    }

    /// Seals `data` and sends it, as [`Write::write_all`] would.
    #[doc(hidden)]
    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.write_all_plain(data)
    }

    /// Writes every sealed record to the socket.
    fn flush_tls(&mut self) -> io::Result<()> {
        let r = self.sock.send_all(&self.out);
        self.out.clear();
        self.sent(r)
    }

    /// After a write that failed the stream is broken (part of a record
    /// may have gone): nothing more is sent.
    fn sent(&mut self, r: io::Result<()>) -> io::Result<()> {
        if let Err(e) = &r {
            let msg = format!("TLS: an earlier write failed: {e}");
            self.dead.get_or_insert((e.kind(), msg));
        }
        r
    }

    /// The error of a write that must not be made (see `dead`).
    fn check_alive(&self) -> io::Result<()> {
        match &self.dead {
            Some((kind, msg)) => Err(io::Error::new(*kind, msg.clone())),
            None => Ok(()),
        }
    }

    /// Our close_notify: we send nothing more.
    pub fn close_notify(&mut self) -> io::Result<()> {
        self.send_alert(1, record::CLOSE_NOTIFY)
    }

    /// Seals `data` into records of up to 16 KiB and sends them.
    fn write_all_plain(&mut self, data: &[u8]) -> io::Result<()> {
        self.check_alive()?;
        for chunk in data.chunks(record::MAX_PLAIN) {
            if self.keys.tx.worn() {
                self.rekey();
            }
            self.keys.tx.seal(APPLICATION_DATA, chunk, &mut self.out);
            if self.out.len() >= TLS_SEND_AT {
                self.flush_tls()?;
            }
        }
        self.flush_tls()
    }

    /// Seals the records a [`Batch`] laid out in `buf` (each full one but
    /// the last) and sends them.
    fn send_batch(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let full = record::HEADER + record::MAX_PLAIN + batch::TRAILER;
        self.check_alive()?;
        self.flush_tls()?;
        let (mut at, mut sent) = (0, 0);
        while at < buf.len() {
            let len = full.min(buf.len() - at);
            if self.keys.tx.worn() {
                let r = self.sock.send_all(&buf[sent..at]);
                self.sent(r)?;
                sent = at;
                self.rekey();
                self.flush_tls()?;
            }
            self.keys
                .tx
                .seal_laid_out(APPLICATION_DATA, &mut buf[at..at + len]);
            at += len;
        }
        let r = self.sock.send_all(&buf[sent..]);
        self.sent(r)
    }

    /// Sends `len` bytes of `file` from `offset`, read (one `preadv` for
    /// up to 16 records) straight into records laid out in `buf` and
    /// sealed there.
    fn send_file(
        &mut self,
        file: &File,
        offset: u64,
        len: u64,
        buf: &mut Vec<u8>,
    ) -> io::Result<()> {
        const RECORDS: usize = 16;
        let full = record::HEADER + record::MAX_PLAIN + batch::TRAILER;
        if buf.len() < RECORDS * full {
            buf.resize(RECORDS * full, 0);
        }
        let mut pos = offset;
        let end = offset + len;
        while pos < end {
            let want = ((end - pos) as usize).min(RECORDS * record::MAX_PLAIN);
            let mut slots: Vec<io::IoSliceMut<'_>> = buf
                .chunks_mut(full)
                .take(want.div_ceil(record::MAX_PLAIN))
                .enumerate()
                .map(|(i, rec)| {
                    let n = (want - i * record::MAX_PLAIN).min(record::MAX_PLAIN);
                    io::IoSliceMut::new(&mut rec[record::HEADER..record::HEADER + n])
                })
                .collect();
            let n = match rustix::io::preadv(file, &mut slots, pos) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "source file shrank during transfer",
                    ))
                }
                Ok(n) => n,
                Err(e) if e == rustix::io::Errno::INTR => continue,
                Err(e) => return Err(e.into()),
            };
            // Whole records, then the last one's content and its room.
            let wire = n / record::MAX_PLAIN * full
                + match n % record::MAX_PLAIN {
                    0 => 0,
                    r => record::HEADER + r + batch::TRAILER,
                };
            self.send_batch(&mut buf[..wire])?;
            pos += n as u64;
        }
        Ok(())
    }

    /// Changes our sending keys: a key update, sealed under the old ones.
    fn rekey(&mut self) {
        self.keys
            .tx
            .seal(HANDSHAKE, &record::key_update(false), &mut self.out);
        self.keys.tx.update();
    }

    /// Sends an alert (level 1 warning, 2 fatal).
    fn send_alert(&mut self, level: u8, desc: u8) -> io::Result<()> {
        self.check_alive()?;
        self.keys.tx.seal(ALERT, &[level, desc], &mut self.out);
        self.flush_tls()
    }

    /// A fatal error: the peer is told why (if the socket still takes
    /// it), and every later read fails the same way.
    fn fatal(&mut self, alert: u8, what: String) -> io::Error {
        if alert != 0 {
            let _ = self.send_alert(2, alert);
        }
        let msg = format!("TLS: {what}");
        self.failed = Some((io::ErrorKind::InvalidData, msg.clone()));
        self.dead = Some((io::ErrorKind::InvalidData, msg.clone()));
        io::Error::new(io::ErrorKind::InvalidData, msg)
    }

    /// Opens the next whole record already read, if there is one: its
    /// content becomes `plain` (application data) or is acted on (alerts,
    /// key updates). `false`: no whole record is there.
    fn open_next(&mut self) -> io::Result<bool> {
        let Some(n) = record::whole_record(&self.inbuf[self.start..self.end]) else {
            return Ok(false);
        };
        let at = self.start;
        self.start += n;
        let mut inbuf = std::mem::take(&mut self.inbuf);
        let r = self.open_one(&mut inbuf, at + record::HEADER, at, n);
        self.inbuf = inbuf;
        if let Some(content) = r? {
            self.plain = content;
        }
        Ok(true)
    }

    /// Opens the whole record at `buf[at..at + n]`, its content written
    /// from `buf[to]` on (see [`record::Direction::open`]). Application
    /// data: where its content is; anything else is acted on here.
    fn open_one(
        &mut self,
        buf: &mut [u8],
        to: usize,
        at: usize,
        n: usize,
    ) -> io::Result<Option<Range<usize>>> {
        if buf[at] != APPLICATION_DATA {
            let what = format!(
                "unexpected record type 0x{:02x} after the handshake",
                buf[at]
            );
            return Err(self.fatal(record::UNEXPECTED_MESSAGE, what));
        }
        // (A header claiming more than any record may hold counts as a
        // whole record by itself.)
        if u16::from_be_bytes([buf[at + 3], buf[at + 4]]) as usize > record::MAX_BODY {
            return Err(self.fatal(record::RECORD_OVERFLOW, "record too long".into()));
        }
        let (kind, content) = match self.keys.rx.open(buf, to, at, n) {
            Ok(opened) => opened,
            Err(alert) => {
                let what = format!("cannot open a record ({})", record::alert_name(alert));
                return Err(self.fatal(alert, what));
            }
        };
        // Each such record costs a record's work and hands on nothing: a
        // peer sending them without end would keep a read from ever
        // returning to its caller's time-out (rustls, like BoringSSL,
        // allows 32 key updates in a row and 32 empty records). Alerts
        // other than user_canceled end the connection anyway.
        if kind == APPLICATION_DATA && !content.is_empty() {
            self.quiet = 0;
        } else if kind != ALERT || buf[content.clone()] == [1, 90] {
            self.quiet += 1;
            if self.quiet > QUIET_RECORDS {
                let what = format!("{} records in a row without data", self.quiet);
                return Err(self.fatal(record::UNEXPECTED_MESSAGE, what));
            }
        }
        if kind != HANDSHAKE && !self.messages.is_empty() {
            return Err(self.fatal(
                record::UNEXPECTED_MESSAGE,
                "a handshake message split by other records".into(),
            ));
        }
        match kind {
            APPLICATION_DATA => return Ok(Some(content)),
            HANDSHAKE => self.post_handshake(&buf[content])?,
            ALERT => match buf[content] {
                [_, record::CLOSE_NOTIFY] => self.closed = true,
                // user_canceled: a close_notify follows.
                [1, 90] => {}
                [_, desc] => {
                    let what = format!("the peer sent an alert: {}", record::alert_name(desc));
                    return Err(self.fatal(0, what));
                }
                _ => return Err(self.fatal(record::DECODE_ERROR, "malformed alert".into())),
            },
            other => {
                let what = format!("unexpected content type 0x{other:02x}");
                return Err(self.fatal(record::UNEXPECTED_MESSAGE, what));
            }
        }
        Ok(None)
    }

    /// A read into a large buffer when nothing is waiting but part of a
    /// record: the socket's bytes land in `buf` itself and each record is
    /// opened there, its content moved down over the headers and tags in
    /// the same pass, so they cross memory once as they do without TLS.
    /// While a record is left in two parts and the rest of it would fit,
    /// what has already arrived is read too (without waiting); a record
    /// still in two parts passes through `inbuf` to the next read.
    fn read_direct(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.end - self.start;
        buf[..k].copy_from_slice(&self.inbuf[self.start..self.end]);
        let (mut at, mut to, mut total) = (0, 0, k);
        let mut failed = None;
        let mut first = true;
        loop {
            let want = aligned(&buf[at..total], buf.len() - total);
            let got = if first {
                self.sock.recv(&mut buf[total..total + want])
            } else {
                self.sock.recv_now(&mut buf[total..total + want])
            };
            match got {
                Ok(0) if first => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed without a TLS close_notify (cut off?)",
                    ))
                }
                Ok(n) => total += n,
                // What was waiting stays where it was.
                Err(e) if first => return Err(e),
                // Nothing more yet (or the end, or an error the next read
                // meets).
                Err(_) => break,
            }
            if got.is_ok_and(|n| n == 0) {
                break;
            }
            first = false;
            while !self.closed {
                let Some(n) = record::whole_record(&buf[at..total]) else {
                    break;
                };
                match self.open_one(buf, to, at, n) {
                    Ok(Some(content)) => to = content.end,
                    Ok(None) => {}
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
                at += n;
            }
            let part = &buf[at..total];
            let fits = part.len() < record::HEADER
                || at + record::HEADER + u16::from_be_bytes([part[3], part[4]]) as usize
                    <= buf.len();
            if self.closed || failed.is_some() || part.is_empty() || !fits {
                break;
            }
        }
        // A record's first part waits for the rest.
        let rest = if self.closed || failed.is_some() {
            0
        } else {
            total - at
        };
        if self.inbuf.len() < rest {
            self.inbuf.resize(rest, 0);
        }
        self.inbuf[..rest].copy_from_slice(&buf[at..at + rest]);
        self.start = 0;
        self.end = rest;
        self.plain = 0..0;
        match failed {
            // What was opened before it is handed on; the error is kept.
            Some(_) if to > 0 => Ok(to),
            Some(e) => Err(e),
            None => Ok(to),
        }
    }

    /// Handshake messages after the handshake: key updates (ours follow
    /// when asked for) and session tickets (ignored: we never resume).
    fn post_handshake(&mut self, content: &[u8]) -> io::Result<()> {
        if content.is_empty() {
            return Err(self.fatal(record::UNEXPECTED_MESSAGE, "empty handshake record".into()));
        }
        if let Err(a) = self.messages.add(content) {
            return Err(self.fatal(a, "post-handshake message too long".into()));
        }
        while let Some(m) = self.messages.next(self.client) {
            match m {
                Ok(PostHandshake::Nothing) => {}
                Ok(PostHandshake::KeyUpdate(asked)) => {
                    // Later records are under the new keys, so a key update
                    // must end its record.
                    if !self.messages.is_empty() {
                        return Err(self.fatal(
                            record::UNEXPECTED_MESSAGE,
                            "data after a key update in its record".into(),
                        ));
                    }
                    self.keys.rx.update();
                    // (Not into a stream a failed write broke.)
                    if asked && self.dead.is_none() {
                        self.rekey();
                        self.flush_tls()?;
                    }
                }
                Err(a) => {
                    let what = format!(
                        "unexpected post-handshake message ({})",
                        record::alert_name(a)
                    );
                    return Err(self.fatal(a, what));
                }
            }
        }
        Ok(())
    }

    /// Reads more from the socket (after what is there, moved to the front
    /// when the room after it could not hold a whole record).
    fn fill(&mut self) -> io::Result<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.inbuf.len() - self.end < record::HEADER + record::MAX_BODY + 2048 {
            self.inbuf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        self.plain = self.start..self.start;
        // (A read that fails, say a time-out, leaves the buffer consistent
        // for the next try.)
        let n = self.sock.recv(&mut self.inbuf[self.end..])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed without a TLS close_notify (cut off?)",
            ));
        }
        self.end += n;
        Ok(())
    }
}

impl<C: Carrier> TlsStream<C> {
    /// Whether one read may wait for the socket again. The socket's
    /// time-out bounds each wait; a record trickling in a byte at a time
    /// (or records that hand on nothing) must not stretch one read to
    /// many of them: its caller's deadline (the server's idle time-out,
    /// the client's --max-time and Ctrl-C) is looked at between reads.
    /// After one time-out in all, no more waits; what came so far stays
    /// for the next read. (The time-out is looked up, a system call, only
    /// on a second wait.)
    fn may_wait(&self, waiting: &mut Option<Instant>) -> io::Result<()> {
        let Some(since) = *waiting else {
            *waiting = Some(Instant::now());
            return Ok(());
        };
        match self.sock.read_timeout() {
            Some(limit) if since.elapsed() >= limit => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "read timed out (a TLS record arriving too slowly)",
            )),
            _ => Ok(()),
        }
    }
}

/// How much of `room` to ask the socket for after `part` (part of a
/// record, or nothing): what ends where a record ends if the records to
/// come are full ones, as a peer sending much sends them, so that none is
/// left in two parts; all of `room` if not even one would fit.
fn aligned(part: &[u8], room: usize) -> usize {
    let full = record::HEADER + record::MAX_PLAIN + 1 + record::TAG;
    let first = if part.len() >= record::HEADER {
        record::HEADER + u16::from_be_bytes([part[3], part[4]]) as usize - part.len()
    } else {
        0
    };
    match room.checked_sub(first) {
        Some(r) if r >= full => first + r / full * full,
        Some(_) if first > 0 => first,
        _ => room,
    }
}

impl<C: Carrier> Read for TlsStream<C> {
    /// Hands on as much as has arrived and can be opened without waiting,
    /// as a plaintext read would; waits only when nothing has.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut got = 0;
        // When this read first waited for the socket.
        let mut waiting: Option<Instant> = None;
        loop {
            if !self.plain.is_empty() {
                let n = self.plain.len().min(buf.len() - got);
                buf[got..got + n].copy_from_slice(&self.inbuf[self.plain.start..][..n]);
                self.plain.start += n;
                got += n;
                if got == buf.len() {
                    return Ok(got);
                }
            }
            if let Some((kind, msg)) = &self.failed {
                if got > 0 {
                    return Ok(got);
                }
                return Err(io::Error::new(*kind, msg.clone()));
            }
            if self.closed {
                // 0: the peer's close_notify, a clean end.
                return Ok(got);
            }
            match self.open_next() {
                Ok(true) => continue,
                Ok(false) if got > 0 => return Ok(got),
                Ok(false) => {
                    self.may_wait(&mut waiting)?;
                    if buf.len() < DIRECT_READ {
                        self.fill()?;
                    } else {
                        let n = self.read_direct(buf)?;
                        if n > 0 {
                            return Ok(n);
                        }
                    }
                }
                Err(_) if got > 0 => return Ok(got),
                Err(e) => return Err(e),
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => (&**s).read(buf),
            Stream::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => (&**s).write(buf),
            Stream::Tls(t) => {
                t.write_all_plain(buf)?;
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A stream shared by a connection's buffered reader and writer (which
/// take turns; neither holds the lock across calls).
#[derive(Clone)]
pub struct Link(Arc<Mutex<Stream>>);

impl Link {
    pub fn new(s: Stream) -> Link {
        Link(Arc::new(Mutex::new(s)))
    }

    pub fn lock(&self) -> MutexGuard<'_, Stream> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a client connection needs of its byte stream besides bytes: its
/// reader and writer halves share one stream (a clone is the same stream),
/// and it has time-outs, a TLS channel binding and a half-close. [`Link`]
/// is the real one; the connection is generic over this so it can also run
/// over bytes in memory (the fuzzer's), at no cost to the real path.
pub trait Wire: Read + Write + Clone {
    fn set_read_timeout(&self, t: Duration) -> io::Result<()>;
    fn set_write_timeout(&self, t: Duration) -> io::Result<()>;
    /// See [`Stream::binding`].
    fn binding(&self) -> [u8; tls::BINDING_LEN];
    /// See [`Stream::close_write`].
    fn close_write(&self);
}

impl Wire for Link {
    fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        self.lock().socket().set_read_timeout(Some(t))
    }

    fn set_write_timeout(&self, t: Duration) -> io::Result<()> {
        self.lock().socket().set_write_timeout(Some(t))
    }

    fn binding(&self) -> [u8; tls::BINDING_LEN] {
        self.lock().binding()
    }

    fn close_write(&self) {
        self.lock().close_write()
    }
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.lock().read(buf)
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lock().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.lock().flush()
    }
}

#[cfg(test)]
mod tests;
