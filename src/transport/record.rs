//! The TLS 1.3 record layer (RFC 8446 section 5) once the handshake is
//! done: sealing and opening application data records with ring's AEAD,
//! key updates (section 4.6.3), alerts and the post-handshake messages a
//! peer may send.
//!
//! rustls runs the handshake; then [`super::TlsStream`] takes its traffic
//! keys (`dangerous_extract_secrets`, made for kernel TLS, which this
//! kernel lacks) and moves records itself. Measured on small files (2,000
//! x 8 KiB over one connection), rustls's buffered record layer cost as
//! much CPU as the ciphers themselves: it copies each record three times
//! on the way in (socket bytes into its deframer, 4 KiB a call; the
//! decrypted record into a fresh `Vec`; that into the reader's buffer)
//! and allocates each outgoing record. Here a record is opened in place
//! in the buffer the socket filled and sealed in place in the buffer the
//! socket is written from. rustls's unbuffered API would do the same, but
//! in rustls 0.23 it has no TLS exporter, which token authentication's
//! channel binding needs.

use std::fmt;
use std::ops::Range;
use std::sync::Mutex;

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf::{self, KeyType as _};
use rustls::ConnectionTrafficSecrets;

/// A record's header: type, legacy version (3, 3), length.
pub const HEADER: usize = 5;
/// The AEAD tag after each record's ciphertext.
pub const TAG: usize = 16;
/// The most plaintext one record carries (2^14 bytes).
pub const MAX_PLAIN: usize = 16 * 1024;
/// The longest record body a peer may send: 2^14 + 256 (RFC 8446 5.2).
pub const MAX_BODY: usize = MAX_PLAIN + 256;

pub const APPLICATION_DATA: u8 = 0x17;
pub const HANDSHAKE: u8 = 0x16;
pub const ALERT: u8 = 0x15;
const KEY_UPDATE: u8 = 24;
const NEW_SESSION_TICKET: u8 = 4;
/// Post-handshake handshake messages are short; a longer one is refused.
const MAX_MESSAGE: usize = 64 * 1024;

/// Alert descriptions we send (RFC 8446 6).
pub const CLOSE_NOTIFY: u8 = 0;
pub const UNEXPECTED_MESSAGE: u8 = 10;
pub const BAD_RECORD_MAC: u8 = 20;
pub const RECORD_OVERFLOW: u8 = 22;
pub const ILLEGAL_PARAMETER: u8 = 47;
pub const DECODE_ERROR: u8 = 50;

/// The traffic secrets rustls derives for one connection, caught through
/// its key log: key updates derive the next keys from them.
#[derive(Default)]
pub struct TrafficSecrets(Mutex<[Option<Vec<u8>>; 2]>);

const CLIENT_SECRET: &str = "CLIENT_TRAFFIC_SECRET_0";
const SERVER_SECRET: &str = "SERVER_TRAFFIC_SECRET_0";

impl TrafficSecrets {
    /// The client's and the server's first application traffic secrets.
    fn take(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Some((s[0].take()?, s[1].take()?))
    }
}

impl fmt::Debug for TrafficSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TrafficSecrets(..)")
    }
}

impl rustls::KeyLog for TrafficSecrets {
    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        let i = match label {
            CLIENT_SECRET => 0,
            SERVER_SECRET => 1,
            _ => return,
        };
        self.0.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(secret.to_vec());
    }

    fn will_log(&self, label: &str) -> bool {
        label == CLIENT_SECRET || label == SERVER_SECRET
    }
}

