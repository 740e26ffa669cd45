//! Fetching only what changed: which listing a `get` needs to compare the
//! server's files with the local copies, and the comparison itself. The
//! placing and the deletion pass live elsewhere (`local`, `mirror`); this
//! module only decides.
//!
//! Three ways to compare (`--compare`, the config key `compare`):
//!
//! - `verify` (the default): a copy with the server's size and modification
//!   time is kept only when its content matches the server's BLAKE3 digest
//!   too, so a re-run never re-sends a file it has and never keeps a stale
//!   one; the price is reading the local copy.
//! - `update` (`--update`, rsync's quick check): size and time alone. No
//!   local file is read; a file changed on either side without a change of
//!   size or time is missed.
//! - `checksum` (`--checksum`): content alone, whatever the times say (a
//!   copy with the right content gets the server's time).
//! - `none`: no comparison; everything is fetched again.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::protocol::{Entry, EntryKind, DIGEST_LEN};

/// How a local copy is compared with the server's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Compare {
    /// Size and time, confirmed by content (BLAKE3).
    #[default]
    Verify,
    /// Size and time only (rsync's quick check).
    Update,
    /// Content only.
    Checksum,
    /// No comparison: every file is fetched again.
    None,
}

impl Compare {
    fn needs_digests(self) -> bool {
        matches!(self, Compare::Verify | Compare::Checksum)
    }
}

/// What a `get` needs from the server before it can decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// Nothing: every name is fetched as it is.
    None,
    /// The whole tree (patterns, folders).
    Tree { digests: bool },
    /// Each plain name on its own (a LIST of a file lists just it).
    Names { digests: bool },
}

/// Which listing `names` need. `tree` says whether patterns or folders
/// need the whole tree anyway; `dry_run` and `compare` whether copies
/// already in `root` must be compared.
pub fn listing(
    names: &[String],
    tree: bool,
    root: &Path,
    dry_run: bool,
    compare: Compare,
) -> Listing {
    let target_exists = |n: &String| {
        crate::paths::local_target(root, n.trim_end_matches('/'))
            .is_ok_and(|p| fs::symlink_metadata(p).is_ok())
    };
    if tree {
        // Digests only pay when something is already here to compare.
        let something_here = fs::read_dir(root).is_ok_and(|mut d| d.next().is_some());
        return Listing::Tree {
            digests: compare.needs_digests() && something_here,
        };
    }
    // An empty (or new) download folder has nothing to compare: one read
    // of it instead of a lookup per name.
    let empty = fs::read_dir(root).is_ok_and(|mut d| d.next().is_none());
    let any_here = compare != Compare::None && !empty && names.iter().any(target_exists);
    if !any_here && !dry_run {
        return Listing::None;
    }
    Listing::Names {
        digests: compare.needs_digests() && any_here,
    }
}

/// The verdict on one file already selected for download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Fetch,
    /// The local copy is the server's version: nothing to transfer.
    Unchanged,
}

/// A local copy to compare, and what the server says about it.
struct Candidate<'a> {
    target: &'a Path,
    entry: &'a Entry,
    local: fs::Metadata,
}

