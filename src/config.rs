//! The TOML config file and the one place where defaults, the file and the
//! command line are merged: flags win over the file, the file over the
//! built-in defaults.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cli::{GetArgs, LimitsArgs, ServeArgs, ServerAddrArgs, ShellArgs};
use crate::client::{
    Limits, DEFAULT_MAX_LIST_BYTES, DEFAULT_MAX_LIST_ENTRIES, DEFAULT_SPEED_LIMIT,
    DEFAULT_SPEED_TIME,
};
use crate::error::{describe_io, Error};
use crate::paths::expand_tilde;
use crate::ratelimit::parse_rate;
use crate::transport::identity::Fingerprint;
use crate::transport::known::TrustSettings;

pub const DEFAULT_IP: &str = "127.0.0.1";
pub const DEFAULT_PORT: u16 = 9000;
pub const DEFAULT_HOST_DIR: &str = "./host_dir";
pub const DEFAULT_DOWNLOAD_DIR: &str = "./downloads";
pub const DEFAULT_LOG_FILE: &str = "fxfer-server.log";
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
pub const DEFAULT_GRACE_SECS: u64 = 10;
pub const DEFAULT_MAX_PER_IP: usize = 16;
pub const DEFAULT_HANDSHAKE_SECS: u64 = 10;
pub const DEFAULT_IDLE_SECS: u64 = 300;
pub const DEFAULT_WRITE_SECS: u64 = 60;
pub const DEFAULT_JOBS: usize = 8;
pub const DEFAULT_RETRIES: u32 = 3;
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;

/// The whole file. Every field is optional; unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Defaults for `fxfer serve`.
    pub server: Option<ServerFile>,
    /// Defaults for `fxfer ls` and `fxfer get`.
    pub client: Option<ClientFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    /// Address to listen on.
    pub ip: Option<String>,
    /// Port to listen on (0 = any free port).
    pub port: Option<u16>,
    /// Folder to host.
    pub dir: Option<PathBuf>,
    /// Where the server log goes.
    pub log_file: Option<PathBuf>,
    /// Most clients served at once.
    pub max_connections: Option<usize>,
    /// Seconds transfers may take to finish after a shutdown signal.
    pub grace_period: Option<u64>,
    /// Most connections from one IP address at once.
    pub max_connections_per_ip: Option<usize>,
    /// Seconds a new connection has to complete the handshake.
    pub handshake_timeout: Option<u64>,
    /// Unfinished handshakes allowed at once: "START:RATE:FULL" or "N".
    pub max_startups: Option<String>,
    /// Seconds an idle connection is kept open.
    pub idle_timeout: Option<u64>,
    /// Seconds a client may stop reading before it is dropped.
    pub write_timeout: Option<u64>,
    /// File holding the shared token clients must prove they know.
    pub token_file: Option<PathBuf>,
    /// List and serve dot-files too.
    pub hidden: Option<bool>,
    /// Most bytes per second sent to each connection ("10M" or a number).
    pub limit_rate: Option<RateValue>,
    /// Folder for the server's identity (key and certificate).
    pub state_dir: Option<PathBuf>,
    /// Certificate chain (PEM) to use instead of the self-signed identity.
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of `cert`.
    pub key: Option<PathBuf>,
    /// Serve without TLS.
    pub plaintext: Option<bool>,
}

/// A rate in the config file: "10M" or a plain number of bytes per second.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RateValue {
    Bytes(u64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFile {
    /// Server address or host name.
    pub ip: Option<String>,
    /// Server port.
    pub port: Option<u16>,
    /// Download folder.
    pub dir: Option<PathBuf>,
    /// Download over several connections at once by default.
    pub parallel: Option<bool>,
    /// Most connections at once when parallel.
    pub jobs: Option<usize>,
    /// Retries after a transient failure (connection refused or lost).
    pub retries: Option<u32>,
    /// Seconds without progress (connecting, or bytes arriving) before a
    /// transfer counts as failed.
    pub timeout: Option<u64>,
    /// Slowest acceptable rate, bytes per second over `speed_time` (0: off).
    pub speed_limit: Option<u64>,
    /// Seconds over which `speed_limit` is measured.
    pub speed_time: Option<u64>,
    /// Seconds a whole `ls` or `get` may take, retries included.
    pub max_time: Option<u64>,
    /// Most entries a server's listing may have.
    pub max_list_entries: Option<u64>,
    /// Most bytes a server's listing may take.
    pub max_list_bytes: Option<u64>,
    /// Flush each file to disk before giving it its final name.
    pub fsync: Option<bool>,
    /// How local copies are compared: "verify", "update" or "checksum".
    pub compare: Option<crate::transfer::Compare>,
    /// File holding the server's shared token.
    pub token_file: Option<PathBuf>,
    /// Most bytes per second for a whole download ("10M" or a number).
    pub limit_rate: Option<RateValue>,
    /// Trust only a server with this key (`SHA256:...`).
    pub fingerprint: Option<String>,
    /// The known-servers file.
    pub known_servers: Option<PathBuf>,
    /// Talk to servers without TLS.
    pub plaintext: Option<bool>,
}

/// Where a config file was found (for messages).
#[derive(Debug, Default)]
pub struct Loaded {
    pub file: FileConfig,
    pub path: Option<PathBuf>,
    /// The file's text, to point at the line of a value found wrong later.
    pub text: String,
}

impl Loaded {
    fn new(file: FileConfig, path: PathBuf, text: String) -> Loaded {
        Loaded {
            file,
            path: Some(path),
            text,
        }
    }

    /// The 1-based line of `[table] key` in the file, if it is there.
    fn line_of(&self, table: &str, key: &str) -> Option<usize> {
        let doc = toml_edit::ImDocument::parse(self.text.as_str()).ok()?;
        let span = doc.get(table)?.get(key)?.span()?;
        Some(
            self.text[..span.start.min(self.text.len())]
                .matches('\n')
                .count()
                + 1,
        )
    }
}

/// Where a resolved value came from, so an error about it can point there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Flag,
    File,
    Default,
}

