//! The local side of a download: where each file goes, its temporary
//! part file with a resume note (server size and modification time) beside
//! it (named in [`super::folder`]), hashing what arrives, and making a
//! finished file durable (fsync) before it is renamed into place. Every
//! file and folder is reached through the download folder's descriptor
//! ([`Folder`]), never through a path the kernel would resolve afresh.
//!
//! Small files are made durable in batches (one syncfs, then the renames,
//! then one fsync per folder) so thousands of them do not each wait for the
//! disk; large files are synced one by one.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use blake3::hazmat::HasherExt;

use super::commit::CommitQueue;
use super::folder::{is_reserved, part_name, temp_names, Dir, Folder};
use super::settler::Settler;
use crate::client::{FileSink, CHUNK};
use crate::error::describe_io;
use crate::paths::{display_path, display_safe, local_target};
use crate::progress::{FileBar, Progress};
use crate::protocol::{DigestAlgorithm, FileHeader, Stamp, Trailer};

/// Files smaller than this start over rather than resume: the note would
/// cost more than it saves.
const RESUME_MIN: u64 = 1024 * 1024;
/// Files at least this large are synced on their own; smaller ones in
/// batches.
const SYNC_ALONE_MIN: u64 = 1024 * 1024;
const BATCH_FILES: usize = 256;
const BATCH_BYTES: u64 = 64 * 1024 * 1024;
const RESUME_MAGIC: &str = "fxfer-resume 1";

/// Where one name goes, and where it may resume from.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub target: PathBuf,
    pub part: PathBuf,
    pub note: PathBuf,
    /// The target's folder, relative to the download folder.
    pub dir: PathBuf,
    /// The target's own name, and the temporary names beside it.
    pub file: String,
    pub part_name: String,
    pub note_name: String,
    /// Bytes already here (0 = start over).
    pub offset: u64,
    /// The server's version of the file those bytes came from.
    pub stamp: Option<Stamp>,
}

/// A file that arrived whole and verified, not yet in place.
pub struct Arrived {
    pub name: String,
    pub target: PathBuf,
    pub part: PathBuf,
    /// The folder it arrived in, held open, and the names in it.
    dir: Dir,
    file_name: String,
    part_name: String,
    note_name: String,
    pub bytes: u64,
    pub size: u64,
    pub secs: f64,
    pub digest: [u8; 32],
    pub resumed_from: u64,
    /// Tries it took (reported with the outcome).
    pub retries: u32,
    /// (device, inode) of the part we wrote, checked before the rename.
    identity: Option<(u64, u64)>,
    file: Option<File>,
    /// A small file received into memory and verified there, not yet
    /// written (see [`super::commit`]).
    body: Option<Body>,
}

/// The verified bytes of a small file and the header whose time and mode
/// it gets once written.
struct Body {
    bytes: Vec<u8>,
    header: FileHeader,
}

impl Arrived {
    /// Bytes waiting in memory for this file (0 once written).
    pub fn staged_len(&self) -> u64 {
        self.body.as_ref().map_or(0, |b| b.bytes.len() as u64)
    }
}

/// A file in its final place.
#[derive(Debug, Clone)]
pub struct Placed {
    pub name: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub secs: f64,
    pub digest: [u8; 32],
    pub resumed_from: u64,
    pub retries: u32,
}

/// A file in place, or the name of one that could not be put there and why.
pub type PlaceResult = Result<Placed, (String, String)>;

/// Why one file did not arrive.
#[derive(Debug)]
pub enum Failure {
    /// Will not get better by trying again (not found, disk full, ...).
    Permanent(String),
    /// The bytes did not match the server's digest, or the source changed
    /// while sent: worth one more try from scratch.
    Corrupt(String),
}

/// The download folder: checked subfolders and the batch of small files
/// waiting to be made durable.
pub struct Dest {
    pub root: PathBuf,
    folder: Folder,
    /// Flush data to disk before renaming (off with --no-fsync).
    fsync: bool,
    /// Hash state of partial files, by part path: (bytes covered, hasher,
    /// what the part looked like then). Filled before requests go out and
    /// when a transfer breaks off, so a resume never re-reads its prefix
    /// while the server is sending.
    hashed: Mutex<HashMap<PathBuf, (u64, blake3::Hasher, PartId)>>,
    batch: Mutex<(Vec<Arrived>, u64)>,
    /// Large files being made durable and placed, started with the first.
    settler: Mutex<Option<Settler>>,
    /// One lock per folder, held while creating a part file there.
    /// Parallel downloads creating files in one folder otherwise contend
    /// for the folder's lock inside the kernel, where waiters spin and burn
    /// the CPU the transfers need; here they sleep.
    creating: Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>,
    /// Folders beneath the download folder, each opened (and confined)
    /// once per run and shared by every file in it: opening one per file
    /// cost a path walk per file, and many small files are bound by such
    /// system calls.
    dirs: Mutex<HashMap<PathBuf, Dir>>,
    /// The part files and resume notes in each folder, read in one pass
    /// when the first plan there needs them (and added to as we write
    /// notes), so a folder of fresh downloads or of unchanged copies costs
    /// one directory read, not a failed open or unlink per file.
    notes: Mutex<HashMap<PathBuf, HashSet<String>>>,
    /// A name saved under a path of its own choosing (`-o FILE`).
    renamed: Option<(String, PathBuf)>,
    /// Small files on their way to the thread that writes them.
    pub(super) commits: CommitQueue,
}

