//! The fxfer wire protocol, version 7: handshake, frames, requests and
//! responses, encoded and decoded over any `Read`/`Write`. Since version 6
//! it runs inside TLS 1.3 (see `transport`), which this module never sees.
//! A server also speaks version 6 inside TLS, and in the clear (plaintext
//! mode) versions 3 to 6, each with its own framing and token proofs: see
//! [`versions_spoken`].
//!
//! This module knows nothing about sockets, files, threads or terminals; the
//! server and client wrap it around a `TcpStream`, the tests around a
//! `Vec<u8>`. `docs/PROTOCOL.md` is the normative description; keep the two
//! in step (and bump [`VERSION`] when the wire format changes).
//!
//! ```text
//! handshake, both directions, 8 bytes:
//! +----+----+----+----+---------+---------+
//! | 'F'| 'X'| 'F'| 'R'| version | flags   |   version, flags: u16 big-endian
//! +----+----+----+----+---------+---------+
//!
//! every later message is a frame:
//! +------+-----------------+--------------------+
//! | type | length: u32 BE  | payload (length)   |
//! +------+-----------------+--------------------+
//!   u8     control frames: at most 64 KiB; DATA frames: at most 16 MiB
//! ```
//!
//! A GET is answered by `FILE` (size, offset, mtime), then DATA frames
//! carrying exactly `size - offset` bytes, then `END` (a digest trailer), or
//! by a single `ERROR` frame in place of any of them. A ranged GET (version
//! 4) asks for at most `length` bytes from `offset`, and its END carries the
//! BLAKE3 chaining value of that range, so a client can fetch a file in
//! pieces over several connections and still verify it as a whole (from
//! version 7, an empty file's range, which has no chaining value, is
//! answered as the whole file, END carrying its digest). Requests may be
//! pipelined; responses come back in request order.

mod codec;
pub mod handshake;

pub use codec::{read_data_payload, read_frame_header, FrameHeader};

use std::fmt;
use std::io::{self, Read, Write};

use codec::{read_control_payload, write_frame, Parser, PayloadBuilder};

/// Magic bytes that open the handshake in both directions.
pub const MAGIC: [u8; 4] = *b"FXFR";
/// The protocol version this build speaks best. Version 2 added the
/// if-unchanged condition to GET (for safe resume) and made the BLAKE3
/// digest in END mandatory; version 3 added token authentication; version 4
/// added ranged GETs answered with a BLAKE3 subtree chaining value; version
/// 5 added permission bits to listings and FILE headers, digests in
/// listings on request, and LIST of a single file (fetching only what
/// changed); version 6 runs inside TLS 1.3 and binds the token proofs to
/// the TLS channel; version 7 answers a ranged GET of an empty file as the
/// whole file instead of refusing it.
pub const VERSION: u16 = 7;
/// The versions a server speaks inside TLS: 6, the first that knew TLS
/// (older clients never start a TLS handshake), and 7.
pub const TLS_VERSIONS: &[u16] = &[6, 7];
/// The versions a server speaks in plaintext mode: every version since
/// token authentication, each client answered in its own version. Versions
/// 3 to 5 never had TLS, so in the clear they lose nothing they had.
pub const PLAINTEXT_VERSIONS: &[u16] = &[3, 4, 5, 6, 7];
/// The first version with ranged GETs.
pub const RANGE_VERSION: u16 = 4;
/// The first version whose listings and FILE headers carry permission bits
/// (and, on request, digests), and that lists a single file.
pub const SYNC_VERSION: u16 = 5;
/// The first version that answers a ranged GET from offset 0 of an empty
/// file (a probe of a file whose size the client does not know yet) with
/// the whole file, END carrying its BLAKE3 digest: BLAKE3 defines no
/// chaining value for an empty subtree, so before it such a range was
/// refused with code 5 and cost the client a second request.
pub const EMPTY_RANGE_VERSION: u16 = 7;
/// BLAKE3's chunk size: a ranged GET starts on a multiple of it.
pub const CHUNK_LEN: u64 = 1024;
/// Greeting flag (server to client): a token is required; an AUTH_CHALLENGE
/// frame follows the greeting.
pub const HELLO_AUTH: u16 = 0x0001;
/// Length of the nonces and MACs of the token handshake.
pub const AUTH_LEN: usize = 32;
/// Length of the handshake message.
pub const HELLO_LEN: usize = 8;
/// Length of a frame header (type + length).
pub const FRAME_HEADER_LEN: usize = 5;
/// Largest payload of any frame except DATA.
pub const MAX_CONTROL_PAYLOAD: usize = 64 * 1024;
/// Largest payload of one DATA frame.
pub const MAX_DATA_PAYLOAD: usize = 16 * 1024 * 1024;
/// Longest relative path, in bytes of UTF-8.
pub const MAX_PATH_LEN: usize = 4096;
/// Longest error message, in bytes of UTF-8.
pub const MAX_MESSAGE_LEN: usize = 1024;
/// Longest digest in an END trailer.
pub const MAX_DIGEST_LEN: usize = 64;

