//! Writes the seed corpus under `fuzz/corpus/<target>/seed-*` using the
//! crate's own encoders, so the seeds are valid frames by construction.
//!
//!     cd fuzz && cargo run --example build_corpus
//!
//! Re-running it overwrites the seeds with identical bytes.

use std::fs;
use std::path::Path;

use fxfer::protocol::{
    auth, write_auth_challenge, write_auth_ok, write_data_header, write_entries, write_error,
    write_file_header, write_trailer, Entry, EntryKind, ErrorCode, ErrorFrame, FileHeader, Hello,
    ListWriter, Request, Stamp, Trailer, AUTH_LEN, HELLO_AUTH, VERSION,
};

type Res = Result<(), Box<dyn std::error::Error>>;

fn save(target: &str, name: &str, bytes: &[u8]) -> Res {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
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
    save(
        t,
        "hello-auth",
        &Hello {
            version: VERSION,
            flags: HELLO_AUTH,
        }
        .to_bytes(),
    )?;
    save(
        t,
        "hello-v1-flags",
        &Hello {
            version: 1,
            flags: 0xffff,
        }
        .to_bytes(),
    )?;
    save(
        t,
        "auth",
        &req(&[Request::Auth {
            nonce: [0x11; AUTH_LEN],
            mac: [0x22; AUTH_LEN],
        }])?,
    )?;
    save(
        t,
        "list-root",
        &req(&[Request::List {
            path: String::new(),
            recursive: false,
            digests: false,
        }])?,
    )?;
    save(
        t,
        "list-recursive",
        &req(&[Request::List {
            path: "docs/sub dir".into(),
            recursive: true,
            digests: true,
        }])?,
    )?;
    save(t, "get-plain", &req(&[Request::get("a/b/c.txt")])?)?;
    save(
        t,
        "get-resume",
        &req(&[Request::Get {
            path: "big.iso".into(),
            offset: 1 << 20,
            if_unchanged: Some(Stamp {
                size: 4 << 20,
                mtime: 1_700_000_000,
                mtime_nanos: 999_999_999,
            }),
            len: None,
        }])?,
    )?;
    save(
        t,
        "get-unicode",
        &req(&[Request::get("ünïcødé/файл/🦀.rs")])?,
    )?;
    // A ranged GET (one piece of a file fetched in several).
    save(
        t,
        "get-range",
        &req(&[Request::Get {
            path: "big.iso".into(),
            offset: 8 << 20,
            if_unchanged: Some(Stamp {
                size: 32 << 20,
                mtime: 1_700_000_000,
                mtime_nanos: 5,
            }),
            len: Some(8 << 20),
        }])?,
    )?;
    save(t, "quit", &req(&[Request::Quit])?)?;
    save(
        t,
        "pipelined",
        &req(&[
            Request::List {
                path: "x".into(),
                recursive: true,
                digests: false,
            },
            Request::get("x/y"),
            Request::Get {
                path: "x/z".into(),
                offset: 7,
                if_unchanged: None,
                len: None,
            },
            Request::Quit,
        ])?,
    )?;
    // A real session's opening: greeting, then requests on the same stream.
    let mut session = Hello::current().to_bytes().to_vec();
    session.extend(req(&[
        Request::Auth {
            nonce: [7; AUTH_LEN],
            mac: [9; AUTH_LEN],
        },
        Request::get("f"),
        Request::Quit,
    ])?);
    save(t, "hello-then-requests", &session)?;
    Ok(())
}

