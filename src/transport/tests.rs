//! Our TLS record layer against rustls's own, over real sockets, both
//! ways: data both ways, key updates started by either side, session
//! tickets, close_notify, a damaged record, and how writes become records.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustls::{ClientConnection, ServerConfig, ServerConnection, StreamOwned};

use super::{identity, record, tls, Carrier, Stream, Suite, TlsStream};

fn an_identity() -> (tempfile::TempDir, identity::Identity) {
    let dir = tempfile::tempdir().unwrap();
    let id = identity::load_or_create(&dir.path().join("state")).unwrap();
    (dir, id)
}

fn socket_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    for x in [&c, &s] {
        x.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    }
    (c, s)
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + seed as usize) as u8).collect()
}

/// A rustls server as rustls configures one by default (it sends session
/// tickets, which ours never does).
fn rustls_server(id: &identity::Identity) -> ServerConnection {
    rustls_server_with(id, |_| {})
}

/// A rustls server configured by default, then by `tune`.
fn rustls_server_with(id: &identity::Identity, tune: fn(&mut ServerConfig)) -> ServerConnection {
    let mut cfg = ServerConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(id.certs.clone(), id.key.clone_key())
        .unwrap();
    tune(&mut cfg);
    assert!(cfg.send_tls13_tickets > 0);
    ServerConnection::new(Arc::new(cfg)).unwrap()
}

/// Our server's configuration, a rustls client as ours is configured,
/// and the two ends of a connection (client's first).
fn our_server_and_a_rustls_client() -> (
    tempfile::TempDir,
    Arc<ServerConfig>,
    ClientConnection,
    TcpStream,
    TcpStream,
) {
    let (dir, id) = an_identity();
    let cfg = tls::server_config(&id).unwrap();
    let (c, srv) = socket_pair();
    let name = "127.0.0.1".try_into().unwrap();
    let conn = ClientConnection::new(tls::client_config(), name).unwrap();
    (dir, cfg, conn, c, srv)
}

fn binding_of<D>(c: &rustls::ConnectionCommon<D>) -> [u8; tls::BINDING_LEN] {
    let mut b = [0u8; tls::BINDING_LEN];
    c.export_keying_material(&mut b, tls::BINDING_LABEL, None)
        .unwrap();
    b
}

fn rekey_every(s: &mut Stream, n: u64) {
    match s {
        Stream::Tls(t) => t.keys.rekey_every(n),
        Stream::Plain(_) => unreachable!(),
    }
}

/// The rustls side of the exchange: reads `first` bytes, changes its keys
/// and asks us to change ours, echoes them, reads `then` bytes, closes.
fn rustls_side<C, D>(mut s: StreamOwned<C, TcpStream>, first: usize, then: usize) -> [Vec<u8>; 3]
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<D>>,
    D: rustls::SideData,
{
    let mut got = vec![0u8; first];
    s.read_exact(&mut got).unwrap();
    let binding = binding_of(&s.conn).to_vec();
    s.conn.refresh_traffic_keys().unwrap();
    s.write_all(&got).unwrap();
    s.flush().unwrap();
    let mut more = vec![0u8; then];
    s.read_exact(&mut more).unwrap();
    s.conn.send_close_notify();
    s.flush().unwrap();
    [binding, got, more]
}

/// Our side: sends `data`, reads it back (across the peer's key update,
/// answered with ours), sends its first `then` bytes again, and reads the
/// peer's close_notify as a clean end. Our own keys change every 5 records.
fn our_side(mut s: Stream, data: &[u8], then: usize) -> [u8; tls::BINDING_LEN] {
    rekey_every(&mut s, 5);
    s.write_all(data).unwrap();
    let mut back = vec![0u8; data.len()];
    s.read_exact(&mut back).unwrap();
    assert!(back == data, "echo differs");
    s.write_all(&data[..then]).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    s.binding()
}

#[test]
fn our_client_and_a_rustls_server_agree_through_key_updates_and_tickets() {
    let (_dir, id) = an_identity();
    let (c, srv) = socket_pair();
    let conn = rustls_server(&id);
    let peer = thread::spawn(move || rustls_side(StreamOwned::new(conn, srv), 300_000, 100_000));
    let deadline = Instant::now() + Duration::from_secs(20);
    let ours = tls::connect(c, "127.0.0.1", deadline, &|| false).unwrap();
    let data = pattern(300_000, 1);
    let binding = our_side(ours, &data, 100_000);
    let [their_binding, got, more] = peer.join().unwrap();
    assert_eq!(got, data);
    assert_eq!(more, data[..100_000]);
    assert_eq!(their_binding, binding, "both ends export the same binding");
}

