//! The only place that draws progress. On a terminal (stderr), indicatif
//! bars: one per file in flight and a total with an ETA, laid out to fit
//! the terminal's width, long names shortened in the middle. Elsewhere (a
//! pipe, a CI log) no bars and no escape codes: each finished file is one
//! plain line on stdout and, while a transfer runs, a plain progress line
//! on stderr every few seconds.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::human;
use crate::paths::display_safe;

/// How often a pipe or CI log gets a progress line.
const LINE_EVERY: Duration = Duration::from_secs(3);

/// The bars on the terminal now, if any: a question asked there in the
/// middle of a run (whether to trust a new server) hides them while it
/// waits for the answer, or they would redraw over it.
static ON_SCREEN: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// Runs `f` (which uses the terminal) with any bars hidden, and draws
/// them again after.
pub fn with_bars_hidden<R>(f: impl FnOnce() -> R) -> R {
    let shown = ON_SCREEN.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match shown {
        Some(mp) => mp.suspend(f),
        None => f(),
    }
}

/// How a `get` reports what it is doing.
pub struct Progress {
    bars: Option<Bars>,
    /// Per-file lines and the summary are shown (not quiet, not JSON).
    lines: bool,
    quiet: bool,
    tally: Arc<Tally>,
    ticker: Mutex<Option<Ticker>>,
    stdout_closed: AtomicBool,
    /// The width of stdout when it is a terminal.
    stdout_cols: Option<usize>,
}

/// What the total (bar or line) shows; shared with the ticker thread.
struct Tally {
    started: Instant,
    /// Bytes arrived this run.
    bytes: AtomicU64,
    files: AtomicUsize,
    done: AtomicUsize,
    expect: Mutex<Expect>,
}

/// The bytes this run expects to receive: in all, and per file still to
/// come (so a failed file leaves the total, and a retry is not counted
/// twice).
#[derive(Default)]
struct Expect {
    total: u64,
    left: HashMap<String, u64>,
}

struct Bars {
    mp: MultiProgress,
    total: ProgressBar,
    /// The width the total's style was made for.
    cols: AtomicUsize,
}

struct Ticker {
    stop: mpsc::Sender<()>,
    handle: JoinHandle<()>,
}

/// The bar of one file in flight (only counting when bars are off).
pub struct FileBar<'a> {
    bar: Option<ProgressBar>,
    progress: &'a Progress,
    name: String,
    len: u64,
    got: u64,
}

impl FileBar<'_> {
    /// Bytes of this file that arrived so far.
    pub fn got(&self) -> u64 {
        self.got
    }

    /// `n` more bytes of this file arrived.
    pub fn inc(&mut self, n: u64) {
        self.got += n;
        if let Some(b) = &self.bar {
            b.inc(n);
        }
        self.progress.add_bytes(n);
    }
}

impl Drop for FileBar<'_> {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        // What is still to come of this file, should it be tried again.
        let left = self.len.saturating_sub(self.got);
        let mut e = self.progress.tally.expect.lock().unwrap();
        e.left.insert(std::mem::take(&mut self.name), left);
    }
}

