//! The shell's file browser: the server's folders as a screen of its own,
//! drawn on `console`. A person enters and leaves folders, filters the
//! current folder by typing and ticks files and whole folders anywhere in
//! the tree; the header keeps a running count and size of what is ticked.
//!
//! Why not dialoguer: its pickers know no Home/End/PageUp/PageDown, show
//! one flat list, and print the picked rows again when they close. This
//! screen uses the terminal's alternate screen (as `less` does), so leaving
//! it restores exactly what was there before: no picker left behind.
//!
//! The model (`Browser`: tree, cursor, filter, ticks) is pure and tested
//! without a terminal; only [`Browser::run`] touches one.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::io;

use console::{measure_text_width, pad_str, truncate_str, Alignment, Key, Term};

use crate::human;
use crate::paths::display_safe;
use crate::protocol::{Entry, EntryKind};

/// Lines that are not rows: title, column header, status, keys.
const CHROME: usize = 4;
/// The keys, as the bottom line shows them (fits 80 columns).
const KEYS: &str = "Space tick  ^T all  Enter open/download  \u{2190} up  type to filter  Esc menu";
const KEY_CTRL_T: char = '\x14';
const KEY_CTRL_R: char = '\x12';

/// What the browser hands back to the session.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Download these files (server paths, sorted).
    Download(Vec<String>),
    /// Fetch the listing again (Ctrl-R).
    Reload,
    /// Esc or Ctrl-C: the menu.
    Menu,
}

/// One line of the current folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Row {
    /// `../`: the folder above.
    Up,
    /// An index into `Browser::entries`.
    Entry(usize),
}

/// Totals of the files under a folder, or of a selection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub files: usize,
    pub bytes: u64,
}

impl Totals {
    fn add(&mut self, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
    }

    /// "3 files, 1.2 MiB"
    pub fn describe(&self) -> String {
        format!(
            "{} file{}, {}",
            self.files,
            if self.files == 1 { "" } else { "s" },
            human::size(self.bytes)
        )
    }
}

pub struct Browser {
    /// Shown in the title: where the files come from.
    title: String,
    entries: Vec<Entry>,
    /// Folder path ("" for the top) to its children: folders first, then
    /// files, each by name.
    children: HashMap<String, Vec<usize>>,
    /// Folder path to the totals of every file beneath it.
    under: HashMap<String, Totals>,
    /// Ticked files, by server path.
    ticked: BTreeSet<String>,
    cwd: String,
    filter: String,
    cursor: usize,
    /// The first row on screen.
    top: usize,
    /// A line for the status bar (the last download's summary).
    message: Option<String>,
}

/// "a/b/c" -> ("a/b", "c"); "c" -> ("", "c").
fn split_parent(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((p, n)) => (p, n),
        None => ("", path),
    }
}

impl Browser {
    /// A browser over a recursive listing, at the top folder.
    pub fn new(title: String, listing: Vec<Entry>) -> Browser {
        let mut b = Browser {
            title,
            entries: Vec::new(),
            children: HashMap::new(),
            under: HashMap::new(),
            ticked: BTreeSet::new(),
            cwd: String::new(),
            filter: String::new(),
            cursor: 0,
            top: 0,
            message: None,
        };
        b.load(listing);
        b
    }

    fn load(&mut self, listing: Vec<Entry>) {
        self.entries = listing;
        self.children.clear();
        self.under.clear();
        self.children.insert(String::new(), Vec::new());
        for (i, e) in self.entries.iter().enumerate() {
            let (parent, _) = split_parent(&e.path);
            self.children.entry(parent.to_string()).or_default().push(i);
            if e.kind == EntryKind::Dir {
                self.children.entry(e.path.clone()).or_default();
                self.under.entry(e.path.clone()).or_default();
            } else {
                // Count the file in every folder above it.
                let mut p = parent;
                while !p.is_empty() {
                    self.under.entry(p.to_string()).or_default().add(e.size);
                    p = split_parent(p).0;
                }
            }
        }
        let entries = &self.entries;
        for kids in self.children.values_mut() {
            kids.sort_by(|&a, &b| {
                let (a, b) = (&entries[a], &entries[b]);
                (a.kind != EntryKind::Dir, &a.path).cmp(&(b.kind != EntryKind::Dir, &b.path))
            });
        }
    }

