//! A TCP proxy on loopback that adds a round trip and, optionally, a
//! per-connection rate cap: a stand-in for a real network on a machine
//! without netem.
//!
//! ```text
//! usage: delay-proxy --to HOST:PORT [--listen 127.0.0.1:0] [--delay-ms MS]
//!                    [--rate-mbit MBIT] [--exit-after SECS]
//!
//!   --to          where to forward (must be a loopback address)
//!   --listen      where to listen (loopback only; port 0 = any free port)
//!   --delay-ms    one-way delay added in each direction (round trip = 2x)
//!   --rate-mbit   cap each connection, each direction, at this many Mbit/s
//!   --exit-after  stop after this many seconds (default 3600)
//! ```
//!
//! Run with `cargo run --release --example delay-proxy -- --to 127.0.0.1:9000
//! --delay-ms 10`. Once bound, it prints `listening on IP:PORT` on stdout.
//!
//! What it models:
//! - each direction is a link of the given one-way delay: a byte that the
//!   proxy reads at time t leaves it at t + delay;
//! - the TCP handshake's round trip: the client's connect() returns at once
//!   on loopback, so the first bytes the client sends are held as if they
//!   had been sent one round trip later, when a real connect() would have
//!   returned. A request sent with the connection therefore gets its first
//!   answer two round trips after connect(), as over a real link;
//! - with a rate cap, each direction of each connection is a link of that
//!   bandwidth: the proxy reads no faster than the link drains, so the
//!   sender feels TCP back-pressure, as at a real bottleneck.
//!
//! Every connection costs four threads; this is a benchmark tool, not a
//! server.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: delay-proxy --to HOST:PORT [--listen 127.0.0.1:0] [--delay-ms MS] \
                     [--rate-mbit MBIT] [--exit-after SECS]";
/// Largest read; also the unit the rate cap paces.
const PIECE: usize = 64 * 1024;
/// Pieces queued per direction (in flight on the "link"): bounds memory at
/// 16 MiB per direction even without a rate cap.
const QUEUE: usize = 256;

#[derive(Clone, Copy)]
struct Link {
    delay: Duration,
    /// Bytes per second; `None` = no cap.
    rate: Option<f64>,
}

struct Args {
    listen: SocketAddr,
    to: SocketAddr,
    link: Link,
    exit_after: Duration,
}

fn parse() -> Result<Args, String> {
    let mut listen: SocketAddr = "127.0.0.1:0".parse().expect("valid address");
    let mut to = None;
    let mut delay_ms = 0.0f64;
    let mut rate = None;
    let mut exit_after = 3600.0f64;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let bad = |e: &dyn std::fmt::Display| format!("bad value {value:?} for {flag}: {e}");
        match flag.as_str() {
            "--listen" => listen = value.parse().map_err(|e| bad(&e))?,
            "--to" => to = Some(value.parse::<SocketAddr>().map_err(|e| bad(&e))?),
            "--delay-ms" => delay_ms = value.parse().map_err(|e| bad(&e))?,
            "--rate-mbit" => {
                let mbit: f64 = value.parse().map_err(|e| bad(&e))?;
                if mbit.is_nan() || mbit <= 0.0 {
                    return Err(bad(&"must be above 0"));
                }
                rate = Some(mbit * 1e6 / 8.0);
            }
            "--exit-after" => exit_after = value.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    let to = to.ok_or_else(|| format!("--to is required\n{USAGE}"))?;
    if !listen.ip().is_loopback() || !to.ip().is_loopback() {
        return Err("--listen and --to must be loopback addresses".into());
    }
    if !(0.0..=60_000.0).contains(&delay_ms) || exit_after.is_nan() || exit_after <= 0.0 {
        return Err(format!(
            "--delay-ms must be 0 to 60000, --exit-after above 0\n{USAGE}"
        ));
    }
    Ok(Args {
        listen,
        to,
        link: Link {
            delay: Duration::from_secs_f64(delay_ms / 1000.0),
            rate,
        },
        exit_after: Duration::from_secs_f64(exit_after),
    })
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("delay-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(args.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("delay-proxy: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(1);
        }
    };
    let bound = listener.local_addr().expect("bound socket has an address");
    println!("listening on {bound}");
    let _ = std::io::stdout().flush();
    // The process ends after --exit-after, whatever its connections do.
    let lifetime = args.exit_after;
    thread::spawn(move || {
        thread::sleep(lifetime);
        std::process::exit(0);
    });
    for conn in listener.incoming() {
        let Ok(client) = conn else { continue };
        let (to, link) = (args.to, args.link);
        thread::spawn(move || serve(client, to, link));
    }
    ExitCode::SUCCESS
}

