//! A large file fetched in pieces over several connections at once, the way
//! aria2's `-s` splits a download: each piece is a ranged GET, written in
//! place into the one part file, and hashed as it arrives into the BLAKE3
//! chaining value of its subtree (blake3's `hazmat`). The server sends the
//! same chaining value for each range; the verified values are merged into
//! the digest of the whole file, so nothing is read twice.
//!
//! Pieces are subtrees of the file's BLAKE3 tree (split the way BLAKE3
//! itself splits, see [`split`]), so they merge into the root. Every piece
//! is asked for with the stamp the listing gave, so a file that changes
//! between pieces is refused by the server and never put together from two
//! versions. Finished pieces are listed in the resume note with their
//! chaining values; a later run checks them against the bytes on disk and
//! fetches only the rest.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Mutex, RwLock};
use std::time::Instant;

use blake3::hazmat::{self, HasherExt, Mode};

use super::local::{self, Arrived, Dest, Plan};
use crate::client::{FileSink, CHUNK};
use crate::progress::{FileBar, Progress};
use crate::protocol::{DigestAlgorithm, FileHeader, Request, Stamp, Trailer, CHUNK_LEN};

/// First line of the resume note of a file fetched in pieces.
const NOTE_MAGIC: &str = "fxfer-resume 3 pieces";
/// Pieces are no smaller than this: each costs a request and a round trip.
pub const PIECE_MIN: u64 = 4 * 1024 * 1024;

/// The pieces of a file of `size` bytes, none longer than `target` (unless
/// a piece cannot be split further), as (offset, length). They are the
/// subtrees BLAKE3 itself would build, so their chaining values merge into
/// the file's digest.
pub fn split(size: u64, target: u64) -> Vec<(u64, u64)> {
    fn walk(at: u64, len: u64, target: u64, out: &mut Vec<(u64, u64)>) {
        if len <= target || len <= CHUNK_LEN {
            out.push((at, len));
            return;
        }
        let left = hazmat::left_subtree_len(len);
        walk(at, left, target, out);
        walk(at + left, len - left, target, out);
    }
    let mut out = Vec::new();
    if size > 0 {
        walk(0, size, target.max(CHUNK_LEN), &mut out);
    }
    out
}

/// Bytes `at..end` of a file of `size` bytes as the fewest whole subtrees
/// of its BLAKE3 tree, left to right: how the part of a piece that arrived
/// before an interruption, and the part still to fetch, are kept apart.
/// (`at` is on a chunk boundary; `end` too, unless it is the file's end.)
pub fn blocks(mut at: u64, end: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    while at < end {
        let room = end - at;
        let mut len = crate::protocol::max_subtree_len(at).unwrap_or(1 << 62);
        while len > room && len > CHUNK_LEN {
            len /= 2;
        }
        let len = len.min(room);
        out.push((at, len));
        at += len;
    }
    out
}

/// The digest of a file of `size` bytes from the chaining values of
/// subtrees (offset, length) that cover it; `None` if they do not, or if
/// one subtree is the whole file (its root is no merge).
pub fn merge(size: u64, cvs: &HashMap<(u64, u64), [u8; 32]>) -> Option<[u8; 32]> {
    fn walk(
        at: u64,
        len: u64,
        cvs: &HashMap<(u64, u64), [u8; 32]>,
        root: bool,
    ) -> Option<[u8; 32]> {
        if !root {
            if let Some(cv) = cvs.get(&(at, len)) {
                return Some(*cv);
            }
        }
        if len <= CHUNK_LEN {
            return None;
        }
        let l = hazmat::left_subtree_len(len);
        let left = walk(at, l, cvs, false)?;
        let right = walk(at + l, len - l, cvs, false)?;
        Some(if root {
            *hazmat::merge_subtrees_root(&left, &right, Mode::Hash).as_bytes()
        } else {
            hazmat::merge_subtrees_non_root(&left, &right, Mode::Hash)
        })
    }
    walk(0, size, cvs, true)
}

/// The chaining value of `bytes` as the subtree at `offset`.
fn subtree_hasher(offset: u64) -> blake3::Hasher {
    let mut h = blake3::Hasher::new();
    h.set_input_offset(offset);
    h
}

