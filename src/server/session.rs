//! One client connection once its handshake is done (see [`admission`]):
//! requests answered in order until the client says QUIT, hangs up, breaks
//! the protocol, or the server shuts down. Every refusal gets an ERROR frame and a log line; the connection
//! stays usable after a refused request.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use log::{debug, error, info, warn};
use rustix::fs::{self as rfs, AtFlags, FileType};

use super::admission::{self, Admitted};
use super::{digest, Shared};
use crate::error::describe_io;
use crate::paths::{display_safe, Refusal, Want};
use crate::protocol::{
    self, Entry, EntryKind, ErrorCode, ErrorFrame, FileHeader, ListWriter, ProtocolError, Request,
    Stamp, Trailer,
};
use crate::ratelimit::RateLimiter;
use crate::transport::{Batch, Link, Stream};

/// Bodies up to this size are read into memory and leave in the same write
/// as their header and trailer: small files cost one syscall, not three.
const SMALL_BODY: u64 = 256 * 1024;
/// Answers to pipelined requests wait in our buffer until this much is
/// there (or no request is left to answer): a batch of small files leaves
/// in full TLS records and few writes, yet the client gets its first
/// answers of a long batch without waiting for the last.
const FLUSH_AT: usize = 64 * 1024;
/// Larger bodies go out in DATA frames of this size, each sent with
/// sendfile(2) (std's `io::copy` from a file to a socket does that on Linux).
const CHUNK: u64 = 8 * 1024 * 1024;

/// How a session ended, for the disconnect log line.
struct Stats {
    requests: u64,
    files: u64,
    bytes: u64,
}

pub(super) fn run(admitted: Admitted) {
    let peer = admitted.peer;
    let mut stats = Stats {
        requests: 0,
        files: 0,
        bytes: 0,
    };
    let reason = match serve(admitted, &mut stats) {
        Ok(reason) => reason,
        Err(ProtocolError::Io(e)) => {
            warn!("{peer}: connection error: {}", describe_io(&e));
            "error".to_string()
        }
        Err(e) => {
            warn!("{peer}: connection error: {e}");
            "error".to_string()
        }
    };
    info!(
        "{peer}: disconnected ({reason}; {} requests, {} files, {} bytes sent)",
        stats.requests, stats.files, stats.bytes
    );
}

/// The session's socket for reading, shared with its writer and the
/// registry (one descriptor, never duplicated).
pub(super) struct Sock(Link);

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

/// What the session reads: first the bytes the handshake phase read
/// beyond the handshake (pipelined requests), then the socket.
struct Incoming {
    early: Vec<u8>,
    at: usize,
    sock: Sock,
}

impl Read for Incoming {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at < self.early.len() {
            let n = buf.len().min(self.early.len() - self.at);
            buf[..n].copy_from_slice(&self.early[self.at..self.at + n]);
            self.at += n;
            return Ok(n);
        }
        self.sock.read(buf)
    }
}