/// Picks flag over file over default and remembers which one won.
fn pick<T>(flag: Option<T>, file: Option<T>, default: T) -> (T, Origin) {
    match (flag, file) {
        (Some(v), _) => (v, Origin::Flag),
        (None, Some(v)) => (v, Origin::File),
        (None, None) => (default, Origin::Default),
    }
}

/// Checks resolved values of one table (`server` or `client`): a bad value
/// is blamed on the flag when it came from the command line, on the file,
/// line and key when it came from the config file.
struct Checker<'a> {
    loaded: &'a Loaded,
    table: &'static str,
}

impl Checker<'_> {
    /// `flag` is the option's long name (`--max-connections`); the config
    /// key is the same with underscores.
    fn bad(&self, flag: &str, origin: Origin, why: &str) -> Error {
        let key = flag.trim_start_matches('-').replace('-', "_");
        match (origin, &self.loaded.path) {
            (Origin::File, Some(path)) => {
                let mut msg = format!("config file {}", path.display());
                if let Some(n) = self.loaded.line_of(self.table, &key) {
                    msg += &format!(", line {n}");
                }
                Error::Config(format!("{msg}, key `{key}`: {why}"))
            }
            _ => Error::Usage(format!("'{flag}' {why}")),
        }
    }

    fn at_least_one(&self, flag: &str, v: (usize, Origin)) -> Result<usize, Error> {
        match v {
            (0, origin) => Err(self.bad(flag, origin, "must be at least 1")),
            (n, _) => Ok(n),
        }
    }

    /// A rate (`--limit-rate`, `limit_rate`) from the flag, else the
    /// file; `None`: no limit.
    fn rate(&self, flag: Option<&str>, file: Option<&RateValue>) -> Result<Option<u64>, Error> {
        let (text, origin) = match (flag, file) {
            (Some(t), _) => (t.to_string(), Origin::Flag),
            (None, Some(RateValue::Text(t))) => (t.clone(), Origin::File),
            (None, Some(RateValue::Bytes(n))) => (n.to_string(), Origin::File),
            (None, None) => return Ok(None),
        };
        parse_rate(&text)
            .map(Some)
            .map_err(|e| self.bad("--limit-rate", origin, &e))
    }

    fn secs(&self, flag: &str, v: (u64, Origin)) -> Result<Duration, Error> {
        match v {
            (0, origin) => Err(self.bad(flag, origin, "must be at least 1 second")),
            (s, _) => Ok(Duration::from_secs(s)),
        }
    }
}

/// Finds and reads the config: `--config`, `$FXFER_CONFIG`, `./fxfer.toml`,
/// then `$XDG_CONFIG_HOME/fxfer/config.toml` (or `~/.config/...`). A path
/// named explicitly must exist; the implicit ones are optional.
pub fn load(explicit: Option<&Path>) -> Result<Loaded, Error> {
    if let Some(p) = explicit {
        return read(p);
    }
    if let Some(p) = std::env::var_os("FXFER_CONFIG").filter(|v| !v.is_empty()) {
        return read(Path::new(&p));
    }
    let mut implicit = vec![PathBuf::from("fxfer.toml")];
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        implicit.push(PathBuf::from(x).join("fxfer/config.toml"));
    } else if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        implicit.push(PathBuf::from(h).join(".config/fxfer/config.toml"));
    }
    for p in implicit {
        if p.is_file() {
            return read(&p);
        }
    }
    Ok(Loaded::default())
}

