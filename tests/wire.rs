//! The wire as documented: the worked examples of docs/PROTOCOL.md sent as
//! raw bytes to the real server must get exactly the documented answers,
//! and a client that speaks only version 3 is still served.

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
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
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
}

/// The server's answer in 12.1 as versions 3 and 4 have it (greeting
/// version 4).
const V4_ANSWER_12_1: &str = "4658465200040000810000001e0001010000000000000005000000006553f100075bcd150005612e74787482000000080000000000000001830000001c00000000000000050000000000000000000000006553f100075bcd15840000000568656c6c6f85000000220120ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f";

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn a_version_3_client_is_served_in_version_3() {
    let s = Server::with_files(|h| stamped(h, "a.txt", b"hello"));
    // The 12.1 exchange with version 3 and 4 greetings: the answer of
    // those versions, whose entries and FILE header carry no mode.
    let (mut ask, _) = example("12.1 ");
    for v in [3, 4] {
        ask[5] = v;
        let mut answer = hex_bytes(V4_ANSWER_12_1);
        answer[5] = v;
        assert_bytes("v3/v4", &exchange(&s, &ask), &answer);
    }
    // A ranged GET is not version 3: refused as malformed.
    let (mut ranged, _) = example("12.4 ");
    ranged[5] = 3;
    let got = exchange(&s, &ranged);
    assert_eq!(&got[..8], b"FXFR\x00\x03\x00\x00");
    assert_eq!(got[8], 0xEE, "an ERROR frame");
    assert_eq!(&got[13..15], &[0, 5], "bad request");
    let text = String::from_utf8_lossy(&got[17..]);
    assert!(text.contains("unknown flags 0x03"), "{text}");
}
