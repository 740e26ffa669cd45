#![no_main]
//! The opening side of our TLS 1.3 record layer (`transport::TlsStream`)
//! after the handshake, with a peer played by this harness: it knows both
//! traffic secrets (fixed) and seals records with an AEAD and key schedule
//! of its own (ring, RFC 8446 5.2-5.3 and 7.1-7.3, written here again, not
//! borrowed from the code under test). The input is a script of what the
//! peer sends: application data with any padding, records of any outer and
//! inner content type, KeyUpdates (which the harness then follows), session
//! tickets whole or split over two records, alerts, and raw garbage, cut
//! bits and truncation; the bytes reach our side in pieces of a size the
//! input picks, and are read in buffers of a size it picks too (of 64 KiB
//! or more, records are opened where they land in the reader's buffer).
//!
//! The harness knows, from the RFC alone, what a correct record layer must
//! do with each record it sealed, for as long as it sealed nothing whose
//! fate it cannot tell (garbage): so on a stream it fully understands our
//! side must hand on exactly the application data of the records before
//! the first one it must refuse, then end cleanly (a close_notify came
//! first) or with an error; after garbage, what it hands on must still be
//! a prefix of everything sealed, in order.
//!
//! Properties: no panic; no allocation above `SINGLE_BOUND`, live heap
//! under `LIVE_BOUND`; no hang (a bound on reads); every application byte
//! handed on was sealed by the harness, in order, none twice, and the
//! whole of the legal prefix is handed on; an error stays (the next read
//! fails the same way, and nothing more is handed on); nothing can be sent
//! after an error; what our side sent back opens under its keys (following
//! its own key updates): every KeyUpdate asking for one answered with one
//! that does not, at most one fatal alert, and nothing after it.

use std::cell::RefCell;
use std::io::{self, Read};
use std::rc::Rc;

use fxfer::transport::{Carrier, Suite, TlsStream};
use fxfer_fuzz::Bounded;
use libfuzzer_sys::fuzz_target;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;

/// The largest allocation: the record layer's 256 KiB read buffer, and the
/// harness's own wire (at most `MAX_WIRE`) and copies of it.
const SINGLE_BOUND: usize = 4 << 20;
const LIVE_BOUND: usize = 24 << 20;
/// The most bytes one input makes the peer send.
const MAX_WIRE: usize = 1 << 20;
const MAX_PLAIN: usize = 1 << 14;
const TAG: usize = 16;

#[global_allocator]
static ALLOC: Bounded = Bounded::new(SINGLE_BOUND, LIVE_BOUND);

const APPLICATION_DATA: u8 = 23;
const HANDSHAKE: u8 = 22;
const ALERT: u8 = 21;
/// Records in a row without application data our side allows (rustls and
/// BoringSSL allow 32 of each kind).
const QUIET_RECORDS: u32 = 32;

// ------------------------------------------------- the peer's key schedule

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label(secret, label, "", n) (RFC 8446 7.1).
fn expand(hash: hkdf::Algorithm, secret: &[u8], label: &str, n: usize) -> Vec<u8> {
    let full = format!("tls13 {label}");
    let mut info = vec![0, n as u8, full.len() as u8];
    info.extend_from_slice(full.as_bytes());
    info.push(0);
    let mut out = vec![0u8; n];
    hkdf::Prk::new_less_safe(hash, secret)
        .expand(&[&info], Len(n))
        .unwrap()
        .fill(&mut out)
        .unwrap();
    out
}

/// One direction's key, IV and sequence number, as the RFC has them.
struct Dir {
    aead: &'static aead::Algorithm,
    hash: hkdf::Algorithm,
    secret: Vec<u8>,
    key: LessSafeKey,
    iv: Vec<u8>,
    seq: u64,
}

impl Dir {
    fn new(aead: &'static aead::Algorithm, hash: hkdf::Algorithm, secret: Vec<u8>) -> Dir {
        let key = expand(hash, &secret, "key", aead.key_len());
        let iv = expand(hash, &secret, "iv", 12);
        Dir {
            aead,
            hash,
            key: LessSafeKey::new(UnboundKey::new(aead, &key).unwrap()),
            iv,
            secret,
            seq: 0,
        }
    }

    /// application_traffic_secret_N+1 (RFC 8446 7.2).
    fn update(&mut self) {
        let next = expand(self.hash, &self.secret, "traffic upd", self.secret.len());
        *self = Dir::new(self.aead, self.hash, next);
    }

