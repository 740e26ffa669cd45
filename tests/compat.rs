//! Older clients against the real server. Versions 3 to 5 speak no TLS: a
//! server run with `--plaintext` answers each in its own version (its
//! entry and FILE layouts, its requests, its token proofs); a TLS server
//! refuses them, in the clear, with ERROR 6. The clients here are written
//! from the older versions' rules with raw bytes, not with fxfer's own
//! encoders, so a change to those cannot hide a change on the wire.

use crate::util::*;
use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const AUTH_CHALLENGE: u8 = 0x86;
const AUTH_OK: u8 = 0x87;
const ENTRIES: u8 = 0x81;
const LIST_END: u8 = 0x82;
const FILE: u8 = 0x83;
const DATA: u8 = 0x84;
const END: u8 = 0x85;
const ERROR: u8 = 0xEE;

fn greeting(version: u16) -> Vec<u8> {
    let mut v = b"FXFR".to_vec();
    v.extend_from_slice(&version.to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v
}

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![kind];
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn str16(s: &str) -> Vec<u8> {
    let mut v = (s.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v
}

/// What a version 6 server answers a connection it refuses: its greeting,
/// one ERROR frame with `code` and `message`, then the end of its sending
/// side, reading (and dropping) what the client still sends.
fn refuse_in_6(c: &mut TcpStream, code: u16, message: &str) {
    let mut p = code.to_be_bytes().to_vec();
    p.extend(str16(message));
    let mut answer = greeting(6);
    answer.extend(frame(ERROR, &p));
    let _ = c.write_all(&answer);
    let _ = c.shutdown(Shutdown::Write);
    let _ = std::io::copy(c, &mut std::io::sink());
}

fn list(path: &str, flags: u8) -> Vec<u8> {
    let mut p = str16(path);
    p.push(flags);
    frame(0x01, &p)
}

/// A GET: from `offset`, with the stamp (size, mtime, nanos) as
/// if-unchanged and a range length when given.
fn get(path: &str, offset: u64, stamp: Option<(u64, i64, u32)>, len: Option<u64>) -> Vec<u8> {
    let mut p = str16(path);
    p.extend_from_slice(&offset.to_be_bytes());
    p.push(u8::from(stamp.is_some()) | if len.is_some() { 2 } else { 0 });
    if let Some((size, mtime, nanos)) = stamp {
        p.extend_from_slice(&size.to_be_bytes());
        p.extend_from_slice(&mtime.to_be_bytes());
        p.extend_from_slice(&nanos.to_be_bytes());
    }
    if let Some(n) = len {
        p.extend_from_slice(&n.to_be_bytes());
    }
    frame(0x02, &p)
}

const QUIT: [u8; 5] = [0x03, 0, 0, 0, 0];

/// A payload read field by field; every read is checked against its end.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        assert!(self.0.len() >= n, "payload ends early");
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.take(2).try_into().unwrap())
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take(4).try_into().unwrap())
    }
    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.take(8).try_into().unwrap())
    }
    fn str16(&mut self) -> String {
        let n = self.u16() as usize;
        String::from_utf8(self.take(n).to_vec()).unwrap()
    }
    fn done(&self) {
        assert!(self.0.is_empty(), "{} bytes left over", self.0.len());
    }
}

/// One listing entry as an older client decodes it.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    kind: u8,
    size: u64,
    stamp: (u64, i64, u32),
    /// Version 5 on: permission bits and the digest (when asked for).
    mode: Option<u16>,
    digest: Option<Vec<u8>>,
    path: String,
}

/// The answer to one GET.
struct Got {
    size: u64,
    offset: u64,
    /// Version 5 on.
    mode: Option<u16>,
    body: Vec<u8>,
    /// END's algorithm and digest.
    alg: u8,
    digest: Vec<u8>,
}

