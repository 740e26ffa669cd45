//! BLAKE3 digests of served files, and chaining values of the ranges a
//! ranged GET asks for. A digest is computed by reading the file (or the
//! range) on a helper thread while the body goes out with sendfile, and is
//! then kept in a bounded cache keyed by (device, inode, size, mtime,
//! ctime, range), so a file that is fetched again costs no second read.
//! The ctime is there because a file rewritten in place can keep its size
//! and have its mtime set back (`touch -r`, `rsync -t`, a restore from
//! backup); the kernel moves the ctime on every such change and nobody can
//! set it back, so a cached digest never describes bytes other than the
//! ones we send.
//! Listings with digests (a client comparing its copies) take them from
//! the same cache, hashing only what it lacks.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::Shared;
use crate::paths::{Refusal, Want};
use crate::protocol::{Entry, EntryKind, DIGEST_LEN, MODE_MASK};

/// Identifies one version of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nanos: i64,
    ctime: i64,
    ctime_nanos: i64,
    /// (offset, length) of a range; `None` for the whole file's digest.
    range: Option<(u64, u64)>,
}

impl Key {
    /// The version of the file `md` describes (the key of its digest).
    pub fn of(md: &Metadata) -> Key {
        Key {
            dev: md.dev(),
            ino: md.ino(),
            size: md.len(),
            mtime: md.mtime(),
            mtime_nanos: md.mtime_nsec(),
            ctime: md.ctime(),
            ctime_nanos: md.ctime_nsec(),
            range: None,
        }
    }

    /// The key of a range's chaining value in this version of the file.
    pub fn with_range(self, range: Option<(u64, u64)>) -> Key {
        Key { range, ..self }
    }
}

/// Most digests remembered; past this the cache starts afresh (a digest
/// is 32 bytes, so the bound is about 4 MiB).
const CAPACITY: usize = 65_536;
/// Read size for hashing: large enough for BLAKE3's SIMD paths.
const BLOCK: usize = 512 * 1024;

#[derive(Default)]
pub struct Cache {
    map: Mutex<HashMap<Key, [u8; 32]>>,
}

impl Cache {
    pub fn get(&self, key: &Key) -> Option<[u8; 32]> {
        self.map.lock().unwrap().get(key).copied()
    }

    pub fn put(&self, key: Key, digest: [u8; 32]) {
        let mut m = self.map.lock().unwrap();
        if m.len() >= CAPACITY {
            m.clear();
        }
        m.insert(key, digest);
    }
}

/// The chaining value of `bytes`, the subtree of a file's BLAKE3 tree that
/// starts at `offset` (which the request decoder checked is one).
pub fn subtree(offset: u64, bytes: &[u8]) -> [u8; 32] {
    use blake3::hazmat::HasherExt;
    let mut h = blake3::Hasher::new();
    h.set_input_offset(offset);
    h.update(bytes);
    h.finalize_non_root()
}

/// Hashes `file` with positioned reads (the file offset, used by sendfile,
/// is left alone): the BLAKE3 digest of its first `size` bytes, or with
/// `range` (offset, length) the chaining value of that subtree. A file that
/// ends early is an error: it changed under us. `cancel` stops the work
/// when the transfer failed anyway.
pub fn hash(
    file: &File,
    size: u64,
    range: Option<(u64, u64)>,
    cancel: &AtomicBool,
) -> io::Result<[u8; 32]> {
    use blake3::hazmat::HasherExt;
    let mut hasher = blake3::Hasher::new();
    let (mut pos, end) = match range {
        Some((at, len)) => {
            hasher.set_input_offset(at);
            (at, at + len)
        }
        None => (0, size),
    };
    let mut buf = vec![0u8; BLOCK];
    while pos < end {
        if cancel.load(Ordering::Relaxed) {
            return Err(io::Error::other("transfer cancelled"));
        }
        let want = (end - pos).min(BLOCK as u64) as usize;
        let n = file.read_at(&mut buf[..want], pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being hashed",
            ));
        }
        hasher.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(match range {
        Some(_) => hasher.finalize_non_root(),
        None => *hasher.finalize().as_bytes(),
    })
}

/// Files at least this large are hashed on every core when a listing asks
/// for their digest (nothing else competes for the CPU then).
const PARALLEL_MIN: u64 = 4 * 1024 * 1024;
/// Read size for parallel hashing: big enough to split across cores.
const PARALLEL_BLOCK: usize = 8 * 1024 * 1024;

/// The digest of the listed file `rel`, from the cache or computed now.
pub(crate) fn of_listed(shared: &Shared, rel: &str) -> Result<[u8; DIGEST_LEN], Refusal> {
    let file = File::from(shared.root.open(rel, Want::File)?);
    let md = file.metadata().map_err(Refusal::Io)?;
    cached_or_hashed(shared, &file, &md).map_err(Refusal::Io)
}

fn cached_or_hashed(shared: &Shared, file: &File, md: &Metadata) -> io::Result<[u8; DIGEST_LEN]> {
    let key = Key::of(md);
    if let Some(d) = shared.digests.get(&key) {
        return Ok(d);
    }
    let d = if md.len() >= PARALLEL_MIN {
        hash_file_parallel(file, md.len())?
    } else {
        hash(file, md.len(), None, &AtomicBool::new(false))?
    };
    // Only a file that still looks the same was hashed whole and alone.
    if file.metadata().is_ok_and(|now| Key::of(&now) == key) {
        shared.digests.put(key, d);
        Ok(d)
    } else {
        Err(io::Error::other("file changed while being hashed"))
    }
}

/// The listing entry of the regular file `path` (LIST of a file), with its
/// digest when asked for.
pub(crate) fn listed_file(shared: &Shared, path: &str, digests: bool) -> Result<Entry, Refusal> {
    let file = File::from(shared.root.open(path, Want::File)?);
    let md = file.metadata().map_err(Refusal::Io)?;
    if !md.is_file() {
        return Err(Refusal::WrongKind);
    }
    let digest = if digests {
        Some(cached_or_hashed(shared, &file, &md).map_err(Refusal::Io)?)
    } else {
        None
    };
    Ok(Entry {
        path: path.to_string(),
        kind: EntryKind::File,
        size: md.len(),
        mtime: md.mtime(),
        mtime_nanos: md.mtime_nsec().clamp(0, 999_999_999) as u32,
        mode: md.mode() as u16 & MODE_MASK,
        digest,
    })
}

/// Like [`hash_file`], spread over every core.
fn hash_file_parallel(file: &File, size: u64) -> io::Result<[u8; 32]> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; PARALLEL_BLOCK];
    let mut pos = 0u64;
    while pos < size {
        let want = (size - pos).min(PARALLEL_BLOCK as u64) as usize;
        let mut filled = 0;
        while filled < want {
            let n = file.read_at(&mut buf[filled..want], pos + filled as u64)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while being hashed",
                ));
            }
            filled += n;
        }
        hasher.update_rayon(&buf[..want]);
        pos += want as u64;
    }
    Ok(*hasher.finalize().as_bytes())
}
