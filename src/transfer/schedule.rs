//! What a `get` has left to fetch, shared by the connections that fetch it:
//! whole files and pieces of large ones, in one queue that every worker
//! takes from. (How one connection works through its share is in
//! `worker`; aria2 keeps "which ranges are left" apart from "how a
//! connection fetches one" the same way.)
//!
//! A parallel `get` learns every file's size and stamp (from the listing it
//! already has, or by listing the folders the names are in), so that it
//! can put large files first (the work then stays balanced), bound each
//! connection's look-ahead by bytes (small files never wait behind a huge
//! one), and split a file that is too large for one connection's share into
//! pieces fetched over several at once.
//!
//! Plain names do not wait for that listing: it costs a round trip before
//! the first file. Each connection starts at once with *probes*, ranged
//! GETs of a file's first [`PROBE_LEN`] bytes: a small file arrives whole
//! with its probe; a larger one shows its size and stamp, and what came is
//! kept as its start (the first piece, or the beginning of a continuation).
//! The listing goes out as one more request beside them; when it arrives,
//! the probes not yet sent become the plan's items (largest first, pieces
//! of large files) and more connections are opened if the plan wants them.
//!
//! When the round trip is short, the small files all go over one
//! connection, the first to be ready (the *lane*), and the others fetch
//! only large files and pieces (see [`SHORT_HANDSHAKE`]). The listing is
//! then not asked for until something needs it (see [`Listing`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::local::{Head, Plan};
use super::segmented::{Segmented, PIECE_MIN};
use super::worker;
use super::{
    connect, folders_to_list, plan_totals, report, stamps_from_server, unusable, Outcome, Run,
    Task, PROBE_LEN,
};
use crate::client::Connection;
use crate::protocol::Stamp;

/// Most bytes one connection asks for ahead of what it is receiving,
/// counting each file in flight at its full size.
pub const LOOKAHEAD_BYTES: u64 = 4 * 1024 * 1024;

/// Longest connection set-up (TCP connect and TLS handshake, at least one
/// round trip) at which the small files of a parallel `get` all go over
/// one connection. One pipelined connection keeps 64 to 96 requests in
/// flight and a small file costs the client about 70 us of work, so it only
/// waits on the network once the round trip is beyond about 4.5 ms; below
/// that, more connections fetching small files only add threads that
/// compete for the CPU with the one thread that writes them all (on
/// loopback, 2,000 small files took 1.4x as long over 8 connections as
/// over one). Large files and pieces still use every connection: they are
/// bound by bytes per connection, not by round trips.
pub const SHORT_HANDSHAKE: Duration = Duration::from_millis(4);
/// The environment variable that sets another threshold than
/// [`SHORT_HANDSHAKE`], in milliseconds (tests use it so that a loaded
/// machine's slow connect cannot change which way they go).
pub const SHORT_HANDSHAKE_VAR: &str = "FXFER_SHORT_HANDSHAKE_MS";

/// [`SHORT_HANDSHAKE`], unless [`SHORT_HANDSHAKE_VAR`] holds a whole
/// number of milliseconds.
fn short_handshake() -> Duration {
    static T: OnceLock<Duration> = OnceLock::new();
    *T.get_or_init(|| crate::config::millis_from_env(SHORT_HANDSHAKE_VAR, SHORT_HANDSHAKE))
}

/// Smallest whole file the other connections take from the lane (see
/// [`SHORT_HANDSHAKE`]): larger ones are bound by bytes, not round trips.
const BULK_MIN: u64 = 1024 * 1024;

/// Which items a worker takes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// Any item, front first (a serial `get`, or a long round trip).
    Any,
    /// The lane of a short round trip: small items first, then large ones.
    Lane,
    /// Only large files and pieces, while the lane is at work.
    Bulk,
}

/// How the items are shared out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No connection has been timed yet.
    Undecided,
    /// Every worker takes from the one line.
    Shared,
    /// Small items in `items` for the lane, large ones in `bulk`.
    Lane,
}

/// One unit of work: one request, one response.
pub enum Item<'p> {
    /// A whole file (or the rest of a partial one), with its size when
    /// known.
    Whole { task: Box<Task>, size: Option<u64> },
    /// Piece `index` of a file fetched in pieces; `again` once it failed
    /// to verify.
    Piece {
        file: Arc<Segmented<'p>>,
        index: usize,
        retries: u32,
        again: bool,
    },
    /// The whole file's digest, for a file put together partly from what
    /// an earlier run left on disk; `expect` is what the pieces make.
    Verify {
        file: Arc<Segmented<'p>>,
        expect: [u8; 32],
        retries: u32,
    },
    /// The listing of these folders (the whole tree when `recursive`), for
    /// the plan of files being probed. It is asked for once: if its
    /// connection breaks, the probes go on without it.
    List {
        folders: Vec<String>,
        recursive: bool,
    },
}

