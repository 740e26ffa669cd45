//! Shared test fixtures: a temporary host folder, a running `fxfer serve`
//! on a free port, and a client command that cannot see the user's config.

#![allow(dead_code)]

pub mod proxy;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use fxfer::protocol::{Hello, Request};
pub use fxfer::transport::Stream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_fxfer");

/// A `Command` for the fxfer binary with a clean environment: no user
/// config, no FXFER_* variables, HOME and every XDG folder (identities,
/// known servers) inside the test folder.
pub fn fxfer(cwd: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(cwd)
        .env_remove("FXFER_CONFIG")
        .env_remove("FXFER_LOG")
        .env_remove("FXFER_FINGERPRINT")
        .env_remove("STATE_DIRECTORY")
        .env("HOME", cwd)
        .env("XDG_CONFIG_HOME", cwd.join(".config"))
        .env("XDG_DATA_HOME", cwd.join(".local/share"))
        .env("XDG_STATE_HOME", cwd.join(".local/state"))
        .env("XDG_CACHE_HOME", cwd.join(".cache"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    c
}

/// Deterministic pseudo-random bytes (xorshift), so files do not compress
/// and every failure can be reproduced.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v.extend_from_slice(&s.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// A loopback port nothing listens on (free a moment ago).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

pub fn write(dir: &Path, name: &str, data: &[u8]) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// Writes a secret (a token file): private to its owner, as fxfer demands.
pub fn secret(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Files under `dir`, relative, sorted (recursive).
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A running `fxfer serve` on 127.0.0.1 with its own folders. Killed on drop.
pub struct Server {
    pub child: Child,
    pub port: u16,
    /// The served folder.
    pub host: PathBuf,
    /// Working folder for server and clients (log, downloads, config).
    pub work: PathBuf,
    pub log: PathBuf,
    /// Started with --plaintext (its clients get --plaintext too).
    pub plaintext: bool,
    stderr: Arc<Captured>,
    stderr_file: Option<PathBuf>,
    _tmp: tempfile::TempDir,
}

/// Fills a host folder before the server starts.
type Setup = Box<dyn FnOnce(&Path)>;

pub struct ServerBuilder {
    args: Vec<String>,
    setup: Option<Setup>,
    host: Option<PathBuf>,
    envs: Vec<(String, String)>,
    log_file: bool,
    stderr_file: Option<PathBuf>,
    port: u16,
    nofile: Option<u64>,
    plaintext: bool,
    work: Option<PathBuf>,
}

impl ServerBuilder {
    /// Serves without TLS (`--plaintext`); clients made by
    /// [`Server::client`] get `--plaintext` too.
    pub fn plaintext(mut self) -> Self {
        self.plaintext = true;
        self.args.push("--plaintext".into());
        self
    }

    /// Runs in an existing work folder (sharing its identity and known
    /// servers) instead of a new one.
    pub fn work(mut self, dir: &Path) -> Self {
        self.work = Some(dir.to_path_buf());
        self
    }

    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }

    pub fn args(mut self, a: &[&str]) -> Self {
        self.args.extend(a.iter().map(|a| a.to_string()));
        self
    }

    /// Listens on this port instead of a free one the OS picks.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Sets an environment variable for the server.
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.envs.push((k.into(), v.into()));
        self
    }

    /// Starts the server with this (soft and hard) open-file limit.
    pub fn nofile(mut self, n: u64) -> Self {
        self.nofile = Some(n);
        self
    }

    /// Serves an existing folder instead of a new one.
    pub fn host(mut self, dir: &Path) -> Self {
        self.host = Some(dir.to_path_buf());
        self
    }

    /// Starts the server without `--log-file` (the test gives its own, or
    /// `--log-file -`).
    pub fn no_log_file(mut self) -> Self {
        self.log_file = false;
        self
    }

    /// Sends the server's stderr to this file instead of a pipe.
    pub fn stderr_file(mut self, path: &Path) -> Self {
        self.stderr_file = Some(path.to_path_buf());
        self
    }

    /// Fills the host folder before the server starts.
    pub fn files(mut self, f: impl FnOnce(&Path) + 'static) -> Self {
        self.setup = Some(Box::new(f));
        self
    }

    pub fn start(self) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let host = self.host.unwrap_or_else(|| tmp.path().join("host"));
        let work = self.work.unwrap_or_else(|| tmp.path().join("work"));
        std::fs::create_dir_all(&host).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        if let Some(f) = self.setup {
            f(&host);
        }
        let log = work.join("server.log");
        let mut cmd = fxfer(&work);
        cmd.args([
            "serve",
            "--ip",
            "127.0.0.1",
            "--port",
            &self.port.to_string(),
            "--dir",
        ])
        .arg(&host);
        if self.log_file {
            cmd.arg("--log-file").arg(&log);
        }
        cmd.args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)));
        match &self.stderr_file {
            Some(p) => cmd.stderr(std::fs::File::create(p).unwrap()),
            None => cmd.stderr(Stdio::piped()),
        };
        if let Some(n) = self.nofile {
            limit_files(&mut cmd, n);
        }
        let (child, port, stderr) = spawn_listening(&mut cmd);
        Server {
            child,
            port,
            host,
            work,
            log,
            plaintext: self.plaintext,
            stderr,
            stderr_file: self.stderr_file,
            _tmp: tmp,
        }
    }
}