fn serve(a: Admitted, stats: &mut Stats) -> Result<String, ProtocolError> {
    let Admitted {
        stream,
        peer,
        shared,
        early,
        owed,
        version: agreed,
        tls,
        slot: _slot,
    } = a;
    let shared = &*shared;
    let cfg = &shared.settings;
    stream.set_read_timeout(Some(cfg.idle_timeout))?;
    stream.set_write_timeout(Some(cfg.write_timeout))?;
    let link = Link::new(Stream::server(tls.map(|b| *b), stream)?);
    let mut reader = BufReader::with_capacity(
        16 * 1024,
        Incoming {
            early,
            at: 0,
            sock: Sock(link.clone()),
        },
    );
    let mut writer = Batch::new(link, SMALL_BODY as usize + 64 * 1024);
    // The handshake phase's last words (our greeting, AUTH_OK) go out with
    // the first answer.
    writer.write_all(&owed)?;

    let mut small_buf = Vec::with_capacity(SMALL_BODY as usize);
    // --limit-rate: this connection's own budget.
    let limiter = cfg.limit_rate.map(RateLimiter::new);
    loop {
        // Answers to pipelined requests are coalesced: flush only when no
        // complete request is already waiting in our buffer (a partial one
        // may never be completed while the client waits for our answers),
        // or when a batch's worth is ready.
        if !holds_complete_frame(reader.buffer()) || writer.pending() >= FLUSH_AT {
            writer.flush()?;
        }
        if shared.registry.shutting_down.load(Ordering::SeqCst) {
            writer.flush()?;
            return Ok("server shutting down".into());
        }
        // A whole request must arrive within the idle time-out: trickling
        // a frame byte by byte does not keep a connection alive.
        let deadline = Instant::now() + cfg.idle_timeout;
        let req = match Request::read_versioned(&mut Timed::new(&mut reader, deadline), agreed) {
            Ok(r) => r,
            Err(ProtocolError::Closed) => return Ok("client hung up".into()),
            Err(ProtocolError::Io(_)) if shared.registry.shutting_down.load(Ordering::SeqCst) => {
                return Ok("server shutting down".into());
            }
            Err(ProtocolError::Io(e)) => {
                return Ok(format!("connection lost: {}", describe_io(&e)));
            }
            Err(e) => {
                // Framing is lost; say why and close.
                warn!("{peer}: refused: bad request: {e}");
                let _ = protocol::write_error(
                    &mut writer,
                    &ErrorFrame::new(ErrorCode::BadRequest, format!("bad request: {e}")),
                );
                let _ = writer.flush();
                linger_close(&mut reader);
                return Ok("protocol error".into());
            }
        };
        stats.requests += 1;
        match req {
            Request::Quit => {
                writer.flush()?;
                writer.link().lock().close_write();
                return Ok("client quit".into());
            }
            Request::Auth { .. } => {
                warn!("{peer}: refused: AUTH outside the handshake");
                protocol::write_error(
                    &mut writer,
                    &ErrorFrame::new(
                        ErrorCode::BadRequest,
                        "AUTH is only valid right after the greeting",
                    ),
                )?;
            }
            Request::List {
                path,
                recursive,
                digests,
            } => {
                let want = ListRequest {
                    path: &path,
                    recursive,
                    digests,
                    version: agreed,
                };
                list(&mut writer, peer, shared, want)?
            }
            Request::Get {
                path,
                offset,
                if_unchanged,
                len,
            } => {
                let want = GetRequest {
                    path: &path,
                    offset,
                    if_unchanged,
                    len,
                    version: agreed,
                };
                let pace = limiter.as_ref();
                if let Some(sent) = get(&mut writer, peer, shared, want, &mut small_buf, pace)? {
                    stats.files += 1;
                    stats.bytes += sent;
                }
            }
        }
    }
}

/// Reads with a deadline shared by every read of one request.
struct Timed<'a> {
    r: &'a mut BufReader<Incoming>,
    deadline: Instant,
}

impl<'a> Timed<'a> {
    fn new(r: &'a mut BufReader<Incoming>, deadline: Instant) -> Self {
        Timed { r, deadline }
    }
}

impl Read for Timed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.r.buffer().is_empty() {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no whole request within the idle time-out",
                ));
            }
            self.r
                .get_ref()
                .sock
                .0
                .lock()
                .socket()
                .set_read_timeout(Some(left))?;
        }
        self.r.read(buf)
    }
}

/// Whether `buf` starts with a whole frame.
fn holds_complete_frame(buf: &[u8]) -> bool {
    buf.len() >= protocol::FRAME_HEADER_LEN
        && buf.len() - protocol::FRAME_HEADER_LEN
            >= u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize
}

/// Before closing on an error, stop writing and drain (briefly, boundedly)
/// what the client already sent: closing a socket with unread data resets
/// the connection, and the client could lose our ERROR frame. The drain has
/// one deadline in all, not one per read, so a client trickling bytes
/// cannot stretch it.
fn linger_close(reader: &mut BufReader<Incoming>) {
    let sock = {
        let mut stream = reader.get_ref().sock.0.lock();
        stream.close_write();
        Arc::clone(stream.socket())
    };
    let deadline = Instant::now() + admission::CLOSE_GRACE;
    let mut sink = [0u8; 8192];
    let mut budget = 1024 * 1024;
    while budget > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || sock.set_read_timeout(Some(left)).is_err() {
            break;
        }
        // Raw: what it says no longer matters.
        match (&*sock).read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => budget -= n.min(budget),
        }
    }
}

/// Sends an ERROR frame for a refused request, and logs why.
fn refuse<W: Write>(
    w: &mut W,
    peer: SocketAddr,
    what: &str,
    path: &str,
    code: ErrorCode,
    message: String,
) -> Result<(), ProtocolError> {
    warn!(
        "{peer}: refused {what} {:?}: {} ({message})",
        display_safe(path),
        code
    );
    protocol::write_error(w, &ErrorFrame::new(code, message))
}

