//! The wire as documented: the worked examples of docs/PROTOCOL.md sent as
//! raw bytes to the real server must get exactly the documented answers,
//! the version 3 one from a server in plaintext mode.

use crate::util::*;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

const DOC: &str = include_str!("../docs/PROTOCOL.md");

/// The "client → server" and "server → client" hex blocks of the section
/// of PROTOCOL.md whose heading starts with `heading`.
fn example(heading: &str) -> (Vec<u8>, Vec<u8>) {
    let start = DOC
        .find(&format!("### {heading}"))
        .unwrap_or_else(|| panic!("no section {heading}"));
    let section = &DOC[start..];
    let end = section[4..].find("\n##").map_or(section.len(), |i| i + 4);
    let section = &section[..end];
    let block = |label: &str| -> Vec<u8> {
        let at = section
            .find(label)
            .unwrap_or_else(|| panic!("{heading}: no {label}"));
        let hex: String = section[at + label.len()..]
            .lines()
            .skip(1)
            .take_while(|l| !l.trim().is_empty() && !l.starts_with("```"))
            .collect();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    };
    (block("client → server:"), block("server → client:"))
}

/// Writes `name` with the examples' modification time.
fn stamped(host: &Path, name: &str, data: &[u8]) {
    write(host, name, data);
    let t = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
    std::fs::File::options()
        .write(true)
        .open(host.join(name))
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// Sends `ask` in one write and reads until the server closes.
fn exchange(s: &Server, ask: &[u8]) -> Vec<u8> {
    let mut c = s.connect();
    c.socket()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    c.write_all(ask).unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    got
}

fn assert_bytes(heading: &str, got: &[u8], want: &[u8]) {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    assert_eq!(
        hex(got),
        hex(want),
        "{heading}: the server's answer differs"
    );
}

#[test]
fn worked_examples_are_what_the_server_sends() {
    let s = Server::with_files(|h| stamped(h, "a.txt", b"hello"));
    for heading in ["12.1 ", "12.2 "] {
        let (ask, answer) = example(heading);
        assert_bytes(heading, &exchange(&s, &ask), &answer);
    }
    let mut c = vec![b'a'; 1024];
    c.extend_from_slice(b"hello\n");
    let s = Server::with_files(move |h| stamped(h, "c.txt", &c));
    let (ask, answer) = example("12.4 ");
    assert_bytes("12.4", &exchange(&s, &ask), &answer);
    // A version 3 client, in the clear, at a plaintext server.
    let s = Server::builder()
        .files(|h| stamped(h, "a.txt", b"hello"))
        .plaintext()
        .start();
    let (ask, answer) = example("12.7 ");
    assert_bytes("12.7", &exchange(&s, &ask), &answer);
    // An empty file asked for as a range: the whole file in version 7,
    // refused with code 5 behind a version 6 greeting.
    let s = Server::with_files(|h| stamped(h, "empty", b""));
    let (mut ask, answer) = example("12.8 ");
    assert_bytes("12.8", &exchange(&s, &ask), &answer);
    ask[5] = 6;
    assert_bytes("12.8 v6", &exchange(&s, &ask), &last_hex_block("12.8 "));
}

/// The last code block of a section that is all hex (the bytes of an
/// answer shown without annotations).
fn last_hex_block(heading: &str) -> Vec<u8> {
    let start = DOC.find(&format!("### {heading}")).unwrap();
    let section = &DOC[start..];
    let end = section[4..].find("\n##").map_or(section.len(), |i| i + 4);
    hex_blocks(&section[..end])
        .pop()
        .unwrap_or_else(|| panic!("{heading}: no hex block"))
}

/// The code blocks of `text` that are all hex, as bytes, in order.
fn hex_blocks(text: &str) -> Vec<Vec<u8>> {
    text.split("```")
        .skip(1)
        .step_by(2)
        .map(str::trim)
        .filter(|b| !b.is_empty() && b.chars().all(|c| c.is_ascii_hexdigit()))
        .map(|hex| {
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect()
}

#[test]
fn older_versions_are_refused_naming_versions_6_and_7() {
    let s = Server::with_files(|h| stamped(h, "a.txt", b"hello"));
    // Versions 3 to 5 speak no TLS and bind no token proof to a channel:
    // inside TLS, they get ERROR 6 after a version 7 greeting.
    let (mut ask, _) = example("12.1 ");
    for v in [3, 4, 5] {
        ask[5] = v;
        let got = exchange(&s, &ask);
        assert_eq!(&got[..8], b"FXFR\x00\x07\x00\x00");
        assert_eq!(got[8], 0xEE, "an ERROR frame");
        assert_eq!(&got[13..15], &[0, 6], "unsupported version");
        let text = String::from_utf8_lossy(&got[17..]);
        assert!(text.ends_with("speaks versions 6, 7"), "{text}");
    }
    // Section 12.6's ERROR 6, inside TLS and in the clear.
    let error6 = hex_blocks(&DOC[DOC.find("**ERROR 6.** Inside TLS").unwrap()..]);
    ask[5] = 5;
    assert_bytes("12.6 ERROR 6", &exchange(&s, &ask), &error6[0]);
    let mut c = s.tcp();
    c.write_all(&ask).unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    assert_bytes("12.6 ERROR 6 in the clear", &got, &error6[1]);
    // Version 6 is answered in version 6, as a version 6 server did.
    ask[5] = 6;
    let (_, answer) = example("12.1 ");
    let got = exchange(&s, &ask);
    assert_eq!(&got[..8], b"FXFR\x00\x06\x00\x00");
    assert_bytes("12.1 in v6", &got[8..], &answer[8..]);
}
