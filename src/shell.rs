//! `fxfer shell`: an interactive session for a person at a terminal, built
//! on dialoguer menus. It lists and picks files over one connection and
//! downloads through `transfer::get`, exactly as `fxfer get` does.
//!
//! Esc or `q` goes back (or quits at the main menu); Ctrl-C at a prompt
//! does the same instead of killing the process, and the cursor is always
//! shown again on the way out.

use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use console::Term;
use dialoguer::theme::{ColorfulTheme, SimpleTheme, Theme};
use dialoguer::{FuzzySelect, Input, MultiSelect, Select};

use crate::client::Connection;
use crate::config::{GetSettings, ServerAddr};
use crate::error::{Error, Exit};
use crate::human;
use crate::paths::{check_folder, display_safe, expand_tilde};
use crate::progress::Progress;
use crate::protocol::{self, Entry, EntryKind};
use crate::select;
use crate::transfer;

/// Above this many files, the download picker first asks for a filter.
const FILTER_ABOVE: usize = 30;

const MENU: [&str; 5] = [
    "List files",
    "Download files",
    "Change download folder",
    "Server info",
    "Quit",
];

/// What a prompt came back with.
enum Answer<T> {
    Value(T),
    /// Esc, `q` or Ctrl-C: go back.
    Back,
}

pub struct ShellSettings {
    pub server: ServerAddr,
    pub download_dir: PathBuf,
    pub jobs: usize,
    pub retries: u32,
    pub timeout: std::time::Duration,
    pub fsync: bool,
}

struct Session {
    settings: ShellSettings,
    conn: Option<Connection>,
    theme: Box<dyn Theme>,
    term: Term,
}

/// Runs the session until the user quits.
pub fn run(settings: ShellSettings) -> Result<Exit, Error> {
    if !io::stdin().is_terminal() || !io::stdout().is_terminal() {
        return Err(Error::Usage(
            "fxfer shell needs a terminal; in scripts use `fxfer ls` and `fxfer get`".into(),
        ));
    }
    // Ctrl-C outside a prompt (e.g. during a download) must not kill the
    // session half-way; at a prompt it arrives as a key and means "back".
    let interrupted = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, interrupted)
        .map_err(|e| Error::io("cannot install signal handler", e))?;

    let theme: Box<dyn Theme> = if console::colors_enabled() {
        Box::new(ColorfulTheme::default())
    } else {
        Box::new(SimpleTheme)
    };
    let conn = Connection::connect(&settings.server, settings.timeout)?;
    let mut s = Session {
        settings,
        conn: Some(conn),
        theme,
        term: Term::stderr(),
    };
    let result = s.main_menu();
    let _ = s.term.show_cursor();
    if let Some(c) = s.conn.take() {
        c.quit();
    }
    result
}

/// Turns a dialoguer result into an answer; I/O errors other than an
/// interrupted read are real errors.
fn answer<T>(r: dialoguer::Result<Option<T>>) -> Result<Answer<T>, Error> {
    match r {
        Ok(Some(v)) => Ok(Answer::Value(v)),
        Ok(None) => Ok(Answer::Back),
        Err(dialoguer::Error::IO(e)) if e.kind() == io::ErrorKind::Interrupted => Ok(Answer::Back),
        Err(dialoguer::Error::IO(e)) => Err(Error::io("terminal", e)),
    }
}

impl Session {
    fn say(&self, line: &str) {
        let _ = self.term.write_line(line);
    }

