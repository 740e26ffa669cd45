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
use std::time::Instant;

use rayon::prelude::*;

use crate::client::{Connection, FileError, FileSink};
use crate::config::GetSettings;
use crate::error::{describe_io, Error};
use crate::human;
use crate::paths::{display_safe, local_target};
use crate::progress::{FileBar, Progress};
use crate::protocol::{FileHeader, Request};

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

/// Downloads `names` as `settings` say. Only a failure that stops the whole
/// job (no download folder, no server for a serial run) is an `Err`.
pub fn get(settings: &GetSettings, names: &[String], progress: &Progress) -> Result<Report, Error> {
    let started = Instant::now();
    let mut seen = HashSet::new();
    let names: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| seen.insert(*n))
        .collect();
    let dir = &settings.download_dir;
    fs::create_dir_all(dir).map_err(|e| {
        Error::io(
            format!("cannot create download folder {}", dir.display()),
            e,
        )
    })?;
    let dir = fs::canonicalize(dir)
        .map_err(|e| Error::io(format!("cannot open download folder {}", dir.display()), e))?;

    let outcomes = if settings.parallel && names.len() > 1 {
        parallel(settings, &dir, &names, progress)?
    } else {
        serial(settings, &dir, &names, progress)?
    };
    Ok(Report {
        outcomes,
        secs: started.elapsed().as_secs_f64(),
    })
}

fn serial(
    settings: &GetSettings,
    dir: &Path,
    names: &[&str],
    progress: &Progress,
) -> Result<Vec<Outcome>, Error> {
    let mut conn = Connection::connect(&settings.server)?;
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
        let result = receive(&mut conn, dir, name, progress);
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
    dir: &Path,
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
                    receive(&mut conn, dir, name, progress)
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
    dir: &Path,
    name: &str,
    progress: &Progress,
) -> Result<Result<Done, String>, Error> {
    let started = Instant::now();
    let mut sink = LocalFile {
        dir,
        name,
        progress,
        target: None,
        file: None,
        bar: None,
    };
    let result = conn.receive_file(&mut sink);
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

/// Writes one download to `NAME.fxfer-part` beside its final place.
struct LocalFile<'a> {
    dir: &'a Path,
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
        let target = local_target(self.dir, self.name).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "refusing to save {:?}: {e}",
                    display_safe(self.name).into_owned()
                ),
            )
        })?;
        let parent = target.parent().unwrap_or(self.dir);
        fs::create_dir_all(parent).map_err(|e| self.fail("cannot create folder", parent, &e))?;
        // A symlink planted in the download folder must not lead us out.
        let real_parent =
            fs::canonicalize(parent).map_err(|e| self.fail("cannot open folder", parent, &e))?;
        if !real_parent.starts_with(self.dir) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "refusing to write through {}: it leads outside the download folder",
                    parent.display()
                ),
            ));
        }
        if target.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} is a folder", target.display()),
            ));
        }
        self.target = Some(target);
        let part = self.part_path().unwrap_or_default();
        // Never follow whatever sits at the temporary name.
        match fs::remove_file(&part) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(self.fail("cannot replace", &part, &e))
            }
            _ => {}
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&part)
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
