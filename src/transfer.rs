//! How `fxfer get` runs: serially over one connection with a window of
//! pipelined requests, or in parallel on a rayon pool with one connection
//! per file. Each file is written under a temporary name and renamed into
//! place only once it is complete, so a failed download never leaves a
//! file under its final name. One outcome per file; failures do not stop
//! the others.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use rayon::prelude::*;

use crate::client::{Connection, FileError, FileSink};
use crate::config::GetSettings;
use crate::error::{describe_io, Error};
use crate::human;
use crate::paths::{display_safe, local_target};
use crate::progress::{FileBar, Progress};
use crate::protocol::{ErrorCode, FileHeader, Request};
use crate::select;

/// Suffix of a download in progress.
pub const PART_SUFFIX: &str = ".fxfer-part";
/// Most GET requests in flight on one connection.
const WINDOW_REQUESTS: usize = 64;
/// Most request bytes in flight: far below any socket buffer, so writing
/// requests can never block while the server waits for us to read.
const WINDOW_BYTES: usize = 32 * 1024;

/// A file that arrived.
#[derive(Debug, Clone)]
pub struct Done {
    pub bytes: u64,
    pub secs: f64,
    pub path: PathBuf,
}

/// What happened to one requested name.
#[derive(Debug)]
pub struct Outcome {
    pub name: String,
    pub result: Result<Done, String>,
    /// The failure was reaching the server at all (for the exit code).
    pub unreachable: bool,
}

/// The result of a whole `get`.
#[derive(Debug)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
    pub secs: f64,
}

impl Report {
    pub fn failed(&self) -> usize {
        self.outcomes.iter().filter(|o| o.result.is_err()).count()
    }

    /// Every file failed because the server could not be reached.
    pub fn unreachable(&self) -> bool {
        !self.outcomes.is_empty() && self.outcomes.iter().all(|o| o.unreachable)
    }

    pub fn bytes(&self) -> u64 {
        self.outcomes
            .iter()
            .filter_map(|o| o.result.as_ref().ok())
            .map(|d| d.bytes)
            .sum()
    }

    /// "3 files, 1.2 MiB in 0.05s (24.0 MiB/s); 1 failed"
    pub fn summary(&self) -> String {
        let ok = self.outcomes.len() - self.failed();
        let mut s = format!(
            "{ok} file{} downloaded, {} in {:.2}s ({})",
            if ok == 1 { "" } else { "s" },
            human::size(self.bytes()),
            self.secs,
            human::rate(self.bytes(), self.secs)
        );
        if self.failed() > 0 {
            s += &format!("; {} failed", self.failed());
        }
        s
    }
}

/// Downloads what `names` select (plain names, glob patterns, folders
/// with `-r`) as `settings` say. Only a failure that stops the whole job (no
/// download folder, no server for a serial run) is an `Err`.
pub fn get(settings: &GetSettings, names: &[String], progress: &Progress) -> Result<Report, Error> {
    let started = Instant::now();
    let dir = &settings.download_dir;
    fs::create_dir_all(dir).map_err(|e| {
        Error::io(
            format!("cannot create download folder {}", dir.display()),
            e,
        )
    })?;
    let dest = Dest::new(
        fs::canonicalize(dir)
            .map_err(|e| Error::io(format!("cannot open download folder {}", dir.display()), e))?,
    );

    // Patterns and folders need the server's listing; a serial run then
    // keeps using the same connection.
    let mut conn = None;
    let listing = if select::needs_listing(names, settings.recursive) {
        let mut c = Connection::connect(&settings.server)?;
        let l = c.list("", true)?;
        conn = Some(c);
        Some(l)
    } else {
        None
    };
    let selection = select::expand(names, settings.recursive, listing.as_deref());
    let mut outcomes: Vec<Outcome> = selection
        .errors
        .iter()
        .map(|(name, why)| report(progress, name, Err(why.clone()), false))
        .collect();
    let files: Vec<&str> = selection.files.iter().map(String::as_str).collect();
    progress.set_files(files.len());
    if !files.is_empty() {
        if settings.parallel && files.len() > 1 {
            if let Some(c) = conn.take() {
                c.quit();
            }
            outcomes.extend(parallel(settings, &dest, &files, progress)?);
        } else {
            let c = match conn.take() {
                Some(c) => c,
                None => Connection::connect(&settings.server)?,
            };
            outcomes.extend(serial(c, &dest, &files, progress)?);
        }
    } else if let Some(c) = conn.take() {
        c.quit();
    }
    Ok(Report {
        outcomes,
        secs: started.elapsed().as_secs_f64(),
    })
}

