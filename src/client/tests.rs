//! The receiving loop against a server of bytes in memory.

use std::io;
use std::time::Duration;

use super::{Connection, FileSink, Limits, CHUNK};
use crate::protocol::{
    write_data_header, write_file_header, write_trailer, DigestAlgorithm, FileHeader, Hello,
    Request, Trailer, VERSION,
};
use crate::transport::Memory;

/// Keeps what it is given and counts the hand-offs.
#[derive(Default)]
struct Counting {
    bytes: Vec<u8>,
    writes: usize,
}

impl FileSink for Counting {
    fn start(&mut self, _: &FileHeader) -> io::Result<()> {
        Ok(())
    }
    fn buffer(&mut self) -> Vec<u8> {
        vec![0; CHUNK]
    }
    fn write(&mut self, buf: Vec<u8>, len: usize) -> io::Result<()> {
        self.writes += 1;
        self.bytes.extend_from_slice(&buf[..len]);
        Ok(())
    }
}

/// A server's answer to one GET: `body` in DATA frames of `frame` bytes.
fn answer(body: &[u8], frame: usize) -> Vec<u8> {
    let mut out = Hello {
        version: VERSION,
        flags: 0,
    }
    .to_bytes()
    .to_vec();
    let header = FileHeader {
        size: body.len() as u64,
        offset: 0,
        mtime: 0,
        mtime_nanos: 0,
        mode: 0o644,
    };
    write_file_header(&mut out, &header).unwrap();
    for piece in body.chunks(frame) {
        write_data_header(&mut out, piece.len() as u32).unwrap();
        out.extend_from_slice(piece);
    }
    let digest = blake3::hash(body).as_bytes().to_vec();
    write_trailer(
        &mut out,
        &Trailer {
            algorithm: DigestAlgorithm::Blake3,
            digest,
        },
    )
    .unwrap();
    out
}

/// What the sink got, and whether the file arrived.
fn receive_any(server: Vec<u8>) -> (Counting, bool) {
    let wire = Memory::new(server, usize::MAX);
    let limits = Limits::new(Duration::from_secs(5));
    let mut c = Connection::over(wire, "memory".into(), None, &limits, "memory".into()).unwrap();
    c.send(&Request::get("f")).unwrap();
    let mut sink = Counting::default();
    let arrived = matches!(c.receive_file(0, None, &mut sink), Ok(Ok(_)));
    (sink, arrived)
}

fn receive(server: Vec<u8>) -> Counting {
    let (sink, arrived) = receive_any(server);
    assert!(arrived, "the file did not arrive");
    sink
}

#[test]
fn small_data_frames_reach_the_sink_a_full_buffer_at_a_time() {
    // 2.5 buffers' worth in frames of 1,000 bytes, which do not divide a
    // buffer: frames straddle the buffers' edges.
    let body: Vec<u8> = (0..CHUNK * 5 / 2).map(|i| (i % 251) as u8).collect();
    let got = receive(answer(&body, 1000));
    assert!(got.bytes == body, "the bytes changed on the way");
    assert_eq!(got.writes, 3, "one hand-off per buffer, not per frame");
}

#[test]
fn large_data_frames_are_split_into_buffers() {
    let body: Vec<u8> = (0..CHUNK * 3 + 7).map(|i| (i % 253) as u8).collect();
    let got = receive(answer(&body, CHUNK * 2 + 5));
    assert!(got.bytes == body, "the bytes changed on the way");
    assert_eq!(got.writes, 4);
}

#[test]
fn what_arrived_before_the_connection_broke_reaches_the_sink() {
    let body: Vec<u8> = (0..CHUNK / 2).map(|i| (i % 241) as u8).collect();
    let mut server = answer(&body, 1000);
    // Cut inside the 301st frame: 300 whole frames and 500 bytes of it.
    let hello = Hello::current().to_bytes().len();
    let file = 5 + 30;
    server.truncate(hello + file + 300 * 1005 + 5 + 500);
    let (got, arrived) = receive_any(server);
    assert!(!arrived);
    // The frames that arrived whole; a cut frame's bytes are not trusted.
    assert_eq!(got.bytes.len(), 300 * 1000);
    assert!(got.bytes == body[..got.bytes.len()]);
    assert_eq!(got.writes, 1);
}
