//! BLAKE3 digests of served files. A digest is computed by reading the file
//! on a helper thread while the body goes out with sendfile, and is then
//! kept in a bounded cache keyed by (device, inode, size, mtime, ctime), so
//! a file that is fetched again costs no second read. The ctime is there
//! because a file rewritten in place can keep its size and have its mtime
//! set back (`touch -r`, `rsync -t`, a restore from backup); the kernel
//! moves the ctime on every such change and nobody can set it back, so a
//! cached digest never describes bytes other than the ones we send.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

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
}

impl Key {
    pub fn of(md: &Metadata) -> Key {
        Key {
            dev: md.dev(),
            ino: md.ino(),
            size: md.len(),
            mtime: md.mtime(),
            mtime_nanos: md.mtime_nsec(),
            ctime: md.ctime(),
            ctime_nanos: md.ctime_nsec(),
        }
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

/// Hashes the first `size` bytes of `file` with positioned reads (the file
/// offset, used by sendfile, is left alone). A file that ends early is an
/// error: it changed under us. `cancel` stops the work when the transfer
/// failed anyway.
pub fn hash_file(file: &File, size: u64, cancel: &AtomicBool) -> io::Result<[u8; 32]> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; BLOCK];
    let mut pos = 0u64;
    while pos < size {
        if cancel.load(Ordering::Relaxed) {
            return Err(io::Error::other("transfer cancelled"));
        }
        let want = (size - pos).min(BLOCK as u64) as usize;
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
    Ok(*hasher.finalize().as_bytes())
}