#[test]
fn our_server_and_a_rustls_client_agree_through_key_updates() {
    let (_dir, cfg, conn, c, srv) = our_server_and_a_rustls_client();
    let peer = thread::spawn(move || rustls_side(StreamOwned::new(conn, c), 200_000, 50_000));
    let deadline = Instant::now() + Duration::from_secs(20);
    let ours = tls::accept_blocking(srv, &cfg, deadline).unwrap();
    let data = pattern(200_000, 2);
    let binding = our_side(ours, &data, 50_000);
    let [their_binding, got, more] = peer.join().unwrap();
    assert_eq!(got, data);
    assert_eq!(more, data[..50_000]);
    assert_eq!(their_binding, binding);
}

/// A rustls server that finishes its handshake on `sock`, then sends
/// `records` (each written as a record of its own) as raw bytes passed
/// through `mangle`, in pieces of the sizes `pieces` gives in turn; then
/// reads until the client is done and returns the error rustls met, if
/// any (the alert we sent).
fn rustls_sends(
    id: &identity::Identity,
    sock: TcpStream,
    records: Vec<Vec<u8>>,
    mangle: fn(&mut Vec<u8>),
    pieces: &'static [usize],
) -> thread::JoinHandle<Option<String>> {
    let mut conn = rustls_server(id);
    thread::spawn(move || {
        let mut sock = sock;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock).unwrap();
        }
        let mut wire = Vec::new();
        for r in &records {
            conn.writer().write_all(r).unwrap();
            while conn.wants_write() {
                conn.write_tls(&mut wire).unwrap();
            }
        }
        mangle(&mut wire);
        let mut at = 0;
        for n in pieces.iter().cycle() {
            if at == wire.len() {
                break;
            }
            let n = (*n).min(wire.len() - at);
            sock.write_all(&wire[at..at + n]).unwrap();
            at += n;
            thread::sleep(Duration::from_micros(200));
        }
        loop {
            match conn.complete_io(&mut sock) {
                Ok((0, 0)) => break None,
                Ok(_) => continue,
                Err(e) => break Some(e.to_string()),
            }
        }
    })
}

#[test]
fn a_damaged_record_is_refused_with_an_alert_and_stays_refused() {
    // Small reads go through our buffer; large ones open records where
    // they land.
    for read_size in [64, 256 * 1024] {
        let (_dir, id) = an_identity();
        let (c, srv) = socket_pair();
        let records = vec![b"intact".to_vec(), b"damaged".to_vec()];
        // The last record's last byte (its tag).
        let flip: fn(&mut Vec<u8>) = |w| *w.last_mut().unwrap() ^= 1;
        let peer = rustls_sends(&id, srv, records, flip, &[usize::MAX]);
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut ours = tls::connect(c, "127.0.0.1", deadline, &|| false).unwrap();
        let (got, err) = read_all_in(&mut ours, read_size);
        let err = err.expect("clean end instead of an error");
        assert_eq!(got, b"intact");
        assert!(err.contains("BadRecordMac"), "{err}");
        let again = ours.read(&mut vec![0u8; read_size]).unwrap_err();
        assert_eq!(again.to_string(), err);
        let told = peer.join().unwrap().unwrap_or_default();
        assert!(told.contains("BadRecordMac"), "{told}");
    }
}

#[test]
fn records_too_short_or_too_long_are_refused_through_both_read_paths() {
    let (_dir, id) = an_identity();
    // After one intact record: a header with no body, one whose body is
    // shorter than a tag, one claiming more than a record may hold.
    type Append = fn(&mut Vec<u8>);
    let cases: [(Append, &str); 3] = [
        (|w| w.extend_from_slice(&[0x17, 3, 3, 0, 0]), "BadRecordMac"),
        (
            |w| w.extend_from_slice(&[0x17, 3, 3, 0, 3, 1, 2, 3]),
            "BadRecordMac",
        ),
        (
            |w| w.extend_from_slice(&[0x17, 3, 3, 0xff, 0xff]),
            "record too long",
        ),
    ];
    for (append, why) in cases {
        for read_size in [64, 256 * 1024] {
            let (c, srv) = socket_pair();
            let peer = rustls_sends(&id, srv, vec![b"intact".to_vec()], append, &[usize::MAX]);
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut ours = tls::connect(c, "127.0.0.1", deadline, &|| false).unwrap();
            let (got, err) = read_all_in(&mut ours, read_size);
            let err = err.expect("clean end instead of an error");
            assert_eq!(got, b"intact");
            assert!(err.contains(why), "{why}: {err}");
            drop(ours);
            let _ = peer.join().unwrap();
        }
    }
}