fn entry(path: &str, kind: EntryKind, size: u64) -> Entry {
    Entry {
        path: path.into(),
        kind,
        size,
        mtime: 1_700_000_000,
        mtime_nanos: 123_456_789,
        mode: 0o755,
        digest: (kind == EntryKind::File).then_some([7; 32]),
    }
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
    write_file_header(
        &mut b,
        &FileHeader {
            size: 20,
            offset: 6,
            mtime: -5,
            mtime_nanos: 0,
            mode: 0o644,
        },
    )?;
    write_data_header(&mut b, 10)?;
    b.extend_from_slice(&body[..10]);
    write_data_header(&mut b, 4)?;
    b.extend_from_slice(&body[10..]);
    write_trailer(&mut b, &Trailer::blake3([0xab; 32]))?;
    save(t, "get-answer", &b)?;

    let mut b = Vec::new();
    write_file_header(
        &mut b,
        &FileHeader {
            size: 0,
            offset: 0,
            mtime: 0,
            mtime_nanos: 0,
            mode: 0,
        },
    )?;
    write_trailer(&mut b, &Trailer::none())?;
    save(t, "get-empty-file", &b)?;

    let mut b = Vec::new();
    write_data_header(&mut b, 0)?;
    write_data_header(&mut b, 3)?;
    b.extend_from_slice(b"abc");
    save(t, "data-frames", &b)?;

    let mut b = Vec::new();
    write_error(
        &mut b,
        &ErrorFrame::new(ErrorCode::NotFound, "no such file: x"),
    )?;
    save(t, "error", &b)?;

    let mut b = Vec::new();
    write_error(&mut b, &ErrorFrame::new(ErrorCode::Other(0xbeef), ""))?;
    write_error(
        &mut b,
        &ErrorFrame::new(ErrorCode::SourceChanged, "changed"),
    )?;
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
    write_error(
        &mut b,
        &ErrorFrame::new(ErrorCode::AuthFailed, "wrong token"),
    )?;
    save(t, "auth-failed", &b)?;
    Ok(())
}

/// A whole GET answer for `body`: FILE, DATA frames of `piece` bytes, END
/// with `digest` (the body's own when `None`).
fn answer(
    body: &[u8],
    piece: usize,
    digest: Option<[u8; 32]>,
) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let mut b = Vec::new();
    let size = body.len() as u64;
    write_file_header(
        &mut b,
        &FileHeader {
            size,
            offset: 0,
            mtime: 1_700_000_000,
            mtime_nanos: 1,
            mode: 0o640,
        },
    )?;
    for c in body.chunks(piece) {
        write_data_header(&mut b, c.len() as u32)?;
        b.extend_from_slice(c);
    }
    let digest = digest.unwrap_or(*blake3::hash(body).as_bytes());
    write_trailer(&mut b, &Trailer::blake3(digest))?;
    Ok(b)
}

fn listing(entries: &[Entry]) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let mut b = Vec::new();
    let mut lw = ListWriter::default();
    for e in entries {
        lw.push(&mut b, e.clone())?;
    }
    lw.finish(&mut b)?;
    Ok(b)
}