fn serial(
    mut conn: Connection,
    dest: &Dest,
    names: &[&str],
    progress: &Progress,
) -> Result<Vec<Outcome>, Error> {
    let mut outcomes = Vec::with_capacity(names.len());
    let mut sent = 0;
    let mut in_flight_bytes = 0usize;
    let request_len = |name: &str| name.len() + 15;
    for (i, name) in names.iter().enumerate() {
        // Keep the window full: requests for the next files go out before
        // this one is read, so small files stream back to back.
        let before = sent;
        while sent < names.len()
            && sent - i < WINDOW_REQUESTS
            && (sent == i || in_flight_bytes + request_len(names[sent]) <= WINDOW_BYTES)
        {
            conn.send(&Request::Get {
                path: names[sent].to_string(),
                offset: 0,
            })?;
            in_flight_bytes += request_len(names[sent]);
            sent += 1;
        }
        if sent == names.len() && before < sent {
            // Last batch: say goodbye in the same write.
            conn.send(&Request::Quit)?;
        }
        if sent > before {
            conn.flush()?;
        }
        let result = receive(&mut conn, dest, name, progress);
        in_flight_bytes -= request_len(name);
        match result {
            Ok(r) => outcomes.push(report(progress, name, r, false)),
            Err(e) => {
                // The connection is gone: this file and the rest fail.
                let why = e.to_string();
                outcomes.push(report(progress, name, Err(why.clone()), false));
                for rest in &names[i + 1..] {
                    outcomes.push(report(
                        progress,
                        rest,
                        Err(format!("not downloaded: {why}")),
                        false,
                    ));
                }
                return Ok(outcomes);
            }
        }
    }
    Ok(outcomes)
}

fn parallel(
    settings: &GetSettings,
    dest: &Dest,
    names: &[&str],
    progress: &Progress,
) -> Result<Vec<Outcome>, Error> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(settings.jobs.min(names.len()))
        .thread_name(|i| format!("get-{i}"))
        .build()
        .map_err(|e| Error::io("cannot start download threads", io::Error::other(e)))?;
    Ok(pool.install(|| {
        names
            .par_iter()
            .map(|name| {
                let one = || -> Result<Result<Done, String>, Error> {
                    let mut conn = Connection::connect(&settings.server)?;
                    conn.send(&Request::Get {
                        path: name.to_string(),
                        offset: 0,
                    })?;
                    conn.send(&Request::Quit)?;
                    conn.flush()?;
                    receive(&mut conn, dest, name, progress)
                };
                match one() {
                    Ok(r) => report(progress, name, r, false),
                    Err(e) => {
                        let unreachable = matches!(e, Error::Connect { .. });
                        report(progress, name, Err(e.to_string()), unreachable)
                    }
                }
            })
            .collect()
    }))
}

fn report(progress: &Progress, name: &str, r: Result<Done, String>, unreachable: bool) -> Outcome {
    match &r {
        Ok(d) => progress.file_done(name, d.bytes, d.secs),
        Err(why) => progress.file_failed(name, why),
    }
    Outcome {
        name: name.to_string(),
        result: r,
        unreachable,
    }
}

/// Receives the next file on `conn` into `dir`. `Ok(Err(_))`: this file
/// failed; `Err(_)`: the connection failed.
fn receive(
    conn: &mut Connection,
    dest: &Dest,
    name: &str,
    progress: &Progress,
) -> Result<Result<Done, String>, Error> {
    let started = Instant::now();
    let mut sink = LocalFile {
        dest,
        name,
        progress,
        target: None,
        file: None,
        bar: None,
    };
    let result = conn.receive_file(0, &mut sink);
    let part = sink.part_path();
    let file = sink.file.take();
    drop(sink.bar.take());
    let outcome = match result {
        Ok(Ok(received)) => {
            drop(file);
            // Always Some after a successful start.
            let target = sink.target.clone().unwrap_or_default();
            match fs::rename(part.as_deref().unwrap_or(Path::new("")), &target) {
                Ok(()) => Ok(Ok(Done {
                    bytes: received.header.body_len(),
                    secs: started.elapsed().as_secs_f64(),
                    path: target,
                })),
                Err(e) => Ok(Err(format!(
                    "cannot move download into place at {}: {}",
                    target.display(),
                    describe_io(&e)
                ))),
            }
        }
        Ok(Err(FileError::Refused(e))) if e.code == ErrorCode::NotRegularFile => {
            Ok(Err(format!("{e} (use -r to download folders)")))
        }
        Ok(Err(FileError::Refused(e))) => Ok(Err(e.to_string())),
        Ok(Err(FileError::Local(e))) => Ok(Err(e.to_string())),
        Err(e) => Err(e),
    };
    if !matches!(outcome, Ok(Ok(_))) {
        if let Some(p) = part {
            let _ = fs::remove_file(p);
        }
    }
    outcome
}

