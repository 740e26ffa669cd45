#![no_main]
//! The client's listing and GET state machines (`Connection::read_listing`
//! and friends, `Connection::receive_file` through the same receiving path
//! `fxfer get` takes, into a part file beneath a scratch folder) with the
//! input as everything the server sends after its greeting.
//!
//! The first input byte chooses the variant (see [`Mode`]); the rest is the
//! server's side of one connection: a listing, then a GET on the same
//! connection with whatever follows the listing's answer; or (top bit set)
//! a GET from the first byte on.
//!
//! Properties: no panic; every error is one clean line (not empty, nothing
//! `display_safe` would escape); a listing never holds more than the caps
//! allow; a GET reported complete left a file whose BLAKE3 digest the
//! server sent, and a GET that failed left nothing behind (no file under
//! its name, no part file, no note); no allocation above
//! `fxfer_fuzz::CLIENT_BOUND`, live heap under `LIVE_BOUND`.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use fxfer::client::{Connection, Limits};
use fxfer::paths::display_safe;
use fxfer::protocol::{entry_len, Entry, Hello, Request, HELLO_AUTH, VERSION};
use fxfer::transport::Memory;
use fxfer_fuzz::{Bounded, CLIENT_BOUND};
use libfuzzer_sys::fuzz_target;

/// Two 64 KiB connection buffers each, sink buffers of 1 MiB (the writing
/// thread of a large file holds up to six), a listing within the small caps.
const LIVE_BOUND: usize = 16 << 20;

#[global_allocator]
static ALLOC: Bounded = Bounded::new(CLIENT_BOUND, LIVE_BOUND);

/// Caps for the listings that use small ones.
const SMALL_ENTRIES: u64 = 40;
const SMALL_BYTES: u64 = 2048;

/// What the first byte chooses.
struct Mode(u8);

impl Mode {
    /// Which listing request (0-3).
    fn listing(&self) -> u8 {
        self.0 & 3
    }
    /// The GET is of a file in a subfolder.
    fn nested(&self) -> bool {
        self.0 & 4 != 0
    }
    /// The greeting asks for a token, and the client has one.
    fn token(&self) -> bool {
        self.0 & 8 != 0
    }
    /// Small listing caps, so the input can reach them.
    fn small_caps(&self) -> bool {
        self.0 & 16 != 0
    }
    /// Reads of at most 61 bytes.
    fn short_reads(&self) -> bool {
        self.0 & 32 != 0
    }
    /// The input holds the greeting too (none is prepended).
    fn own_greeting(&self) -> bool {
        self.0 & 64 != 0
    }
    /// A GET from the first byte on; otherwise a listing, then a GET on
    /// the same connection. (One connection per input, not both: half the
    /// cost, the same paths.)
    fn get_only(&self) -> bool {
        self.0 & 128 != 0
    }
}

fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("fxfer-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("a scratch folder");
        d.canonicalize().expect("a scratch folder")
    })
}

/// With `FXFER_FUZZ_DEBUG` set, each outcome is printed (to see what an
/// input does when replayed).
fn debug(what: std::fmt::Arguments) {
    static ON: OnceLock<bool> = OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("FXFER_FUZZ_DEBUG").is_some()) {
        eprintln!("client_session: {what}");
    }
}

/// One line, safe to print, not empty.
fn assert_clean(msg: &str) {
    debug(format_args!("error: {msg}"));
    assert!(!msg.is_empty(), "an empty error message");
    assert!(
        matches!(display_safe(msg), Cow::Borrowed(_)),
        "an error message that is not one clean line: {msg:?}"
    );
}

fn connect(server: &[u8], mode: &Mode, limits: &Limits) -> Result<Connection<Memory>, String> {
    let piece = if mode.short_reads() { 61 } else { usize::MAX };
    let wire = Memory::new(server.to_vec(), piece);
    let token = mode.token().then(|| b"fuzz token".to_vec());
    Connection::over(wire, "fuzz".into(), token, limits, "memory".into()).map_err(|e| e.to_string())
}

