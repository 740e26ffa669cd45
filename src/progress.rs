//! The only place that draws progress. Bars (indicatif) appear only when
//! stderr is a terminal and we are not quiet; otherwise each finished file
//! is one plain line on stdout and nothing else is drawn, so pipes and CI
//! logs get no escape codes.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::human;
use crate::paths::display_safe;

const FILE_TEMPLATE: &str =
    "{wide_msg} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} ETA {eta:>3} [{bar:25}]";
const TOTAL_TEMPLATE: &str =
    "{msg:>12} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} elapsed {elapsed:>3} [{bar:25}]";

/// How a `get` reports what it is doing.
pub struct Progress {
    bars: Option<(MultiProgress, ProgressBar)>,
    /// Per-file lines and the summary are shown (not quiet, not JSON).
    lines: bool,
    quiet: bool,
    files: AtomicUsize,
    done: AtomicUsize,
    stdout_closed: AtomicBool,
}

/// A line on stderr; a closed stderr is no reason to stop (or panic).
fn err_line(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// The bar of one file in flight (a no-op when bars are off).
pub struct FileBar(Option<ProgressBar>);

impl FileBar {
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }
}

impl Drop for FileBar {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

impl Progress {
    /// Bars only on a terminal, never when quiet. With `json`, stdout is
    /// left to the caller's report.
    pub fn new(quiet: bool, json: bool) -> Progress {
        let bars = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
            let total = mp.add(ProgressBar::new(0));
            total.set_style(
                ProgressStyle::with_template(TOTAL_TEMPLATE)
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            total.set_message("0 files");
            total.enable_steady_tick(Duration::from_millis(200));
            (mp, total)
        });
        Progress {
            bars,
            lines: !quiet && !json,
            quiet,
            files: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            stdout_closed: AtomicBool::new(false),
        }
    }

    /// How many files this run will fetch (for the total bar).
    pub fn set_files(&self, n: usize) {
        self.files.store(n, Ordering::Relaxed);
        if let Some((_, total)) = &self.bars {
            total.set_message(format!("0/{n} files"));
        }
    }

    /// A file is about to arrive: `len` bytes of body.
    pub fn start_file(&self, name: &str, len: u64) -> FileBar {
        match &self.bars {
            None => FileBar(None),
            Some((mp, total)) => {
                total.inc_length(len);
                let b = mp.insert_before(total, ProgressBar::new(len));
                b.set_style(
                    ProgressStyle::with_template(FILE_TEMPLATE)
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                b.set_message(display_safe(name).into_owned());
                FileBar(Some(b))
            }
        }
    }

    /// Bytes arrived (for the total bar).
    pub fn add_bytes(&self, n: u64) {
        if let Some((_, total)) = &self.bars {
            total.inc(n);
        }
    }

    fn line(&self, text: &str, to_stderr: bool) {
        match &self.bars {
            Some((mp, _)) => mp.suspend(|| err_line(text)),
            None if to_stderr => err_line(text),
            None => self.out_line(text),
        }
    }

    /// A line of data on stdout. Once stdout is closed (`fxfer get ... |
    /// head`), lines are dropped and the downloads go on: they are the job,
    /// the lines only report on it.
    fn out_line(&self, text: &str) {
        if self.stdout_closed.load(Ordering::Relaxed) {
            return;
        }
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{text}").and_then(|_| out.flush()).is_err() {
            self.stdout_closed.store(true, Ordering::Relaxed);
        }
    }

    pub fn file_done(&self, name: &str, bytes: u64, secs: f64) {
        let n = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some((_, total)) = &self.bars {
            total.set_message(format!("{n}/{} files", self.files.load(Ordering::Relaxed)));
        }
        if self.lines {
            self.line(
                &format!(
                    "ok      {}  ({}, {:.2}s, {})",
                    display_safe(name),
                    human::size(bytes),
                    secs,
                    human::rate(bytes, secs)
                ),
                false,
            );
        }
    }

    /// A warning such as a retry: stderr, unless quiet.
    pub fn notice(&self, text: &str) {
        if !self.quiet {
            self.line(&format!("fxfer: {text}"), true);
        }
    }

    /// Errors always show, even when quiet.
    pub fn file_failed(&self, name: &str, why: &str) {
        self.line(&format!("fxfer: {}: {why}", display_safe(name)), true);
    }

    /// Removes the bars and prints the summary line.
    pub fn finish(&self, summary: &str) {
        if let Some((mp, total)) = &self.bars {
            total.finish_and_clear();
            let _ = mp.clear();
        }
        if self.lines {
            self.out_line(summary);
        }
    }
}