/// A hand-written client of one older version, over plain TCP (or, for
/// version 6, inside TLS).
struct Old {
    version: u16,
    r: BufReader<Stream>,
}

impl Old {
    /// Connects, sends the greeting and `then` in one write, and checks
    /// the server's greeting: the same version, flags `flags`.
    fn open(s: &Server, version: u16, then: &[u8], flags: u16) -> Old {
        let (old, hello) = Old::connect(s, version, then);
        let mut want = greeting(version);
        want[6..].copy_from_slice(&flags.to_be_bytes());
        assert_eq!(hello, want, "the server answers in version {version}");
        old
    }

    /// Connects, sends the greeting and `then` in one write, and returns
    /// the server's greeting, whatever it is.
    fn connect(s: &Server, version: u16, then: &[u8]) -> (Old, Vec<u8>) {
        let c = s.tcp();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Old::greet(Stream::plain(c), version, then)
    }

    /// As [`Old::open`], over whatever the server speaks: TLS unless it
    /// runs --plaintext (a version 6 client's way).
    fn open_any(s: &Server, version: u16, then: &[u8]) -> Old {
        let (old, hello) = Old::greet(s.connect(), version, then);
        assert_eq!(
            hello,
            greeting(version),
            "the server answers in version {version}"
        );
        old
    }

    fn greet(mut c: Stream, version: u16, then: &[u8]) -> (Old, Vec<u8>) {
        let mut ask = greeting(version);
        ask.extend_from_slice(then);
        c.write_all(&ask).unwrap();
        let mut old = Old {
            version,
            r: BufReader::new(c),
        };
        let mut hello = [0u8; 8];
        old.r.read_exact(&mut hello).unwrap();
        (old, hello.to_vec())
    }

    fn send(&mut self, bytes: &[u8]) {
        self.r.get_mut().write_all(bytes).unwrap();
    }

    /// The next frame, payload read whole (DATA included: files are small).
    fn frame(&mut self) -> (u8, Vec<u8>) {
        let mut h = [0u8; 5];
        self.r.read_exact(&mut h).unwrap();
        let len = u32::from_be_bytes(h[1..].try_into().unwrap()) as usize;
        let mut p = vec![0u8; len];
        self.r.read_exact(&mut p).unwrap();
        (h[0], p)
    }

    /// The connection ends here: nothing more, then end of stream.
    fn closed(&mut self) {
        let mut rest = Vec::new();
        self.r.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "{} more bytes", rest.len());
    }

    /// An ERROR frame: (code, message).
    fn error(&mut self) -> (u16, String) {
        let (kind, p) = self.frame();
        assert_eq!(kind, ERROR, "expected ERROR, got 0x{kind:02x}");
        let mut f = Fields(&p);
        let code = f.u16();
        let msg = f.str16();
        f.done();
        (code, msg)
    }

    /// A whole listing, checked against its LIST_END count.
    fn listing(&mut self) -> Vec<Entry> {
        let mut out = Vec::new();
        loop {
            let (kind, p) = self.frame();
            let mut f = Fields(&p);
            match kind {
                ENTRIES => {
                    let n = f.u16();
                    assert!(n > 0, "an empty ENTRIES frame");
                    for _ in 0..n {
                        let kind = f.u8();
                        let size = f.u64();
                        let mtime = f.u64() as i64;
                        let nanos = f.u32();
                        let (mode, digest) = if self.version >= 5 {
                            let mode = f.u16();
                            let d = f.u8() as usize;
                            (Some(mode), (d > 0).then(|| f.take(d).to_vec()))
                        } else {
                            (None, None)
                        };
                        let path = f.str16();
                        out.push(Entry {
                            kind,
                            size,
                            stamp: (size, mtime, nanos),
                            mode,
                            digest,
                            path,
                        });
                    }
                }
                LIST_END => {
                    assert_eq!(f.u64(), out.len() as u64, "LIST_END count");
                    f.done();
                    return out;
                }
                other => panic!("0x{other:02x} in a listing: {p:?}"),
            }
            f.done();
        }
    }

    /// The answer to a GET: its FILE header, bytes and END.
    fn file(&mut self) -> Got {
        let (kind, p) = self.frame();
        assert_eq!(
            kind,
            FILE,
            "expected FILE: {:?}",
            String::from_utf8_lossy(&p)
        );
        let mut f = Fields(&p);
        let size = f.u64();
        let offset = f.u64();
        let _mtime = f.u64();
        assert!(f.u32() < 1_000_000_000);
        let mode = (self.version >= 5).then(|| f.u16());
        f.done();
        let mut body = Vec::new();
        loop {
            let (kind, p) = self.frame();
            match kind {
                DATA => {
                    assert!(!p.is_empty(), "an empty DATA frame");
                    body.extend_from_slice(&p);
                }
                END => {
                    let mut f = Fields(&p);
                    let alg = f.u8();
                    let n = f.u8() as usize;
                    let digest = f.take(n).to_vec();
                    f.done();
                    return Got {
                        size,
                        offset,
                        mode,
                        body,
                        alg,
                        digest,
                    };
                }
                other => panic!("0x{other:02x} in a file"),
            }
        }
    }
}

