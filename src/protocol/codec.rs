//! Low-level framing: frame headers, bounded payload reads, and a small
//! big-endian builder/parser pair. Every length is checked before anything
//! is allocated, and every read is bounded by the payload already held.

use std::io::{self, BufRead, Read, Write};

use super::{frame, ProtocolError, Result, FRAME_HEADER_LEN, MAX_CONTROL_PAYLOAD};

/// The five bytes in front of every frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: u8,
    pub len: u32,
}

/// Like `read_exact`, but a stream that ends before the first byte is
/// [`ProtocolError::Closed`] (a clean goodbye), while one that ends part-way
/// is an `UnexpectedEof` I/O error (a truncated message).
pub(crate) fn read_exact_or_closed<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Err(ProtocolError::Closed),
            Ok(0) => {
                return Err(ProtocolError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "stream ended in the middle of a message",
                )))
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

pub fn read_frame_header<R: Read + ?Sized>(r: &mut R) -> Result<FrameHeader> {
    let mut b = [0u8; FRAME_HEADER_LEN];
    read_exact_or_closed(r, &mut b)?;
    Ok(FrameHeader {
        kind: b[0],
        len: u32::from_be_bytes([b[1], b[2], b[3], b[4]]),
    })
}

/// Reads the payload of a control frame after checking its length.
pub(crate) fn read_control_payload<R: Read + ?Sized>(r: &mut R, h: FrameHeader) -> Result<Vec<u8>> {
    let len = h.len as usize;
    if len > MAX_CONTROL_PAYLOAD {
        return Err(ProtocolError::TooLarge {
            frame: frame::name(h.kind),
            len: h.len.into(),
            max: MAX_CONTROL_PAYLOAD,
        });
    }
    let mut payload = vec![0u8; len];
    if len > 0 {
        match read_exact_or_closed(r, &mut payload) {
            Err(ProtocolError::Closed) => {
                return Err(ProtocolError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "stream ended in the middle of a frame",
                )))
            }
            other => other?,
        }
    }
    Ok(payload)
}

/// Streams `len` payload bytes of a DATA frame from `r` into `sink`, a slice
/// at a time straight out of the reader's buffer (no extra copy). Errors
/// from the sink pass through unchanged, so a caller can tell a full disk
/// from a broken connection.
pub fn read_data_payload<R, F, E>(r: &mut R, len: u32, mut sink: F) -> std::result::Result<(), E>
where
    R: BufRead + ?Sized,
    F: FnMut(&[u8]) -> std::result::Result<(), E>,
    E: From<ProtocolError>,
{
    let mut left = len as usize;
    while left > 0 {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ProtocolError::Io(e).into()),
        };
        if buf.is_empty() {
            return Err(ProtocolError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "stream ended in the middle of file data",
            ))
            .into());
        }
        let n = buf.len().min(left);
        sink(&buf[..n])?;
        r.consume(n);
        left -= n;
    }
    Ok(())
}

/// Writes one frame in a single `write_all`, so a frame never leaves in
/// pieces that could each wait on an ACK.
pub(crate) fn write_frame<W: Write + ?Sized>(w: &mut W, kind: u8, payload: &[u8]) -> Result<()> {
    if payload.len() > MAX_CONTROL_PAYLOAD {
        return Err(ProtocolError::TooLarge {
            frame: frame::name(kind),
            len: payload.len() as u64,
            max: MAX_CONTROL_PAYLOAD,
        });
    }
    let mut buf = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    buf.push(kind);
    buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(payload);
    w.write_all(&buf)?;
    Ok(())
}

/// Builds a payload in big-endian order.
#[derive(Default)]
pub(crate) struct PayloadBuilder(Vec<u8>);

impl PayloadBuilder {
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub fn raw(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    /// A string as u16 length + UTF-8, refusing anything over `max` bytes.
    pub fn str16(&mut self, s: &str, max: usize, frame: &'static str) -> Result<()> {
        if s.len() > max {
            return Err(ProtocolError::TooLarge {
                frame,
                len: s.len() as u64,
                max,
            });
        }
        self.u16(s.len() as u16);
        self.raw(s.as_bytes());
        Ok(())
    }
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

/// Reads a payload field by field; running off the end is an error.
pub(crate) struct Parser<'a> {
    buf: &'a [u8],
    frame: &'static str,
}

impl<'a> Parser<'a> {
    pub fn new(buf: &'a [u8], frame: &'static str) -> Self {
        Parser { buf, frame }
    }

    pub fn malformed(&self, what: String) -> ProtocolError {
        ProtocolError::Malformed {
            frame: self.frame,
            what,
        }
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(self.malformed(format!(
                "truncated: needed {n} more bytes, {} left",
                self.buf.len()
            )));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// Permission bits: anything above `0o7777` is malformed.
    pub fn mode(&mut self) -> Result<u16> {
        let m = self.u16()?;
        if m & !super::MODE_MASK != 0 {
            return Err(self.malformed(format!("mode 0o{m:o} has bits above 0o7777")));
        }
        Ok(m)
    }

    pub fn str16(&mut self, max: usize) -> Result<String> {
        let len = usize::from(self.u16()?);
        if len > max {
            return Err(self.malformed(format!("string of {len} bytes exceeds {max}")));
        }
        let bytes = self.bytes(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.malformed("string is not UTF-8".into()))
    }

    /// Trailing bytes mean the peer and we disagree about the layout.
    pub fn finish(self) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.malformed(format!("{} unexpected trailing bytes", self.buf.len())))
        }
    }
}
