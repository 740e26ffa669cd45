//! The sandbox on both ends: which request paths the server accepts and how
//! they map under the served root, and which names from a server the client
//! may write under its download folder. Bad paths are refused, never
//! repaired.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Why a relative path was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPath(pub &'static str);

impl std::fmt::Display for BadPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Splits a protocol path ("a/b/c.txt") into its components, refusing
/// anything that is not a plain relative path: absolute paths, `.` and `..`,
/// empty components, NUL bytes and backslashes (a separator on Windows
/// peers). `allow_empty` lets "" mean the root itself (for LIST).
pub fn split_relative(path: &str, allow_empty: bool) -> Result<Vec<&str>, BadPath> {
    if path.is_empty() {
        return if allow_empty {
            Ok(Vec::new())
        } else {
            Err(BadPath("empty path"))
        };
    }
    if path.contains('\0') {
        return Err(BadPath("path contains a NUL byte"));
    }
    if path.contains('\\') {
        return Err(BadPath("path contains a backslash"));
    }
    if path.starts_with('/') {
        return Err(BadPath("absolute paths are not allowed"));
    }
    let parts: Vec<&str> = path.split('/').collect();
    for p in &parts {
        match *p {
            "" => return Err(BadPath("path has an empty component")),
            "." | ".." => return Err(BadPath("path has a '.' or '..' component")),
            _ => {}
        }
    }
    Ok(parts)
}

/// Why the server will not serve a path.
#[derive(Debug)]
pub enum Refusal {
    /// The path is malformed or leaves the root.
    Forbidden(String),
    /// Nothing is there (or it is hidden).
    NotFound,
    /// Something is there, but not a regular file (or not a folder, when a
    /// folder was asked for).
    WrongKind,
    /// Something is there but we could not open it.
    Io(io::Error),
}

/// What an open expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    File,
    Dir,
    /// Anything; opened with `O_PATH` (never reads, never blocks).
    Any,
}

/// Most symlinks followed while resolving one path in the portable walk.
const MAX_LINKS: usize = 40;

/// The served folder. Every request is resolved against an open handle of
/// it, with the kernel refusing any escape (`openat2` with
/// `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`); where `openat2` is missing, a
/// component-by-component walk that never follows a symlink blindly does the
/// same. Checking a path string after the fact would race with renames.
#[derive(Debug)]
pub struct Root {
    canonical: PathBuf,
    fd: OwnedFd,
    /// Serve dot-files too.
    pub hidden: bool,
    /// Use the portable walk even where openat2 exists.
    portable: bool,
}