/// Frame type bytes. Requests have the high bit clear, responses set.
pub mod frame {
    pub const LIST: u8 = 0x01;
    pub const GET: u8 = 0x02;
    pub const QUIT: u8 = 0x03;
    pub const AUTH: u8 = 0x04;
    pub const ENTRIES: u8 = 0x81;
    pub const LIST_END: u8 = 0x82;
    pub const FILE: u8 = 0x83;
    pub const DATA: u8 = 0x84;
    pub const END: u8 = 0x85;
    pub const AUTH_CHALLENGE: u8 = 0x86;
    pub const AUTH_OK: u8 = 0x87;
    pub const ERROR: u8 = 0xEE;

    /// A short name for error messages and logs.
    pub fn name(kind: u8) -> &'static str {
        match kind {
            LIST => "LIST",
            GET => "GET",
            QUIT => "QUIT",
            AUTH => "AUTH",
            AUTH_CHALLENGE => "AUTH_CHALLENGE",
            AUTH_OK => "AUTH_OK",
            ENTRIES => "ENTRIES",
            LIST_END => "LIST_END",
            FILE => "FILE",
            DATA => "DATA",
            END => "END",
            ERROR => "ERROR",
            _ => "unknown",
        }
    }
}

/// Everything that can go wrong while speaking the protocol.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("connection closed by the peer")]
    Closed,
    #[error("peer does not speak fxfer (bad magic bytes)")]
    BadMagic,
    #[error("{frame} frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        frame: &'static str,
        len: u64,
        max: usize,
    },
    #[error("unknown frame type 0x{0:02x}")]
    UnknownFrame(u8),
    #[error("unexpected {got} frame (expected {expected})")]
    Unexpected {
        got: &'static str,
        expected: &'static str,
    },
    #[error("malformed {frame} frame: {what}")]
    Malformed { frame: &'static str, what: String },
    /// The peers share no protocol version.
    #[error("{0}")]
    Incompatible(String),
}

pub type Result<T, E = ProtocolError> = std::result::Result<T, E>;

// ---------------------------------------------------------------- handshake

/// The 8-byte greeting each side sends first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub version: u16,
    /// Reserved for capabilities; version 1 sends 0 and ignores it.
    pub flags: u16,
}

impl Hello {
    pub fn current() -> Hello {
        Hello {
            version: VERSION,
            flags: 0,
        }
    }

    pub fn to_bytes(self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&self.version.to_be_bytes());
        b[6..8].copy_from_slice(&self.flags.to_be_bytes());
        b
    }

    pub fn write_to<W: Write + ?Sized>(self, w: &mut W) -> Result<()> {
        w.write_all(&self.to_bytes())?;
        Ok(())
    }

    /// Reads a greeting. Fewer than 8 bytes, or the wrong magic, is an error.
    pub fn read_from<R: Read + ?Sized>(r: &mut R) -> Result<Hello> {
        let mut b = [0u8; HELLO_LEN];
        codec::read_exact_or_closed(r, &mut b)?;
        if b[..4] != MAGIC {
            return Err(ProtocolError::BadMagic);
        }
        Ok(Hello {
            version: u16::from_be_bytes([b[4], b[5]]),
            flags: u16::from_be_bytes([b[6], b[7]]),
        })
    }
}

/// The versions a server speaks over a transport with TLS (`tls`) or in
/// the clear.
pub fn versions_spoken(tls: bool) -> &'static [u16] {
    if tls {
        TLS_VERSIONS
    } else {
        PLAINTEXT_VERSIONS
    }
}

/// "version 6" or "versions 6, 7", for messages.
pub fn versions_text(versions: &[u16]) -> String {
    let list = versions
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if versions.len() == 1 {
        format!("version {list}")
    } else {
        format!("versions {list}")
    }
}

// ----------------------------------------------------------------- requests

/// What a client may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// List the folder `path` ("" = the root), optionally recursively; a
    /// regular file lists as its one entry. With `digests`, every file
    /// entry carries its BLAKE3 digest.
    List {
        path: String,
        recursive: bool,
        digests: bool,
    },
    /// Send the file at `path`, starting at byte `offset`. With
    /// `if_unchanged`, the offset only holds while the file still has that
    /// size and modification time; otherwise the server sends it whole
    /// (its FILE header then says offset 0). With `len` (version 4 only),
    /// at most `len` bytes are sent, and a changed file is refused rather
    /// than sent whole; `offset` and `len` must then describe a BLAKE3
    /// subtree (see [`range_is_subtree`]).
    Get {
        path: String,
        offset: u64,
        if_unchanged: Option<Stamp>,
        len: Option<u64>,
    },
    /// Polite goodbye; the server closes after answering earlier requests.
    Quit,
    /// Answer to AUTH_CHALLENGE: the client's nonce and its proof that it
    /// knows the token (see [`auth`]).
    Auth {
        nonce: [u8; AUTH_LEN],
        mac: [u8; AUTH_LEN],
    },
}

