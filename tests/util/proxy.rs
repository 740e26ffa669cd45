//! A TCP proxy between a client and the test server. It counts what the
//! server sends on each connection and, on request, records everything it
//! forwards (both directions), cuts or damages the server's stream, holds
//! back every connection after the first (or one connection's client
//! bytes after a point, or its server bytes until another connection
//! ended) until released, or is pointed at another server. Connections are numbered from 0 in the order they are
//! accepted.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default, Clone, Copy)]
pub struct Rules {
    /// (connection, bytes): end that connection after the server sent it
    /// this many bytes.
    pub cut: Option<(usize, u64)>,
    /// End every connection after the server sent it this many bytes.
    pub cut_each: Option<u64>,
    /// Flip one bit of the server's stream at this offset, on every
    /// connection.
    pub flip_each: Option<u64>,
    /// Hold the client's bytes on every connection but the first until
    /// [`Proxy::release`].
    pub hold: bool,
    /// Keep a copy of every byte forwarded either way ([`Proxy::captured`]).
    pub record: bool,
    /// (connection, bytes): once the server has sent that connection this
    /// many bytes, hold the client's further bytes on it until
    /// [`Proxy::release`]. Armed before those bytes are forwarded, so
    /// nothing the client says in answer to them gets through.
    pub hold_after: Option<(usize, u64)>,
    /// (connection, bytes): once the server has sent that connection this
    /// many bytes, hold the server's further bytes on it until another
    /// connection has ended (or [`Proxy::release`]). A client that asks
    /// for one piece at a time then cannot take the next piece on it: the
    /// other connection must.
    pub pause_down: Option<(usize, u64)>,
}

impl Rules {
    /// Where the server's stream on connection `n` ends.
    fn limit(&self, n: usize) -> u64 {
        let one = match self.cut {
            Some((k, bytes)) if k == n => bytes,
            _ => u64::MAX,
        };
        one.min(self.cut_each.unwrap_or(u64::MAX))
    }
}

#[derive(Default)]
struct Counts {
    /// Bytes from the server, per connection.
    down: Vec<u64>,
    released: bool,
    /// [`Rules::hold_after`] was reached.
    held_after: bool,
    /// Connections whose server stream has ended.
    ended: usize,
    /// Everything forwarded, when [`Rules::record`].
    capture: Vec<u8>,
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
                sh.0.lock().unwrap().down.push(0);
                let Ok(server) = TcpStream::connect(("127.0.0.1", to.load(Ordering::SeqCst)))
                else {
                    break;
                };
                let (c_r, s_w) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let up = Arc::clone(&sh);
                std::thread::spawn(move || {
                    if rules.hold && n > 0 {
                        let (m, cv) = &*up;
                        let deadline = Instant::now() + Duration::from_secs(30);
                        let mut st = m.lock().unwrap();
                        while !st.released && Instant::now() < deadline {
                            st = cv.wait_timeout(st, Duration::from_millis(50)).unwrap().0;
                        }
                    }
                    pump(c_r, s_w, &up, rules, Dir::Up(n));
                });
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

    /// Lets held connections through.
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

    /// Waits (at most 30 s) until connection `n` carried `bytes` from the
    /// server; whether it did.
    pub fn wait_down(&self, n: usize, bytes: u64) -> bool {
        let (m, cv) = &*self.shared;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut st = m.lock().unwrap();
        while st.down.get(n).is_none_or(|&d| d < bytes) {
            if Instant::now() > deadline {
                return false;
            }
            st = cv.wait_timeout(st, Duration::from_millis(50)).unwrap().0;
        }
        true
    }
}

/// Which way a pump forwards, on which connection.
#[derive(Clone, Copy)]
enum Dir {
    /// The client's bytes.
    Up(usize),
    /// The server's bytes: counted, and subject to the cut and flip rules;
    /// both directions end with them.
    Down(usize),
}

/// Waits (at most 30 s) while `n`'s client bytes are held by
/// [`Rules::hold_after`].
fn held_after(shared: &(Mutex<Counts>, Condvar), rules: Rules, n: usize) {
    if rules.hold_after.is_none_or(|(k, _)| k != n) {
        return;
    }
    let (m, cv) = shared;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut st = m.lock().unwrap();
    while st.held_after && !st.released && Instant::now() < deadline {
        st = cv.wait_timeout(st, Duration::from_millis(50)).unwrap().0;
    }
}

/// Waits (at most 30 s) while [`Rules::pause_down`] holds `n`'s server
/// bytes, `sent` of them forwarded so far and `k` more about to be.
fn paused(shared: &(Mutex<Counts>, Condvar), rules: Rules, n: usize, sent: u64, k: u64) {
    match rules.pause_down {
        Some((p, at)) if p == n && sent + k > at => {}
        _ => return,
    }
    let (m, cv) = shared;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut st = m.lock().unwrap();
    while st.ended == 0 && !st.released && Instant::now() < deadline {
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
    let down = match dir {
        Dir::Down(n) => Some(n),
        Dir::Up(_) => None,
    };
    let limit = down.map_or(u64::MAX, |n| rules.limit(n));
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    while sent < limit {
        let k = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => k.min((limit - sent) as usize),
        };
        if let Some(n) = down {
            paused(shared, rules, n, sent, k as u64);
        }
        match (dir, rules.hold_after) {
            (Dir::Up(n), _) => held_after(shared, rules, n),
            (Dir::Down(n), Some((k_n, at))) if k_n == n && sent + k as u64 >= at => {
                shared.0.lock().unwrap().held_after = true;
            }
            _ => {}
        }
        if let (Some(at), Some(_)) = (rules.flip_each, down) {
            if (sent..sent + k as u64).contains(&at) {
                buf[(at - sent) as usize] ^= 0x10;
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
        if let Some(n) = down {
            st.down[n] = sent;
            cv.notify_all();
        }
    }
    match down {
        Some(_) => {
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
            let (m, cv) = shared;
            m.lock().unwrap().ended += 1;
            cv.notify_all();
        }
        None => {
            let _ = to.shutdown(Shutdown::Write);
        }
    }
}