    /// A fresh listing of the same server: ticks on files that are gone are
    /// dropped, and the browser stays in the current folder while it exists.
    pub fn reload(&mut self, listing: Vec<Entry>) {
        self.load(listing);
        let files: BTreeSet<&str> = self
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .map(|e| e.path.as_str())
            .collect();
        self.ticked.retain(|t| files.contains(t.as_str()));
        while !self.children.contains_key(&self.cwd) {
            self.cwd = split_parent(&self.cwd).0.to_string();
        }
        self.clamp(usize::MAX);
    }

    pub fn set_message(&mut self, m: impl Into<String>) {
        self.message = Some(m.into());
    }

    pub fn clear_ticks(&mut self) {
        self.ticked.clear();
    }

    /// Ticks exactly these files.
    pub fn set_ticks(&mut self, files: &[String]) {
        self.ticked = files.iter().cloned().collect();
    }

    /// The current folder, as the title shows it.
    pub fn folder(&self) -> String {
        format!("/{}", self.cwd)
    }

    /// What is ticked, in total.
    pub fn ticked_totals(&self) -> Totals {
        let mut t = Totals::default();
        for e in &self.entries {
            if e.kind == EntryKind::File && self.ticked.contains(&e.path) {
                t.add(e.size);
            }
        }
        t
    }

    /// The totals of `names` (server paths of files).
    pub fn totals_of(&self, names: &[String]) -> Totals {
        let want: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        let mut t = Totals::default();
        for e in &self.entries {
            if e.kind == EntryKind::File && want.contains(e.path.as_str()) {
                t.add(e.size);
            }
        }
        t
    }

    fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        if !self.cwd.is_empty() && self.filter.is_empty() {
            rows.push(Row::Up);
        }
        let matches = name_filter(&self.filter);
        for &i in &self.children[&self.cwd] {
            if matches(split_parent(&self.entries[i].path).1) {
                rows.push(Row::Entry(i));
            }
        }
        rows
    }

    /// Keeps the cursor on a row (`page` rows on screen).
    fn clamp(&mut self, page: usize) {
        let n = self.rows().len();
        self.cursor = self.cursor.min(n.saturating_sub(1));
        let page = page.max(1);
        if self.cursor < self.top {
            self.top = self.cursor;
        } else if self.cursor >= self.top + page {
            self.top = self.cursor + 1 - page;
        }
        self.top = self.top.min(n.saturating_sub(1));
    }

    /// The files under folder `dir`.
    fn files_under<'a>(&'a self, dir: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.kind == EntryKind::File && is_under(&e.path, dir))
    }

    /// Ticked files under `dir`, and all of them.
    fn tick_state(&self, dir: &str) -> (usize, usize) {
        let mut ticked = 0;
        let mut all = 0;
        for e in self.files_under(dir) {
            all += 1;
            if self.ticked.contains(&e.path) {
                ticked += 1;
            }
        }
        (ticked, all)
    }

    /// The files a row stands for: itself, or every file beneath a folder.
    fn row_files(&self, row: Row) -> Vec<String> {
        match row {
            Row::Up => Vec::new(),
            Row::Entry(i) => {
                let e = &self.entries[i];
                match e.kind {
                    EntryKind::File => vec![e.path.clone()],
                    EntryKind::Dir => self.files_under(&e.path).map(|e| e.path.clone()).collect(),
                }
            }
        }
    }

    /// Ticks the files, or unticks them when all are ticked already.
    fn toggle(&mut self, files: Vec<String>) {
        if files.iter().all(|f| self.ticked.contains(f)) {
            for f in &files {
                self.ticked.remove(f);
            }
        } else {
            self.ticked.extend(files);
        }
    }

    fn enter(&mut self, dir: String) {
        self.cwd = dir;
        self.filter.clear();
        self.cursor = 0;
        self.top = 0;
    }

    /// Goes to the folder above, with the cursor on the folder just left.
    fn up(&mut self) {
        if self.cwd.is_empty() {
            return;
        }
        let left = std::mem::take(&mut self.cwd);
        self.enter(split_parent(&left).0.to_string());
        let rows = self.rows();
        self.cursor = rows
            .iter()
            .position(|r| matches!(r, Row::Entry(i) if self.entries[*i].path == left))
            .unwrap_or(0);
    }

    /// Handles one key with `page` rows on screen; `Some` ends the browse.
    pub fn key(&mut self, key: Key, page: usize) -> Option<Outcome> {
        let page = page.max(1);
        let rows = self.rows();
        let current = rows.get(self.cursor).copied();
        let last = rows.len().saturating_sub(1);
        self.message = None;
        match key {
            Key::ArrowUp | Key::BackTab => self.cursor = self.cursor.saturating_sub(1),
            Key::ArrowDown | Key::Tab => self.cursor = (self.cursor + 1).min(last),
            Key::PageUp => self.cursor = self.cursor.saturating_sub(page),
            Key::PageDown => self.cursor = (self.cursor + page).min(last),
            Key::Home => self.cursor = 0,
            Key::End => self.cursor = last,
            Key::ArrowLeft => self.up(),
            Key::Backspace if !self.filter.is_empty() => {
                self.filter.pop();
                self.cursor = 0;
            }
            Key::Backspace => self.up(),
            Key::Escape if !self.filter.is_empty() => {
                self.filter.clear();
                self.cursor = 0;
            }
            Key::Escape | Key::CtrlC => return Some(Outcome::Menu),
            Key::Char(' ') => {
                if let Some(r) = current {
                    let files = self.row_files(r);
                    self.toggle(files);
                }
            }
            Key::Char(KEY_CTRL_T) => {
                let files: Vec<String> = rows.iter().flat_map(|&r| self.row_files(r)).collect();
                self.toggle(files);
            }
            Key::Char(KEY_CTRL_R) => return Some(Outcome::Reload),
            Key::ArrowRight | Key::Enter => match current {
                Some(Row::Up) => self.up(),
                Some(Row::Entry(i)) if self.entries[i].kind == EntryKind::Dir => {
                    self.enter(self.entries[i].path.clone())
                }
                Some(Row::Entry(i)) if key == Key::Enter => {
                    // Enter on a file with nothing ticked means "this one".
                    if self.ticked.is_empty() {
                        self.ticked.insert(self.entries[i].path.clone());
                    }
                    return Some(Outcome::Download(self.ticked.iter().cloned().collect()));
                }
                _ => {}
            },
            Key::Char(c) if !c.is_control() => {
                self.filter.push(c);
                self.cursor = 0;
            }
            _ => {}
        }
        self.clamp(page);
        None
    }

    /// The screen for a terminal of `width` x `height`: exactly `height`
    /// lines, none wider than `width`.
    pub fn render(&mut self, width: usize, height: usize) -> Vec<String> {
        let page = height.saturating_sub(CHROME).max(1);
        self.clamp(page);
        let rows = self.rows();
        let full = |s: &str| fit(s, width).into_owned();
        let mut lines = Vec::with_capacity(height);

        let title = format!("fxfer {}  {}", self.title, display_safe(&self.folder()));
        lines.push(full(&title));
        let (name_w, cols) = columns(width);
        let header = if !self.filter.is_empty() {
            format!(
                "Filter: {}_   ({} match{}; Esc clears)",
                display_safe(&self.filter),
                rows.len(),
                if rows.len() == 1 { "" } else { "es" }
            )
        } else {
            let mut h = format!("      {}", pad_str("Name", name_w, Alignment::Left, None));
            if cols >= 1 {
                h += &format!("  {:>10}", "Size");
            }
            if cols >= 2 {
                h += "  Modified (UTC)";
            }
            h
        };
        lines.push(full(&header));

        for (n, &row) in rows.iter().enumerate().skip(self.top).take(page) {
            let cursor = if n == self.cursor { ">" } else { " " };
            let line = match row {
                Row::Up => format!("{cursor}     ../"),
                Row::Entry(i) => self.entry_line(&self.entries[i], cursor, name_w, cols),
            };
            let line = full(&line);
            lines.push(if n == self.cursor && console::colors_enabled_stderr() {
                console::style(line).reverse().for_stderr().to_string()
            } else {
                line
            });
        }
        if rows.is_empty() {
            lines.push(full(if self.filter.is_empty() {
                "      (empty folder)"
            } else {
                "      (nothing matches; Backspace or Esc)"
            }));
        }
        while lines.len() < height.saturating_sub(2) {
            lines.push(String::new());
        }

        let ticked = self.ticked_totals();
        let status = match &self.message {
            Some(m) => m.clone(),
            None if ticked.files == 0 => "Nothing ticked".to_string(),
            None => format!("Ticked: {}", ticked.describe()),
        };
        let position = format!("{}/{}", (self.cursor + 1).min(rows.len()), rows.len());
        let room = width.saturating_sub(measure_text_width(&position) + 2);
        let status = fit(&status, room);
        lines.push(full(&format!(
            "{}  {position}",
            pad_str(&status, room, Alignment::Left, None)
        )));
        lines.push(full(KEYS));
        lines.truncate(height.max(1));
        lines
    }

    fn entry_line(&self, e: &Entry, cursor: &str, name_w: usize, cols: usize) -> String {
        let name = split_parent(&e.path).1;
        let (mark, name, size) = match e.kind {
            EntryKind::File => (
                if self.ticked.contains(&e.path) {
                    "[x]"
                } else {
                    "[ ]"
                },
                display_safe(name).into_owned(),
                human::size(e.size),
            ),
            EntryKind::Dir => {
                let (ticked, all) = self.tick_state(&e.path);
                let mark = match (ticked, all) {
                    (0, _) => "[ ]",
                    (t, a) if t == a => "[x]",
                    _ => "[-]",
                };
                let t = self.under.get(&e.path).copied().unwrap_or_default();
                (
                    mark,
                    format!(
                        "{}/  ({} file{})",
                        display_safe(name),
                        t.files,
                        if t.files == 1 { "" } else { "s" }
                    ),
                    human::size(t.bytes),
                )
            }
        };
        let name = fit(&name, name_w);
        let mut line = format!(
            "{cursor} {mark} {}",
            pad_str(&name, name_w, Alignment::Left, None)
        );
        if cols >= 1 {
            line += &format!("  {size:>10}");
        }
        if cols >= 2 {
            line += &format!("  {}", human::time(e.mtime));
        }
        line
    }

    /// Shows the browser until the user picks something. The alternate
    /// screen is left again on every way out, errors included.
    pub fn run(&mut self, term: &Term) -> io::Result<Outcome> {
        let _screen = AltScreen::enter(term)?;
        loop {
            let size = term.size();
            let (h, w) = (usize::from(size.0).max(3), usize::from(size.1).max(20));
            let frame = self.render(w, h);
            // One write per frame: home, each line cleared to its end, the
            // rest of the screen cleared (no scrolling: no final newline).
            let mut out = String::from("\x1b[H");
            out += &frame.join("\x1b[K\r\n");
            out += "\x1b[K\x1b[J";
            term.write_str(&out)?;
            if !key_or_resize(term, size)? {
                continue;
            }
            let key = term.read_key_raw()?;
            if let Some(o) = self.key(key, h.saturating_sub(CHROME)) {
                return Ok(o);
            }
        }
    }
}