fn read(path: &Path) -> Result<Loaded, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Config(format!(
            "cannot read config file {}: {}",
            path.display(),
            describe_io(&e)
        ))
    })?;
    let file = parse(&text, path)?;
    Ok(Loaded::new(file, path.to_path_buf(), text))
}

/// Parses config text; errors name the file, the line and the key.
pub fn parse(text: &str, path: &Path) -> Result<FileConfig, Error> {
    toml::from_str(text).map_err(|e| {
        let mut msg = format!("config file {}", path.display());
        if let Some(span) = e.span() {
            let line_no = text[..span.start.min(text.len())].matches('\n').count() + 1;
            msg += &format!(", line {line_no}");
            let line = text.lines().nth(line_no - 1).unwrap_or("");
            if let Some((key, _)) = line.split_once('=') {
                let key = key.trim();
                if !key.is_empty() && !key.starts_with('[') {
                    msg += &format!(", key `{key}`");
                }
            }
        }
        msg += ": ";
        msg += e.message().trim();
        Error::Config(msg)
    })
}

/// Everything `fxfer serve` needs, resolved.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub ip: IpAddr,
    pub port: u16,
    pub dir: PathBuf,
    /// `None`: no log file, everything goes to stderr.
    pub log_file: Option<PathBuf>,
    pub max_connections: usize,
    pub grace_period: Duration,
    pub max_connections_per_ip: usize,
    pub handshake_timeout: Duration,
    /// The bound on unfinished handshakes (sshd's MaxStartups).
    pub max_startups: crate::server::Startups,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    /// Shared token clients must prove they know.
    pub token: Option<Vec<u8>>,
    pub hidden: bool,
    /// Most bytes per second sent to each connection.
    pub limit_rate: Option<u64>,
    /// Without TLS.
    pub plaintext: bool,
    /// Where the self-signed identity is kept.
    pub state_dir: PathBuf,
    /// A certificate chain and key to use instead (`--cert`, `--key`).
    pub cert: Option<(PathBuf, PathBuf)>,
}

impl ServerSettings {
    pub fn resolve(args: &ServeArgs, loaded: &Loaded) -> Result<ServerSettings, Error> {
        let f = loaded.file.server.as_ref();
        let check = Checker {
            loaded,
            table: "server",
        };
        let (ip_text, port) = host_and_port(
            args.ip.as_deref(),
            args.port,
            f.and_then(|f| f.ip.as_deref()),
            f.and_then(|f| f.port),
            &check,
        )?;
        let ip_origin = match (&args.ip, f.and_then(|f| f.ip.as_ref())) {
            (Some(_), _) => Origin::Flag,
            (None, Some(_)) => Origin::File,
            (None, None) => Origin::Default,
        };
        let ip = ip_text.parse().map_err(|_| {
            check.bad(
                "--ip",
                ip_origin,
                &format!("must be an IP address, not '{ip_text}'"),
            )
        })?;
        let (log_file, _) = pick(
            args.log_file.clone(),
            f.and_then(|f| f.log_file.clone()),
            DEFAULT_LOG_FILE.into(),
        );
        Ok(ServerSettings {
            ip,
            port,
            dir: pick(
                args.dir.clone(),
                f.and_then(|f| f.dir.as_deref().map(expand_tilde)),
                DEFAULT_HOST_DIR.into(),
            )
            .0,
            // `-` means no log file: stderr (journald) only.
            log_file: (log_file != Path::new("-")).then_some(log_file),
            max_connections: check.at_least_one(
                "--max-connections",
                pick(
                    args.max_connections,
                    f.and_then(|f| f.max_connections),
                    DEFAULT_MAX_CONNECTIONS,
                ),
            )?,
            grace_period: Duration::from_secs(
                pick(
                    args.grace_period,
                    f.and_then(|f| f.grace_period),
                    DEFAULT_GRACE_SECS,
                )
                .0,
            ),
            max_connections_per_ip: check.at_least_one(
                "--max-connections-per-ip",
                pick(
                    args.max_connections_per_ip,
                    f.and_then(|f| f.max_connections_per_ip),
                    DEFAULT_MAX_PER_IP,
                ),
            )?,
            handshake_timeout: check.secs(
                "--handshake-timeout",
                pick(
                    args.handshake_timeout,
                    f.and_then(|f| f.handshake_timeout),
                    DEFAULT_HANDSHAKE_SECS,
                ),
            )?,
            max_startups: {
                let (text, origin) = pick(
                    args.max_startups.clone(),
                    f.and_then(|f| f.max_startups.clone()),
                    crate::server::Startups::DEFAULT.to_string(),
                );
                crate::server::Startups::parse(&text)
                    .map_err(|why| check.bad("--max-startups", origin, &why))?
            },
            idle_timeout: check.secs(
                "--idle-timeout",
                pick(
                    args.idle_timeout,
                    f.and_then(|f| f.idle_timeout),
                    DEFAULT_IDLE_SECS,
                ),
            )?,
            write_timeout: check.secs(
                "--write-timeout",
                pick(
                    args.write_timeout,
                    f.and_then(|f| f.write_timeout),
                    DEFAULT_WRITE_SECS,
                ),
            )?,
            token: token(
                args.token_file.as_deref(),
                f.and_then(|f| f.token_file.as_deref()),
            )?,
            hidden: if args.hidden {
                true
            } else if args.no_hidden {
                false
            } else {
                f.and_then(|f| f.hidden).unwrap_or(false)
            },
            limit_rate: check.rate(
                args.limit_rate.as_deref(),
                f.and_then(|f| f.limit_rate.as_ref()),
            )?,
            plaintext: switch(
                args.plaintext,
                args.no_plaintext,
                f.and_then(|f| f.plaintext),
            ),
            state_dir: args
                .state_dir
                .clone()
                .or_else(|| f.and_then(|f| f.state_dir.as_deref().map(expand_tilde)))
                .unwrap_or_else(default_state_dir),
            cert: match (
                args.cert
                    .clone()
                    .or_else(|| f.and_then(|f| f.cert.as_deref().map(expand_tilde))),
                args.key
                    .clone()
                    .or_else(|| f.and_then(|f| f.key.as_deref().map(expand_tilde))),
            ) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                _ => {
                    return Err(Error::Usage(
                        "'--cert' and '--key' go together: give both or neither".into(),
                    ))
                }
            },
        })
    }
}

