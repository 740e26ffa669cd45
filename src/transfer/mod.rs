//! How `fxfer get` runs: serially over one connection with a window of
//! pipelined requests, or in parallel over several kept-alive connections
//! that share one queue of files and pieces of large files (`schedule`,
//! `worker`, `segmented`). Each file is written under a temporary name,
//! verified against the server's BLAKE3 digest, made durable and only then
//! renamed into place, so a failed download never leaves a file under its
//! final name. Transient failures are retried with backoff, resuming from
//! the partial data; one outcome per file; failures do not stop the others.

mod commit;
mod folder;
mod local;
mod meta;
mod mirror;
mod schedule;
mod segmented;
mod settler;
mod stream;
mod sync;
mod worker;

pub use stream::to_stdout;

pub use folder::{note_name, part_name, PART_SUFFIX, RESUME_SUFFIX};
pub use local::{hex, partial_len, Placed};
pub use mirror::Removed;
pub use sync::Compare;

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::{Connection, FileError};
use crate::config::{GetSettings, Output};
use crate::error::Error;
use crate::human;
use crate::progress::Progress;
use crate::protocol::{Entry, EntryKind, ErrorCode, ProtocolError, Request, Stamp};
use crate::ratelimit::RateLimiter;
use crate::select;
use crate::transport::Wire;
use local::{Dest, Failure, LocalFile, Plan};
use sync::{Listing, Verdict};

/// Most GET requests in flight on one connection.
const WINDOW_REQUESTS: usize = 96;
/// Most request bytes in flight: far below any socket buffer, so writing
/// requests can never block while the server waits for us to read.
const WINDOW_BYTES: usize = 32 * 1024;
/// The window is topped up only once this few requests are left in it, so
/// requests leave in batches of 32 (one write, one TLS record, one wake-up
/// of the server for all of them) rather than one per answer, and never
/// fewer than 64 are in flight while there are more to ask for (what a
/// long round trip needs to stay busy).
const REFILL_AT: usize = WINDOW_REQUESTS - 32;

/// A file that is in place (or was left alone with --no-clobber).
#[derive(Debug, Clone)]
pub struct Done {
    /// Bytes transferred this time.
    pub bytes: u64,
    pub secs: f64,
    pub path: PathBuf,
    /// BLAKE3 of the whole file, as verified (`None` when skipped).
    pub digest: Option<[u8; 32]>,
    /// Where this transfer started (0 unless resumed).
    pub resumed_from: u64,
    /// Existing file kept because of --no-clobber.
    pub skipped: bool,
    /// The local copy already was the server's version; nothing was sent.
    pub unchanged: bool,
    /// A dry run: would be fetched (nothing was).
    pub planned: bool,
}

impl Done {
    /// Nothing transferred for `path`: kept as it is, or only planned.
    fn kept(path: PathBuf) -> Done {
        Done {
            bytes: 0,
            secs: 0.0,
            path,
            digest: None,
            resumed_from: 0,
            skipped: false,
            unchanged: false,
            planned: false,
        }
    }

    /// The status word of reports: ok, skipped, unchanged, would_fetch.
    pub fn status(&self) -> &'static str {
        if self.planned {
            "would_fetch"
        } else if self.unchanged {
            "unchanged"
        } else if self.skipped {
            "skipped"
        } else {
            "ok"
        }
    }
}

/// What happened to one requested name.
#[derive(Debug)]
pub struct Outcome {
    pub name: String,
    pub result: Result<Done, String>,
    /// The failure was the connection (refused, lost, timed out, protocol
    /// broken), not this file (for the exit code).
    pub unreachable: bool,
    /// How many times it was tried again.
    pub retries: u32,
    /// Bytes that arrived this run and stay on disk in a partial file, for
    /// a file that did not finish (interrupted, or the connection failed).
    pub kept: u64,
}

/// The result of a whole `get`.
#[derive(Debug)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
    pub secs: f64,
    /// Ctrl-C stopped the run.
    pub interrupted: bool,
    /// Retries of the listing that patterns and folders needed (not
    /// charged to any one file).
    pub listing_retries: u32,
    /// Removed by --delete (in a dry run: what would be).
    pub deleted: Vec<Removed>,
    pub dry_run: bool,
}

impl Report {
    pub fn failed(&self) -> usize {
        self.outcomes.iter().filter(|o| o.result.is_err()).count()
    }

    /// Every file failed because of the connection, not the files.
    pub fn unreachable(&self) -> bool {
        !self.outcomes.is_empty() && self.outcomes.iter().all(|o| o.unreachable)
    }

    pub fn skipped(&self) -> usize {
        self.count("skipped")
    }

    pub fn unchanged(&self) -> usize {
        self.count("unchanged")
    }

    /// Files a dry run would fetch.
    pub fn planned(&self) -> usize {
        self.count("would_fetch")
    }

    /// Files that arrived (status ok).
    pub fn fetched(&self) -> usize {
        self.count("ok")
    }

    fn count(&self, status: &str) -> usize {
        self.outcomes
            .iter()
            .filter(|o| o.result.as_ref().is_ok_and(|d| d.status() == status))
            .count()
    }

