//! One connection's share of a `get`: take items from the shared queue and
//! keep a window of requests pipelined ahead on one kept-alive connection,
//! so the connection's set-up and handshake are paid once, not per file.
//! A serial `get` is one worker; `--parallel` runs one per connection.
//!
//! When the connection breaks, what it had in flight goes back to the
//! front of the line (only the item being received is charged a retry),
//! and the worker connects again after a backoff. A worker whose
//! connection keeps failing leaves the work to the others; the last one to
//! leave reports what is left as failed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::local::{Failure, Plan};
use super::schedule::{Item, Queue, Role, LOOKAHEAD_BYTES};
use super::segmented::{Broken, PieceResult, Segmented, Settled};
use super::{
    backoff, connect, connection_level, nap, report, schedule, settled, stamps_of, transient,
    Outcome, Received, Run, Task, PROBE_LEN, REFILL_AT, WINDOW_BYTES, WINDOW_REQUESTS,
};
use crate::client::{Connection, FileError};
use crate::error::Error;
use crate::paths::display_safe;
use crate::protocol::{DigestAlgorithm, Entry, ErrorCode, Request, Stamp};

/// What was asked for an item in flight.
enum Sent {
    Whole(Box<Plan>),
    /// The first [`super::PROBE_LEN`] bytes of a file.
    Probe(Box<Plan>),
    /// A piece, or the digest check of a file in pieces.
    Piece,
    /// The listing of a probing run.
    List,
}

/// Request bytes an item costs in the window (its GET frame, about).
fn request_len(name: &str) -> usize {
    name.len() + 48
}

/// Works through the queue over one connection (`first`, set up in
/// `setup` if that was timed, or a new one) until nothing is left; `multi`
/// when other workers share the queue (the look-ahead is then bounded by
/// bytes, so work stays spread, and the connection's set-up time says
/// which items it takes: see [`super::schedule::SHORT_HANDSHAKE`]).
pub fn work<'p>(
    run: &Run<'p>,
    q: &Queue<'p>,
    first: Option<Connection>,
    setup: Option<Duration>,
    multi: bool,
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let mut role = match (&first, multi) {
        (Some(_), true) => Some(q.connected(setup)),
        (_, false) => Some(Role::Any),
        (None, true) => q.before_connect(),
    };
    let mut conn = first;
    // Connection failures since the last item arrived.
    let mut failures = 0u32;
    let retries = run.settings.retries;
    loop {
        if crate::interrupt::requested() {
            // Ctrl-C: nothing more is asked for; what is in line stops.
            for item in q.take_all() {
                outcomes.extend(stopped(run, item));
            }
            break;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None if q.finished() => break,
            None => match timed(|| connect(run.settings, run.limiter.as_ref())) {
                (Ok(c), took) => {
                    role.get_or_insert_with(|| q.connected(Some(took)));
                    conn.insert(c)
                }
                (Err(e), _) => {
                    failures += 1;
                    if !transient(&e, run.settings) || failures > retries {
                        return give_up(run, q, role, outcomes, &e);
                    }
                    let wait = backoff(failures - 1);
                    // The retry is announced for the item in front, so it
                    // counts for that file too (in --json).
                    let front = q.charge_next().unwrap_or_default();
                    run.announce_retry(&front, &e.to_string(), failures, wait);
                    nap(wait);
                    continue;
                }
            },
        };
        let role = role.unwrap_or(Role::Any);
        let mut in_flight: VecDeque<(Item<'p>, Sent)> = VecDeque::new();
        let Err(e) = pipeline(
            run,
            q,
            role,
            c,
            &mut in_flight,
            &mut outcomes,
            &mut failures,
            multi,
        ) else {
            break;
        };
        conn = None;
        let mut back: Vec<Item<'p>> = in_flight.into_iter().map(|(item, _)| item).collect();
        if let Some(i) = back.iter().position(|i| matches!(i, Item::List { .. })) {
            // The listing is not asked for again: the probes need none.
            back.remove(i);
            outcomes.extend(schedule::on_listing(run, q, None));
        }
        if crate::interrupt::requested() {
            let n = back.len();
            q.give_back(back, n);
            continue;
        }
        failures += 1;
        if back.is_empty() {
            continue;
        }
        let mut front = back.remove(0);
        if failures > retries + 1 {
            // The connection keeps failing without progress: stop rather
            // than retry every file in turn.
            back.insert(0, front);
            let n = back.len();
            q.give_back(back, n);
            return give_up(run, q, Some(role), outcomes, &e);
        }
        if !transient(&e, run.settings) || front.retries() >= retries {
            let n = back.len();
            q.give_back(back, n);
            outcomes.extend(fail(run, q, front, &e));
            continue;
        }
        front.charge();
        let wait = backoff(front.retries() - 1);
        run.announce_retry(front.name(), &e.to_string(), front.retries(), wait);
        back.insert(0, front);
        let n = back.len();
        // Back in line at once: another connection may take it meanwhile.
        q.give_back(back, n);
        nap(wait);
    }
    if let Some(c) = conn {
        c.quit();
    }
    // Left over only if Ctrl-C came between the last look and now.
    for item in q.leave(role.unwrap_or(Role::Any)) {
        outcomes.extend(stopped(run, item));
    }
    outcomes
}