impl Item<'_> {
    pub fn name(&self) -> &str {
        match self {
            Item::Whole { task, .. } => &task.name,
            Item::Piece { file, .. } | Item::Verify { file, .. } => &file.name,
            Item::List { .. } => "",
        }
    }

    /// What it adds to a connection's look-ahead. A file of unknown size
    /// counts as a full look-ahead (nothing is asked for behind it), unless
    /// only its first bytes are asked for.
    pub fn bytes(&self) -> u64 {
        match self {
            Item::Whole { task, size: None } if task.probe => PROBE_LEN,
            Item::Whole { size, .. } => size.unwrap_or(LOOKAHEAD_BYTES),
            Item::Piece { file, index, .. } => file.pieces[*index].1,
            Item::Verify { .. } | Item::List { .. } => 0,
        }
    }

    /// Whether it is a large file or a piece, which any connection may
    /// take from the lane (see [`SHORT_HANDSHAKE`]).
    pub fn bulk(&self) -> bool {
        match self {
            Item::Whole { task, size: None } => !task.probe,
            Item::Whole { size: Some(n), .. } => *n >= BULK_MIN,
            Item::Piece { .. } | Item::Verify { .. } => true,
            Item::List { .. } => false,
        }
    }

    pub fn retries(&self) -> u32 {
        match self {
            Item::Whole { task, .. } => task.retries,
            Item::Piece { retries, .. } | Item::Verify { retries, .. } => *retries,
            Item::List { .. } => 0,
        }
    }

    /// Counts one more try after a broken connection.
    pub fn charge(&mut self) {
        match self {
            Item::Whole { task, .. } => task.retries += 1,
            Item::Piece { retries, .. } | Item::Verify { retries, .. } => *retries += 1,
            Item::List { .. } => {}
        }
    }
}

/// A file whose probe brought only its start, waiting for the listing:
/// whether the rest comes in pieces depends on the run's total.
pub struct Held {
    pub task: Task,
    pub plan: Plan,
    pub head: Head,
}

impl Held {
    /// The rest of the file as one continuation (what is left in line when
    /// the listing never comes: Ctrl-C, or no connection left).
    fn into_item<'p>(self) -> Item<'p> {
        continuation(self.task, &self.plan, self.head)
    }
}

/// Where the listing of a probing run is, at a short round trip. There
/// the lane fetches small files as fast as the serial `get`, and a listing
/// ahead of them would cost their first answer the server's walk of the
/// folder and the client's reading and planning of every entry (12 ms for
/// 2,000 files on loopback). Small files need no plan, so the listing is
/// kept back until a probe finds a large file (whose rest is planned
/// against the run's total) or a total is about to be shown.
enum Listing<'p> {
    /// In line, in flight or in (or never to be asked for).
    Asked,
    /// Not in line; asked for at `due` at the latest, if then.
    Withheld {
        item: Item<'p>,
        due: Option<Instant>,
    },
    /// Asked for after being withheld: the large files found meanwhile
    /// wait for it.
    Awaited(Vec<Held>),
}

struct State<'p> {
    items: VecDeque<Item<'p>>,
    /// In [`Mode::Lane`], the large items (in `items` otherwise).
    bulk: VecDeque<Item<'p>>,
    mode: Mode,
    /// Since when a worker is connecting to time the set-up.
    timing: Option<Instant>,
    /// Items taken by a worker and not yet settled or put back.
    active: usize,
    /// Workers still running.
    live: usize,
    /// Whether the plan is made (workers may connect before that).
    ready: bool,
    /// Probing: the names asked for (until the listing is in, for the
    /// total), and once the listing is in (or lost), the bytes of those it
    /// listed (for the size of pieces).
    /// (Each once: `select::expand` drops repeated names.)
    asked: Vec<String>,
    known: Option<u64>,
    listing: Listing<'p>,
    /// How soon a total is shown (see [`Progress::totals_due`]), which
    /// says how long the listing may be withheld at a short round trip.
    ///
    /// [`Progress::totals_due`]: crate::progress::Progress::totals_due
    totals_due: Option<Duration>,
    /// Whether a probing run may start workers besides the first.
    others: bool,
    /// A listing was put out for the other connections, and none has been
    /// started since.
    others_coming: bool,
}

/// What the thread that starts the workers of a probing run does next.
pub enum Next {
    /// Start this many more.
    Hire(usize),
    /// Nothing is left to do, or no worker is left to do it (the last one
    /// to leave reported what was left).
    Finished,
}

impl<'p> State<'p> {
    fn len(&self) -> usize {
        self.items.len() + self.bulk.len()
    }

    fn empty(&self) -> bool {
        self.items.is_empty() && self.bulk.is_empty()
    }