/// Tokens shorter than this are accepted with a warning: a guesser who
/// can try often enough would find them.
pub const SHORT_TOKEN: usize = 16;

/// A flag with a `--no-` twin over a config value, off by default.
fn switch(on: bool, off: bool, file: Option<bool>) -> bool {
    if on {
        true
    } else if off {
        false
    } else {
        file.unwrap_or(false)
    }
}

/// Where a server keeps its identity when not told: systemd's
/// `$STATE_DIRECTORY` (from `StateDirectory=`), else `$XDG_DATA_HOME/fxfer`
/// (or `~/.local/share/fxfer`).
fn default_state_dir() -> PathBuf {
    if let Some(s) = std::env::var_os("STATE_DIRECTORY").filter(|v| !v.is_empty()) {
        // systemd separates several folders with ':'; the first is ours.
        let s = s.to_string_lossy().into_owned();
        return PathBuf::from(s.split(':').next().unwrap_or(&s));
    }
    crate::transport::known::data_dir()
}

/// The shared token: `--token-file`, then `$FXFER_TOKEN`, then the config
/// file's `token_file`. Surrounding white space is not part of it; a token
/// that is nothing but white space is an error, never an empty token that
/// anyone could prove. A token file other users may read or write is
/// refused, as rsync's strict modes and OpenSSH refuse such secrets: the
/// token would not be a secret.
pub fn token(flag: Option<&Path>, file: Option<&Path>) -> Result<Option<Vec<u8>>, Error> {
    let from_path = |p: &Path, what: &str| -> Result<Vec<u8>, Error> {
        let cannot = |e: std::io::Error| {
            Error::Config(format!(
                "cannot read token file {} ({what}): {}",
                p.display(),
                describe_io(&e)
            ))
        };
        let file = std::fs::File::open(p).map_err(cannot)?;
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            file.metadata().map_err(cannot)?.permissions().mode()
        };
        if mode & 0o007 != 0 {
            return Err(Error::Config(format!(
                "token file {} is {} by others (mode {:04o}); make it private: chmod 600 {}",
                p.display(),
                if mode & 0o004 != 0 {
                    "readable"
                } else {
                    "writable"
                },
                mode & 0o7777,
                p.display()
            )));
        }
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut &file, &mut text).map_err(cannot)?;
        let t = text.trim_ascii().to_vec();
        if t.is_empty() {
            return Err(Error::Config(format!(
                "token file {} is empty",
                p.display()
            )));
        }
        Ok(t)
    };
    if let Some(p) = flag {
        return from_path(p, "--token-file").map(Some);
    }
    if let Some(v) = std::env::var_os("FXFER_TOKEN").filter(|v| !v.is_empty()) {
        use std::os::unix::ffi::OsStrExt;
        let t = v.as_bytes().trim_ascii();
        if t.is_empty() {
            return Err(Error::Config(
                "FXFER_TOKEN is empty (it holds only white space)".into(),
            ));
        }
        return Ok(Some(t.to_vec()));
    }
    file.map(|p| from_path(p, "token_file in the config file"))
        .transpose()
}