/// Waits until a key can be read (`true`) or the terminal changed size
/// (`false`: draw again). Polling beats a SIGWINCH handler here: a signal
/// interrupting console's read comes back as Ctrl-C.
fn key_or_resize(term: &Term, size: (u16, u16)) -> io::Result<bool> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let stdin = io::stdin();
    let every = Timespec {
        tv_sec: 0,
        tv_nsec: 200_000_000,
    };
    loop {
        let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
        match poll(&mut fds, Some(&every)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => {}
            Ok(_) => return Ok(true),
            Err(e) => return Err(e.into()),
        }
        if term.size() != size {
            return Ok(false);
        }
    }
}

/// `s` cut to `width` columns, with an ellipsis when it was cut.
/// (`console::truncate_str` alone also cuts text that fits exactly.)
fn fit(s: &str, width: usize) -> Cow<'_, str> {
    if measure_text_width(s) <= width {
        Cow::Borrowed(s)
    } else if width == 0 {
        Cow::Borrowed("")
    } else {
        truncate_str(s, width, "\u{2026}")
    }
}

/// What the filter keeps, by name, ignoring case: a glob pattern (`*.log`)
/// when it is one, otherwise any name that contains it.
fn name_filter(filter: &str) -> Box<dyn Fn(&str) -> bool> {
    if filter.is_empty() {
        return Box::new(|_| true);
    }
    if crate::select::is_pattern(filter) {
        if let Ok(g) = globset::GlobBuilder::new(filter)
            .case_insensitive(true)
            .literal_separator(true)
            .build()
        {
            let m = g.compile_matcher();
            return Box::new(move |name| m.is_match(name));
        }
    }
    let needle = filter.to_lowercase();
    Box::new(move |name| name.to_lowercase().contains(&needle))
}

