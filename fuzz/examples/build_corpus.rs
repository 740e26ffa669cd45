//! Writes the seed corpus under `fuzz/corpus/<target>/seed-*` using the
//! crate's own encoders, so the seeds are valid frames by construction.
//!
//!     cd fuzz && cargo run --example build_corpus
//!
//! Re-running it overwrites the seeds with identical bytes.

use std::fs;
use std::path::Path;

use fxfer::protocol::{
    write_auth_challenge, write_auth_ok, write_data_header, write_entries, write_error,
    write_file_header, write_trailer, Entry, EntryKind, ErrorCode, ErrorFrame, FileHeader, Hello,
    ListWriter, Request, Stamp, Trailer, AUTH_LEN, HELLO_AUTH, VERSION,
};

type Res = Result<(), Box<dyn std::error::Error>>;

fn save(target: &str, name: &str, bytes: &[u8]) -> Res {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    fs::create_dir_all(&dir)?;
    fs::write(dir.join(format!("seed-{name}")), bytes)?;
    Ok(())
}

fn req(rs: &[Request]) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let mut b = Vec::new();
    for r in rs {
        r.write_to(&mut b)?;
    }
    Ok(b)
}

fn requests() -> Res {
    let t = "request_decode";
    save(t, "hello", &Hello::current().to_bytes())?;
    save(t, "hello-auth", &Hello { version: VERSION, flags: HELLO_AUTH }.to_bytes())?;
    save(t, "hello-v1-flags", &Hello { version: 1, flags: 0xffff }.to_bytes())?;
    save(t, "auth", &req(&[Request::Auth { nonce: [0x11; AUTH_LEN], mac: [0x22; AUTH_LEN] }])?)?;
    save(t, "list-root", &req(&[Request::List { path: String::new(), recursive: false, digests: false }])?)?;
    save(t, "list-recursive", &req(&[Request::List { path: "docs/sub dir".into(), recursive: true, digests: true }])?)?;
    save(t, "get-plain", &req(&[Request::get("a/b/c.txt")])?)?;
    save(
        t,
        "get-resume",
        &req(&[Request::Get {
            path: "big.iso".into(),
            offset: 1 << 20,
            if_unchanged: Some(Stamp { size: 4 << 20, mtime: 1_700_000_000, mtime_nanos: 999_999_999 }),
            len: None,
        }])?,
    )?;
    save(t, "get-unicode", &req(&[Request::get("ünïcødé/файл/🦀.rs")])?)?;
    save(t, "quit", &req(&[Request::Quit])?)?;
    save(
        t,
        "pipelined",
        &req(&[
            Request::List { path: "x".into(), recursive: true, digests: false },
            Request::get("x/y"),
            Request::Get { path: "x/z".into(), offset: 7, if_unchanged: None, len: None },
            Request::Quit,
        ])?,
    )?;
    // A real session's opening: greeting, then requests on the same stream.
    let mut session = Hello::current().to_bytes().to_vec();
    session.extend(req(&[
        Request::Auth { nonce: [7; AUTH_LEN], mac: [9; AUTH_LEN] },
        Request::get("f"),
        Request::Quit,
    ])?);
    save(t, "hello-then-requests", &session)?;
    Ok(())
}

fn entry(path: &str, kind: EntryKind, size: u64) -> Entry {
    Entry { path: path.into(), kind, size, mtime: 1_700_000_000, mtime_nanos: 123_456_789, mode: 0o755, digest: (kind == EntryKind::File).then_some([7; 32]) }
}

fn responses() -> Res {
    let t = "response_decode";
    let entries = vec![
        entry("docs", EntryKind::Dir, 0),
        entry("docs/readme.md", EntryKind::File, 1234),
        entry("ünï/🦀", EntryKind::File, u64::MAX),
    ];

    let mut b = Vec::new();
    write_entries(&mut b, &entries)?;
    save(t, "entries", &b)?;

    let mut b = Vec::new();
    let mut lw = ListWriter::default();
    for e in &entries {
        lw.push(&mut b, e.clone())?;
    }
    lw.finish(&mut b)?;
    save(t, "listing", &b)?;

    let mut b = Vec::new();
    ListWriter::default().finish(&mut b)?;
    save(t, "listing-empty", &b)?;

    // A whole GET answer: FILE, two DATA frames, END with a digest.
    let body = b"hello, fuzzer\n";
    let mut b = Vec::new();
    write_file_header(&mut b, &FileHeader { size: 20, offset: 6, mtime: -5, mtime_nanos: 0, mode: 0o644 })?;
    write_data_header(&mut b, 10)?;
    b.extend_from_slice(&body[..10]);
    write_data_header(&mut b, 4)?;
    b.extend_from_slice(&body[10..]);
    write_trailer(&mut b, &Trailer::blake3([0xab; 32]))?;
    save(t, "get-answer", &b)?;

    let mut b = Vec::new();
    write_file_header(&mut b, &FileHeader { size: 0, offset: 0, mtime: 0, mtime_nanos: 0, mode: 0 })?;
    write_trailer(&mut b, &Trailer::none())?;
    save(t, "get-empty-file", &b)?;

    let mut b = Vec::new();
    write_data_header(&mut b, 0)?;
    write_data_header(&mut b, 3)?;
    b.extend_from_slice(b"abc");
    save(t, "data-frames", &b)?;

    let mut b = Vec::new();
    write_error(&mut b, &ErrorFrame::new(ErrorCode::NotFound, "no such file: x"))?;
    save(t, "error", &b)?;

    let mut b = Vec::new();
    write_error(&mut b, &ErrorFrame::new(ErrorCode::Other(0xbeef), ""))?;
    write_error(&mut b, &ErrorFrame::new(ErrorCode::SourceChanged, "changed"))?;
    save(t, "errors-unknown-code", &b)?;

    // A listing followed by a failed GET on the same connection.
    let mut b = Vec::new();
    let mut lw = ListWriter::default();
    lw.push(&mut b, entries[1].clone())?;
    lw.finish(&mut b)?;
    write_error(&mut b, &ErrorFrame::new(ErrorCode::ForbiddenPath, "../etc"))?;
    save(t, "listing-then-error", &b)?;

    // The token handshake as the client reads it (after the greeting):
    // AUTH_CHALLENGE, then AUTH_OK, or an ERROR for a wrong token.
    let mut b = Vec::new();
    write_auth_challenge(&mut b, &[0x33; AUTH_LEN])?;
    write_auth_ok(&mut b, &[0x44; AUTH_LEN])?;
    save(t, "auth-ok", &b)?;

    let mut b = Vec::new();
    write_auth_challenge(&mut b, &[0x55; AUTH_LEN])?;
    write_error(&mut b, &ErrorFrame::new(ErrorCode::AuthFailed, "wrong token"))?;
    save(t, "auth-failed", &b)?;
    Ok(())
}

fn main() -> Res {
    requests()?;
    responses()?;
    Ok(())
}