/// Splits "HOST:PORT", "[IPv6]:PORT", "[IPv6]", a bare IPv6 address or a
/// plain host into the host and the port it names, if any.
pub fn split_host_port(text: &str) -> Result<(String, Option<u16>), String> {
    let bad_port = |p: &str| format!("'{text}' has a bad port '{p}'");
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("'{text}' has no closing ']'"))?;
        return match after {
            "" => Ok((host.to_string(), None)),
            _ => match after.strip_prefix(':') {
                Some(p) => Ok((host.to_string(), Some(p.parse().map_err(|_| bad_port(p))?))),
                None => Err(format!("'{text}': expected ':PORT' after ']'")),
            },
        };
    }
    match text.split_once(':') {
        // Two or more colons: a bare IPv6 address, no port.
        Some((_, rest)) if rest.contains(':') => Ok((text.to_string(), None)),
        Some((host, p)) => Ok((host.to_string(), Some(p.parse().map_err(|_| bad_port(p))?))),
        None => Ok((text.to_string(), None)),
    }
}

/// The host and port from `--ip` (which may carry a port), `--port`, the
/// file's `ip` (which may too) and `port`, in that order. A port named
/// twice, differently, in the same place is an error.
fn host_and_port(
    flag_ip: Option<&str>,
    flag_port: Option<u16>,
    file_ip: Option<&str>,
    file_port: Option<u16>,
    check: &Checker,
) -> Result<(String, u16), Error> {
    if let Some(text) = flag_ip {
        let (host, port) =
            split_host_port(text).map_err(|e| Error::Usage(format!("'--ip' {e}")))?;
        return match (port, flag_port) {
            (Some(a), Some(b)) if a != b => Err(Error::Usage(format!(
                "'--ip {text}' names port {a} but '--port' says {b}"
            ))),
            (Some(p), _) => Ok((host, p)),
            (None, p) => Ok((host, p.or(file_port).unwrap_or(DEFAULT_PORT))),
        };
    }
    let (host, port) = match file_ip {
        Some(text) => split_host_port(text).map_err(|e| check.bad("--ip", Origin::File, &e))?,
        None => (DEFAULT_IP.to_string(), None),
    };
    let port = match (port, file_port) {
        (Some(a), Some(b)) if a != b => {
            return Err(check.bad(
                "--ip",
                Origin::File,
                &format!("names port {a} but `port` says {b}"),
            ))
        }
        (Some(p), _) => flag_port.unwrap_or(p),
        (None, p) => flag_port.or(p).unwrap_or(DEFAULT_PORT),
    };
    Ok((host, port))
}

/// The warning a short token deserves, if it does.
pub fn token_warning(token: &[u8]) -> Option<String> {
    (token.len() < SHORT_TOKEN).then(|| {
        format!(
            "the shared token is only {} bytes long; use at least {SHORT_TOKEN} random \
             characters (e.g. `head -c 32 /dev/urandom | base64`)",
            token.len()
        )
    })
}

/// Where the server is, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    pub host: String,
    pub port: u16,
    /// Shared token, when the server wants one.
    pub token: Option<Vec<u8>>,
    /// Without TLS (`--plaintext`).
    pub plaintext: bool,
    /// Whom to trust.
    pub trust: TrustSettings,
}

impl std::fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl ServerAddr {
    pub fn resolve(args: &ServerAddrArgs, loaded: &Loaded) -> Result<ServerAddr, Error> {
        let f = loaded.file.client.as_ref();
        let check = Checker {
            loaded,
            table: "client",
        };
        let (host, port) = host_and_port(
            args.ip.as_deref(),
            args.port,
            f.and_then(|f| f.ip.as_deref()),
            f.and_then(|f| f.port),
            &check,
        )?;
        Ok(ServerAddr {
            host,
            port,
            token: {
                let t = token(
                    args.token_file.as_deref(),
                    f.and_then(|f| f.token_file.as_deref()),
                )?;
                if let Some(w) = t.as_deref().and_then(token_warning) {
                    log::warn!("{w}");
                }
                t
            },
            plaintext: switch(
                args.plaintext,
                args.no_plaintext,
                f.and_then(|f| f.plaintext),
            ),
            trust: TrustSettings {
                pin: fingerprint(args.fingerprint.as_deref(), f)?,
                trust_new: args.trust_new,
                file: f
                    .and_then(|f| f.known_servers.as_deref().map(expand_tilde))
                    .unwrap_or_else(crate::transport::known::default_file),
            },
        })
    }
}