/// Error frames carry the reason only: the client knows which path it asked
/// for, and the log line names it.
fn refusal_frame(r: Refusal, want: Want) -> (ErrorCode, String) {
    match r {
        Refusal::Forbidden(why) => (ErrorCode::ForbiddenPath, format!("forbidden path: {why}")),
        Refusal::NotFound => (ErrorCode::NotFound, "no such file on the server".into()),
        Refusal::WrongKind if want == Want::Dir => {
            (ErrorCode::NotRegularFile, "not a folder".into())
        }
        Refusal::WrongKind => (ErrorCode::NotRegularFile, "not a regular file".into()),
        Refusal::Io(e) => io_frame(&e),
    }
}

fn io_frame(e: &io::Error) -> (ErrorCode, String) {
    // A name longer than the system allows (a 4,096-byte path is within
    // the protocol's limit but not the kernel's) cannot exist.
    if e.raw_os_error() == Some(libc::ENAMETOOLONG) {
        return (ErrorCode::NotFound, "no such file on the server".into());
    }
    let code = match e.kind() {
        io::ErrorKind::PermissionDenied => ErrorCode::PermissionDenied,
        io::ErrorKind::NotFound => ErrorCode::NotFound,
        _ => ErrorCode::Internal,
    };
    (code, format!("server cannot read it: {}", describe_io(e)))
}

fn mtime_of(md: &fs::Metadata) -> (i64, u32) {
    (md.mtime(), md.mtime_nsec().clamp(0, 999_999_999) as u32)
}

/// What a LIST asked for, on a connection speaking `version`.
struct ListRequest<'a> {
    path: &'a str,
    recursive: bool,
    digests: bool,
    version: u16,
}

fn list(
    w: &mut Batch,
    peer: SocketAddr,
    shared: &Shared,
    want: ListRequest,
) -> Result<(), ProtocolError> {
    let ListRequest {
        path,
        recursive,
        digests,
        version,
    } = want;
    let dir = match shared.root.open(path, Want::Dir) {
        Ok(d) => d,
        // Since version 5 a file lists as its own entry (what fetching only
        // what changed needs to know about one named file).
        Err(Refusal::WrongKind) if !path.is_empty() && version >= protocol::SYNC_VERSION => {
            return list_file(w, peer, shared, path, digests, version)
        }
        Err(r) => {
            let (code, msg) = refusal_frame(r, Want::Dir);
            return refuse(w, peer, "LIST", path, code, msg);
        }
    };
    let mut lw = ListWriter::for_version(version);
    // Entries are named by the path the client asked for, so a symlinked
    // folder lists under the link's name. Pending subfolders are kept as
    // paths and opened one at a time (beneath the root, like any request),
    // so a deep tree cannot use up file descriptors.
    let mut pending: Vec<String> = Vec::new();
    let mut current = Some((dir, path.to_string()));
    loop {
        let (dirfd, logical) = match current.take() {
            Some(c) => c,
            None => match pending.pop() {
                None => break,
                Some(rel) => match shared.root.open(&rel, Want::Dir) {
                    Ok(fd) => (fd, rel),
                    Err(r) => {
                        // The folder itself is listed; what it holds cannot
                        // be, and one such folder must not sink the rest.
                        let (_, msg) = refusal_frame(r, Want::Dir);
                        warn!(
                            "{peer}: list: leaving out the contents of {:?}: {msg}",
                            display_safe(&rel)
                        );
                        continue;
                    }
                },
            },
        };
        // The stream takes the descriptor we opened (Dir::read_from would
        // open the folder a second time, through "."); its entries are
        // then looked up relative to that same descriptor.
        let mut dir = match rfs::Dir::new(dirfd) {
            Ok(d) => d,
            Err(e) => {
                let (code, msg) = io_frame(&e.into());
                return refuse(w, peer, "LIST", path, code, msg);
            }
        };
        let mut names: Vec<String> = dir
            .by_ref()
            .filter_map(Result::ok)
            .filter_map(|e| match e.file_name().to_str() {
                Ok(n) => Some(n.to_string()),
                Err(_) => {
                    debug!("{peer}: not listing a non-UTF-8 name in {logical:?}");
                    None
                }
            })
            .filter(|n| n != "." && n != "..")
            .collect();
        let dirfd = dir.fd().map_err(io::Error::from)?;
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            let rel = if logical.is_empty() {
                name.clone()
            } else {
                format!("{logical}/{name}")
            };
            // Names no client could fetch, and hidden ones, are not offered.
            if !shared.root.visible(&name) || name.contains('\\') {
                continue;
            }
            if rel.len() > MAX_SERVABLE_PATH {
                info!(
                    "{peer}: list: leaving out {:?}... ({} bytes): a path that long cannot be served",
                    display_safe(short_prefix(&rel)),
                    rel.len()
                );
                continue;
            }
            let Some((mut entry, is_link)) = list_entry(shared, dirfd, &name, rel) else {
                continue;
            };
            if digests && entry.kind == EntryKind::File {
                // A listing without a digest it was asked for would be
                // silently partial: refuse it whole instead.
                match digest::of_listed(shared, &entry.path) {
                    Ok(d) => entry.digest = Some(d),
                    Err(r) => {
                        let (code, msg) = refusal_frame(r, Want::File);
                        return refuse(w, peer, "LIST", &entry.path, code, msg);
                    }
                }
            }
            // Symlinked folders are listed but not descended into, so a
            // link cycle cannot loop the walk.
            if entry.kind == EntryKind::Dir && recursive && !is_link {
                subdirs.push(entry.path.clone());
            }
            lw.push(w, entry)?;
        }
        drop(dir);
        // Depth-first, in name order.
        subdirs.reverse();
        pending.extend(subdirs);
    }
    info!(
        "{peer}: list {:?}{}",
        display_safe(if path.is_empty() { "/" } else { path }),
        if recursive { " (recursive)" } else { "" }
    );
    lw.finish(w)
}