    /// Bytes that arrived and were kept: whole files, and the partial
    /// files left to resume.
    /// Every retry announced: the files' and the listing's.
    pub fn retries(&self) -> u32 {
        self.listing_retries + self.outcomes.iter().map(|o| o.retries).sum::<u32>()
    }

    pub fn bytes(&self) -> u64 {
        self.outcomes
            .iter()
            .map(|o| o.result.as_ref().map_or(o.kept, |d| d.bytes))
            .sum()
    }

    /// After Ctrl-C: what was kept, and how to go on.
    pub fn interrupted_message(&self) -> String {
        let done = self.outcomes.len() - self.failed() - self.skipped();
        let partial: Vec<&str> = self
            .outcomes
            .iter()
            .filter(|o| o.kept > 0)
            .map(|o| o.name.as_str())
            .collect();
        if done == 0 && partial.is_empty() {
            return "interrupted before any file arrived; nothing was kept".into();
        }
        let mut s = format!(
            "interrupted: kept {done} finished file{}",
            if done == 1 { "" } else { "s" }
        );
        if !partial.is_empty() {
            let shown: Vec<String> = partial
                .iter()
                .take(3)
                .map(|n| crate::paths::display_safe(n).into_owned())
                .collect();
            s += &format!(" and the partial download of {}", shown.join(", "));
            if partial.len() > 3 {
                s += &format!(" and {} more", partial.len() - 3);
            }
        }
        s += &format!(
            " ({} in all); run the same command again to resume",
            human::size(self.bytes())
        );
        s
    }

    /// "3 files, 1.2 MiB in 0.05s (24.0 MiB/s); 1 failed"
    pub fn summary(&self) -> String {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        let mut s = if self.dry_run {
            let n = self.planned();
            format!("dry run, nothing changed: {n} file{} to fetch", plural(n))
        } else {
            let ok = self.fetched();
            format!(
                "{ok} file{} downloaded, {} in {:.2}s ({})",
                plural(ok),
                human::size(self.bytes()),
                self.secs,
                human::rate(self.bytes(), self.secs)
            )
        };
        if self.unchanged() > 0 {
            s += &format!("; {} unchanged", self.unchanged());
        }
        if self.skipped() > 0 {
            s += &format!("; {} skipped (already there)", self.skipped());
        }
        if !self.deleted.is_empty() {
            let n = self.deleted.len();
            s += &format!(
                "; {n} {}",
                if self.dry_run { "to delete" } else { "deleted" }
            );
        }
        let stopped = self
            .outcomes
            .iter()
            .filter(|o| o.result.as_ref().is_err_and(|e| e.starts_with(INTERRUPTED)))
            .count();
        if self.failed() > stopped {
            s += &format!("; {} failed", self.failed() - stopped);
        }
        if stopped > 0 {
            s += &format!("; {stopped} not finished (interrupted)");
        }
        s
    }
}

/// The error of a file that Ctrl-C stopped.
pub const INTERRUPTED: &str = "interrupted";