/// One proxied connection: both directions, until both have ended.
fn serve(client: TcpStream, to: SocketAddr, link: Link) {
    let accepted = Instant::now();
    let server = match TcpStream::connect(to) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("delay-proxy: cannot connect to {to}: {e}");
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    // Client bytes count as sent no earlier than when a real connect()
    // would have returned: one round trip after it was called.
    let handshake_done = accepted + link.delay * 2;
    let up = thread::spawn(move || pump(client, server, link, Some(handshake_done)));
    pump(s2, c2, link, None);
    let _ = up.join();
}

/// A piece of data on the link, or the sender's end of stream.
enum Piece {
    Data(Vec<u8>, Instant),
    End(Instant),
}

/// Moves bytes from `from` to `to` as a link would: a reader that paces
/// itself by the rate cap and stamps each piece with its arrival time, and
/// a writer that hands each piece over at that time.
fn pump(mut from: TcpStream, to: TcpStream, link: Link, not_before: Option<Instant>) {
    let (tx, rx) = sync_channel::<Piece>(QUEUE);
    let writer = {
        let to = to.try_clone();
        thread::spawn(move || {
            if let Ok(to) = to {
                deliver(rx, to);
            }
        })
    };
    if !read_side(&mut from, tx, link, not_before) {
        // The far side is gone: end this side too rather than keep
        // reading for nobody.
        let _ = from.shutdown(Shutdown::Both);
    }
    let _ = writer.join();
}

/// Returns false when the other end stopped taking data.
fn read_side(
    from: &mut TcpStream,
    tx: SyncSender<Piece>,
    link: Link,
    not_before: Option<Instant>,
) -> bool {
    // When the link is free again (the rate cap's clock).
    let mut free_at = Instant::now();
    let mut buf = vec![0u8; PIECE];
    loop {
        // A reset ends the stream like a close does.
        let n = from.read(&mut buf).unwrap_or_default();
        let mut sent = Instant::now();
        if let Some(t) = not_before {
            sent = sent.max(t);
        }
        if n == 0 {
            return tx.send(Piece::End(sent.max(free_at) + link.delay)).is_ok();
        }
        let leaves = match link.rate {
            None => sent,
            Some(rate) => {
                let start = sent.max(free_at);
                free_at = start + Duration::from_secs_f64(n as f64 / rate);
                free_at
            }
        };
        if tx
            .send(Piece::Data(buf[..n].to_vec(), leaves + link.delay))
            .is_err()
        {
            return false;
        }
        // Do not read faster than the link drains: the sender then waits,
        // as it would at a real bottleneck.
        if link.rate.is_some() {
            sleep_until(free_at);
        }
    }
}

fn deliver(rx: Receiver<Piece>, mut to: TcpStream) {
    for piece in rx {
        match piece {
            Piece::Data(bytes, at) => {
                sleep_until(at);
                if to.write_all(&bytes).is_err() {
                    // Dropping the queue tells the reader to stop.
                    let _ = to.shutdown(Shutdown::Both);
                    return;
                }
            }
            Piece::End(at) => {
                sleep_until(at);
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
        }
    }
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        thread::sleep(t - now);
    }
}