/// Rewrites a committed generated file (FXFER_BLESS=1) in one step, through
/// a temporary file and a rename: other tests running at the same time read
/// it, and must never see it half written.
pub fn bless_write(path: &Path, bytes: &[u8]) {
    let tmp = path.with_file_name(format!(
        ".{}.bless",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Polls `text` (for at most 10 s) until it contains `needle`; returns the
/// last text seen.
pub fn wait_for(text: impl Fn() -> String, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = text();
        if t.contains(needle) || Instant::now() > deadline {
            return t;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a child wrote to a pipe so far, and whether the pipe has closed
/// (everything it wrote is here then). Filled by a thread of its own.
#[derive(Default)]
pub struct Captured {
    /// The text, and whether the end of the pipe was seen.
    state: Mutex<(String, bool)>,
    closed: Condvar,
}

impl Captured {
    pub fn text(&self) -> String {
        self.state.lock().unwrap().0.clone()
    }

    /// Waits (at most `limit`) for the end of the pipe; returns all text.
    /// A process that has exited has closed its end, but the thread that
    /// reads it may not have caught up yet (under load, by a long way).
    pub fn wait_closed(&self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        let mut st = self.state.lock().unwrap();
        while !st.1 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = self.closed.wait_timeout(st, deadline - now).unwrap().0;
        }
        st.0.clone()
    }
}

/// Starts `cmd` (an `fxfer serve` of some form), waits for its
/// `listening on 127.0.0.1:PORT` line and returns the child, the port and
/// the stderr it writes from then on (unless stderr was set to something
/// other than a pipe beforehand). Stdout is drained so it never blocks.
pub fn spawn_listening(cmd: &mut Command) -> (Child, u16, Arc<Captured>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .expect("start fxfer serve");
    let stderr = Arc::new(Captured::default());
    match child.stderr.take() {
        Some(mut err) => {
            let sink = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.state
                        .lock()
                        .unwrap()
                        .0
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
                sink.state.lock().unwrap().1 = true;
                sink.closed.notify_all();
            });
        }
        None => stderr.state.lock().unwrap().1 = true,
    }
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(out);
        let mut line = String::new();
        let _ = r.read_line(&mut line);
        let _ = tx.send(line);
        // Keep draining so the server never blocks on stdout.
        let mut rest = String::new();
        let _ = r.read_to_string(&mut rest);
    });
    let line = rx.recv_timeout(Duration::from_secs(15));
    let port = line.as_deref().ok().and_then(|l| {
        l.trim()
            .strip_prefix("listening on 127.0.0.1:")
            .and_then(|p| p.parse().ok())
    });
    match port {
        Some(port) => (child, port, stderr),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
            panic!("unexpected first line {line:?}; stderr: {}", stderr.text())
        }
    }
}

