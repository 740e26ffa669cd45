//! A buffered writer over a [`Link`] whose bytes leave in one write per
//! flush. With TLS it lays what it is given out as records from the start
//! (room for each header before its content and for the content type and
//! tag after), so that a flush seals them where they lie: the bytes are
//! copied once, into this buffer, as they are without TLS.

use std::io::{self, Write};

use super::record::{HEADER, MAX_PLAIN, TAG};
use super::Link;

/// Room after a record's content: its content type and tag.
pub(super) const TRAILER: usize = 1 + TAG;

/// See the module documentation.
pub struct Batch {
    link: Link,
    buf: Vec<u8>,
    /// TLS: where the record being filled starts (its header's room).
    tls: Option<usize>,
    /// The buffer is flushed before it would grow past this (a single
    /// write larger than that is taken whole).
    capacity: usize,
    /// Bytes given since the last flush (without the room left for
    /// headers and trailers).
    given: usize,
}

impl Batch {
    pub fn new(link: Link, capacity: usize) -> Batch {
        let tls = link.lock().is_tls().then_some(0);
        Batch {
            link,
            buf: Vec::with_capacity(capacity + capacity / MAX_PLAIN * (HEADER + TRAILER) + 64),
            tls,
            capacity,
            given: 0,
        }
    }

    /// Bytes given and not yet flushed.
    pub fn pending(&self) -> usize {
        self.given
    }

    pub fn link(&self) -> &Link {
        &self.link
    }
}

impl Write for Batch {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        if self.given > 0 && self.given + n > self.capacity {
            self.flush()?;
        }
        self.given += n;
        let Some(start) = self.tls.as_mut() else {
            self.buf.extend_from_slice(data);
            return Ok(n);
        };
        while !data.is_empty() {
            if self.buf.len() == *start {
                self.buf.extend_from_slice(&[0; HEADER]);
            }
            let room = MAX_PLAIN - (self.buf.len() - *start - HEADER);
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if take == room {
                // Full: its trailer's room, and the next record starts.
                self.buf.extend_from_slice(&[0; TRAILER]);
                *start = self.buf.len();
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.given == 0 {
            return Ok(());
        }
        if let Some(start) = self.tls {
            if self.buf.len() > start {
                self.buf.extend_from_slice(&[0; TRAILER]);
            }
        }
        let r = self.link.lock().send_batch(&mut self.buf);
        self.buf.clear();
        self.given = 0;
        if let Some(start) = self.tls.as_mut() {
            *start = 0;
        }
        r
    }
}
