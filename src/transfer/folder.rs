//! The download folder as the kernel sees it: one open descriptor of it,
//! and every file and folder beneath it opened, created, renamed and
//! removed relative to a descriptor (`openat2` with `RESOLVE_BENEATH`,
//! `O_NOFOLLOW`, `O_EXCL`), the way the server confines itself to its root.
//! A symlink someone planted in a shared download folder cannot lead a
//! write, a created folder or a resume note outside it, and checking a
//! path string first and using it later cannot race with a rename.
//!
//! Also the names of partial downloads: `.NAME.HASH.fxfer-part` and its
//! `.fxfer-resume` note, where HASH is 16 hex digits of the BLAKE3 of the
//! final name and NAME is shortened to fit NAME_MAX. Server names of that
//! form are refused, so a partial download can collide with nothing.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::describe_io;
use crate::paths::display_path;

/// Suffix of a download in progress.
pub const PART_SUFFIX: &str = ".fxfer-part";
/// Suffix of the note that makes a partial download resumable.
pub const RESUME_SUFFIX: &str = ".fxfer-resume";
/// Longest file name the kernel takes.
const NAME_MAX: usize = 255;
/// Hex digits of the name's hash in a part-file name.
const HASH_HEX: usize = 16;

/// The temporary name of a download of `name` (a final path component).
pub fn part_name(name: &str) -> String {
    temp_names(name).0
}

/// The resume note's name for a download of `name`.
pub fn note_name(name: &str) -> String {
    temp_names(name).1
}

/// [`part_name`] and [`note_name`] of `name`, from one hash of it (every
/// file of a download gets both: with thousands of small files, what they
/// cost counts before the first request).
pub fn temp_names(name: &str) -> (String, String) {
    let hash = blake3::hash(name.as_bytes());
    // Room for the dot in front, ".HASH" and the longer suffix.
    let longer = PART_SUFFIX.len().max(RESUME_SUFFIX.len());
    let room = NAME_MAX - 1 - 1 - HASH_HEX - longer;
    let mut end = name.len().min(room);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let mut part = String::with_capacity(end + 2 + HASH_HEX + longer);
    part.push('.');
    part.push_str(&name[..end]);
    part.push('.');
    part.push_str(&hash.to_hex()[..HASH_HEX]);
    let mut note = part.clone();
    part.push_str(PART_SUFFIX);
    note.push_str(RESUME_SUFFIX);
    (part, note)
}

/// Whether `name` has the form of our temporary names: such a name from a
/// server is refused, so no real file ever sits where a part file goes.
pub fn is_reserved(name: &str) -> bool {
    let Some(rest) = name
        .strip_suffix(PART_SUFFIX)
        .or_else(|| name.strip_suffix(RESUME_SUFFIX))
    else {
        return false;
    };
    name.starts_with('.')
        && rest.len() > HASH_HEX
        && rest.is_char_boundary(rest.len() - HASH_HEX)
        && rest[..rest.len() - HASH_HEX].ends_with('.')
        && rest[rest.len() - HASH_HEX..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
}

/// The download folder, held open.
#[derive(Debug)]
pub struct Folder {
    root: PathBuf,
    fd: OwnedFd,
}

/// One folder beneath the download folder, held open. Clones share the
/// descriptor: a run opens each folder once, not once per file.
#[derive(Debug, Clone)]
pub struct Dir {
    fd: Arc<OwnedFd>,
    /// Where it is, for messages only.
    path: PathBuf,
}

fn outside(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "refusing to write through {}: it leads outside the download folder",
            display_path(path)
        ),
    )
}

fn fail(what: &str, path: &Path, e: impl Into<io::Error>) -> io::Error {
    let e = e.into();
    io::Error::new(
        e.kind(),
        format!("{what} {}: {}", display_path(path), describe_io(&e)),
    )
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOCTTY);

impl Folder {
    /// Opens the (existing) download folder.
    pub fn open(root: PathBuf) -> io::Result<Folder> {
        let fd = rfs::open(&root, DIR_FLAGS, Mode::empty())
            .map_err(|e| fail("cannot open download folder", &root, e))?;
        Ok(Folder { root, fd })
    }

