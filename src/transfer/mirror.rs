//! After the files are in place: folders get the server's times, and with
//! `--delete` what the server no longer has is removed from the mirrored
//! folders, and only there.
//!
//! Every step works beneath a descriptor of the download folder, one
//! component at a time with `O_NOFOLLOW`: a symlink in the download folder
//! is removed as the link it is, never followed, so nothing outside the
//! folder is ever touched. Dot-files are never removed (a server hides them
//! unless it runs with `--hidden`, so their absence from a listing proves
//! nothing), except our own: the part file and resume note of a file the
//! server no longer has (their names are ours, see [`super::folder`]) go,
//! unless another download is writing that part right now. Those of a file
//! still listed stay, so its download can resume.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};

use super::folder::{is_reserved, note_name, part_name};
use super::{PART_SUFFIX, RESUME_SUFFIX};
use crate::protocol::{Entry, EntryKind};

/// One path removed (or, in a dry run, that would be).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// Relative to the download folder, `/`-separated.
    pub path: String,
    pub folder: bool,
}

fn open_root(root: &Path) -> io::Result<OwnedFd> {
    rfs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
}

/// Opens the folder `rel` beneath `root` without following any symlink.
fn open_beneath(root: &OwnedFd, rel: &str) -> io::Result<OwnedFd> {
    let mut fd = rfs::openat(
        root,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        fd = rfs::openat(
            &fd,
            part,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
    }
    Ok(fd)
}

/// Removes from the folders `tops` (relative to `root`; "" is the download
/// folder itself) everything the server's complete listing `listing` does
/// not have. Returns what was removed and the paths that could not be.
pub fn delete_extras(
    root: &Path,
    tops: &[String],
    listing: &[Entry],
    dry_run: bool,
) -> (Vec<Removed>, Vec<(String, String)>) {
    let keep: HashSet<&str> = listing.iter().map(|e| e.path.as_str()).collect();
    let dirs: HashSet<&str> = listing
        .iter()
        .filter(|e| e.kind == EntryKind::Dir)
        .map(|e| e.path.as_str())
        .collect();
    let mut files_in: HashMap<&str, Vec<&str>> = HashMap::new();
    for e in listing.iter().filter(|e| e.kind == EntryKind::File) {
        let (dir, name) = e.path.rsplit_once('/').unwrap_or(("", e.path.as_str()));
        files_in.entry(dir).or_default().push(name);
    }
    let mut pass = Pass {
        keep,
        dirs,
        files_in,
        dry_run,
        removed: Vec::new(),
        failed: Vec::new(),
    };
    let root_fd = match open_root(root) {
        Ok(fd) => fd,
        // Nothing here yet: nothing to remove.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return (Vec::new(), Vec::new()),
        Err(e) => {
            return (
                Vec::new(),
                vec![(root.display().to_string(), crate::error::describe_io(&e))],
            )
        }
    };
    for top in tops {
        match open_beneath(&root_fd, top) {
            Ok(fd) => pass.walk(&fd, top),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => pass.failed.push((top.clone(), why(&e))),
        }
    }
    (pass.removed, pass.failed)
}

fn why(e: &io::Error) -> String {
    if e.raw_os_error() == Some(libc::ELOOP) || e.raw_os_error() == Some(libc::ENOTDIR) {
        "is a symlink or not a folder here; not following it".into()
    } else {
        crate::error::describe_io(e)
    }
}

struct Pass<'a> {
    keep: HashSet<&'a str>,
    dirs: HashSet<&'a str>,
    /// The server's files by folder, for the names of their partial
    /// downloads.
    files_in: HashMap<&'a str, Vec<&'a str>>,
    dry_run: bool,
    removed: Vec<Removed>,
    failed: Vec<(String, String)>,
}

