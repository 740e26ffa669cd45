//! Our TLS record layer against rustls's own, over real sockets, both
//! ways: data both ways, key updates started by either side, session
//! tickets, close_notify, a damaged record, and how writes become records.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustls::{ClientConnection, ServerConfig, ServerConnection, StreamOwned};

use super::{identity, record, tls, Stream};

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
    let cfg = ServerConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(id.certs.clone(), id.key.clone_key())
        .unwrap();
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
        let mut buf = vec![0u8; read_size];
        let mut got = Vec::new();
        let err = loop {
            match ours.read(&mut buf) {
                Ok(0) => panic!("clean end instead of an error"),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break e,
            }
        };
        assert_eq!(got, b"intact");
        assert!(err.to_string().contains("BadRecordMac"), "{err}");
        let again = ours.read(&mut buf).unwrap_err();
        assert_eq!(again.to_string(), err.to_string());
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
            let mut buf = vec![0u8; read_size];
            let mut got = Vec::new();
            let err = loop {
                match ours.read(&mut buf) {
                    Ok(0) => panic!("clean end instead of an error"),
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => break e,
                }
            };
            assert_eq!(got, b"intact");
            assert!(err.to_string().contains(why), "{why}: {err}");
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