    /// The per-record nonce: the IV XOR the sequence number, left-padded
    /// (RFC 8446 5.3); each number used once.
    fn nonce(&mut self) -> Nonce {
        let mut n = [0u8; 12];
        n.copy_from_slice(&self.iv);
        for (b, s) in n[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *b ^= s;
        }
        self.seq += 1;
        Nonce::assume_unique_for_key(n)
    }

    /// A record of outer type `outer` carrying the TLSInnerPlaintext
    /// `inner` (content, type, padding) as it is.
    fn seal(&mut self, outer: u8, version: [u8; 2], inner: &[u8], out: &mut Vec<u8>) {
        let len = inner.len() + TAG;
        let header = [outer, version[0], version[1], (len >> 8) as u8, len as u8];
        out.extend_from_slice(&header);
        let at = out.len();
        out.extend_from_slice(inner);
        let nonce = self.nonce();
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(header), &mut out[at..])
            .unwrap();
        out.extend_from_slice(tag.as_ref());
    }

    /// Opens a record our side sent: its content type and content.
    fn open(&mut self, rec: &[u8]) -> Option<(u8, Vec<u8>)> {
        let header: [u8; 5] = rec[..5].try_into().unwrap();
        let mut body = rec[5..].to_vec();
        let nonce = self.nonce();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(header), &mut body)
            .ok()?;
        let end = plain.iter().rposition(|&b| b != 0)?;
        Some((plain[end], plain[..end].to_vec()))
    }
}

// ------------------------------------------------------- our side's wire

/// What our side reads (in pieces of `piece` bytes) and what it sent.
#[derive(Clone)]
struct Wire(Rc<RefCell<WireState>>);

struct WireState {
    incoming: Vec<u8>,
    at: usize,
    piece: usize,
    sent: Vec<u8>,
    recvs: usize,
    /// Whether a read that must not wait finds nothing (as a socket whose
    /// next bytes are still on their way does) or the next piece.
    nothing_now: bool,
}

impl Carrier for Wire {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut w = self.0.borrow_mut();
        w.recvs += 1;
        assert!(w.recvs < 1_000_000, "reads without end");
        let n = buf.len().min(w.piece).min(w.incoming.len() - w.at);
        buf[..n].copy_from_slice(&w.incoming[w.at..w.at + n]);
        w.at += n;
        Ok(n)
    }

    fn recv_now(&self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.borrow().nothing_now {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.recv(buf)
    }

    fn send_all(&self, data: &[u8]) -> io::Result<()> {
        let mut w = self.0.borrow_mut();
        assert!(w.sent.len() < MAX_WIRE, "our side sends without end");
        w.sent.extend_from_slice(data);
        Ok(())
    }
}

// ----------------------------------------------------------- the script

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> usize {
        (self.u8() as usize) << 8 | self.u8() as usize
    }

    /// `n` bytes of the input (fewer if it ends), then a pattern.
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let k = n.min(self.0.len());
        let mut v = self.0[..k].to_vec();
        self.0 = &self.0[k..];
        v.extend((k..n).map(|i| (i * 31 + 7) as u8));
        v
    }
}

/// What the harness knows must happen, from the RFC.
#[derive(Default)]
struct Oracle {
    /// Application data of the records our side must accept, in order.
    must: Vec<u8>,
    /// Everything sealed as application data, in order (what our side hands
    /// on must be a prefix of it, whatever happened).
    sealed: Vec<u8>,
    /// A close_notify came before anything to refuse: a clean end.
    closed: bool,
    /// Something our side must refuse came (or the stream was cut): an
    /// error, after `must`.
    refused: bool,
    /// Garbage came whose fate the harness does not judge: from here on
    /// only the prefix property holds.
    unsure: bool,
    /// KeyUpdates asking for one among the records our side must accept.
    asked: usize,
    /// Records in a row without application data.
    quiet: u32,
}

impl Oracle {
    /// Whether the harness still knows what our side does with the next
    /// record.
    fn sure(&self) -> bool {
        !self.closed && !self.refused && !self.unsure
    }

    /// A record our side must accept; `data`: its application data.
    fn accept(&mut self, data: Option<&[u8]>) {
        if let Some(d) = data {
            self.sealed.extend_from_slice(d);
        }
        if !self.sure() {
            return;
        }
        match data {
            Some(d) if !d.is_empty() => self.quiet = 0,
            _ => self.quiet += 1,
        }
        if self.quiet > QUIET_RECORDS {
            self.refused = true;
        } else if let Some(d) = data {
            self.must.extend_from_slice(d);
        }
    }

    fn refuse(&mut self) {
        if self.sure() {
            self.refused = true;
        }
    }

    fn garbage(&mut self) {
        if self.sure() {
            self.unsure = true;
        }
    }
}