/// Downloads what `names` select (plain names, glob patterns, folders
/// with `-r`) as `settings` say. Only a failure that stops the whole job (no
/// download folder, no server for a serial run) is an `Err`.
pub fn get(settings: &GetSettings, names: &[String], progress: &Progress) -> Result<Report, Error> {
    let started = Instant::now();
    // Check the folder before anything goes over the network (the name an
    // output file gets is known only after expanding the names).
    let folder = match &settings.output {
        None => Some(settings.download_dir.clone()),
        Some(Output::File(p)) => Some(parent_of(p)),
        Some(Output::Stdout) => None,
    };
    let root = folder
        .as_deref()
        .map(|d| open_folder(d, settings.dry_run))
        .transpose()?;
    let limiter = settings.limit_rate.map(|r| Arc::new(RateLimiter::new(r)));

    // Patterns and folders need the server's listing, and so does comparing
    // copies already here (not for -o, which always fetches); a serial run
    // then keeps using the connection.
    let tree = select::needs_listing(names, settings.recursive);
    let mut listing_retries = 0;
    let wanted = match &root {
        Some(r) if settings.output.is_none() => {
            sync::listing(names, tree, r, settings.dry_run, settings.compare)
        }
        _ if tree => Listing::Tree { digests: false },
        _ => Listing::None,
    };
    let mut conn = None;
    let mut outcomes = Vec::new();
    let mut asked: Vec<String> = names.to_vec();
    let listing = match wanted {
        Listing::None => None,
        Listing::Tree { digests } => {
            let (c, l) = list_with_retries(
                settings,
                limiter.as_ref(),
                progress,
                &mut listing_retries,
                |c| c.list_with("", true, digests),
            )
            .inspect_err(|_| nothing_deleted(settings, progress))?;
            conn = Some(c);
            Some(l)
        }
        Listing::Names { digests } => {
            let (c, (l, refused)) = list_with_retries(
                settings,
                limiter.as_ref(),
                progress,
                &mut listing_retries,
                |c| list_names(c, names, digests),
            )?;
            conn = Some(c);
            // A name the server refused is reported once, here.
            asked.retain(|n| !refused.iter().any(|(r, _)| r == n));
            outcomes.extend(
                refused
                    .into_iter()
                    .map(|(name, why)| report(progress, &name, Err(why), 0)),
            );
            Some(l)
        }
    };
    let selection = select::expand(&asked, settings.recursive, listing.as_deref());
    if settings.output.is_some() && selection.files.len() > 1 {
        let mut shown: Vec<String> = selection.files.iter().take(3).cloned().collect();
        if selection.files.len() > 3 {
            shown.push("...".into());
        }
        return Err(Error::Usage(format!(
            "'-o' takes one file, but the names select {} ({})",
            selection.files.len(),
            shown.join(", ")
        )));
    }
    let Some(root) = root else {
        if let Some(c) = conn.take() {
            c.quit();
        }
        return match selection.files.first() {
            Some(name) if selection.errors.is_empty() => {
                stream::to_stdout(settings, name, progress).map(|mut r| {
                    r.listing_retries = listing_retries;
                    r
                })
            }
            _ => Ok(Report {
                outcomes: selection
                    .errors
                    .iter()
                    .map(|(name, why)| report(progress, name, Err(why.clone()), 0))
                    .collect(),
                secs: started.elapsed().as_secs_f64(),
                interrupted: false,
                listing_retries,
                deleted: Vec::new(),
                dry_run: false,
            }),
        };
    };
    outcomes.extend(
        selection
            .errors
            .iter()
            .map(|(name, why)| report(progress, name, Err(why.clone()), 0)),
    );
    let by_path = listing.as_deref().map(sync::by_path).unwrap_or_default();
    if settings.dry_run && !root.exists() {
        // No download folder yet (and a dry run makes none): everything
        // would be fetched, nothing is there to compare or delete.
        if let Some(c) = conn.take() {
            c.quit();
        }
        for name in &selection.files {
            let size = by_path.get(name.as_str()).map(|e| e.size);
            progress.file_kept(name, "fetch", size);
            let mut done = Done::kept(crate::paths::local_target(&root, name).unwrap_or_default());
            done.planned = true;
            outcomes.push(Outcome {
                name: name.clone(),
                result: Ok(done),
                unreachable: false,
                retries: 0,
                kept: 0,
            });
        }
        in_asked_order(&mut outcomes, names, &asked, &selection);
        return Ok(Report {
            outcomes,
            secs: started.elapsed().as_secs_f64(),
            interrupted: false,
            listing_retries,
            deleted: Vec::new(),
            dry_run: true,
        });
    }
    let mut dest =
        Dest::new(root, settings.fsync).map_err(|e| Error::io("cannot use download folder", e))?;
    if let (Some(Output::File(p)), Some(name)) = (&settings.output, selection.files.first()) {
        let file = p.file_name().map(PathBuf::from).unwrap_or_default();
        dest.rename(name, dest.root.join(file));
    }
    let mut plans = Vec::new();
    for name in &selection.files {
        let size = by_path.get(name.as_str()).map(|e| e.size);
        match dest.plan(name, settings.resume, size) {
            Err(why) => outcomes.push(report(progress, name, Err(why), 0)),
            Ok(p) if settings.no_clobber && dest.exists(&p) => {
                progress.notice(&format!(
                    "{}: skipped, {} already exists",
                    crate::paths::display_safe(name),
                    crate::paths::display_path(&p.target)
                ));
                let mut done = Done::kept(p.target);
                done.skipped = true;
                outcomes.push(Outcome {
                    name: name.clone(),
                    result: Ok(done),
                    unreachable: false,
                    retries: 0,
                    kept: 0,
                });
            }
            Ok(p) => plans.push(p),
        }
    }
    let pairs: Vec<(PathBuf, Option<&Entry>)> = plans
        .iter()
        .map(|p| (p.target.clone(), by_path.get(p.name.as_str()).copied()))
        .collect();
    let compare = if settings.output.is_some() {
        Compare::None
    } else {
        settings.compare
    };
    let verdicts = sync::compare_all(compare, &dest.root, &pairs, settings.dry_run);
    let mut todo = Vec::new();
    for (p, verdict) in plans.into_iter().zip(verdicts) {
        let entry = by_path.get(p.name.as_str());
        if verdict == Verdict::Unchanged || settings.dry_run {
            let mut done = Done::kept(p.target.clone());
            if verdict == Verdict::Unchanged {
                if !settings.dry_run {
                    // A partial download of a version we already have.
                    dest.discard_stale(&p);
                }
                done.unchanged = true;
                done.digest = entry.and_then(|e| e.digest);
                progress.file_kept(&p.name, "unchanged", None);
            } else {
                done.planned = true;
                progress.file_kept(&p.name, "fetch", entry.map(|e| e.size));
            }
            outcomes.push(Outcome {
                name: p.name,
                result: Ok(done),
                unreachable: false,
                retries: 0,
                kept: 0,
            });
            continue;
        }
        // Hash what partial downloads already hold now, not while the
        // server is waiting for us to read.
        dest.prehash(&p);
        todo.push(Task::new(p));
    }
    progress.set_files(todo.len());
    let parallel = settings.parallel && settings.jobs > 1;
    // Sizes and stamps: from the listing, or (plain names) from listing
    // the folders they are in: for the total, which counts every file from
    // the start, and for the parallel plan, which lists while its other
    // connections connect.
    let known = match &listing {
        Some(l) => Some(stamps_of(l)),
        None if !todo.is_empty() && progress.shows_totals() && !parallel => {
            match stamps_from_server(settings, limiter.as_ref(), &mut conn, &todo) {
                Ok(k) => Some(k),
                Err(e) => {
                    // Not a server we can use: the run ends here.
                    outcomes.extend(todo.drain(..).map(|t| unusable(progress, &t, &e)));
                    None
                }
            }
        }
        None => None,
    };
    if let Some(k) = &known {
        plan_totals(progress, &todo, k);
    }
    if !todo.is_empty() {
        let run = Run {
            settings,
            dest: &dest,
            progress,
            limiter,
        };
        // Small files are written by a thread of their own while the
        // connections go on receiving.
        let (ran, committed) = commit::alongside(
            &dest,
            |r| settled(progress, r),
            || {
                if parallel {
                    schedule::parallel(&run, conn.take(), todo, known)
                } else {
                    run.serial(conn.take(), todo)
                }
            },
        );
        outcomes.extend(ran);
        outcomes.extend(committed);
    } else if let Some(c) = conn.take() {
        c.quit();
    }
    outcomes.extend(dest.flush().into_iter().map(|r| settled(progress, r)));
    let interrupted = crate::interrupt::requested();
    let deleted = match &listing {
        // Ctrl-C: stop here, deleting nothing.
        Some(l) if settings.recursive && !interrupted => {
            after_placing(settings, &dest, names, l, progress, &mut outcomes)
        }
        _ => Vec::new(),
    };
    in_asked_order(&mut outcomes, names, &asked, &selection);
    Ok(Report {
        outcomes,
        secs: started.elapsed().as_secs_f64(),
        interrupted,
        listing_retries,
        deleted,
        dry_run: settings.dry_run,
    })
}