    /// The line an item belongs in.
    fn line(&mut self, item: &Item) -> &mut VecDeque<Item<'p>> {
        if self.mode == Mode::Lane && item.bulk() {
            &mut self.bulk
        } else {
            &mut self.items
        }
    }

    fn push_back(&mut self, item: Item<'p>) {
        self.line(&item).push_back(item);
    }

    fn push_front(&mut self, item: Item<'p>) {
        self.line(&item).push_front(item);
    }

    /// The line `role` takes from next, if it has anything.
    fn next_line(&mut self, role: Role) -> Option<&mut VecDeque<Item<'p>>> {
        // A listing put out for another connection (see `ask_listing`) is
        // the lane's only once no other will take it: behind the lane's
        // window its answer would wait for every file in it.
        let for_others = matches!(self.bulk.front(), Some(Item::List { .. }))
            && (self.others_coming || self.live > 1);
        let order = match (self.mode, role) {
            (Mode::Lane, Role::Lane) if for_others => {
                return Some(&mut self.items).filter(|l| !l.is_empty())
            }
            (Mode::Lane, Role::Lane) => [&mut self.items, &mut self.bulk],
            (Mode::Lane, Role::Bulk) => return Some(&mut self.bulk).filter(|l| !l.is_empty()),
            _ => [&mut self.bulk, &mut self.items],
        };
        order.into_iter().find(|l| !l.is_empty())
    }

    /// Everything in line, with the files waiting for the listing.
    fn drain(&mut self) -> Vec<Item<'p>> {
        let mut all: Vec<Item<'p>> = self.bulk.drain(..).collect();
        all.extend(self.items.drain(..));
        if let Listing::Awaited(held) = std::mem::replace(&mut self.listing, Listing::Asked) {
            all.extend(held.into_iter().map(Held::into_item));
        }
        all
    }

    /// Keeps the listing out of line (see [`Listing`]), unless a total is
    /// shown from the start.
    fn withhold_listing(&mut self) {
        if self.totals_due == Some(Duration::ZERO) {
            return;
        }
        let Some(i) = self
            .items
            .iter()
            .position(|i| matches!(i, Item::List { .. }))
        else {
            return;
        };
        let item = self.items.remove(i).expect("found");
        log::debug!("no listing until a large file or a total needs it");
        self.listing = Listing::Withheld {
            item,
            due: self.totals_due.map(|d| Instant::now() + d),
        };
    }

    /// Puts a withheld listing in line, for the first connection free to
    /// take it: one that fetches large items (the lane has a window of
    /// small files ahead of it, which the answer would wait behind).
    /// Returns whether it did.
    fn ask_listing(&mut self) -> bool {
        let Listing::Withheld { .. } = self.listing else {
            return false;
        };
        let Listing::Withheld { item, .. } =
            std::mem::replace(&mut self.listing, Listing::Awaited(Vec::new()))
        else {
            unreachable!("matched above");
        };
        log::debug!("asking for the listing");
        if self.mode == Mode::Lane {
            self.bulk.push_front(item);
            self.others_coming = self.others;
        } else {
            self.items.push_front(item);
        }
        true
    }

    /// How many workers a probing run wants at `now` (see [`Queue::next`]),
    /// and until when that may change without anyone saying so (the
    /// first set-up still being timed).
    fn workers_wanted(&self, early: usize, jobs: usize, now: Instant) -> (usize, Option<Instant>) {
        let undecided = match (self.mode, self.timing) {
            (Mode::Undecided, None) => Some(now + short_handshake()),
            (Mode::Undecided, Some(t)) => Some(t + short_handshake()),
            _ => None,
        }
        .filter(|&d| d > now);
        let want = if undecided.is_some() || (self.mode == Mode::Lane && self.bulk.is_empty()) {
            1
        } else if self.known.is_some() {
            jobs.min(self.len() + self.active)
        } else {
            early
        };
        (want, undecided)
    }

    /// When a withheld listing is to be asked for.
    fn listing_due(&self) -> Option<Instant> {
        match self.listing {
            Listing::Withheld { due, .. } => due,
            _ => None,
        }
    }
}

/// The queue every worker takes from.
pub struct Queue<'p> {
    st: Mutex<State<'p>>,
    changed: Condvar,
    /// What workers that take only large items wait on, and the thread
    /// that starts workers: told of the plan, of large items and of the
    /// end, not woken for every small file settled.
    bulk_changed: Condvar,
}