/// `f`'s result and how long it took.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let r = f();
    (r, start.elapsed())
}

/// This worker (taking as `role`) stops for good because of `e`; if it
/// was the last one, whatever is left fails with `e`.
fn give_up<'p>(
    run: &Run<'p>,
    q: &Queue<'p>,
    role: Option<Role>,
    mut outcomes: Vec<Outcome>,
    e: &Error,
) -> Vec<Outcome> {
    for item in q.leave(role.unwrap_or(Role::Any)) {
        outcomes.extend(unreached(run, item, e));
    }
    outcomes
}

/// Ctrl-C stopped an item that was in line.
pub fn stopped<'p>(run: &Run<'p>, item: Item<'p>) -> Vec<Outcome> {
    match item {
        Item::List { .. } => Vec::new(),
        Item::Whole { task, .. } => vec![run.stopped(&task)],
        Item::Piece { file, index, .. } => {
            let r = file.settle(index, Some(PieceResult::Broken(Broken::Stopped)));
            conclude(run, &file, r).0
        }
        Item::Verify { file, .. } => conclude(run, &file, Settled::Broken(Broken::Stopped)).0,
    }
}

/// How an item broke because of `e`; `keep` says whether what it has on
/// disk is kept for a later try.
fn failed(e: &Error, keep: bool) -> Broken {
    Broken::Failed {
        why: e.to_string(),
        keep,
        unreachable: connection_level(e),
    }
}

/// An item left in line that no connection will fetch, because of `e`.
/// (It was never taken, so it is not counted as active.)
fn unreached<'p>(run: &Run<'p>, item: Item<'p>, e: &Error) -> Vec<Outcome> {
    match item {
        Item::List { .. } => Vec::new(),
        Item::Whole { task, .. } => vec![run.gave_up(&task, e)],
        Item::Piece { file, index, .. } => {
            let r = file.settle(index, Some(PieceResult::Broken(failed(e, true))));
            let (mut out, again) = conclude(run, &file, r);
            // A restart has nobody to run it either.
            for a in again {
                out.extend(unreached(run, a, e));
            }
            out
        }
        Item::Verify { file, .. } => {
            let r = Settled::Broken(failed(e, true));
            conclude(run, &file, r).0
        }
    }
}

/// An item taken from the queue failed for good because of `e`.
fn fail<'p>(run: &Run<'p>, q: &Queue<'p>, item: Item<'p>, e: &Error) -> Vec<Outcome> {
    let out = match item {
        // (Settled with the plan.)
        Item::List { .. } => return schedule::on_listing(run, q, None),
        Item::Whole { task, .. } => vec![run.gave_up(&task, e)],
        Item::Piece { file, index, .. } => {
            let r = file.settle(
                index,
                Some(PieceResult::Broken(failed(e, transient(e, run.settings)))),
            );
            finish_piece(run, q, &file, r)
        }
        Item::Verify { file, .. } => {
            let r = Settled::Broken(failed(e, transient(e, run.settings)));
            finish_piece(run, q, &file, r)
        }
    };
    q.settled();
    out
}