const LIST_RECURSIVE: u8 = 0x01;
const LIST_DIGESTS: u8 = 0x02;
/// Permission bits (`0o7777`) are all a listing or FILE header carries of
/// a file's mode.
pub const MODE_MASK: u16 = 0o7777;
/// Length of a BLAKE3 digest.
pub const DIGEST_LEN: usize = 32;
const GET_IF_UNCHANGED: u8 = 0x01;
const GET_RANGE: u8 = 0x02;

/// The largest subtree of the BLAKE3 tree that can start at `offset`, or
/// `None` at offset 0 (no limit). `offset` must be a multiple of
/// [`CHUNK_LEN`].
pub fn max_subtree_len(offset: u64) -> Option<u64> {
    (offset != 0).then(|| CHUNK_LEN << (offset / CHUNK_LEN).trailing_zeros())
}

/// Whether a range can be hashed as one BLAKE3 subtree: it is not empty,
/// starts on a chunk boundary, and is no longer than the largest subtree
/// that starts there. (Only these ranges have a chaining value.)
pub fn range_is_subtree(offset: u64, len: u64) -> bool {
    len > 0
        && offset.is_multiple_of(CHUNK_LEN)
        && max_subtree_len(offset).is_none_or(|max| len <= max)
}

/// What identifies one version of a file: size and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamp {
    pub size: u64,
    pub mtime: i64,
    pub mtime_nanos: u32,
}

impl Request {
    /// A plain GET of a whole file.
    pub fn get(path: impl Into<String>) -> Request {
        Request::Get {
            path: path.into(),
            offset: 0,
            if_unchanged: None,
            len: None,
        }
    }
}

impl Request {
    pub fn write_to<W: Write + ?Sized>(&self, w: &mut W) -> Result<()> {
        let mut p = PayloadBuilder::default();
        let kind = match self {
            Request::List {
                path,
                recursive,
                digests,
            } => {
                p.str16(path, MAX_PATH_LEN, "LIST")?;
                let mut flags = 0;
                if *recursive {
                    flags |= LIST_RECURSIVE;
                }
                if *digests {
                    flags |= LIST_DIGESTS;
                }
                p.u8(flags);
                frame::LIST
            }
            Request::Get {
                path,
                offset,
                if_unchanged,
                len,
            } => {
                p.str16(path, MAX_PATH_LEN, "GET")?;
                p.u64(*offset);
                let flags = if if_unchanged.is_some() {
                    GET_IF_UNCHANGED
                } else {
                    0
                } | if len.is_some() { GET_RANGE } else { 0 };
                p.u8(flags);
                if let Some(st) = if_unchanged {
                    p.u64(st.size);
                    p.i64(st.mtime);
                    p.u32(st.mtime_nanos);
                }
                if let Some(n) = len {
                    p.u64(*n);
                }
                frame::GET
            }
            Request::Quit => frame::QUIT,
            Request::Auth { nonce, mac } => {
                p.raw(nonce);
                p.raw(mac);
                frame::AUTH
            }
        };
        write_frame(w, kind, p.as_slice())
    }

    /// Reads the next request in this build's best version. A clean end of
    /// stream before a frame starts is [`ProtocolError::Closed`].
    pub fn read_from<R: Read + ?Sized>(r: &mut R) -> Result<Request> {
        Request::read_versioned(r, VERSION)
    }