/// Puts the outcomes (which arrive as files finish) in the order the files
/// were asked for: name by name as given, and the files one name selects
/// (a folder, a pattern) in the listing's order; a name that selected
/// nothing, or that the server refused, where it was given. Reports then
/// read the same on every run, whatever the scheduling.
fn in_asked_order(
    outcomes: &mut [Outcome],
    names: &[String],
    asked: &[String],
    selection: &select::Selection,
) {
    let first: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .rev()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let given = |n: &str| first.get(n).copied().unwrap_or(usize::MAX);
    let files: HashMap<&str, (usize, usize)> = selection
        .files
        .iter()
        .zip(&selection.origin)
        .enumerate()
        .map(|(j, (f, &o))| {
            let by = asked.get(o).map_or(usize::MAX, |a| given(a));
            (f.as_str(), (by, j + 1))
        })
        .collect();
    // (One look-up per outcome, not one per comparison.)
    outcomes.sort_by_cached_key(|o| {
        files
            .get(o.name.as_str())
            .copied()
            .unwrap_or_else(|| (given(&o.name), 0))
    });
}

fn nothing_deleted(settings: &GetSettings, progress: &Progress) {
    if settings.delete {
        progress.notice("the server's listing failed, so nothing was deleted");
    }
}

/// The folders `names` mirror with -r ("" for the whole server), from the
/// complete listing; files named alongside are not mirrored.
fn mirrored_folders(names: &[String], listing: &[Entry]) -> Vec<String> {
    let mut tops: Vec<String> = Vec::new();
    for n in names {
        let n = n.trim_end_matches('/');
        let top = if select::is_root(n) {
            String::new()
        } else if listing
            .iter()
            .any(|e| e.path == n && e.kind == EntryKind::Dir)
        {
            n.to_string()
        } else {
            continue;
        };
        if !tops.contains(&top) {
            tops.push(top);
        }
    }
    tops
}

/// After the files are in place: --delete's pass, then the folders' times.
/// Returns what was (or, in a dry run, would be) deleted; failures join the
/// outcomes.
fn after_placing(
    settings: &GetSettings,
    dest: &Dest,
    names: &[String],
    listing: &[Entry],
    progress: &Progress,
    outcomes: &mut Vec<Outcome>,
) -> Vec<Removed> {
    let tops = mirrored_folders(names, listing);
    let mut deleted = Vec::new();
    if settings.delete {
        let (removed, failed) = mirror::delete_extras(&dest.root, &tops, listing, settings.dry_run);
        for r in &removed {
            let shown = format!("{}{}", r.path, if r.folder { "/" } else { "" });
            progress.file_kept(
                &shown,
                if settings.dry_run {
                    "delete"
                } else {
                    "deleted"
                },
                None,
            );
        }
        deleted = removed;
        for (path, why) in failed {
            outcomes.push(report(
                progress,
                &path,
                Err(format!("not deleted: {why}")),
                0,
            ));
        }
    }
    if !settings.dry_run {
        let under = |p: &str| {
            tops.iter()
                .any(|t| t.is_empty() || p == t || p.starts_with(&format!("{t}/")))
        };
        let folders: Vec<&Entry> = listing
            .iter()
            .filter(|e| e.kind == EntryKind::Dir && under(&e.path))
            .collect();
        for (path, why) in mirror::set_folder_times(&dest.root, &folders) {
            progress.notice(&format!(
                "{}: cannot set the folder's time: {why}",
                crate::paths::display_safe(&path)
            ));
        }
    }
    deleted
}

