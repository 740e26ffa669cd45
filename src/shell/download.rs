//! The shell's download step: how (parallel or serial), then the same
//! `transfer::get` as `fxfer get`, with its progress bars, verification and
//! resume. When the server goes away part-way, it says what is complete,
//! what partial data is kept for resuming and what never started, and
//! offers to resume (against the same or another address).

use super::browser::Browser;
use std::sync::atomic::Ordering;

use super::{Answer, Session, DOWNLOADING};
use crate::config::GetSettings;
use crate::error::{Error, Exit};
use crate::human;
use crate::progress::Progress;
use crate::transfer::{self, Report};

/// How a download step ended.
pub enum End {
    /// Back to the browser with this summary.
    Done(String),
    /// The user went back before (or after a failed) download; ticks stay.
    Kept,
    /// Ctrl-C stopped it: the files not finished stay ticked.
    Stopped { left: Vec<String>, message: String },
    /// The user chose to quit at a prompt.
    Quit,
}

const MODES: [&str; 2] = [
    "Parallel (several connections, large files in pieces)",
    "Serial (one connection)",
];

impl Session {
    pub(super) fn download(&mut self, browser: &Browser, names: &[String]) -> Result<End, Error> {
        let totals = browser.totals_of(names);
        let mode = self.choose(
            &format!(
                "Download {} to {}",
                totals.describe(),
                self.settings.download_dir.display()
            ),
            &MODES,
            0,
        )?;
        let Answer::Value(mode) = mode else {
            return Ok(End::Kept);
        };
        let Some(compare) = self.only_changed(names)? else {
            return Ok(End::Kept);
        };
        let mut todo: Vec<String> = names.to_vec();
        loop {
            let settings = self.get_settings(mode == 0, compare);
            let progress = Progress::new(false, false);
            crate::interrupt::reset();
            DOWNLOADING.store(true, Ordering::SeqCst);
            let result = transfer::get(&settings, &todo, &progress);
            DOWNLOADING.store(false, Ordering::SeqCst);
            let (summary, lost) = match result {
                Ok(report) if report.interrupted => {
                    progress.finish(&report.summary());
                    crate::interrupt::reset();
                    let left: Vec<String> = report
                        .outcomes
                        .iter()
                        .filter(|o| o.result.is_err())
                        .map(|o| o.name.clone())
                        .collect();
                    let message = format!(
                        "Stopped. {} Enter downloads the rest.",
                        self.kept(names, &left)
                    );
                    self.say(&message);
                    return Ok(End::Stopped { left, message });
                }
                Ok(report) => {
                    let summary = report.summary();
                    progress.finish(&summary);
                    let lost = lost_to_the_connection(&report);
                    (summary, lost)
                }
                // A serial run that never reached the server, or another
                // failure of the whole job.
                Err(e) if e.exit() == Exit::Connection => {
                    progress.finish("");
                    self.say(&format!("fxfer: {e}"));
                    (String::new(), todo.clone())
                }
                Err(e) => {
                    progress.finish("");
                    return Err(e);
                }
            };
            if lost.is_empty() {
                return Ok(End::Done(summary));
            }
            self.say(&self.kept(names, &lost));
            let pick = self.choose(
                &format!("The server at {} went away. Resume?", self.settings.server),
                &[
                    "Resume the download",
                    "Change the server address and resume",
                    "Back to the files (partial downloads are kept)",
                    "Quit (partial downloads are kept)",
                ],
                0,
            )?;
            match pick {
                Answer::Value(0) => {}
                Answer::Value(1) => {
                    self.change_address()?;
                }
                Answer::Value(3) => return Ok(End::Quit),
                _ => return Ok(End::Kept),
            }
            todo = lost;
            // The session's own connection went with the server.
            self.conn = None;
        }
    }

    fn get_settings(&self, parallel: bool, compare: transfer::Compare) -> GetSettings {
        GetSettings {
            server: self.settings.server.clone(),
            download_dir: self.settings.download_dir.clone(),
            parallel,
            jobs: self.settings.jobs,
            recursive: false,
            retries: self.settings.retries,
            limits: self.settings.limits,
            resume: true,
            no_clobber: false,
            fsync: self.settings.fsync,
            limit_rate: self.settings.limit_rate,
            output: None,
            compare,
            delete: false,
            dry_run: false,
        }
    }

    /// When some of `names` are already in the download folder, offers to
    /// fetch only those that changed (compared by size, time and content)
    /// or all again. `None`: the user went back.
    fn only_changed(&self, names: &[String]) -> Result<Option<transfer::Compare>, Error> {
        let here = names
            .iter()
            .filter(|n| {
                crate::paths::local_target(&self.settings.download_dir, n).is_ok_and(|p| p.exists())
            })
            .count();
        if here == 0 {
            return Ok(Some(transfer::Compare::Verify));
        }
        let choice = self.choose(
            &format!("{here} of {} already here; download", names.len()),
            &["Only changed files", "All of them again"],
            0,
        )?;
        Ok(match choice {
            Answer::Value(0) => Some(transfer::Compare::Verify),
            Answer::Value(_) => Some(transfer::Compare::None),
            _ => None,
        })
    }

    /// What a download cut short left on disk, as one paragraph:
    /// "Kept: 2 of 5 files complete in DIR; 1 partial (48.0 MiB) to resume;
    /// 2 not started."
    fn kept(&self, asked: &[String], lost: &[String]) -> String {
        let dir = &self.settings.download_dir;
        let mut partial = 0;
        let mut partial_bytes = 0;
        for name in lost {
            let have = transfer::partial_len(dir, name);
            if have > 0 {
                partial += 1;
                partial_bytes += have;
            }
        }
        let complete = asked.len() - lost.len();
        let not_started = lost.len() - partial;
        let mut s = format!(
            "Kept: {complete} of {} file{} complete in {}",
            asked.len(),
            if asked.len() == 1 { "" } else { "s" },
            dir.display()
        );
        if partial > 0 {
            s += &format!(
                "; {partial} partial ({} so far) to resume",
                human::size(partial_bytes)
            );
        }
        if not_started > 0 {
            s += &format!("; {not_started} not started");
        }
        s + "."
    }
}

/// The files that failed because the connection did, not the file.
fn lost_to_the_connection(report: &Report) -> Vec<String> {
    report
        .outcomes
        .iter()
        .filter(|o| o.result.is_err() && o.unreachable)
        .map(|o| o.name.clone())
        .collect()
}