impl<'p> Queue<'p> {
    /// A queue for `workers` workers; `items` may come later with
    /// [`Queue::fill`].
    pub fn new(items: Option<Vec<Item<'p>>>, workers: usize) -> Queue<'p> {
        Queue {
            st: Mutex::new(State {
                ready: items.is_some(),
                items: items.unwrap_or_default().into(),
                bulk: VecDeque::new(),
                mode: Mode::Undecided,
                timing: None,
                active: 0,
                live: workers,
                asked: Vec::new(),
                known: None,
                listing: Listing::Asked,
                totals_due: Some(Duration::ZERO),
                others: false,
                others_coming: false,
            }),
            changed: Condvar::new(),
            bulk_changed: Condvar::new(),
        }
    }

    /// Wakes every waiting worker.
    fn notify(&self) {
        self.changed.notify_all();
        self.bulk_changed.notify_all();
    }

    pub fn fill(&self, items: Vec<Item<'p>>) {
        let mut st = self.st.lock().unwrap();
        for item in items {
            st.push_back(item);
        }
        st.ready = true;
        self.notify();
    }

    /// A worker's connection is up, after `setup` (`None`: not timed, such
    /// as one opened before the run). The first one timed decides how the
    /// items are shared (see [`SHORT_HANDSHAKE`]); returns what this worker
    /// takes.
    pub fn connected(&self, setup: Option<Duration>) -> Role {
        let mut st = self.st.lock().unwrap();
        match (st.mode, setup) {
            (Mode::Undecided, Some(t)) if t <= short_handshake() => {
                log::debug!("set-up took {t:?}: small files over this connection only");
                st.mode = Mode::Lane;
                st.withhold_listing();
                let all: Vec<Item<'p>> = st.items.drain(..).collect();
                for item in all {
                    st.push_back(item);
                }
                self.notify();
                Role::Lane
            }
            (Mode::Undecided, Some(t)) => {
                log::debug!("set-up took {t:?}: every connection fetches small files");
                st.mode = Mode::Shared;
                self.notify();
                Role::Any
            }
            (Mode::Lane, Some(_)) => Role::Bulk,
            _ => Role::Any,
        }
    }

    /// A connection is being opened and timed by someone who does not ask
    /// [`Queue::before_connect`] (the one that lists the folders).
    pub fn timing(&self) {
        self.st.lock().unwrap().timing = Some(Instant::now());
    }

    /// Called before a worker opens its connection. The first one connects
    /// at once, to time the set-up; the others wait for that (at most
    /// [`SHORT_HANDSHAKE`] after it started, so a long round trip costs
    /// them no more than that) and, if the lane takes the small files,
    /// connect only once there is a large item for them (they may never
    /// need to). Returns the worker's role when that is decided here.
    pub fn before_connect(&self) -> Option<Role> {
        let mut st = self.st.lock().unwrap();
        loop {
            match st.mode {
                Mode::Undecided if st.timing.is_none() => {
                    st.timing = Some(Instant::now());
                    return None;
                }
                Mode::Undecided => {
                    let deadline = st
                        .timing
                        .map_or_else(Instant::now, |t| t + short_handshake());
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    st = self.changed.wait_timeout(st, left).unwrap().0;
                }
                Mode::Shared => return None,
                Mode::Lane => {
                    if !st.bulk.is_empty() || (st.ready && st.empty() && st.active == 0) {
                        return Some(Role::Bulk);
                    }
                    st = self.bulk_changed.wait(st).unwrap();
                }
            }
        }
    }

    /// The lane stops: its small items are anyone's now.
    fn lane_closed(&self, st: &mut State<'p>) {
        if st.mode == Mode::Lane {
            st.mode = Mode::Shared;
            while let Some(item) = st.bulk.pop_back() {
                st.items.push_front(item);
            }
            self.notify();
        }
    }

    /// No other worker will start (there is no thread to start them).
    fn alone(&self) {
        let mut st = self.st.lock().unwrap();
        st.others = false;
        st.others_coming = false;
    }

    /// More workers are about to start.
    pub fn hire(&self, n: usize) {
        let mut st = self.st.lock().unwrap();
        st.live += n;
        st.others_coming = false;
    }

    /// Waits until a probing run wants more workers than the `hired` so
    /// far, or needs none. The first worker alone starts: its set-up says
    /// whether the others are needed now. Then, at a long round trip (or
    /// once [`SHORT_HANDSHAKE`] has passed without an answer) they start,
    /// `early` of them before the listing and then one per item in line or
    /// in flight (at most `jobs`); at a short one, only once there are
    /// large items for them.
    pub fn next(&self, hired: usize, early: usize, jobs: usize) -> Next {
        let mut st = self.st.lock().unwrap();
        loop {
            if (st.empty() && st.active == 0) || st.live == 0 {
                return Next::Finished;
            }
            let (want, undecided) = st.workers_wanted(early, jobs, Instant::now());
            if want > hired {
                return Next::Hire(want - hired);
            }
            let wake = [undecided, st.listing_due()].into_iter().flatten().min();
            // (Told of the plan and of large items, not of every file.)
            st = match wake {
                None => self.bulk_changed.wait(st).unwrap(),
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() && st.ask_listing() {
                        self.notify();
                        continue;
                    }
                    self.bulk_changed.wait_timeout(st, left).unwrap().0
                }
            };
        }
    }

    /// A probe brought only the start of a large file. While the listing
    /// is withheld or on its way, the file waits for it (and it is asked
    /// for), still counted as taken; otherwise it comes back, to be
    /// planned now.
    pub fn hold(&self, held: Held) -> Option<Held> {
        let mut st = self.st.lock().unwrap();
        if st.ask_listing() {
            self.notify();
        }
        match &mut st.listing {
            Listing::Awaited(waiting) => {
                waiting.push(held);
                None
            }
            _ => Some(held),
        }
    }

    /// The bytes of all the files asked for, once the listing told them.
    pub fn total(&self) -> Option<u64> {
        let st = self.st.lock().unwrap();
        st.known.filter(|&t| t > 0)
    }

