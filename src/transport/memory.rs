//! A wire of bytes in memory, for running a client [`Connection`] with no
//! socket: the fuzzer's server and the client's own tests.
//!
//! [`Connection`]: crate::client::Connection

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::time::Duration;

use super::{tls, Wire};

/// Reads come from the bytes given (in pieces of at most `piece` bytes, to
/// reach the paths short reads take); writes are dropped.
#[derive(Clone)]
pub struct Memory(Rc<RefCell<State>>);

struct State {
    bytes: Vec<u8>,
    at: usize,
    piece: usize,
}

impl Memory {
    pub fn new(bytes: Vec<u8>, piece: usize) -> Memory {
        Memory(Rc::new(RefCell::new(State {
            bytes,
            at: 0,
            piece,
        })))
    }
}

impl Read for Memory {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut s = self.0.borrow_mut();
        let n = buf.len().min(s.piece).min(s.bytes.len() - s.at);
        buf[..n].copy_from_slice(&s.bytes[s.at..s.at + n]);
        s.at += n;
        Ok(n)
    }
}

impl Write for Memory {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Wire for Memory {
    fn set_read_timeout(&self, _: Duration) -> io::Result<()> {
        Ok(())
    }
    fn set_write_timeout(&self, _: Duration) -> io::Result<()> {
        Ok(())
    }
    fn binding(&self) -> [u8; tls::BINDING_LEN] {
        [0; tls::BINDING_LEN]
    }
    fn close_write(&self) {}
}