fn check_listing(got: Result<Vec<Entry>, fxfer::error::Error>, limits: &Limits) -> bool {
    match got {
        Ok(entries) => {
            debug(format_args!("listing of {} entries", entries.len()));
            assert!(entries.len() as u64 <= limits.max_list_entries);
            let bytes: u64 = entries.iter().map(|e| entry_len(e) as u64).sum();
            assert!(bytes <= limits.max_list_bytes);
            true
        }
        Err(e) => {
            assert_clean(&e.to_string());
            false
        }
    }
}

/// Runs the listing the mode asks for; whether the connection is still
/// in step afterwards.
fn listing(c: &mut Connection<Memory>, mode: &Mode, limits: &Limits) -> bool {
    match mode.listing() {
        0 => check_listing(c.list("", true), limits),
        1 => check_listing(c.list_with("x", true, true), limits),
        2 => match c.list_many(&["a", "b"]) {
            Ok(all) => all
                .into_iter()
                .flatten()
                .all(|l| check_listing(Ok(l), limits)),
            Err(e) => {
                assert_clean(&e.to_string());
                false
            }
        },
        _ => check_listing(c.list("a/b", false), limits),
    }
}

/// A GET on `c`; checks what it left in the scratch folder, then empties it.
fn get(c: &mut Connection<Memory>, mode: &Mode, server: &[u8]) {
    let dir = scratch();
    let name = if mode.nested() { "d/f" } else { "f" };
    let target = dir.join(name);
    if let Err(e) = c.send(&Request::get(name)) {
        assert_clean(&e.to_string());
        return;
    }
    match fxfer::transfer::receive_one(c, dir, name) {
        Ok(Ok(placed)) => {
            assert_eq!(placed.path, target);
            let bytes = std::fs::read(&target).expect("the placed file");
            let digest = *blake3::hash(&bytes).as_bytes();
            assert_eq!(digest, placed.digest);
            // Only a server that knew these bytes' digest can have sent it.
            assert!(
                server.windows(32).any(|w| w == digest),
                "a file placed without the server's digest of its bytes"
            );
            debug(format_args!("placed {name}: {} bytes", bytes.len()));
            std::fs::remove_file(&target).expect("remove the placed file");
        }
        Ok(Err(why)) => assert_clean(&why),
        Err(e) => assert_clean(&e.to_string()),
    }
    let left = |d: &Path| -> Vec<_> {
        std::fs::read_dir(d)
            .map(|r| r.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default()
    };
    if mode.nested() {
        let sub = dir.join("d");
        assert!(left(&sub).is_empty(), "left behind in d/: {:?}", left(&sub));
        let _ = std::fs::remove_dir(&sub);
    }
    assert!(left(dir).is_empty(), "left behind: {:?}", left(dir));
}

fuzz_target!(init: ALLOC.from_env(), |data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let mode = Mode(first);
    let mut server = Vec::with_capacity(rest.len() + 8);
    if !mode.own_greeting() {
        let flags = if mode.token() { HELLO_AUTH } else { 0 };
        server.extend_from_slice(&Hello { version: VERSION, flags }.to_bytes());
    }
    server.extend_from_slice(rest);
    let mut limits = Limits::new(Duration::from_secs(30));
    if mode.small_caps() {
        limits.max_list_entries = SMALL_ENTRIES;
        limits.max_list_bytes = SMALL_BYTES;
    }

    match connect(&server, &mode, &limits) {
        Ok(mut c) if mode.get_only() => get(&mut c, &mode, &server),
        Ok(mut c) => {
            if listing(&mut c, &mode, &limits) {
                get(&mut c, &mode, &server);
            }
        }
        Err(e) => assert_clean(&e),
    }
    fxfer_fuzz::report_peak(&ALLOC);
});