    /// Reads the next request of a connection that speaks `version`: what
    /// that version lacks (a ranged GET before version 4) is malformed.
    pub fn read_versioned<R: Read + ?Sized>(r: &mut R, version: u16) -> Result<Request> {
        let get_flags = if version >= RANGE_VERSION {
            GET_IF_UNCHANGED | GET_RANGE
        } else {
            GET_IF_UNCHANGED
        };
        let list_flags = if version >= SYNC_VERSION {
            LIST_RECURSIVE | LIST_DIGESTS
        } else {
            LIST_RECURSIVE
        };
        let header = read_frame_header(r)?;
        let payload = read_control_payload(r, header)?;
        let mut p = Parser::new(&payload, frame::name(header.kind));
        let req = match header.kind {
            frame::LIST => {
                let path = p.str16(MAX_PATH_LEN)?;
                let flags = p.u8()?;
                if flags & !list_flags != 0 {
                    return Err(p.malformed(format!("unknown flags 0x{flags:02x}")));
                }
                Request::List {
                    path,
                    recursive: flags & LIST_RECURSIVE != 0,
                    digests: flags & LIST_DIGESTS != 0,
                }
            }
            frame::GET => {
                let path = p.str16(MAX_PATH_LEN)?;
                let offset = p.u64()?;
                let flags = p.u8()?;
                if flags & !get_flags != 0 {
                    return Err(p.malformed(format!("unknown flags 0x{flags:02x}")));
                }
                let if_unchanged = if flags & GET_IF_UNCHANGED != 0 {
                    let size = p.u64()?;
                    let mtime = p.i64()?;
                    let mtime_nanos = p.u32()?;
                    if mtime_nanos >= 1_000_000_000 {
                        return Err(p.malformed("mtime nanoseconds out of range".into()));
                    }
                    Some(Stamp {
                        size,
                        mtime,
                        mtime_nanos,
                    })
                } else {
                    None
                };
                let len = if flags & GET_RANGE != 0 {
                    let len = p.u64()?;
                    if !range_is_subtree(offset, len) {
                        return Err(p.malformed(format!(
                            "range of {len} bytes at offset {offset} is not a BLAKE3 subtree"
                        )));
                    }
                    Some(len)
                } else {
                    None
                };
                Request::Get {
                    path,
                    offset,
                    if_unchanged,
                    len,
                }
            }
            frame::QUIT => Request::Quit,
            frame::AUTH => Request::Auth {
                nonce: p.array()?,
                mac: p.array()?,
            },
            frame::ENTRIES
            | frame::LIST_END
            | frame::FILE
            | frame::DATA
            | frame::END
            | frame::AUTH_CHALLENGE
            | frame::AUTH_OK
            | frame::ERROR => {
                return Err(ProtocolError::Unexpected {
                    got: frame::name(header.kind),
                    expected: "a request",
                })
            }
            other => return Err(ProtocolError::UnknownFrame(other)),
        };
        p.finish()?;
        Ok(req)
    }
}

// ---------------------------------------------------------------- responses

/// What a listed path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryKind {
    File,
    Dir,
}

impl EntryKind {
    fn code(self) -> u8 {
        match self {
            EntryKind::File => 1,
            EntryKind::Dir => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "folder",
        }
    }
}

/// One line of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative, `/`-separated path from the served root.
    pub path: String,
    pub kind: EntryKind,
    /// Size in bytes (0 for folders).
    pub size: u64,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: i64,
    /// Sub-second part of the modification time.
    pub mtime_nanos: u32,
    /// Permission bits (`0o7777` at most).
    pub mode: u16,
    /// BLAKE3 of the file's contents, when the listing asked for digests.
    pub digest: Option<[u8; DIGEST_LEN]>,
}

impl Entry {
    /// The version of the file this entry describes.
    pub fn stamp(&self) -> Stamp {
        Stamp {
            size: self.size,
            mtime: self.mtime,
            mtime_nanos: self.mtime_nanos,
        }
    }
}

/// Opens the answer to a GET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// Size of the whole file.
    pub size: u64,
    /// First byte that follows; `size - offset` bytes of DATA come next.
    pub offset: u64,
    pub mtime: i64,
    pub mtime_nanos: u32,
    /// Permission bits of the file on the server (`0o7777` at most).
    pub mode: u16,
}

impl FileHeader {
    /// Bytes of DATA that follow this header.
    pub fn body_len(&self) -> u64 {
        self.size - self.offset
    }

    /// Bytes of DATA that follow this header in answer to a GET of at most
    /// `len` bytes (`None`: to the end of the file).
    pub fn range_len(&self, len: Option<u64>) -> u64 {
        len.map_or(self.body_len(), |n| n.min(self.body_len()))
    }

    /// The version of the file this header describes.
    pub fn stamp(&self) -> Stamp {
        Stamp {
            size: self.size,
            mtime: self.mtime,
            mtime_nanos: self.mtime_nanos,
        }
    }
}

/// Digest algorithms an END trailer can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgorithm {
    /// No digest (version 1 servers send this).
    None,
    /// BLAKE3, 32 bytes.
    Blake3,
    /// The BLAKE3 chaining value (32 bytes) of the range a ranged GET
    /// asked for: the non-root hash of that subtree.
    Blake3Subtree,
    /// A code this build does not know.
    Other(u8),
}

impl DigestAlgorithm {
    fn code(self) -> u8 {
        match self {
            DigestAlgorithm::None => 0,
            DigestAlgorithm::Blake3 => 1,
            DigestAlgorithm::Blake3Subtree => 2,
            DigestAlgorithm::Other(c) => c,
        }
    }
    fn from_code(c: u8) -> Self {
        match c {
            0 => DigestAlgorithm::None,
            1 => DigestAlgorithm::Blake3,
            2 => DigestAlgorithm::Blake3Subtree,
            c => DigestAlgorithm::Other(c),
        }
    }
}

/// Closes the answer to a GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trailer {
    pub algorithm: DigestAlgorithm,
    pub digest: Vec<u8>,
}

impl Trailer {
    pub fn none() -> Trailer {
        Trailer {
            algorithm: DigestAlgorithm::None,
            digest: Vec::new(),
        }
    }