/// The pinned fingerprint: `--fingerprint`, then `$FXFER_FINGERPRINT`,
/// then the config file's `fingerprint`.
fn fingerprint(flag: Option<&str>, f: Option<&ClientFile>) -> Result<Option<Fingerprint>, Error> {
    let env = std::env::var("FXFER_FINGERPRINT")
        .ok()
        .filter(|v| !v.is_empty());
    let (text, whence) = match (flag, env, f.and_then(|f| f.fingerprint.clone())) {
        (Some(t), _, _) => (t.to_string(), "'--fingerprint'"),
        (None, Some(t), _) => (t, "FXFER_FINGERPRINT"),
        (None, None, Some(t)) => (t, "fingerprint in the config file"),
        (None, None, None) => return Ok(None),
    };
    Fingerprint::parse(&text)
        .map(Some)
        .map_err(|e| Error::Usage(format!("{whence}: {e}")))
}

/// Where `-o` sends the one file of a `get`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// `-o -` / `--stdout`.
    Stdout,
    /// `-o FILE`: saved under this path instead of in the download folder.
    File(PathBuf),
}

/// Everything `fxfer get` needs, resolved.
#[derive(Debug, Clone)]
pub struct GetSettings {
    pub server: ServerAddr,
    pub download_dir: PathBuf,
    pub parallel: bool,
    pub jobs: usize,
    /// Download folders named on the command line, recursively.
    pub recursive: bool,
    pub retries: u32,
    /// Time-outs, rates and listing caps.
    pub limits: Limits,
    /// Continue partial downloads (off with --no-resume).
    pub resume: bool,
    /// Keep existing local files (--no-clobber).
    pub no_clobber: bool,
    /// Flush files to disk before renaming them into place.
    pub fsync: bool,
    /// Most bytes per second, all connections together.
    pub limit_rate: Option<u64>,
    /// `-o`: one file, to stdout or a path of its own.
    pub output: Option<Output>,
    /// How local copies are compared with the server's files.
    pub compare: crate::transfer::Compare,
    /// Remove what the server no longer has from the named folders.
    pub delete: bool,
    /// Report what would happen; change nothing.
    pub dry_run: bool,
}

impl GetSettings {
    pub fn resolve(args: &GetArgs, loaded: &Loaded) -> Result<GetSettings, Error> {
        let f = loaded.file.client.as_ref();
        let parallel = if args.parallel {
            true
        } else if args.no_parallel {
            false
        } else {
            f.and_then(|f| f.parallel).unwrap_or(false)
        };
        let check = Checker {
            loaded,
            table: "client",
        };
        let jobs = check.at_least_one(
            "--jobs",
            pick(args.jobs, f.and_then(|f| f.jobs), DEFAULT_JOBS),
        )?;
        Ok(GetSettings {
            server: ServerAddr::resolve(&args.server, loaded)?,
            download_dir: args
                .dir
                .clone()
                .or_else(|| f.and_then(|f| f.dir.as_deref().map(expand_tilde)))
                .unwrap_or_else(|| DEFAULT_DOWNLOAD_DIR.into()),
            parallel,
            jobs,
            recursive: args.recursive,
            retries: args
                .retries
                .or_else(|| f.and_then(|f| f.retries))
                .unwrap_or(DEFAULT_RETRIES),
            limits: limits(&args.limits, loaded)?,
            resume: !args.no_resume,
            no_clobber: args.no_clobber,
            fsync: if args.no_fsync {
                false
            } else if args.fsync {
                true
            } else {
                f.and_then(|f| f.fsync).unwrap_or(true)
            },
            limit_rate: check.rate(
                args.limit_rate.as_deref(),
                f.and_then(|f| f.limit_rate.as_ref()),
            )?,
            output: match &args.output {
                _ if args.stdout => Some(Output::Stdout),
                Some(p) if p.as_os_str() == "-" => Some(Output::Stdout),
                Some(p)
                    if p.as_os_str().is_empty() || p.ends_with("..") || p.file_name().is_none() =>
                {
                    return Err(Error::Usage(format!(
                        "'-o' needs a file name, not '{}'",
                        p.display()
                    )))
                }
                Some(p) => Some(Output::File(p.clone())),
                None => None,
            },
            compare: if args.sync.update {
                crate::transfer::Compare::Update
            } else if args.sync.checksum {
                crate::transfer::Compare::Checksum
            } else {
                args.sync
                    .compare
                    .or_else(|| f.and_then(|f| f.compare))
                    .unwrap_or_default()
            },
            delete: args.sync.delete,
            dry_run: args.sync.dry_run,
        })
    }
}