/// Lists each plain name on its own (pipelined: one round trip for all).
/// A name the server refuses (missing, forbidden) is returned with why.
#[allow(clippy::type_complexity)]
fn list_names(
    c: &mut Connection,
    names: &[String],
    digests: bool,
) -> Result<(Vec<Entry>, Vec<(String, String)>), Error> {
    let mut entries = Vec::new();
    let mut refused = Vec::new();
    // A bounded window of requests, like downloads: writing can never
    // block while the server waits for us to read.
    let mut queue = names.iter().peekable();
    let mut in_flight: VecDeque<&String> = VecDeque::new();
    loop {
        if in_flight.len() <= REFILL_AT {
            while in_flight.len() < WINDOW_REQUESTS {
                let Some(n) = queue.next() else { break };
                c.send(&Request::List {
                    path: n.trim_end_matches('/').to_string(),
                    recursive: false,
                    digests,
                })?;
                in_flight.push_back(n);
            }
        }
        let Some(n) = in_flight.pop_front() else {
            break;
        };
        match c.read_listing() {
            Ok(mut l) => entries.append(&mut l),
            Err(Error::Remote(e)) => refused.push((n.clone(), e.to_string())),
            Err(e) => return Err(e),
        }
    }
    Ok((entries, refused))
}

/// The folder a file given with `-o` goes into.
fn parent_of(p: &std::path::Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Checks, creates and resolves a download folder (a dry run creates
/// nothing, not even the folder).
fn open_folder(dir: &std::path::Path, dry_run: bool) -> Result<PathBuf, Error> {
    crate::paths::check_folder(dir).map_err(|why| {
        Error::io(
            format!("cannot create download folder {}", dir.display()),
            std::io::Error::new(std::io::ErrorKind::NotADirectory, why),
        )
    })?;
    if dry_run {
        return match fs::canonicalize(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::path::absolute(dir),
            other => other,
        }
        .map_err(|e| Error::io(format!("cannot open download folder {}", dir.display()), e));
    }
    fs::create_dir_all(dir).map_err(|e| {
        Error::io(
            format!("cannot create download folder {}", dir.display()),
            e,
        )
    })?;
    fs::canonicalize(dir)
        .map_err(|e| Error::io(format!("cannot open download folder {}", dir.display()), e))
}

/// Opens a connection for `get`, held to the rate limit if there is one.
fn connect(
    settings: &GetSettings,
    limiter: Option<&Arc<RateLimiter>>,
) -> Result<Connection, Error> {
    connect_within(settings, limiter, settings.limits.timeout)
}

/// [`connect`] with a time-out of its own.
fn connect_within(
    settings: &GetSettings,
    limiter: Option<&Arc<RateLimiter>>,
    timeout: Duration,
) -> Result<Connection, Error> {
    let limits = crate::client::Limits {
        timeout,
        ..settings.limits
    };
    let mut c = Connection::connect(&settings.server, &limits)?;
    if let Some(l) = limiter {
        c.limit_rate(Arc::clone(l));
    }
    Ok(c)
}

/// File stamps (size and time) by name, from a listing.
fn stamps_of(listing: &[crate::protocol::Entry]) -> HashMap<String, Stamp> {
    listing
        .iter()
        .filter(|e| e.kind == crate::protocol::EntryKind::File)
        .map(|e| {
            let stamp = Stamp {
                size: e.size,
                mtime: e.mtime,
                mtime_nanos: e.mtime_nanos,
            };
            (e.path.clone(), stamp)
        })
        .collect()
}

/// A file not fetched because the server cannot be used at all (`e`).
fn unusable(progress: &Progress, t: &Task, e: &Error) -> Outcome {
    let mut o = report(progress, &t.name, Err(e.to_string()), 0);
    o.unreachable = connection_level(e);
    o
}

/// The total covers every file whose size is known, from the start.
fn plan_totals(progress: &Progress, todo: &[Task], stamps: &HashMap<String, Stamp>) {
    progress.plan(todo.iter().filter_map(|t| {
        let size = stamps.get(t.name.as_str())?.size;
        let offset = t.first.as_ref().map_or(0, |p| p.offset);
        Some((t.name.as_str(), size.saturating_sub(offset)))
    }));
}

/// Most folders listed one by one for the sizes of plain names; more than
/// this and one recursive listing is cheaper.
const SIZE_LISTINGS: usize = 16;

/// The folders that hold `tasks`, each once, or the whole tree (`""`,
/// recursive) when they are more than [`SIZE_LISTINGS`]: what a listing
/// for their sizes and stamps asks for.
fn folders_to_list(tasks: &[Task]) -> (Vec<&str>, bool) {
    let mut folders: Vec<&str> = tasks
        .iter()
        .map(|t| t.name.rsplit_once('/').map_or("", |(dir, _)| dir))
        .collect();
    folders.sort_unstable();
    folders.dedup();
    if folders.len() > SIZE_LISTINGS {
        (vec![""], true)
    } else {
        (folders, false)
    }
}

/// The stamps of the files `todo` names, from the server's listings of
/// the folders they are in (pipelined: one round trip), over `conn` (opened
/// if needed, kept for the downloads). For the progress total and the
/// parallel plan: any failure just leaves sizes unknown.
fn stamps_from_server(
    settings: &GetSettings,
    limiter: Option<&Arc<RateLimiter>>,
    conn: &mut Option<Connection>,
    todo: &[Task],
) -> Result<HashMap<String, Stamp>, Error> {
    let (folders, recursive) = folders_to_list(todo);
    let mut stamps = HashMap::new();
    if conn.is_none() {
        // A server that cannot be reached at once is left to the downloads
        // (and their retries) rather than waited for twice.
        // Only the TCP connection gets the short time-out; the greeting
        // and the listing get the usual ones.
        match connect_within(settings, limiter, settings.limits.timeout.min(SIZE_PROBE)) {
            Ok(mut c) => {
                c.set_timeout(settings.limits.timeout);
                *conn = Some(c);
            }
            // Not a server we can use (not trusted, a wrong token, not
            // fxfer): the downloads would only find that out again, and at
            // a terminal ask the user a second time.
            Err(e) if !transient(&e, settings) => return Err(e),
            Err(_) => {}
        }
    }
    let Some(c) = conn.as_mut() else {
        return Ok(stamps);
    };
    let listed = if recursive {
        c.list("", true).map(|l| vec![Some(l)])
    } else {
        c.list_many(&folders)
    };
    match listed {
        // A folder the server refused to list leaves its files unknown.
        Ok(all) => stamps.extend(all.iter().flatten().flat_map(|l| stamps_of(l))),
        Err(Error::Remote(_)) => {}
        // Not a server we can use (not fxfer, wrong token, another
        // version): the downloads would only find that out again.
        Err(e) if !transient(&e, settings) => return Err(e),
        // The network: the downloads will connect again, and retry.
        Err(_) => *conn = None,
    }
    Ok(stamps)
}

/// How long the connection for the sizes may take to be established.
const SIZE_PROBE: Duration = Duration::from_secs(3);

/// The server's listing (for patterns, folders and comparing), retried
/// like a download when the connection fails; `attempt` counts the
/// retries.
fn list_with_retries<T>(
    settings: &GetSettings,
    limiter: Option<&Arc<RateLimiter>>,
    progress: &Progress,
    attempt: &mut u32,
    list: impl Fn(&mut Connection) -> Result<T, Error>,
) -> Result<(Connection, T), Error> {
    loop {
        let got = connect(settings, limiter).and_then(|mut c| {
            let l = list(&mut c)?;
            Ok((c, l))
        });
        match got {
            Err(e)
                if transient(&e, settings)
                    && *attempt < settings.retries
                    && !crate::interrupt::requested() =>
            {
                *attempt += 1;
                let wait = backoff(*attempt - 1);
                progress.notice(&format!(
                    "listing the server: {e}; retrying in {:.1}s ({attempt}/{})",
                    wait.as_secs_f64(),
                    settings.retries
                ));
                nap(wait);
            }
            other => return other,
        }
    }
}

/// One name to fetch, with its tries so far.
#[derive(Debug, Clone)]
struct Task {
    name: String,
    /// Retries after transient (connection) failures.
    retries: u32,
    /// Whether it was already started over after a bad digest.
    restarted: bool,
    /// The plan made while checking the names, used for the first try
    /// (later tries look at the disk again).
    first: Option<Plan>,
    /// Bytes received this run into a partial file that is kept.
    kept: u64,
    /// Its size is not known yet: ask for its first [`PROBE_LEN`] bytes
    /// (all of it, if it is small), not for all of it.
    probe: bool,
}

impl Task {
    fn new(plan: Plan) -> Task {
        Task {
            name: plan.name.clone(),
            retries: 0,
            restarted: false,
            first: Some(plan),
            kept: 0,
            probe: false,
        }
    }
}

/// What one receive came to.
enum Received {
    Arrived(Box<local::Arrived>),
    Failed(Failure),
    /// The first bytes of a file larger than the range asked for.
    Head(local::Head),
    /// The server would not send a range of it (an empty file has none):
    /// it must be asked for whole.
    Unranged,
}

/// Whether an error is worth another try: the network, not the peer's
/// nature, and only while the --max-time deadline has not passed.
fn transient(e: &Error, settings: &GetSettings) -> bool {
    if settings.limits.expired() {
        return false;
    }
    match e {
        Error::Connect { .. } => true,
        Error::Protocol { cause, .. } => {
            matches!(cause, ProtocolError::Io(_) | ProtocolError::Closed)
        }
        _ => false,
    }
}

/// Whether an error is about the connection rather than one file.
fn connection_level(e: &Error) -> bool {
    matches!(
        e,
        Error::Connect { .. }
            | Error::Protocol { .. }
            | Error::Auth { .. }
            | Error::Untrusted { .. }
    )
}

/// Exponential backoff with jitter: about 0.25 s, 0.5 s, 1 s ... capped at
/// 5 s, each between half and one and a half times that.
fn backoff(attempt: u32) -> Duration {
    let base = (250u64 << attempt.min(5)).min(5_000);
    // Cheap jitter from the clock; no need for a random number crate.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let frac = f64::from(nanos % 1000) / 1000.0;
    Duration::from_millis((base as f64 * (0.5 + frac)) as u64)
}

/// Sleeps for `wait`, or less if Ctrl-C asks us to stop.
fn nap(wait: Duration) {
    let until = Instant::now() + wait;
    while !crate::interrupt::requested() {
        let now = Instant::now();
        if now >= until {
            return;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(100)));
    }
}

/// Shared state of one `get`.
struct Run<'a> {
    settings: &'a GetSettings,
    dest: &'a Dest,
    progress: &'a Progress,
    limiter: Option<Arc<RateLimiter>>,
}

