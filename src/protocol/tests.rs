//! Round-trips and hostile-input checks for the wire format.

use super::*;
use std::io::Cursor;

fn entry(path: &str, kind: EntryKind, size: u64) -> Entry {
    Entry {
        path: path.into(),
        kind,
        size,
        mtime: 1_700_000_000,
        mtime_nanos: 123_456_789,
        mode: 0o644,
        digest: None,
    }
}

#[test]
fn hello_round_trips_and_checks_magic() {
    let h = Hello {
        version: 7,
        flags: 0xBEEF,
    };
    let mut buf = Vec::new();
    h.write_to(&mut buf).unwrap();
    assert_eq!(&buf[..4], b"FXFR");
    assert_eq!(Hello::read_from(&mut Cursor::new(&buf)).unwrap(), h);

    let http = b"GET / HTTP/1.1\r\n\r\n";
    assert!(matches!(
        Hello::read_from(&mut Cursor::new(&http[..])),
        Err(ProtocolError::BadMagic)
    ));
    assert!(matches!(
        Hello::read_from(&mut Cursor::new(&buf[..5])),
        Err(ProtocolError::Io(_))
    ));
    assert!(matches!(
        Hello::read_from(&mut Cursor::new(&[][..])),
        Err(ProtocolError::Closed)
    ));
}

#[test]
fn requests_round_trip() {
    let reqs = [
        Request::List {
            path: String::new(),
            recursive: false,
            digests: false,
        },
        Request::List {
            path: "logs/2026".into(),
            recursive: true,
            digests: true,
        },
        Request::Get {
            path: "a b/ü.bin".into(),
            offset: u64::MAX,
            if_unchanged: None,
            len: None,
        },
        Request::Get {
            path: "resume.bin".into(),
            offset: 77,
            if_unchanged: Some(Stamp {
                size: 1 << 40,
                mtime: -3,
                mtime_nanos: 999_999_999,
            }),
            len: None,
        },
        Request::get("x".repeat(MAX_PATH_LEN)),
        Request::Get {
            path: "big.iso".into(),
            offset: 64 << 20,
            if_unchanged: Some(Stamp {
                size: 1 << 30,
                mtime: 1_700_000_000,
                mtime_nanos: 5,
            }),
            len: Some(64 << 20),
        },
        Request::Auth {
            nonce: [1; AUTH_LEN],
            mac: [2; AUTH_LEN],
        },
        Request::Quit,
    ];
    let mut buf = Vec::new();
    for r in &reqs {
        r.write_to(&mut buf).unwrap();
    }
    let mut cur = Cursor::new(&buf);
    for r in &reqs {
        assert_eq!(&Request::read_from(&mut cur).unwrap(), r);
    }
    assert!(matches!(
        Request::read_from(&mut cur),
        Err(ProtocolError::Closed)
    ));
}

#[test]
fn overlong_path_is_refused_on_encode_and_decode() {
    let r = Request::get("x".repeat(MAX_PATH_LEN + 1));
    assert!(matches!(
        r.write_to(&mut Vec::new()),
        Err(ProtocolError::TooLarge { .. })
    ));
    // Hand-built frame with a 5000-byte path.
    let mut p = vec![frame::GET];
    let payload_len = 2 + 5000 + 8 + 1;
    p.extend_from_slice(&(payload_len as u32).to_be_bytes());
    p.extend_from_slice(&5000u16.to_be_bytes());
    p.extend(std::iter::repeat_n(b'a', 5000));
    p.extend_from_slice(&0u64.to_be_bytes());
    p.push(0);
    assert!(matches!(
        Request::read_from(&mut Cursor::new(&p)),
        Err(ProtocolError::Malformed { .. })
    ));
}