/// `client_session` inputs: a mode byte (see the target; 128 and up: a GET
/// without a listing first), then what the server sends after its greeting.
fn sessions() -> Res {
    let t = "client_session";
    let seed = |name: &str, mode: u8, parts: &[&[u8]]| -> Res {
        let mut b = vec![mode];
        for p in parts {
            b.extend_from_slice(p);
        }
        save(t, name, &b)
    };
    let entries = vec![
        entry("docs", EntryKind::Dir, 0),
        entry("docs/readme.md", EntryKind::File, 1234),
        entry("f", EntryKind::File, 14),
    ];
    let list = listing(&entries)?;
    let body = b"hello, fuzzer\n";
    let get = answer(body, 5, None)?;
    seed("listing-then-get", 0, &[&list, &get])?;
    seed("get", 128, &[&get])?;
    seed("get-nested", 132, &[&get])?;
    seed(
        "get-short-reads",
        32,
        &[&list, &answer(&[0x5a; 3000], 1000, None)?],
    )?;
    seed("listing-digests-then-get", 1, &[&list, &get])?;
    seed(
        "get-bad-digest",
        128,
        &[&answer(body, 14, Some([0xab; 32]))?],
    )?;
    seed("get-empty-file", 128, &[&answer(b"", 1, None)?])?;
    // A larger file: the part is written by a thread of its own.
    let mut big = Vec::new();
    write_file_header(
        &mut big,
        &FileHeader {
            size: 5 << 20,
            offset: 0,
            mtime: 0,
            mtime_nanos: 0,
            mode: 0o600,
        },
    )?;
    write_data_header(&mut big, 1 << 20)?;
    big.extend_from_slice(&[1; 4096]);
    seed("get-large-cut-short", 128, &[&big])?;

    let mut refused = Vec::new();
    write_error(
        &mut refused,
        &ErrorFrame::new(ErrorCode::NotFound, "no such file: f"),
    )?;
    seed("get-refused", 0, &[&list, &refused])?;
    let mut aborted = Vec::new();
    write_file_header(
        &mut aborted,
        &FileHeader {
            size: 14,
            offset: 0,
            mtime: 0,
            mtime_nanos: 0,
            mode: 0o644,
        },
    )?;
    write_data_header(&mut aborted, 5)?;
    aborted.extend_from_slice(&body[..5]);
    write_error(
        &mut aborted,
        &ErrorFrame::new(ErrorCode::SourceChanged, "f changed while sent"),
    )?;
    seed("get-aborted", 0, &[&list, &aborted])?;

    // Two listings pipelined, the first refused.
    let mut many = Vec::new();
    write_error(
        &mut many,
        &ErrorFrame::new(ErrorCode::NotFound, "no such folder: a"),
    )?;
    many.extend(listing(&entries[..2])?);
    seed("list-many", 2, &[&many, &get])?;
    seed("list-folder", 3, &[&listing(&entries[1..])?, &get])?;

    // More entries than the small caps allow.
    let lots: Vec<Entry> = (0..50)
        .map(|i| entry(&format!("d/{i:03}"), EntryKind::File, i))
        .collect();
    seed("listing-over-caps", 16, &[&listing(&lots)?])?;

    // The token handshake: a challenge, then a proof the client rejects.
    let mut auth = Vec::new();
    write_auth_challenge(&mut auth, &[0x33; AUTH_LEN])?;
    write_auth_ok(&mut auth, &[0x44; AUTH_LEN])?;
    seed("auth", 8, &[&auth, &list, &get])?;

    // The greeting in the input: an older server refusing us, a busy one.
    let mut old = Hello {
        version: VERSION - 1,
        flags: 0,
    }
    .to_bytes()
    .to_vec();
    write_error(
        &mut old,
        &ErrorFrame::new(
            ErrorCode::UnsupportedVersion,
            "this server speaks version 5",
        ),
    )?;
    seed("greeting-old-version", 64, &[&old])?;
    let mut busy = Hello::current().to_bytes().to_vec();
    write_error(&mut busy, &ErrorFrame::new(ErrorCode::Busy, "server busy"))?;
    seed("greeting-busy", 64, &[&busy])?;
    seed(
        "greeting-then-listing",
        64,
        &[&Hello::current().to_bytes(), &list, &get],
    )?;
    Ok(())
}

/// `handshake` inputs: greetings, and a greeting followed by the proof the
/// target's fixed key, server nonce and channel binding make valid.
fn handshakes() -> Res {
    let t = "handshake";
    save(t, "hello", &Hello::current().to_bytes())?;
    save(
        t,
        "hello-auth",
        &Hello {
            version: VERSION,
            flags: HELLO_AUTH,
        }
        .to_bytes(),
    )?;
    save(
        t,
        "auth",
        &req(&[Request::Auth {
            nonce: [0x11; AUTH_LEN],
            mac: [0x22; AUTH_LEN],
        }])?,
    )?;
    let key = auth::key(b"fuzz token");
    let ours = [0x42; AUTH_LEN];
    let mut b = Hello::current().to_bytes().to_vec();
    b.extend(req(&[Request::Auth {
        nonce: ours,
        mac: auth::client_mac(&key, &[7; AUTH_LEN], &ours, &[7; 32]),
    }])?);
    save(t, "hello-then-valid-proof", &b)?;
    // A version 3 client proves itself the way version 3 did.
    let v3 = auth::Keys::new(b"fuzz token").client_mac(3, &[7; AUTH_LEN], &ours, &[7; 32]);
    let mut b = Hello {
        version: 3,
        flags: 0,
    }
    .to_bytes()
    .to_vec();
    b.extend(req(&[Request::Auth {
        nonce: ours,
        mac: v3,
    }])?);
    save(t, "hello-v3-then-valid-proof", &b)?;
    Ok(())
}

fn main() -> Res {
    requests()?;
    handshakes()?;
    responses()?;
    sessions()?;
    Ok(())
}