impl Run<'_> {
    fn plan(&self, t: &mut Task) -> Result<Plan, String> {
        if let Some(p) = t.first.take() {
            return Ok(p);
        }
        self.dest
            .plan(&t.name, self.settings.resume && !t.restarted, None)
    }

    fn request(plan: &Plan) -> Request {
        if plan.offset > 0 {
            log::info!(
                "{}: resuming from byte {}",
                crate::paths::display_safe(&plan.name),
                plan.offset
            );
        }
        Request::Get {
            path: plan.name.clone(),
            offset: plan.offset,
            if_unchanged: plan.stamp,
            len: None,
        }
    }

    fn announce_retry(&self, name: &str, why: &str, attempt: u32, wait: Duration) {
        self.progress.notice(&format!(
            "{}: {why}; retrying in {:.1}s ({attempt}/{})",
            crate::paths::display_safe(name),
            wait.as_secs_f64(),
            self.settings.retries
        ));
    }

    /// The connection failed for good: this file fails, keeping any
    /// partial data for the next run.
    fn gave_up(&self, t: &Task, e: &Error) -> Outcome {
        let mut o = report(self.progress, &t.name, Err(e.to_string()), t.retries);
        o.unreachable = connection_level(e);
        o.kept = t.kept;
        o
    }

    /// Ctrl-C stopped this file (or it never started); no line per file.
    fn stopped(&self, t: &Task) -> Outcome {
        self.progress.forget(&t.name);
        let why = if t.kept > 0 {
            format!("{INTERRUPTED}; partial download kept, run the same command again to resume")
        } else {
            format!("{INTERRUPTED} before it finished")
        };
        Outcome {
            name: t.name.clone(),
            result: Err(why),
            unreachable: false,
            retries: t.retries,
            kept: t.kept,
        }
    }

    /// A bad digest or changed source: start over once, then give up.
    /// Returns the task to queue again, or the final outcome.
    fn corrupt(&self, mut t: Task, plan: &Plan, why: String) -> Result<Task, Box<Outcome>> {
        self.dest.discard(plan);
        if t.restarted {
            return Err(Box::new(report(
                self.progress,
                &t.name,
                Err(why),
                t.retries + 1,
            )));
        }
        self.progress.notice(&format!(
            "{}: {why}; downloading it again from the start",
            crate::paths::display_safe(&t.name)
        ));
        t.restarted = true;
        t.probe = false;
        Ok(t)
    }

    /// One connection, one worker: files in the order given.
    fn serial(&self, first: Option<Connection>, tasks: Vec<Task>) -> Vec<Outcome> {
        let items = tasks
            .into_iter()
            .map(|task| schedule::Item::Whole {
                task: Box::new(task),
                size: None,
            })
            .collect();
        let q = schedule::Queue::new(Some(items), 1);
        worker::work(self, &q, first, None, false)
    }

    /// Receives the next file on `c` into its part. `Err`: the connection
    /// failed (the part is kept when it can be resumed, and what arrived
    /// into it this time is added to `kept`).
    fn receive(&self, c: &mut Connection, plan: &Plan, kept: &mut u64) -> Result<Received, Error> {
        receive_into(self.dest, self.progress, c, plan, None, kept)
    }

    /// Receives the answer to a probe (a ranged GET of the first
    /// [`PROBE_LEN`] bytes) of `plan`'s file, as [`Run::receive`].
    fn receive_probe(
        &self,
        c: &mut Connection,
        plan: &Plan,
        kept: &mut u64,
    ) -> Result<Received, Error> {
        receive_into(self.dest, self.progress, c, plan, Some(PROBE_LEN), kept)
    }
}

