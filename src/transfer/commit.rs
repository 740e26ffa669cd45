//! Small files are written to disk by one thread of their own. A
//! connection receives a small new file into memory and verifies it there;
//! this thread then creates its part file, writes it, gives it the server's
//! time and mode and adds it to the batch that `local` makes durable (one
//! syncfs), renames into place and syncs the folders of.
//!
//! Why: with thousands of small files, creating them costs far more than
//! moving their bytes (on ext4 without a journal, each new inode is a scan
//! past the free inodes deleted in the last minutes). Creates in one folder
//! are serialized by the kernel whatever we do; made from every connection
//! at once they also wait on each other, and each connection stops
//! receiving while it waits or while its batch is synced. One thread that
//! does all of it keeps the connections receiving at the network's pace
//! while the disk works at its own. Memory stays bounded: at most
//! [`STAGED_BYTES`] wait here, and beyond that a connection waits before it
//! hands over the next file (each connection holds at most one file of
//! under 1 MiB while receiving it). Once the connections are done, the
//! thread that ran them writes what is still waiting beside this one.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

use super::local::{Arrived, Dest, PlaceResult};

/// Most bytes of small files waiting to be written.
const STAGED_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Default)]
struct State {
    files: VecDeque<Arrived>,
    bytes: u64,
    /// The writing thread runs and takes files.
    open: bool,
}

/// Files between the connections that received them and the thread that
/// writes them.
#[derive(Default)]
pub struct CommitQueue {
    st: Mutex<State>,
    changed: Condvar,
}

impl CommitQueue {
    pub fn new() -> CommitQueue {
        CommitQueue::default()
    }

    /// Whether a writing thread takes files (otherwise each connection
    /// writes its own, as they arrive).
    pub fn open(&self) -> bool {
        self.st.lock().unwrap().open
    }

    /// Hands a file received into memory to the writing thread, waiting
    /// while too many bytes are waiting already. Gives the file back when
    /// it was written as it arrived, or no thread takes files.
    pub fn push(&self, a: Arrived) -> Option<Arrived> {
        let n = a.staged_len();
        if n == 0 {
            return Some(a);
        }
        let mut st = self.st.lock().unwrap();
        while st.open && st.bytes > 0 && st.bytes + n > STAGED_BYTES {
            st = self.changed.wait(st).unwrap();
        }
        if !st.open {
            return Some(a);
        }
        st.bytes += n;
        st.files.push_back(a);
        self.changed.notify_all();
        None
    }

    /// The next file to write; `None` once closed and empty.
    fn pop(&self) -> Option<Arrived> {
        let mut st = self.st.lock().unwrap();
        loop {
            if let Some(a) = st.files.pop_front() {
                st.bytes -= a.staged_len();
                self.changed.notify_all();
                return Some(a);
            }
            if !st.open {
                return None;
            }
            st = self.changed.wait(st).unwrap();
        }
    }

    fn set_open(&self, open: bool) {
        self.st.lock().unwrap().open = open;
        self.changed.notify_all();
    }
}

/// Runs `work` (the downloads into `dest`) beside the thread that writes
/// small files, and returns what `work` returned with what `settle` made of
/// every file that thread (and the final flush of the batch) settled.
/// Without a thread (it could not be started), each connection writes its
/// own files, as before.
pub fn alongside<R, O: Send>(
    dest: &Dest,
    settle: impl Fn(PlaceResult) -> O + Sync,
    work: impl FnOnce() -> R,
) -> (R, Vec<O>) {
    std::thread::scope(|s| {
        let q = &dest.commits;
        q.set_open(true);
        let settle = &settle;
        let writer = std::thread::Builder::new()
            .name("write-small".into())
            .spawn_scoped(s, move || {
                let mut out = Vec::new();
                while let Some(a) = q.pop() {
                    out.extend(dest.commit(a).into_iter().map(settle));
                }
                out
            });
        if writer.is_err() {
            q.set_open(false);
        }
        let r = work();
        // Nothing more comes. What is left is written by the thread and
        // by this one, whose connections are done: a core that would
        // wait here shares the writing (and writes what a thread that
        // stopped never took).
        q.set_open(false);
        let mut out = Vec::new();
        while let Some(a) = q.pop() {
            out.extend(dest.commit(a).into_iter().map(settle));
        }
        if let Ok(Ok(theirs)) = writer.map(|h| h.join()) {
            out.extend(theirs);
        }
        out.extend(dest.flush().into_iter().map(settle));
        (r, out)
    })
}