#[test]
fn records_split_anywhere_by_the_network_arrive_whole_in_reads_of_any_size() {
    let (_dir, id) = an_identity();
    // Full records and short ones, as a server's batches make them.
    let sizes = [
        16384, 16384, 100, 16384, 7, 16384, 16384, 16384, 5000, 1, 16384,
    ];
    let records: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| pattern(n, i as u8))
        .collect();
    let want: Vec<u8> = records.concat();
    for read_size in [1000, 64 * 1024, 100_000, 1 << 20] {
        let (c, srv) = socket_pair();
        let keep: fn(&mut Vec<u8>) = |_| {};
        let pieces = &[1, 4, 3, 16406, 999, 2, 16400, 40_000, 7, 33_000];
        let peer = rustls_sends(&id, srv, records.clone(), keep, pieces);
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut ours = tls::connect(c, "127.0.0.1", deadline, &|| false).unwrap();
        let mut buf = vec![0u8; read_size];
        let mut got = Vec::new();
        while got.len() < want.len() {
            let n = ours.read(&mut buf).unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got == want, "read size {read_size}: bytes differ");
        ours.close_write();
        drop(ours);
        assert_eq!(peer.join().unwrap(), None);
    }
}

/// A rustls client that finishes its handshake on `sock`, then reads
/// everything until the end: the lengths of the records that came after
/// the handshake, and their content.
fn rustls_client_reads_all(
    mut conn: ClientConnection,
    mut sock: TcpStream,
) -> thread::JoinHandle<(Vec<usize>, Vec<u8>)> {
    thread::spawn(move || {
        while conn.is_handshaking() {
            conn.complete_io(&mut sock).unwrap();
        }
        let mut wire = Vec::new();
        sock.read_to_end(&mut wire).unwrap();
        let lens = record_lengths(&wire);
        let mut plain = Vec::new();
        let mut rd = &wire[..];
        while !rd.is_empty() {
            conn.read_tls(&mut rd).unwrap();
            conn.process_new_packets().unwrap();
            let _ = conn.reader().read_to_end(&mut plain);
        }
        (lens, plain)
    })
}

/// The record headers in `wire` (after the handshake's records).
fn record_lengths(wire: &[u8]) -> Vec<usize> {
    let mut at = 0;
    let mut lens = Vec::new();
    while let Some(n) = record::whole_record(&wire[at..]) {
        lens.push(n - record::HEADER);
        at += n;
    }
    assert_eq!(at, wire.len());
    lens
}

#[test]
fn a_write_leaves_in_full_records_and_reaches_the_peer_intact() {
    let (_dir, cfg, conn, c, srv) = our_server_and_a_rustls_client();
    let data = pattern(4 * 16 * 1024 + 100, 3);
    let peer = rustls_client_reads_all(conn, c);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ours = tls::accept_blocking(srv, &cfg, deadline).unwrap();
    ours.write_all(&data).unwrap();
    ours.close_write();
    let (lens, plain) = peer.join().unwrap();
    assert_eq!(plain, data);
    // Four full records of 16 KiB (+ content type and tag), the rest in
    // a fifth, then the close_notify alert.
    let full = 16 * 1024 + 1 + record::TAG;
    assert_eq!(
        lens,
        [
            full,
            full,
            full,
            full,
            100 + 1 + record::TAG,
            2 + 1 + record::TAG
        ]
    );
}

#[test]
fn a_batch_of_small_writes_leaves_as_full_records_sealed_where_they_lie() {
    let (_dir, cfg, conn, c, srv) = our_server_and_a_rustls_client();
    // 100 answers of 700 bytes, then a flush; 2,000 more bytes, a flush.
    let data = pattern(72_000, 4);
    let peer = rustls_client_reads_all(conn, c);
    let deadline = Instant::now() + Duration::from_secs(20);
    let link = super::Link::new(tls::accept_blocking(srv, &cfg, deadline).unwrap());
    let mut batch = super::Batch::new(link.clone(), 320 * 1024);
    for piece in data[..70_000].chunks(700) {
        batch.write_all(piece).unwrap();
    }
    assert_eq!(batch.pending(), 70_000);
    batch.flush().unwrap();
    assert_eq!(batch.pending(), 0);
    batch.write_all(&data[70_000..]).unwrap();
    batch.flush().unwrap();
    link.lock().close_write();
    let (lens, plain) = peer.join().unwrap();
    assert!(plain == data, "bytes differ");
    let full = 16 * 1024 + 1 + record::TAG;
    let last = 70_000 - 4 * 16 * 1024 + 1 + record::TAG;
    let alert = 2 + 1 + record::TAG;
    assert_eq!(
        lens,
        [full, full, full, full, last, 2_000 + 1 + record::TAG, alert]
    );
}

#[test]
fn a_file_is_read_into_records_and_sealed_there() {
    let (dir, cfg, conn, c, srv) = our_server_and_a_rustls_client();
    let data = pattern(600_000, 5);
    let path = dir.path().join("f");
    std::fs::write(&path, &data).unwrap();
    let peer = rustls_client_reads_all(conn, c);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ours = tls::accept_blocking(srv, &cfg, deadline).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    ours.send_file(&file, 1_000, 500_000, &mut Vec::new())
        .unwrap();
    ours.close_write();
    let (lens, plain) = peer.join().unwrap();
    assert!(plain == data[1_000..501_000], "bytes differ");
    // 30 full records, one of the 8,480 bytes left, the close_notify.
    let full = 16 * 1024 + 1 + record::TAG;
    let mut want = vec![full; 30];
    want.extend([
        500_000 - 30 * 16 * 1024 + 1 + record::TAG,
        2 + 1 + record::TAG,
    ]);
    assert_eq!(lens, want);
}