#[test]
fn responses_round_trip() {
    let mut buf = Vec::new();
    let mut exe = entry("dir/run.sh", EntryKind::File, 3);
    exe.mode = 0o4755;
    exe.digest = Some([5; DIGEST_LEN]);
    let entries = vec![
        entry("a.txt", EntryKind::File, 0),
        entry("dir", EntryKind::Dir, 0),
        entry("dir/ß space.bin", EntryKind::File, u64::MAX),
        exe,
    ];
    write_entries(&mut buf, &entries).unwrap();
    let fh = FileHeader {
        size: 10,
        offset: 4,
        mtime: -5,
        mtime_nanos: 999_999_999,
        mode: 0o755,
    };
    write_file_header(&mut buf, &fh).unwrap();
    write_data_header(&mut buf, 6).unwrap();
    buf.extend_from_slice(b"456789");
    let trailer = Trailer {
        algorithm: DigestAlgorithm::Blake3,
        digest: vec![7; 32],
    };
    write_trailer(&mut buf, &trailer).unwrap();
    write_trailer(&mut buf, &Trailer::none()).unwrap();
    let err = ErrorFrame::new(ErrorCode::ForbiddenPath, "nope: ../x");
    write_error(&mut buf, &err).unwrap();
    let unknown = ErrorFrame::new(ErrorCode::Other(999), "");
    write_error(&mut buf, &unknown).unwrap();
    write_auth_challenge(&mut buf, &[9; AUTH_LEN]).unwrap();
    write_auth_ok(&mut buf, &[8; AUTH_LEN]).unwrap();

    let mut cur = Cursor::new(&buf);
    assert_eq!(
        Response::read_from(&mut cur).unwrap(),
        Response::Entries(entries)
    );
    assert_eq!(Response::read_from(&mut cur).unwrap(), Response::File(fh));
    assert_eq!(
        Response::read_from(&mut cur).unwrap(),
        Response::Data { len: 6 }
    );
    let mut body = Vec::new();
    read_data_payload(&mut cur, 6, |b: &[u8]| -> Result<()> {
        body.extend_from_slice(b);
        Ok(())
    })
    .unwrap();
    assert_eq!(body, b"456789");
    assert_eq!(
        Response::read_from(&mut cur).unwrap(),
        Response::End(trailer)
    );
    assert_eq!(
        Response::read_from(&mut cur).unwrap(),
        Response::End(Trailer::none())
    );
    assert_eq!(Response::read_from(&mut cur).unwrap(), Response::Error(err));
    assert_eq!(
        Response::read_from(&mut cur).unwrap(),
        Response::Error(unknown)
    );
    assert_eq!(
        Response::read_from(&mut cur).unwrap(),
        Response::AuthChallenge {
            nonce: [9; AUTH_LEN]
        }
    );
    assert_eq!(
        Response::read_from(&mut cur).unwrap(),
        Response::AuthOk {
            proof: [8; AUTH_LEN]
        }
    );
    assert!(matches!(
        Response::read_from(&mut cur),
        Err(ProtocolError::Closed)
    ));
}

#[test]
fn error_codes_are_stable() {
    let all = [
        (ErrorCode::NotFound, 1),
        (ErrorCode::NotRegularFile, 2),
        (ErrorCode::ForbiddenPath, 3),
        (ErrorCode::Busy, 4),
        (ErrorCode::BadRequest, 5),
        (ErrorCode::UnsupportedVersion, 6),
        (ErrorCode::Internal, 7),
        (ErrorCode::SourceChanged, 8),
        (ErrorCode::PermissionDenied, 9),
        (ErrorCode::AuthFailed, 10),
    ];
    for (c, n) in all {
        assert_eq!(c.code(), n);
        assert_eq!(ErrorCode::from_code(n), c);
    }
}

#[test]
fn long_error_message_is_cut_on_a_char_boundary() {
    let e = ErrorFrame::new(ErrorCode::Internal, "é".repeat(MAX_MESSAGE_LEN));
    assert!(e.message.len() <= MAX_MESSAGE_LEN);
    let mut buf = Vec::new();
    write_error(&mut buf, &e).unwrap();
    assert_eq!(
        Response::read_from(&mut Cursor::new(&buf)).unwrap(),
        Response::Error(e)
    );
}