/// The longest path a request can name and the server open: the wire
/// allows [`protocol::MAX_PATH_LEN`] bytes, but the kernel wants the path
/// and its terminating NUL within PATH_MAX.
const MAX_SERVABLE_PATH: usize = {
    let kernel = libc::PATH_MAX as usize - 1;
    if kernel < protocol::MAX_PATH_LEN {
        kernel
    } else {
        protocol::MAX_PATH_LEN
    }
};

/// The first few dozen bytes of a (long) path, cut on a character boundary.
fn short_prefix(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The listing line for `name` in `dir` (and whether it is a symlink), or
/// `None` for what we never show: symlinks leading outside the root, and
/// anything that is neither a regular file nor a folder (FIFOs, sockets,
/// devices).
fn list_entry(
    shared: &Shared,
    dir: BorrowedFd<'_>,
    name: &str,
    rel: String,
) -> Option<(Entry, bool)> {
    let mut st = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
    let mut kind = FileType::from_raw_mode(st.st_mode as _);
    let is_link = kind == FileType::Symlink;
    if is_link {
        // Follow it the way a GET would: beneath the root only.
        let fd = shared.root.open(&rel, Want::Any).ok()?;
        st = rfs::fstat(&fd).ok()?;
        kind = FileType::from_raw_mode(st.st_mode as _);
    }
    let kind = match kind {
        FileType::RegularFile => EntryKind::File,
        FileType::Directory => EntryKind::Dir,
        _ => return None,
    };
    Some((
        Entry {
            path: rel,
            kind,
            size: if kind == EntryKind::File {
                st.st_size as u64
            } else {
                0
            },
            mtime: st.st_mtime as i64,
            mtime_nanos: (st.st_mtime_nsec as u32).min(999_999_999),
            mode: st.st_mode as u16 & protocol::MODE_MASK,
            digest: None,
        },
        is_link,
    ))
}

/// Answers a LIST of one regular file: its entry alone.
fn list_file(
    w: &mut Batch,
    peer: SocketAddr,
    shared: &Shared,
    path: &str,
    digests: bool,
    version: u16,
) -> Result<(), ProtocolError> {
    let entry = digest::listed_file(shared, path, digests);
    match entry {
        Ok(e) => {
            let mut lw = ListWriter::for_version(version);
            lw.push(w, e)?;
            info!("{peer}: list {:?} (one file)", display_safe(path));
            lw.finish(w)
        }
        Err(r) => {
            let (code, msg) = refusal_frame(r, Want::File);
            refuse(w, peer, "LIST", path, code, msg)
        }
    }
}

/// What a GET asked for.
struct GetRequest<'a> {
    path: &'a str,
    offset: u64,
    if_unchanged: Option<Stamp>,
    /// A ranged GET: at most this many bytes (a BLAKE3 subtree, checked
    /// when the request was read).
    len: Option<u64>,
    /// The protocol version of the connection.
    version: u16,
}