    /// The listing arrived (`None`: it was lost, the probes go on alone).
    /// Returns the probes still in line, which the caller plans and puts
    /// back with [`Queue::planned`], the files that waited for it, and the
    /// names asked for.
    fn listed(
        &self,
        stamps: Option<HashMap<String, Stamp>>,
    ) -> (Vec<Task>, HashMap<String, Stamp>, Vec<Held>, Vec<String>) {
        let mut st = self.st.lock().unwrap();
        let held = match std::mem::replace(&mut st.listing, Listing::Asked) {
            Listing::Awaited(held) => held,
            other => {
                st.listing = other;
                Vec::new()
            }
        };
        let stamps = stamps.unwrap_or_default();
        let total = st
            .asked
            .iter()
            .filter_map(|n| stamps.get(n).map(|s| s.size))
            .sum();
        let (probes, rest): (VecDeque<Item>, VecDeque<Item>) = st
            .items
            .drain(..)
            .partition(|i| matches!(i, Item::Whole { task, .. } if task.probe));
        st.items = rest;
        // Counted as taken until they are back.
        st.active += probes.len();
        let tasks = probes
            .into_iter()
            .filter_map(|i| match i {
                Item::Whole { task, .. } => Some(*task),
                _ => None,
            })
            .collect();
        st.known = Some(total);
        let asked = std::mem::take(&mut st.asked);
        (tasks, stamps, held, asked)
    }

    /// The plan's items for `n` probes taken back by [`Queue::listed`]; the
    /// listing itself is settled with them.
    fn planned(&self, items: Vec<Item<'p>>, n: usize) {
        let mut st = self.st.lock().unwrap();
        for item in items {
            st.push_back(item);
        }
        st.active -= n + 1;
        self.notify();
    }

    /// Whether there is nothing left at all (a worker need not connect).
    pub fn finished(&self) -> bool {
        let st = self.st.lock().unwrap();
        st.ready && st.empty() && st.active == 0
    }

    /// Waits for the next item; `None` once there is nothing left and
    /// nothing in flight anywhere (in flight items may come back).
    pub fn take(&self, role: Role) -> Option<Item<'p>> {
        let mut st = self.st.lock().unwrap();
        loop {
            if st.ready {
                if let Some(item) = st.next_line(role).and_then(|l| l.pop_front()) {
                    st.active += 1;
                    return Some(item);
                }
                if st.empty() && st.active == 0 {
                    return None;
                }
            }
            st = if role == Role::Bulk && st.mode == Mode::Lane {
                self.bulk_changed.wait(st).unwrap()
            } else {
                self.changed.wait(st).unwrap()
            };
        }
    }

    /// The next item for `role`, if there is one and `fits` accepts it.
    pub fn take_if(&self, role: Role, fits: impl FnOnce(&Item) -> bool) -> Option<Item<'p>> {
        let mut st = self.st.lock().unwrap();
        if !st.ready {
            return None;
        }
        let line = st.next_line(role)?;
        if !line.front().is_some_and(fits) {
            return None;
        }
        let item = line.pop_front();
        st.active += 1;
        item
    }

    /// The next item is charged a retry (a connection failed before it
    /// could be asked for); its name, for the message.
    pub fn charge_next(&self) -> Option<String> {
        let mut st = self.st.lock().unwrap();
        // (The listing is nobody's file.)
        let st = &mut *st;
        st.bulk
            .iter_mut()
            .chain(st.items.iter_mut())
            .find(|i| !matches!(i, Item::List { .. }))
            .map(|i| {
                i.charge();
                i.name().to_string()
            })
    }

    /// An item taken is done with.
    pub fn settled(&self) {
        self.give_back(Vec::new(), 1);
    }

    /// Items taken go back to the front of the line, in order, in place of
    /// `taken` taken ones (new work, such as a restart, counts as one of
    /// them going back).
    pub fn give_back(&self, items: Vec<Item<'p>>, taken: usize) {
        let mut st = self.st.lock().unwrap();
        let bulk = items.iter().any(Item::bulk);
        for item in items.into_iter().rev() {
            st.push_front(item);
        }
        st.active -= taken;
        self.changed.notify_all();
        if bulk || (st.empty() && st.active == 0) {
            self.bulk_changed.notify_all();
        }
    }

    /// Everything in line (Ctrl-C: nothing more will be asked for).
    pub fn take_all(&self) -> Vec<Item<'p>> {
        let mut st = self.st.lock().unwrap();
        self.notify();
        st.drain()
    }

    /// A worker that took as `role` stops. Returns whatever is left in line
    /// when it was the last one (nobody else will fetch it).
    pub fn leave(&self, role: Role) -> Vec<Item<'p>> {
        let mut st = self.st.lock().unwrap();
        st.live -= 1;
        if role == Role::Lane {
            self.lane_closed(&mut st);
        }
        self.notify();
        if st.live == 0 {
            st.drain()
        } else {
            Vec::new()
        }
    }
}