fn files(h: &std::path::Path) {
    write(h, "a.txt", b"hello");
    write(h, "empty", b"");
    write(h, "big.bin", &bytes(7, 3 << 20 | 517));
    write(h, "sub/deep/c.md", &bytes(8, 40_000));
    write(h, ".hidden", b"never listed");
}

/// What `files` put there, by path.
fn expected() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("a.txt", b"hello".to_vec()),
        ("big.bin", bytes(7, 3 << 20 | 517)),
        ("empty", Vec::new()),
        ("sub/deep/c.md", bytes(8, 40_000)),
    ]
}

fn plain_server() -> Server {
    Server::builder().files(files).plaintext().start()
}

#[test]
fn a_version_3_client_lists_and_downloads_byte_exact_from_a_plaintext_server() {
    let s = plain_server();
    // The whole session pipelined in one write, as a v3 client may.
    let mut ask = list("", 0x01);
    for (name, _) in expected() {
        ask.extend(get(name, 0, None, None));
    }
    ask.extend_from_slice(&QUIT);
    let mut c = Old::open(&s, 3, &ask, 0);
    let listing = c.listing();
    let paths: Vec<&str> = listing.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "a.txt",
            "big.bin",
            "empty",
            "sub",
            "sub/deep",
            "sub/deep/c.md"
        ]
    );
    for e in &listing {
        // Version 3 entries: 23 + n bytes, no mode, no digest.
        assert_eq!((e.mode, e.digest.clone()), (None, None));
        let want = expected().into_iter().find(|(n, _)| *n == e.path);
        match want {
            Some((_, data)) => assert_eq!((e.kind, e.size), (1, data.len() as u64)),
            None => assert_eq!((e.kind, e.size), (2, 0), "{}", e.path),
        }
    }
    for (name, data) in expected() {
        let f = c.file();
        assert_eq!(
            (f.size, f.offset, f.mode),
            (data.len() as u64, 0, None),
            "{name}"
        );
        assert!(f.body == data, "{name}: the bytes differ");
        assert_eq!(f.alg, 1, "{name}: BLAKE3 of the whole file");
        assert_eq!(f.digest, blake3::hash(&data).as_bytes().to_vec(), "{name}");
    }
    c.closed();
    assert!(s
        .wait_log("connected (protocol v3)")
        .contains("connected (protocol v3)"));

    // A resume from the listing's stamp: the tail, and the whole file's
    // digest.
    let big = listing.iter().find(|e| e.path == "big.bin").unwrap();
    let mut ask = get("big.bin", 1 << 20, Some(big.stamp), None);
    ask.extend_from_slice(&QUIT);
    let mut c = Old::open(&s, 3, &ask, 0);
    let f = c.file();
    let data = bytes(7, 3 << 20 | 517);
    assert_eq!((f.size, f.offset), (data.len() as u64, 1 << 20));
    assert!(f.body == data[1 << 20..]);
    assert_eq!(
        (f.alg, f.digest),
        (1, blake3::hash(&data).as_bytes().to_vec())
    );
    c.closed();

    // What version 3 did not have is refused as version 3 refused it: a
    // LIST of a file ("not a folder", the connection kept)...
    let mut ask = list("a.txt", 0);
    ask.extend(list("", 0));
    ask.extend_from_slice(&QUIT);
    let mut c = Old::open(&s, 3, &ask, 0);
    let (code, msg) = c.error();
    assert_eq!((code, msg.as_str()), (2, "not a folder"));
    assert_eq!(c.listing().len(), 4);
    c.closed();
    // ... and the digests flag or a ranged GET (malformed: closed).
    for (ask, what) in [
        (list("", 0x02), "unknown flags 0x02"),
        (get("big.bin", 0, None, Some(1024)), "unknown flags 0x02"),
    ] {
        let mut c = Old::open(&s, 3, &ask, 0);
        let (code, msg) = c.error();
        assert_eq!(code, 5, "{msg}");
        assert!(msg.contains(what), "{msg}");
        c.closed();
    }

    // And a version 6 client in plaintext mode is served as before.
    assert_exit(&s.get(&["-r", "*"]), 0);
    for (name, data) in expected() {
        assert!(
            std::fs::read(s.downloads().join(name)).unwrap() == data,
            "{name}"
        );
    }
}