/// The client's limits: flags, then the config file, then the defaults.
/// The `--max-time` clock starts now.
pub fn limits(args: &LimitsArgs, loaded: &Loaded) -> Result<Limits, Error> {
    let f = loaded.file.client.as_ref();
    let check = Checker {
        loaded,
        table: "client",
    };
    let key = |get: fn(&ClientFile) -> Option<u64>| f.and_then(get);
    let mut l = Limits::new(check.secs(
        "--timeout",
        pick(args.timeout, key(|f| f.timeout), DEFAULT_TIMEOUT_SECS),
    )?);
    l.speed_limit = pick(
        args.speed_limit,
        key(|f| f.speed_limit),
        DEFAULT_SPEED_LIMIT,
    )
    .0;
    l.speed_time = check.secs(
        "--speed-time",
        pick(args.speed_time, key(|f| f.speed_time), DEFAULT_SPEED_TIME),
    )?;
    let max_time = pick(args.max_time, key(|f| f.max_time), 0);
    if max_time.1 != Origin::Default {
        let d = check.secs("--max-time", max_time)?;
        l.max_time = Some(d);
        l.deadline = Some(std::time::Instant::now() + d);
    }
    let count = |flag: &str, v: (u64, Origin)| -> Result<u64, Error> {
        match v {
            (0, origin) => Err(check.bad(flag, origin, "must be at least 1")),
            (n, _) => Ok(n),
        }
    };
    l.max_list_entries = count(
        "--max-list-entries",
        pick(
            args.max_list_entries,
            key(|f| f.max_list_entries),
            DEFAULT_MAX_LIST_ENTRIES,
        ),
    )?;
    l.max_list_bytes = count(
        "--max-list-bytes",
        pick(
            args.max_list_bytes,
            key(|f| f.max_list_bytes),
            DEFAULT_MAX_LIST_BYTES,
        ),
    )?;
    Ok(l)
}

impl GetSettings {
    /// The shell's defaults: the same keys as `get`; the parallel choice is
    /// made per download in the menu.
    pub fn resolve_shell(args: &ShellArgs, loaded: &Loaded) -> Result<GetSettings, Error> {
        // Exactly what `get` would use with no download flags.
        let get = GetArgs {
            names: Vec::new(),
            files_from: None,
            server: args.server.clone(),
            dir: args.dir.clone(),
            parallel: false,
            no_parallel: false,
            jobs: None,
            recursive: false,
            json: false,
            retries: None,
            limits: args.limits.clone(),
            no_resume: false,
            no_clobber: false,
            no_fsync: false,
            fsync: false,
            limit_rate: None,
            output: None,
            stdout: false,
            sync: Default::default(),
        };
        GetSettings::resolve(&get, loaded)
    }
}