#[test]
fn list_writer_splits_into_bounded_frames() {
    let mut buf = Vec::new();
    let mut lw = ListWriter::default();
    let n = 5000u64;
    for i in 0..n {
        lw.push(&mut buf, entry(&format!("{i:0>60}"), EntryKind::File, i))
            .unwrap();
    }
    lw.finish(&mut buf).unwrap();
    let mut cur = Cursor::new(&buf);
    let mut got = 0u64;
    let mut frames = 0;
    loop {
        match Response::read_from(&mut cur).unwrap() {
            Response::Entries(es) => {
                for e in es {
                    assert_eq!(e.size, got);
                    got += 1;
                }
                frames += 1;
            }
            Response::ListEnd { count } => {
                assert_eq!(count, n);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, n);
    assert!(frames > 1, "5000 entries must not fit one 64 KiB frame");
}

#[test]
fn oversized_frames_are_refused_before_allocation() {
    for kind in [frame::GET, frame::LIST, frame::ERROR, frame::ENTRIES] {
        let mut b = vec![kind];
        b.extend_from_slice(&u32::MAX.to_be_bytes());
        let is_req = kind < 0x80;
        let err = if is_req {
            Request::read_from(&mut Cursor::new(&b)).unwrap_err()
        } else {
            Response::read_from(&mut Cursor::new(&b)).unwrap_err()
        };
        assert!(matches!(err, ProtocolError::TooLarge { .. }), "{err}");
    }
    let mut b = vec![frame::DATA];
    b.extend_from_slice(&(MAX_DATA_PAYLOAD as u32 + 1).to_be_bytes());
    assert!(matches!(
        Response::read_from(&mut Cursor::new(&b)),
        Err(ProtocolError::TooLarge { .. })
    ));
}

#[test]
fn truncated_frames_are_errors() {
    let mut buf = Vec::new();
    Request::Get {
        path: "file.txt".into(),
        offset: 9,
        if_unchanged: Some(Stamp {
            size: 10,
            mtime: 1,
            mtime_nanos: 2,
        }),
        len: None,
    }
    .write_to(&mut buf)
    .unwrap();
    for cut in 1..buf.len() {
        let err = Request::read_from(&mut Cursor::new(&buf[..cut])).unwrap_err();
        assert!(matches!(err, ProtocolError::Io(_)), "cut {cut}: {err}");
    }
    let mut buf = Vec::new();
    write_entries(&mut buf, &[entry("a", EntryKind::File, 1)]).unwrap();
    for cut in 1..buf.len() {
        assert!(Response::read_from(&mut Cursor::new(&buf[..cut])).is_err());
    }
}

#[test]
fn malformed_payloads_are_errors() {
    // Entry count says 3, only one entry present.
    let mut p = PayloadBuilder::default();
    p.u16(3);
    encode_entry(&mut p, &entry("a", EntryKind::File, 1), VERSION).unwrap();
    let mut buf = Vec::new();
    write_frame(&mut buf, frame::ENTRIES, p.as_slice()).unwrap();
    assert!(matches!(
        Response::read_from(&mut Cursor::new(&buf)),
        Err(ProtocolError::Malformed { .. })
    ));

    // Offset beyond size; a mode above 0o7777.
    for (offset, mode) in [(2, 0o644), (0, 0o10000)] {
        let mut p = PayloadBuilder::default();
        p.u64(1);
        p.u64(offset);
        p.i64(0);
        p.u32(0);
        p.u16(mode);
        let mut buf = Vec::new();
        write_frame(&mut buf, frame::FILE, p.as_slice()).unwrap();
        assert!(Response::read_from(&mut Cursor::new(&buf)).is_err());
    }
    // A digest of the wrong length, or on a folder.
    for (kind, len) in [(1u8, 31u8), (2, 32)] {
        let mut p = PayloadBuilder::default();
        p.u16(1);
        p.u8(kind);
        p.u64(0);
        p.i64(0);
        p.u32(0);
        p.u16(0o755);
        p.u8(len);
        p.raw(&vec![0; usize::from(len)]);
        p.str16("x", MAX_PATH_LEN, "ENTRIES").unwrap();
        let mut buf = Vec::new();
        write_frame(&mut buf, frame::ENTRIES, p.as_slice()).unwrap();
        assert!(matches!(
            Response::read_from(&mut Cursor::new(&buf)),
            Err(ProtocolError::Malformed { .. })
        ));
    }
    // Unknown LIST flags.
    let mut buf = Vec::new();
    write_frame(&mut buf, frame::LIST, &[0, 0, 0x04]).unwrap();
    assert!(Request::read_from(&mut Cursor::new(&buf)).is_err());

    // Invalid UTF-8 path, trailing bytes, unknown frame, response as request.
    let mut buf = Vec::new();
    write_frame(
        &mut buf,
        frame::GET,
        &[0, 2, 0xff, 0xfe, 0, 0, 0, 0, 0, 0, 0, 0],
    )
    .unwrap();
    assert!(Request::read_from(&mut Cursor::new(&buf)).is_err());
    let mut buf = Vec::new();
    write_frame(&mut buf, frame::QUIT, &[1]).unwrap();
    assert!(Request::read_from(&mut Cursor::new(&buf)).is_err());
    let mut buf = Vec::new();
    write_frame(&mut buf, 0x42, &[]).unwrap();
    assert!(matches!(
        Request::read_from(&mut Cursor::new(&buf)),
        Err(ProtocolError::UnknownFrame(0x42))
    ));
    let mut buf = Vec::new();
    write_frame(&mut buf, frame::FILE, &[]).unwrap();
    assert!(matches!(
        Request::read_from(&mut Cursor::new(&buf)),
        Err(ProtocolError::Unexpected { .. })
    ));
}

/// A small deterministic generator, so the garbage test needs no extra crate
/// and every failure can be replayed.
fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn random_garbage_never_panics() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for round in 0..20_000 {
        let len = (xorshift(&mut seed) % 64) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| xorshift(&mut seed) as u8).collect();
        // Half the time, start with a plausible frame type so decoding gets
        // past the first byte.
        if round % 2 == 0 && !bytes.is_empty() {
            bytes[0] = [
                frame::LIST,
                frame::GET,
                frame::ENTRIES,
                frame::FILE,
                frame::END,
                frame::ERROR,
            ][(xorshift(&mut seed) % 6) as usize];
            if bytes.len() >= 5 {
                let l = (bytes.len() - 5) as u32;
                bytes[1..5].copy_from_slice(&l.to_be_bytes());
            }
        }
        let mut cur = Cursor::new(&bytes);
        while Request::read_from(&mut cur).is_ok() {}
        let mut cur = Cursor::new(&bytes);
        while let Ok(r) = Response::read_from(&mut cur) {
            if let Response::Data { len } = r {
                let _ = read_data_payload(&mut cur, len, |_: &[u8]| -> Result<()> { Ok(()) });
            }
        }
        let _ = Hello::read_from(&mut Cursor::new(&bytes));
    }
}