#[test]
fn a_version_4_client_fetches_a_file_in_two_ranged_pieces() {
    let s = plain_server();
    let data = bytes(7, 3 << 20 | 517);
    let size = data.len() as u64;
    let mut c = Old::open(&s, 4, &list("", 0), 0);
    let listing = c.listing();
    let big = listing
        .iter()
        .find(|e| e.path == "big.bin")
        .unwrap()
        .clone();
    assert_eq!((big.mode, big.digest), (None, None), "version 4 entries");
    // The two halves of the file's BLAKE3 tree, asked for in one write.
    let left = blake3::hazmat::left_subtree_len(size);
    let mut ask = get("big.bin", 0, Some(big.stamp), Some(left));
    ask.extend(get("big.bin", left, Some(big.stamp), Some(size - left)));
    // A LIST of a file is still version 5's.
    ask.extend(list("a.txt", 0));
    c.send(&ask);
    let mut cvs = Vec::new();
    for (at, len) in [(0, left), (left, size - left)] {
        let f = c.file();
        assert_eq!((f.size, f.offset, f.mode), (size, at, None));
        assert!(f.body == data[at as usize..(at + len) as usize]);
        assert_eq!(f.alg, 2, "a chaining value");
        cvs.push(<[u8; 32]>::try_from(f.digest).unwrap());
    }
    let root = blake3::hazmat::merge_subtrees_root(&cvs[0], &cvs[1], blake3::hazmat::Mode::Hash);
    assert_eq!(root, blake3::hash(&data), "the pieces verify as a whole");
    assert_eq!(c.error(), (2, "not a folder".to_string()));
    // A piece of a file that changed since the first one is refused.
    let stale = (big.stamp.0, big.stamp.1 - 1, big.stamp.2);
    c.send(&get("big.bin", left, Some(stale), Some(size - left)));
    let (code, _) = c.error();
    assert_eq!(code, 8, "source changed");
    c.send(&QUIT);
    c.closed();
}