/// One direction of a connection: its traffic secret, the key and IV
/// derived from it, and the sequence number of the next record.
pub struct Direction {
    aead: &'static aead::Algorithm,
    hash: hkdf::Algorithm,
    secret: Vec<u8>,
    key: LessSafeKey,
    iv: [u8; 12],
    seq: u64,
    /// Records after which we change our sending keys (a key update)
    /// before the cipher's confidentiality limit.
    rekey_at: u64,
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label(secret, label, "", out.len()) (RFC 8446 7.1).
fn expand_label(hash: hkdf::Algorithm, secret: &[u8], label: &[u8], out: &mut [u8]) {
    let len = (out.len() as u16).to_be_bytes();
    let label_len = [(6 + label.len()) as u8];
    let info = [&len[..], &label_len[..], b"tls13 ", label, &[0u8][..]];
    hkdf::Prk::new_less_safe(hash, secret)
        .expand(&info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .expect("TLS key lengths are within HKDF's limits");
}

/// Why a connection's keys could not be taken over from rustls.
pub fn takeover_error(what: &str) -> std::io::Error {
    std::io::Error::other(format!(
        "TLS: cannot take over the connection's keys: {what}"
    ))
}

/// The TLS 1.3 cipher suites the record layer speaks (RFC 8446 B.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

impl Suite {
    fn algorithms(self) -> (&'static aead::Algorithm, hkdf::Algorithm) {
        match self {
            Suite::Aes128Gcm => (&aead::AES_128_GCM, hkdf::HKDF_SHA256),
            Suite::Aes256Gcm => (&aead::AES_256_GCM, hkdf::HKDF_SHA384),
            Suite::Chacha20Poly1305 => (&aead::CHACHA20_POLY1305, hkdf::HKDF_SHA256),
        }
    }
}

impl Direction {
    /// This direction's keys from rustls's extracted ones and the traffic
    /// secret they came from (checked: the key and IV must derive from it).
    fn new(secrets: ConnectionTrafficSecrets, seq: u64, secret: Vec<u8>) -> std::io::Result<Self> {
        let (suite, key, iv) = match &secrets {
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (Suite::Aes256Gcm, key, iv),
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (Suite::Aes128Gcm, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (Suite::Chacha20Poly1305, key, iv)
            }
            _ => return Err(takeover_error("unknown cipher suite")),
        };
        let (d, derived) = Direction::from_secret(suite, secret, seq)?;
        if derived[..d.aead.key_len()] != *key.as_ref() || d.iv[..] != *iv.as_ref() {
            return Err(takeover_error("the key log does not match the keys"));
        }
        Ok(d)
    }

    /// This direction's keys derived from its traffic secret, the next
    /// record's sequence number `seq` (and the key's bytes, for the check
    /// above).
    fn from_secret(suite: Suite, secret: Vec<u8>, seq: u64) -> std::io::Result<(Self, [u8; 32])> {
        let (aead, hash) = suite.algorithms();
        let limit = match suite {
            // RFC 8446 5.5: AES-GCM keys are good for 2^24.5 full records;
            // rustls changes keys at 2^24 less a margin. Half that here.
            Suite::Chacha20Poly1305 => u64::MAX,
            _ => 1 << 23,
        };
        let mut d = Direction {
            aead,
            hash,
            secret,
            // Replaced by `derive` below.
            key: LessSafeKey::new(
                UnboundKey::new(aead, &[0u8; 32][..aead.key_len()])
                    .map_err(|_| takeover_error("bad key length"))?,
            ),
            iv: [0; 12],
            seq,
            rekey_at: limit,
        };
        let derived = d.derive()?;
        Ok((d, derived))
    }

    /// Derives the key and IV from the traffic secret (the key's bytes are
    /// returned for the check above).
    fn derive(&mut self) -> std::io::Result<[u8; 32]> {
        if self.secret.len() != self.hash.len() {
            return Err(takeover_error("traffic secret of the wrong length"));
        }
        let mut raw = [0u8; 32];
        let key = &mut raw[..self.aead.key_len()];
        expand_label(self.hash, &self.secret, b"key", key);
        expand_label(self.hash, &self.secret, b"iv", &mut self.iv);
        self.key = LessSafeKey::new(
            UnboundKey::new(self.aead, key).map_err(|_| takeover_error("bad key length"))?,
        );
        Ok(raw)
    }

    /// The next traffic secret, keys and IV; the sequence starts over.
    pub fn update(&mut self) {
        let mut next = vec![0u8; self.secret.len()];
        expand_label(self.hash, &self.secret, b"traffic upd", &mut next);
        self.secret = next;
        self.derive().expect("same lengths as before");
        self.seq = 0;
    }

    fn nonce(&mut self) -> Nonce {
        let mut n = self.iv;
        for (b, s) in n[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *b ^= s;
        }
        self.seq += 1;
        Nonce::assume_unique_for_key(n)
    }

    /// Whether our sending keys are due for a change.
    pub fn worn(&self) -> bool {
        self.seq >= self.rekey_at
    }

    /// Appends to `out` one record carrying `data` (at most [`MAX_PLAIN`]
    /// bytes) as content `kind`, sealed.
    pub fn seal(&mut self, kind: u8, data: &[u8], out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(&[0; HEADER]);
        out.extend_from_slice(data);
        out.extend_from_slice(&[0; 1 + TAG]);
        self.seal_laid_out(kind, &mut out[at..]);
    }

    /// Seals the record laid out in `rec`: room for the header, the
    /// content, room for the content type and the tag.
    pub fn seal_laid_out(&mut self, kind: u8, rec: &mut [u8]) {
        let content = rec.len() - HEADER - 1 - TAG;
        debug_assert!(content <= MAX_PLAIN);
        let body = content + 1 + TAG;
        let header = [APPLICATION_DATA, 3, 3, (body >> 8) as u8, body as u8];
        rec[..HEADER].copy_from_slice(&header);
        rec[HEADER + content] = kind;
        let nonce = self.nonce();
        let (sealed, tag) = rec[HEADER..].split_at_mut(content + 1);
        let t = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(header), sealed)
            .expect("a record is far below the AEAD's limit");
        tag.copy_from_slice(t.as_ref());
    }

    /// For tests: seals `inner` as it is (content, type, padding) in a
    /// record of outer type `outer`.
    #[cfg(test)]
    pub fn seal_inner(&mut self, outer: u8, inner: &[u8], out: &mut Vec<u8>) {
        let body = inner.len() + TAG;
        let header = [outer, 3, 3, (body >> 8) as u8, body as u8];
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

    /// Opens the record at `buf[at..at + len]` (header and body), writing
    /// its content from `buf[to]` on (`to` at most `at + HEADER`: in place,
    /// or moved down over what came before it, in the same pass): its
    /// content type and where its content now lies.
    pub fn open(
        &mut self,
        buf: &mut [u8],
        to: usize,
        at: usize,
        len: usize,
    ) -> Result<(u8, Range<usize>), u8> {
        let mut header = [0u8; HEADER];
        header.copy_from_slice(&buf[at..at + HEADER]);
        let nonce = self.nonce();
        let plain = self
            .key
            .open_within(
                nonce,
                Aad::from(header),
                &mut buf[to..at + len],
                at + HEADER - to..,
            )
            .map_err(|_| BAD_RECORD_MAC)?;
        // Content, its type and padding: at most 2^14 + 1 bytes in all
        // (RFC 8446 5.4), whatever the ciphertext's own limit allows.
        if plain.len() > MAX_PLAIN + 1 {
            return Err(RECORD_OVERFLOW);
        }
        // The content type is the last byte that is not padding.
        let Some(end) = plain.iter().rposition(|&b| b != 0) else {
            return Err(UNEXPECTED_MESSAGE);
        };
        Ok((plain[end], to..to + end))
    }
}

/// Both directions, as a side of the connection sees them.
pub struct Keys {
    pub tx: Direction,
    pub rx: Direction,
}

impl Keys {
    /// Takes over from rustls after its handshake: `secrets` are its
    /// extracted keys, `log` the traffic secrets its key log caught.
    pub fn new(
        secrets: rustls::ExtractedSecrets,
        log: &TrafficSecrets,
        client: bool,
    ) -> std::io::Result<Keys> {
        let (c, s) = log
            .take()
            .ok_or_else(|| takeover_error("the key log caught no traffic secrets"))?;
        let (mine, theirs) = if client { (c, s) } else { (s, c) };
        let (tx_seq, tx) = secrets.tx;
        let (rx_seq, rx) = secrets.rx;
        Ok(Keys {
            tx: Direction::new(tx, tx_seq, mine)?,
            rx: Direction::new(rx, rx_seq, theirs)?,
        })
    }

    /// Keys from the two traffic secrets (the client's, the server's) of a
    /// handshake that happened elsewhere, both sequences at 0: for tests
    /// and the fuzzer, which play the peer.
    pub fn from_secrets(
        suite: Suite,
        client_secret: &[u8],
        server_secret: &[u8],
        client: bool,
    ) -> std::io::Result<Keys> {
        let (mine, theirs) = if client {
            (client_secret, server_secret)
        } else {
            (server_secret, client_secret)
        };
        Ok(Keys {
            tx: Direction::from_secret(suite, mine.to_vec(), 0)?.0,
            rx: Direction::from_secret(suite, theirs.to_vec(), 0)?.0,
        })
    }

    /// For tests: change sending keys after `n` records.
    #[cfg(test)]
    pub fn rekey_every(&mut self, n: u64) {
        self.tx.rekey_at = n;
    }
}

/// A KeyUpdate message (RFC 8446 4.6.3).
pub fn key_update(request: bool) -> [u8; 5] {
    [KEY_UPDATE, 0, 0, 1, request as u8]
}

/// What a post-handshake handshake message asks of us.
#[derive(Debug, PartialEq, Eq)]
pub enum PostHandshake {
    /// Nothing (a session ticket, which we never use).
    Nothing,
    /// The peer changed its keys; `true`: change ours too.
    KeyUpdate(bool),
}

/// Handshake messages that arrived after the handshake, possibly split
/// over records; whole ones are taken off the front.
#[derive(Default)]
pub struct Messages(Vec<u8>);

impl Messages {
    pub fn add(&mut self, data: &[u8]) -> Result<(), u8> {
        if self.0.len() + data.len() > MAX_MESSAGE + 4 {
            return Err(UNEXPECTED_MESSAGE);
        }
        self.0.extend_from_slice(data);
        Ok(())
    }

    /// Whether a message is partly there (a key change must not split one).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The next whole message's meaning, if one is there. `client`: which
    /// side we are (only a server sends session tickets).
    pub fn next(&mut self, client: bool) -> Option<Result<PostHandshake, u8>> {
        if self.0.len() < 4 {
            return None;
        }
        let len = u32::from_be_bytes([0, self.0[1], self.0[2], self.0[3]]) as usize;
        if len > MAX_MESSAGE {
            return Some(Err(UNEXPECTED_MESSAGE));
        }
        if self.0.len() < 4 + len {
            return None;
        }
        let kind = self.0[0];
        let body: Vec<u8> = self.0.drain(..4 + len).skip(4).collect();
        Some(match (kind, &body[..]) {
            (KEY_UPDATE, [0]) => Ok(PostHandshake::KeyUpdate(false)),
            (KEY_UPDATE, [1]) => Ok(PostHandshake::KeyUpdate(true)),
            // RFC 8446 4.6.3: any other value is an illegal parameter.
            (KEY_UPDATE, [_]) => Err(ILLEGAL_PARAMETER),
            (KEY_UPDATE, _) => Err(DECODE_ERROR),
            (NEW_SESSION_TICKET, t) if client => match well_formed_ticket(t) {
                Some(()) => Ok(PostHandshake::Nothing),
                None => Err(DECODE_ERROR),
            },
            _ => Err(UNEXPECTED_MESSAGE),
        })
    }
}

/// Whether `b` is a NewSessionTicket's body (RFC 8446 4.6.1): lifetime,
/// age_add, `ticket_nonce<0..255>`, `ticket<1..2^16-1>`,
/// `extensions<0..2^16-2>`, and nothing after. We never use a ticket, but
/// one that cannot be decoded is the peer's error all the same (6.2).
fn well_formed_ticket(b: &[u8]) -> Option<()> {
    fn vec16(b: &[u8]) -> Option<(&[u8], &[u8])> {
        let n = u16::from_be_bytes([*b.first()?, *b.get(1)?]) as usize;
        let rest = &b[2..];
        Some((rest.get(..n)?, &rest[n..]))
    }
    let (&nonce, rest) = b.get(8..)?.split_first()?;
    let (ticket, rest) = vec16(rest.get(nonce as usize..)?)?;
    let (_extensions, rest) = vec16(rest)?;
    (!ticket.is_empty() && rest.is_empty()).then_some(())
}

/// The length of the whole record at the front of `buf`, if it is all
/// there; a header claiming more than any record may hold counts as whole
/// at once, so that whoever reads it refuses it rather than waiting.
pub fn whole_record(buf: &[u8]) -> Option<usize> {
    if buf.len() < HEADER {
        return None;
    }
    let len = u16::from_be_bytes([buf[3], buf[4]]) as usize;
    if len > MAX_BODY {
        return Some(HEADER);
    }
    (buf.len() >= HEADER + len).then_some(HEADER + len)
}

/// A readable name for an alert description.
pub fn alert_name(desc: u8) -> String {
    format!("{:?}", rustls::AlertDescription::from(desc))
}