impl Server {
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            args: Vec::new(),
            setup: None,
            host: None,
            envs: Vec::new(),
            log_file: true,
            port: 0,
            stderr_file: None,
            nofile: None,
            plaintext: false,
            work: None,
        }
    }

    pub fn with_files(f: impl FnOnce(&Path) + 'static) -> Server {
        Server::builder().files(f).start()
    }

    /// A client command aimed at this server, run in the work folder.
    pub fn client(&self, sub: &str) -> Command {
        let mut c = fxfer(&self.work);
        c.arg(sub).arg("--port").arg(self.port.to_string());
        if self.plaintext {
            c.arg("--plaintext");
        }
        c
    }

    /// The fingerprint the server printed on stderr at start.
    pub fn fingerprint(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let err = self.stderr();
            if let Some(l) = err.lines().find_map(|l| l.strip_prefix("fingerprint ")) {
                return l.trim().to_string();
            }
            assert!(Instant::now() < deadline, "no fingerprint line: {err}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn get(&self, extra: &[&str]) -> Output {
        self.client("get").args(extra).output().unwrap()
    }

    pub fn downloads(&self) -> PathBuf {
        self.work.join("downloads")
    }

    /// A raw TCP connection (no TLS).
    pub fn tcp(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// A connection to speak the protocol on by hand: TLS (without any
    /// trust check) unless the server runs --plaintext.
    pub fn connect(&self) -> Stream {
        let s = self.tcp();
        if self.plaintext {
            Stream::plain(s)
        } else {
            fxfer::transport::tls::connect(
                s,
                "127.0.0.1",
                Instant::now() + Duration::from_secs(10),
                &|| false,
            )
            .unwrap_or_else(|e| panic!("TLS handshake: {e:?}"))
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) until the log contains `needle`.
    pub fn wait_log(&self, needle: &str) -> String {
        wait_for(|| self.log_text(), needle)
    }

    pub fn stderr(&self) -> String {
        match &self.stderr_file {
            Some(p) => std::fs::read_to_string(p).unwrap_or_default(),
            None => self.stderr.text(),
        }
    }

    /// Waits (bounded) until stderr contains `needle`.
    pub fn wait_stderr(&self, needle: &str) -> String {
        wait_for(|| self.stderr(), needle)
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends SIGINT (or another signal) to the server process.
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Waits (bounded) for the server to exit, and then for all it wrote
    /// to stderr to be read.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait().unwrap() {
                self.stderr
                    .wait_closed(deadline.saturating_duration_since(Instant::now()));
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the exit code, printing both streams when it is wrong.
#[track_caller]
pub fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit status\n--- stdout:\n{}\n--- stderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

/// A port on 127.0.0.1 that nothing listens on.
pub fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Requests encoded as they go on the wire.
pub fn req(requests: &[Request]) -> Vec<u8> {
    let mut v = Vec::new();
    for r in requests {
        r.write_to(&mut v).unwrap();
    }
    v
}

/// A raw connection: our greeting and `frames` in one write, then the
/// server's greeting read (and checked) off the reader.
pub fn session(s: &Server, frames: &[u8]) -> BufReader<Stream> {
    let mut c = s.connect();
    let mut msg = Hello::current().to_bytes().to_vec();
    msg.extend_from_slice(frames);
    c.write_all(&msg).unwrap();
    let mut r = BufReader::new(c);
    assert_eq!(
        Hello::read_from(&mut r).unwrap().version,
        fxfer::protocol::VERSION
    );
    r
}

/// A connection that finished the handshake and then sits idle, holding
/// one of the server's slots.
pub fn hold(s: &Server) -> Stream {
    let mut c = s.connect();
    Hello::current().write_to(&mut c).unwrap();
    let mut h = [0u8; 8];
    c.read_exact(&mut h).unwrap();
    c
}

/// Runs `cmd` with an open-file limit of `n` (soft and hard).
pub fn limit_files(cmd: &mut Command, n: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between
    // fork and exec here.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A TCP connection to 127.0.0.1:`port` from the loopback address `from`
/// (any of 127.0.0.0/8), so tests can play several client addresses.
pub fn connect_from(from: std::net::Ipv4Addr, port: u16) -> TcpStream {
    use std::os::fd::FromRawFd;
    let sa = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor we own; the addresses
    // live on the stack for the duration of each call.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let s = TcpStream::from_raw_fd(fd);
        let local = sa(from, 0);
        let r = libc::bind(fd, &local as *const _ as *const libc::sockaddr, len);
        assert_eq!(r, 0, "bind {from}: {}", std::io::Error::last_os_error());
        let remote = sa(std::net::Ipv4Addr::LOCALHOST, port);
        let r = libc::connect(fd, &remote as *const _ as *const libc::sockaddr, len);
        assert_eq!(r, 0, "connect: {}", std::io::Error::last_os_error());
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }
}
