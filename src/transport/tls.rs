//! TLS 1.3 with rustls: the configurations both sides use, the server's
//! handshake as a step function without I/O of its own, and the client's.
//!
//! The server's handshake ([`Accepting`]) is fed the bytes read from the
//! socket and says what to write back, so an event loop can drive many
//! handshakes on non-blocking sockets without a thread each;
//! [`accept_blocking`] drives one on a blocking socket under a deadline.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, ServerConfig, SignatureScheme,
};

use super::identity::Identity;
use super::record::TrafficSecrets;
use crate::protocol::{Hello, HELLO_LEN, MAGIC};

/// The exporter label of the channel binding that token authentication
/// mixes into its MACs (RFC 8446 section 7.5; empty context, 32 bytes).
pub const BINDING_LABEL: &[u8] = b"EXPORTER-fxfer-channel-binding";
/// Length of the channel binding.
pub const BINDING_LEN: usize = 32;
/// The first byte of a TLS handshake record (a ClientHello or ServerHello).
pub const TLS_HANDSHAKE: u8 = 0x16;
/// The first byte of a TLS alert record.
pub const TLS_ALERT: u8 = 0x15;

/// ring, with the cipher suites in the order we prefer them: AES-256-GCM
/// measured fastest here (AES-NI, VAES), then AES-128-GCM, then ChaCha20
/// for machines without AES instructions.
pub fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(P.get_or_init(|| {
        use rustls::crypto::ring::{cipher_suite, default_provider};
        let mut p = default_provider();
        p.cipher_suites = vec![
            cipher_suite::TLS13_AES_256_GCM_SHA384,
            cipher_suite::TLS13_AES_128_GCM_SHA256,
            cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ];
        Arc::new(p)
    }))
}

/// The server's TLS configuration: TLS 1.3 only, no client certificates,
/// no session tickets (every connection is a full handshake, one round
/// trip either way).
pub fn server_config(id: &Identity) -> Result<Arc<ServerConfig>, String> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(id.certs.clone(), id.key.clone_key())
        .map_err(|e| format!("the certificate and key do not go together: {e}"))?;
    cfg.send_tls13_tickets = 0;
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    // After the handshake our record layer takes the keys over.
    cfg.enable_secret_extraction = true;
    Ok(Arc::new(cfg))
}

/// A rustls connection whose handshake is done, with what our record
/// layer ([`super::record`]) needs to take it over: the traffic secrets its
/// key log caught and the bytes read from the socket that rustls was not
/// given (rustls is fed whole records only, so none of a later record is
/// left inside it).
pub struct Established {
    pub(super) conn: rustls::Connection,
    pub(super) secrets: Arc<TrafficSecrets>,
    pub(super) raw: Vec<u8>,
}

impl Established {
    pub fn server(
        conn: rustls::ServerConnection,
        secrets: Arc<TrafficSecrets>,
        raw: Vec<u8>,
    ) -> Self {
        Established {
            conn: rustls::Connection::Server(conn),
            secrets,
            raw,
        }
    }
}

/// Hands rustls the whole TLS records at the front of `raw`, one at a
/// time, and takes them off; stops early once `done(conn)` says so (the
/// handshake ended: what follows is for our record layer). A partial
/// record stays in `raw` for the next call.
pub fn feed_records<D>(
    conn: &mut rustls::ConnectionCommon<D>,
    raw: &mut Vec<u8>,
    done: impl Fn(&rustls::ConnectionCommon<D>) -> bool,
) -> Result<(), FeedError> {
    let mut at = 0;
    let r = loop {
        if done(conn) {
            break Ok(());
        }
        let Some(n) = super::record::whole_record(&raw[at..]) else {
            break Ok(());
        };
        let mut rec = &raw[at..at + n];
        at += n;
        let mut r = Ok(());
        while !rec.is_empty() && r.is_ok() {
            r = match conn.read_tls(&mut rec) {
                Ok(0) => Err(io::Error::other("TLS record not taken")),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            };
        }
        if let Err(e) = r {
            break Err(FeedError::Io(e));
        }
        if let Err(e) = conn.process_new_packets() {
            break Err(FeedError::Tls(e));
        }
    };
    raw.drain(..at);
    r
}

/// Why [`feed_records`] stopped.
#[derive(Debug)]
pub enum FeedError {
    Io(io::Error),
    Tls(rustls::Error),
}