    pub fn blake3(digest: [u8; 32]) -> Trailer {
        Trailer {
            algorithm: DigestAlgorithm::Blake3,
            digest: digest.to_vec(),
        }
    }

    /// The trailer of a ranged GET: the range's chaining value.
    pub fn blake3_subtree(cv: [u8; 32]) -> Trailer {
        Trailer {
            algorithm: DigestAlgorithm::Blake3Subtree,
            digest: cv.to_vec(),
        }
    }
}

/// Stable numeric error codes. Never renumber: scripts and other clients
/// depend on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    NotFound,
    NotRegularFile,
    ForbiddenPath,
    Busy,
    BadRequest,
    UnsupportedVersion,
    Internal,
    /// The file changed (size or content) while it was being sent.
    SourceChanged,
    /// The server may not read the file.
    PermissionDenied,
    /// No token, or a wrong one.
    AuthFailed,
    /// One side uses TLS and the other does not (`--plaintext`).
    TransportMismatch,
    /// A code this build does not know (from a newer peer).
    Other(u16),
}

impl ErrorCode {
    pub fn code(self) -> u16 {
        match self {
            ErrorCode::NotFound => 1,
            ErrorCode::NotRegularFile => 2,
            ErrorCode::ForbiddenPath => 3,
            ErrorCode::Busy => 4,
            ErrorCode::BadRequest => 5,
            ErrorCode::UnsupportedVersion => 6,
            ErrorCode::Internal => 7,
            ErrorCode::SourceChanged => 8,
            ErrorCode::PermissionDenied => 9,
            ErrorCode::AuthFailed => 10,
            ErrorCode::TransportMismatch => 11,
            ErrorCode::Other(c) => c,
        }
    }

    pub fn from_code(c: u16) -> ErrorCode {
        match c {
            1 => ErrorCode::NotFound,
            2 => ErrorCode::NotRegularFile,
            3 => ErrorCode::ForbiddenPath,
            4 => ErrorCode::Busy,
            5 => ErrorCode::BadRequest,
            6 => ErrorCode::UnsupportedVersion,
            7 => ErrorCode::Internal,
            8 => ErrorCode::SourceChanged,
            9 => ErrorCode::PermissionDenied,
            10 => ErrorCode::AuthFailed,
            11 => ErrorCode::TransportMismatch,
            c => ErrorCode::Other(c),
        }
    }

    /// Short name used in logs and messages.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not found",
            ErrorCode::NotRegularFile => "not a regular file",
            ErrorCode::ForbiddenPath => "forbidden path",
            ErrorCode::Busy => "server busy",
            ErrorCode::BadRequest => "bad request",
            ErrorCode::UnsupportedVersion => "unsupported version",
            ErrorCode::Internal => "internal server error",
            ErrorCode::SourceChanged => "file changed while being sent",
            ErrorCode::PermissionDenied => "permission denied",
            ErrorCode::AuthFailed => "authentication failed",
            ErrorCode::TransportMismatch => "TLS on one side only",
            ErrorCode::Other(_) => "unknown error",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An ERROR frame: a stable code and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorFrame {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorFrame {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorFrame {
        let mut message = message.into();
        if message.len() > MAX_MESSAGE_LEN {
            // Cut on a character boundary so the frame stays valid UTF-8.
            let mut end = MAX_MESSAGE_LEN;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        ErrorFrame { code, message }
    }
}

impl fmt::Display for ErrorFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{}", self.message)
        }
    }
}

/// A response frame as the client reads it. DATA frames are returned with
/// their length only: the caller streams the payload itself (see
/// [`read_data_payload`]), so file bodies are never buffered whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Entries(Vec<Entry>),
    ListEnd {
        count: u64,
    },
    File(FileHeader),
    Data {
        len: u32,
    },
    End(Trailer),
    Error(ErrorFrame),
    /// The server's nonce; the client must answer with AUTH.
    AuthChallenge {
        nonce: [u8; AUTH_LEN],
    },
    /// The token was right; `proof` shows the server knows it too.
    AuthOk {
        proof: [u8; AUTH_LEN],
    },
}

