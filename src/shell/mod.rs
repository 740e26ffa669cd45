//! `fxfer shell`: an interactive session for a person at a terminal. It
//! opens on the server's files ([`browser`]), where folders are entered and
//! files ticked; Enter downloads through `transfer::get`, exactly as `fxfer
//! get` does ([`download`]). Esc leads to a small dialoguer menu (download
//! folder, server info, quit).
//!
//! There is no dead end: when no server answers (at the start or later),
//! the shell says so and offers to retry, change the address or quit.
//! Ctrl-C at a prompt goes back instead of killing the process, and the
//! cursor is always shown again on the way out.

mod browser;
mod download;

use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use console::Term;
use dialoguer::theme::{ColorfulTheme, SimpleTheme, Theme};
use dialoguer::{Input, Select};

use crate::client::Connection;
use crate::config::{split_host_port, ServerAddr};
use crate::error::{Error, Exit};
use crate::human;
use crate::paths::{check_folder, expand_tilde};
use crate::protocol::{self, Entry, EntryKind};
use crate::transport::identity::Fingerprint;
use browser::{Browser, Outcome};

const MENU: [&str; 4] = [
    "Browse files",
    "Change download folder",
    "Server info",
    "Quit",
];

/// A download is running: Ctrl-C (SIGINT) stops it.
static DOWNLOADING: AtomicBool = AtomicBool::new(false);

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
    pub limits: crate::client::Limits,
    pub fsync: bool,
    pub limit_rate: Option<u64>,
}

struct Session {
    settings: ShellSettings,
    conn: Option<Connection>,
    /// A server answered at least once (for the exit status).
    reached: bool,
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
    // Ctrl-C must not kill the session: at a prompt it arrives as a key
    // and means "back"; during a download it stops the download the way
    // it stops `fxfer get` (what arrived is kept), and the session goes on.
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT])
        .map_err(|e| Error::io("cannot install signal handler", e))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for _ in signals.forever() {
                if DOWNLOADING.load(Ordering::SeqCst) {
                    crate::interrupt::request();
                }
            }
        })
        .map_err(|e| Error::io("cannot start the signal thread", e))?;

    let theme: Box<dyn Theme> = if console::colors_enabled() {
        Box::new(ColorfulTheme::default())
    } else {
        Box::new(SimpleTheme)
    };
    let mut s = Session {
        settings,
        conn: None,
        reached: false,
        theme,
        term: Term::stderr(),
    };
    let result = s.start();
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

fn interrupted<T>(r: &dialoguer::Result<T>) -> bool {
    matches!(r, Err(dialoguer::Error::IO(e)) if e.kind() == io::ErrorKind::Interrupted)
}

impl Session {
    fn say(&self, line: &str) {
        let _ = self.term.write_line(&crate::paths::display_safe(line));
    }

    /// A choice among `items`. Esc, `q` and Ctrl-C go back, and none of
    /// them leaves the menu drawn (dialoguer clears it only on Esc).
    fn choose(&self, prompt: &str, items: &[&str], default: usize) -> Result<Answer<usize>, Error> {
        let r = Select::with_theme(&*self.theme)
            .with_prompt(prompt)
            .items(items)
            .default(default)
            .interact_on_opt(&self.term);
        if interrupted(&r) {
            // The prompt (perhaps wrapped) and one line per item.
            let width = usize::from(self.term.size().1).max(1);
            let prompt_lines = (console::measure_text_width(prompt) + 4).div_ceil(width);
            let _ = self.term.clear_last_lines(prompt_lines + items.len());
            let _ = self.term.show_cursor();
        }
        answer(r)
    }

    /// A line of text, offering `default`; Esc or Ctrl-C go back.
    fn ask(&self, prompt: &str, default: String) -> Result<Answer<String>, Error> {
        let r = Input::<String>::with_theme(&*self.theme)
            .with_prompt(prompt)
            .default(default)
            .interact_text_on(&self.term)
            .map(Some);
        if interrupted(&r) {
            let _ = self.term.clear_line();
        }
        answer(r)
    }

    /// The exit status when the user quits now.
    fn quit_status(&self) -> Exit {
        if self.reached {
            Exit::Success
        } else {
            Exit::Connection
        }
    }

    fn start(&mut self) -> Result<Exit, Error> {
        let Some(listing) = self.listing()? else {
            return Ok(self.quit_status());
        };
        self.say(&format!(
            "Connected to {} (fxfer protocol v{}). Downloads go to {}.",
            self.settings.server,
            self.conn
                .as_ref()
                .map_or(protocol::VERSION, Connection::version),
            self.settings.download_dir.display()
        ));
        let mut browser = Browser::new(self.settings.server.to_string(), listing);
        if !self.browse(&mut browser)? {
            return Ok(Exit::Success);
        }
        let mut last = 0;
        loop {
            let choice = self.choose(&format!("fxfer {}", self.settings.server), &MENU, last)?;
            let Answer::Value(i) = choice else {
                return Ok(Exit::Success);
            };
            last = i;
            let step = match i {
                0 => self.listing().and_then(|l| match l {
                    Some(l) => {
                        browser.reload(l);
                        self.browse(&mut browser)
                    }
                    None => Ok(false),
                }),
                1 => self.change_folder(),
                2 => self.info(),
                _ => return Ok(Exit::Success),
            };
            match step {
                Ok(true) => {}
                Ok(false) => return Ok(Exit::Success),
                Err(e) => self.say(&format!("fxfer: {e}")),
            }
        }
    }