// ------------------------------------------- a peer that seals anything

/// Bytes in memory for our record layer to read (in pieces of at most
/// `piece` bytes) and what it sent back.
#[derive(Clone)]
struct InMemory(Rc<RefCell<Wires>>);

struct Wires {
    incoming: Vec<u8>,
    at: usize,
    piece: usize,
    sent: Vec<u8>,
    /// Sends fail (a peer that stopped reading), and how many were tried.
    refuse_sends: bool,
    sends: usize,
}

impl InMemory {
    fn new(incoming: Vec<u8>, piece: usize) -> Self {
        InMemory(Rc::new(RefCell::new(Wires {
            incoming,
            at: 0,
            piece,
            sent: Vec::new(),
            refuse_sends: false,
            sends: 0,
        })))
    }

    fn sent(&self) -> Vec<u8> {
        self.0.borrow().sent.clone()
    }
}

impl Carrier for InMemory {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut w = self.0.borrow_mut();
        let n = buf.len().min(w.piece).min(w.incoming.len() - w.at);
        buf[..n].copy_from_slice(&w.incoming[w.at..w.at + n]);
        w.at += n;
        Ok(n)
    }

    /// Bytes in memory are there at once: the same as [`Carrier::recv`].
    fn recv_now(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv(buf)
    }

    fn send_all(&self, data: &[u8]) -> io::Result<()> {
        let mut w = self.0.borrow_mut();
        w.sends += 1;
        if w.refuse_sends {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "stalled"));
        }
        w.sent.extend_from_slice(data);
        Ok(())
    }
}

const CLIENT_SECRET: [u8; 48] = [1; 48];
const SERVER_SECRET: [u8; 48] = [2; 48];

/// The peer's keys (a server's) for a client of ours built by [`ours`].
fn peer() -> record::Keys {
    record::Keys::from_secrets(Suite::Aes256Gcm, &CLIENT_SECRET, &SERVER_SECRET, false).unwrap()
}

/// Our client reading `wire`, in pieces of `piece` bytes.
fn ours(wire: Vec<u8>, piece: usize) -> (TlsStream<InMemory>, InMemory) {
    let mem = InMemory::new(wire, piece);
    let t = TlsStream::with_secrets(
        mem.clone(),
        Suite::Aes256Gcm,
        &CLIENT_SECRET,
        &SERVER_SECRET,
        true,
    )
    .unwrap();
    (t, mem)
}

/// Everything our side hands on, and the error that ended it (`None`:
/// a clean end).
fn read_all<C: Carrier>(t: &mut TlsStream<C>) -> (Vec<u8>, Option<String>) {
    read_all_in(t, 4096)
}

/// [`read_all`] in reads of `size` bytes (64 KiB or more: records are
/// opened where the carrier put them, in the caller's buffer).
fn read_all_in(t: &mut impl Read, size: usize) -> (Vec<u8>, Option<String>) {
    let mut got = Vec::new();
    let mut buf = vec![0u8; size];
    loop {
        match t.read(&mut buf) {
            Ok(0) => return (got, None),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return (got, Some(e.to_string())),
        }
    }
}

/// The records our side sent, opened with the peer's keys: (content
/// type, content) each.
fn opened(peer: &mut record::Keys, sent: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut sent = sent.to_vec();
    let mut at = 0;
    let mut out = Vec::new();
    while let Some(n) = record::whole_record(&sent[at..]) {
        let (kind, r) = peer
            .rx
            .open(&mut sent, at + record::HEADER, at, n)
            .expect("our records open");
        out.push((kind, sent[r].to_vec()));
        at += n;
    }
    assert_eq!(at, sent.len(), "whole records only");
    out
}

/// The one fatal alert our side sent.
fn fatal_alert(peer: &mut record::Keys, sent: &[u8]) -> u8 {
    match &opened(peer, sent)[..] {
        [(record::ALERT, a)] if a[0] == 2 => a[1],
        other => panic!("not one fatal alert: {other:?}"),
    }
}