/// How much of a file of unknown size a parallel `get` asks for first: a
/// file no larger arrives whole with it; a larger one shows its size and
/// stamp, and what came stays as its start.
pub const PROBE_LEN: u64 = 256 * 1024;

/// Receives the next file on `c` into `plan`'s part, as [`Run::receive`]
/// (`range`: the answer to a ranged GET of at most that many bytes from
/// the start).
fn receive_into<W: Wire>(
    dest: &Dest,
    progress: &Progress,
    c: &mut Connection<W>,
    plan: &Plan,
    range: Option<u64>,
    kept: &mut u64,
) -> Result<Received, Error> {
    let mut sink = match range {
        Some(len) => LocalFile::probing(dest, plan, progress, len),
        None => LocalFile::new(dest, plan, progress),
    };
    let got = c.receive_file(plan.offset, range, &mut sink);
    match got {
        Ok(Ok(received)) if range.is_some() => Ok(match sink.finish_probe(&received.trailer) {
            Ok(local::Probed::Whole(a)) => Received::Arrived(a),
            Ok(local::Probed::Head(h)) => Received::Head(h),
            Err(f) => Received::Failed(f),
        }),
        Ok(Ok(received)) => Ok(match sink.finish(&received.trailer) {
            Ok(a) => Received::Arrived(Box::new(a)),
            Err(f) => Received::Failed(f),
        }),
        Ok(Err(FileError::Refused(e))) if range.is_some() && e.code == ErrorCode::BadRequest => {
            Ok(Received::Unranged)
        }
        Ok(Err(FileError::Refused(e))) => Ok(Received::Failed(match e.code {
            ErrorCode::NotRegularFile => {
                Failure::Permanent(format!("{e} (use -r to download folders)"))
            }
            ErrorCode::SourceChanged => Failure::Corrupt(e.to_string()),
            _ => Failure::Permanent(e.to_string()),
        })),
        // The partial copy changed since the resume was planned: start
        // over, like a bad digest.
        Ok(Err(FileError::Local(e)))
            if e.get_ref()
                .is_some_and(|inner| inner.is::<local::PartChanged>()) =>
        {
            Ok(Received::Failed(Failure::Corrupt(e.to_string())))
        }
        Ok(Err(FileError::Local(e) | FileError::Abandoned(e))) => {
            Ok(Received::Failed(Failure::Permanent(e.to_string())))
        }
        Err(e) => {
            if sink.keep_on_failure() {
                *kept += sink.received();
                sink.suspend();
            } else {
                *kept = 0;
                drop(sink);
                dest.discard(plan);
            }
            Err(e)
        }
    }
}