#[test]
fn auth_proofs_depend_on_token_both_nonces_and_the_channel() {
    let k = auth::key(b"correct horse battery staple");
    let (s, c, ch) = ([1u8; AUTH_LEN], [2u8; AUTH_LEN], [9u8; 32]);
    let m = auth::client_mac(&k, &s, &c, &ch);
    assert!(auth::verify(&m, &auth::client_mac(&k, &s, &c, &ch)));
    assert!(!auth::verify(
        &m,
        &auth::client_mac(&auth::key(b"wrong"), &s, &c, &ch)
    ));
    assert!(!auth::verify(
        &m,
        &auth::client_mac(&k, &[3; AUTH_LEN], &c, &ch)
    ));
    assert!(!auth::verify(
        &m,
        &auth::client_mac(&k, &s, &[3; AUTH_LEN], &ch)
    ));
    // A proof made on another channel (a relay) does not verify here.
    assert!(!auth::verify(&m, &auth::client_mac(&k, &s, &c, &[8; 32])));
    // The server's proof is not the client's MAC reflected back.
    assert!(!auth::verify(&m, &auth::server_proof(&k, &s, &c, &ch)));
}

#[test]
fn ranged_gets_are_version_4_only_and_must_be_subtrees() {
    let ranged = |offset: u64, len: u64| {
        let mut buf = Vec::new();
        Request::Get {
            path: "f".into(),
            offset,
            if_unchanged: None,
            len: Some(len),
        }
        .write_to(&mut buf)
        .unwrap();
        buf
    };
    let ok = ranged(8192, 8192);
    assert!(Request::read_versioned(&mut Cursor::new(&ok), 4).is_ok());
    // A version 3 connection knows no range flag.
    assert!(matches!(
        Request::read_versioned(&mut Cursor::new(&ok), 3),
        Err(ProtocolError::Malformed { .. })
    ));
    // Off a chunk boundary, longer than the subtree at that offset, empty.
    for (offset, len) in [(100, 1024), (8192, 8193), (3072, 2048), (0, 0)] {
        assert!(
            matches!(
                Request::read_versioned(&mut Cursor::new(&ranged(offset, len)), 4),
                Err(ProtocolError::Malformed { .. })
            ),
            "{offset}+{len}"
        );
    }
    // From offset 0 any length is one subtree.
    assert!(Request::read_from(&mut Cursor::new(&ranged(0, 12345))).is_ok());
}

