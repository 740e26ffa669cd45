//! One client connection: handshake, then requests answered in order until
//! the client says QUIT, hangs up, breaks the protocol, or the server shuts
//! down. Every refusal gets an ERROR frame and a log line; the connection
//! stays usable after a refused request.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};

use super::Shared;
use crate::error::describe_io;
use crate::paths::{display_safe, Refusal};
use crate::protocol::{
    self, Entry, EntryKind, ErrorCode, ErrorFrame, FileHeader, Hello, ListWriter, ProtocolError,
    Request, Trailer,
};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bodies up to this size are read into memory and leave in the same write
/// as their header and trailer: small files cost one syscall, not three.
const SMALL_BODY: u64 = 256 * 1024;
/// Larger bodies go out in DATA frames of this size, each sent with
/// sendfile(2) (std's `io::copy` from a file to a socket does that on Linux).
const CHUNK: u64 = 8 * 1024 * 1024;

/// How a session ended, for the disconnect log line.
struct Stats {
    requests: u64,
    files: u64,
    bytes: u64,
}

pub(super) fn run(stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    let mut stats = Stats {
        requests: 0,
        files: 0,
        bytes: 0,
    };
    let reason = match serve(stream, peer, shared, &mut stats) {
        Ok(reason) => reason,
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

fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    stats: &mut Stats,
) -> Result<String, ProtocolError> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut reader = BufReader::with_capacity(16 * 1024, stream.try_clone()?);
    let mut writer = BufWriter::with_capacity(SMALL_BODY as usize + 64 * 1024, stream);

    let hello = match Hello::read_from(&mut reader) {
        Ok(h) => h,
        Err(ProtocolError::BadMagic) => {
            warn!("{peer}: refused: not an fxfer client (bad magic bytes)");
            return Ok("refused".into());
        }
        Err(ProtocolError::Closed) => return Ok("closed before handshake".into()),
        Err(e) => {
            warn!("{peer}: refused: handshake failed: {e}");
            return Ok("refused".into());
        }
    };
    // Answer in the client's version when we speak it, else in our best
    // one (and then refuse, naming what we speak).
    let agreed = if protocol::is_supported(hello.version) {
        hello.version
    } else {
        protocol::VERSION
    };
    Hello {
        version: agreed,
        flags: 0,
    }
    .write_to(&mut writer)?;
    if !protocol::is_supported(hello.version) {
        let msg = format!(
            "unsupported protocol version {}; this server speaks version {}",
            hello.version,
            protocol::supported_versions_text()
        );
        warn!("{peer}: refused: {msg}");
        protocol::write_error(
            &mut writer,
            &ErrorFrame::new(ErrorCode::UnsupportedVersion, msg),
        )?;
        writer.flush()?;
        linger_close(&mut reader);
        return Ok("refused".into());
    }
    writer.get_ref().set_read_timeout(Some(IDLE_TIMEOUT))?;

    let mut small_buf = Vec::with_capacity(SMALL_BODY as usize);
    loop {
        // Answers to pipelined requests are coalesced: flush only when no
        // complete request is already waiting in our buffer (a partial one
        // may never be completed while the client waits for our answers).
        if !holds_complete_frame(reader.buffer()) {
            writer.flush()?;
        }
        if shared.shutting_down.load(Ordering::SeqCst) {
            writer.flush()?;
            return Ok("server shutting down".into());
        }
        let req = match Request::read_from(&mut reader) {
            Ok(r) => r,
            Err(ProtocolError::Closed) => return Ok("client hung up".into()),
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
                return Ok("client quit".into());
            }
            Request::List { path, recursive } => list(&mut writer, peer, shared, &path, recursive)?,
            Request::Get { path, offset } => {
                if let Some(sent) = get(&mut writer, peer, shared, &path, offset, &mut small_buf)? {
                    stats.files += 1;
                    stats.bytes += sent;
                }
            }
        }
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
/// the connection, and the client could lose our ERROR frame.
fn linger_close(reader: &mut BufReader<TcpStream>) {
    let sock = reader.get_ref();
    let _ = sock.shutdown(std::net::Shutdown::Write);
    let _ = sock.set_read_timeout(Some(Duration::from_millis(500)));
    let mut sink = [0u8; 8192];
    let mut budget = 1024 * 1024;
    while budget > 0 {
        match reader.get_mut().read(&mut sink) {
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
fn refusal_frame(r: Refusal) -> (ErrorCode, String) {
    match r {
        Refusal::Forbidden(why) => (ErrorCode::ForbiddenPath, format!("forbidden path: {why}")),
        Refusal::NotFound => (ErrorCode::NotFound, "no such file on the server".into()),
        Refusal::Io(e) => io_frame(&e),
    }
}

fn io_frame(e: &io::Error) -> (ErrorCode, String) {
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

fn list(
    w: &mut BufWriter<TcpStream>,
    peer: SocketAddr,
    shared: &Shared,
    path: &str,
    recursive: bool,
) -> Result<(), ProtocolError> {
    let dir = match shared.root.resolve(path, true) {
        Ok(d) => d,
        Err(r) => {
            let (code, msg) = refusal_frame(r);
            return refuse(w, peer, "LIST", path, code, msg);
        }
    };
    if !dir.is_dir() {
        let msg = "not a folder".to_string();
        return refuse(w, peer, "LIST", path, ErrorCode::NotRegularFile, msg);
    }
    let mut lw = ListWriter::default();
    // Walk real folders but name entries by the path the client asked for,
    // so listing through a symlinked folder gives names under that link.
    let mut stack = vec![(dir, path.to_string())];
    while let Some((real, logical)) = stack.pop() {
        let mut names: Vec<String> = match fs::read_dir(&real) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .filter_map(|e| match e.file_name().into_string() {
                    Ok(n) => Some(n),
                    Err(n) => {
                        debug!("{peer}: not listing non-UTF-8 name {n:?}");
                        None
                    }
                })
                .collect(),
            Err(e) => {
                let (code, msg) = io_frame(&e);
                // Mid-listing failures end the listing with an error frame.
                return refuse(w, peer, "LIST", path, code, msg);
            }
        };
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            let rel = if logical.is_empty() {
                name.clone()
            } else {
                format!("{logical}/{name}")
            };
            // Names no client could fetch are not offered.
            if name.contains('\\') || rel.len() > protocol::MAX_PATH_LEN {
                debug!(
                    "{peer}: not listing {:?}: not a valid request path",
                    display_safe(&rel)
                );
                continue;
            }
            let p = real.join(&name);
            if let Some(entry) = list_entry(shared, &p, rel) {
                if entry.kind == EntryKind::Dir && recursive {
                    // Symlinked folders are listed but not descended into, so
                    // a link cycle cannot loop the walk.
                    if !fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
                        subdirs.push((p, entry.path.clone()));
                    }
                }
                lw.push(w, entry)?;
            }
        }
        // Depth-first, in name order.
        subdirs.reverse();
        stack.extend(subdirs);
    }
    info!(
        "{peer}: list {:?}{}",
        display_safe(if path.is_empty() { "/" } else { path }),
        if recursive { " (recursive)" } else { "" }
    );
    lw.finish(w)
}

/// The listing line for one path, or `None` for what we never show:
/// symlinks leading outside the root, and anything that is neither a
/// regular file nor a folder (FIFOs, sockets, devices).
fn list_entry(shared: &Shared, p: &Path, rel: String) -> Option<Entry> {
    let lmd = fs::symlink_metadata(p).ok()?;
    let md = if lmd.file_type().is_symlink() {
        if !shared.root.contains(p) {
            return None;
        }
        fs::metadata(p).ok()?
    } else {
        lmd
    };
    let kind = if md.is_file() {
        EntryKind::File
    } else if md.is_dir() {
        EntryKind::Dir
    } else {
        return None;
    };
    let (mtime, mtime_nanos) = mtime_of(&md);
    Some(Entry {
        path: rel,
        kind,
        size: if kind == EntryKind::File { md.len() } else { 0 },
        mtime,
        mtime_nanos,
    })
}

/// Answers a GET. Returns the bytes sent, or `None` if refused.
fn get(
    w: &mut BufWriter<TcpStream>,
    peer: SocketAddr,
    shared: &Shared,
    path: &str,
    offset: u64,
    small_buf: &mut Vec<u8>,
) -> Result<Option<u64>, ProtocolError> {
    let started = Instant::now();
    let real = match shared.root.resolve(path, false) {
        Ok(p) => p,
        Err(r) => {
            let (code, msg) = refusal_frame(r);
            refuse(w, peer, "GET", path, code, msg)?;
            return Ok(None);
        }
    };
    let shown = display_safe(path).into_owned();
    // Check the kind before opening: opening a FIFO would block this thread.
    match fs::metadata(&real) {
        Ok(md) if md.is_file() => {}
        Ok(_) => {
            let msg = "not a regular file".to_string();
            refuse(w, peer, "GET", path, ErrorCode::NotRegularFile, msg)?;
            return Ok(None);
        }
        Err(e) => {
            let (code, msg) = io_frame(&e);
            refuse(w, peer, "GET", path, code, msg)?;
            return Ok(None);
        }
    }
    let mut file = match File::open(&real) {
        Ok(f) => f,
        Err(e) => {
            let (code, msg) = io_frame(&e);
            refuse(w, peer, "GET", path, code, msg)?;
            return Ok(None);
        }
    };
    let md = match file.metadata() {
        Ok(m) if m.is_file() => m,
        Ok(_) => {
            let msg = "not a regular file".to_string();
            refuse(w, peer, "GET", path, ErrorCode::NotRegularFile, msg)?;
            return Ok(None);
        }
        Err(e) => {
            let (code, msg) = io_frame(&e);
            refuse(w, peer, "GET", path, code, msg)?;
            return Ok(None);
        }
    };
    let size = md.len();
    if offset > size {
        let msg = format!("offset {offset} is beyond the end of the file ({size} bytes)");
        refuse(w, peer, "GET", path, ErrorCode::BadRequest, msg)?;
        return Ok(None);
    }
    let (mtime, mtime_nanos) = mtime_of(&md);
    let header = FileHeader {
        size,
        offset,
        mtime,
        mtime_nanos,
    };
    let body = header.body_len();
    if offset > 0 {
        if let Err(e) = file.seek(SeekFrom::Start(offset)) {
            let (code, msg) = io_frame(&e);
            refuse(w, peer, "GET", path, code, msg)?;
            return Ok(None);
        }
    }

    if body <= SMALL_BODY {
        small_buf.clear();
        let read = (&mut file).take(body).read_to_end(small_buf);
        match read {
            Ok(n) if n as u64 == body => {}
            Ok(n) => {
                let msg = format!("file shrank while being read ({n} of {body} bytes)");
                refuse(w, peer, "GET", path, ErrorCode::SourceChanged, msg)?;
                return Ok(None);
            }
            Err(e) => {
                let (code, msg) = io_frame(&e);
                refuse(w, peer, "GET", path, code, msg)?;
                return Ok(None);
            }
        }
        protocol::write_file_header(w, &header)?;
        if body > 0 {
            protocol::write_data_header(w, body as u32)?;
            w.write_all(small_buf)?;
        }
    } else {
        protocol::write_file_header(w, &header)?;
        w.flush()?;
        let sock = w.get_ref();
        let mut left = body;
        while left > 0 {
            let n = left.min(CHUNK);
            protocol::write_data_header(&mut &*sock, n as u32)?;
            let copied = io::copy(&mut (&file).take(n), &mut &*sock)?;
            if copied < n {
                // The frame promised n bytes we no longer have; the stream
                // cannot be resynchronised, so the connection must end.
                error!(
                    "{peer}: {shown} shrank while being sent ({} of {body} bytes); closing connection",
                    body - left + copied
                );
                return Err(ProtocolError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "source file shrank during transfer",
                )));
            }
            left -= n;
        }
    }
    // A file that changed under us is not delivered as if complete.
    let after = file.metadata().ok();
    if after.as_ref().map(|m| (m.len(), mtime_of(m))) != Some((size, (mtime, mtime_nanos))) {
        let msg = "file changed while being sent".to_string();
        refuse(w, peer, "GET", path, ErrorCode::SourceChanged, msg)?;
        return Ok(None);
    }
    protocol::write_trailer(w, &Trailer::none())?;
    let secs = started.elapsed().as_secs_f64();
    info!(
        "{peer}: sent {shown:?} ({body} bytes from offset {offset}) in {secs:.3}s ({:.1} MB/s)",
        body as f64 / 1e6 / secs.max(1e-9)
    );
    Ok(Some(body))
}
