//! The byte stream under the protocol: TLS 1.3 by default, plain TCP when
//! both sides ask for `--plaintext`. The protocol module reads and writes
//! a [`Link`] without knowing which it is.
//!
//! - [`tls`]: rustls configurations and handshakes (the server's can be
//!   driven without a thread of its own);
//! - [`identity`]: the server's key, certificate and fingerprint;
//! - [`known`]: the client's known-servers file and trust decisions.

pub mod identity;
pub mod known;
mod memory;
pub mod tls;

pub use memory::Memory;

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;

/// Bytes read from the socket at a time on a TLS connection, before they
/// are handed to rustls (which alone would read 4 KiB per system call).
const TLS_READ_BUF: usize = 256 * 1024;
/// Encrypted bytes rustls may queue before they must reach the socket.
const TLS_SEND_LIMIT: usize = 1024 * 1024;

/// One connection's byte stream, plain or TLS.
pub enum Stream {
    Plain(Arc<TcpStream>),
    Tls(Box<TlsStream>),
}

/// A TLS connection and its socket, moving bytes in large reads.
pub struct TlsStream {
    conn: rustls::Connection,
    /// Shared with whoever may need to shut the socket down from outside
    /// (the server's registry).
    sock: Arc<TcpStream>,
    /// Raw bytes read from the socket and not yet given to rustls.
    inbuf: Vec<u8>,
    start: usize,
    end: usize,
    /// A TLS error met while topping up a read, for the next read.
    failed: Option<rustls::Error>,
}

impl Stream {
    pub fn plain(sock: TcpStream) -> Stream {
        Stream::Plain(Arc::new(sock))
    }

    /// A server's stream once its handshake is done: TLS when `conn` is
    /// given.
    pub fn server(conn: Option<rustls::ServerConnection>, sock: Arc<TcpStream>) -> Stream {
        match conn {
            Some(c) => Stream::tls_shared(rustls::Connection::Server(c), sock),
            None => Stream::Plain(sock),
        }
    }

    pub(crate) fn tls(conn: rustls::Connection, sock: TcpStream) -> Stream {
        Stream::tls_shared(conn, Arc::new(sock))
    }

    fn tls_shared(mut conn: rustls::Connection, sock: Arc<TcpStream>) -> Stream {
        conn.set_buffer_limit(Some(TLS_SEND_LIMIT));
        Stream::Tls(Box::new(TlsStream {
            conn,
            sock,
            inbuf: vec![0u8; TLS_READ_BUF],
            start: 0,
            end: 0,
            failed: None,
        }))
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
        let mut out = [0u8; tls::BINDING_LEN];
        if let Stream::Tls(t) = self {
            if t.conn
                .export_keying_material(&mut out, tls::BINDING_LABEL, None)
                .is_err()
            {
                // Only possible before the handshake ends, which a Stream
                // never is; a zero binding then fails authentication.
                out = [0u8; tls::BINDING_LEN];
            }
        }
        out
    }

    /// The certificates the server showed (client side, TLS only).
    pub fn peer_certificates(&self) -> Option<Vec<CertificateDer<'static>>> {
        match self {
            Stream::Tls(t) => t
                .conn
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect()),
            Stream::Plain(_) => None,
        }
    }

    /// The TLS version and cipher suite, for `-v` output.
    pub fn describe(&self) -> String {
        match self {
            Stream::Plain(_) => "plaintext (no TLS)".into(),
            Stream::Tls(t) => match t.conn.negotiated_cipher_suite() {
                Some(s) => format!("TLS 1.3, {:?}", s.suite()),
                None => "TLS".into(),
            },
        }
    }

    /// Ends our sending side: a TLS close_notify, then a TCP shutdown.
    pub fn close_write(&mut self) {
        if let Stream::Tls(t) = self {
            t.conn.send_close_notify();
            let _ = t.flush_tls();
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
            Stream::Tls(t) => {
                if buf.len() < TLS_SEND_LIMIT {
                    buf.resize(TLS_SEND_LIMIT, 0);
                }
                let mut pos = offset;
                let end = offset + len;
                while pos < end {
                    let want = ((end - pos) as usize).min(buf.len());
                    let n = file.read_at(&mut buf[..want], pos)?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "source file shrank during transfer",
                        ));
                    }
                    t.write_all_plain(&buf[..n])?;
                    pos += n as u64;
                }
                Ok(())
            }
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