/// Whether a file of `size` bytes is fetched in pieces, and how large they
/// are: when it alone is more than half of one connection's fair share of
/// `total` bytes, in pieces of about a share (at least [`PIECE_MIN`]).
pub fn piece_size(size: u64, total: u64, jobs: usize) -> Option<u64> {
    let jobs = jobs as u64;
    let share = total / jobs.max(1);
    if jobs < 2 || size < 2 * PIECE_MIN || size * 2 <= share {
        return None;
    }
    Some(size.div_ceil(jobs).min(share).max(PIECE_MIN))
}

/// Turns the tasks into items, largest first; files too large for one
/// connection's share become pieces. Returns the items and the outcomes of
/// files that failed on the way (a part that cannot be created).
pub fn plan<'p>(
    run: &Run<'p>,
    tasks: Vec<Task>,
    stamps: &HashMap<String, Stamp>,
) -> (Vec<Item<'p>>, Vec<Outcome>) {
    let total: u64 = tasks
        .iter()
        .filter_map(|t| stamps.get(&t.name).map(|s| s.size))
        .sum();
    plan_within(run, tasks, stamps, total)
}

/// [`plan`], for tasks that are part of a run of `total` bytes.
fn plan_within<'p>(
    run: &Run<'p>,
    tasks: Vec<Task>,
    stamps: &HashMap<String, Stamp>,
    total: u64,
) -> (Vec<Item<'p>>, Vec<Outcome>) {
    let jobs = run.settings.jobs;
    let mut items = Vec::new();
    let mut failed = Vec::new();
    for mut task in tasks {
        let stamp = stamps.get(&task.name).copied();
        // A partial copy from a download of the whole file is continued as
        // one, from where it stopped.
        let continued = task.first.as_ref().is_some_and(|p| p.offset > 0);
        let target = stamp
            .filter(|_| !continued)
            .and_then(|s| piece_size(s.size, total, jobs));
        let (Some(stamp), Some(target)) = (stamp, target) else {
            items.push(Item::Whole {
                size: stamp.map(|s| s.size),
                task: Box::new(task),
            });
            continue;
        };
        let plan = match run.plan(&mut task) {
            Ok(p) => p,
            Err(why) => {
                failed.push(report(run.progress, &task.name, Err(why), 0));
                continue;
            }
        };
        let opened = Segmented::open(
            run.dest,
            run.progress,
            plan,
            stamp,
            target,
            run.settings.resume,
            None,
        );
        match opened {
            Ok(seg) => pieces_of(run, seg, &mut items, &mut failed),
            Err(e) => failed.push(report(run.progress, &task.name, Err(e.to_string()), 0)),
        }
    }
    // Largest first (stable: pieces of one file stay in order).
    items.sort_by_key(|i| std::cmp::Reverse(i.bytes()));
    (items, failed)
}

/// The items of a file opened for fetching in pieces: those still to fetch
/// (or, if every piece was already here and checked out, what concludes
/// it).
fn pieces_of<'p>(
    run: &Run<'p>,
    seg: Segmented<'p>,
    items: &mut Vec<Item<'p>>,
    failed: &mut Vec<Outcome>,
) {
    let seg = Arc::new(seg);
    let todo = seg.todo();
    if todo.is_empty() {
        let (done, again) = worker::conclude(run, &seg, seg.conclude());
        failed.extend(done);
        items.extend(again);
    }
    for index in todo {
        items.push(Item::Piece {
            file: Arc::clone(&seg),
            index,
            retries: 0,
            again: false,
        });
    }
}

/// The listing of a probing run arrived (`None`: it was lost): the probes
/// still in line become the plan's items, and the listing is settled.
/// Returns the outcomes of files that failed on the way.
pub fn on_listing<'p>(
    run: &Run<'p>,
    q: &Queue<'p>,
    stamps: Option<HashMap<String, Stamp>>,
) -> Vec<Outcome> {
    let (mut tasks, stamps, held, asked) = q.listed(stamps);
    let n = tasks.len();
    for t in &mut tasks {
        // Known now: asked for whole or in pieces, not probed.
        t.probe = !stamps.contains_key(&t.name);
    }
    // Every name the listing knows, also those asked for already whose
    // answers have not begun (probes start at offset 0).
    run.progress.plan(
        asked
            .iter()
            .filter_map(|n| Some((n.as_str(), stamps.get(n)?.size))),
    );
    let total = q.total().unwrap_or(0);
    let (items, mut failed) = plan_within(run, tasks, &stamps, total);
    q.planned(items, n);
    for h in held {
        let (items, out) = rest(run, q, h.task, &h.plan, h.head);
        failed.extend(out);
        // In place of its probe, which is done with now.
        q.give_back(items, 1);
    }
    failed
}

