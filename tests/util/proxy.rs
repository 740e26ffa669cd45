//! A TCP proxy between a client and the test server. It counts what the
//! server sends on each connection and, on request, records everything it
//! forwards (both directions), cuts or damages the server's stream (every
//! connection's, or that of the one that asked for a given GET), holds back
//! the GETs of a file but one until released, or is pointed at another
//! server. Rules pick a connection by the GET it carried (which needs a
//! `--plaintext` client), never by the order the connections came in: a
//! client opens its connections at once, and any of them may come first.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A GET of `path` from `offset`, as a `--plaintext` client sends it: how a
/// rule picks its connection by what it carries.
#[derive(Clone, Copy)]
pub struct Get {
    pub path: &'static str,
    pub offset: u64,
}

impl Get {
    pub fn of(path: &'static str, offset: u64) -> Get {
        Get { path, offset }
    }
}

#[derive(Default, Clone, Copy)]
pub struct Rules {
    /// (GET, bytes): end the first connection that sends that GET once the
    /// server has sent it this many bytes after the GET went through (a
    /// retry of the same GET is let through).
    pub cut: Option<(Get, u64)>,
    /// End every connection after the server sent it this many bytes.
    pub cut_each: Option<u64>,
    /// Flip one bit of the server's stream at this offset, on every
    /// connection.
    pub flip_each: Option<u64>,
    /// Keep a copy of every byte forwarded either way ([`Proxy::captured`]).
    pub record: bool,
    /// Until [`Proxy::release`], only this GET of its path gets through:
    /// client bytes that carry a GET of the same path from another offset
    /// are held, on every connection.
    pub only: Option<Get>,
}

#[derive(Default)]
struct Counts {
    /// Bytes from the server, per connection.
    down: Vec<u64>,
    /// Per connection: where [`Rules::cut`] ends its server stream, once
    /// it carried that GET.
    cut_at: Vec<Option<u64>>,
    /// [`Rules::cut`] picked its connection.
    cut_armed: bool,
    released: bool,
    /// Everything forwarded, when [`Rules::record`].
    capture: Vec<u8>,
    /// Reads that brought client bytes, on all connections.
    up_reads: u64,
}

pub struct Proxy {
    /// The address it listens on.
    pub addr: String,
    pub port: u16,
    backend: Arc<AtomicU16>,
    shared: Arc<(Mutex<Counts>, Condvar)>,
}

impl Proxy {
    /// Proxies from 127.0.0.1 to the server on `server_port`, for at most
    /// 64 connections.
    pub fn start(server_port: u16, rules: Rules) -> Proxy {
        Proxy::start_on("127.0.0.1", server_port, rules)
    }