/// Socket writes with [`stalled`] applied (rustls writes through this).
/// The time-out is looked up (a system call) only after a short write:
/// a whole write cannot be a stall.
struct Watched<'a>(&'a TcpStream);

impl Watched<'_> {
    fn check(&self, short: bool, started: Instant) -> io::Result<()> {
        if short {
            stalled(true, started, self.0.write_timeout()?)?;
        }
        Ok(())
    }
}

impl Write for Watched<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let started = Instant::now();
        let n = (&*self.0).write(buf)?;
        self.check(n < buf.len(), started)?;
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let started = Instant::now();
        let n = (&*self.0).write_vectored(bufs)?;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        self.check(n < total, started)?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsStream {
    /// Writes every encrypted byte rustls holds to the socket.
    fn flush_tls(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(&mut Watched(&self.sock))?;
        }
        Ok(())
    }

    fn write_all_plain(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = self.conn.writer().write(data)?;
            data = &data[n..];
            self.flush_tls()?;
        }
        Ok(())
    }

    /// Adds to `buf` what can be decrypted from the bytes already read from
    /// the socket, without waiting for more: one read then hands the layer
    /// above as much as a plaintext read would (rustls alone gives at most
    /// one record, 16 KiB, at a time). A TLS error is kept for the next
    /// read to report.
    fn top_up(&mut self, buf: &mut [u8]) -> usize {
        let mut got = 0;
        while got < buf.len() && self.failed.is_none() {
            match self.conn.reader().read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => {
                    got += n;
                    continue;
                }
                Err(_) => {}
            }
            if self.start == self.end {
                break;
            }
            let mut avail = &self.inbuf[self.start..self.end];
            let before = avail.len();
            if self.conn.read_tls(&mut avail).is_err() {
                break;
            }
            self.start += before - avail.len();
            if let Err(e) = self.conn.process_new_packets() {
                self.failed = Some(e);
            }
        }
        got
    }

    fn tls_error(&mut self, e: rustls::Error) -> io::Error {
        // Send the alert that says why, if the socket still takes it.
        let _ = self.flush_tls();
        io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}"))
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if let Some(e) = self.failed.take() {
            return Err(self.tls_error(e));
        }
        loop {
            match self.conn.reader().read(buf) {
                // 0: the peer's close_notify, a clean end.
                Ok(0) => return Ok(0),
                Ok(n) => return Ok(n + self.top_up(&mut buf[n..])),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed without a TLS close_notify (cut off?)",
                    ))
                }
                Err(e) => return Err(e),
            }
            if self.start == self.end {
                // (A read that fails, say a time-out, leaves the buffer
                // empty and consistent for the next try.)
                let n = (&*self.sock).read(&mut self.inbuf)?;
                self.start = 0;
                self.end = n;
                if self.end == 0 {
                    // Let rustls see the end of the stream.
                    let _ = self.conn.read_tls(&mut io::empty());
                    if let Err(e) = self.conn.process_new_packets() {
                        return Err(self.tls_error(e));
                    }
                    continue;
                }
            }
            let mut avail = &self.inbuf[self.start..self.end];
            let before = avail.len();
            self.conn.read_tls(&mut avail)?;
            self.start += before - avail.len();
            if let Err(e) = self.conn.process_new_packets() {
                return Err(self.tls_error(e));
            }
            // Answers rustls owes the peer (key updates) go out now.
            if self.conn.wants_write() {
                self.flush_tls()?;
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
        match self {
            Stream::Plain(_) => Ok(()),
            Stream::Tls(t) => t.flush_tls(),
        }
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