/// Why a file fetched in pieces did not come together.
#[derive(Debug, Clone)]
pub enum Broken {
    /// The server's file changed (or a piece failed twice to verify): start
    /// the file over as a whole.
    Changed(String),
    /// A piece could not be fetched (connection, disk, refusal). The pieces
    /// in place stay for a later resume when `keep`; `unreachable` when it
    /// was the connection's fault (for the exit code).
    Failed {
        why: String,
        keep: bool,
        unreachable: bool,
    },
    /// Ctrl-C: what is in place stays for the next run.
    Stopped,
}

struct State {
    /// The server's chaining value of each piece, once it is in place.
    done: Vec<Option<[u8; 32]>>,
    /// Of each piece not done, how many of its first bytes are on disk
    /// (from a transfer that broke off), kept for a resume.
    partial: Vec<u64>,
    /// Pieces not yet settled (done, or given up).
    open: usize,
    broken: Option<Broken>,
    /// Bytes fetched this time, of finished pieces.
    got: u64,
}

/// One file being fetched in pieces.
pub struct Segmented<'p> {
    dest: &'p Dest,
    pub name: String,
    pub plan: Plan,
    /// The version of the file every piece must come from.
    pub stamp: Stamp,
    pub pieces: Vec<(u64, u64)>,
    /// Subtrees a resume found on disk, as far as an earlier transfer of a
    /// piece got, with their chaining values. No server vouched for them:
    /// with any of these, the whole file is checked against the server's
    /// digest before it is used.
    local: Vec<((u64, u64), [u8; 32])>,
    /// The part, shared by the workers writing pieces into it; taken when
    /// the file is settled.
    file: RwLock<Option<File>>,
    state: Mutex<State>,
    bar: Mutex<FileBar<'p>>,
    started: Instant,
}

/// What became of a piece that arrived.
pub enum PieceResult {
    Done([u8; 32]),
    /// Its bytes did not match the server's chaining value.
    Corrupt(String),
    Broken(Broken),
}

/// How a file fetched in pieces ended, once its last piece settled.
pub enum Settled {
    Open,
    Arrived(Box<Arrived>),
    Broken(Broken),
    /// Every piece is in place, some from disk unverified: the whole file's
    /// digest must match the server's (this one) before it is used.
    Verify([u8; 32]),
}

/// One line of a note: a piece and what of it is on disk.
enum Saved {
    /// Finished, with the server's chaining value.
    Done([u8; 32]),
    /// Its first bytes (this many) are on disk.
    Partial(u64),
}