/// What a part file looked like when its prefix was hashed. A saved hash is
/// used only while the file still looks the same: another process may have
/// shortened or rewritten it in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PartId {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
}

impl PartId {
    fn from(m: &fs::Metadata) -> PartId {
        use std::os::unix::fs::MetadataExt;
        PartId {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
        }
    }

    fn of(f: &File) -> Option<PartId> {
        f.metadata().ok().map(|m| PartId::from(&m))
    }

    /// Which file it is, whatever its contents: (device, inode).
    fn key(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }
}

/// The part file is no longer what the resume was planned from (it is
/// shorter than the offset asked for): the download must start over.
#[derive(Debug)]
pub struct PartChanged(pub String);

impl std::fmt::Display for PartChanged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PartChanged {}

/// Bytes a partial download of server file `name` holds under
/// `download_dir` (0 when there is none): what a resume would keep.
pub fn partial_len(download_dir: &Path, name: &str) -> u64 {
    let Ok(target) = local_target(download_dir, name) else {
        return 0;
    };
    let Some(file) = target.file_name().and_then(|f| f.to_str()) else {
        return 0;
    };
    fs::symlink_metadata(target.with_file_name(part_name(file)))
        .ok()
        .filter(|m| m.is_file())
        .map_or(0, |m| m.len())
}

fn fail(what: &str, path: &Path, e: &io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("{what} {}: {}", display_path(path), describe_io(e)),
    )
}

impl Dest {
    /// The (existing, canonical) download folder, opened.
    pub fn new(root: PathBuf, fsync: bool) -> io::Result<Dest> {
        Ok(Dest {
            folder: Folder::open(root.clone())?,
            root,
            fsync,
            hashed: Mutex::new(HashMap::new()),
            batch: Mutex::new((Vec::new(), 0)),
            settler: Mutex::new(None),
            creating: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            notes: Mutex::new(HashMap::new()),
            renamed: None,
            commits: CommitQueue::new(),
        })
    }

    /// The folder `rel` beneath the download folder, opened once and then
    /// shared (see [`Folder::dir`]; a folder found missing is not
    /// remembered, so a later `create` still makes it).
    fn dir(&self, rel: &Path, create: bool) -> io::Result<Option<Dir>> {
        if let Some(d) = self.dirs.lock().unwrap().get(rel) {
            return Ok(Some(d.clone()));
        }
        let d = self.folder.dir(rel, create)?;
        if let Some(d) = &d {
            self.dirs
                .lock()
                .unwrap()
                .entry(rel.to_path_buf())
                .or_insert_with(|| d.clone());
        }
        Ok(d)
    }

    /// Whether `d` (the folder `rel`) may hold the part file or note
    /// `name`: false only when a read of the folder found none such.
    fn may_have_note(&self, rel: &Path, d: &Dir, name: &str) -> bool {
        let mut notes = self.notes.lock().unwrap();
        if !notes.contains_key(rel) {
            match d.temp_names() {
                Ok(n) => notes.insert(rel.to_path_buf(), n.into_iter().collect()),
                Err(_) => return true,
            };
        }
        notes[rel].contains(name)
    }

    /// Whether anything is at `plan`'s part file: looked up only when a
    /// read of its folder (made once, and shared with the notes) found a
    /// name of that kind, so a fresh download folder costs no system call
    /// per file.
    pub(super) fn has_part(&self, plan: &Plan) -> bool {
        match self.dir(&plan.dir, false) {
            Ok(Some(d)) => {
                self.may_have_note(&plan.dir, &d, &plan.part_name)
                    && d.stat(&plan.part_name).is_some()
            }
            Ok(None) => false,
            Err(_) => fs::symlink_metadata(&plan.part).is_ok(),
        }
    }

    /// Remembers that `plan`'s note exists now (we wrote it), for a retry
    /// later in this run.
    fn noted(&self, plan: &Plan) {
        if let Some(n) = self.notes.lock().unwrap().get_mut(&plan.dir) {
            n.insert(plan.note_name.clone());
        }
    }

    /// Saves `name` at `target` (in the download folder) instead of under
    /// its own name.
    pub fn rename(&mut self, name: &str, target: PathBuf) {
        self.renamed = Some((name.to_string(), target));
    }

    /// Where `name` goes, and what we already have of it. With `resume`
    /// off, or without a readable note, any partial copy is ignored.
    ///
    /// `size` is the file's size on the server when known: a file too
    /// small to resume starts over, so no note is looked for (that lookup
    /// was one system call per file for nothing).
    pub fn plan(&self, name: &str, resume: bool, size: Option<u64>) -> Result<Plan, String> {
        let refuse = |why: &dyn std::fmt::Display| {
            format!("refusing to save {:?}: {why}", display_safe(name))
        };
        let (target, dir, file) = match &self.renamed {
            // `-o FILE`: the user's own name, in the download folder.
            Some((n, t)) if n == name => {
                let file = t
                    .file_name()
                    .and_then(|f| f.to_str())
                    .ok_or_else(|| refuse(&"the output file name is not UTF-8"))?;
                (t.clone(), PathBuf::new(), file.to_string())
            }
            _ => {
                let target = local_target(&self.root, name).map_err(|e| refuse(&e))?;
                let (dir, file) = match name.rsplit_once('/') {
                    Some((d, f)) => (PathBuf::from(d), f.to_string()),
                    None => (PathBuf::new(), name.to_string()),
                };
                if is_reserved(&file) {
                    return Err(refuse(&"names of this form are kept for partial downloads"));
                }
                (target, dir, file)
            }
        };
        let (part_name, note_name) = temp_names(&file);
        let folder = self.root.join(&dir);
        let mut plan = Plan {
            name: name.to_string(),
            target,
            part: folder.join(&part_name),
            note: folder.join(&note_name),
            dir,
            file,
            part_name,
            note_name,
            offset: 0,
            stamp: None,
        };
        if resume && size.is_none_or(|s| s >= RESUME_MIN) {
            if let Ok(Some(d)) = self.dir(&plan.dir, false) {
                let note = self
                    .may_have_note(&plan.dir, &d, &plan.note_name)
                    .then(|| read_note(&d, &plan.note_name));
                if let Some(stamp) = note.flatten() {
                    if let Some(st) = d
                        .stat(&plan.part_name)
                        .filter(|_| d.is_file(&plan.part_name))
                    {
                        if st.st_size as u64 <= stamp.size {
                            plan.offset = st.st_size as u64;
                            plan.stamp = Some(stamp);
                        }
                    }
                }
            }
        }

        Ok(plan)
    }