impl Root {
    /// Opens the served root. A missing folder or a file in its place is an
    /// error now, not at the first request.
    pub fn new(dir: &Path, hidden: bool) -> Result<Root, String> {
        let why = |e: io::Error| {
            format!(
                "cannot serve {}: {}",
                dir.display(),
                crate::error::describe_io(&e)
            )
        };
        let canonical = fs::canonicalize(dir).map_err(why)?;
        if !canonical.is_dir() {
            return Err(format!("cannot serve {}: not a directory", dir.display()));
        }
        fs::read_dir(&canonical).map_err(why)?;
        let fd = rfs::open(
            &canonical,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| why(e.into()))?;
        Ok(Root {
            canonical,
            fd,
            hidden,
            // A debugging knob (and how the tests cover the walk).
            portable: std::env::var_os("FXFER_PORTABLE_OPEN").is_some(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.canonical
    }

    /// Whether a name may be shown and served.
    pub fn visible(&self, name: &str) -> bool {
        self.hidden || !name.starts_with('.')
    }

    /// Opens `rel` (a protocol path; "" is the root itself for `Want::Dir`)
    /// without ever leaving the root. Files are opened non-blocking, so a
    /// FIFO swapped in cannot hang the thread; anything but a regular file
    /// is refused before it is read.
    pub fn open(&self, rel: &str, want: Want) -> Result<OwnedFd, Refusal> {
        let parts =
            split_relative(rel, want != Want::File).map_err(|e| Refusal::Forbidden(e.0.into()))?;
        if parts.iter().any(|p| !self.visible(p)) {
            return Err(Refusal::NotFound);
        }
        if want == Want::Dir {
            // A folder takes one open: O_DIRECTORY has the kernel refuse
            // anything else before it is opened (no FIFO or device is ever
            // opened), and with one open nothing can be swapped in between
            // a look and an open. Only a refusal needs the look below, to
            // tell "not a folder" from "not there".
            let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::DIRECTORY;
            match self.resolve(&parts, flags) {
                Err(Refusal::NotFound) => {}
                done => return done,
            }
        }
        // Look first (O_PATH opens nothing), then open for reading only what
        // is the right kind.
        let probe = self.resolve(&parts, OFlags::PATH)?;
        let kind = file_type(&probe)?;
        match want {
            Want::Any => return Ok(probe),
            Want::Dir if kind != FileType::Directory => return Err(Refusal::WrongKind),
            Want::File if kind != FileType::RegularFile => return Err(Refusal::WrongKind),
            _ => {}
        }
        let flags = OFlags::RDONLY
            | OFlags::NONBLOCK
            | OFlags::NOCTTY
            | if want == Want::Dir {
                OFlags::DIRECTORY
            } else {
                OFlags::empty()
            };
        let fd = self.resolve(&parts, flags)?;
        // The same object as the probe, or something was swapped in.
        let (a, b) = (stat(&probe)?, stat(&fd)?);
        if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
            return Err(Refusal::Forbidden("path changed while being opened".into()));
        }
        Ok(fd)
    }

    fn resolve(&self, parts: &[&str], flags: OFlags) -> Result<OwnedFd, Refusal> {
        let flags = flags | OFlags::CLOEXEC;
        if parts.is_empty() {
            return rfs::openat(&self.fd, ".", flags | OFlags::DIRECTORY, Mode::empty())
                .map_err(refusal);
        }
        if !self.portable {
            let rel = parts.join("/");
            // EAGAIN: a rename somewhere on the system raced the kernel's
            // check of a "..", and it asks to be asked again; if that keeps
            // happening, the portable walk answers instead.
            for _ in 0..4 {
                match rfs::openat2(
                    &self.fd,
                    rel.as_str(),
                    flags,
                    Mode::empty(),
                    ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
                ) {
                    Ok(fd) => return Ok(fd),
                    Err(e) if e == Errno::AGAIN => continue,
                    // Kernels before 5.6, or a sandbox that blocks the call.
                    Err(e) if e == Errno::NOSYS || e == Errno::PERM => break,
                    Err(e) => return Err(refusal(e)),
                }
            }
        }
        self.walk(parts, flags)
    }

    /// The portable resolution: one component at a time from the root,
    /// never following a symlink implicitly (`O_NOFOLLOW`), expanding links
    /// by hand and refusing any that climb above the root.
    fn walk(&self, parts: &[&str], flags: OFlags) -> Result<OwnedFd, Refusal> {
        let root_dir = || {
            rfs::openat(
                &self.fd,
                ".",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(refusal)
        };
        let mut stack = vec![root_dir()?];
        let mut todo: VecDeque<String> = parts.iter().map(|s| s.to_string()).collect();
        let mut links = 0;
        let escape = || Refusal::Forbidden("path leads outside the served folder".into());
        while let Some(comp) = todo.pop_front() {
            match comp.as_str() {
                "" | "." => continue,
                ".." => {
                    if stack.len() == 1 {
                        return Err(escape());
                    }
                    stack.pop();
                    continue;
                }
                _ => {}
            }
            let dir = stack.last().expect("root stays on the stack");
            let st = rfs::statat(dir, comp.as_str(), AtFlags::SYMLINK_NOFOLLOW).map_err(refusal)?;
            if FileType::from_raw_mode(st.st_mode as _) == FileType::Symlink {
                links += 1;
                if links > MAX_LINKS {
                    return Err(Refusal::Forbidden("too many symbolic links".into()));
                }
                let target = rfs::readlinkat(dir, comp.as_str(), Vec::new()).map_err(refusal)?;
                let target = target.to_string_lossy().into_owned();
                // Absolute links are refused, as RESOLVE_BENEATH does: where
                // they lead depends on more than the served folder.
                if target.starts_with('/') {
                    return Err(escape());
                }
                let rest: Vec<String> = target.split('/').map(str::to_string).collect();
                for c in rest.into_iter().rev() {
                    todo.push_front(c);
                }
                continue;
            }
            if todo.is_empty() {
                return rfs::openat(dir, comp.as_str(), flags | OFlags::NOFOLLOW, Mode::empty())
                    .map_err(refusal);
            }
            let next = rfs::openat(
                dir,
                comp.as_str(),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(refusal)?;
            stack.push(next);
        }
        // Every component was "." or "..": the folder we ended in.
        let dir = stack.last().expect("root stays on the stack");
        rfs::openat(dir, ".", flags, Mode::empty()).map_err(refusal)
    }
}

fn refusal(e: Errno) -> Refusal {
    if e == Errno::XDEV || e == Errno::LOOP {
        // openat2 says EXDEV for an escape; ELOOP for a magic link, or a
        // symlink met with O_NOFOLLOW that changed under us.
        Refusal::Forbidden("path leads outside the served folder".into())
    } else if e == Errno::NOENT || e == Errno::NOTDIR {
        Refusal::NotFound
    } else {
        Refusal::Io(e.into())
    }
}

fn stat(fd: &OwnedFd) -> Result<rfs::Stat, Refusal> {
    rfs::fstat(fd).map_err(|e| Refusal::Io(e.into()))
}

fn file_type(fd: &OwnedFd) -> Result<FileType, Refusal> {
    Ok(FileType::from_raw_mode(stat(fd)?.st_mode as _))
}

/// Where a file named by the server goes under `download_dir`. The name
/// must be a plain relative path: a hostile server cannot make us write
/// outside the folder.
pub fn local_target(download_dir: &Path, name: &str) -> Result<PathBuf, BadPath> {
    let parts = split_relative(name, false)?;
    let mut p = download_dir.to_path_buf();
    p.extend(parts);
    Ok(p)
}

/// Expands a leading `~` (alone or as `~/...`) to `$HOME`, as a shell
/// would: the shell's folder prompt and config files have no shell to do
/// it for them. `~user` is left alone.
pub fn expand_tilde(p: &Path) -> PathBuf {
    let home = || std::env::var_os("HOME").filter(|h| !h.is_empty());
    match p.strip_prefix("~") {
        Ok(rest) => match home() {
            Some(h) => PathBuf::from(h).join(rest),
            None => p.to_path_buf(),
        },
        Err(_) => p.to_path_buf(),
    }
}

/// Checks that `dir` is, or can become, a folder: it is one (or a link to
/// one), or it is missing and the first existing path above it is a
/// folder. Otherwise says which path is in the way: "X is a file, not a
/// folder".
pub fn check_folder(dir: &Path) -> Result<(), String> {
    for p in dir.ancestors().filter(|p| !p.as_os_str().is_empty()) {
        match fs::metadata(p) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) => return Err(format!("{} is a file, not a folder", p.display())),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                continue
            }
            // Not ours to judge here; creating the folder reports it.
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// Makes text safe to print: control characters (C0 and C1: newlines,
/// escape sequences, CSI), the bidirectional overrides and isolates that
/// reorder what a terminal shows (U+202E makes `txt.exe` read `exe.txt`),
/// and the Unicode line and paragraph separators become visible escapes,
/// so a file name or a peer's message cannot rewrite the terminal, forge a
/// line of output or a log line, or disguise itself. This is the one
/// escaping function: every line the client prints and every log line
/// goes through it.
pub fn display_safe(s: &str) -> Cow<'_, str> {
    if !s.chars().any(unsafe_to_show) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_to_show(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A local path in a message, made safe the same way.
pub fn display_path(p: &Path) -> String {
    display_safe(&p.to_string_lossy()).into_owned()
}

fn unsafe_to_show(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_with_dot_dot_inside_resolves_while_files_are_renamed_elsewhere() {
        // openat2 asks callers to retry ("EAGAIN") when any rename on the
        // system raced its ".." resolution: a busy file server sees that.
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("sub")).unwrap();
        fs::write(d.path().join("a.txt"), b"x").unwrap();
        std::os::unix::fs::symlink("sub/../a.txt", d.path().join("link")).unwrap();
        let other = tempfile::tempdir().unwrap();
        let (x, y) = (other.path().join("x"), other.path().join("y"));
        fs::write(&x, b"").unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let renamer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = fs::rename(&x, &y);
                    let _ = fs::rename(&y, &x);
                }
            })
        };
        let root = Root::new(d.path(), false).unwrap();
        let failed = (0..50_000)
            .filter(|_| root.open("link", Want::File).is_err())
            .count();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        renamer.join().unwrap();
        assert_eq!(failed, 0);
    }