/// A duration in whole milliseconds from the environment variable `var`,
/// or `default` when it is unset or not a whole number (settings for tests
/// and unusual machines, read where nothing could report a bad value).
pub fn millis_from_env(var: &str, default: Duration) -> Duration {
    std::env::var(var)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map_or(default, Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn loaded(text: &str) -> Loaded {
        Loaded {
            file: parse(text, Path::new("t.toml")).unwrap(),
            path: Some("t.toml".into()),
            text: text.into(),
        }
    }

    #[test]
    fn example_config_parses() {
        let text = include_str!("../config/fxfer.toml");
        parse(text, Path::new("config/fxfer.toml")).unwrap();
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let e = parse("[server]\nport = 1\ncolour = true\n", Path::new("f.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("f.toml"), "{e}");
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = parse("[client]\nport = \"nine\"\n", Path::new("f.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("`port`"), "{e}");
    }

    #[test]
    fn flags_win_over_file_and_file_over_defaults() {
        let l = loaded("[client]\nport = 7000\njobs = 3\nparallel = true\n");
        let cli = Cli::parse_from(["fxfer", "get", "a", "--port", "7100", "--no-parallel"]);
        let Command::Get(g) = cli.command else {
            panic!()
        };
        let s = GetSettings::resolve(&g, &l).unwrap();
        assert_eq!(s.server.port, 7100);
        assert_eq!(s.jobs, 3);
        assert!(!s.parallel);
        assert_eq!(s.server.host, DEFAULT_IP);
        assert_eq!(s.download_dir, Path::new(DEFAULT_DOWNLOAD_DIR));
    }

    #[test]
    fn addresses_may_carry_a_port() {
        let ok = |t: &str| split_host_port(t).unwrap();
        assert_eq!(ok("h.lan"), ("h.lan".into(), None));
        assert_eq!(ok("10.0.0.5:9001"), ("10.0.0.5".into(), Some(9001)));
        assert_eq!(ok("[::1]:9001"), ("::1".into(), Some(9001)));
        assert_eq!(ok("[fe80::1]"), ("fe80::1".into(), None));
        assert_eq!(ok("::1"), ("::1".into(), None));
        for bad in ["h:x", "h:", "[::1", "[::1]9", "[::1]:99999"] {
            assert!(split_host_port(bad).is_err(), "{bad}");
        }
        let l = loaded("[client]\nip = \"h:7001\"\n");
        let cli = Cli::parse_from(["fxfer", "ls"]);
        let Command::Ls(a) = cli.command else {
            panic!()
        };
        let s = ServerAddr::resolve(&a.server, &l).unwrap();
        assert_eq!((s.host.as_str(), s.port), ("h", 7001));
        let cli = Cli::parse_from(["fxfer", "ls", "--port", "7002"]);
        let Command::Ls(a) = cli.command else {
            panic!()
        };
        assert_eq!(ServerAddr::resolve(&a.server, &l).unwrap().port, 7002);
        let l = loaded("[client]\nip = \"h:7001\"\nport = 7003\n");
        assert!(ServerAddr::resolve(&a.server, &l).is_err());
    }

    #[test]
    fn limit_rate_takes_text_or_a_number_and_the_flag_wins() {
        let l = loaded("[server]\nlimit_rate = 65536\n[client]\nlimit_rate = \"10M\"\n");
        let cli = Cli::parse_from(["fxfer", "serve"]);
        let Command::Serve(a) = cli.command else {
            panic!()
        };
        assert_eq!(
            ServerSettings::resolve(&a, &l).unwrap().limit_rate,
            Some(65536)
        );
        let cli = Cli::parse_from(["fxfer", "get", "x"]);
        let Command::Get(g) = cli.command else {
            panic!()
        };
        assert_eq!(
            GetSettings::resolve(&g, &l).unwrap().limit_rate,
            Some(10 << 20)
        );
        let cli = Cli::parse_from(["fxfer", "get", "x", "--limit-rate", "1k"]);
        let Command::Get(g) = cli.command else {
            panic!()
        };
        assert_eq!(GetSettings::resolve(&g, &l).unwrap().limit_rate, Some(1024));
        let l = loaded("[server]\nlimit_rate = 0\n");
        assert!(ServerSettings::resolve(&a_serve(), &l).is_err());
    }

    fn a_serve() -> crate::cli::ServeArgs {
        let Command::Serve(a) = Cli::parse_from(["fxfer", "serve"]).command else {
            panic!()
        };
        a
    }

    #[test]
    fn bad_values_name_the_flag() {
        let cli = Cli::parse_from(["fxfer", "serve", "--ip", "localhost"]);
        let Command::Serve(a) = cli.command else {
            panic!()
        };
        let e = ServerSettings::resolve(&a, &Loaded::default()).unwrap_err();
        assert!(e.to_string().contains("--ip"));
    }

    #[test]
    fn bad_values_from_the_file_name_the_file_line_and_key() {
        let l = loaded("[server]\nport = 1\n\n[client]\nport = 2\njobs = 0\n");
        let cli = Cli::parse_from(["fxfer", "get", "a"]);
        let Command::Get(g) = cli.command else {
            panic!()
        };
        let e = GetSettings::resolve(&g, &l).unwrap_err().to_string();
        assert_eq!(
            e, "config file t.toml, line 6, key `jobs`: must be at least 1",
            "{e}"
        );
        // The same value as a flag blames the flag.
        let cli = Cli::parse_from(["fxfer", "get", "-j", "0", "a"]);
        let Command::Get(g) = cli.command else {
            panic!()
        };
        let e = GetSettings::resolve(&g, &Loaded::default()).unwrap_err();
        assert_eq!(e.to_string(), "'--jobs' must be at least 1");
        // Server keys too, including a dotted key.
        let l = loaded("server.idle_timeout = 0\n");
        let cli = Cli::parse_from(["fxfer", "serve"]);
        let Command::Serve(a) = cli.command else {
            panic!()
        };
        let e = ServerSettings::resolve(&a, &l).unwrap_err().to_string();
        assert!(
            e.contains("line 1, key `idle_timeout`: must be at least 1 second"),
            "{e}"
        );
    }

    #[test]
    fn a_dash_log_file_means_stderr_only() {
        let cli = Cli::parse_from(["fxfer", "serve", "--log-file", "-"]);
        let Command::Serve(a) = cli.command else {
            panic!()
        };
        let s = ServerSettings::resolve(&a, &Loaded::default()).unwrap();
        assert_eq!(s.log_file, None);
        let l = loaded("[server]\nlog_file = \"-\"\n");
        let cli = Cli::parse_from(["fxfer", "serve"]);
        let Command::Serve(a) = cli.command else {
            panic!()
        };
        assert_eq!(ServerSettings::resolve(&a, &l).unwrap().log_file, None);
    }
}