/// A fresh server connection for `cfg` that logs its traffic secrets for
/// our record layer.
pub fn server_connection(
    cfg: &Arc<ServerConfig>,
) -> (rustls::ServerConnection, Arc<TrafficSecrets>) {
    let secrets = Arc::new(TrafficSecrets::default());
    let mut c = (**cfg).clone();
    c.key_log = secrets.clone();
    let conn = rustls::ServerConnection::new(Arc::new(c))
        .expect("a server config always makes a connection");
    (conn, secrets)
}

/// Why a server-side handshake did not produce a TLS connection.
#[derive(Debug)]
pub enum HandshakeFailure {
    /// The peer sent an fxfer greeting in the clear: a `--plaintext`
    /// client (or an older version). Its greeting is given.
    PlaintextClient(Hello),
    /// The first byte is not the start of a TLS handshake.
    NotTls(u8),
    /// The peer closed before the handshake finished.
    Closed,
    /// The TLS layer refused what the peer sent.
    Tls(rustls::Error),
    Io(io::Error),
}

impl std::fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeFailure::PlaintextClient(h) => write!(
                f,
                "client spoke without TLS (protocol v{}; --plaintext?)",
                h.version
            ),
            HandshakeFailure::NotTls(b) => {
                write!(
                    f,
                    "not an fxfer client (no TLS ClientHello; first byte 0x{b:02x})"
                )
            }
            HandshakeFailure::Closed => f.write_str("client closed during the TLS handshake"),
            HandshakeFailure::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            HandshakeFailure::Io(e) => {
                write!(f, "TLS handshake broke: {}", crate::error::describe_io(e))
            }
        }
    }
}

/// What the handshake needs next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Write what [`Accepting::write_to`] gives, then read more.
    Continue,
    /// Done: turn it into a stream with [`Accepting::into_stream`].
    Established,
}

/// A server-side TLS handshake in progress, driven by its caller: feed it
/// what arrives, write what it wants written. It does no I/O itself.
pub struct Accepting {
    conn: rustls::ServerConnection,
    secrets: Arc<TrafficSecrets>,
    /// Bytes that arrived and are not yet given to rustls (part of a
    /// record, or what follows the handshake).
    raw: Vec<u8>,
    /// The first bytes seen, until we know they start a TLS record (or
    /// hold a whole plaintext greeting).
    prefix: Vec<u8>,
    decided: bool,
}

impl Accepting {
    pub fn new(cfg: &Arc<ServerConfig>) -> Accepting {
        let (conn, secrets) = server_connection(cfg);
        Accepting {
            conn,
            secrets,
            raw: Vec::new(),
            prefix: Vec::new(),
            decided: false,
        }
    }

    /// Takes bytes read from the peer (an empty slice: the peer closed).
    pub fn feed(&mut self, data: &[u8]) -> Result<Step, HandshakeFailure> {
        if data.is_empty() {
            return Err(HandshakeFailure::Closed);
        }
        if !self.decided {
            let first = self.prefix.first().copied().unwrap_or(data[0]);
            if first == MAGIC[0] {
                // An fxfer greeting in the clear: collect its 8 bytes.
                let want = HELLO_LEN - self.prefix.len();
                self.prefix.extend_from_slice(&data[..want.min(data.len())]);
                if self.prefix.len() < HELLO_LEN {
                    return Ok(Step::Continue);
                }
                let mut b = [0u8; HELLO_LEN];
                b.copy_from_slice(&self.prefix);
                return match Hello::read_from(&mut &b[..]) {
                    Ok(h) => Err(HandshakeFailure::PlaintextClient(h)),
                    Err(_) => Err(HandshakeFailure::NotTls(first)),
                };
            }
            if first != TLS_HANDSHAKE {
                return Err(HandshakeFailure::NotTls(first));
            }
            self.decided = true;
        }
        self.raw.extend_from_slice(data);
        feed_records(&mut self.conn, &mut self.raw, |c| !c.is_handshaking()).map_err(
            |e| match e {
                FeedError::Io(e) => HandshakeFailure::Io(e),
                FeedError::Tls(e) => HandshakeFailure::Tls(e),
            },
        )?;
        Ok(if self.conn.is_handshaking() {
            Step::Continue
        } else {
            Step::Established
        })
    }

