//! `fxfer get -o - NAME`: one file's bytes to stdout as they arrive, for
//! pipes such as `fxfer get -o - x.tar | tar x`. The bytes are hashed on
//! the way and checked against the server's digest at the end; since they
//! are already out, a mismatch can only be reported (an error and a
//! non-zero exit), not taken back. A broken connection resumes where the
//! output stopped, if the file did not change meanwhile.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::Instant;

use crate::client::{FileError, FileSink, CHUNK};
use crate::config::GetSettings;
use crate::error::Error;
use crate::progress::{FileBar, Progress};
use crate::protocol::{FileHeader, Request, Stamp};
use crate::ratelimit::RateLimiter;

use super::{backoff, connect, nap, transient, Done, Outcome, Report, INTERRUPTED};

/// What happened to the output.
struct StdoutSink<'a> {
    progress: &'a Progress,
    name: &'a str,
    out: io::StdoutLock<'static>,
    hasher: blake3::Hasher,
    /// Bytes written to stdout so far (the offset of a resume).
    written: u64,
    /// The version of the file being written (for resuming).
    stamp: Option<Stamp>,
    bar: Option<FileBar<'a>>,
    buf: Option<Vec<u8>>,
    /// The reader of our stdout went away: nothing more is wanted.
    closed: bool,
}

impl FileSink for StdoutSink<'_> {
    fn start(&mut self, header: &FileHeader) -> io::Result<()> {
        if header.offset != self.written {
            // The server sends it whole: it changed since we started, and
            // what went out cannot be called back.
            return Err(io::Error::other(
                "the file changed on the server while it was being written to stdout; \
                 the output is incomplete",
            ));
        }
        self.stamp = Some(header.stamp());
        self.bar = Some(self.progress.start_file(self.name, header.body_len()));
        Ok(())
    }

    fn buffer(&mut self) -> Vec<u8> {
        self.buf.take().unwrap_or_else(|| vec![0; CHUNK])
    }

    fn write(&mut self, buf: Vec<u8>, len: usize) -> io::Result<()> {
        let r = self.out.write_all(&buf[..len]);
        self.buf = Some(buf);
        if let Err(e) = r {
            self.closed = e.kind() == io::ErrorKind::BrokenPipe;
            return Err(io::Error::new(
                e.kind(),
                format!("cannot write to stdout: {}", crate::error::describe_io(&e)),
            ));
        }
        self.hasher
            .update(&self.buf.as_ref().expect("just put back")[..len]);
        self.written += len as u64;
        if let Some(b) = &mut self.bar {
            b.inc(len as u64);
        }
        Ok(())
    }

    fn wants_rest(&self) -> bool {
        false
    }
}

/// Writes the one file `name` to stdout; retries resume from what was
/// written. The report has one outcome.
pub fn to_stdout(settings: &GetSettings, name: &str, progress: &Progress) -> Result<Report, Error> {
    let started = Instant::now();
    let limiter = settings.limit_rate.map(|r| Arc::new(RateLimiter::new(r)));
    progress.set_files(1);
    let mut sink = StdoutSink {
        progress,
        name,
        out: io::stdout().lock(),
        hasher: blake3::Hasher::new(),
        written: 0,
        stamp: None,
        bar: None,
        buf: None,
        closed: false,
    };
    let mut retries = 0;
    let mut unreachable = false;
    // Ok(None): the reader of stdout went away.
    let result: Result<Option<[u8; 32]>, String> = loop {
        let attempt = connect(settings, limiter.as_ref()).and_then(|mut c| {
            c.send(&Request::Get {
                path: name.to_string(),
                offset: sink.written,
                if_unchanged: sink.stamp,
                len: None,
            })?;
            c.send(&Request::Quit)?;
            c.flush()?;
            c.receive_file(sink.written, None, &mut sink)
        });
        drop(sink.bar.take());
        match attempt {
            Ok(Ok(got)) => {
                let ours = *sink.hasher.finalize().as_bytes();
                break if got.trailer.digest == ours {
                    Ok(Some(ours))
                } else {
                    Err(format!(
                        "BLAKE3 digest mismatch: the {} bytes written to stdout are not what \
                         the server has (expected {}, got {})",
                        sink.written,
                        super::hex(&got.trailer.digest),
                        super::hex(&ours)
                    ))
                };
            }
            // The reader went away (`| head -c 100`): it has what it wanted.
            Ok(Err(FileError::Abandoned(_))) if sink.closed => break Ok(None),
            Ok(Err(FileError::Refused(e))) => break Err(e.to_string()),
            Ok(Err(FileError::Local(e) | FileError::Abandoned(e))) => break Err(e.to_string()),
            Err(_) if crate::interrupt::requested() => {
                break Err(format!(
                    "{INTERRUPTED} after {} bytes were written to stdout",
                    sink.written
                ))
            }
            Err(e) if transient(&e, settings) && retries < settings.retries => {
                retries += 1;
                let wait = backoff(retries - 1);
                progress.notice(&format!(
                    "{}: {e}; retrying in {:.1}s ({retries}/{}), from byte {}",
                    crate::paths::display_safe(name),
                    wait.as_secs_f64(),
                    settings.retries,
                    sink.written
                ));
                nap(wait);
            }
            Err(e) => {
                unreachable = super::connection_level(&e);
                break Err(e.to_string());
            }
        }
    };
    let _ = sink.out.flush();
    let secs = started.elapsed().as_secs_f64();
    let outcome = match result {
        Ok(Some(digest)) => {
            progress.forget(name);
            Outcome {
                name: name.to_string(),
                result: Ok(Done {
                    bytes: sink.written,
                    secs,
                    path: "-".into(),
                    digest: Some(digest),
                    resumed_from: 0,
                    skipped: false,
                    unchanged: false,
                    planned: false,
                }),
                unreachable: false,
                retries,
                kept: 0,
            }
        }
        Ok(None) => {
            // Not a failure: the consumer stopped reading.
            progress.forget(name);
            log::info!("stdout closed after {} bytes; stopping", sink.written);
            return Ok(Report {
                outcomes: Vec::new(),
                secs,
                interrupted: false,
                listing_retries: 0,
                deleted: Vec::new(),
                dry_run: false,
            });
        }
        Err(why) => {
            progress.file_failed(name, &why);
            Outcome {
                name: name.to_string(),
                result: Err(why),
                unreachable,
                retries,
                kept: 0,
            }
        }
    };
    Ok(Report {
        outcomes: vec![outcome],
        secs,
        interrupted: crate::interrupt::requested(),
        listing_retries: 0,
        deleted: Vec::new(),
        dry_run: false,
    })
}