/// Streams items over one connection, keeping a window of requests in
/// flight so small files arrive back to back. Returns when the queue is
/// done, or with the connection's error (unanswered items left in
/// `in_flight`).
#[allow(clippy::too_many_arguments)]
fn pipeline<'p>(
    run: &Run<'p>,
    q: &Queue<'p>,
    role: Role,
    c: &mut Connection,
    in_flight: &mut VecDeque<(Item<'p>, Sent)>,
    outcomes: &mut Vec<Outcome>,
    failures: &mut u32,
    multi: bool,
) -> Result<(), Error> {
    let mut window_bytes = 0usize;
    let mut ahead = 0u64;
    loop {
        let mut sent = false;
        // Topped up in batches (see REFILL_AT).
        let refill = in_flight.len() <= REFILL_AT;
        while refill && in_flight.len() < WINDOW_REQUESTS {
            let item = if in_flight.is_empty() {
                match q.take(role) {
                    Some(i) => i,
                    None => return Ok(()),
                }
            } else {
                // (The lane's small items need no bound: the others take
                // the large ones.)
                let fits = |i: &Item| {
                    window_bytes + request_len(i.name()) <= WINDOW_BYTES
                        && (!multi
                            || (role == Role::Lane && !i.bulk())
                            || ahead + i.bytes() <= LOOKAHEAD_BYTES)
                };
                match q.take_if(role, fits) {
                    Some(i) => i,
                    None => break,
                }
            };
            let (item, request, what) = match item {
                Item::Whole { mut task, size } => match run.plan(&mut task) {
                    // (A probe that resumes what it had asks for the rest.)
                    Ok(plan) if task.probe && plan.offset == 0 => {
                        let r = Request::Get {
                            path: plan.name.clone(),
                            offset: 0,
                            if_unchanged: None,
                            len: Some(PROBE_LEN),
                        };
                        (Item::Whole { task, size }, r, Sent::Probe(Box::new(plan)))
                    }
                    Ok(plan) => {
                        let r = Run::request(&plan);
                        (Item::Whole { task, size }, r, Sent::Whole(Box::new(plan)))
                    }
                    Err(why) => {
                        outcomes.push(report(run.progress, &task.name, Err(why), task.retries));
                        q.settled();
                        continue;
                    }
                },
                Item::Piece {
                    ref file, index, ..
                } if file.is_broken() => {
                    let r = file.settle(index, None);
                    let file = Arc::clone(file);
                    outcomes.extend(finish_piece(run, q, &file, r));
                    q.settled();
                    continue;
                }
                Item::Piece {
                    file,
                    index,
                    retries,
                    again,
                } => {
                    let r = file.request(index);
                    let item = Item::Piece {
                        file,
                        index,
                        retries,
                        again,
                    };
                    (item, r, Sent::Piece)
                }
                Item::Verify {
                    file,
                    expect,
                    retries,
                } => {
                    let r = file.verify_request();
                    let item = Item::Verify {
                        file,
                        expect,
                        retries,
                    };
                    (item, r, Sent::Piece)
                }
                Item::List { folders, recursive } => {
                    // Every folder but the last is sent here; the last as
                    // the item's request, like any other.
                    let list = |path: &String| Request::List {
                        path: path.clone(),
                        recursive,
                        digests: false,
                    };
                    for f in &folders[..folders.len().saturating_sub(1)] {
                        c.send(&list(f))?;
                    }
                    let r = list(folders.last().unwrap_or(&String::new()));
                    (Item::List { folders, recursive }, r, Sent::List)
                }
            };
            window_bytes += request_len(item.name());
            ahead += item.bytes();
            // In line before it is sent: if sending fails, it is retried
            // with the others rather than lost.
            in_flight.push_back((item, what));
            sent = true;
            c.send(&request)?;
        }
        if sent {
            c.flush()?;
        }
        let Some((item, what)) = in_flight.front_mut() else {
            continue;
        };
        let got = match (item, what) {
            (Item::Whole { task, .. }, Sent::Whole(plan)) => {
                Got::Whole(run.receive(c, plan, &mut task.kept)?)
            }
            (Item::Whole { task, .. }, Sent::Probe(plan)) => {
                Got::Whole(run.receive_probe(c, plan, &mut task.kept)?)
            }
            (Item::List { folders, .. }, Sent::List) => {
                Got::List(receive_listing(c, folders.len())?)
            }
            (Item::List { .. }, _) | (_, Sent::List) => unreachable!("a listing is sent as one"),
            (_, Sent::Probe(_)) => unreachable!("only a whole file is probed"),
            (Item::Piece { .. }, Sent::Whole(_)) => unreachable!("a piece is sent as one"),
            (Item::Piece { file, index, .. }, Sent::Piece) => {
                Got::Piece(receive_piece(c, file, *index)?)
            }
            (Item::Verify { file, expect, .. }, Sent::Piece) => {
                Got::Verify(receive_digest(c, file, expect)?)
            }
            (Item::Verify { .. }, Sent::Whole(_)) => unreachable!("a check is sent as one"),
            (Item::Whole { .. }, Sent::Piece) => unreachable!("a whole file is sent as one"),
        };
        let (item, what) = in_flight.pop_front().expect("front exists");
        window_bytes -= request_len(item.name());
        ahead -= item.bytes();
        match (item, what, got) {
            (Item::Whole { task, size }, Sent::Whole(plan) | Sent::Probe(plan), Got::Whole(r)) => {
                if matches!(r, Received::Arrived(_) | Received::Head(_)) {
                    *failures = 0;
                }
                outcomes.extend(whole_arrived(run, q, *task, size, &plan, r));
            }
            (Item::List { .. }, _, Got::List(entries)) => {
                let stamps = stamps_of(&entries);
                outcomes.extend(schedule::on_listing(run, q, Some(stamps)));
            }
            (
                Item::Piece {
                    file,
                    index,
                    retries,
                    again,
                },
                _,
                Got::Piece(r),
            ) => {
                if matches!(r, PieceResult::Done(_)) {
                    *failures = 0;
                }
                if let (PieceResult::Corrupt(why), false) = (&r, again) {
                    // Fetch that piece once more before giving up the file.
                    run.progress.notice(&format!(
                        "{}: {why}; fetching that piece again",
                        display_safe(&file.name)
                    ));
                    let item = Item::Piece {
                        file,
                        index,
                        retries,
                        again: true,
                    };
                    q.give_back(vec![item], 1);
                    continue;
                }
                let r = file.settle(index, Some(r));
                outcomes.extend(finish_piece(run, q, &file, r));
                q.settled();
            }
            (Item::Verify { file, .. }, _, Got::Verify(r)) => {
                let r = file.verified(r);
                outcomes.extend(finish_piece(run, q, &file, r));
                q.settled();
            }
            _ => unreachable!("answers match their requests"),
        }
    }
}