#[test]
fn a_version_5_client_lists_one_file_with_its_digest_and_mode() {
    let s = plain_server();
    let mut ask = list("sub/deep/c.md", 0x02);
    ask.extend(get("sub/deep/c.md", 0, None, None));
    ask.extend_from_slice(&QUIT);
    let mut c = Old::open(&s, 5, &ask, 0);
    let data = bytes(8, 40_000);
    let listing = c.listing();
    assert_eq!(listing.len(), 1);
    let e = &listing[0];
    assert_eq!(
        (e.kind, e.size, e.path.as_str()),
        (1, 40_000, "sub/deep/c.md")
    );
    let mode = std::fs::metadata(s.host.join("sub/deep/c.md")).unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) as u16 & 0o7777;
    assert_eq!(e.mode, Some(mode));
    assert_eq!(e.digest, Some(blake3::hash(&data).as_bytes().to_vec()));
    let f = c.file();
    assert_eq!((f.size, f.offset, f.mode), (40_000, 0, Some(mode)));
    assert!(f.body == data);
    assert_eq!(
        (f.alg, f.digest),
        (1, blake3::hash(&data).as_bytes().to_vec())
    );
    c.closed();
}

const TOKEN: &str = "an-old-clients-token-0123456789";

/// The token proofs of versions 3 to 5: over the two nonces only.
fn v3_mac(who: &[u8], a: &[u8], b: &[u8]) -> [u8; 32] {
    let key = blake3::derive_key("fxfer 2026-11 token authentication v3", TOKEN.as_bytes());
    let mut h = blake3::Hasher::new_keyed(&key);
    h.update(who).update(a).update(b);
    *h.finalize().as_bytes()
}

#[test]
fn older_clients_prove_the_token_as_they_always_did_on_a_plaintext_server() {
    let tf = tempfile::tempdir().unwrap().keep().join("token");
    secret(&tf, TOKEN);
    let s = Server::builder()
        .files(files)
        .plaintext()
        .arg("--token-file")
        .arg(tf.to_str().unwrap())
        .start();
    for version in [3, 4, 5] {
        let mut c = Old::open(&s, version, &[], 1);
        let (kind, ns) = c.frame();
        assert_eq!((kind, ns.len()), (AUTH_CHALLENGE, 32));
        let nc = [0x5a; 32];
        let mut auth = nc.to_vec();
        auth.extend_from_slice(&v3_mac(b"client", &ns, &nc));
        c.send(&frame(0x04, &auth));
        let (kind, proof) = c.frame();
        assert_eq!(
            kind,
            AUTH_OK,
            "v{version}: {:?}",
            String::from_utf8_lossy(&proof)
        );
        assert_eq!(
            proof,
            v3_mac(b"server", &nc, &ns),
            "v{version}: server proof"
        );
        let mut ask = list("", 0);
        ask.extend_from_slice(&QUIT);
        c.send(&ask);
        assert_eq!(c.listing().len(), 4, "v{version}");
        c.closed();
    }
    // The version 6 client with the token, in plaintext mode, as before.
    let o = s
        .client("ls")
        .arg("--token-file")
        .arg(&tf)
        .output()
        .unwrap();
    assert_exit(&o, 0);
    assert!(String::from_utf8_lossy(&o.stdout).contains("big.bin"));
    // A version 3 greeting with a version 6 proof (zero binding) is a
    // wrong token: each version has one way of proving. (Last: a wrong
    // proof starts a penalty for the address.)
    let mut c = Old::open(&s, 3, &[], 1);
    let (_, ns) = c.frame();
    let nc = [0x33; 32];
    let key = blake3::derive_key("fxfer 2026-12 token authentication v6", TOKEN.as_bytes());
    let mut h = blake3::Hasher::new_keyed(&key);
    h.update(b"client").update(&ns).update(&nc).update(&[0; 32]);
    let mut auth = nc.to_vec();
    auth.extend_from_slice(h.finalize().as_bytes());
    c.send(&frame(0x04, &auth));
    assert_eq!(c.error(), (10, "authentication failed: wrong token".into()));
    c.closed();
}

