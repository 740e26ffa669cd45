//! What an attack review found: a server that serves stale digests or
//! breaks its listings on odd paths, a token that is weaker than it looks,
//! and a client that a server (or a shared download folder) can trick.

use crate::util::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// 1 MiB: large enough for the server's digest cache (small files are
/// hashed as they are read).
const BIG: usize = 1024 * 1024;

#[test]
fn a_file_rewritten_in_place_with_the_same_size_and_mtime_is_served_fresh() {
    let s = Server::with_files(|h| write(h, "big.bin", &bytes(1, BIG)));
    assert_exit(&s.get(&["big.bin"]), 0);
    // Same size, mtime set back: only the ctime (and the bytes) differ.
    let p = s.host.join("big.bin");
    let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
    std::fs::write(&p, bytes(2, BIG)).unwrap();
    let f = std::fs::File::options().write(true).open(&p).unwrap();
    f.set_times(std::fs::FileTimes::new().set_modified(mtime))
        .unwrap();
    drop(f);
    let o = s.get(&["big.bin"]);
    assert_exit(&o, 0);
    assert!(!stderr(&o).contains("mismatch"), "{}", stderr(&o));
    assert!(
        std::fs::read(s.downloads().join("big.bin")).unwrap() == bytes(2, BIG),
        "the old bytes were kept"
    );
}

/// Creates folders under `base` (relative, component by component, since
/// the whole path is longer than the kernel takes in one call) and returns
/// the relative path made.
fn deep_dirs(base: &Path, total: usize) -> String {
    use rustix::fs::{mkdirat, openat, Mode, OFlags};
    let mut fd = openat(
        rustix::fs::CWD,
        base,
        OFlags::PATH | OFlags::DIRECTORY,
        Mode::empty(),
    )
    .unwrap();
    let mut rel = String::new();
    while rel.len() < total {
        let left = total - rel.len() - usize::from(!rel.is_empty());
        let name = "d".repeat(left.min(200));
        mkdirat(&fd, name.as_str(), Mode::from_raw_mode(0o755)).unwrap();
        fd = openat(
            &fd,
            name.as_str(),
            OFlags::PATH | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        if !rel.is_empty() {
            rel.push('/');
        }
        rel.push_str(&name);
    }
    rel
}

#[test]
fn a_path_of_4096_bytes_is_left_out_and_the_rest_of_the_listing_stands() {
    let s = Server::with_files(|h| {
        write(h, "a.txt", b"alpha");
        write(h, "z/zz.txt", b"zed");
        deep_dirs(h, 4096);
    });
    let o = s.client("ls").arg("-R").output().unwrap();
    assert_exit(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("a.txt") && out.contains("z/zz.txt"), "{out}");
    assert!(
        !out.lines().any(|l| l.trim_end().len() > 4096),
        "an entry no request can name was listed"
    );
    let log = s.wait_log("cannot be served");
    assert!(log.contains("cannot be served"), "{log}");
    // Globs stand on the same listing.
    let o = s.get(&["*.txt"]);
    assert_exit(&o, 0);
    assert!(s.downloads().join("a.txt").exists());
}

fn token_file(dir: &Path, text: &str, mode: u32) -> std::path::PathBuf {
    let p = dir.join("token");
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

#[test]
fn a_blank_or_exposed_token_is_refused_and_a_short_one_warned_about() {
    let work = tempfile::tempdir().unwrap();
    let host = work.path().join("host");
    std::fs::create_dir(&host).unwrap();
    let serve = |extra: &[&str]| {
        fxfer(work.path())
            .args(["serve", "--port", "0", "--dir"])
            .arg(&host)
            .args(extra)
            .output()
            .unwrap()
    };
    // White space only: not a token at all (the client, so the test never
    // waits on a server that should not have started).
    let o = fxfer(work.path())
        .args(["ls", "--port", &dead_port().to_string()])
        .env("FXFER_TOKEN", " \t \n")
        .output()
        .unwrap();
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("FXFER_TOKEN is empty"),
        "{}",
        stderr(&o)
    );
    // Readable by everyone: refused, with the fix.
    let tf = token_file(work.path(), "a-long-enough-token-0123456789", 0o644);
    let o = serve(&["--token-file", tf.to_str().unwrap()]);
    assert_exit(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains("readable by others") && err.contains("chmod 600"),
        "{err}"
    );
    // The client is held to the same rule.
    let o = fxfer(work.path())
        .args(["ls", "--port", &dead_port().to_string(), "--token-file"])
        .arg(&tf)
        .output()
        .unwrap();
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("readable by others"), "{}", stderr(&o));
    // Short: served, with a loud warning.
    let tf = token_file(work.path(), "abc", 0o600);
    let s = Server::builder()
        .host(&host)
        .arg("--token-file")
        .arg(tf.to_str().unwrap())
        .start();
    let log = s.wait_log("only 3 bytes");
    assert!(log.contains("token is only 3 bytes"), "{log}");
    assert!(
        s.stderr().contains("token is only 3 bytes"),
        "{}",
        s.stderr()
    );
}