    /// Throws away any partial copy of `plan`, unless another download is
    /// writing it right now.
    pub fn discard(&self, plan: &Plan) {
        self.hashed.lock().unwrap().remove(&plan.part);
        let Ok(Some(d)) = self.dir(&plan.dir, false) else {
            return;
        };
        if claim_leftover(&d, &plan.part_name).is_err() {
            return;
        }
        let _ = d.remove(&plan.part_name);
        let _ = d.remove(&plan.note_name);
    }

    /// Throws away a partial copy of a file found unchanged, if its folder
    /// held one when this run first looked: a tree of unchanged copies
    /// costs one read per folder, not three system calls per file.
    pub fn discard_stale(&self, plan: &Plan) {
        let Ok(Some(d)) = self.dir(&plan.dir, false) else {
            return;
        };
        if self.may_have_note(&plan.dir, &d, &plan.part_name)
            || self.may_have_note(&plan.dir, &d, &plan.note_name)
        {
            self.discard(plan);
        }
    }

    /// Whether finished files are flushed to disk (not with --no-fsync).
    pub(super) fn durable(&self) -> bool {
        self.fsync
    }

    /// Whether something (anything, even a dangling symlink) already has
    /// the target's name.
    pub fn exists(&self, plan: &Plan) -> bool {
        matches!(self.dir(&plan.dir, false), Ok(Some(d)) if d.stat(&plan.file).is_some())
    }

    /// Hashes the bytes a resumable plan already has, ahead of time.
    pub fn prehash(&self, plan: &Plan) {
        if plan.offset == 0 || self.hashed.lock().unwrap().contains_key(&plan.part) {
            return;
        }
        let mut hasher = blake3::Hasher::new();
        let part = match self.dir(&plan.dir, false) {
            Ok(Some(d)) => d.open(&plan.part_name, false),
            _ => return,
        };
        let ok = part.and_then(|f| {
            // Taken before reading: a change while we hash shows later.
            let id = PartId::of(&f).ok_or(io::ErrorKind::NotFound)?;
            let n = io::copy(&mut (&f).take(plan.offset), &mut HashWriter(&mut hasher))?;
            if n == plan.offset {
                Ok(id)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            }
        });
        if let Ok(id) = ok {
            self.hashed
                .lock()
                .unwrap()
                .insert(plan.part.clone(), (plan.offset, hasher, id));
        }
    }

    /// The saved hash of `part`'s first `offset` bytes, if the file still
    /// looks as it did when they were hashed.
    fn take_hashed(&self, part: &Path, offset: u64, now: Option<PartId>) -> Option<blake3::Hasher> {
        match self.hashed.lock().unwrap().remove(part) {
            Some((o, h, id)) if o == offset && Some(id) == now => Some(h),
            _ => None,
        }
    }

    /// Puts a verified file in place, durably. Large files go to the
    /// settling thread ([`super::settler`]); small ones received into
    /// memory go to the thread that writes them ([`super::commit`]), and
    /// join the batch, which is settled when full (or by [`Dest::flush`]).
    /// Returns the files settled since the last call.
    pub fn complete(&self, a: Arrived) -> Vec<PlaceResult> {
        if a.size >= SYNC_ALONE_MIN {
            let mut settler = self.settler.lock().unwrap();
            if settler.is_none() {
                *settler = Settler::start(self.fsync).ok();
            }
            let Some(s) = settler.as_mut() else {
                return vec![settle_alone(a, self.fsync)];
            };
            let mut out = s.ready();
            if let Some(a) = s.send(a) {
                out.push(settle_alone(a, self.fsync));
            }
            return out;
        }
        let a = match self.commits.push(a) {
            None => return Vec::new(),
            Some(a) => a,
        };
        self.commit(a)
    }

    /// Writes a small file received into memory (if it was) and adds it to
    /// the batch, settling the batch when it is full. Called by the thread
    /// that writes small files, or by the receiving thread when none runs.
    pub(super) fn commit(&self, mut a: Arrived) -> Vec<PlaceResult> {
        if let Err(e) = self.write_out(&mut a) {
            return vec![Err((a.name.clone(), e.to_string()))];
        }
        drop(a.file.take());
        let mut batch = self.batch.lock().unwrap();
        batch.1 += a.size;
        batch.0.push(a);
        if batch.0.len() >= BATCH_FILES || batch.1 >= BATCH_BYTES {
            let items = std::mem::take(&mut batch.0);
            batch.1 = 0;
            drop(batch);
            let mut out = self.settle(items);
            if let Some(s) = self.settler.lock().unwrap().as_mut() {
                out.extend(s.ready());
            }
            return out;
        }
        Vec::new()
    }