#[test]
fn a_tls_server_refuses_older_clients_in_the_clear_naming_versions_6_and_7() {
    for token in [false, true] {
        let mut b = Server::builder().files(files);
        if token {
            let tf = tempfile::tempdir().unwrap().keep().join("token");
            secret(&tf, TOKEN);
            b = b.arg("--token-file").arg(tf.to_str().unwrap());
        }
        let s = b.start();
        for version in [3u16, 4, 5] {
            // What an older client sends: its greeting and requests, in
            // the clear. The answer: a greeting of the highest version
            // spoken, without the auth flag, ERROR 6, and the end of the
            // connection.
            let mut ask = list("", 0);
            ask.extend_from_slice(&QUIT);
            let (mut c, hello) = Old::connect(&s, version, &ask);
            assert_eq!(hello, greeting(7));
            let (code, msg) = c.error();
            assert_eq!(code, 6);
            assert_eq!(
                msg,
                format!(
                    "unsupported protocol version {version}; this server speaks versions 6, 7 over TLS"
                )
            );
            c.closed();
        }
        // A version 6 or 7 client run with --plaintext gets code 11 after
        // a greeting of its own version (a version 6 one, as it always
        // did).
        for version in [6u16, 7] {
            let (mut c, hello) = Old::connect(&s, version, &list("", 0));
            assert_eq!(hello, greeting(version));
            assert_eq!(
                c.error(),
                (
                    11,
                    "this server requires TLS; connect without --plaintext".into()
                )
            );
            c.closed();
        }
        assert!(s
            .wait_log("client spoke without TLS")
            .contains("protocol v3"));
    }
}

#[test]
fn a_plaintext_server_names_every_version_it_speaks_when_refusing_one() {
    let s = plain_server();
    for version in [2u16, 8] {
        let (mut c, hello) = Old::connect(&s, version, &list("", 0));
        assert_eq!(hello, greeting(7));
        let (code, msg) = c.error();
        assert_eq!(code, 6);
        assert_eq!(
            msg,
            format!(
                "unsupported protocol version {version}; this server speaks versions 3, 4, 5, 6, 7"
            )
        );
        c.closed();
    }
}

#[test]
fn a_busy_plaintext_server_refuses_an_older_client_in_its_own_version() {
    let s = Server::builder()
        .files(files)
        .plaintext()
        .arg("--max-connections")
        .arg("1")
        .start();
    let held = hold(&s);
    // The greeting says the client's version, so the client reads the
    // refusal as one of its own version's.
    let mut c = Old::open(&s, 3, &list("", 0), 0);
    let (code, msg) = c.error();
    assert_eq!(
        (code, msg.as_str()),
        (4, "server busy: too many connections, try again later")
    );
    c.closed();
    drop(held);
}

/// A ranged GET of the first 256 KiB from offset 0, as `get --parallel`
/// sends before it knows a file's size (a probe).
fn probe(path: &str) -> Vec<u8> {
    get(path, 0, None, Some(256 * 1024))
}