    /// The same, listening on `ip` (another loopback address, say).
    pub fn start_on(ip: &str, server_port: u16, rules: Rules) -> Proxy {
        let l = TcpListener::bind((ip, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        let backend = Arc::new(AtomicU16::new(server_port));
        let shared = Arc::new((Mutex::new(Counts::default()), Condvar::new()));
        let (sh, to) = (Arc::clone(&shared), Arc::clone(&backend));
        std::thread::spawn(move || {
            for (n, c) in l.incoming().take(64).enumerate() {
                let Ok(client) = c else { break };
                {
                    let mut st = sh.0.lock().unwrap();
                    st.down.push(0);
                    st.cut_at.push(None);
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", to.load(Ordering::SeqCst)))
                else {
                    break;
                };
                let (c_r, s_w) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let up = Arc::clone(&sh);
                std::thread::spawn(move || pump(c_r, s_w, &up, rules, Dir::Up(n)));
                let down = Arc::clone(&sh);
                std::thread::spawn(move || pump(server, client, &down, rules, Dir::Down(n)));
            }
        });
        Proxy {
            addr: ip.to_string(),
            port,
            backend,
            shared,
        }
    }

    /// Sends new connections to the server on `port` instead.
    pub fn point_at(&self, port: u16) {
        self.backend.store(port, Ordering::SeqCst);
    }

    /// Lets held bytes through.
    pub fn release(&self) {
        let (m, cv) = &*self.shared;
        m.lock().unwrap().released = true;
        cv.notify_all();
    }

    /// Connections accepted so far.
    pub fn conns(&self) -> usize {
        self.shared.0.lock().unwrap().down.len()
    }

    /// Bytes the server sent through the proxy, on all connections.
    pub fn down(&self) -> u64 {
        self.shared.0.lock().unwrap().down.iter().sum()
    }

    /// How many reads brought the client's bytes, on all connections: at
    /// least one per write the client made that did not go out together
    /// with another (never more reads than writes for small writes).
    pub fn up_reads(&self) -> u64 {
        self.shared.0.lock().unwrap().up_reads
    }

    /// Everything forwarded so far, both ways (with [`Rules::record`]).
    pub fn captured(&self) -> Vec<u8> {
        self.shared.0.lock().unwrap().capture.clone()
    }

    /// A client command aimed at the proxy, run in `work`.
    pub fn client(&self, work: &Path, sub: &str) -> std::process::Command {
        let mut c = super::fxfer(work);
        c.args([sub, "--ip", &self.addr, "--port", &self.port.to_string()]);
        c
    }
}

/// Which way a pump forwards, on which connection.
#[derive(Clone, Copy)]
enum Dir {
    /// The client's bytes: looked at for the GETs the rules name.
    Up(usize),
    /// The server's bytes: counted, and subject to the cut and flip rules;
    /// both directions end with them.
    Down(usize),
}

/// The offsets of the GETs of `path` in a client's stream `seen` (a GET
/// frame: type 0x02, a four-byte length, then the path as a `str16` and the
/// offset as a big-endian `u64`).
fn gets(seen: &[u8], path: &str) -> Vec<u64> {
    let mut name = (path.len() as u16).to_be_bytes().to_vec();
    name.extend_from_slice(path.as_bytes());
    let mut found = Vec::new();
    for at in 5..(seen.len() + 1).saturating_sub(name.len() + 8) {
        if seen[at - 5] == 0x02 && seen[at..].starts_with(&name) {
            let o = at + name.len();
            found.push(u64::from_be_bytes(seen[o..o + 8].try_into().unwrap()));
        }
    }
    found
}

/// What the rules do with connection `n`'s client stream so far, `seen`,
/// before its latest bytes go on: [`Rules::cut`] is armed once it carries
/// that GET; [`Rules::only`] holds it (at most 30 s) while it carries
/// another GET of that path.
fn look_up(shared: &(Mutex<Counts>, Condvar), rules: Rules, n: usize, seen: &[u8]) {
    if let Some((get, bytes)) = rules.cut {
        if gets(seen, get.path).contains(&get.offset) {
            let mut st = shared.0.lock().unwrap();
            if !st.cut_armed {
                st.cut_armed = true;
                st.cut_at[n] = Some(st.down[n] + bytes);
            }
        }
    }
    let Some(only) = rules.only else { return };
    if gets(seen, only.path).iter().all(|&o| o == only.offset) {
        return;
    }
    let (m, cv) = shared;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut st = m.lock().unwrap();
    while !st.released && Instant::now() < deadline {
        st = cv.wait_timeout(st, Duration::from_millis(50)).unwrap().0;
    }
}

/// Forwards one direction until either side ends.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    shared: &(Mutex<Counts>, Condvar),
    rules: Rules,
    dir: Dir,
) {
    let mut buf = vec![0u8; 64 * 1024];
    // The client's stream so far (requests are small), for the rules.
    let mut seen = Vec::new();
    let mut sent = 0u64;
    loop {
        let got = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => k,
        };
        // Looked up after the read: a cut armed while it waited counts.
        let limit = match dir {
            Dir::Down(n) => {
                let at = shared.0.lock().unwrap().cut_at[n];
                at.unwrap_or(u64::MAX)
                    .min(rules.cut_each.unwrap_or(u64::MAX))
            }
            Dir::Up(_) => u64::MAX,
        };
        let k = got.min(limit.saturating_sub(sent) as usize);
        if k == 0 {
            break;
        }
        match dir {
            Dir::Up(n) => {
                seen.extend_from_slice(&buf[..k]);
                look_up(shared, rules, n, &seen);
            }
            Dir::Down(_) => {
                if let Some(at) = rules.flip_each {
                    if (sent..sent + k as u64).contains(&at) {
                        buf[(at - sent) as usize] ^= 0x10;
                    }
                }
            }
        }
        if to.write_all(&buf[..k]).is_err() {
            break;
        }
        sent += k as u64;
        let (m, cv) = shared;
        let mut st = m.lock().unwrap();
        if rules.record {
            st.capture.extend_from_slice(&buf[..k]);
        }
        match dir {
            Dir::Down(n) => {
                st.down[n] = sent;
                cv.notify_all();
            }
            Dir::Up(_) => st.up_reads += 1,
        }
        if sent >= limit {
            break;
        }
    }
    match dir {
        Dir::Down(_) => {
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
        }
        Dir::Up(_) => {
            let _ = to.shutdown(Shutdown::Write);
        }
    }
}