    fn main_menu(&mut self) -> Result<Exit, Error> {
        self.say(&format!(
            "Connected to {} (fxfer protocol v{}). Downloads go to {}.",
            self.settings.server,
            protocol::VERSION,
            self.settings.download_dir.display()
        ));
        let mut last = 0;
        loop {
            let choice = answer(
                Select::with_theme(&*self.theme)
                    .with_prompt(format!("fxfer {}", self.settings.server))
                    .items(&MENU)
                    .default(last)
                    .interact_on_opt(&self.term),
            )?;
            let Answer::Value(i) = choice else {
                return Ok(Exit::Success);
            };
            last = i;
            let step = match i {
                0 => self.list(),
                1 => self.download(),
                2 => self.change_folder(),
                3 => self.info(),
                _ => return Ok(Exit::Success),
            };
            match step {
                Ok(true) => {}
                Ok(false) => return Ok(Exit::Success),
                Err(e) => self.say(&format!("fxfer: {e}")),
            }
        }
    }

    /// The server's whole listing. On a lost connection, reconnects once
    /// quietly (the server drops idle sessions), then asks. `None`: the
    /// user chose to quit.
    fn listing(&mut self) -> Result<Option<Vec<Entry>>, Error> {
        let mut quiet_retry = true;
        loop {
            let attempt = match self.conn.as_mut() {
                Some(c) => c.list("", true),
                None => Connection::connect(&self.settings.server, self.settings.timeout).and_then(
                    |mut c| {
                        let l = c.list("", true);
                        self.conn = Some(c);
                        l
                    },
                ),
            };
            match attempt {
                Ok(mut l) => {
                    l.sort_by(|a, b| a.path.cmp(&b.path));
                    return Ok(Some(l));
                }
                Err(e @ Error::Remote(_)) => return Err(e),
                Err(e) => {
                    self.conn = None;
                    if quiet_retry {
                        quiet_retry = false;
                        continue;
                    }
                    self.say(&format!("fxfer: lost the server: {e}"));
                    let pick = answer(
                        Select::with_theme(&*self.theme)
                            .with_prompt("The server is not answering")
                            .items(&["Reconnect", "Quit"])
                            .default(0)
                            .interact_on_opt(&self.term),
                    )?;
                    match pick {
                        Answer::Value(0) => continue,
                        _ => return Ok(None),
                    }
                }
            }
        }
    }

    fn row(e: &Entry) -> String {
        let (size, suffix) = match e.kind {
            EntryKind::File => (human::size(e.size), ""),
            EntryKind::Dir => ("-".to_string(), "/"),
        };
        format!(
            "{size:>10}  {}  {}{suffix}",
            human::time(e.mtime),
            display_safe(&e.path)
        )
    }

    /// Returns `Ok(false)` when the user chose to quit.
    fn list(&mut self) -> Result<bool, Error> {
        let Some(entries) = self.listing()? else {
            return Ok(false);
        };
        if entries.is_empty() {
            self.say("The server hosts no files.");
            return Ok(true);
        }
        let rows: Vec<String> = entries.iter().map(Self::row).collect();
        let (height, _) = self.term.size();
        if rows.len() + 4 <= usize::from(height) {
            for r in &rows {
                self.say(r);
            }
            return Ok(true);
        }
        // Too long for the screen: a filterable list instead.
        answer(
            FuzzySelect::with_theme(&*self.theme)
                .with_prompt(format!(
                    "{} entries; type to filter, Esc to go back",
                    rows.len()
                ))
                .items(&rows)
                .max_length(usize::from(height).saturating_sub(4).max(5))
                .interact_on_opt(&self.term),
        )?;
        Ok(true)
    }