    /// Creates the part of a file that arrived into memory and writes it
    /// there, with the server's time and mode (nothing to do for a file
    /// written as it arrived). A part that cannot be written is removed.
    fn write_out(&self, a: &mut Arrived) -> io::Result<()> {
        let Some(body) = a.body.take() else {
            return Ok(());
        };
        let mut f = self.create_part(&a.dir, &a.part, &a.part_name, &a.note_name)?;
        if let Err(e) = f.write_all(&body.bytes) {
            drop(f);
            let _ = a.dir.remove(&a.part_name);
            return Err(fail("cannot write", &a.part, &e));
        }
        // One look at the new file gives its mode and its identity.
        let md = f
            .metadata()
            .map_err(|e| fail("cannot write", &a.part, &e))?;
        if let Err(e) = super::meta::apply_to(&f, &md, &body.header) {
            log::warn!("cannot keep the time and mode of {}: {e}", a.part.display());
        }
        a.identity = Some(PartId::from(&md).key());
        a.file = Some(f);
        Ok(())
    }

    /// Creates the part file `part_name` in `dir`, empty and locked for us.
    /// create_new never follows whatever sits at the temporary name; a
    /// leftover there is removed (not followed) and the create retried.
    fn create_part(
        &self,
        dir: &Dir,
        part: &Path,
        part_name: &str,
        note_name: &str,
    ) -> io::Result<File> {
        let folder = {
            let parent = part.parent().unwrap_or(&self.root);
            let mut all = self.creating.lock().unwrap();
            match all.get(parent) {
                Some(l) => Arc::clone(l),
                None => Arc::clone(all.entry(parent.to_path_buf()).or_default()),
            }
        };
        let create = || {
            let _one_at_a_time = folder.lock().unwrap();
            dir.create_new(part_name)
        };
        let f = match create() {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                claim_leftover(dir, part_name)?;
                dir.remove(part_name)
                    .map_err(|e| fail("cannot replace", part, &e))?;
                // Its note goes too: the plan of a file now too small to
                // resume never looked for one, and it would only linger.
                let _ = dir.remove(note_name);
                create()
            }
            other => other,
        }
        .map_err(|e| fail("cannot create", part, &e))?;
        self.hashed.lock().unwrap().remove(part);
        lock(&f, part)?;
        Ok(f)
    }

    /// Settles whatever small files are still waiting, and waits for the
    /// large ones still being settled.
    pub fn flush(&self) -> Vec<PlaceResult> {
        let items = {
            let mut batch = self.batch.lock().unwrap();
            batch.1 = 0;
            std::mem::take(&mut batch.0)
        };
        let mut out = self.settle(items);
        if let Some(s) = self.settler.lock().unwrap().take() {
            out.extend(s.finish());
        }
        out
    }

    fn settle(&self, items: Vec<Arrived>) -> Vec<PlaceResult> {
        if items.is_empty() {
            return Vec::new();
        }
        // One syncfs makes every part's data durable at once. Small files
        // are renamed in batches even without it: one thread renaming is
        // faster than many contending for the folder's lock.
        let synced = if self.fsync {
            items[0]
                .dir
                .syncfs()
                .map_err(|e| fail("cannot flush", &self.root, &e).to_string())
        } else {
            Ok(())
        };
        let mut dirs = HashSet::new();
        let mut to_sync = Vec::new();
        let out = items
            .iter()
            .map(|a| {
                synced.clone().map_err(|e| {
                    let _ = a.dir.remove(&a.part_name);
                    (a.name.clone(), e)
                })?;
                place(a).map_err(|e| (a.name.clone(), e.to_string()))?;
                if dirs.insert(a.target.parent().unwrap_or(&self.root).to_path_buf()) {
                    to_sync.push(&a.dir);
                }
                Ok(placed(a))
            })
            .collect();
        if self.fsync {
            for d in to_sync {
                // Failure here cannot be acted on usefully.
                let _ = d.sync();
            }
        }
        out
    }
}

impl Arrived {
    /// A file put together from pieces in `file` (its part, still open and
    /// locked) and verified as a whole with `digest`.
    pub(super) fn assembled(
        dest: &Dest,
        plan: &Plan,
        file: File,
        got: u64,
        secs: f64,
        digest: [u8; 32],
    ) -> io::Result<Self> {
        let dir = part_dir(dest, plan)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Arrived {
            name: plan.name.clone(),
            target: plan.target.clone(),
            part: plan.part.clone(),
            dir,
            file_name: plan.file.clone(),
            part_name: plan.part_name.clone(),
            note_name: plan.note_name.clone(),
            bytes: got,
            size,
            secs,
            digest,
            resumed_from: size - got.min(size),
            retries: 0,
            identity: PartId::of(&file).map(|p| p.key()),
            file: Some(file),
            body: None,
        })
    }
}

/// The folder `plan`'s part goes in, created if need be.
fn part_dir(dest: &Dest, plan: &Plan) -> io::Result<Dir> {
    dest.dir(&plan.dir, true)?
        .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
}