impl Response {
    /// Reads the next response frame. For DATA, the payload is left unread.
    pub fn read_from<R: Read + ?Sized>(r: &mut R) -> Result<Response> {
        let header = read_frame_header(r)?;
        if header.kind == frame::DATA {
            if header.len as usize > MAX_DATA_PAYLOAD {
                return Err(ProtocolError::TooLarge {
                    frame: "DATA",
                    len: header.len.into(),
                    max: MAX_DATA_PAYLOAD,
                });
            }
            return Ok(Response::Data { len: header.len });
        }
        let payload = read_control_payload(r, header)?;
        let mut p = Parser::new(&payload, frame::name(header.kind));
        let resp = match header.kind {
            frame::ENTRIES => {
                let count = p.u16()?;
                // Each entry takes at least 26 bytes, so `count` is bounded by
                // the payload we already hold; no allocation beyond it.
                let mut entries = Vec::with_capacity(usize::from(count).min(payload.len() / 26));
                for _ in 0..count {
                    let kind = match p.u8()? {
                        1 => EntryKind::File,
                        2 => EntryKind::Dir,
                        k => return Err(p.malformed(format!("unknown entry kind {k}"))),
                    };
                    let size = p.u64()?;
                    let mtime = p.i64()?;
                    let mtime_nanos = p.u32()?;
                    if mtime_nanos >= 1_000_000_000 {
                        return Err(p.malformed("mtime nanoseconds out of range".into()));
                    }
                    let mode = p.mode()?;
                    let digest = match (p.u8()?, kind) {
                        (0, _) => None,
                        (32, EntryKind::File) => Some(p.array()?),
                        (n, _) => {
                            return Err(
                                p.malformed(format!("digest of {n} bytes for a {}", kind.name()))
                            )
                        }
                    };
                    let path = p.str16(MAX_PATH_LEN)?;
                    entries.push(Entry {
                        path,
                        kind,
                        size,
                        mtime,
                        mtime_nanos,
                        mode,
                        digest,
                    });
                }
                Response::Entries(entries)
            }
            frame::LIST_END => Response::ListEnd { count: p.u64()? },
            frame::FILE => {
                let size = p.u64()?;
                let offset = p.u64()?;
                let mtime = p.i64()?;
                let mtime_nanos = p.u32()?;
                if offset > size {
                    return Err(p.malformed(format!("offset {offset} beyond size {size}")));
                }
                if mtime_nanos >= 1_000_000_000 {
                    return Err(p.malformed("mtime nanoseconds out of range".into()));
                }
                let mode = p.mode()?;
                Response::File(FileHeader {
                    size,
                    offset,
                    mtime,
                    mtime_nanos,
                    mode,
                })
            }
            frame::END => {
                let algorithm = DigestAlgorithm::from_code(p.u8()?);
                let len = usize::from(p.u8()?);
                if len > MAX_DIGEST_LEN {
                    return Err(p.malformed(format!("digest of {len} bytes")));
                }
                let digest = p.bytes(len)?.to_vec();
                Response::End(Trailer { algorithm, digest })
            }
            frame::ERROR => {
                let code = ErrorCode::from_code(p.u16()?);
                let message = p.str16(MAX_MESSAGE_LEN)?;
                Response::Error(ErrorFrame { code, message })
            }
            frame::AUTH_CHALLENGE => Response::AuthChallenge { nonce: p.array()? },
            frame::AUTH_OK => Response::AuthOk { proof: p.array()? },
            frame::LIST | frame::GET | frame::QUIT | frame::AUTH => {
                return Err(ProtocolError::Unexpected {
                    got: frame::name(header.kind),
                    expected: "a response",
                })
            }
            other => return Err(ProtocolError::UnknownFrame(other)),
        };
        p.finish()?;
        Ok(resp)
    }

    /// A short name for "unexpected frame" errors.
    pub fn name(&self) -> &'static str {
        match self {
            Response::Entries(_) => "ENTRIES",
            Response::ListEnd { .. } => "LIST_END",
            Response::File(_) => "FILE",
            Response::Data { .. } => "DATA",
            Response::End(_) => "END",
            Response::Error(_) => "ERROR",
            Response::AuthChallenge { .. } => "AUTH_CHALLENGE",
            Response::AuthOk { .. } => "AUTH_OK",
        }
    }
}

// ------------------------------------------------------- response encoders

/// Encodes one ENTRIES frame. Callers keep each batch within
/// [`MAX_CONTROL_PAYLOAD`]; [`ListWriter`] does that for them.
pub fn write_entries<W: Write + ?Sized>(w: &mut W, entries: &[Entry]) -> Result<()> {
    write_entries_for(w, entries, VERSION)
}

/// Encodes one ENTRIES frame as a connection speaking `version` expects:
/// before version 5, entries carry no mode and no digest.
pub fn write_entries_for<W: Write + ?Sized>(
    w: &mut W,
    entries: &[Entry],
    version: u16,
) -> Result<()> {
    let mut p = PayloadBuilder::default();
    let count = u16::try_from(entries.len()).map_err(|_| ProtocolError::TooLarge {
        frame: "ENTRIES",
        len: entries.len() as u64,
        max: usize::from(u16::MAX),
    })?;
    p.u16(count);
    for e in entries {
        encode_entry(&mut p, e, version)?;
    }
    write_frame(w, frame::ENTRIES, p.as_slice())
}