#[test]
fn a_record_longer_than_the_limit_is_refused_with_record_overflow_at_once() {
    // A header announcing 2^14 + 256 + 1 bytes, and none of them: refused
    // without waiting for a body no record may have.
    let len = record::MAX_BODY + 1;
    let wire = vec![record::APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
    let (mut t, mem) = ours(wire, 1000);
    let (got, err) = read_all(&mut t);
    assert!(got.is_empty());
    let err = err.unwrap();
    assert!(err.contains("too long"), "{err}");
    assert_eq!(
        fatal_alert(&mut peer(), &mem.sent()),
        record::RECORD_OVERFLOW
    );
    // So does one far longer, whole or not.
    let mut wire = vec![record::APPLICATION_DATA, 3, 3, 0xff, 0xff];
    wire.resize(5 + 0xffff, 0);
    let (mut t, mem) = ours(wire, 100_000);
    assert!(read_all(&mut t).1.unwrap().contains("too long"));
    assert_eq!(
        fatal_alert(&mut peer(), &mem.sent()),
        record::RECORD_OVERFLOW
    );
}

#[test]
fn padding_past_the_inner_plaintext_limit_is_refused_with_record_overflow() {
    let mut p = peer();
    let mut wire = Vec::new();
    // 2^14 bytes of content, its type and 100 bytes of padding: within the
    // ciphertext limit, beyond TLSInnerPlaintext's 2^14 + 1 (RFC 8446 5.4).
    let mut inner = pattern(record::MAX_PLAIN, 4);
    inner.push(record::APPLICATION_DATA);
    inner.resize(inner.len() + 100, 0);
    p.tx.seal_inner(record::APPLICATION_DATA, &inner, &mut wire);
    let (mut t, mem) = ours(wire, 100_000);
    let (got, err) = read_all(&mut t);
    assert!(got.is_empty());
    assert!(err.unwrap().contains("RecordOverflow"));
    assert_eq!(fatal_alert(&mut p, &mem.sent()), record::RECORD_OVERFLOW);
}

/// A handshake record carrying `msg`, sealed by the peer.
fn handshake_record(p: &mut record::Keys, msg: &[u8], wire: &mut Vec<u8>) {
    p.tx.seal(record::HANDSHAKE, msg, wire);
}

#[test]
fn a_key_update_with_an_unknown_request_value_gets_illegal_parameter() {
    let mut p = peer();
    let mut wire = Vec::new();
    handshake_record(&mut p, &[24, 0, 0, 1, 2], &mut wire);
    let (mut t, mem) = ours(wire, 100);
    let err = read_all(&mut t).1.unwrap();
    assert!(err.contains("IllegalParameter"), "{err}");
    assert_eq!(fatal_alert(&mut p, &mem.sent()), 47);
    // One with a body of the wrong length cannot be decoded.
    let mut p = peer();
    let mut wire = Vec::new();
    handshake_record(&mut p, &[24, 0, 0, 2, 0, 0], &mut wire);
    let (mut t, mem) = ours(wire, 100);
    assert!(read_all(&mut t).1.unwrap().contains("DecodeError"));
    assert_eq!(fatal_alert(&mut p, &mem.sent()), record::DECODE_ERROR);
}

#[test]
fn nothing_is_sent_after_a_fatal_alert_either_way() {
    // We refuse a record: our alert is the last thing we send.
    let mut p = peer();
    let mut wire = Vec::new();
    p.tx.seal(record::APPLICATION_DATA, b"fine", &mut wire);
    *wire.last_mut().unwrap() ^= 1;
    for size in [4096, 256 * 1024] {
        let (mut t, mem) = ours(wire.clone(), 100);
        assert!(read_all_in(&mut t, size)
            .1
            .unwrap()
            .contains("BadRecordMac"));
        let err = t.send(b"after the alert").unwrap_err();
        assert!(err.to_string().contains("BadRecordMac"), "{err}");
        let _ = t.close_notify();
        assert_eq!(
            fatal_alert(&mut peer(), &mem.sent()),
            record::BAD_RECORD_MAC
        );
    }
    // The peer's fatal alert: nothing goes back, data or alert.
    let mut p = peer();
    let mut wire = Vec::new();
    p.tx.seal(record::ALERT, &[2, 40], &mut wire);
    let (mut t, mem) = ours(wire, 100);
    let err = read_all(&mut t).1.unwrap();
    assert!(err.contains("HandshakeFailure"), "{err}");
    assert!(t.send(b"after the alert").is_err());
    let _ = t.close_notify();
    assert!(mem.sent().is_empty());
}

#[test]
fn a_long_run_of_records_without_data_is_refused() {
    // Empty application data, key updates, user_canceled warnings and
    // session tickets each cost a record's work and hand on nothing:
    // without a bound, one read would never return to its caller's
    // time-out while they kept coming.
    let ticket = [4, 0, 0, 14, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 1, 7, 0, 0];
    let runs = [
        ("empty records", 0),
        ("key updates", 1),
        ("warnings", 2),
        ("tickets", 3),
    ];
    // Small reads go through our buffer; large ones open records where
    // they land.
    for (what, run, size) in runs
        .into_iter()
        .flat_map(|(w, r)| [(w, r, 4096), (w, r, 256 * 1024)])
    {
        let mut p = peer();
        let mut wire = Vec::new();
        p.tx.seal(record::APPLICATION_DATA, b"first", &mut wire);
        for _ in 0..1000 {
            match run {
                0 => p.tx.seal(record::APPLICATION_DATA, b"", &mut wire),
                1 => {
                    p.tx.seal(record::HANDSHAKE, &record::key_update(false), &mut wire);
                    p.tx.update();
                }
                2 => p.tx.seal(record::ALERT, &[1, 90], &mut wire),
                _ => p.tx.seal(record::HANDSHAKE, &ticket, &mut wire),
            }
        }
        p.tx.seal(record::APPLICATION_DATA, b"late", &mut wire);
        let (mut t, mem) = ours(wire, 1 << 20);
        let (got, err) = read_all_in(&mut t, size);
        assert_eq!(got, b"first", "{what}, reads of {size}");
        let err = err.unwrap_or_default();
        assert!(
            err.contains("without data"),
            "{what}, reads of {size}: {err}"
        );
        assert_eq!(
            fatal_alert(&mut p, &mem.sent()),
            record::UNEXPECTED_MESSAGE,
            "{what}"
        );
    }
}

#[test]
fn a_few_records_without_data_between_data_are_fine() {
    let ticket = [4, 0, 0, 14, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 1, 7, 0, 0];
    let mut p = peer();
    let mut wire = Vec::new();
    let mut want = Vec::new();
    for i in 0..200u32 {
        p.tx.seal(record::APPLICATION_DATA, &i.to_be_bytes(), &mut wire);
        want.extend_from_slice(&i.to_be_bytes());
        for _ in 0..8 {
            p.tx.seal(record::APPLICATION_DATA, b"", &mut wire);
            p.tx.seal(record::HANDSHAKE, &ticket, &mut wire);
        }
        p.tx.seal(record::HANDSHAKE, &record::key_update(false), &mut wire);
        p.tx.update();
    }
    p.tx.seal(record::ALERT, &[1, record::CLOSE_NOTIFY], &mut wire);
    for size in [4096, 256 * 1024] {
        let (mut t, _) = ours(wire.clone(), 1000);
        assert_eq!(read_all_in(&mut t, size), (want.clone(), None));
    }
}

#[test]
fn a_malformed_session_ticket_is_refused_with_decode_error() {
    for bad in [
        &[4, 0, 0, 0][..],
        // Its ticket (1 byte) runs past the message.
        &[4, 0, 0, 11, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 1][..],
        // An empty ticket (RFC 8446 4.6.1: at least 1 byte).
        &[4, 0, 0, 13, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0][..],
        // A byte after its extensions.
        &[4, 0, 0, 15, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 1, 7, 0, 0, 9][..],
    ] {
        let mut p = peer();
        let mut wire = Vec::new();
        handshake_record(&mut p, bad, &mut wire);
        let (mut t, mem) = ours(wire, 100);
        let err = read_all(&mut t).1.unwrap();
        assert!(err.contains("DecodeError"), "{bad:?}: {err}");
        assert_eq!(fatal_alert(&mut p, &mem.sent()), record::DECODE_ERROR);
    }
}

// ------------------------------------------------------ the take-over

/// A client and a server connection of rustls's, their handshake done in
/// memory, each logging its traffic secrets.
fn handshaken_in_memory() -> (
    ClientConnection,
    Arc<record::TrafficSecrets>,
    ServerConnection,
    Arc<record::TrafficSecrets>,
) {
    let (_dir, id) = an_identity();
    let cfg = tls::server_config(&id).unwrap();
    let (mut server, server_log) = tls::server_connection(&cfg);
    let client_log = Arc::new(record::TrafficSecrets::default());
    let mut ccfg = (*tls::client_config()).clone();
    ccfg.key_log = client_log.clone();
    let name = "127.0.0.1".try_into().unwrap();
    let mut client = ClientConnection::new(Arc::new(ccfg), name).unwrap();
    while client.is_handshaking() || server.is_handshaking() {
        pass(&mut *client, &mut *server);
        pass(&mut *server, &mut *client);
    }
    (client, client_log, server, server_log)
}

/// Hands `to` everything `from` has to send.
fn pass<A, B>(from: &mut rustls::ConnectionCommon<A>, to: &mut rustls::ConnectionCommon<B>) {
    let mut wire = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut wire).unwrap();
    }
    let mut rd = &wire[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd).unwrap();
    }
    to.process_new_packets().unwrap();
}