/// Opens the part of `plan` for writing pieces in place: the existing one
/// when `reuse` is set and it is a regular file, else a new empty one (any
/// leftover removed, never followed). Either way it is locked for us.
pub(super) fn open_part(
    dest: &Dest,
    plan: &Plan,
    reuse: bool,
    progress: &Progress,
) -> io::Result<File> {
    let dir = part_dir(dest, plan)?;
    if reuse && dir.is_file(&plan.part_name) {
        let f = dir
            .open(&plan.part_name, true)
            .map_err(|e| fail("cannot open", &plan.part, &e))?;
        lock(&f, &plan.part)?;
        return Ok(f);
    }
    LocalFile::new(dest, plan, progress).create(&dir)
}

/// Writes the resume note of a file fetched in pieces: the stamp line of
/// every note, then `extra` (which pieces are in place).
pub(super) fn write_note_with(
    dest: &Dest,
    plan: &Plan,
    s: &Stamp,
    magic: &str,
    extra: &str,
) -> io::Result<()> {
    let text = format!("{magic}\n{} {} {}\n{extra}", s.size, s.mtime, s.mtime_nanos);
    part_dir(dest, plan)?
        .write_new(&plan.note_name, text.as_bytes())
        .map_err(|e| fail("cannot write", &plan.note, &e))?;
    dest.noted(plan);
    Ok(())
}

/// Reads a note written by [`write_note_with`]: its stamp and the rest.
pub(super) fn read_note_with(dest: &Dest, plan: &Plan, magic: &str) -> Option<(Stamp, String)> {
    let dir = dest.dir(&plan.dir, false).ok()??;
    let mut text = String::new();
    dir.open(&plan.note_name, false)
        .ok()?
        .read_to_string(&mut text)
        .ok()?;
    let (stamp, rest) = parse_note(&text, magic)?;
    Some((stamp, rest.to_string()))
}

/// A note's stamp (the line after `magic`) and what follows it.
fn parse_note<'t>(text: &'t str, magic: &str) -> Option<(Stamp, &'t str)> {
    let (first, rest) = text.split_once('\n')?;
    if first != magic {
        return None;
    }
    let (line, extra) = rest.split_once('\n').unwrap_or((rest, ""));
    let mut f = line.split_whitespace();
    let stamp = Stamp {
        size: f.next()?.parse().ok()?,
        mtime: f.next()?.parse().ok()?,
        mtime_nanos: f.next()?.parse().ok()?,
    };
    (stamp.mtime_nanos < 1_000_000_000).then_some((stamp, extra))
}

/// Makes one large file durable and puts it in place (what the settling
/// thread does with each file).
pub(super) fn settle_alone(mut a: Arrived, fsync: bool) -> PlaceResult {
    let synced = match a.file.take() {
        Some(f) if fsync => f.sync_data().map_err(|e| fail("cannot flush", &a.part, &e)),
        _ => Ok(()),
    };
    synced
        .and_then(|_| place(&a))
        .map(|_| {
            if fsync {
                // Failure here cannot be acted on usefully.
                let _ = a.dir.sync();
            }
            placed(&a)
        })
        .map_err(|e| (a.name.clone(), e.to_string()))
}

fn placed(a: &Arrived) -> Placed {
    Placed {
        name: a.name.clone(),
        path: a.target.clone(),
        bytes: a.bytes,
        secs: a.secs,
        digest: a.digest,
        resumed_from: a.resumed_from,
        retries: a.retries,
    }
}

/// Renames the part over the final name (atomically replacing any old
/// file) and drops the resume note.
fn place(a: &Arrived) -> io::Result<()> {
    let now = a.dir.stat(&a.part_name).map(|st| (st.st_dev, st.st_ino));
    if a.identity.is_some() && now != a.identity {
        return Err(io::Error::other(format!(
            "{} was replaced by another process while downloading; not using it",
            display_path(&a.part)
        )));
    }
    a.dir.rename(&a.part_name, &a.file_name).map_err(|e| {
        let _ = a.dir.remove(&a.part_name);
        fail("cannot move download into place at", &a.target, &e)
    })?;
    // Only files big enough to resume ever have a note.
    if a.size >= RESUME_MIN {
        let _ = a.dir.remove(&a.note_name);
    }
    Ok(())
}

/// Lets `io::copy` feed a hasher.
struct HashWriter<'a>(&'a mut blake3::Hasher);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Checks that a leftover part file may be removed: not while another
/// download holds its lock. Anything but a regular file (a planted symlink,
/// say) is never opened, only removed.
fn claim_leftover(dir: &Dir, part: &str) -> io::Result<()> {
    if dir.is_file(part) {
        if let Ok(old) = dir.open(part, true) {
            lock(&old, &dir.path(part))?;
        }
    }
    Ok(())
}

/// Claims a part file for this process: two downloads of the same file
/// into the same folder must not write over each other.
fn lock(f: &File, part: &Path) -> io::Result<()> {
    use rustix::fs::{flock, FlockOperation};
    flock(f, FlockOperation::NonBlockingLockExclusive).map_err(|e| {
        if e == rustix::io::Errno::WOULDBLOCK {
            io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "another download is writing {} right now",
                    display_path(part)
                ),
            )
        } else {
            fail("cannot lock", part, &e.into())
        }
    })
}

fn read_note(dir: &Dir, name: &str) -> Option<Stamp> {
    let mut text = String::new();
    dir.open(name, false).ok()?.read_to_string(&mut text).ok()?;
    parse_note(&text, RESUME_MAGIC).map(|(stamp, _)| stamp)
}