enum Got {
    Whole(Received),
    Piece(PieceResult),
    Verify(Result<[u8; 32], String>),
    List(Vec<Entry>),
}

/// Reads the answers to `n` LISTs: every entry of the folders the server
/// listed (one it refused adds none). `Err`: the connection broke.
fn receive_listing(c: &mut Connection, n: usize) -> Result<Vec<Entry>, Error> {
    let mut all = Vec::new();
    for _ in 0..n.max(1) {
        match c.read_listing() {
            Ok(mut l) => all.append(&mut l),
            Err(Error::Remote(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(all)
}

/// Takes nothing: the answer to a GET from a file's end has no bytes.
struct NoBytes(Stamp);

impl crate::client::FileSink for NoBytes {
    fn start(&mut self, h: &crate::protocol::FileHeader) -> std::io::Result<()> {
        if h.stamp() == self.0 {
            Ok(())
        } else {
            Err(std::io::Error::other(
                "file changed on the server since it was listed",
            ))
        }
    }
    fn buffer(&mut self) -> Vec<u8> {
        Vec::new()
    }
    fn write(&mut self, _: Vec<u8>, _: usize) -> std::io::Result<()> {
        Err(std::io::Error::other("no bytes were asked for"))
    }
}

/// Asks for the whole file's digest and compares it with `expect`, what
/// the pieces in place make. `Err` inside: they do not match (or the file
/// changed); outside: the connection broke.
fn receive_digest(
    c: &mut Connection,
    file: &Segmented,
    expect: &[u8; 32],
) -> Result<Result<[u8; 32], String>, Error> {
    let size = file.stamp.size;
    Ok(
        match c.receive_file(size, None, &mut NoBytes(file.stamp))? {
            Ok(r) if r.header.offset != size => {
                Err("file changed on the server since it was listed".into())
            }
            Ok(r)
                if r.trailer.algorithm == DigestAlgorithm::Blake3 && r.trailer.digest == expect =>
            {
                Ok(*expect)
            }
            Ok(_) => Err("what an earlier run left does not match the server's file".into()),
            Err(e) => Err(match e {
                FileError::Refused(e) => e.to_string(),
                FileError::Local(e) | FileError::Abandoned(e) => e.to_string(),
            }),
        },
    )
}

/// Receives piece `i` of `file`. `Err`: the connection broke.
fn receive_piece(c: &mut Connection, file: &Segmented, i: usize) -> Result<PieceResult, Error> {
    let (offset, len) = file.pieces[i];
    let mut sink = file.sink(i);
    let got = c.receive_file(offset, Some(len), &mut sink);
    if got.is_err() {
        // What came before the break stays, for a later resume.
        sink.broke_off();
    }
    Ok(match got? {
        Ok(received) => file.check(sink, &received.trailer),
        Err(FileError::Refused(e)) if e.code == ErrorCode::SourceChanged => {
            PieceResult::Broken(Broken::Changed(e.to_string()))
        }
        Err(FileError::Refused(e)) => PieceResult::Broken(Broken::Failed {
            why: e.to_string(),
            keep: true,
            unreachable: false,
        }),
        Err(FileError::Local(e) | FileError::Abandoned(e)) => {
            PieceResult::Broken(sink.error.take().unwrap_or(Broken::Failed {
                why: e.to_string(),
                keep: true,
                unreachable: false,
            }))
        }
    })
}

/// Settles a whole file that was received (or refused), as the serial
/// download always has.
fn whole_arrived<'p>(
    run: &Run<'p>,
    q: &Queue<'p>,
    t: Task,
    size: Option<u64>,
    plan: &Plan,
    r: Received,
) -> Vec<Outcome> {
    let out = match r {
        Received::Arrived(mut a) => {
            a.retries = t.retries + u32::from(t.restarted);
            run.dest
                .complete(*a)
                .into_iter()
                .map(|r| settled(run.progress, r))
                .collect()
        }
        Received::Failed(Failure::Permanent(why)) => {
            run.dest.discard(plan);
            vec![report(run.progress, &t.name, Err(why), t.retries)]
        }
        Received::Head(head) => {
            let held = schedule::Held {
                task: t,
                plan: plan.clone(),
                head,
            };
            // Planned with the listing, which it may have to wait for.
            let Some(schedule::Held { task, plan, head }) = q.hold(held) else {
                return Vec::new();
            };
            let (items, out) = schedule::rest(run, q, task, &plan, head);
            // In line before the probe is counted done, so no worker sees
            // an empty queue in between and leaves.
            q.give_back(items, 0);
            out
        }
        Received::Unranged => {
            // A server before version 7 has no range from offset 0 of an
            // empty file. Known to be empty, it goes behind what is in
            // flight, instead of alone as a file of unknown size would
            // (one round trip each).
            let mut t = t;
            t.probe = false;
            q.give_back(
                vec![Item::Whole {
                    task: Box::new(t),
                    size: size.or(Some(0)),
                }],
                1,
            );
            return Vec::new();
        }
        Received::Failed(Failure::Corrupt(why)) => match run.corrupt(t, plan, why) {
            Ok(again) => {
                q.give_back(
                    vec![Item::Whole {
                        task: Box::new(again),
                        size,
                    }],
                    1,
                );
                return Vec::new();
            }
            Err(o) => vec![*o],
        },
    };
    q.settled();
    out
}

/// What to do once a piece settled: nothing until the file's last piece;
/// then place it, report it, or start it over whole. (The caller settles
/// the piece's place in the queue afterwards.)
fn finish_piece<'p>(
    run: &Run<'p>,
    q: &Queue<'p>,
    file: &Arc<Segmented<'p>>,
    r: Settled,
) -> Vec<Outcome> {
    let (out, again) = conclude(run, file, r);
    if !again.is_empty() {
        // New work in line before this piece is counted done, so no worker
        // sees an empty queue in between and leaves.
        q.give_back(again, 0);
    }
    out
}

/// The outcomes of a file whose pieces have all settled, and the item that
/// starts it over when it changed on the server.
pub fn conclude<'p>(
    run: &Run<'p>,
    file: &Arc<Segmented<'p>>,
    r: Settled,
) -> (Vec<Outcome>, Vec<Item<'p>>) {
    match r {
        Settled::Open => (Vec::new(), Vec::new()),
        Settled::Verify(expect) => {
            let check = Item::Verify {
                file: Arc::clone(file),
                expect,
                retries: 0,
            };
            (Vec::new(), vec![check])
        }
        // Ctrl-C: what is in place stays for the next run.
        Settled::Broken(Broken::Stopped) => {
            let task = Task {
                name: file.name.clone(),
                retries: 0,
                restarted: false,
                first: None,
                kept: file.got(),
                probe: false,
            };
            (vec![run.stopped(&task)], Vec::new())
        }
        Settled::Arrived(a) => (
            run.dest
                .complete(*a)
                .into_iter()
                .map(|r| settled(run.progress, r))
                .collect(),
            Vec::new(),
        ),
        Settled::Broken(Broken::Failed {
            why,
            keep,
            unreachable,
        }) => {
            if !keep {
                run.dest.discard(&file.plan);
            }
            let mut o = report(run.progress, &file.name, Err(why), 0);
            o.unreachable = unreachable;
            (vec![o], Vec::new())
        }
        Settled::Broken(Broken::Changed(why)) => {
            run.dest.discard(&file.plan);
            run.progress.notice(&format!(
                "{}: {why}; downloading it again from the start",
                display_safe(&file.name)
            ));
            let task = Task {
                name: file.name.clone(),
                retries: 0,
                restarted: true,
                first: None,
                kept: 0,
                probe: false,
            };
            (
                Vec::new(),
                vec![Item::Whole {
                    task: Box::new(task),
                    size: None,
                }],
            )
        }
    }
}