    fn download(&mut self) -> Result<bool, Error> {
        let Some(entries) = self.listing()? else {
            return Ok(false);
        };
        let mut files: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .collect();
        if files.is_empty() {
            self.say("The server hosts no files.");
            return Ok(true);
        }
        if files.len() > FILTER_ABOVE {
            let filter = answer(
                Input::<String>::with_theme(&*self.theme)
                    .with_prompt(format!(
                        "{} files; filter by pattern (*.log) or text, empty for all",
                        files.len()
                    ))
                    .allow_empty(true)
                    .interact_text_on(&self.term)
                    .map(Some),
            )?;
            let Answer::Value(filter) = filter else {
                return Ok(true);
            };
            let filter = filter.trim();
            if !filter.is_empty() {
                let keep: Vec<String> = if select::is_pattern(filter) {
                    let all: Vec<Entry> = files.iter().map(|e| (*e).clone()).collect();
                    select::expand(&[filter.to_string()], false, Some(&all)).files
                } else {
                    files
                        .iter()
                        .filter(|e| e.path.contains(filter))
                        .map(|e| e.path.clone())
                        .collect()
                };
                files.retain(|e| keep.contains(&e.path));
                if files.is_empty() {
                    self.say(&format!("No files match '{filter}'."));
                    return Ok(true);
                }
            }
        }
        let rows: Vec<String> = files.iter().map(|e| Self::row(e)).collect();
        let picked = answer(
            MultiSelect::with_theme(&*self.theme)
                .with_prompt("Pick files: space ticks, a ticks all, Enter downloads, Esc goes back")
                .items(&rows)
                .interact_on_opt(&self.term),
        )?;
        let Answer::Value(picked) = picked else {
            return Ok(true);
        };
        if picked.is_empty() {
            self.say("Nothing ticked; nothing downloaded.");
            return Ok(true);
        }
        let mode = answer(
            Select::with_theme(&*self.theme)
                .with_prompt(format!("Download {} file(s) how?", picked.len()))
                .items(&[
                    "Parallel (one connection per file)",
                    "Serial (one connection)",
                ])
                .default(0)
                .interact_on_opt(&self.term),
        )?;
        let Answer::Value(mode) = mode else {
            return Ok(true);
        };
        let names: Vec<String> = picked.iter().map(|&i| files[i].path.clone()).collect();
        let settings = GetSettings {
            server: self.settings.server.clone(),
            download_dir: self.settings.download_dir.clone(),
            parallel: mode == 0,
            jobs: self.settings.jobs,
            recursive: false,
            retries: self.settings.retries,
            timeout: self.settings.timeout,
            resume: true,
            no_clobber: false,
            fsync: self.settings.fsync,
        };
        let progress = Progress::new(false, false);
        match transfer::get(&settings, &names, &progress) {
            Ok(report) => progress.finish(&report.summary()),
            Err(e) => {
                progress.finish("");
                self.say(&format!("fxfer: {e}"));
            }
        }
        Ok(true)
    }

    fn change_folder(&mut self) -> Result<bool, Error> {
        let current = self.settings.download_dir.display().to_string();
        let new = answer(
            Input::<String>::with_theme(&*self.theme)
                .with_prompt("Download folder")
                .default(current.clone())
                .interact_text_on(&self.term)
                .map(Some),
        )?;
        if let Answer::Value(dir) = new {
            let dir = dir.trim();
            if !dir.is_empty() {
                // No shell expands what is typed here: do it as one would.
                let dir = expand_tilde(Path::new(dir));
                match check_folder(&dir) {
                    Err(why) => self.say(&format!("fxfer: {why}; downloads still go to {current}")),
                    Ok(()) => {
                        self.settings.download_dir = dir;
                        self.say(&format!(
                            "Downloads now go to {} (created on first download).",
                            self.settings.download_dir.display()
                        ));
                    }
                }
            }
        }
        Ok(true)
    }

    fn info(&mut self) -> Result<bool, Error> {
        let Some(entries) = self.listing()? else {
            return Ok(false);
        };
        let files: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .collect();
        let total: u64 = files.iter().map(|e| e.size).sum();
        self.say(&format!("Server:          {}", self.settings.server));
        self.say(&format!("Protocol:        fxfer v{}", protocol::VERSION));
        self.say(&format!("Files:           {}", files.len()));
        self.say(&format!("Folders:         {}", entries.len() - files.len()));
        self.say(&format!("Total size:      {}", human::size(total)));
        self.say(&format!(
            "Download folder: {}",
            self.settings.download_dir.display()
        ));
        Ok(true)
    }
}
