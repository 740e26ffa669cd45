//! Which servers a client trusts, modelled on OpenSSH's known_hosts.
//!
//! A server is trusted when its key matches the fingerprint pinned with
//! `--fingerprint`, or the one recorded for its address in the
//! known-servers file, or (for a server with a CA-issued certificate) when
//! the system's CAs vouch for it under the host name; a certificate issued
//! by a CA that does not (an unknown CA, another name, expired) is refused.
//! A self-signed server seen for the first time is recorded: at once on
//! 127.0.0.1 and ::1 (only these: the rest of 127.0.0.0/8 is treated like
//! any other address, as tunnels and containers' ports are often put
//! there), after asking on a terminal, with
//! `--trust-new` otherwise; else it is refused. A recorded server whose
//! key changed is always refused, and its line is never rewritten.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use rustls::pki_types::CertificateDer;

use super::identity::Fingerprint;
use crate::error::describe_io;

/// How this client decides whom to trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustSettings {
    /// The server must have exactly this key.
    pub pin: Option<Fingerprint>,
    /// Record a server seen for the first time without asking.
    pub trust_new: bool,
    /// The known-servers file.
    pub file: PathBuf,
}

/// Why a server was trusted (for `-v` and the shell's server info).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trusted {
    Pinned,
    /// Matches line `n` of the known-servers file.
    Known(usize),
    /// Recorded just now, at line `n`.
    Recorded(usize),
    /// Its certificate is valid for the host name under the system's CAs.
    Ca,
}

impl std::fmt::Display for Trusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trusted::Pinned => f.write_str("matches --fingerprint"),
            Trusted::Known(n) => write!(f, "known server (line {n})"),
            Trusted::Recorded(n) => write!(f, "first contact, recorded (line {n})"),
            Trusted::Ca => f.write_str("certificate valid for the host name (system CAs)"),
        }
    }
}

/// Asks the person at the terminal whether to trust a new server.
pub type Ask = dyn Fn(&str, &Fingerprint) -> bool + Send + Sync;

static PROMPT: OnceLock<Box<Ask>> = OnceLock::new();
/// One decision at a time, so parallel connections to a new server ask
/// (and record) once; the servers the user said no to, so they are not
/// asked about again by the next connection of the same run.
static DECIDING: Mutex<Vec<(String, Fingerprint)>> = Mutex::new(Vec::new());

/// Installs the question asked on a terminal (the CLI does; without it,
/// new servers off loopback need `--trust-new` or a pin).
pub fn set_prompt(ask: Box<Ask>) {
    let _ = PROMPT.set(ask);
}

/// The default known-servers file: `$XDG_DATA_HOME/fxfer/known_servers`,
/// else `~/.local/share/fxfer/known_servers`.
pub fn default_file() -> PathBuf {
    data_dir().join("known_servers")
}

/// `$XDG_DATA_HOME/fxfer` (or `~/.local/share/fxfer`).
pub fn data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("fxfer");
    }
    let home = std::env::var_os("HOME").filter(|v| !v.is_empty());
    PathBuf::from(home.unwrap_or_else(|| ".".into())).join(".local/share/fxfer")
}