#[test]
fn the_key_log_must_have_caught_the_very_secrets_rustls_keyed_the_connection_with() {
    // The keys derived from what the log caught are compared with the
    // ones rustls hands over: a log that caught nothing, or another
    // connection's secrets, fails the take-over with one clear line.
    let (client, client_log, server, server_log) = handshaken_in_memory();
    let (_, other_log, _, _) = handshaken_in_memory();
    let c = client.dangerous_extract_secrets().unwrap();
    let s = server.dangerous_extract_secrets().unwrap();
    let copy = |x: &rustls::ExtractedSecrets| rustls::ExtractedSecrets {
        tx: (x.tx.0, copy_secrets(&x.tx.1)),
        rx: (x.rx.0, copy_secrets(&x.rx.1)),
    };
    let nothing = record::TrafficSecrets::default();
    let err = record::Keys::new(copy(&c), &nothing, true).err().unwrap();
    assert!(
        err.to_string().contains("caught no traffic secrets"),
        "{err}"
    );
    let err = record::Keys::new(copy(&c), &other_log, true).err().unwrap();
    assert!(err.to_string().contains("does not match"), "{err}");
    // The right log, but the wrong side's view of it.
    let (c2, c2_log, _, _) = handshaken_in_memory();
    let c2 = c2.dangerous_extract_secrets().unwrap();
    let err = record::Keys::new(c2, &c2_log, false).err().unwrap();
    assert!(err.to_string().contains("does not match"), "{err}");
    let mut ours_c = record::Keys::new(c, &client_log, true).unwrap();
    let mut ours_s = record::Keys::new(s, &server_log, false).unwrap();
    // And the two sides then understand each other.
    let mut wire = Vec::new();
    ours_c.tx.seal(record::APPLICATION_DATA, b"ping", &mut wire);
    let n = wire.len();
    let (kind, r) = ours_s.rx.open(&mut wire, record::HEADER, 0, n).unwrap();
    assert_eq!((kind, &wire[r]), (record::APPLICATION_DATA, &b"ping"[..]));
}