/// What the oracle knew at one point, but for what was sealed (which stays
/// sealed: a prefix is all that is asked of it).
struct Flags {
    must: usize,
    closed: bool,
    refused: bool,
    unsure: bool,
    asked: usize,
    quiet: u32,
}

impl Oracle {
    fn flags(&self) -> Flags {
        Flags {
            must: self.must.len(),
            closed: self.closed,
            refused: self.refused,
            unsure: self.unsure,
            asked: self.asked,
            quiet: self.quiet,
        }
    }
}

/// The record after what the oracle knew in `prev` was damaged: what was
/// known before it stands, and it is refused.
fn damaged(o: &mut Oracle, prev: Flags) {
    o.must.truncate(prev.must);
    o.closed = prev.closed;
    o.refused = prev.refused;
    o.unsure = prev.unsure;
    o.asked = prev.asked;
    o.quiet = prev.quiet;
    o.refuse();
}

/// A well-formed NewSessionTicket (RFC 8446 4.6.1).
fn ticket(inp: &mut Input) -> Vec<u8> {
    let nonce = inp.u8() as usize % 9;
    let tlen = 1 + inp.u8() as usize % 40;
    let mut body = inp.bytes(8);
    body.push(nonce as u8);
    body.extend(inp.bytes(nonce));
    body.extend_from_slice(&(tlen as u16).to_be_bytes());
    body.extend(inp.bytes(tlen));
    body.extend_from_slice(&[0, 0]);
    let mut m = vec![4, 0, (body.len() >> 8) as u8, body.len() as u8];
    m.extend(body);
    m
}

/// Our side's role, cipher suite and the secrets for it.
fn setup(
    b: u8,
) -> (
    bool,
    Suite,
    &'static aead::Algorithm,
    hkdf::Algorithm,
    usize,
) {
    let client = b & 1 == 0;
    let (suite, aead, hash, n) = match (b >> 1) % 3 {
        0 => (Suite::Aes256Gcm, &aead::AES_256_GCM, hkdf::HKDF_SHA384, 48),
        1 => (Suite::Aes128Gcm, &aead::AES_128_GCM, hkdf::HKDF_SHA256, 32),
        _ => (
            Suite::Chacha20Poly1305,
            &aead::CHACHA20_POLY1305,
            hkdf::HKDF_SHA256,
            32,
        ),
    };
    (client, suite, aead, hash, n)
}

const SIZES: [usize; 12] = [1, 2, 3, 5, 7, 13, 64, 1000, 4096, 16_389, 65_536, 1 << 20];