#[test]
fn an_empty_files_range_is_refused_before_version_7_and_the_whole_file_from_it() {
    // BLAKE3 has no chaining value for an empty subtree. Up to version 6 a
    // ranged GET of an empty file is refused with code 5, the connection
    // kept, and the client asks for the file whole; from version 7 the
    // range is answered as the whole file it is: FILE, no DATA, END with
    // the digest of the empty input (algorithm 1).
    let empty = blake3::hash(b"").as_bytes().to_vec();
    // The empty file, whole: FILE (size 0, offset 0), no DATA, END with
    // the digest of the empty input.
    let whole_empty = |got: Got, what: &str| {
        assert_eq!(
            (got.size, got.offset, got.body.len(), got.alg, &got.digest),
            (0, 0, 0, 1, &empty),
            "{what}"
        );
    };
    for plaintext in [false, true] {
        let s = if plaintext {
            plain_server()
        } else {
            Server::builder().files(files).start()
        };
        let older: &[u16] = if plaintext { &[4, 5, 6] } else { &[6] };
        let mut chaining = Vec::new();
        for &version in older {
            // Today's released client: the probe, the fall-back, and a
            // probe of a small file, pipelined.
            let mut ask = probe("empty");
            ask.extend(get("empty", 0, None, None));
            ask.extend(probe("a.txt"));
            ask.extend_from_slice(&QUIT);
            let mut c = Old::open_any(&s, version, &ask);
            assert_eq!(
                c.error(),
                (5, "offset 0 is beyond the end of the file (0 bytes)".into()),
                "v{version}"
            );
            whole_empty(c.file(), &format!("v{version}: the fall-back"));
            let got = c.file();
            assert_eq!((got.body.as_slice(), got.alg), (&b"hello"[..], 2));
            chaining.push(got.digest);
            c.closed();
        }
        // Version 7: the probe is the whole file; a small file's probe is
        // answered as before (its chaining value); a stamp that differs
        // still refuses a range with code 8.
        let mut ask = probe("empty");
        ask.extend(probe("a.txt"));
        ask.extend(get("empty", 0, Some((1, 0, 0)), Some(256 * 1024)));
        ask.extend_from_slice(&QUIT);
        let mut c = Old::open_any(&s, 7, &ask);
        whole_empty(c.file(), &format!("v7, plaintext {plaintext}"));
        let got = c.file();
        assert_eq!((got.body.as_slice(), got.alg), (&b"hello"[..], 2));
        assert_eq!(got.digest, chaining[0], "a non-empty range as before");
        assert_eq!(c.error().0, 8);
        c.closed();
        let log = s.wait_log("first piece of it");
        assert_eq!(
            log.matches("beyond the end of the file").count(),
            older.len(),
            "only the older clients were refused: {log}"
        );
    }
}

/// A version 6 server in plaintext mode, made of the real one (which
/// answers a version 6 client exactly as a version 6 server did) behind a
/// proxy that refuses a version 7 greeting as a version 6 server does: its
/// own greeting, ERROR 6, and the end of the connection. Gives the proxy's
/// port and how many version 7 greetings it refused.
fn v6_only(s: &Server) -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let refused = Arc::new(AtomicUsize::new(0));
    let (count, to) = (Arc::clone(&refused), s.port);
    std::thread::spawn(move || {
        for c in l.incoming().take(64) {
            let Ok(mut c) = c else { break };
            let count = Arc::clone(&count);
            std::thread::spawn(move || {
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut hello = [0u8; 8];
                if c.read_exact(&mut hello).is_err() {
                    return;
                }
                c.set_read_timeout(None).unwrap();
                if hello[4..6] == [0, 7] {
                    count.fetch_add(1, Ordering::SeqCst);
                    refuse_in_6(
                        &mut c,
                        6,
                        "unsupported protocol version 7; this server speaks versions 3, 4, 5, 6",
                    );
                    return;
                }
                let Ok(mut up) = TcpStream::connect(("127.0.0.1", to)) else {
                    return;
                };
                let _ = up.write_all(&hello);
                let (mut down_to, mut down_from) =
                    (c.try_clone().unwrap(), up.try_clone().unwrap());
                let down = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut down_from, &mut down_to);
                    let _ = down_to.shutdown(Shutdown::Write);
                });
                let _ = std::io::copy(&mut c, &mut up);
                let _ = up.shutdown(Shutdown::Write);
                let _ = down.join();
            });
        }
    });
    (port, refused)
}