    /// Opens the folder `rel` (plain relative components) beneath the
    /// download folder; with `create`, missing folders are made one at a
    /// time. `None`: it does not exist (and `create` is off). Symlinks
    /// that stay inside are followed; one that leads out is an error.
    pub fn dir(&self, rel: &Path, create: bool) -> io::Result<Option<Dir>> {
        let path = self.root.join(rel);
        match self.beneath(rel) {
            Ok(fd) => {
                return Ok(Some(Dir {
                    fd: Arc::new(fd),
                    path,
                }))
            }
            Err(e) if (e == Errno::NOENT || e == Errno::NOTDIR) && create => {}
            Err(e) if e == Errno::NOENT || e == Errno::NOTDIR => return Ok(None),
            Err(e) => return Err(self.refused(&path, e)),
        }
        let mut so_far = PathBuf::new();
        let mut parent = self
            .beneath(Path::new(""))
            .map_err(|e| self.refused(&path, e))?;
        for c in rel.components() {
            let Component::Normal(name) = c else {
                return Err(outside(&path));
            };
            so_far.push(name);
            parent = match self.beneath(&so_far) {
                Ok(fd) => fd,
                Err(e) if e == Errno::NOENT => {
                    match rfs::mkdirat(&parent, name, Mode::from_raw_mode(0o777)) {
                        Ok(()) => {}
                        Err(e) if e == Errno::EXIST => {}
                        Err(e) => {
                            return Err(fail("cannot create folder", &self.root.join(&so_far), e))
                        }
                    }
                    self.beneath(&so_far)
                        .map_err(|e| self.refused(&self.root.join(&so_far), e))?
                }
                Err(e) => return Err(self.refused(&self.root.join(&so_far), e)),
            };
        }
        Ok(Some(Dir {
            fd: Arc::new(parent),
            path,
        }))
    }

    fn refused(&self, path: &Path, e: Errno) -> io::Error {
        if e == Errno::XDEV || e == Errno::LOOP {
            outside(path)
        } else if e == Errno::NOTDIR {
            // Walked one component at a time, so the last one is the file.
            io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is a file, not a folder", display_path(path)),
            )
        } else {
            fail("cannot open folder", path, e)
        }
    }

    /// Opens `rel` as a folder without leaving the download folder: the
    /// kernel refuses any escape (`RESOLVE_BENEATH`); where openat2 is
    /// missing, each component is opened with `O_NOFOLLOW`, so no symlink
    /// is followed at all.
    fn beneath(&self, rel: &Path) -> Result<OwnedFd, Errno> {
        if rel.as_os_str().is_empty() {
            return rfs::openat(&self.fd, ".", DIR_FLAGS, Mode::empty());
        }
        match rfs::openat2(
            &self.fd,
            rel,
            DIR_FLAGS,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(e) if e == Errno::NOSYS || e == Errno::PERM => {}
            other => return other,
        }
        let mut cur = rfs::openat(&self.fd, ".", DIR_FLAGS, Mode::empty())?;
        for c in rel.components() {
            let Component::Normal(name) = c else {
                return Err(Errno::XDEV);
            };
            cur = rfs::openat(&cur, name, DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty())?;
        }
        Ok(cur)
    }
}

impl Dir {
    /// Where `name` in this folder is, for messages.
    pub fn path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Creates `name`, which must not exist (and is never a symlink
    /// followed).
    pub fn create_new(&self, name: &str) -> io::Result<File> {
        rfs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        )
        .map(File::from)
        .map_err(io::Error::from)
    }