fn copy_secrets(s: &rustls::ConnectionTrafficSecrets) -> rustls::ConnectionTrafficSecrets {
    use rustls::crypto::cipher::{AeadKey, Iv};
    match s {
        rustls::ConnectionTrafficSecrets::Aes256Gcm { key, iv } => {
            let k: [u8; 32] = key.as_ref().try_into().unwrap();
            rustls::ConnectionTrafficSecrets::Aes256Gcm {
                key: AeadKey::from(k),
                iv: Iv::from(<[u8; 12]>::try_from(iv.as_ref()).unwrap()),
            }
        }
        _ => panic!("the preferred suite is AES-256-GCM"),
    }
}

#[test]
fn a_clients_first_bytes_sent_with_its_finished_reach_our_server_once() {
    // The client writes its Finished and its first records in one write.
    // `accept_blocking` stops feeding rustls at the handshake's end, so
    // there rustls never holds application data. The server's admission
    // does: it reads the greeting through rustls, which is fed every whole
    // record that came, so at the take-over rustls still holds what it
    // decrypted behind the greeting (a record is up to 16 KiB). That is
    // done here as admission does it, with its parts (`server_connection`,
    // `feed_records`, `Established::server`).
    let (_dir, cfg, mut conn, mut c, srv) = our_server_and_a_rustls_client();
    let first = pattern(40_000, 5);
    let peer = {
        let first = first.clone();
        thread::spawn(move || {
            // Queued before the handshake ends, sent behind the Finished.
            conn.writer().write_all(&first).unwrap();
            while conn.is_handshaking() {
                while conn.wants_write() {
                    conn.write_tls(&mut c).unwrap();
                }
                conn.read_tls(&mut c).unwrap();
                conn.process_new_packets().unwrap();
            }
            // The Finished and the first records, in one write.
            let mut wire = Vec::new();
            while conn.wants_write() {
                conn.write_tls(&mut wire).unwrap();
            }
            c.write_all(&wire).unwrap();
            let mut s = StreamOwned::new(conn, c);
            s.write_all(b" and then more").unwrap();
            s.conn.send_close_notify();
            s.flush().unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        })
    };
    let (mut conn, secrets) = tls::server_connection(&cfg);
    let mut sock = srv;
    let mut raw = Vec::new();
    let mut greeting = [0u8; 8];
    // Reads of 4 KiB, as admission's, so that rustls is never handed more
    // than its plaintext buffer takes.
    let mut buf = [0u8; 4096];
    // Until the greeting has come through rustls, as admission reads it.
    loop {
        while conn.wants_write() {
            conn.write_tls(&mut sock).unwrap();
        }
        if !conn.is_handshaking() && conn.reader().read_exact(&mut greeting).is_ok() {
            break;
        }
        let n = sock.read(&mut buf).unwrap();
        assert!(n > 0, "the client closed before its greeting");
        raw.extend_from_slice(&buf[..n]);
        tls::feed_records(&mut conn, &mut raw, |_| false).unwrap();
    }
    let est = tls::Established::server(conn, secrets, raw);
    let mut ours = Stream::server(Some(est), Arc::new(sock)).unwrap();
    let mut got = greeting.to_vec();
    ours.read_to_end(&mut got).unwrap();
    let mut want = first;
    want.extend_from_slice(b" and then more");
    assert!(got == want, "{} bytes, {} expected", got.len(), want.len());
    ours.close_write();
    peer.join().unwrap();
}