fn write_note(dir: &Dir, name: &str, s: &Stamp) -> io::Result<()> {
    dir.write_new(
        name,
        format!("{RESUME_MAGIC}\n{} {} {}\n", s.size, s.mtime, s.mtime_nanos).as_bytes(),
    )
}

/// Bodies at least this large are written and hashed on a second thread
/// while the next megabytes arrive, so verification costs little time.
const PIPELINE_MIN: u64 = 4 * 1024 * 1024;
/// Buffers in flight between the receiving and the writing thread.
const PIPELINE_DEPTH: usize = 4;
/// While a large file arrives, the disk is asked to start writing every
/// this many bytes, so the fsync before the rename finds little left to
/// do: network and disk work at the same time instead of one after the
/// other.
pub(super) const WRITEBACK_EVERY: u64 = 8 * 1024 * 1024;

/// Starts (does not wait for) writeback of `len` bytes at `offset`. Only a
/// head start for the later fsync, which alone makes the data durable, so
/// failure here is ignored.
pub(super) fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: plain system call on a descriptor we own for the duration of
    // the call; no memory is passed.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// The writing-and-hashing thread of a large download.
struct Writer {
    tx: Option<SyncSender<(Vec<u8>, usize)>>,
    /// Buffers coming back for reuse.
    back: Receiver<Vec<u8>>,
    allocated: usize,
    handle: Option<JoinHandle<(File, blake3::Hasher, Option<io::Error>)>>,
}

impl Writer {
    /// `at` is where the file's next byte goes; with `durable` set, the disk
    /// starts writing behind us as the data arrives.
    fn start(
        mut file: File,
        mut hasher: blake3::Hasher,
        part: PathBuf,
        at: u64,
        durable: bool,
    ) -> io::Result<Writer> {
        let (tx, rx) = sync_channel::<(Vec<u8>, usize)>(PIPELINE_DEPTH);
        let (back_tx, back) = channel();
        let handle = std::thread::Builder::new()
            .name("write+hash".into())
            .spawn(move || {
                let mut err = None;
                let (mut end, mut kicked) = (at, at);
                for (buf, n) in rx {
                    if err.is_none() {
                        match file.write_all(&buf[..n]) {
                            Ok(()) => {
                                end += n as u64;
                                if durable && end - kicked >= WRITEBACK_EVERY {
                                    start_writeback(&file, kicked, end - kicked);
                                    kicked = end;
                                }
                                hasher.update(&buf[..n]);
                            }
                            Err(e) => err = Some(fail("cannot write", &part, &e)),
                        }
                    }
                    let _ = back_tx.send(buf);
                }
                (file, hasher, err)
            })?;
        Ok(Writer {
            tx: Some(tx),
            back,
            allocated: 0,
            handle: Some(handle),
        })
    }

    fn buffer(&mut self) -> Vec<u8> {
        if let Ok(b) = self.back.try_recv() {
            return b;
        }
        if self.allocated < PIPELINE_DEPTH + 2 {
            self.allocated += 1;
            return vec![0; CHUNK];
        }
        self.back.recv().unwrap_or_else(|_| vec![0; CHUNK])
    }

    /// Waits for everything queued to be written and hashed.
    fn finish(&mut self) -> Option<(File, blake3::Hasher, Option<io::Error>)> {
        drop(self.tx.take());
        self.handle.take().and_then(|h| h.join().ok())
    }
}

impl Drop for Writer {
    /// Never leave a thread writing to a part file that a retry may reopen.
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// Receives one file into its part, hashing as it goes.
pub struct LocalFile<'a> {
    dest: &'a Dest,
    plan: &'a Plan,
    progress: &'a Progress,
    /// The target's folder, opened (and created) when the file starts.
    dir: Option<Dir>,
    file: Option<File>,
    hasher: blake3::Hasher,
    writer: Option<Writer>,
    /// A small file's bytes, received into memory for the thread that
    /// writes small files.
    staged: Option<Vec<u8>>,
    spare: Option<Vec<u8>>,
    bar: Option<FileBar<'a>>,
    header: Option<FileHeader>,
    started: Instant,
    /// Asked for with a ranged GET of at most this many bytes from the
    /// start, before the file's size was known (see [`Head`]).
    range: Option<u64>,
}

/// The first bytes of a file larger than the range that asked for them,
/// verified and kept in its part: the rest is fetched as a continuation or
/// in pieces.
#[derive(Debug, Clone, Copy)]
pub struct Head {
    /// The version they are of.
    pub stamp: Stamp,
    /// How many there are (the range's length).
    pub len: u64,
    /// Their chaining value, as the subtree at offset 0.
    pub cv: [u8; 32],
}

/// What a ranged GET from the start of a file brought.
pub enum Probed {
    /// The whole file (it was no larger than the range).
    Whole(Box<Arrived>),
    /// Its first bytes.
    Head(Head),
}

impl<'a> LocalFile<'a> {
    pub fn new(dest: &'a Dest, plan: &'a Plan, progress: &'a Progress) -> Self {
        LocalFile {
            dest,
            plan,
            progress,
            dir: None,
            file: None,
            hasher: blake3::Hasher::new(),
            writer: None,
            staged: None,
            spare: None,
            bar: None,
            header: None,
            started: Instant::now(),
            range: None,
        }
    }

    /// Receives the answer to a ranged GET of at most `len` bytes from the
    /// start of a file of unknown size; see [`LocalFile::finish_probe`].
    pub fn probing(dest: &'a Dest, plan: &'a Plan, progress: &'a Progress, len: u64) -> Self {
        LocalFile {
            range: Some(len),
            ..LocalFile::new(dest, plan, progress)
        }
    }