/// `path` is beneath folder `dir`.
fn is_under(path: &str, dir: &str) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

/// The name column's width and how many other columns fit (size, time).
fn columns(width: usize) -> (usize, usize) {
    // "> [x] " + name + "  " + size(10) + "  " + time(16)
    const LEAD: usize = 6;
    match width {
        w if w >= LEAD + 20 + 12 + 18 => (w - LEAD - 12 - 18, 2),
        w if w >= LEAD + 16 + 12 => (w - LEAD - 12, 1),
        w => (w.saturating_sub(LEAD).max(1), 0),
    }
}

/// The terminal's alternate screen with the cursor hidden, for as long as
/// this lives; keys are not echoed and arrive one by one even between
/// reads (console switches to raw mode only while it reads one), and
/// Ctrl-C arrives as a key rather than a signal, so
/// waiting for a key with poll works and typing ahead leaves no trace.
struct AltScreen<'a>(&'a Term, Option<rustix::termios::Termios>);

impl<'a> AltScreen<'a> {
    fn enter(term: &'a Term) -> io::Result<AltScreen<'a>> {
        use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
        let saved = tcgetattr(io::stdin()).ok();
        if let Some(t) = &saved {
            let mut quiet = t.clone();
            quiet.local_modes -= LocalModes::ICANON | LocalModes::ECHO | LocalModes::ISIG;
            tcsetattr(io::stdin(), OptionalActions::Now, &quiet)?;
        }
        let screen = AltScreen(term, saved);
        term.write_str("\x1b[?1049h")?;
        term.hide_cursor()?;
        Ok(screen)
    }
}

impl Drop for AltScreen<'_> {
    fn drop(&mut self) {
        if let Some(t) = &self.1 {
            let _ =
                rustix::termios::tcsetattr(io::stdin(), rustix::termios::OptionalActions::Now, t);
        }
        // Cleared first: a terminal without an alternate screen is then
        // left blank rather than with the browser's last frame on it.
        let _ = self.0.write_str("\x1b[H\x1b[2J");
        let _ = self.0.show_cursor();
        let _ = self.0.write_str("\x1b[?1049l");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::File,
            size,
            mtime: 1_795_568_357,
            mtime_nanos: 0,
            mode: 0o644,
            digest: None,
        }
    }

    fn dir(path: &str) -> Entry {
        Entry {
            kind: EntryKind::Dir,
            size: 0,
            ..file(path, 0)
        }
    }

    fn sample() -> Browser {
        Browser::new(
            "127.0.0.1:9000".into(),
            vec![
                file("a.txt", 10),
                dir("logs"),
                file("logs/1.log", 100),
                file("logs/2.log", 200),
                dir("logs/old"),
                file("logs/old/0.log", 1000),
                dir("empty"),
                file("z.bin", 5),
            ],
        )
    }

    fn names(b: &Browser) -> Vec<String> {
        b.rows()
            .iter()
            .map(|r| match r {
                Row::Up => "..".into(),
                Row::Entry(i) => b.entries[*i].path.clone(),
            })
            .collect()
    }

    fn keys(b: &mut Browser, ks: &[Key]) -> Option<Outcome> {
        let mut last = None;
        for k in ks {
            last = b.key(k.clone(), 10);
        }
        last
    }

    #[test]
    fn folders_come_first_and_folders_can_be_entered_and_left() {
        let mut b = sample();
        assert_eq!(names(&b), ["empty", "logs", "a.txt", "z.bin"]);
        keys(&mut b, &[Key::ArrowDown, Key::Enter]);
        assert_eq!(b.folder(), "/logs");
        assert_eq!(names(&b), ["..", "logs/old", "logs/1.log", "logs/2.log"]);
        keys(&mut b, &[Key::ArrowDown, Key::ArrowRight]);
        assert_eq!(b.folder(), "/logs/old");
        keys(&mut b, &[Key::ArrowLeft]);
        assert_eq!(b.folder(), "/logs");
        assert_eq!(b.cursor, 1, "cursor on the folder just left");
        keys(&mut b, &[Key::Home, Key::Enter]);
        assert_eq!(b.folder(), "/");
        assert_eq!(names(&b)[b.cursor], "logs");
    }

    #[test]
    fn ticking_across_folders_keeps_a_running_total() {
        let mut b = sample();
        // Tick a.txt at the top, then logs/2.log inside logs.
        keys(&mut b, &[Key::ArrowDown, Key::ArrowDown, Key::Char(' ')]);
        keys(
            &mut b,
            &[
                Key::Home,
                Key::ArrowDown,
                Key::Enter,
                Key::End,
                Key::Char(' '),
            ],
        );
        assert_eq!(
            b.ticked_totals(),
            Totals {
                files: 2,
                bytes: 210
            }
        );
        let screen = b.render(80, 24).join("\n");
        assert!(screen.contains("Ticked: 2 files, 210 B"), "{screen}");
        // Enter on a file downloads what is ticked.
        assert_eq!(
            keys(&mut b, &[Key::Enter]),
            Some(Outcome::Download(vec!["a.txt".into(), "logs/2.log".into()]))
        );
    }

    #[test]
    fn a_folder_ticks_everything_beneath_it_and_shows_partial_ticks() {
        let mut b = sample();
        keys(&mut b, &[Key::ArrowDown, Key::Char(' ')]);
        assert_eq!(
            b.ticked_totals(),
            Totals {
                files: 3,
                bytes: 1300
            }
        );
        keys(
            &mut b,
            &[Key::Enter, Key::ArrowDown, Key::ArrowDown, Key::Char(' ')],
        );
        assert_eq!(b.ticked_totals().files, 2);
        keys(&mut b, &[Key::ArrowLeft]);
        let screen = b.render(80, 24).join("\n");
        assert!(screen.contains("[-] logs/"), "{screen}");
        // Ticking a partly ticked folder ticks all of it; again unticks.
        keys(&mut b, &[Key::Char(' ')]);
        assert_eq!(b.ticked_totals().files, 3);
        keys(&mut b, &[Key::Char(' ')]);
        assert_eq!(b.ticked_totals().files, 0);
        // An empty folder ticks nothing.
        keys(&mut b, &[Key::Home, Key::Char(' ')]);
        assert_eq!(b.ticked_totals().files, 0);
    }

    #[test]
    fn typing_filters_the_folder_and_esc_clears_then_leaves() {
        let mut b = sample();
        keys(&mut b, &[Key::Char('T'), Key::Char('x')]);
        assert_eq!(names(&b), ["a.txt"]);
        keys(&mut b, &[Key::Char(KEY_CTRL_T)]);
        assert_eq!(b.ticked_totals().files, 1);
        keys(&mut b, &[Key::Backspace]);
        assert_eq!(names(&b), ["empty", "a.txt"]);
        assert_eq!(keys(&mut b, &[Key::Escape]), None);
        assert_eq!(names(&b).len(), 4);
        assert_eq!(keys(&mut b, &[Key::Escape]), Some(Outcome::Menu));
        assert_eq!(keys(&mut b, &[Key::CtrlC]), Some(Outcome::Menu));
        // A pattern filters as a glob; a broken one as plain text.
        for c in "*.TXT".chars() {
            b.key(Key::Char(c), 10);
        }
        assert_eq!(names(&b), ["a.txt"]);
        b.key(Key::Escape, 10);
        for c in "[z".chars() {
            b.key(Key::Char(c), 10);
        }
        assert!(names(&b).is_empty());
    }

    #[test]
    fn paging_keys_move_by_a_screen_and_stop_at_the_ends() {
        let listing: Vec<Entry> = (0..100).map(|i| file(&format!("f{i:03}"), i)).collect();
        let mut b = Browser::new("s".into(), listing);
        b.render(80, 24);
        let page = 24 - CHROME;
        b.key(Key::PageDown, page);
        assert_eq!(b.cursor, page);
        b.key(Key::End, page);
        assert_eq!(b.cursor, 99);
        b.key(Key::ArrowDown, page);
        assert_eq!(b.cursor, 99);
        let screen = b.render(80, 24);
        assert!(
            screen.iter().any(|l| l.contains("> [ ] f099")),
            "{screen:?}"
        );
        b.key(Key::PageUp, page);
        assert_eq!(b.cursor, 99 - page);
        b.key(Key::Home, page);
        assert_eq!(b.cursor, 0);
        assert!(b.render(80, 24)[2].contains("f000"));
    }

    #[test]
    fn every_frame_fits_the_terminal() {
        let long = "a-very-long-file-name-that-would-never-fit-on-one-line-of-eighty-columns.txt";
        let mut b = Browser::new(
            "127.0.0.1:9000".into(),
            vec![file(long, u64::MAX / 3), file("x\x1b[2Jy", 1)],
        );
        for (w, h) in [(80, 24), (120, 40), (40, 10), (20, 3)] {
            let frame = b.render(w, h);
            assert_eq!(frame.len(), h, "{w}x{h}");
            for l in &frame {
                assert!(measure_text_width(l) <= w, "{w}x{h}: {l:?}");
                assert!(!l.contains("\x1b[2J"), "control characters are escaped");
            }
        }
        assert!(KEYS.chars().count() <= 80);
        // A line that fits exactly is not cut.
        let frame = b.render(80, 24);
        assert!(frame[23].ends_with("Esc menu"), "{frame:?}");
        assert!(frame[22].ends_with("1/2"), "{frame:?}");
    }

    #[test]
    fn reload_drops_ticks_on_vanished_files_and_keeps_the_folder() {
        let mut b = sample();
        keys(&mut b, &[Key::ArrowDown, Key::Enter, Key::Char(KEY_CTRL_T)]);
        assert_eq!(b.ticked_totals().files, 3);
        b.reload(vec![dir("logs"), file("logs/1.log", 100)]);
        assert_eq!(b.folder(), "/logs");
        assert_eq!(
            b.ticked_totals(),
            Totals {
                files: 1,
                bytes: 100
            }
        );
        b.reload(vec![file("a.txt", 1)]);
        assert_eq!(b.folder(), "/");
    }
}