#[test]
fn this_client_speaks_version_6_to_a_server_that_speaks_no_7() {
    // A version 6 server refuses a version 7 greeting; the client then
    // connects again in version 6, sends again what it had sent, and
    // greets that server in 6 for the rest of the run. In version 6 an
    // empty file's probe is refused, and the client asks for it whole.
    for token in [false, true] {
        let tf = tempfile::tempdir().unwrap().keep().join("token");
        secret(&tf, TOKEN);
        let mut b = Server::builder().files(files).plaintext();
        if token {
            b = b.arg("--token-file").arg(tf.to_str().unwrap());
        }
        let s = b.start();
        let (port, refused) = v6_only(&s);
        let port = port.to_string();
        let runs: [&[&str]; 2] = [&[], &["--parallel", "--jobs", "3"]];
        for (round, extra) in runs.iter().enumerate() {
            let dir = format!("round{round}");
            let mut c = fxfer(&s.work);
            c.args(["get", "--plaintext", "--port", &port, "--dir", &dir]);
            if token {
                c.arg("--token-file").arg(&tf);
            }
            let o = c
                .args(*extra)
                .args(["empty", "a.txt", "big.bin"])
                .output()
                .unwrap();
            assert_exit(&o, 0);
            for (name, data) in expected().into_iter().filter(|(n, _)| !n.contains('/')) {
                let got = std::fs::read(s.work.join(&dir).join(name)).unwrap();
                assert!(got == data, "token {token}, round {round}: {name}");
            }
        }
        let log = s.wait_log("refused GET \"empty\"");
        assert!(log.contains("connected (protocol v6)"), "{log}");
        assert!(
            !log.lines().any(|l| l.ends_with(": connected")),
            "a version 7 connection reached the server: {log}"
        );
        // Found out once in the serial run, and once per connection at
        // most (the first ones start together) in the parallel one.
        let n = refused.load(Ordering::SeqCst);
        assert!(
            (2..=4).contains(&n),
            "token {token}: {n} version 7 greetings"
        );
    }
}

#[test]
fn a_busy_version_6_server_is_reported_busy_not_spoken_to_again_in_6() {
    // A server refuses at acceptance (its address limit, a penalty) before
    // it has read the client's greeting, so the refusal comes behind its
    // own version's greeting: not a version mismatch, and no reason to
    // connect again in that version at once.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    let in_6 = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&in_6);
    std::thread::spawn(move || {
        for c in l.incoming().take(16) {
            let Ok(mut c) = c else { break };
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut hello = [0u8; 8];
            if c.read_exact(&mut hello).is_ok() && hello[4..6] == [0, 6] {
                count.fetch_add(1, Ordering::SeqCst);
            }
            refuse_in_6(
                &mut c,
                4,
                "server busy: too many connections from your address, try again later",
            );
        }
    });
    let work = tempfile::tempdir().unwrap();
    let o = fxfer(work.path())
        .args([
            "get",
            "--plaintext",
            "--port",
            &port,
            "--retries",
            "0",
            "a.txt",
        ])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("server busy"), "{err}");
    assert!(!err.contains("version"), "{err}");
    assert_eq!(
        in_6.load(Ordering::SeqCst),
        0,
        "greeted in version 6: {err}"
    );
}

#[test]
fn the_later_connections_of_a_run_greet_a_version_6_server_in_6_at_once() {
    // A parallel get of a folder lists it first, over one connection, and
    // starts the others once that one has found the server speaks only
    // version 6: they greet in 6 from the start.
    let s = plain_server();
    let (port, refused) = v6_only(&s);
    let o = fxfer(&s.work)
        .args(["get", "--plaintext", "--port", &port.to_string()])
        .args(["--dir", "got", "--parallel", "--jobs", "4", "-r", ""])
        .output()
        .unwrap();
    assert_exit(&o, 0);
    for (name, data) in expected() {
        assert!(std::fs::read(s.work.join("got").join(name)).unwrap() == data);
    }
    let log = s.wait_log("sent \"big.bin\"");
    assert!(log.matches("connected (protocol v6)").count() > 1, "{log}");
    assert_eq!(refused.load(Ordering::SeqCst), 1, "{log}");
}