    /// Checks what a ranged GET from the start brought against the
    /// server's chaining value: the whole file, ready to be placed, or its
    /// first bytes, kept in the part (their hash is kept too, so that
    /// continuing the file does not read them again). An empty file comes
    /// with its digest instead, and is checked as a whole file.
    pub fn finish_probe(mut self, trailer: &Trailer) -> Result<Probed, Failure> {
        self.finish_writing()?;
        let header = self
            .header
            .ok_or_else(|| Failure::Permanent("no file header".into()))?;
        if header.size == 0 && trailer.algorithm == DigestAlgorithm::Blake3 {
            // An empty file has no chaining value: from version 7 its range
            // is answered as the whole file, with the whole file's digest.
            return self.finish(trailer).map(|a| Probed::Whole(Box::new(a)));
        }
        if trailer.algorithm != DigestAlgorithm::Blake3Subtree || trailer.digest.len() != 32 {
            return Err(Failure::Permanent(
                "server sent no BLAKE3 chaining value for a range; cannot verify it".into(),
            ));
        }
        let cv = self.hasher.finalize_non_root();
        if trailer.digest != cv {
            return Err(Failure::Corrupt(format!(
                "BLAKE3 mismatch in bytes 0..{}",
                self.hasher.count()
            )));
        }
        if self.hasher.count() == header.size {
            let ours = *self.hasher.finalize().as_bytes();
            return self
                .arrived(header, ours)
                .map(|a| Probed::Whole(Box::new(a)));
        }
        let head = Head {
            stamp: header.stamp(),
            len: self.hasher.count(),
            cv,
        };
        if let Some(id) = self.file.as_ref().and_then(PartId::of) {
            self.dest
                .hashed
                .lock()
                .unwrap()
                .insert(self.plan.part.clone(), (head.len, self.hasher.clone(), id));
        }
        Ok(Probed::Head(head))
    }

    /// Waits for the writing thread, if there is one, and takes back the
    /// file and the hash from it.
    fn finish_writing(&mut self) -> Result<(), Failure> {
        drop(self.bar.take());
        if let Some(mut w) = self.writer.take() {
            let (file, hasher, err) = w
                .finish()
                .ok_or_else(|| Failure::Permanent("the writing thread failed".into()))?;
            if let Some(e) = err {
                return Err(Failure::Permanent(e.to_string()));
            }
            self.file = Some(file);
            self.hasher = hasher;
        }
        Ok(())
    }

    /// Checks the digest; on success the file is ready to be placed.
    pub fn finish(mut self, trailer: &Trailer) -> Result<Arrived, Failure> {
        self.finish_writing()?;
        let header = self
            .header
            .ok_or_else(|| Failure::Permanent("no file header".into()))?;
        let ours = *self.hasher.finalize().as_bytes();
        if trailer.algorithm != DigestAlgorithm::Blake3 || trailer.digest.len() != 32 {
            return Err(Failure::Permanent(
                "server sent no BLAKE3 digest; cannot verify the file".into(),
            ));
        }
        if trailer.digest != ours {
            return Err(Failure::Corrupt(format!(
                "BLAKE3 digest mismatch (expected {}, got {})",
                hex(&trailer.digest),
                hex(&ours)
            )));
        }
        self.arrived(header, ours)
    }

    /// The file, verified (its digest is `ours`), ready to be placed.
    fn arrived(mut self, header: FileHeader, ours: [u8; 32]) -> Result<Arrived, Failure> {
        let dir = self
            .dir
            .take()
            .ok_or_else(|| Failure::Permanent("no download folder".into()))?;
        if let Some(f) = &self.file {
            if let Err(e) = super::meta::apply(f, &header) {
                log::warn!(
                    "cannot keep the time and mode of {}: {e}",
                    self.plan.part.display()
                );
            }
        }
        Ok(Arrived {
            name: self.plan.name.clone(),
            target: self.plan.target.clone(),
            part: self.plan.part.clone(),
            dir,
            file_name: self.plan.file.clone(),
            part_name: self.plan.part_name.clone(),
            note_name: self.plan.note_name.clone(),
            bytes: header.body_len(),
            size: header.size,
            secs: self.started.elapsed().as_secs_f64(),
            digest: ours,
            resumed_from: header.offset,
            retries: 0,
            identity: self.file.as_ref().and_then(PartId::of).map(|p| p.key()),
            file: self.file.take(),
            body: self.staged.take().map(|bytes| Body { bytes, header }),
        })
    }

    /// Body bytes received by this transfer so far.
    pub fn received(&self) -> u64 {
        self.bar.as_ref().map_or(0, |b| b.got())
    }

    /// Whether what is on disk should stay after a broken connection:
    /// nothing was touched yet, or it can be resumed (it has a note).
    pub fn keep_on_failure(&self) -> bool {
        self.header.is_none_or(|h| h.size >= RESUME_MIN)
    }

    /// The connection broke: wait for queued data to reach the part and
    /// remember the hash state, so the retry need not re-read the prefix.
    pub fn suspend(mut self) {
        drop(self.bar.take());
        if self.header.is_none_or(|h| h.size < RESUME_MIN) {
            return;
        }
        let state = match self.writer.take() {
            Some(mut w) => match w.finish() {
                Some((file, hasher, None)) => PartId::of(&file).map(|id| (hasher, id)),
                _ => None,
            },
            None => self
                .file
                .as_ref()
                .and_then(PartId::of)
                .map(|id| (self.hasher.clone(), id)),
        };
        if let Some((h, id)) = state {
            self.dest
                .hashed
                .lock()
                .unwrap()
                .insert(self.plan.part.clone(), (h.count(), h, id));
        }
    }