    /// The browser until the user wants the menu (`Ok(true)`) or chose to
    /// quit at a prompt (`Ok(false)`).
    fn browse(&mut self, browser: &mut Browser) -> Result<bool, Error> {
        loop {
            let outcome = browser
                .run(&self.term)
                .map_err(|e| Error::io("terminal", e))?;
            match outcome {
                Outcome::Menu => return Ok(true),
                Outcome::Reload => match self.listing()? {
                    Some(l) => browser.reload(l),
                    None => return Ok(false),
                },
                Outcome::Download(names) => match self.download(browser, &names) {
                    Ok(download::End::Done(summary)) => {
                        browser.clear_ticks();
                        browser.set_message(summary);
                    }
                    Ok(download::End::Kept) => {}
                    Ok(download::End::Stopped { left, message }) => {
                        browser.set_ticks(&left);
                        browser.set_message(message);
                    }
                    Ok(download::End::Quit) => return Ok(false),
                    Err(e) => {
                        self.say(&format!("fxfer: {e}"));
                        browser.set_message(format!("fxfer: {e}"));
                    }
                },
            }
        }
    }

    /// The server's whole listing. On a lost connection, reconnects once
    /// quietly (the server drops idle sessions), then asks: retry, another
    /// address, or quit. `None`: the user chose to quit.
    fn listing(&mut self) -> Result<Option<Vec<Entry>>, Error> {
        let mut quiet_retry = self.conn.is_some();
        loop {
            let attempt = match self.conn.as_mut() {
                Some(c) => c.list("", true),
                None => Connection::connect(&self.settings.server, &self.settings.limits).and_then(
                    |mut c| {
                        let l = c.list("", true);
                        self.conn = Some(c);
                        l
                    },
                ),
            };
            match attempt {
                Ok(mut l) => {
                    self.reached = true;
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
                    // The prompt below names the address; the reason alone
                    // keeps the line within 80 columns.
                    let why = match &e {
                        Error::Connect { reason, .. } => reason.clone(),
                        e => e.to_string(),
                    };
                    self.say(&format!("fxfer: {why}"));
                    if !self.unreachable()? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// No server answers: retry, change the address, or quit (`false`).
    fn unreachable(&mut self) -> Result<bool, Error> {
        loop {
            let pick = self.choose(
                &format!("No fxfer server answers at {}", self.settings.server),
                &["Retry", "Change the server address", "Quit"],
                0,
            )?;
            match pick {
                Answer::Value(0) => return Ok(true),
                Answer::Value(1) => {
                    if self.change_address()? {
                        return Ok(true);
                    }
                }
                _ => return Ok(false),
            }
        }
    }

    /// Asks for a new address (`HOST`, `HOST:PORT`, `[IPv6]:PORT`); a port
    /// left out stays what it was. `false`: nothing changed.
    fn change_address(&mut self) -> Result<bool, Error> {
        let new = self.ask(
            "Server address (HOST or HOST:PORT)",
            self.settings.server.to_string(),
        )?;
        let Answer::Value(text) = new else {
            return Ok(false);
        };
        match split_host_port(text.trim()) {
            Ok((host, _)) if host.is_empty() => {
                self.say("fxfer: the address needs a host name or IP address");
                Ok(false)
            }
            Ok((host, port)) => {
                self.settings.server.host = host;
                if let Some(p) = port {
                    self.settings.server.port = p;
                }
                self.conn = None;
                Ok(true)
            }
            Err(why) => {
                self.say(&format!("fxfer: {why}"));
                Ok(false)
            }
        }
    }

    fn change_folder(&mut self) -> Result<bool, Error> {
        let current = self.settings.download_dir.display().to_string();
        let new = self.ask("Download folder", current.clone())?;
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
        self.say(&format!(
            "Protocol:        fxfer v{}",
            self.conn
                .as_ref()
                .map_or(protocol::VERSION, Connection::version)
        ));
        if let Some(c) = &self.conn {
            self.say(&format!("Transport:       {}", c.transport()));
            match c.identity() {
                Some((fp, why)) => {
                    self.say(&format!("Fingerprint:     {fp}"));
                    self.say(&format!("Trusted because: {why}"));
                }
                None => {
                    self.say("Fingerprint:     none (plaintext: the server is not authenticated)")
                }
            }
        }
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

/// Asks at the terminal whether to trust a server seen for the first time
/// (installed by `main` when stdin and stderr are terminals).
pub fn confirm_new_server(addr: &str, fp: &Fingerprint) -> bool {
    let term = Term::stderr();
    let _ = term.write_line(&format!(
        "The server {addr} is not known yet. Its key fingerprint is\n  {fp}\n\
         Compare it with the `fingerprint` line `fxfer serve` printed on the server."
    ));
    dialoguer::Confirm::new()
        .with_prompt("Trust this server and remember it?")
        .default(false)
        .interact_on_opt(&term)
        .ok()
        .flatten()
        .unwrap_or(false)
}