impl Pass<'_> {
    fn walk(&mut self, dir: &OwnedFd, rel: &str) {
        let names = read_names(dir, rel, &mut self.failed);
        let leftovers = self.leftovers(dir, rel, &names);
        for (name, kind) in names {
            let path = join(rel, &name);
            if name.starts_with('.') {
                if leftovers.contains(&name) {
                    self.remove(dir, &name, &path, false);
                }
                continue;
            }
            if self.keep.contains(path.as_str()) {
                // Into folders both sides have; a link where the server has
                // a folder is left alone, never followed.
                if kind == FileType::Directory && self.dirs.contains(path.as_str()) {
                    match rfs::openat(
                        dir,
                        name.as_str(),
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    ) {
                        Ok(sub) => self.walk(&sub, &path),
                        Err(e) => self.failed.push((path, why(&e.into()))),
                    }
                }
                continue;
            }
            // A partial download of a file the server still has may be
            // resumed later.
            let base = name
                .strip_suffix(PART_SUFFIX)
                .or_else(|| name.strip_suffix(RESUME_SUFFIX));
            if base.is_some_and(|b| self.keep.contains(join(rel, b).as_str())) {
                continue;
            }
            self.remove(dir, &name, &path, kind == FileType::Directory);
        }
    }

    /// The part files and resume notes among `names` (in `dir`, the folder
    /// `rel`) that belong to no file the server lists there: a download
    /// that can never resume. A part another download holds locked stays,
    /// and so does its note. Only regular files (or links, removed as
    /// links) of exactly our names' form, never a folder.
    fn leftovers(&self, dir: &OwnedFd, rel: &str, names: &[(String, FileType)]) -> HashSet<String> {
        let ours = |(n, kind): &&(String, FileType)| {
            is_reserved(n)
                && matches!(kind, FileType::RegularFile | FileType::Symlink)
                && !self.keep.contains(join(rel, n).as_str())
        };
        let found: Vec<&(String, FileType)> = names.iter().filter(ours).collect();
        if found.is_empty() {
            return HashSet::new();
        }
        let mut listed = HashSet::new();
        for f in self.files_in.get(rel).into_iter().flatten() {
            listed.insert(part_name(f));
            listed.insert(note_name(f));
        }
        let mut gone: HashSet<String> = found
            .iter()
            .filter(|(n, _)| !listed.contains(n))
            .map(|(n, _)| n.clone())
            .collect();
        for (n, kind) in found {
            if let Some(stem) = n.strip_suffix(PART_SUFFIX) {
                if *kind == FileType::RegularFile && in_use(dir, n) {
                    gone.remove(n);
                    gone.remove(&format!("{stem}{RESUME_SUFFIX}"));
                }
            }
        }
        gone
    }

    /// Removes `name` in `dir` (a folder with everything in it).
    fn remove(&mut self, dir: &OwnedFd, name: &str, path: &str, folder: bool) {
        if folder {
            match rfs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(sub) => {
                    for (child, kind) in read_names(&sub, path, &mut self.failed) {
                        let p = join(path, &child);
                        self.remove(&sub, &child, &p, kind == FileType::Directory);
                    }
                }
                Err(e) => {
                    self.failed.push((path.to_string(), why(&e.into())));
                    return;
                }
            }
        }
        let done = if self.dry_run {
            Ok(())
        } else {
            let flags = if folder {
                AtFlags::REMOVEDIR
            } else {
                AtFlags::empty()
            };
            rfs::unlinkat(dir, name, flags)
        };
        match done {
            Ok(()) => self.removed.push(Removed {
                path: path.to_string(),
                folder,
            }),
            Err(e) => self
                .failed
                .push((path.to_string(), crate::error::describe_io(&e.into()))),
        }
    }
}

/// Whether another download holds the part file `name` locked (it locks
/// the part it writes for as long as it writes it).
fn in_use(dir: &OwnedFd, name: &str) -> bool {
    let Ok(fd) = rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    rfs::flock(&fd, rfs::FlockOperation::NonBlockingLockShared)
        == Err(rustix::io::Errno::WOULDBLOCK)
}

fn join(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_string()
    } else {
        format!("{rel}/{name}")
    }
}