    /// Whether there are bytes to send ([`Accepting::write_to`]).
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Writes what the handshake wants sent (on a non-blocking socket, call
    /// again while [`Accepting::wants_write`]).
    pub fn write_to(&mut self, w: &mut dyn Write) -> io::Result<usize> {
        self.conn.write_tls(w)
    }

    pub fn into_stream(self, sock: Arc<TcpStream>) -> io::Result<super::Stream> {
        super::Stream::server(
            Some(Established::server(self.conn, self.secrets, self.raw)),
            sock,
        )
    }
}

/// Runs a server handshake on a blocking socket, the whole of it within
/// `deadline`.
pub fn accept_blocking(
    sock: TcpStream,
    cfg: &Arc<ServerConfig>,
    deadline: Instant,
) -> Result<super::Stream, (HandshakeFailure, TcpStream)> {
    let mut hs = Accepting::new(cfg);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while hs.wants_write() {
            if let Err(e) = hs.write_to(&mut &sock) {
                return Err((HandshakeFailure::Io(e), sock));
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let e = io::Error::new(io::ErrorKind::TimedOut, "handshake took too long");
            return Err((HandshakeFailure::Io(e), sock));
        }
        if let Err(e) = sock.set_read_timeout(Some(left)) {
            return Err((HandshakeFailure::Io(e), sock));
        }
        let n = match (&sock).read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err((HandshakeFailure::Io(e), sock)),
        };
        match hs.feed(&buf[..n]) {
            Ok(Step::Continue) => {}
            Ok(Step::Established) => {
                // Flush what is left of our side (nothing, in TLS 1.3).
                while hs.wants_write() {
                    if let Err(e) = hs.write_to(&mut &sock) {
                        return Err((HandshakeFailure::Io(e), sock));
                    }
                }
                let sock = Arc::new(sock);
                return hs.into_stream(Arc::clone(&sock)).map_err(|e| {
                    let sock = Arc::try_unwrap(sock).expect("a failed take-over drops its socket");
                    (HandshakeFailure::Io(e), sock)
                });
            }
            Err(f) => {
                // Tell the peer why, when TLS has an alert for it.
                while hs.wants_write() {
                    if hs.write_to(&mut &sock).is_err() {
                        break;
                    }
                }
                return Err((f, sock));
            }
        }
    }
}

// ------------------------------------------------------------------ client

/// Accepts any certificate during the handshake but checks the server's
/// signature over it; whether the key is trusted is decided right after
/// the handshake (pin, known servers, or the system's CAs) and before the
/// client sends a byte of its own.
#[derive(Debug)]
struct DeferTrust(Arc<CryptoProvider>);

impl ServerCertVerifier for DeferTrust {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The configuration speaks TLS 1.3 only.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The client's TLS configuration (shared by every connection).
pub fn client_config() -> Arc<ClientConfig> {
    static C: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    Arc::clone(C.get_or_init(|| {
        let p = provider();
        let mut cfg = ClientConfig::builder_with_provider(Arc::clone(&p))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("ring supports TLS 1.3")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(DeferTrust(p)))
            .with_no_client_auth();
        // Every connection shows its certificate, so every one is checked.
        cfg.resumption = rustls::client::Resumption::disabled();
        // After the handshake our record layer takes the keys over.
        cfg.enable_secret_extraction = true;
        Arc::new(cfg)
    }))
}

/// Whether the chain is valid for `host` under the system's CAs (the
/// roots are read once, the first time a server is not already known).
pub fn ca_verifies(certs: &[CertificateDer<'static>], host: &str) -> Result<(), String> {
    static V: OnceLock<Option<Arc<rustls::client::WebPkiServerVerifier>>> = OnceLock::new();
    let v = V.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        let _ = roots.add_parsable_certificates(found.certs);
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .ok()
    });
    let Some(v) = v else {
        return Err("this system has no CA certificates to check it with".into());
    };
    let (ee, rest) = certs.split_first().ok_or("no certificate")?;
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| format!("'{host}' is not a host name a certificate can be for"))?;
    v.verify_server_cert(ee, rest, &name, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| match e {
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
                "it is issued by a certificate authority this system does not trust".into()
            }
            rustls::Error::InvalidCertificate(c) => c.to_string(),
            other => other.to_string(),
        })
}