    #[test]
    fn a_file_in_the_way_of_a_folder_is_named() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        fs::write(&f, b"x").unwrap();
        assert_eq!(check_folder(d.path()), Ok(()));
        assert_eq!(check_folder(&d.path().join("new/deeper")), Ok(()));
        let want = Err(format!("{} is a file, not a folder", f.display()));
        assert_eq!(check_folder(&f), want);
        assert_eq!(check_folder(&f.join("sub/deeper")), want);
    }

    #[test]
    fn tilde_means_home() {
        let home = PathBuf::from(std::env::var_os("HOME").unwrap_or_default());
        if home.as_os_str().is_empty() {
            return;
        }
        assert_eq!(expand_tilde(Path::new("~")), home);
        assert_eq!(expand_tilde(Path::new("~/x/y")), home.join("x/y"));
        assert_eq!(expand_tilde(Path::new("~bob/x")), Path::new("~bob/x"));
        assert_eq!(expand_tilde(Path::new("a/~")), Path::new("a/~"));
    }

    #[test]
    fn hostile_relative_paths_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "..",
            "../x",
            "a/../../x",
            "a/./b",
            "./a",
            "a//b",
            "a/",
            "a\\..\\b",
            "..\\x",
            "a\0b",
            "/",
        ] {
            assert!(split_relative(bad, false).is_err(), "{bad:?} accepted");
        }
        assert_eq!(split_relative("", true).unwrap(), Vec::<&str>::new());
        for good in ["a", "a b.txt", "dir/ü/x.bin", "...", "..a", "a.."] {
            assert!(split_relative(good, false).is_ok(), "{good:?} refused");
        }
    }

    fn check_confinement(portable: bool) {
        use std::os::unix::fs::symlink;
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("in.txt"), b"i").unwrap();
        std::fs::write(d.join(".hidden"), b"h").unwrap();
        symlink(outside.path().join("secret"), d.join("out")).unwrap();
        symlink("in.txt", d.join("alias")).unwrap();
        symlink("../in.txt", d.join("sub/up")).unwrap();
        symlink("../../etc/passwd", d.join("sub/upup")).unwrap();
        symlink(
            d.canonicalize().unwrap().join("in.txt"),
            d.join("abs_inside"),
        )
        .unwrap();
        symlink("/proc/self/root/etc/passwd", d.join("magic")).unwrap();
        symlink("loop2", d.join("loop1")).unwrap();
        symlink("loop1", d.join("loop2")).unwrap();
        let mut root = Root::new(d, false).unwrap();
        root.portable = portable;
        let forbidden = |r: Result<OwnedFd, Refusal>| matches!(r, Err(Refusal::Forbidden(_)));
        assert!(
            forbidden(root.open("out", Want::File)),
            "portable={portable}"
        );
        assert!(forbidden(root.open("sub/upup", Want::File)));
        assert!(forbidden(root.open("magic", Want::File)));
        assert!(forbidden(root.open("loop1", Want::File)));
        assert!(matches!(
            root.open("nope", Want::File),
            Err(Refusal::NotFound)
        ));
        assert!(matches!(
            root.open(".hidden", Want::File),
            Err(Refusal::NotFound)
        ));
        assert!(matches!(
            root.open("sub", Want::File),
            Err(Refusal::WrongKind)
        ));
        assert!(matches!(
            root.open("in.txt", Want::Dir),
            Err(Refusal::WrongKind)
        ));
        // Absolute links are refused even when they point inside.
        assert!(forbidden(root.open("abs_inside", Want::File)));
        for ok in ["alias", "in.txt", "sub/up"] {
            assert!(
                root.open(ok, Want::File).is_ok(),
                "{ok} portable={portable}"
            );
        }
        assert!(root.open("", Want::Dir).is_ok());
        root.hidden = true;
        assert!(root.open(".hidden", Want::File).is_ok());
    }

    #[test]
    fn escaping_symlinks_are_refused_and_inner_ones_work() {
        check_confinement(false);
    }

    #[test]
    fn portable_walk_confines_just_as_well() {
        check_confinement(true);
    }

    #[test]
    fn local_targets_stay_inside() {
        let d = Path::new("/tmp/dl");
        assert_eq!(local_target(d, "a/b").unwrap(), Path::new("/tmp/dl/a/b"));
        assert!(local_target(d, "../x").is_err());
        assert!(local_target(d, "/tmp/x").is_err());
        assert!(local_target(d, "a/../../x").is_err());
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(display_safe("plain ü"), "plain ü");
        assert_eq!(display_safe("a\nb\x1b[31m"), "a\\u{a}b\\u{1b}[31m");
        assert_eq!(display_safe("c1\u{9b}2J"), "c1\\u{9b}2J");
        assert_eq!(display_safe("x\u{202e}txt.exe"), "x\\u{202e}txt.exe");
        assert_eq!(display_safe("a\u{2028}b\r"), "a\\u{2028}b\\u{d}");
        // Escaping twice changes nothing: sinks may escape what is escaped.
        let once = display_safe("\x1b]0;t\x07").into_owned();
        assert_eq!(display_safe(&once), once);
    }

    #[test]
    fn missing_root_is_an_error() {
        let e = Root::new(Path::new("/definitely/not/here"), false).unwrap_err();
        assert!(e.contains("no such file"), "{e}");
    }
}