/// Answers a GET: FILE, DATA..., END with the BLAKE3 digest of the whole
/// file, or for a ranged GET the chaining value of the range sent (from
/// version 7, an empty file's range is the whole file). Returns
/// the body bytes sent, or `None` if refused.
fn get(
    w: &mut Batch,
    peer: SocketAddr,
    shared: &Shared,
    want: GetRequest,
    small_buf: &mut Vec<u8>,
    limiter: Option<&RateLimiter>,
) -> Result<Option<u64>, ProtocolError> {
    let started = Instant::now();
    let path = want.path;
    macro_rules! refuse_with {
        ($code:expr, $msg:expr) => {{
            refuse(w, peer, "GET", path, $code, $msg)?;
            return Ok(None);
        }};
    }
    let mut file = match shared.root.open(path, Want::File) {
        Ok(fd) => File::from(fd),
        Err(r) => {
            let (code, msg) = refusal_frame(r, Want::File);
            refuse_with!(code, msg)
        }
    };
    let shown = display_safe(path).into_owned();
    let md = match file.metadata() {
        Ok(m) if m.is_file() => m,
        Ok(_) => refuse_with!(ErrorCode::NotRegularFile, "not a regular file".into()),
        Err(e) => {
            let (code, msg) = io_frame(&e);
            refuse_with!(code, msg)
        }
    };
    let size = md.len();
    let (mtime, mtime_nanos) = mtime_of(&md);
    // Which version of the file this is, down to the ctime: a digest is
    // only ever paired with the bytes it was computed from.
    let key = digest::Key::of(&md);
    let stamp = Stamp {
        size,
        mtime,
        mtime_nanos,
    };
    // A resume only holds for the version of the file the client has. A
    // piece of another version is useless to a client fetching pieces, so
    // a ranged GET is refused instead of answered with the whole file.
    let offset = match want.if_unchanged {
        Some(theirs) if theirs != stamp && want.len.is_some() => refuse_with!(
            ErrorCode::SourceChanged,
            "file changed since the client's first piece of it".to_string()
        ),
        Some(theirs) if theirs != stamp => {
            info!("{peer}: {shown:?} changed since the client's partial copy; sending it whole");
            0
        }
        _ => want.offset,
    };
    // From version 7 an empty file's range from offset 0 is the whole
    // file, and answered as a plain GET of it: BLAKE3 has no chaining
    // value for an empty subtree, and a client probing a file of unknown
    // size would otherwise need a second request. Older connections keep
    // the refusal below, which their clients answer by asking again.
    let len = want
        .len
        .filter(|_| !(size == 0 && offset == 0 && want.version >= protocol::EMPTY_RANGE_VERSION));
    if offset > size || (len.is_some() && offset == size) {
        refuse_with!(
            ErrorCode::BadRequest,
            format!("offset {offset} is beyond the end of the file ({size} bytes)")
        );
    }
    let header = FileHeader {
        size,
        offset,
        mtime,
        mtime_nanos,
        mode: md.mode() as u16 & protocol::MODE_MASK,
    };
    let body = header.range_len(len);
    // What END carries: the whole file's digest, or the range's chaining
    // value.
    let range = len.map(|_| (offset, body));

    let digest = if size <= SMALL_BODY {
        // Small: read it whole (the digest covers the whole file even when
        // only a tail is sent), then header, body and trailer leave in one
        // write.
        small_buf.clear();
        match (&mut file).take(size).read_to_end(small_buf) {
            Ok(n) if n as u64 == size => {}
            Ok(n) => refuse_with!(
                ErrorCode::SourceChanged,
                format!("file shrank while being read ({n} of {size} bytes)")
            ),
            Err(e) => {
                let (code, msg) = io_frame(&e);
                refuse_with!(code, msg)
            }
        }
        protocol::write_file_header_for(w, &header, want.version)?;
        if let Some(l) = limiter {
            pace(l, body);
        }
        let piece = &small_buf[offset as usize..(offset + body) as usize];
        if body > 0 {
            protocol::write_data_header(w, body as u32)?;
            w.write_all(piece)?;
        }
        match range {
            Some((at, _)) => digest::subtree(at, piece),
            None => {
                let d = *blake3::hash(small_buf).as_bytes();
                // Kept for listings with digests (a re-run's comparison).
                shared.digests.put(key, d);
                d
            }
        }
    } else {
        protocol::write_file_header_for(w, &header, want.version)?;
        w.flush()?;
        // A range's chaining value is cached apart from the file's digest.
        let key = key.with_range(range);
        let cached = shared.digests.get(&key);
        let cancel = AtomicBool::new(false);
        let (sent, hashed) = std::thread::scope(|scope| {
            // Hash on the second core while sendfile streams the body.
            let hasher = match cached {
                Some(_) => None,
                None => std::thread::Builder::new()
                    .name("hash".into())
                    .stack_size(128 * 1024)
                    .spawn_scoped(scope, || digest::hash(&file, size, range, &cancel))
                    .ok(),
            };
            let sent = send_body(w.link(), &file, offset, body, limiter);
            if sent.is_err() {
                cancel.store(true, Ordering::Relaxed);
            }
            let hashed = match hasher {
                Some(h) => Some(
                    h.join()
                        .unwrap_or_else(|_| Err(io::Error::other("hash thread failed"))),
                ),
                None => cached.map(Ok),
                // Could not start a thread: hash here.
            }
            .unwrap_or_else(|| digest::hash(&file, size, range, &cancel));
            (sent, hashed)
        });
        if let Err(e) = sent {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                // The frame promised bytes we no longer have; the stream
                // cannot be resynchronised, so the connection must end.
                error!("{peer}: {shown:?} shrank while being sent; closing connection");
            }
            return Err(ProtocolError::Io(e));
        }
        match hashed {
            Ok(d) => {
                if cached.is_none() {
                    shared.digests.put(key, d);
                }
                debug!(
                    "{peer}: digest of {shown:?} {}",
                    if cached.is_some() {
                        "from cache"
                    } else {
                        "computed while sending"
                    }
                );
                d
            }
            // Running out of bytes means the file shrank; anything else is a
            // read error, not a change.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => refuse_with!(
                ErrorCode::SourceChanged,
                format!("file changed while being sent: {}", describe_io(&e))
            ),
            Err(e) => {
                let (code, msg) = io_frame(&e);
                refuse_with!(code, msg)
            }
        }
    };
    // A file that changed under us (even in place, keeping its size and
    // mtime: the ctime still moves) is not delivered as if complete.
    if file.metadata().ok().map(|m| digest::Key::of(&m)) != Some(key) {
        refuse_with!(
            ErrorCode::SourceChanged,
            "file changed while being sent".to_string()
        );
    }
    protocol::write_trailer(
        w,
        &if range.is_some() {
            Trailer::blake3_subtree(digest)
        } else {
            Trailer::blake3(digest)
        },
    )?;
    let secs = started.elapsed().as_secs_f64();
    info!(
        "{peer}: sent {shown:?} ({body} bytes from offset {offset}) in {secs:.3}s ({:.1} MB/s)",
        body as f64 / 1e6 / secs.max(1e-9)
    );
    Ok(Some(body))
}