/// Whether a chain claims a certificate authority: more than one
/// certificate, or an end-entity certificate issued by someone other than
/// its subject (an fxfer identity is one self-issued certificate).
pub fn claims_ca(certs: &[CertificateDer<'_>]) -> bool {
    match certs {
        [] => false,
        [ee] => webpki::EndEntityCert::try_from(ee).is_ok_and(|c| c.issuer() != c.subject()),
        _ => true,
    }
}

/// Why the client's handshake failed.
#[derive(Debug)]
pub enum ConnectFailure {
    /// The server answered in the clear: an fxfer greeting, then (usually)
    /// an ERROR frame; these are its first bytes.
    PlaintextServer(Vec<u8>),
    /// The peer answered with something that is neither TLS nor fxfer;
    /// its first bytes.
    NotTls(Vec<u8>),
    Closed,
    Tls(rustls::Error),
    Io(io::Error),
}

/// Runs the client's TLS handshake on a connected blocking socket, within
/// `deadline`. The socket's read time-out may be short: a read that times
/// out is tried again until the deadline, unless `give_up()` says to stop
/// (it then fails with `Interrupted`).
pub fn connect(
    sock: TcpStream,
    host: &str,
    deadline: Instant,
    give_up: &dyn Fn() -> bool,
) -> Result<super::Stream, ConnectFailure> {
    let name = ServerName::try_from(host.to_string())
        .unwrap_or_else(|_| ServerName::try_from("fxfer-server").expect("a valid name"));
    let secrets = Arc::new(TrafficSecrets::default());
    let mut cfg = (*client_config()).clone();
    cfg.key_log = secrets.clone();
    let mut conn = ClientConnection::new(Arc::new(cfg), name).map_err(ConnectFailure::Tls)?;
    let mut buf = vec![0u8; 16 * 1024];
    // Bytes read and not yet given to rustls: part of a record, or what
    // follows the handshake (for our record layer).
    let mut raw = Vec::new();
    let mut first = true;
    while conn.is_handshaking() {
        while conn.wants_write() {
            conn.write_tls(&mut &sock).map_err(ConnectFailure::Io)?;
        }
        if !conn.is_handshaking() {
            break;
        }
        let n = match (&sock).read(&mut buf) {
            Ok(0) => return Err(ConnectFailure::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted && !give_up() => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if give_up() {
                    return Err(ConnectFailure::Io(io::ErrorKind::Interrupted.into()));
                }
                if Instant::now() < deadline {
                    continue;
                }
                return Err(ConnectFailure::Io(e));
            }
            Err(e) => return Err(ConnectFailure::Io(e)),
        };
        if first {
            first = false;
            if buf[0] == MAGIC[0] {
                return Err(ConnectFailure::PlaintextServer(read_more(&sock, &buf[..n])));
            }
            if buf[0] != TLS_HANDSHAKE && buf[0] != TLS_ALERT {
                return Err(ConnectFailure::NotTls(buf[..n].to_vec()));
            }
        }
        raw.extend_from_slice(&buf[..n]);
        match feed_records(&mut conn, &mut raw, |c| !c.is_handshaking()) {
            Ok(()) => {}
            Err(FeedError::Io(e)) => return Err(ConnectFailure::Io(e)),
            Err(FeedError::Tls(e)) => {
                // Send the alert that says why, then give up.
                while conn.wants_write() {
                    if conn.write_tls(&mut &sock).is_err() {
                        break;
                    }
                }
                return Err(ConnectFailure::Tls(e));
            }
        }
    }
    while conn.wants_write() {
        conn.write_tls(&mut &sock).map_err(ConnectFailure::Io)?;
    }
    let est = Established {
        conn: rustls::Connection::Client(conn),
        secrets,
        raw,
    };
    super::Stream::tls(est, Arc::new(sock)).map_err(ConnectFailure::Io)
}

/// A plaintext server's greeting and its ERROR frame may come in two
/// pieces: read (briefly, boundedly) until a whole frame is there.
fn read_more(sock: &TcpStream, got: &[u8]) -> Vec<u8> {
    let mut v = got.to_vec();
    let whole = |v: &[u8]| {
        v.len() >= HELLO_LEN + 5 && {
            let len = u32::from_be_bytes([v[9], v[10], v[11], v[12]]) as usize;
            v.len() >= HELLO_LEN + 5 + len.min(2048)
        }
    };
    let _ = sock.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    let mut buf = [0u8; 2048];
    while !whole(&v) && v.len() < 4096 {
        match (&*sock).read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => v.extend_from_slice(&buf[..n]),
        }
    }
    v
}