#[test]
fn tickets_and_data_in_one_flight_after_the_handshake_reach_our_client_once() {
    // A rustls server that sends data in its first flight (half-RTT
    // data) writes its Finished and its first records in one write, and
    // later its session tickets, more data and its close_notify in
    // another. `tls::connect` feeds rustls whole records only, up to the
    // server's Finished: what came with it is left to our record layer,
    // so rustls holds no plaintext at the take-over here (the hand-over
    // of what it held cannot be what this test catches: see the server's
    // test above). What matters is that nothing read together with the
    // Finished is lost or handed on twice.
    let (_dir, id) = an_identity();
    let (c, srv) = socket_pair();
    let mut conn = rustls_server_with(&id, |cfg| cfg.send_half_rtt_data = true);
    let data = pattern(50_000, 6);
    let peer = {
        let data = data.clone();
        thread::spawn(move || {
            let mut sock = srv;
            // Small enough that the first flight is read in one read.
            conn.writer().write_all(&data[..2_000]).unwrap();
            while conn.is_handshaking() {
                // Answers the ClientHello with the whole flight, data
                // behind the Finished, in one write; then reads the
                // client's Finished, after which the tickets are queued.
                let mut wire = Vec::new();
                while conn.wants_write() {
                    conn.write_tls(&mut wire).unwrap();
                }
                sock.write_all(&wire).unwrap();
                conn.read_tls(&mut sock).unwrap();
                conn.process_new_packets().unwrap();
            }
            conn.writer().write_all(&data[2_000..]).unwrap();
            conn.send_close_notify();
            let mut wire = Vec::new();
            while conn.wants_write() {
                conn.write_tls(&mut wire).unwrap();
            }
            sock.write_all(&wire).unwrap();
            let mut rest = Vec::new();
            let _ = sock.read_to_end(&mut rest);
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ours = tls::connect(c, "127.0.0.1", deadline, &|| false).unwrap();
    // The data read with the Finished waits as records for our layer.
    match &ours {
        Stream::Tls(t) => assert!(
            t.plain.is_empty() && t.end - t.start > 2_000,
            "{:?} opened, {} bytes of records: the data did not come with the Finished",
            t.plain,
            t.end - t.start
        ),
        Stream::Plain(_) => unreachable!(),
    }
    let mut got = Vec::new();
    ours.read_to_end(&mut got).unwrap();
    assert!(got == data, "{} bytes, {} expected", got.len(), data.len());
    ours.close_write();
    peer.join().unwrap();
}

#[test]
fn a_record_trickled_in_waits_no_longer_in_all_than_the_read_time_out() {
    // One record of 400 bytes, a byte every 5 ms: each byte comes well
    // within the socket's 100 ms time-out, the record takes 2 s. A read
    // waits no longer in all than the time-out, as a plaintext read
    // would, so that its caller's deadline (the server's idle time-out,
    // the client's --max-time and Ctrl-C) is looked at; what came stays,
    // and the record is handed on once it is all there.
    // Reads of 1,000 bytes wait in `fill`; reads of 256 KiB in
    // `read_direct`.
    for size in [1000, 256 * 1024] {
        trickled(size);
    }
}

fn trickled(size: usize) {
    let (c, srv) = socket_pair();
    let mut p = peer();
    let mut wire = Vec::new();
    let data = pattern(400 - 1 - record::TAG - record::HEADER, 7);
    p.tx.seal(record::APPLICATION_DATA, &data, &mut wire);
    let sender = thread::spawn(move || {
        let mut srv = srv;
        for b in wire {
            srv.write_all(&[b]).unwrap();
            thread::sleep(Duration::from_millis(5));
        }
        srv
    });
    c.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut ours = TlsStream::with_secrets(
        Arc::new(c),
        Suite::Aes256Gcm,
        &CLIENT_SECRET,
        &SERVER_SECRET,
        true,
    )
    .unwrap();
    let mut buf = vec![0u8; size];
    let mut timeouts = 0;
    let n = loop {
        match ours.read(&mut buf) {
            Ok(n) => break n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                timeouts += 1
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(&buf[..n], &data[..]);
    assert!(
        timeouts > 0,
        "one read of {size} waited for the whole trickled record"
    );
    drop(sender.join().unwrap());
}

#[test]
fn after_a_failed_write_nothing_more_is_tried_not_even_an_answer_to_a_key_update() {
    let mut p = peer();
    let mut wire = Vec::new();
    p.tx.seal(record::HANDSHAKE, &record::key_update(true), &mut wire);
    p.tx.update();
    p.tx.seal(record::APPLICATION_DATA, b"still read", &mut wire);
    p.tx.seal(record::ALERT, &[1, record::CLOSE_NOTIFY], &mut wire);
    let (mut t, mem) = ours(wire, 100);
    mem.0.borrow_mut().refuse_sends = true;
    let err = t.send(b"part of a record, perhaps").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    let again = t.send(b"more").unwrap_err();
    assert!(
        again.to_string().contains("an earlier write failed"),
        "{again}"
    );
    // Reading goes on (what the peer sent is still its to read), but the
    // key update it asks for is not answered into a broken stream.
    assert_eq!(read_all(&mut t), (b"still read".to_vec(), None));
    assert_eq!(mem.0.borrow().sends, 1);
}