/// What is left of a file whose probe brought only its `head`: the rest,
/// as pieces (the head is the first) when the file is too large for one
/// connection's share of the run, or else as a continuation. `plan` is the
/// probe's.
pub fn rest<'p>(
    run: &Run<'p>,
    q: &Queue<'p>,
    mut task: Task,
    plan: &Plan,
    head: Head,
) -> (Vec<Item<'p>>, Vec<Outcome>) {
    let size = head.stamp.size;
    // Before the listing, the file is planned as if it were alone.
    let total = q.total().unwrap_or(size).max(size);
    task.probe = false;
    let mut items = Vec::new();
    let mut failed = Vec::new();
    match piece_size(size, total, run.settings.jobs) {
        Some(target) => match Segmented::open(
            run.dest,
            run.progress,
            plan.clone(),
            head.stamp,
            target,
            run.settings.resume,
            Some(head),
        ) {
            Ok(seg) => {
                pieces_of(run, seg, &mut items, &mut failed);
                // Largest first: the small subtrees beside the head fill
                // the gaps at the end.
                items.sort_by_key(|i| std::cmp::Reverse(i.bytes()));
            }
            Err(e) => failed.push(report(run.progress, &task.name, Err(e.to_string()), 0)),
        },
        None => items.push(continuation(task, plan, head)),
    }
    (items, failed)
}

/// The rest of a file whose probe brought its `head`, as one request.
fn continuation<'p>(mut task: Task, plan: &Plan, head: Head) -> Item<'p> {
    task.probe = false;
    task.first = Some(Plan {
        offset: head.len,
        stamp: Some(head.stamp),
        ..plan.clone()
    });
    Item::Whole {
        task: Box::new(task),
        size: Some(head.stamp.size),
    }
}

/// Whether a parallel run of `tasks` can start with probes: none of them
/// continues a partial download (that needs the stamps first, to tell
/// which of its pieces or bytes still hold).
fn can_probe(run: &Run, tasks: &[Task]) -> bool {
    tasks.iter().all(|t| {
        t.first
            .as_ref()
            .is_some_and(|p| p.offset == 0 && !run.dest.has_part(p))
    }) && !tasks.is_empty()
        && run.settings.jobs > 1
}

/// The listing a probing run asks for: the folders the names are in, or
/// the whole tree when they are many.
fn listing_for<'p>(tasks: &[Task]) -> Item<'p> {
    let (folders, recursive) = folders_to_list(tasks);
    Item::List {
        folders: folders.into_iter().map(str::to_string).collect(),
        recursive,
    }
}

/// Starts `n` workers (numbered from `from`), each with a connection of
/// its own. A worker that cannot start has left at once: the others (the
/// calling thread at least) do its share.
fn spawn_workers<'scope, 'env, 'p>(
    s: &'scope std::thread::Scope<'scope, 'env>,
    run: &'env Run<'p>,
    q: &'env Queue<'p>,
    from: usize,
    n: usize,
) -> Vec<std::thread::ScopedJoinHandle<'scope, Vec<Outcome>>>
where
    'p: 'env,
{
    (from..from + n)
        .filter_map(|i| {
            let h = std::thread::Builder::new()
                .name(format!("get-{i}"))
                .spawn_scoped(s, move || worker::work(run, q, None, None, true));
            if h.is_err() {
                q.leave(Role::Any);
            }
            h.ok()
        })
        .collect()
}

/// Runs a parallel `get` of plain names whose sizes are not known: every
/// connection starts at once with probes, and the listing goes beside
/// them (see the module's comment).
fn probing(run: &Run, mut tasks: Vec<Task>) -> Vec<Outcome> {
    let jobs = run.settings.jobs;
    let early = jobs.min(tasks.len()).max(1);
    let mut items = vec![listing_for(&tasks)];
    let asked = tasks.iter().map(|t| t.name.clone()).collect();
    for t in &mut tasks {
        t.probe = true;
    }
    items.extend(tasks.into_iter().map(|t| Item::Whole {
        task: Box::new(t),
        size: None,
    }));
    // One worker: this thread.
    let q = Queue::new(Some(items), 1);
    {
        let mut st = q.st.lock().unwrap();
        st.asked = asked;
        st.totals_due = run.progress.totals_due();
        st.others = early > 1;
    }
    std::thread::scope(|s| {
        let q = &q;
        // This thread is the first worker: its set-up says whether the
        // others are needed now (see Queue::next). Another thread starts
        // them, so that the first request waits for no thread to start.
        // (At a short round trip this thread then fetches every small
        // file, as a serial get does.)
        let hiring = std::thread::Builder::new()
            .name("get-hire".into())
            .spawn_scoped(s, move || {
                let mut handles = Vec::new();
                let mut hired = 1;
                while let Next::Hire(n) = q.next(hired, early, jobs) {
                    q.hire(n);
                    handles.extend(spawn_workers(s, run, q, hired, n));
                    hired += n;
                }
                let mut outcomes = Vec::new();
                for h in handles {
                    outcomes.extend(h.join().unwrap_or_default());
                }
                outcomes
            });
        if hiring.is_err() {
            // Nobody will start the others: this worker takes everything.
            q.alone();
        }
        let mut outcomes = worker::work(run, q, None, None, true);
        if let Ok(h) = hiring {
            outcomes.extend(h.join().unwrap_or_default());
        }
        outcomes
    })
}