/// The entries of `dir` with their types (not following symlinks), in
/// name order. Names that are not UTF-8 are left alone: no server can list
/// them, so nothing says they should go.
fn read_names(
    dir: &OwnedFd,
    rel: &str,
    failed: &mut Vec<(String, String)>,
) -> Vec<(String, FileType)> {
    let entries = match rfs::Dir::read_from(dir) {
        Ok(d) => d,
        Err(e) => {
            failed.push((rel.to_string(), crate::error::describe_io(&e.into())));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for e in entries.filter_map(Result::ok) {
        let Ok(name) = e.file_name().to_str() else {
            continue;
        };
        if name == "." || name == ".." {
            continue;
        }
        let kind = match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => FileType::from_raw_mode(st.st_mode as _),
            Err(_) => continue,
        };
        out.push((name.to_string(), kind));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Gives each of the server's folders in `folders` (relative to `root`) the
/// server's modification time, deepest first, creating those still missing
/// (empty on the server). Runs last: placing files changes a folder's time.
pub fn set_folder_times(root: &Path, folders: &[&Entry]) -> Vec<(String, String)> {
    let mut failed = Vec::new();
    let Ok(root_fd) = open_root(root) else {
        return failed;
    };
    let mut sorted: Vec<&&Entry> = folders.iter().collect();
    sorted.sort_by_key(|e| std::cmp::Reverse(e.path.matches('/').count()));
    // Parents first for creating, children first for times.
    for e in sorted.iter().rev() {
        let (parent, name) = match e.path.rsplit_once('/') {
            Some((p, n)) => (p, n),
            None => ("", e.path.as_str()),
        };
        if let Ok(p) = open_beneath(&root_fd, parent) {
            match rfs::mkdirat(&p, name, Mode::from_raw_mode(0o777)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(err) => failed.push((e.path.clone(), crate::error::describe_io(&err.into()))),
            }
        }
    }
    for e in sorted {
        let set = open_beneath(&root_fd, &e.path)
            .and_then(|fd| super::meta::set_mtime(&fd, e.mtime, e.mtime_nanos));
        if let Err(err) = set {
            failed.push((e.path.clone(), why(&err)));
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn e(path: &str, kind: EntryKind) -> Entry {
        Entry {
            path: path.into(),
            kind,
            size: 0,
            mtime: 1_600_000_000,
            mtime_nanos: 5,
            mode: 0o755,
            digest: None,
        }
    }

    #[test]
    fn deletes_only_extras_inside_and_never_follows_links() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("dl");
        let outside = t.path().join("outside");
        fs::create_dir_all(root.join("m/sub")).unwrap();
        fs::create_dir_all(root.join("m/gone/deeper")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("precious"), b"x").unwrap();
        for f in [
            "m/keep",
            "m/extra",
            "m/sub/keep",
            "m/sub/extra",
            "m/gone/deeper/f",
            "m/.hidden",
            "other",
        ] {
            fs::write(root.join(f), b"x").unwrap();
        }
        std::os::unix::fs::symlink(&outside, root.join("m/link")).unwrap();
        // A link where the server has a folder: left alone, not followed.
        std::os::unix::fs::symlink(&outside, root.join("m/asdir")).unwrap();
        fs::write(root.join("m/keep.fxfer-part"), b"x").unwrap();
        let listing = vec![
            e("m", EntryKind::Dir),
            e("m/keep", EntryKind::File),
            e("m/sub", EntryKind::Dir),
            e("m/sub/keep", EntryKind::File),
            e("m/asdir", EntryKind::Dir),
            e("m/asdir/precious", EntryKind::File),
        ];
        let (dry, failed) = delete_extras(&root, &["m".into()], &listing, true);
        assert!(failed.is_empty(), "{failed:?}");
        let (removed, failed) = delete_extras(&root, &["m".into()], &listing, false);
        assert!(failed.is_empty(), "{failed:?}");
        assert_eq!(dry, removed);
        let paths: Vec<&str> = removed.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "m/extra",
                "m/gone/deeper/f",
                "m/gone/deeper",
                "m/gone",
                "m/link",
                "m/sub/extra"
            ]
        );
        assert!(outside.join("precious").exists());
        assert!(root.join("m/keep").exists() && root.join("m/.hidden").exists());
        assert!(root.join("m/keep.fxfer-part").exists() && root.join("other").exists());
        assert!(fs::symlink_metadata(root.join("m/asdir")).is_ok());
    }

    #[test]
    fn a_linked_top_folder_is_refused_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("dl");
        let outside = t.path().join("outside");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("precious"), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("m")).unwrap();
        let (removed, failed) =
            delete_extras(&root, &["m".into()], &[e("m", EntryKind::Dir)], false);
        assert!(removed.is_empty());
        assert_eq!(failed.len(), 1);
        assert!(outside.join("precious").exists());
    }

    #[test]
    fn folder_times_are_set_and_missing_folders_made() {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        let a = e("a", EntryKind::Dir);
        let b = e("a/b", EntryKind::Dir);
        let failed = set_folder_times(t.path(), &[&a, &b]);
        assert!(failed.is_empty(), "{failed:?}");
        for p in ["a", "a/b"] {
            let md = fs::metadata(t.path().join(p)).unwrap();
            assert_eq!((md.mtime(), md.mtime_nsec()), (1_600_000_000, 5));
        }
    }
}
