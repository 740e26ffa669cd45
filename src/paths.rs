//! The sandbox on both ends: which request paths the server accepts and how
//! they map under the served root, and which names from a server the client
//! may write under its download folder. Bad paths are refused, never
//! repaired.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

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
    /// Nothing is there.
    NotFound,
    /// Something is there but we could not look at it.
    Io(io::Error),
}

/// The served folder, canonicalized once at start-up.
#[derive(Debug, Clone)]
pub struct Root {
    canonical: PathBuf,
}

impl Root {
    /// Opens the served root. A missing folder or a file in its place is an
    /// error now, not at the first request.
    pub fn new(dir: &Path) -> Result<Root, String> {
        let canonical = fs::canonicalize(dir).map_err(|e| {
            format!(
                "cannot serve {}: {}",
                dir.display(),
                crate::error::describe_io(&e)
            )
        })?;
        if !canonical.is_dir() {
            return Err(format!("cannot serve {}: not a directory", dir.display()));
        }
        fs::read_dir(&canonical).map_err(|e| {
            format!(
                "cannot serve {}: {}",
                dir.display(),
                crate::error::describe_io(&e)
            )
        })?;
        Ok(Root { canonical })
    }

    pub fn path(&self) -> &Path {
        &self.canonical
    }

    /// Maps a request path to a path under the root, following symlinks only
    /// as far as they stay inside it.
    pub fn resolve(&self, rel: &str, allow_root: bool) -> Result<PathBuf, Refusal> {
        let parts = split_relative(rel, allow_root).map_err(|e| Refusal::Forbidden(e.0.into()))?;
        let mut joined = self.canonical.clone();
        joined.extend(parts);
        let real = match fs::canonicalize(&joined) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Refusal::NotFound),
            Err(e) => return Err(Refusal::Io(e)),
        };
        if !real.starts_with(&self.canonical) {
            return Err(Refusal::Forbidden(
                "path leads outside the served folder".into(),
            ));
        }
        Ok(real)
    }

    /// Whether `path` (already under the root) stays inside it once its
    /// symlinks are followed. Used to keep escaping links out of listings.
    pub fn contains(&self, path: &Path) -> bool {
        fs::canonicalize(path).is_ok_and(|p| p.starts_with(&self.canonical))
    }
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

/// Makes a name safe to print: control characters (newlines, escape
/// sequences) become visible escapes, so a file name cannot rewrite the
/// terminal or forge a log line.
pub fn display_safe(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn escaping_symlinks_are_refused_and_inner_ones_work() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        let root_dir = tempfile::tempdir().unwrap();
        std::fs::write(root_dir.path().join("in.txt"), b"i").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root_dir.path().join("out"))
            .unwrap();
        std::os::unix::fs::symlink("in.txt", root_dir.path().join("alias")).unwrap();
        let root = Root::new(root_dir.path()).unwrap();
        assert!(matches!(
            root.resolve("out", false),
            Err(Refusal::Forbidden(_))
        ));
        assert!(matches!(
            root.resolve("nope", false),
            Err(Refusal::NotFound)
        ));
        assert!(root.resolve("alias", false).is_ok());
        assert!(root.resolve("in.txt", false).is_ok());
        assert!(!root.contains(&root_dir.path().join("out")));
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
    }

    #[test]
    fn missing_root_is_an_error() {
        let e = Root::new(Path::new("/definitely/not/here")).unwrap_err();
        assert!(e.contains("no such file"), "{e}");
    }
}