#[test]
fn subtree_limits_match_blake3() {
    for chunk in 1..300u64 {
        let offset = chunk * CHUNK_LEN;
        assert_eq!(
            max_subtree_len(offset),
            blake3::hazmat::max_subtree_len(offset),
            "{offset}"
        );
    }
    assert_eq!(max_subtree_len(0), None);
}

/// The "same bytes without annotations" of a worked example in
/// docs/PROTOCOL.md: (client → server, server → client), hex.
fn documented_exchange(section: &str) -> (String, String) {
    let doc = include_str!("../../docs/PROTOCOL.md");
    let start = doc
        .find(&format!("### {section}"))
        .unwrap_or_else(|| panic!("no section {section}"));
    let body = &doc[start..];
    let end = body[4..].find("\n### ").map_or(body.len(), |e| e + 4);
    let body = &body[..end];
    let block = |label: &str| -> String {
        let at = body
            .rfind(label)
            .unwrap_or_else(|| panic!("{section}: no {label}"));
        body[at + label.len()..]
            .lines()
            .skip(1)
            .take_while(|l| !l.trim().is_empty() && !l.starts_with("```"))
            .collect::<Vec<_>>()
            .concat()
    };
    (block("client → server:"), block("server → client:"))
}

/// The served root of the worked examples: `a.txt` holding `hello`.
fn example_header(offset: u64) -> FileHeader {
    FileHeader {
        size: 5,
        offset,
        mtime: 1_700_000_000,
        mtime_nanos: 123_456_789,
        mode: 0o644,
    }
}

fn example_entry(digest: bool) -> Entry {
    Entry {
        path: "a.txt".into(),
        kind: EntryKind::File,
        size: 5,
        mtime: 1_700_000_000,
        mtime_nanos: 123_456_789,
        mode: 0o644,
        digest: digest.then(|| *blake3::hash(b"hello").as_bytes()),
    }
}