fn encode_entry(p: &mut PayloadBuilder, e: &Entry, version: u16) -> Result<()> {
    p.u8(e.kind.code());
    p.u64(e.size);
    p.i64(e.mtime);
    p.u32(e.mtime_nanos);
    if version < SYNC_VERSION {
        return p.str16(&e.path, MAX_PATH_LEN, "ENTRIES");
    }
    p.u16(e.mode & MODE_MASK);
    match &e.digest {
        Some(d) if e.kind == EntryKind::File => {
            p.u8(DIGEST_LEN as u8);
            p.raw(d);
        }
        _ => p.u8(0),
    }
    p.str16(&e.path, MAX_PATH_LEN, "ENTRIES")
}

/// Bytes of one encoded entry besides its digest and path (kind, size,
/// mtime, nanoseconds, mode, digest length, path length).
pub const ENTRY_FIXED_LEN: u64 = 1 + 8 + 8 + 4 + 2 + 1 + 2;

/// Size of one encoded entry.
pub fn entry_len(e: &Entry) -> usize {
    entry_len_for(e, VERSION)
}

/// Size of one entry encoded for `version`.
fn entry_len_for(e: &Entry, version: u16) -> usize {
    if version < SYNC_VERSION {
        return ENTRY_FIXED_LEN as usize - 3 + e.path.len();
    }
    let digest = match e.digest {
        Some(_) if e.kind == EntryKind::File => DIGEST_LEN,
        _ => 0,
    };
    ENTRY_FIXED_LEN as usize + digest + e.path.len()
}

/// Streams a listing as ENTRIES frames of at most [`MAX_CONTROL_PAYLOAD`]
/// bytes each, then LIST_END, so a huge folder never needs one huge buffer.
pub struct ListWriter {
    batch: Vec<Entry>,
    batch_len: usize,
    count: u64,
    version: u16,
}

impl Default for ListWriter {
    fn default() -> Self {
        ListWriter::for_version(VERSION)
    }
}

impl ListWriter {
    /// A listing for a connection that speaks `version`.
    pub fn for_version(version: u16) -> ListWriter {
        ListWriter {
            batch: Vec::new(),
            batch_len: 2,
            count: 0,
            version,
        }
    }

    pub fn push<W: Write + ?Sized>(&mut self, w: &mut W, entry: Entry) -> Result<()> {
        if entry.path.len() > MAX_PATH_LEN {
            return Err(ProtocolError::TooLarge {
                frame: "ENTRIES path",
                len: entry.path.len() as u64,
                max: MAX_PATH_LEN,
            });
        }
        let len = entry_len_for(&entry, self.version);
        if self.batch_len + len > MAX_CONTROL_PAYLOAD || self.batch.len() == usize::from(u16::MAX) {
            self.flush_batch(w)?;
        }
        self.batch_len += len;
        self.batch.push(entry);
        self.count += 1;
        Ok(())
    }

    fn flush_batch<W: Write + ?Sized>(&mut self, w: &mut W) -> Result<()> {
        if !self.batch.is_empty() {
            write_entries_for(w, &self.batch, self.version)?;
            self.batch.clear();
            self.batch_len = 2;
        }
        Ok(())
    }

    /// Sends what is left and the LIST_END frame.
    pub fn finish<W: Write + ?Sized>(mut self, w: &mut W) -> Result<()> {
        self.flush_batch(w)?;
        write_frame(w, frame::LIST_END, &self.count.to_be_bytes())
    }
}

pub fn write_file_header<W: Write + ?Sized>(w: &mut W, h: &FileHeader) -> Result<()> {
    write_file_header_for(w, h, VERSION)
}

/// Encodes a FILE header for a connection that speaks `version` (before
/// version 5: no mode).
pub fn write_file_header_for<W: Write + ?Sized>(
    w: &mut W,
    h: &FileHeader,
    version: u16,
) -> Result<()> {
    let mut p = PayloadBuilder::default();
    p.u64(h.size);
    p.u64(h.offset);
    p.i64(h.mtime);
    p.u32(h.mtime_nanos);
    if version >= SYNC_VERSION {
        p.u16(h.mode & MODE_MASK);
    }
    write_frame(w, frame::FILE, p.as_slice())
}

/// Writes a DATA frame header announcing `len` payload bytes; the caller
/// writes exactly that many bytes next (so bodies can go out with sendfile).
pub fn write_data_header<W: Write + ?Sized>(w: &mut W, len: u32) -> Result<()> {
    if len as usize > MAX_DATA_PAYLOAD {
        return Err(ProtocolError::TooLarge {
            frame: "DATA",
            len: len.into(),
            max: MAX_DATA_PAYLOAD,
        });
    }
    let mut h = [0u8; FRAME_HEADER_LEN];
    h[0] = frame::DATA;
    h[1..].copy_from_slice(&len.to_be_bytes());
    w.write_all(&h)?;
    Ok(())
}