/// Receives the answer to a GET of `name` from offset 0, already sent on
/// `c`, into the download folder `dir`, and puts it in place there once it
/// verifies: what `get` does with one file, without the retries. The way
/// to drive the client's receiving side over any [`Wire`] (the fuzzer
/// does). `Ok(Err(why))`: this file failed (nothing is left under its
/// name); `Err`: the connection broke.
pub fn receive_one<W: Wire>(
    c: &mut Connection<W>,
    dir: &std::path::Path,
    name: &str,
) -> Result<Result<Placed, String>, Error> {
    let dest = Dest::new(dir.to_path_buf(), false)
        .map_err(|e| Error::io(format!("cannot open {}", dir.display()), e))?;
    let plan = match dest.plan(name, false, None) {
        Ok(p) => p,
        Err(why) => return Ok(Err(why)),
    };
    let progress = Progress::new(true, false);
    let got = receive_into(&dest, &progress, c, &plan, None, &mut 0);
    let arrived = match got {
        Ok(Received::Arrived(a)) => a,
        Ok(Received::Failed(f)) => {
            dest.discard(&plan);
            return Ok(Err(match f {
                Failure::Permanent(why) | Failure::Corrupt(why) => why,
            }));
        }
        Ok(Received::Head(_) | Received::Unranged) => {
            unreachable!("no range was asked for")
        }
        Err(e) => {
            dest.discard(&plan);
            return Err(e);
        }
    };
    let mut placed = dest.complete(*arrived);
    placed.extend(dest.flush());
    Ok(match placed.pop() {
        Some(Ok(p)) => Ok(p),
        Some(Err((_, why))) => Err(why),
        None => Err("the file was never placed".into()),
    })
}

fn report(progress: &Progress, name: &str, r: Result<Done, String>, retries: u32) -> Outcome {
    match &r {
        Ok(d) => progress.file_done(name, d.bytes, d.secs),
        Err(why) => progress.file_failed(name, why),
    }
    Outcome {
        name: name.to_string(),
        result: r,
        unreachable: false,
        retries,
        kept: 0,
    }
}

/// The outcome of a file the destination has settled (placed or failed).
fn settled(progress: &Progress, r: Result<Placed, (String, String)>) -> Outcome {
    match r {
        Ok(p) => report(
            progress,
            &p.name,
            Ok(Done {
                bytes: p.bytes,
                secs: p.secs,
                path: p.path,
                digest: Some(p.digest),
                resumed_from: p.resumed_from,
                skipped: false,
                unchanged: false,
                planned: false,
            }),
            p.retries,
        ),
        Err((name, why)) => report(progress, &name, Err(why), 0),
    }
}