    /// Opens the regular file `name` (never through a symlink), for
    /// reading and writing or for reading only.
    pub fn open(&self, name: &str, write: bool) -> io::Result<File> {
        let access = if write { OFlags::RDWR } else { OFlags::RDONLY };
        // Non-blocking, so a FIFO planted here cannot hang us before the
        // check below refuses it.
        let fd = rfs::openat(
            &self.fd,
            name,
            access | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = rfs::fstat(&fd)?;
        if FileType::from_raw_mode(st.st_mode as _) != FileType::RegularFile {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a regular file", display_path(&self.path(name))),
            ));
        }
        rfs::fcntl_setfl(&fd, rfs::fcntl_getfl(&fd)? - OFlags::NONBLOCK)?;
        Ok(File::from(fd))
    }

    /// The names in this folder that have the form of part files and
    /// resume notes: one pass over the folder instead of a lookup per name.
    pub fn temp_names(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for e in rfs::Dir::read_from(&self.fd)? {
            if let Ok(n) = e?.file_name().to_str() {
                if is_reserved(n) {
                    names.push(n.to_string());
                }
            }
        }
        Ok(names)
    }

    /// What is at `name` (a symlink itself, not what it points to).
    pub fn stat(&self, name: &str) -> Option<rfs::Stat> {
        rfs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW).ok()
    }

    /// Whether `name` is a regular file (not through a symlink).
    pub fn is_file(&self, name: &str) -> bool {
        self.stat(name)
            .is_some_and(|st| FileType::from_raw_mode(st.st_mode as _) == FileType::RegularFile)
    }

    pub fn remove(&self, name: &str) -> io::Result<()> {
        rfs::unlinkat(&self.fd, name, AtFlags::empty()).map_err(io::Error::from)
    }

    /// Renames `from` over `to`, both in this folder. A symlink at `to` is
    /// replaced, never followed.
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        rfs::renameat(&self.fd, from, &self.fd, to).map_err(io::Error::from)
    }

    /// Replaces `name` with a new file holding `bytes`. Whatever was there
    /// (a symlink, a hard link to a file elsewhere) is unlinked first, and
    /// the file is created with `O_EXCL`, so nothing outside is written.
    pub fn write_new(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        match self.remove(name) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        self.create_new(name)?.write_all(bytes)
    }

    /// Makes renames in this folder durable.
    pub fn sync(&self) -> io::Result<()> {
        rfs::fsync(&self.fd).map_err(io::Error::from)
    }

    /// The whole file system's dirty data to disk (one call for a batch).
    pub fn syncfs(&self) -> io::Result<()> {
        rfs::syncfs(&self.fd).map_err(io::Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_fit_any_name_and_are_reserved() {
        let long = "é".repeat(127); // 254 bytes
        for n in ["a", "x.fxfer-part", long.as_str()] {
            let p = part_name(n);
            let r = note_name(n);
            assert!(p.len() <= NAME_MAX && r.len() <= NAME_MAX, "{p}");
            assert!(is_reserved(&p) && is_reserved(&r), "{p} {r}");
            assert!(!is_reserved(n));
        }
        assert_ne!(part_name(&long), part_name(&(long.clone() + "x")));
        assert!(!is_reserved(".a.fxfer-part"));
        assert!(!is_reserved("a.0123456789abcdef.fxfer-part"));
        // The names earlier versions gave, so their partial downloads are
        // found and resumed.
        assert_eq!(
            temp_names("s0016.bin"),
            (
                ".s0016.bin.78d78e37ca0e4930.fxfer-part".to_string(),
                ".s0016.bin.78d78e37ca0e4930.fxfer-resume".to_string()
            )
        );
    }

    #[test]
    fn nothing_is_created_through_a_symlink_that_leads_out() {
        let outside = tempfile::tempdir().unwrap();
        let dl = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dl.path().join("out")).unwrap();
        std::fs::create_dir(dl.path().join("in")).unwrap();
        std::os::unix::fs::symlink("in", dl.path().join("alias")).unwrap();
        let f = Folder::open(dl.path().to_path_buf()).unwrap();
        let e = f.dir(Path::new("out/new"), true).unwrap_err();
        assert!(e.to_string().contains("leads outside"), "{e}");
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
        let d = f.dir(Path::new("alias/sub"), true).unwrap().unwrap();
        d.write_new("note", b"x").unwrap();
        assert!(dl.path().join("in/sub/note").exists());
    }
}