fn run(data: &[u8]) {
    let mut inp = Input(data);
    let (client, suite, aead, hash, n) = setup(inp.u8());
    let piece = SIZES[inp.u8() as usize % SIZES.len()];
    // Reads of 65,536 bytes or more open records in the reader's buffer
    // (`read_direct`); the top bit says whether the reads it makes without
    // waiting find the next piece or nothing.
    let r = inp.u8();
    let read_size = SIZES[(r & 0x7f) as usize % SIZES.len()].min(100_000);
    let nothing_now = r & 0x80 != 0;
    let client_secret: Vec<u8> = (0..n).map(|i| i as u8 ^ 0x5c).collect();
    let server_secret: Vec<u8> = (0..n).map(|i| i as u8 ^ 0x36).collect();
    let (peer_tx, peer_rx) = if client {
        (&server_secret, &client_secret)
    } else {
        (&client_secret, &server_secret)
    };
    let mut tx = Dir::new(aead, hash, peer_tx.clone());
    let mut o = Oracle::default();
    let mut wire = Vec::new();
    let mut ops = 0;
    // Where the last record sealed starts, and what the oracle knew before
    // it (for flips and cuts, which damage that record).
    let mut last: Option<(usize, Flags)> = None;
    while !inp.0.is_empty() && wire.len() < MAX_WIRE && ops < 2000 {
        ops += 1;
        let op = inp.u8();
        let before = (wire.len(), o.flags());
        // The low four bits choose what is sent, the high ones how.
        match (op & 0x0f) % 10 {
            // Application data, with padding.
            0 | 1 => {
                let len = if op & 0x80 != 0 {
                    inp.u16() % (MAX_PLAIN + 2)
                } else {
                    inp.u8() as usize % 64
                };
                let pad = if op & 0x40 != 0 { inp.u16() % 300 } else { 0 };
                let content = inp.bytes(len);
                let mut inner = content.clone();
                inner.push(APPLICATION_DATA);
                inner.resize(inner.len() + pad, 0);
                if inner.len() + TAG > MAX_PLAIN + 256 {
                    // Not a record the harness may send: too long for its
                    // header's limit (our side's refusal of that is
                    // checked by the raw records below).
                    continue;
                }
                tx.seal(APPLICATION_DATA, [3, 3], &inner, &mut wire);
                if inner.len() > MAX_PLAIN + 1 {
                    o.sealed.extend_from_slice(&content);
                    o.refuse();
                } else {
                    o.accept(Some(&content));
                }
            }
            // A KeyUpdate, which the harness then follows.
            2 => {
                let asked = op & 0x80 != 0;
                let inner = [24, 0, 0, 1, asked as u8, HANDSHAKE];
                tx.seal(APPLICATION_DATA, [3, 3], &inner, &mut wire);
                o.accept(None);
                if o.sure() && asked {
                    o.asked += 1;
                }
                tx.update();
            }
            // Session tickets: whole, several in one record, or one split
            // over two records in a row.
            3 => {
                let count = 1 + (op >> 4 & 3) as usize % 3;
                let mut msgs = Vec::new();
                for _ in 0..count {
                    msgs.extend(ticket(&mut inp));
                }
                let split = if op & 0x80 != 0 {
                    1 + inp.u8() as usize % (msgs.len() - 1)
                } else {
                    msgs.len()
                };
                for part in [&msgs[..split], &msgs[split..]] {
                    if part.is_empty() {
                        continue;
                    }
                    let mut inner = part.to_vec();
                    inner.push(HANDSHAKE);
                    tx.seal(APPLICATION_DATA, [3, 3], &inner, &mut wire);
                    // Only a server sends tickets.
                    if client {
                        o.accept(None);
                    } else {
                        o.refuse();
                    }
                }
            }
            // An alert.
            4 => {
                let level = 1 + (op >> 7);
                let desc = inp.u8();
                tx.seal(APPLICATION_DATA, [3, 3], &[level, desc, ALERT], &mut wire);
                match (level, desc) {
                    (_, 0) if o.sure() => o.closed = true,
                    (1, 90) => o.accept(None),
                    _ => o.refuse(),
                }
            }
            // A record of any outer type and version, inner content type
            // and padding, with content from the input.
            5 => {
                let outer = if op & 0x80 != 0 {
                    inp.u8()
                } else {
                    APPLICATION_DATA
                };
                let version = if op & 0x40 != 0 {
                    [inp.u8(), inp.u8()]
                } else {
                    [3, 3]
                };
                let kind = inp.u8();
                let len = inp.u16() % (MAX_PLAIN + 1);
                let pad = inp.u8() as usize;
                let content = inp.bytes(len);
                let mut inner = content.clone();
                inner.push(kind);
                inner.resize(inner.len() + pad, 0);
                if inner.len() + TAG > MAX_PLAIN + 256 {
                    continue;
                }
                tx.seal(outer, version, &inner, &mut wire);
                // The content type is the last byte that is not zero (with
                // kind 0, one of the content's): RFC 8446 5.4.
                let real = inner.iter().rposition(|&b| b != 0);
                let data = match real {
                    Some(end) if inner[end] == APPLICATION_DATA => Some(&inner[..end]),
                    _ => None,
                };
                if let Some(d) = data {
                    o.sealed.extend_from_slice(d);
                }
                if outer != APPLICATION_DATA || inner.len() > MAX_PLAIN + 1 {
                    o.refuse();
                } else {
                    match real.map(|end| inner[end]) {
                        // The version is not checked by anyone but the AEAD,
                        // which covers it: sealed under it, it opens.
                        Some(APPLICATION_DATA) => {
                            // (Already in `sealed`.)
                            let d = data.unwrap_or_default();
                            let n = o.sealed.len();
                            o.accept(Some(d));
                            o.sealed.truncate(n);
                        }
                        // Whatever the content says.
                        Some(ALERT | HANDSHAKE) => o.garbage(),
                        // Only padding, change_cipher_spec, or a type that
                        // does not exist.
                        _ => o.refuse(),
                    }
                }
            }
            // Raw bytes, sealed by nobody.
            6 => {
                let len = 1 + inp.u8() as usize % 64;
                wire.extend(inp.bytes(len));
                o.garbage();
            }
            // A bit of the last record flipped (header or body): whatever
            // it becomes, it cannot be opened, nor can what follows.
            7 => {
                if let Some((start, prev)) = last.take() {
                    let at = start + inp.u16() % (wire.len() - start);
                    wire[at] ^= 1 << (inp.u8() % 8);
                    damaged(&mut o, prev);
                }
                continue;
            }
            // Cut: the stream ends here, within the last record.
            8 => {
                if let Some((start, prev)) = last.take() {
                    let cut = 1 + inp.u8() as usize % (wire.len() - start);
                    wire.truncate(wire.len() - cut);
                    damaged(&mut o, prev);
                }
                break;
            }
            // A header announcing more than a record may hold, and a body.
            _ => {
                let len = MAX_PLAIN + 257 + inp.u16() % 3000;
                wire.extend_from_slice(&[APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8]);
                let n = inp.u8() as usize;
                wire.extend(inp.bytes(n));
                o.refuse();
            }
        }
        // Ops 0-5 seal records; 6 and 9 do not (7 and 8 `continue`).
        last = ((op & 0x0f) % 10 <= 5).then_some(before);
    }
    if !o.closed && !o.refused && !o.unsure {
        // Without close_notify the end is an error too.
        o.refused = true;
    }

    let state = Rc::new(RefCell::new(WireState {
        incoming: wire,
        at: 0,
        piece,
        sent: Vec::new(),
        recvs: 0,
        nothing_now,
    }));
    let mut ours = TlsStream::with_secrets(
        Wire(state.clone()),
        suite,
        &client_secret,
        &server_secret,
        client,
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; read_size];
    let mut reads = 0;
    let end = loop {
        reads += 1;
        assert!(reads < 2_000_000, "reads without end");
        match ours.read(&mut buf) {
            Ok(0) => break None,
            Ok(k) => got.extend_from_slice(&buf[..k]),
            Err(e) => break Some(e.to_string()),
        }
    };

    if std::env::var_os("FXFER_FUZZ_DEBUG").is_some() {
        eprintln!(
            "client {client}, {suite:?}, pieces of {piece}, reads of {read_size}: handed on {} \
             bytes (must {}, sealed {}), end {end:?}; closed {} refused {} unsure {}, \
             {} key updates asked for",
            got.len(),
            o.must.len(),
            o.sealed.len(),
            o.closed,
            o.refused,
            o.unsure,
            o.asked
        );
    }
    // Every byte handed on was sealed, in order.
    assert!(
        o.sealed.starts_with(&got),
        "bytes handed on that were not sealed so"
    );
    if o.unsure {
        assert!(got.starts_with(&o.must), "legal data before garbage lost");
    } else {
        assert_eq!(got.len(), o.must.len(), "not exactly the legal data");
        assert_eq!(got, o.must);
        assert_eq!(end.is_none(), o.closed, "end: {end:?}");
    }
    // An end stays an end, an error stays the same error.
    match (&end, ours.read(&mut buf)) {
        (None, Ok(0)) => {}
        (Some(e), Err(again)) => assert_eq!(*e, again.to_string()),
        (_, other) => panic!("after {end:?}: {other:?}"),
    }
    if let Some(e) = &end {
        assert!(e.starts_with("TLS: ") || e.contains("close_notify"), "{e}");
        assert!(!e.contains('\n'));
    }
    // After an error nothing can be sent; after a close_notify our side
    // may still send (a half-close).
    let sent_after = ours.send(b"after");
    let cut_off = end
        .as_ref()
        .is_some_and(|e| e.contains("without a TLS close_notify"));
    if !cut_off {
        assert_eq!(sent_after.is_ok(), end.is_none(), "{sent_after:?}");
    }

    // What our side sent opens under its keys, following its key updates.
    let sent = std::mem::take(&mut state.borrow_mut().sent);
    let mut rx = Dir::new(aead, hash, peer_rx.clone());
    let mut at = 0;
    let mut answers = 0;
    let mut fatal = false;
    let mut data = Vec::new();
    while at < sent.len() {
        assert!(!fatal, "sent after a fatal alert");
        let len = u16::from_be_bytes([sent[at + 3], sent[at + 4]]) as usize;
        assert_eq!(sent[at..at + 3], [APPLICATION_DATA, 3, 3]);
        let rec = &sent[at..at + 5 + len];
        at += 5 + len;
        let (kind, content) = rx.open(rec).expect("a record our side sealed opens");
        match (kind, &content[..]) {
            (HANDSHAKE, [24, 0, 0, 1, 0]) => {
                answers += 1;
                rx.update();
            }
            (ALERT, [2, _]) => fatal = true,
            (APPLICATION_DATA, d) => data.extend_from_slice(d),
            other => panic!("our side sent {other:?}"),
        }
    }
    assert_eq!(
        data,
        if sent_after.is_ok() {
            &b"after"[..]
        } else {
            b""
        }
    );
    if !o.unsure {
        assert_eq!(answers, o.asked, "key updates asked for and answered");
    }
}

fuzz_target!(init: ALLOC.from_env(), |data: &[u8]| {
    run(data);
    fxfer_fuzz::report_peak(&ALLOC);
});