impl<'p> Segmented<'p> {
    /// Prepares `plan` for fetching in pieces of about `target` bytes:
    /// creates its part (or, resuming, reuses the part and whatever of the
    /// same version the note lists and the disk still holds). With `head`,
    /// the part already holds the file's first bytes, verified: they are
    /// its first piece, in place.
    pub fn open(
        dest: &'p Dest,
        progress: &'p Progress,
        plan: Plan,
        stamp: Stamp,
        target: u64,
        resume: bool,
        head: Option<local::Head>,
    ) -> io::Result<Segmented<'p>> {
        let saved = if resume && head.is_none() {
            local::read_note_with(dest, &plan, NOTE_MAGIC)
                .filter(|(s, _)| *s == stamp)
                .and_then(|(_, rest)| parse_note(&rest, stamp.size))
        } else {
            None
        };
        let file = local::open_part(dest, &plan, saved.is_some() || head.is_some(), progress)?;
        let fail = |what: &str, e: io::Error| {
            io::Error::new(e.kind(), format!("{what} {}: {e}", plan.part.display()))
        };
        let mut pieces = Vec::new();
        let mut done = Vec::new();
        let mut local = Vec::new();
        match saved {
            Some(lines) if file.metadata().is_ok_and(|m| m.len() == stamp.size) => {
                for ((at, len), what) in lines {
                    match what {
                        // Only what the disk still holds counts.
                        Some(Saved::Done(cv)) if hash_range(&file, (at, len)).ok() == Some(cv) => {
                            pieces.push((at, len));
                            done.push(Some(cv));
                        }
                        Some(Saved::Partial(n)) => {
                            let n = n - n % CHUNK_LEN;
                            for b in blocks(at, at + n) {
                                match hash_range(&file, b) {
                                    Ok(cv) => local.push((b, cv)),
                                    Err(_) => {
                                        pieces.push(b);
                                        done.push(None);
                                    }
                                }
                            }
                            for b in blocks(at + n, at + len) {
                                pieces.push(b);
                                done.push(None);
                            }
                        }
                        _ => {
                            pieces.push((at, len));
                            done.push(None);
                        }
                    }
                }
            }
            _ => {
                let kept = head.map_or(0, |h| h.len);
                file.set_len(kept).map_err(|e| fail("cannot trim", e))?;
                file.set_len(stamp.size)
                    .map_err(|e| fail("cannot size", e))?;
                pieces = split(stamp.size, target);
                done = vec![None; pieces.len()];
                if let Some(h) = head.filter(|h| h.len < pieces[0].1) {
                    // The first piece becomes the head and the fewest
                    // subtrees that fill the rest of it.
                    let rest = blocks(h.len, pieces[0].1);
                    let n = rest.len();
                    pieces.splice(0..1, std::iter::once((0, h.len)).chain(rest));
                    done.splice(
                        0..1,
                        std::iter::once(Some(h.cv)).chain(std::iter::repeat_n(None, n)),
                    );
                }
            }
        }
        let left: u64 = pieces
            .iter()
            .zip(&done)
            .filter(|(_, d)| d.is_none())
            .map(|(p, _)| p.1)
            .sum();
        let open = done.iter().filter(|d| d.is_none()).count();
        let n = pieces.len();
        let seg = Segmented {
            dest,
            name: plan.name.clone(),
            bar: Mutex::new(progress.start_file(&plan.name, left)),
            plan,
            stamp,
            pieces,
            local,
            file: RwLock::new(Some(file)),
            state: Mutex::new(State {
                done,
                partial: vec![0; n],
                open,
                broken: None,
                // The head came in this run too.
                got: head.map_or(0, |h| h.len),
            }),
            started: Instant::now(),
        };
        seg.save_note()?;
        Ok(seg)
    }

    /// The pieces still to fetch.
    pub fn todo(&self) -> Vec<usize> {
        let st = self.state.lock().unwrap();
        (0..self.pieces.len())
            .filter(|&i| st.done[i].is_none())
            .collect()
    }

    /// Bytes of this file fetched this run that a resume can use.
    pub fn got(&self) -> u64 {
        let st = self.state.lock().unwrap();
        st.got + st.partial.iter().map(|n| n - n % CHUNK_LEN).sum::<u64>()
    }

    /// Whether fetching more pieces is pointless: the file is broken.
    pub fn is_broken(&self) -> bool {
        self.state.lock().unwrap().broken.is_some()
    }

    /// The request for piece `i`.
    pub fn request(&self, i: usize) -> Request {
        let (offset, len) = self.pieces[i];
        Request::Get {
            path: self.name.clone(),
            offset,
            if_unchanged: Some(self.stamp),
            len: Some(len),
        }
    }

    /// The request that asks for the whole file's digest and none of its
    /// bytes (a GET from its end, for the same version).
    pub fn verify_request(&self) -> Request {
        Request::Get {
            path: self.name.clone(),
            offset: self.stamp.size,
            if_unchanged: Some(self.stamp),
            len: None,
        }
    }

    /// A sink that receives piece `i` into its place.
    pub fn sink(&self, i: usize) -> PieceSink<'_, 'p> {
        let (at, len) = self.pieces[i];
        self.state.lock().unwrap().partial[i] = 0;
        PieceSink {
            seg: self,
            index: i,
            at,
            end: at + len,
            hasher: subtree_hasher(at),
            kicked: at,
            spare: None,
            error: None,
        }
    }

    /// Checks what arrived for piece `i` against the server's trailer.
    pub fn check(&self, sink: PieceSink, trailer: &Trailer) -> PieceResult {
        if let Some(b) = sink.error {
            return PieceResult::Broken(b);
        }
        let ours = sink.hasher.finalize_non_root();
        if trailer.algorithm != DigestAlgorithm::Blake3Subtree || trailer.digest.len() != 32 {
            return PieceResult::Broken(Broken::Failed {
                why: "server sent no BLAKE3 chaining value for a piece; cannot verify it".into(),
                keep: false,
                unreachable: false,
            });
        }
        if trailer.digest != ours {
            return PieceResult::Corrupt(format!(
                "BLAKE3 mismatch in bytes {}..{}",
                sink.at, sink.end
            ));
        }
        PieceResult::Done(ours)
    }

    /// Records how piece `i` ended (`None`: given up without a result, for
    /// a piece skipped because the file is broken). Returns how the whole
    /// file ended once this was its last open piece.
    pub fn settle(&self, i: usize, r: Option<PieceResult>) -> Settled {
        let mut st = self.state.lock().unwrap();
        let arrived = matches!(r, Some(PieceResult::Done(_)));
        match r {
            Some(PieceResult::Done(cv)) => {
                st.done[i] = Some(cv);
                st.partial[i] = 0;
                st.got += self.pieces[i].1;
            }
            Some(PieceResult::Corrupt(why)) => {
                st.partial[i] = 0;
                st.broken.get_or_insert(Broken::Changed(why));
            }
            // A change outranks the rest (the pieces are then useless),
            // Ctrl-C outranks a failure.
            Some(PieceResult::Broken(b))
                if !matches!(st.broken, Some(Broken::Changed(_)))
                    && (matches!(b, Broken::Changed(_) | Broken::Stopped)
                        || !matches!(st.broken, Some(Broken::Stopped))) =>
            {
                st.broken = Some(b);
            }
            Some(PieceResult::Broken(_)) | None => {}
        }
        st.open -= 1;
        // A piece in place is worth keeping for a resume, unless the file
        // changed (then nothing here is).
        if arrived && !matches!(st.broken, Some(Broken::Changed(_))) {
            let _ = self.write_note(&st);
        }
        if st.open > 0 {
            return Settled::Open;
        }
        self.finish(st)
    }

    /// How the file ends when no piece is open (all were in place already).
    pub fn conclude(&self) -> Settled {
        let st = self.state.lock().unwrap();
        if st.open > 0 {
            return Settled::Open;
        }
        self.finish(st)
    }

    /// A transfer of piece `i` broke off with its first `n` bytes written.
    pub fn partial(&self, i: usize, n: u64) {
        self.state.lock().unwrap().partial[i] = n;
    }

    fn finish(&self, st: std::sync::MutexGuard<State>) -> Settled {
        if let Some(b) = st.broken.clone() {
            if !matches!(b, Broken::Changed(_)) {
                // What arrived, down to the pieces begun, is there next time.
                let _ = self.write_note(&st);
            }
            drop(st);
            // Close the part so it can be discarded or resumed later.
            drop(self.file.write().unwrap().take());
            return Settled::Broken(b);
        }
        let mut cvs: HashMap<(u64, u64), [u8; 32]> = self.local.iter().copied().collect();
        for (p, cv) in self.pieces.iter().zip(&st.done) {
            if let Some(cv) = cv {
                cvs.insert(*p, *cv);
            }
        }
        drop(st);
        match merge(self.stamp.size, &cvs) {
            Some(digest) if self.local.is_empty() => self.verified(Ok(digest)),
            Some(digest) => Settled::Verify(digest),
            None => {
                drop(self.file.write().unwrap().take());
                Settled::Broken(Broken::Changed("pieces do not make up the file".into()))
            }
        }
    }

    /// The file with every piece in place and the whole file's digest
    /// checked (`Err`: it does not match the server's).
    pub fn verified(&self, digest: Result<[u8; 32], String>) -> Settled {
        let file = self.file.write().unwrap().take();
        match (digest, file) {
            (Ok(digest), Some(f)) => match Arrived::assembled(
                self.dest,
                &self.plan,
                f,
                self.got(),
                self.started.elapsed().as_secs_f64(),
                digest,
            ) {
                Ok(a) => Settled::Arrived(Box::new(a)),
                Err(e) => Settled::Broken(Broken::Failed {
                    why: e.to_string(),
                    keep: true,
                    unreachable: false,
                }),
            },
            (Err(why), _) => Settled::Broken(Broken::Changed(why)),
            (Ok(_), None) => Settled::Broken(Broken::Failed {
                why: "part file already closed".into(),
                keep: false,
                unreachable: false,
            }),
        }
    }

    fn save_note(&self) -> io::Result<()> {
        let st = self.state.lock().unwrap();
        self.write_note(&st)
    }

    /// The note lists every piece: finished ones with the server's chaining
    /// value, begun ones with how far they got. Subtrees found on disk by
    /// an earlier resume count as begun pieces that got all the way.
    fn write_note(&self, st: &State) -> io::Result<()> {
        let mut lines: Vec<(u64, String)> = self
            .local
            .iter()
            .map(|((at, len), _)| (*at, format!("{at} {len} partial {len}\n")))
            .collect();
        for (i, (at, len)) in self.pieces.iter().enumerate() {
            let line = match (st.done[i], st.partial[i]) {
                (Some(cv), _) => format!("{at} {len} done {}\n", local::hex(&cv)),
                (None, 0) => format!("{at} {len} todo\n"),
                (None, n) => format!("{at} {len} partial {n}\n"),
            };
            lines.push((*at, line));
        }
        lines.sort_by_key(|l| l.0);
        let extra: String = lines.into_iter().map(|l| l.1).collect();
        local::write_note_with(self.dest, &self.plan, &self.stamp, NOTE_MAGIC, &extra)
    }

    /// Starts writeback of a piece's bytes from `*kicked` to `end` once
    /// there are enough of them, so the flush before the rename finds
    /// little left to do (as for a file fetched whole).
    fn kick(&self, kicked: &mut u64, end: u64) {
        if !self.dest.durable() || end - *kicked < local::WRITEBACK_EVERY {
            return;
        }
        if let Some(f) = self.file.read().unwrap().as_ref() {
            local::start_writeback(f, *kicked, end - *kicked);
        }
        *kicked = end;
    }

    fn write_at(&self, buf: &[u8], at: u64) -> io::Result<()> {
        match self.file.read().unwrap().as_ref() {
            Some(f) => f.write_all_at(buf, at).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot write {}: {e}", self.plan.part.display()),
                )
            }),
            None => Err(io::Error::other("download file is not open")),
        }
    }
}