/// Decides whether the server at `addr` (as the user named it: host and
/// port) that showed `certs` is to be trusted. `host` is the name the
/// client connected to, `peer` the address it reached.
pub fn check(
    t: &TrustSettings,
    addr: &str,
    host: &str,
    peer: IpAddr,
    certs: &[CertificateDer<'static>],
) -> Result<Trusted, String> {
    let Some(ee) = certs.first() else {
        return Err("the server showed no certificate".into());
    };
    let fp = Fingerprint::of_cert(ee)?;
    if let Some(pin) = &t.pin {
        return if *pin == fp {
            Ok(Trusted::Pinned)
        } else {
            Err(format!(
                "server key does not match --fingerprint: it presents {fp}, expected {pin}; \
                 refusing to connect"
            ))
        };
    }
    let mut refused = DECIDING.lock().unwrap_or_else(|p| p.into_inner());
    let known = read(&t.file)?;
    if let Some(line) = known.iter().find(|l| l.addr == addr) {
        return if line.fp == fp {
            Ok(Trusted::Known(line.no))
        } else {
            Err(format!(
                "SERVER KEY CHANGED: {addr} was known as {} but now presents {fp}; \
                 someone may be impersonating it. If its key really changed, delete line {} \
                 of {} and connect again",
                line.fp,
                line.no,
                t.file.display()
            ))
        };
    }
    match super::tls::ca_verifies(certs, host) {
        Ok(()) => return Ok(Trusted::Ca),
        // A certificate that names an authority is trusted on that
        // authority's word or not at all: recording it on first sight
        // would accept one the authority never issued for this name.
        Err(why) if super::tls::claims_ca(certs) => {
            return Err(format!(
                "certificate not valid for '{host}': {why}; refusing to connect \
                 (to trust this server's key anyway, connect with --fingerprint {fp})"
            ))
        }
        Err(_) => {}
    }
    // Only this machine's own loopback addresses are taken on trust: a
    // name or another address could lead anywhere.
    let local =
        peer == IpAddr::from(Ipv4Addr::LOCALHOST) || peer == IpAddr::from(Ipv6Addr::LOCALHOST);
    let record = if local || t.trust_new {
        true
    } else if refused.iter().any(|(a, f)| a == addr && *f == fp) {
        false
    } else if let Some(ask) = PROMPT.get() {
        ask(addr, &fp)
    } else {
        return Err(format!(
            "unknown server; its fingerprint is {fp}. If that is the fingerprint `fxfer serve` \
             printed, connect with --fingerprint {fp} (or --trust-new to record it in {})",
            t.file.display()
        ));
    };
    if !record {
        refused.push((addr.to_string(), fp));
        return Err(format!("server {fp} not trusted; nothing was sent"));
    }
    let no = append(&t.file, addr, &fp)?;
    log::info!(
        "{addr}: first contact; recorded fingerprint {fp} in {} line {no}",
        t.file.display()
    );
    Ok(Trusted::Recorded(no))
}

/// One line of the known-servers file.
#[derive(Debug)]
struct Line {
    no: usize,
    addr: String,
    fp: Fingerprint,
}

/// Reads the file: `ADDRESS SHA256:...` per line; blank lines and `#`
/// comments are skipped; a missing file is empty.
fn read(path: &Path) -> Result<Vec<Line>, String> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(format!(
                "cannot read known-servers file {}: {}",
                path.display(),
                describe_io(&e)
            ))
        }
    };
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let mut parts = l.split_whitespace();
        let (Some(addr), Some(fp)) = (parts.next(), parts.next()) else {
            return Err(format!(
                "{} line {}: expected ADDRESS SHA256:FINGERPRINT",
                path.display(),
                i + 1
            ));
        };
        let fp = Fingerprint::parse(fp)
            .map_err(|e| format!("{} line {}: {e}", path.display(), i + 1))?;
        out.push(Line {
            no: i + 1,
            addr: addr.to_string(),
            fp,
        });
    }
    Ok(out)
}

/// Appends a line for `addr`; returns its line number.
fn append(path: &Path, addr: &str, fp: &Fingerprint) -> Result<usize, String> {
    let fail = |e: std::io::Error| {
        format!(
            "cannot record the server in {}: {}",
            path.display(),
            describe_io(&e)
        )
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(fail)?;
    }
    let existing = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(fail(e)),
    };
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(fail)?;
    let mut line = String::new();
    if !existing.is_empty() && !existing.ends_with('\n') {
        line.push('\n');
    }
    line += &format!("{addr} {fp}\n");
    f.write_all(line.as_bytes()).map_err(fail)?;
    Ok(existing.lines().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_appended_and_found_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/known_servers");
        let a = Fingerprint([1; 32]);
        let b = Fingerprint([2; 32]);
        assert_eq!(append(&file, "h:1", &a).unwrap(), 1);
        fs::write(
            &file,
            format!("{}# note\n", fs::read_to_string(&file).unwrap()),
        )
        .unwrap();
        assert_eq!(append(&file, "[::1]:2", &b).unwrap(), 3);
        let l = read(&file).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!((l[1].no, l[1].addr.as_str(), l[1].fp), (3, "[::1]:2", b));
        fs::write(&file, "h:1 nonsense\n").unwrap();
        assert!(read(&file).unwrap_err().contains("line 1"));
    }
}