/// Waits until `n` bytes may go (a small body leaves in one write).
fn pace(l: &RateLimiter, mut n: u64) {
    while n > 0 {
        n -= l.grant(n.min(usize::MAX as u64) as usize) as u64;
    }
}

/// Sends `body` bytes of the file from `offset` as DATA frames, at the
/// limiter's pace when there is one. Without TLS each body goes out with
/// sendfile(2), from the page cache to the socket without a copy through
/// this process. A file that ends early is an `UnexpectedEof` error.
fn send_body(
    link: &Link,
    file: &File,
    offset: u64,
    body: u64,
    limiter: Option<&RateLimiter>,
) -> io::Result<()> {
    let mut stream = link.lock();
    let mut buf = Vec::new();
    let mut pos = offset;
    let end = offset + body;
    while pos < end {
        let n = (end - pos).min(CHUNK);
        protocol::write_data_header(&mut *stream, n as u32).map_err(|e| match e {
            ProtocolError::Io(e) => e,
            other => io::Error::other(other.to_string()),
        })?;
        let mut left = n;
        while left > 0 {
            let want = left.min(usize::MAX as u64) as usize;
            let granted = limiter.map_or(want, |l| l.grant(want)) as u64;
            stream.send_file(file, pos, granted, &mut buf)?;
            pos += granted;
            left -= granted;
        }
    }
    Ok(())
}
