//! A TCP proxy between a client and the test server that counts what the
//! server sends on each connection, and on request cuts one connection
//! after so many bytes or holds back every connection after the first
//! until released. Connections are numbered from 0 in the order they are
//! accepted.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default, Clone, Copy)]
pub struct Rules {
    /// (connection, bytes): end that connection after the server sent it
    /// this many bytes.
    pub cut: Option<(usize, u64)>,
    /// Hold the client's bytes on every connection but the first until
    /// [`Proxy::release`].
    pub hold: bool,
}

#[derive(Default)]
struct Counts {
    /// Bytes from the server, per connection.
    down: Vec<u64>,
    released: bool,
}

pub struct Proxy {
    pub port: u16,
    shared: Arc<(Mutex<Counts>, Condvar)>,
}

impl Proxy {
    /// Proxies to the server on `server_port`, for at most 64 connections.
    pub fn start(server_port: u16, rules: Rules) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let shared = Arc::new((Mutex::new(Counts::default()), Condvar::new()));
        let sh = Arc::clone(&shared);
        std::thread::spawn(move || {
            for (n, c) in l.incoming().take(64).enumerate() {
                let Ok(client) = c else { break };
                sh.0.lock().unwrap().down.push(0);
                let Ok(server) = TcpStream::connect(("127.0.0.1", server_port)) else {
                    break;
                };
                let (mut c_r, mut s_w) = (client.try_clone().unwrap(), server.try_clone().unwrap());
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
                    let _ = std::io::copy(&mut c_r, &mut s_w);
                    let _ = s_w.shutdown(Shutdown::Write);
                });
                let down = Arc::clone(&sh);
                let (mut s_r, mut c_w) = (server, client);
                std::thread::spawn(move || {
                    let limit = match rules.cut {
                        Some((k, bytes)) if k == n => bytes,
                        _ => u64::MAX,
                    };
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut sent = 0u64;
                    while sent < limit {
                        let k = match s_r.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(k) => k.min((limit - sent) as usize),
                        };
                        if c_w.write_all(&buf[..k]).is_err() {
                            break;
                        }
                        sent += k as u64;
                        let (m, cv) = &*down;
                        m.lock().unwrap().down[n] = sent;
                        cv.notify_all();
                    }
                    let _ = c_w.shutdown(Shutdown::Both);
                    let _ = s_r.shutdown(Shutdown::Both);
                });
            }
        });
        Proxy { port, shared }
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