/// The download folder, and the subfolders already made and checked, so
/// many files in one folder cost no repeated mkdir/realpath calls.
pub struct Dest {
    /// Canonical download folder.
    root: PathBuf,
    checked: Mutex<HashSet<PathBuf>>,
}

impl Dest {
    fn new(root: PathBuf) -> Dest {
        Dest {
            root,
            checked: Mutex::new(HashSet::new()),
        }
    }

    /// Makes sure `parent` exists and really lies inside the download
    /// folder: a symlink planted there must not lead us out.
    fn prepare(&self, parent: &Path) -> io::Result<()> {
        if parent == self.root || self.checked.lock().unwrap().contains(parent) {
            return Ok(());
        }
        let fail = |what: &str, e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("{what} {}: {}", parent.display(), describe_io(&e)),
            )
        };
        fs::create_dir_all(parent).map_err(|e| fail("cannot create folder", e))?;
        let real = fs::canonicalize(parent).map_err(|e| fail("cannot open folder", e))?;
        if !real.starts_with(&self.root) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "refusing to write through {}: it leads outside the download folder",
                    parent.display()
                ),
            ));
        }
        self.checked.lock().unwrap().insert(parent.to_path_buf());
        Ok(())
    }
}

/// Writes one download to `NAME.fxfer-part` beside its final place.
struct LocalFile<'a> {
    dest: &'a Dest,
    name: &'a str,
    progress: &'a Progress,
    target: Option<PathBuf>,
    file: Option<File>,
    bar: Option<FileBar>,
}

impl LocalFile<'_> {
    fn part_path(&self) -> Option<PathBuf> {
        let t = self.target.as_ref()?;
        let mut s = t.as_os_str().to_owned();
        s.push(PART_SUFFIX);
        Some(PathBuf::from(s))
    }

    fn fail(&self, what: &str, path: &Path, e: &io::Error) -> io::Error {
        io::Error::new(
            e.kind(),
            format!("{what} {}: {}", path.display(), describe_io(e)),
        )
    }
}

impl FileSink for LocalFile<'_> {
    fn start(&mut self, header: &FileHeader) -> io::Result<()> {
        let target = local_target(&self.dest.root, self.name).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "refusing to save {:?}: {e}",
                    display_safe(self.name).into_owned()
                ),
            )
        })?;
        let parent = target.parent().unwrap_or(self.dest.root.as_path());
        self.dest.prepare(parent)?;
        self.target = Some(target);
        let part = self.part_path().unwrap_or_default();
        // create_new never follows whatever sits at the temporary name; a
        // leftover there is removed (not followed) and the create retried.
        let create = || OpenOptions::new().write(true).create_new(true).open(&part);
        let file = match create() {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                fs::remove_file(&part).map_err(|e| self.fail("cannot replace", &part, &e))?;
                create()
            }
            other => other,
        }
        .map_err(|e| self.fail("cannot create", &part, &e))?;
        self.file = Some(file);
        self.bar = Some(self.progress.start_file(self.name, header.body_len()));
        Ok(())
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let Some(f) = self.file.as_mut() else {
            return Err(io::Error::other("download file is not open"));
        };
        if let Err(e) = f.write_all(data) {
            let part = self.part_path().unwrap_or_default();
            return Err(self.fail("cannot write", &part, &e));
        }
        if let Some(b) = &self.bar {
            b.inc(data.len() as u64);
        }
        self.progress.add_bytes(data.len() as u64);
        Ok(())
    }
}