/// A note's pieces, if they are well formed: contiguous subtrees covering
/// the file, each with what of it is on disk.
type SavedPieces = Vec<((u64, u64), Option<Saved>)>;

fn parse_note(rest: &str, size: u64) -> Option<SavedPieces> {
    let mut out = Vec::new();
    let mut pos = 0u64;
    for l in rest.lines() {
        let mut f = l.split(' ');
        let at: u64 = f.next()?.parse().ok()?;
        let len: u64 = f.next()?.parse().ok()?;
        if at != pos || !crate::protocol::range_is_subtree(at, len) || at + len > size {
            return None;
        }
        let what = match (f.next()?, f.next()) {
            ("done", Some(hex)) => Some(Saved::Done(unhex(hex)?)),
            ("partial", Some(n)) => Some(Saved::Partial(n.parse::<u64>().ok()?.min(len))),
            ("todo", None) => None,
            _ => return None,
        };
        out.push(((at, len), what));
        pos += len;
    }
    (pos == size && out.len() >= 2).then_some(out)
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The chaining value of a piece as the disk holds it.
fn hash_range(file: &File, (at, len): (u64, u64)) -> io::Result<[u8; 32]> {
    let mut h = subtree_hasher(at);
    let mut buf = vec![0u8; CHUNK];
    let mut pos = at;
    while pos < at + len {
        let want = ((at + len - pos) as usize).min(buf.len());
        let n = file.read_at(&mut buf[..want], pos)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        h.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(h.finalize_non_root())
}

/// Receives one piece into its place in the part, hashing it on the way.
pub struct PieceSink<'a, 'p> {
    seg: &'a Segmented<'p>,
    index: usize,
    at: u64,
    end: u64,
    hasher: blake3::Hasher,
    /// Where the disk was last asked to start writing this piece (see
    /// [`local::start_writeback`]).
    kicked: u64,
    spare: Option<Vec<u8>>,
    /// Set when the piece cannot be used (another version, disk error).
    pub error: Option<Broken>,
}

impl PieceSink<'_, '_> {
    /// The transfer broke off: remember how far this piece got.
    pub fn broke_off(&self) {
        self.seg.partial(self.index, self.hasher.count());
    }
}

impl FileSink for PieceSink<'_, '_> {
    fn start(&mut self, h: &FileHeader) -> io::Result<()> {
        if h.stamp() != self.seg.stamp || h.offset != self.at {
            let why = "file changed on the server since it was listed".to_string();
            self.error = Some(Broken::Changed(why.clone()));
            return Err(io::Error::other(why));
        }
        Ok(())
    }

    fn buffer(&mut self) -> Vec<u8> {
        self.spare.take().unwrap_or_else(|| vec![0; CHUNK])
    }

    fn write(&mut self, buf: Vec<u8>, len: usize) -> io::Result<()> {
        let r = self
            .seg
            .write_at(&buf[..len], self.at + self.hasher.count());
        match &r {
            Ok(()) => {
                self.hasher.update(&buf[..len]);
                self.seg.bar.lock().unwrap().inc(len as u64);
                self.seg
                    .kick(&mut self.kicked, self.at + self.hasher.count());
            }
            Err(e) => {
                self.error = Some(Broken::Failed {
                    why: e.to_string(),
                    keep: true,
                    unreachable: false,
                })
            }
        }
        self.spare = Some(buf);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 1024) as u8).collect()
    }

    fn cv_of(bytes: &[u8], (at, len): (u64, u64)) -> [u8; 32] {
        let mut h = subtree_hasher(at);
        h.update(&bytes[at as usize..(at + len) as usize]);
        h.finalize_non_root()
    }

    #[test]
    fn pieces_merge_into_the_files_digest() {
        for &(size, target) in &[
            (2048u64, 1024u64),
            (3000, 1024),
            (1 << 20, 1 << 18),
            ((1 << 20) + 1, 1 << 18),
            (5_000_000, 1 << 20),
            (7_340_033, 1_000_000),
        ] {
            let bytes = data(size as usize);
            let pieces = split(size, target);
            assert!(pieces.len() >= 2, "{size}/{target}");
            let mut pos = 0;
            let mut cvs = HashMap::new();
            for &(at, len) in &pieces {
                assert_eq!(at, pos, "pieces are contiguous");
                assert!(crate::protocol::range_is_subtree(at, len), "{at}+{len}");
                pos += len;
                cvs.insert((at, len), cv_of(&bytes, (at, len)));
            }
            assert_eq!(pos, size);
            let want = Some(*blake3::hash(&bytes).as_bytes());
            assert_eq!(merge(size, &cvs), want, "{size}/{target}");
            // A piece broken off part-way: what arrived and what is left, as
            // subtrees, still merge into the digest.
            let (at, len) = pieces[pieces.len() / 2];
            let cut = at + (len / 3) / CHUNK_LEN * CHUNK_LEN;
            cvs.remove(&(at, len));
            for b in blocks(at, cut).into_iter().chain(blocks(cut, at + len)) {
                assert!(crate::protocol::range_is_subtree(b.0, b.1), "{b:?}");
                cvs.insert(b, cv_of(&bytes, b));
            }
            assert_eq!(merge(size, &cvs), want, "{size}/{target} cut at {cut}");
            // One subtree missing is no digest.
            cvs.remove(&pieces[0]);
            assert_eq!(merge(size, &cvs), None);
        }
    }

    #[test]
    fn a_note_round_trips_and_junk_is_refused() {
        let cv = [0xab; 32];
        let mib = 1u64 << 20;
        let text = format!(
            "0 {mib} done {}\n{mib} {mib} partial 5000\n{} {mib} todo\n",
            local::hex(&cv),
            2 * mib
        );
        let got = parse_note(&text, 3 * mib).expect("a good note");
        assert_eq!(got.len(), 3);
        assert!(matches!(got[0], ((0, _), Some(Saved::Done(c))) if c == cv));
        assert!(matches!(got[1].1, Some(Saved::Partial(5000))));
        assert!(got[2].1.is_none());
        // Not covering the file, a gap, not a subtree, a bad value.
        assert!(parse_note(&text, 4 * mib).is_none());
        assert!(parse_note(&format!("0 {mib} todo\n{} {mib} todo\n", 2 * mib), 3 * mib).is_none());
        assert!(parse_note("0 1000 todo\n1000 1000 todo\n", 2000).is_none());
        assert!(parse_note(&format!("0 {mib} done abc\n{mib} {mib} todo\n"), 2 * mib).is_none());
    }
}
