//! Large files are made durable and renamed into place on a thread of
//! their own, so the connection goes on receiving the next files while the
//! disk catches up. Three waits move off the receiving path that way: the
//! flush of the file's last megabytes, the rename, and (when the rename
//! replaces an older copy) the freeing of the old copy's blocks, which the
//! kernel does inside the rename and which on a file system mounted with
//! online discard costs about as much as writing the new copy.
//!
//! At most [`QUEUED`] files wait for the thread; past that, whoever
//! completes a large file waits too, so open files (and unflushed bytes)
//! stay bounded however fast the network is.

use std::io;
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use super::local::{settle_alone, Arrived, PlaceResult};

/// Files waiting for the thread before `send` blocks.
const QUEUED: usize = 2;

pub struct Settler {
    tx: Option<SyncSender<Arrived>>,
    done: Receiver<PlaceResult>,
    /// Files sent and not yet reported back.
    pending: usize,
    handle: Option<JoinHandle<()>>,
}

impl Settler {
    pub fn start(fsync: bool) -> io::Result<Settler> {
        let (tx, rx) = sync_channel::<Arrived>(QUEUED);
        let (done_tx, done) = channel();
        let handle = std::thread::Builder::new()
            .name("settle".into())
            .spawn(move || {
                for a in rx {
                    if done_tx.send(settle_alone(a, fsync)).is_err() {
                        // Nobody left to tell; the files are still placed.
                    }
                }
            })?;
        Ok(Settler {
            tx: Some(tx),
            done,
            pending: 0,
            handle: Some(handle),
        })
    }

    /// Hands `a` to the thread (waiting while the queue is full); gives it
    /// back if the thread is gone.
    pub fn send(&mut self, a: Arrived) -> Option<Arrived> {
        let Some(tx) = &self.tx else { return Some(a) };
        if let Err(e) = tx.send(a) {
            return Some(e.0);
        }
        self.pending += 1;
        None
    }

    /// The files settled since the last look, without waiting.
    pub fn ready(&mut self) -> Vec<PlaceResult> {
        let out: Vec<PlaceResult> = self.done.try_iter().collect();
        self.pending -= out.len();
        out
    }

    /// Waits for every file sent, and ends the thread.
    pub fn finish(mut self) -> Vec<PlaceResult> {
        drop(self.tx.take());
        let mut out = Vec::with_capacity(self.pending);
        while self.pending > 0 {
            match self.done.recv() {
                Ok(r) => out.push(r),
                // The thread died (a panic): what it had is unknown.
                Err(_) => break,
            }
            self.pending -= 1;
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        out
    }
}

impl Drop for Settler {
    /// Never leave the thread renaming files after the run is over.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
