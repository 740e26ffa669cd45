//! Times and modes of downloaded files, kept as `rsync -t` and `cp -p` keep
//! them: a file gets the server's modification time and its executable
//! bits (never set-uid, set-gid or sticky; the umask still applies).
//! Everything here works on open descriptors, never on paths.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::sync::OnceLock;

use rustix::fs::{Mode, Timespec, Timestamps, UTIME_OMIT};

use crate::protocol::FileHeader;

/// Gives a verified download the server's time and executable bits.
pub fn apply(file: &File, h: &FileHeader) -> io::Result<()> {
    apply_to(file, &file.metadata()?, h)
}

/// [`apply`] for a file whose metadata was just read (`md`): one system
/// call less per file, which counts with thousands of small ones.
pub fn apply_to(file: &File, md: &std::fs::Metadata, h: &FileHeader) -> io::Result<()> {
    set_exec_bits_from(file, md.permissions().mode(), h.mode)?;
    set_mtime(file, h.mtime, h.mtime_nanos)
}

/// Gives `fd` the modification time `mtime` + `nanos` (the access time is
/// left alone).
pub fn set_mtime<Fd: AsFd>(fd: Fd, mtime: i64, nanos: u32) -> io::Result<()> {
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: mtime,
            tv_nsec: nanos.into(),
        },
    };
    rustix::fs::futimens(fd, &times).map_err(io::Error::from)
}

/// Makes `file`'s executable bits those of `server_mode`, as far as the
/// umask allows, and clears set-uid, set-gid and sticky. Read and write
/// bits stay as the file was created (by the umask).
pub fn set_exec_bits(file: &File, server_mode: u16) -> io::Result<()> {
    set_exec_bits_from(file, file.metadata()?.permissions().mode(), server_mode)
}

/// [`set_exec_bits`] for a file whose mode is known to be `mode`.
fn set_exec_bits_from(file: &File, mode: u32, server_mode: u16) -> io::Result<()> {
    let now = mode & 0o7777;
    let want = (now & 0o666) | (u32::from(server_mode) & 0o111 & !umask());
    if want != now {
        rustix::fs::fchmod(file, Mode::from_raw_mode(want)).map_err(io::Error::from)?;
    }
    Ok(())
}

/// Whether `local_mode`'s executable bits already match what
/// [`set_exec_bits`] would give a file from `server_mode`.
pub fn exec_bits_match(local_mode: u32, server_mode: u16) -> bool {
    local_mode & 0o7111 == u32::from(server_mode) & 0o111 & !umask()
}

/// The process's umask, read without changing it (`umask(2)` can only be
/// read by setting it, which would race with files other threads create).
fn umask() -> u32 {
    static UMASK: OnceLock<u32> = OnceLock::new();
    *UMASK.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Umask:"))
                    .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            })
            // Without /proc, the usual default.
            .unwrap_or(0o022)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn times_and_exec_bits_are_set_and_special_bits_never() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let f = File::create(&p).unwrap();
        set_mtime(&f, 1_700_000_000, 123_456_789).unwrap();
        set_exec_bits(&f, 0o4755).unwrap();
        let md = std::fs::metadata(&p).unwrap();
        assert_eq!((md.mtime(), md.mtime_nsec()), (1_700_000_000, 123_456_789));
        assert_eq!(md.mode() & 0o7000, 0, "no set-uid");
        assert_eq!(md.mode() & 0o100, 0o100);
        assert!(exec_bits_match(md.mode(), 0o755));
        set_exec_bits(&f, 0o644).unwrap();
        let md = std::fs::metadata(&p).unwrap();
        assert_eq!(md.mode() & 0o111, 0);
        assert!(!exec_bits_match(md.mode(), 0o755));
    }
}