/// Runs a parallel `get`: workers connect while the sizes are found out,
/// then share the queue, one connection each; `first` (a connection that
/// listed the server already) serves as one of them.
pub fn parallel(
    run: &Run,
    first: Option<Connection>,
    tasks: Vec<Task>,
    known: Option<HashMap<String, Stamp>>,
) -> Vec<Outcome> {
    let jobs = run.settings.jobs;
    // (The outcomes come in any order: `get` puts them in the order asked.)
    if known.is_none() && first.is_none() && can_probe(run, &tasks) {
        return probing(run, tasks);
    }
    let early = jobs.min(tasks.len()).max(1);
    let q = Queue::new(None, early);
    std::thread::scope(|s| {
        let q = &q;
        let spawn = |n: usize| spawn_workers(s, run, q, 0, n);
        // The other connections are opened while this one is: each costs
        // a TCP and a TLS handshake, and none needs to wait for another.
        let lists = first.is_none() && known.is_none();
        if lists {
            q.timing();
        }
        let mut handles = spawn(early - 1);
        let mut conn = first;
        let mut setup = None;
        if lists {
            // This connection lists the folders while the others connect.
            let start = Instant::now();
            conn = connect(run.settings, run.limiter.as_ref()).ok();
            setup = Some(start.elapsed());
        }
        let stamps = match known {
            Some(k) => k,
            None => match stamps_from_server(run.settings, run.limiter.as_ref(), &mut conn, &tasks)
            {
                Ok(found) => {
                    plan_totals(run.progress, &tasks, &found);
                    found
                }
                Err(e) => {
                    // Not a server we can use: the run ends here (the
                    // workers waiting for the plan find nothing to do).
                    let failed = tasks
                        .iter()
                        .map(|t| unusable(run.progress, t, &e))
                        .collect();
                    q.fill(Vec::new());
                    for h in handles {
                        let _ = h.join();
                    }
                    return failed;
                }
            },
        };
        let (items, mut outcomes) = plan(run, tasks, &stamps);
        let wanted = jobs.min(items.len()).max(1);
        if wanted > early {
            q.hire(wanted - early);
            handles.extend(spawn(wanted - early));
        }
        q.fill(items);
        outcomes.extend(worker::work(run, q, conn, setup, true));
        for h in handles {
            outcomes.extend(h.join().unwrap_or_default());
        }
        outcomes
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    /// A probe of a file of unknown size named `name`.
    fn probe<'p>(name: &str) -> Item<'p> {
        Item::Whole {
            task: Box::new(Task {
                name: name.into(),
                retries: 0,
                restarted: false,
                first: None,
                kept: 0,
                probe: true,
            }),
            size: None,
        }
    }

    #[test]
    fn the_first_set_up_says_whether_more_workers_start() {
        let (early, jobs) = (8, 8);
        let probes = || Some((0..100).map(|i| probe(&format!("f{i}"))).collect());
        let now = Instant::now();
        // While the first connection is being timed: that one alone.
        let q = Queue::new(probes(), 1);
        q.st.lock().unwrap().timing = Some(now);
        let (want, wake) = q.st.lock().unwrap().workers_wanted(early, jobs, now);
        assert_eq!((want, wake), (1, Some(now + short_handshake())));
        // No answer in time: the others start and connect.
        let later = now + short_handshake();
        assert_eq!(
            q.st.lock().unwrap().workers_wanted(early, jobs, later),
            (early, None)
        );
        // A long round trip: every connection fetches small files.
        let q = Queue::new(probes(), 1);
        assert_eq!(q.connected(Some(Duration::from_secs(1))), Role::Any);
        assert_eq!(
            q.st.lock().unwrap().workers_wanted(early, jobs, now).0,
            early
        );
        // A short one: the lane alone, until there is a large item.
        let q = Queue::new(probes(), 1);
        assert_eq!(q.connected(Some(Duration::ZERO)), Role::Lane);
        assert_eq!(q.st.lock().unwrap().workers_wanted(early, jobs, now).0, 1);
        q.st.lock().unwrap().bulk.push_back(Item::List {
            folders: vec![String::new()],
            recursive: false,
        });
        assert_eq!(
            q.st.lock().unwrap().workers_wanted(early, jobs, now).0,
            early
        );
    }

    #[test]
    fn only_files_beyond_a_share_are_split() {
        // One large file alone: split over all connections.
        assert_eq!(piece_size(256 * MIB, 256 * MIB, 8), Some(32 * MIB));
        // Sixteen equal files for eight connections: whole files balance.
        assert_eq!(piece_size(64 * MIB, 1024 * MIB, 8), None);
        // Serial, or too small to be worth a split: whole.
        assert_eq!(piece_size(256 * MIB, 256 * MIB, 1), None);
        assert_eq!(piece_size(7 * MIB, 7 * MIB, 8), None);
        // Pieces never get below the minimum.
        assert_eq!(piece_size(8 * MIB, 8 * MIB, 8), Some(PIECE_MIN));
        // A large file among many small ones: pieces of about a share.
        assert_eq!(piece_size(1024 * MIB, 1040 * MIB, 8), Some(128 * MIB));
    }
}