    /// Continues the part at `offset`: trims anything past it and hashes
    /// the bytes already there.
    fn reopen(&mut self, dir: &Dir, offset: u64) -> io::Result<File> {
        let part = &self.plan.part;
        let mut f = dir
            .open(&self.plan.part_name, true)
            .map_err(|e| fail("cannot open", part, &e))?;
        lock(&f, part)?;
        let now = PartId::of(&f);
        // Never extend: that would fill the gap with zeros.
        if now.is_none_or(|id| id.len < offset) {
            return Err(io::Error::other(PartChanged(format!(
                "{} is shorter than when the download was planned; starting over",
                display_path(part)
            ))));
        }
        let cached = self.dest.take_hashed(part, offset, now);
        f.set_len(offset)
            .map_err(|e| fail("cannot trim", part, &e))?;
        if let Some(h) = cached {
            self.hasher = h;
            f.seek(SeekFrom::End(0))
                .map_err(|e| fail("cannot open", part, &e))?;
            return Ok(f);
        }
        let mut buf = vec![0u8; 1024 * 1024];
        let mut left = offset;
        while left > 0 {
            let n = (&mut f)
                .take(left.min(buf.len() as u64))
                .read(&mut buf)
                .map_err(|e| fail("cannot read", part, &e))?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} is shorter than expected", display_path(part)),
                ));
            }
            self.hasher.update(&buf[..n]);
            left -= n as u64;
        }
        Ok(f)
    }

    pub(super) fn create(&mut self, dir: &Dir) -> io::Result<File> {
        let p = self.plan;
        self.dest
            .create_part(dir, &p.part, &p.part_name, &p.note_name)
    }
}

impl FileSink for LocalFile<'_> {
    fn start(&mut self, header: &FileHeader) -> io::Result<()> {
        let dir = self
            .dest
            .dir(&self.plan.dir, true)?
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        // A small new file waits in memory for the thread that writes small
        // files, so this connection goes on receiving (see `commit`).
        // Only the first bytes of a file larger than the range come: they
        // stay in the part, where the rest will join them.
        let head = self.range.is_some_and(|r| header.size > r);
        let body = header.range_len(self.range);
        let stage =
            header.offset == 0 && header.size < SYNC_ALONE_MIN && !head && self.dest.commits.open();
        let file = if header.offset > 0 {
            Some(self.reopen(&dir, header.offset)?)
        } else if stage {
            self.staged = Some(Vec::with_capacity(header.size as usize));
            None
        } else {
            Some(self.create(&dir)?)
        };
        if header.offset == 0 {
            if header.size >= RESUME_MIN {
                write_note(&dir, &self.plan.note_name, &header.stamp())
                    .map_err(|e| fail("cannot write", &self.plan.note, &e))?;
                self.dest.noted(self.plan);
            } else if self.plan.stamp.is_some() {
                let _ = dir.remove(&self.plan.note_name);
            }
        }
        self.dir = Some(dir);
        match file {
            Some(file) if body >= PIPELINE_MIN => {
                let hasher = std::mem::replace(&mut self.hasher, blake3::Hasher::new());
                self.writer = Some(
                    Writer::start(
                        file,
                        hasher,
                        self.plan.part.clone(),
                        header.offset,
                        self.dest.fsync,
                    )
                    .map_err(|e| fail("cannot start a thread for", &self.plan.part, &e))?,
                );
            }
            Some(file) => self.file = Some(file),
            None => {}
        }
        self.header = Some(*header);
        self.bar = Some(self.progress.start_file(&self.plan.name, body));
        Ok(())
    }

    fn buffer(&mut self) -> Vec<u8> {
        match self.writer.as_mut() {
            Some(w) => w.buffer(),
            // A small file gets a buffer its own size, not a zeroed
            // megabyte; the buffer is reused for its next pieces.
            None => self.spare.take().unwrap_or_else(|| {
                let want = self
                    .header
                    .map_or(CHUNK as u64, |h| h.range_len(self.range).min(CHUNK as u64));
                vec![0; want as usize]
            }),
        }
    }

    fn write(&mut self, buf: Vec<u8>, len: usize) -> io::Result<()> {
        if let Some(b) = &mut self.bar {
            b.inc(len as u64);
        }
        if let Some(w) = self.writer.as_mut() {
            let sent = w.tx.as_ref().map(|tx| tx.send((buf, len)));
            return match sent {
                Some(Ok(())) => Ok(()),
                _ => Err(io::Error::other("the writing thread stopped")),
            };
        }
        if let Some(staged) = self.staged.as_mut() {
            staged.extend_from_slice(&buf[..len]);
            self.hasher.update(&buf[..len]);
            self.spare = Some(buf);
            return Ok(());
        }
        let Some(f) = self.file.as_mut() else {
            return Err(io::Error::other("download file is not open"));
        };
        let r = f
            .write_all(&buf[..len])
            .map_err(|e| fail("cannot write", &self.plan.part, &e));
        if r.is_ok() {
            self.hasher.update(&buf[..len]);
        }
        self.spare = Some(buf);
        r
    }
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