#[test]
fn worked_examples_match_the_protocol_document() {
    let hex = |b: &[u8]| crate::transfer::hex(b);
    let hello = Hello::current().to_bytes();
    let digest = *blake3::hash(b"hello").as_bytes();
    let file = |offset: u64| {
        let mut s = Vec::new();
        let h = example_header(offset);
        write_file_header(&mut s, &h).unwrap();
        write_data_header(&mut s, h.body_len() as u32).unwrap();
        s.extend_from_slice(&b"hello"[offset as usize..]);
        write_trailer(&mut s, &Trailer::blake3(digest)).unwrap();
        s
    };
    let listing = |digests: bool| {
        let mut s = Vec::new();
        let mut lw = ListWriter::default();
        lw.push(&mut s, example_entry(digests)).unwrap();
        lw.finish(&mut s).unwrap();
        s
    };

    // 12.1: list the root, fetch a.txt.
    let mut c = hello.to_vec();
    c.extend(req(&[
        Request::List {
            path: String::new(),
            recursive: false,
            digests: false,
        },
        Request::get("a.txt"),
        Request::Quit,
    ]));
    let mut s = hello.to_vec();
    s.extend(listing(false));
    s.extend(file(0));
    assert_eq!(documented_exchange("12.1"), (hex(&c), hex(&s)));

    // 12.2: resume from byte 2.
    let mut c = hello.to_vec();
    c.extend(req(&[
        Request::Get {
            path: "a.txt".into(),
            offset: 2,
            if_unchanged: Some(example_header(0).stamp()),
            len: None,
        },
        Request::Quit,
    ]));
    let mut s = hello.to_vec();
    s.extend(file(2));
    assert_eq!(documented_exchange("12.2"), (hex(&c), hex(&s)));

    // 12.5: a single file listed with its digest.
    let mut c = hello.to_vec();
    c.extend(req(&[
        Request::List {
            path: "a.txt".into(),
            recursive: false,
            digests: true,
        },
        Request::Quit,
    ]));
    let mut s = hello.to_vec();
    s.extend(listing(true));
    assert_eq!(documented_exchange("12.5"), (hex(&c), hex(&s)));

    // 12.8: an empty file asked for as a range, answered whole: FILE with
    // size 0, no DATA, END with the digest of the empty input (algorithm
    // 1). Read back, the answer is what a client checks.
    let mut c = hello.to_vec();
    c.extend(req(&[
        Request::Get {
            path: "empty".into(),
            offset: 0,
            if_unchanged: None,
            len: Some(256 * 1024),
        },
        Request::Quit,
    ]));
    let empty = FileHeader {
        size: 0,
        ..example_header(0)
    };
    let mut s = hello.to_vec();
    write_file_header(&mut s, &empty).unwrap();
    write_trailer(&mut s, &Trailer::blake3(*blake3::hash(b"").as_bytes())).unwrap();
    assert_eq!(documented_exchange("12.8"), (hex(&c), hex(&s)));
    let mut r = &s[8..];
    assert_eq!(Response::read_from(&mut r).unwrap(), Response::File(empty));
    match Response::read_from(&mut r).unwrap() {
        Response::End(t) => {
            assert_eq!(t.algorithm, DigestAlgorithm::Blake3);
            assert_eq!(
                hex(&t.digest),
                "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(r.is_empty());
}

fn req(rs: &[Request]) -> Vec<u8> {
    let mut v = Vec::new();
    for r in rs {
        r.write_to(&mut v).unwrap();
    }
    v
}

/// The values of the worked examples in docs/PROTOCOL.md (sections 3.7.4
/// and 12.3).
#[test]
fn the_documented_examples_hold() {
    let hex = |x: &[u8]| x.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let k = auth::key(b"s3cret-example-token");
    let ns: [u8; 32] = std::array::from_fn(|i| i as u8);
    let nc: [u8; 32] = std::array::from_fn(|i| 0x80 + i as u8);
    let b: [u8; 32] = std::array::from_fn(|i| 0x40 + i as u8);
    assert_eq!(
        hex(&k),
        "973fd2bdc38ffd3441698c5cb40af6aa2e0f615d1ec1ecd323c01d88404b60d3"
    );
    assert_eq!(
        hex(&auth::client_mac(&k, &ns, &nc, &b)),
        "fcd2216173a70c4862167c52fbdaf4bb8c3c22c3c9de78c0fd6a1f3256a6e22a"
    );
    assert_eq!(
        hex(&auth::server_proof(&k, &ns, &nc, &b)),
        "42732555ce5ce35136ebe4c6b4d3dbc5895c80f74061f9466b320fc02f4915e0"
    );
    // Versions 3 to 5 (plaintext servers still check their proofs): the
    // values their own documentation gave, which their clients compute.
    let keys = auth::Keys::new(b"s3cret-example-token");
    for v in [3, 4, 5] {
        assert_eq!(
            hex(&keys.client_mac(v, &ns, &nc, &b)),
            "f797d5d5d26cd8e3cedcdbdf44cf5c0612e1f180f8ff3db197904de9043fd468"
        );
        assert_eq!(
            hex(&keys.server_proof(v, &ns, &nc, &b)),
            "b73f4def4f4e210c33758466729029d7208feea4d6498664484273134096858c"
        );
    }
    assert_eq!(
        keys.client_mac(6, &ns, &nc, &b),
        auth::client_mac(&k, &ns, &nc, &b)
    );
    let spki: Vec<u8> = (0..SPKI_HEX.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&SPKI_HEX[i..i + 2], 16).unwrap())
        .collect();
    let fp = crate::transport::identity::Fingerprint::of_spki(&spki);
    assert_eq!(
        fp.to_string(),
        "SHA256:QtHDYFbiYwUKho/H3WV0LhZnWoAoZPnsCqSkGggRwZg"
    );
}

const SPKI_HEX: &str = "3059301306072a8648ce3d020106082a8648ce3d03010703420004035bb14bfcfae23ff4c542a77bde56ecdea46da87c8ebbb5482ec59360e2b55f4c757356606feec2ffdf1009f45f71a4d5bd06acb3cfdc6acb13a48bc2bcbd8b";