/// A line on stderr; a closed stderr is no reason to stop (or panic).
fn err_line(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// The terminal's width in columns (stderr is where the bars go).
fn term_cols() -> usize {
    usize::from(console::Term::stderr().size().1).max(20)
}

/// Widths of the fields the templates pad or truncate to: "1023.99 KiB",
/// "1023.99 KiB/s", "59m".
const BYTES: usize = 11;
const RATE: usize = 13;
const FILES_MSG: usize = 17;

/// The template of a file's bar at `cols` columns and the width its name
/// gets. The last column stays free: some terminals wrap a line that
/// reaches it.
fn file_layout(cols: usize) -> (String, usize) {
    let budget = cols - 1;
    // name, " ", bytes, "/", total, " ", rate, " [", bar, "]"
    let fixed = 1 + BYTES + 1 + BYTES + 1 + RATE + 3;
    if budget >= fixed + 24 {
        let bar = ((budget - fixed) / 4).min(30);
        let name = budget - fixed - bar;
        let t = format!(
            "{{msg}} {{bytes:>{BYTES}!}}/{{total_bytes:<{BYTES}!}} \
             {{bytes_per_sec:>{RATE}!}} [{{bar:{bar}}}]"
        );
        return (t, name);
    }
    let fixed = 1 + BYTES + 1 + BYTES;
    if budget >= fixed + 10 {
        let t = format!("{{msg}} {{bytes:>{BYTES}!}}/{{total_bytes:<{BYTES}!}}");
        return (t, budget - fixed);
    }
    ("{msg}".into(), budget)
}

/// The template of the total line at `cols` columns.
fn total_layout(cols: usize) -> String {
    let budget = cols - 1;
    // files, " ", bytes, "/", total, " ", rate, " ETA ", eta, " [", bar, "]"
    let fixed = FILES_MSG + 1 + BYTES + 1 + BYTES + 1 + RATE + 5 + 4 + 3;
    let head = format!("{{msg:<{FILES_MSG}!}} {{bytes:>{BYTES}!}}/{{total_bytes:<{BYTES}!}}");
    if budget >= fixed + 8 {
        let bar = (budget - fixed).min(30);
        return format!("{head} {{bytes_per_sec:>{RATE}!}} ETA {{eta:>4!}} [{{bar:{bar}}}]");
    }
    if budget >= FILES_MSG + 1 + BYTES + 1 + BYTES + 9 {
        return format!("{head} ETA {{eta:>4!}}");
    }
    format!("{{msg:<{}!}}", budget.min(FILES_MSG))
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("valid template")
        .progress_chars("=> ")
}

/// Fits `name` into `width` columns: shortened in the middle ("long…name")
/// when too long, so both its start and its extension stay visible;
/// padded with spaces when shorter.
pub fn fit_name(name: &str, width: usize) -> String {
    let w = |s: &str| console::measure_text_width(s);
    let have = w(name);
    if have <= width {
        return format!("{name}{}", " ".repeat(width - have));
    }
    if width == 0 {
        return String::new();
    }
    let chars: Vec<char> = name.chars().collect();
    let cw = |c: &char| w(c.encode_utf8(&mut [0; 4]));
    let room = width - 1; // for the ellipsis
    let (mut head, mut tail) = (String::new(), Vec::new());
    let (mut head_w, mut tail_w) = (0, 0);
    let (mut i, mut j) = (0, chars.len());
    // Take from both ends in turn; the head gets the odd column.
    loop {
        let mut moved = false;
        if i < j && head_w + cw(&chars[i]) + tail_w <= room && head_w <= tail_w {
            head_w += cw(&chars[i]);
            head.push(chars[i]);
            i += 1;
            moved = true;
        }
        if i < j && tail_w + cw(&chars[j - 1]) + head_w <= room && tail_w < head_w {
            tail_w += cw(&chars[j - 1]);
            tail.push(chars[j - 1]);
            j -= 1;
            moved = true;
        }
        if !moved {
            break;
        }
    }
    tail.reverse();
    let out: String = head + "…" + &tail.into_iter().collect::<String>();
    let pad = width.saturating_sub(w(&out));
    out + &" ".repeat(pad)
}

impl Tally {
    /// "12.0 MiB of 40.0 MiB (30%) at 4.0 MiB/s, ETA 7s, 3/20 files"
    fn line(&self) -> String {
        let bytes = self.bytes.load(Ordering::Relaxed);
        let total = self.expect.lock().unwrap().total.max(bytes);
        let secs = self.started.elapsed().as_secs_f64();
        let rate = bytes as f64 / secs.max(1e-3);
        let eta = if rate >= 1.0 {
            human::duration((total - bytes) as f64 / rate)
        } else {
            "unknown".into()
        };
        let pct = (bytes * 100).checked_div(total).unwrap_or(0);
        format!(
            "fxfer: {} of {} ({pct}%) at {}, ETA {eta}, {}/{} files",
            human::size(bytes),
            human::size(total),
            human::rate(bytes, secs),
            self.done.load(Ordering::Relaxed),
            self.files.load(Ordering::Relaxed)
        )
    }
}

impl Progress {
    /// Bars only on a terminal, never when quiet. With `json`, stdout is
    /// left to the caller's report.
    pub fn new(quiet: bool, json: bool) -> Progress {
        let bars = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
            let total = mp.add(ProgressBar::new(0));
            let cols = term_cols();
            total.set_style(style(&total_layout(cols)));
            total.set_message("0 files");
            total.enable_steady_tick(Duration::from_millis(200));
            *ON_SCREEN.lock().unwrap_or_else(|p| p.into_inner()) = Some(mp.clone());
            Bars {
                mp,
                total,
                cols: AtomicUsize::new(cols),
            }
        });
        let tally = Arc::new(Tally {
            started: Instant::now(),
            bytes: AtomicU64::new(0),
            files: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            expect: Mutex::new(Expect::default()),
        });
        // No terminal: a plain line every few seconds while bytes arrive.
        let ticker = (!quiet && bars.is_none())
            .then(|| {
                let (stop, rx) = mpsc::channel::<()>();
                let t = Arc::clone(&tally);
                std::thread::Builder::new()
                    .name("progress".into())
                    .spawn(move || {
                        let mut last = 0;
                        while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(LINE_EVERY)
                        {
                            let now = t.bytes.load(Ordering::Relaxed);
                            if now > last {
                                err_line(&t.line());
                            }
                            last = now;
                        }
                    })
                    .ok()
                    .map(|handle| Ticker { stop, handle })
            })
            .flatten();
        Progress {
            bars,
            lines: !quiet && !json,
            quiet,
            tally,
            ticker: Mutex::new(ticker),
            stdout_closed: AtomicBool::new(false),
            stdout_cols: std::io::stdout()
                .is_terminal()
                .then(|| usize::from(console::Term::stdout().size().1).max(20)),
        }
    }

    /// Whether totals are shown, so knowing every file's size up front is
    /// worth a listing.
    pub fn shows_totals(&self) -> bool {
        self.totals_due().is_some()
    }

    /// How soon after the start the total must be known: at once when bars
    /// show it, half way to the first line of a run without a terminal
    /// (time enough to list the server), never when quiet. A parallel
    /// `get` of small files asks for the listing that gives it only then.
    pub fn totals_due(&self) -> Option<Duration> {
        if self.bars.is_some() {
            Some(Duration::ZERO)
        } else if self.ticker.lock().unwrap().is_some() {
            Some(LINE_EVERY / 2)
        } else {
            None
        }
    }

    /// How many files this run will fetch.
    pub fn set_files(&self, n: usize) {
        self.tally.files.store(n, Ordering::Relaxed);
        if let Some(b) = &self.bars {
            b.total.set_message(format!("0/{n} files"));
        }
    }

    /// The bytes each file is expected to bring (known from a listing), so
    /// the total covers every file from the start. A file that started (or
    /// finished) already is counted as it is: a listing may come while
    /// files arrive.
    pub fn plan<'n>(&self, files: impl IntoIterator<Item = (&'n str, u64)>) {
        let mut e = self.tally.expect.lock().unwrap();
        for (name, len) in files {
            if !e.left.contains_key(name) {
                e.left.insert(name.to_string(), len);
                e.total += len;
            }
        }
        if let Some(b) = &self.bars {
            b.total.set_length(e.total);
        }
    }

    /// A file is about to arrive: `len` bytes of body.
    pub fn start_file(&self, name: &str, len: u64) -> FileBar<'_> {
        {
            let mut e = self.tally.expect.lock().unwrap();
            let before = e.left.insert(name.to_string(), len).unwrap_or(0);
            e.total = e.total - before + len;
            if let Some(b) = &self.bars {
                b.total.set_length(e.total);
            }
        }
        let bar = self.bars.as_ref().map(|b| {
            let cols = term_cols();
            if b.cols.swap(cols, Ordering::Relaxed) != cols {
                b.total.set_style(style(&total_layout(cols)));
            }
            let (template, width) = file_layout(cols);
            let bar = b.mp.insert_before(&b.total, ProgressBar::new(len));
            bar.set_style(style(&template));
            bar.set_message(fit_name(&display_safe(name), width));
            bar
        });
        FileBar {
            bar,
            progress: self,
            name: name.to_string(),
            len,
            got: 0,
        }
    }

    fn add_bytes(&self, n: u64) {
        self.tally.bytes.fetch_add(n, Ordering::Relaxed);
        if let Some(b) = &self.bars {
            b.total.inc(n);
        }
    }

    /// A file will not arrive after all: what was still to come of it
    /// leaves the total.
    pub fn forget(&self, name: &str) {
        let mut e = self.tally.expect.lock().unwrap();
        if let Some(left) = e.left.remove(name) {
            e.total -= left;
            if let Some(b) = &self.bars {
                b.total.set_length(e.total);
            }
        }
    }

    /// Every line a `get` prints passes here, escaped once more as a
    /// whole: a name that reached a message by any route is made safe.
    fn line(&self, text: &str, to_stderr: bool) {
        let text = display_safe(text);
        match &self.bars {
            Some(b) => b.mp.suspend(|| err_line(&text)),
            None if to_stderr => err_line(&text),
            None => self.out_line(&text),
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
        self.forget(name);
        let n = self.tally.done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(b) = &self.bars {
            let files = self.tally.files.load(Ordering::Relaxed);
            b.total.set_message(format!("{n}/{files} files"));
        }
        if self.lines {
            let tail = format!(
                "  ({}, {:.2}s, {})",
                human::size(bytes),
                secs,
                human::rate(bytes, secs)
            );
            let name = display_safe(name);
            // A person's terminal gets lines that fit it (the name
            // shortened in the middle); a pipe gets the whole name.
            let name = match self.stdout_cols {
                Some(cols) => {
                    let room = cols.saturating_sub(1 + 8 + tail.len()).max(10);
                    fit_name(&name, room).trim_end().to_string()
                }
                None => name.into_owned(),
            };
            self.line(&format!("ok      {name}{tail}"), false);
        }
    }

    /// A file that needs no transfer, or a step of a dry run or --delete:
    /// `unchanged NAME`, `fetch NAME (SIZE)`, `deleted PATH`.
    pub fn file_kept(&self, name: &str, status: &str, size: Option<u64>) {
        if self.lines {
            let size = size.map(|s| format!("  ({})", human::size(s)));
            self.line(
                &format!(
                    "{status:<7} {}{}",
                    display_safe(name),
                    size.unwrap_or_default()
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
        self.forget(name);
        self.line(&format!("fxfer: {}: {why}", display_safe(name)), true);
    }

    fn stop_ticker(&self) {
        if let Some(t) = self.ticker.lock().unwrap().take() {
            drop(t.stop);
            let _ = t.handle.join();
        }
    }

    /// Removes the bars and prints the summary line.
    pub fn finish(&self, summary: &str) {
        self.stop_ticker();
        if let Some(b) = &self.bars {
            b.total.finish_and_clear();
            let _ = b.mp.clear();
        }
        if self.lines && !summary.is_empty() {
            self.out_line(summary);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop_ticker();
        if self.bars.is_some() {
            *ON_SCREEN.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_lose_their_middle_not_their_ends() {
        assert_eq!(fit_name("short.txt", 12), "short.txt   ");
        let long = "logs/2026/a-very-long-file-name-indeed.tar.gz";
        let fit = fit_name(long, 20);
        assert_eq!(console::measure_text_width(&fit), 20);
        assert!(fit.starts_with("logs/2026"), "{fit}");
        assert!(fit.ends_with(".tar.gz"), "{fit}");
        assert!(fit.contains('…'), "{fit}");
        // Wide characters count two columns.
        let fit = fit_name("日本語のとても長いファイル名.txt", 15);
        assert!(console::measure_text_width(&fit) <= 15, "{fit}");
        assert!(
            fit.ends_with(".txt") || fit.trim_end().ends_with("txt"),
            "{fit}"
        );
    }

    #[test]
    fn layouts_leave_the_last_column_free() {
        for cols in [20, 40, 60, 80, 100, 200] {
            let (t, name) = file_layout(cols);
            let fixed: usize = if t.contains("bar:") {
                let bar: usize = t
                    .split("{bar:")
                    .nth(1)
                    .unwrap()
                    .split('}')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                1 + BYTES + 1 + BYTES + 1 + RATE + 3 + bar
            } else if t.contains("bytes") {
                1 + BYTES + 1 + BYTES
            } else {
                0
            };
            assert_eq!(name + fixed, cols - 1, "{cols}: {t}");
        }
    }
}