pub fn write_trailer<W: Write + ?Sized>(w: &mut W, t: &Trailer) -> Result<()> {
    if t.digest.len() > MAX_DIGEST_LEN {
        return Err(ProtocolError::TooLarge {
            frame: "END digest",
            len: t.digest.len() as u64,
            max: MAX_DIGEST_LEN,
        });
    }
    let mut p = PayloadBuilder::default();
    p.u8(t.algorithm.code());
    p.u8(t.digest.len() as u8);
    p.raw(&t.digest);
    write_frame(w, frame::END, p.as_slice())
}

pub fn write_auth_challenge<W: Write + ?Sized>(w: &mut W, nonce: &[u8; AUTH_LEN]) -> Result<()> {
    write_frame(w, frame::AUTH_CHALLENGE, nonce)
}

pub fn write_auth_ok<W: Write + ?Sized>(w: &mut W, proof: &[u8; AUTH_LEN]) -> Result<()> {
    write_frame(w, frame::AUTH_OK, proof)
}

/// The token handshake's arithmetic, shared by both sides. The token never
/// crosses the wire: each side proves it knows the token with a BLAKE3
/// keyed hash over both nonces and the channel binding (a TLS exporter
/// value unique to the connection), so a recorded exchange cannot be
/// replayed (the server's nonce is fresh for every connection) and a proof
/// relayed from another connection is worthless (its binding differs).
///
/// Versions 3 to 5 (spoken only in the clear) had no channel to bind to:
/// their proofs cover the two nonces alone, under a key derived with their
/// own context string. [`Keys`] holds both keys and picks by version.
pub mod auth {
    use super::AUTH_LEN;

    const CONTEXT: &str = "fxfer 2026-12 token authentication v6";
    /// The context of versions 3 to 5.
    const CONTEXT_V3: &str = "fxfer 2026-11 token authentication v3";
    /// The first version whose proofs cover a channel binding.
    pub const BOUND_VERSION: u16 = 6;

    /// The MAC key derived from a shared token (version 6).
    pub fn key(token: &[u8]) -> [u8; 32] {
        blake3::derive_key(CONTEXT, token)
    }

    /// What the client sends: proof over (server nonce, client nonce,
    /// channel binding).
    pub fn client_mac(
        key: &[u8; 32],
        server: &[u8; AUTH_LEN],
        client: &[u8; AUTH_LEN],
        binding: &[u8; 32],
    ) -> [u8; 32] {
        mac(key, b"client", server, client, binding)
    }

    /// What the server answers: proof over (client nonce, server nonce,
    /// channel binding).
    pub fn server_proof(
        key: &[u8; 32],
        server: &[u8; AUTH_LEN],
        client: &[u8; AUTH_LEN],
        binding: &[u8; 32],
    ) -> [u8; 32] {
        mac(key, b"server", client, server, binding)
    }

    fn mac(key: &[u8; 32], who: &[u8], a: &[u8], b: &[u8], binding: &[u8]) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(key);
        h.update(who).update(a).update(b).update(binding);
        *h.finalize().as_bytes()
    }

    /// A token's keys for every version a server may speak, derived once.
    #[derive(Clone, Copy)]
    pub struct Keys {
        bound: [u8; 32],
        v3: [u8; 32],
    }

    impl Keys {
        pub fn new(token: &[u8]) -> Keys {
            Keys {
                bound: key(token),
                v3: blake3::derive_key(CONTEXT_V3, token),
            }
        }

        /// The MAC a client speaking `version` sends: over the channel
        /// binding from version 6 on, over the nonces alone before.
        pub fn client_mac(
            &self,
            version: u16,
            server: &[u8; AUTH_LEN],
            client: &[u8; AUTH_LEN],
            binding: &[u8; 32],
        ) -> [u8; 32] {
            if version >= BOUND_VERSION {
                client_mac(&self.bound, server, client, binding)
            } else {
                mac(&self.v3, b"client", server, client, &[])
            }
        }

        /// The server's proof on a connection speaking `version`.
        pub fn server_proof(
            &self,
            version: u16,
            server: &[u8; AUTH_LEN],
            client: &[u8; AUTH_LEN],
            binding: &[u8; 32],
        ) -> [u8; 32] {
            if version >= BOUND_VERSION {
                server_proof(&self.bound, server, client, binding)
            } else {
                mac(&self.v3, b"server", client, server, &[])
            }
        }
    }

    impl std::fmt::Debug for Keys {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Keys(..)")
        }
    }

    /// Compares MACs in constant time (blake3::Hash's equality is).
    pub fn verify(expected: &[u8; 32], got: &[u8; 32]) -> bool {
        blake3::Hash::from(*expected) == blake3::Hash::from(*got)
    }
}

pub fn write_error<W: Write + ?Sized>(w: &mut W, e: &ErrorFrame) -> Result<()> {
    let mut p = PayloadBuilder::default();
    p.u16(e.code.code());
    p.str16(&e.message, MAX_MESSAGE_LEN, "ERROR")?;
    write_frame(w, frame::ERROR, p.as_slice())
}

#[cfg(test)]
mod tests;