/// Compares each `(target, server entry)` pair; files without an entry or
/// without a local copy are fetched. Content comparisons hash the local
/// copies on every core. Copies found unchanged get the server's time and
/// executable bits when only those differ.
pub fn compare_all(
    compare: Compare,
    root: &Path,
    pairs: &[(PathBuf, Option<&Entry>)],
    dry_run: bool,
) -> Vec<Verdict> {
    // A copy is only read (and touched up) where it really lies inside the
    // download folder: a symlinked folder planted there must not lead us
    // to files elsewhere. (The download itself refuses such a path.)
    let mut inside: HashMap<PathBuf, bool> = HashMap::new();
    let mut is_inside = |target: &Path| -> bool {
        let Some(parent) = target.parent() else {
            return false;
        };
        *inside
            .entry(parent.to_path_buf())
            .or_insert_with(|| fs::canonicalize(parent).is_ok_and(|real| real.starts_with(root)))
    };
    let candidates: Vec<Option<Candidate>> = pairs
        .iter()
        .map(|(target, entry)| {
            let entry = (*entry).filter(|e| e.kind == EntryKind::File)?;
            let local = fs::symlink_metadata(target).ok().filter(|m| m.is_file())?;
            if !is_inside(target) {
                return None;
            }
            (local.len() == entry.size).then_some(Candidate {
                target,
                entry,
                local,
            })
        })
        .collect();
    if candidates.iter().all(Option::is_none) {
        // Nothing here to compare (plain names, a fresh folder): no
        // threads to start.
        return vec![Verdict::Fetch; candidates.len()];
    }
    // Copies are read on every core: one share of them per thread.
    let judge_all = |cs: &[Option<Candidate>]| -> Vec<Verdict> {
        cs.iter()
            .map(|c| match c {
                None => Verdict::Fetch,
                Some(c) => judge(compare, c, dry_run),
            })
            .collect()
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let share = candidates.len().div_ceil(threads).max(64);
    if candidates.len() <= share {
        return judge_all(&candidates);
    }
    std::thread::scope(|scope| {
        let parts: Vec<_> = candidates
            .chunks(share)
            .map(|part| (part.len(), scope.spawn(move || judge_all(part))))
            .collect();
        // A thread that failed proved nothing: its files are fetched.
        parts
            .into_iter()
            .flat_map(|(n, h)| h.join().unwrap_or_else(|_| vec![Verdict::Fetch; n]))
            .collect()
    })
}

fn judge(compare: Compare, c: &Candidate, dry_run: bool) -> Verdict {
    let same_time =
        (c.local.mtime(), c.local.mtime_nsec()) == (c.entry.mtime, i64::from(c.entry.mtime_nanos));
    let same = match compare {
        Compare::None => false,
        Compare::Update => same_time,
        Compare::Verify if !same_time => false,
        Compare::Verify | Compare::Checksum => match c.entry.digest {
            // Asked for but not sent: cannot prove anything, so fetch.
            None => false,
            Some(d) => hash_local(c.target, c.entry.size).is_ok_and(|ours| ours == d),
        },
    };
    if !same {
        return Verdict::Fetch;
    }
    if !dry_run {
        touch_up(c, same_time);
    }
    Verdict::Unchanged
}

/// Brings an unchanged copy's time and executable bits in line with the
/// server's. Failure only means the next quick check looks again.
fn touch_up(c: &Candidate, same_time: bool) {
    let exec_ok = super::meta::exec_bits_match(c.local.mode(), c.entry.mode);
    if same_time && exec_ok {
        return;
    }
    // O_NOFOLLOW: the copy was a regular file a moment ago; never follow
    // a link planted since.
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(f) = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(c.target)
    else {
        return;
    };
    if !exec_ok {
        let _ = super::meta::set_exec_bits(&f, c.entry.mode);
    }
    if !same_time {
        let _ = super::meta::set_mtime(&f, c.entry.mtime, c.entry.mtime_nanos);
    }
}

/// Files at least this large are hashed on every core.
const PARALLEL_MIN: u64 = 4 * 1024 * 1024;
const BLOCK: usize = 8 * 1024 * 1024;

/// BLAKE3 of the local file at `path`, which must hold exactly `size`
/// bytes (it is read with plain reads, never mapped: a file truncated
/// under us is an error, not a crash).
pub fn hash_local(path: &Path, size: u64) -> io::Result<[u8; DIGEST_LEN]> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; (size as usize).clamp(1, BLOCK)];
    let mut total = 0u64;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match f.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            break;
        }
        if size >= PARALLEL_MIN {
            hasher.update_rayon(&buf[..filled]);
        } else {
            hasher.update(&buf[..filled]);
        }
        total += filled as u64;
        if total > size {
            break;
        }
    }
    if total != size {
        return Err(io::Error::other("the local copy changed while being read"));
    }
    Ok(*hasher.finalize().as_bytes())
}

/// The server's entries by path.
pub fn by_path(entries: &[Entry]) -> HashMap<&str, &Entry> {
    entries.iter().map(|e| (e.path.as_str(), e)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(size: u64, mtime: i64, digest: Option<[u8; 32]>) -> Entry {
        Entry {
            path: "f".into(),
            kind: EntryKind::File,
            size,
            mtime,
            mtime_nanos: 0,
            mode: 0o644,
            digest,
        }
    }

    #[test]
    fn each_mode_keeps_and_fetches_what_it_promises() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, b"hello").unwrap();
        let f = File::open(&p).unwrap();
        crate::transfer::meta::set_mtime(&f, 1000, 0).unwrap();
        let right = *blake3::hash(b"hello").as_bytes();
        let wrong = *blake3::hash(b"jello").as_bytes();
        let root = fs::canonicalize(dir.path()).unwrap();
        let p = root.join("f");
        let verdict =
            |c: Compare, e: Entry| compare_all(c, &root, &[(p.clone(), Some(&e))], true)[0];
        use Verdict::*;
        // Same size and time, same content.
        assert_eq!(verdict(Compare::Update, entry(5, 1000, None)), Unchanged);
        assert_eq!(
            verdict(Compare::Verify, entry(5, 1000, Some(right))),
            Unchanged
        );
        assert_eq!(
            verdict(Compare::Checksum, entry(5, 1000, Some(right))),
            Unchanged
        );
        // Same size and time, other content: only the quick check misses it.
        assert_eq!(
            verdict(Compare::Update, entry(5, 1000, Some(wrong))),
            Unchanged
        );
        assert_eq!(verdict(Compare::Verify, entry(5, 1000, Some(wrong))), Fetch);
        assert_eq!(
            verdict(Compare::Checksum, entry(5, 1000, Some(wrong))),
            Fetch
        );
        // Other time, same content: only --checksum keeps it.
        assert_eq!(verdict(Compare::Update, entry(5, 999, Some(right))), Fetch);
        assert_eq!(verdict(Compare::Verify, entry(5, 999, Some(right))), Fetch);
        assert_eq!(
            verdict(Compare::Checksum, entry(5, 999, Some(right))),
            Unchanged
        );
        // Other size, or no digest to prove it: fetched.
        assert_eq!(verdict(Compare::Update, entry(6, 1000, None)), Fetch);
        assert_eq!(verdict(Compare::Verify, entry(5, 1000, None)), Fetch);
        // No local copy.
        let gone = dir.path().join("gone");
        assert_eq!(
            compare_all(
                Compare::Update,
                &root,
                &[(gone, Some(&entry(5, 1000, None)))],
                true
            )[0],
            Fetch
        );
    }
}
