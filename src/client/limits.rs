//! What the client will put up with from a server: how long to wait for
//! any progress, the slowest rate it accepts over a window (curl's
//! `--speed-limit`/`--speed-time`), an overall deadline (`--max-time`), and
//! how big a listing may grow. A server that drips one byte a second, or
//! never ends its listing, gets a clear error instead of our time or memory.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ratelimit::RateLimiter;
use crate::transport::Wire;

/// The socket's own read time-out: how soon a waiting read notices Ctrl-C.
pub(crate) const POLL: Duration = Duration::from_millis(250);
/// Default `--speed-limit`: bytes per second.
pub const DEFAULT_SPEED_LIMIT: u64 = 1024;
/// Default `--speed-time`: seconds.
pub const DEFAULT_SPEED_TIME: u64 = 30;
/// Default `--max-list-entries`.
pub const DEFAULT_MAX_LIST_ENTRIES: u64 = 5_000_000;
/// Default `--max-list-bytes` (as encoded on the wire).
pub const DEFAULT_MAX_LIST_BYTES: u64 = 512 * 1024 * 1024;

/// The client's limits, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest wait for a connection or for any byte.
    pub timeout: Duration,
    /// Slowest acceptable rate, in bytes per second (0: no minimum).
    pub speed_limit: u64,
    /// Window over which the rate is measured.
    pub speed_time: Duration,
    /// Give up at this moment, whatever is in flight (`--max-time`).
    pub deadline: Option<Instant>,
    /// The `--max-time` the deadline came from, for messages.
    pub max_time: Option<Duration>,
    /// Most entries one listing may have.
    pub max_list_entries: u64,
    /// Most bytes one listing may take on the wire.
    pub max_list_bytes: u64,
}

impl Limits {
    /// The defaults, with `timeout` for waits.
    pub fn new(timeout: Duration) -> Limits {
        Limits {
            timeout,
            speed_limit: DEFAULT_SPEED_LIMIT,
            speed_time: Duration::from_secs(DEFAULT_SPEED_TIME),
            deadline: None,
            max_time: None,
            max_list_entries: DEFAULT_MAX_LIST_ENTRIES,
            max_list_bytes: DEFAULT_MAX_LIST_BYTES,
        }
    }

    /// Whether the `--max-time` deadline has passed (no retry then).
    pub fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// How long the next wait may take: the time-out, or less when the
    /// deadline is nearer. `Err` once the deadline has passed.
    pub fn wait(&self) -> io::Result<Duration> {
        match self.deadline {
            None => Ok(self.timeout),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    Err(self.max_time_error())
                } else {
                    Ok(left.min(self.timeout))
                }
            }
        }
    }

    fn max_time_error(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "gave up: the --max-time of {}s is over",
                self.max_time.unwrap_or_default().as_secs()
            ),
        )
    }
}

/// Our end of the socket, shared by the buffered reader and writer (one
/// descriptor rather than two: fewer system calls per connection, which
/// matters with one connection per file). Every read and write honours the
/// deadline; reads also keep the rate.
pub(crate) struct Socket<W> {
    /// The byte stream (TLS or plain), shared with the other half.
    pub link: W,
    /// The --limit-rate budget, when there is one.
    pub limit: Option<Arc<RateLimiter>>,
    /// How long one read may wait for data (the greeting waits less).
    pub timeout: Duration,
    limits: Limits,
    /// The write time-out the socket has now (set only when it changes).
    armed: Option<Duration>,
    /// Time spent waiting for the server in this window, and the bytes
    /// that came meanwhile.
    waited: Duration,
    got: u64,
}

impl<W: Wire> Socket<W> {
    pub fn pair(link: W, limits: Limits) -> (Socket<W>, Socket<W>) {
        let one = |s: W| Socket {
            link: s,
            limit: None,
            timeout: limits.timeout,
            limits,
            armed: Some(limits.timeout),
            waited: Duration::ZERO,
            got: 0,
        };
        (one(link.clone()), one(link))
    }

    /// Sets the write time-out to what the deadline leaves (reads poll).
    fn arm_write(&mut self) -> io::Result<()> {
        let wait = self.limits.wait()?;
        if self.armed != Some(wait) {
            self.link.set_write_timeout(wait)?;
            self.armed = Some(wait);
        }
        Ok(())
    }

    /// A time-out that is really the deadline reads as the deadline.
    fn explain(&self, e: io::Error) -> io::Error {
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) && self.limits.expired()
        {
            self.limits.max_time_error()
        } else {
            e
        }
    }

    /// Counts what a read brought against the time it waited. The rate is
    /// measured over time spent waiting on the server only: while we are
    /// busy writing to disk, a slow rate is our doing, not its.
    fn keep_rate(&mut self, n: usize, waited: Duration) -> io::Result<()> {
        if self.limits.speed_limit == 0 {
            return Ok(());
        }
        self.waited += waited;
        self.got += n as u64;
        let window = self.limits.speed_time;
        if self.waited < window {
            return Ok(());
        }
        let need = self.limits.speed_limit as f64 * self.waited.as_secs_f64();
        if (self.got as f64) < need {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "transfer too slow: {} bytes in {:.0}s, under the --speed-limit of {} bytes/s \
                     over --speed-time {}s",
                    self.got,
                    self.waited.as_secs_f64(),
                    self.limits.speed_limit,
                    window.as_secs()
                ),
            ));
        }
        self.waited = Duration::ZERO;
        self.got = 0;
        Ok(())
    }
}

impl<W: Wire> Read for Socket<W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // The whole wait: the time-out, or less when the deadline is near.
        let wait = match self.limits.deadline {
            None => self.timeout,
            Some(_) => self.limits.wait()?.min(self.timeout),
        };
        // Under --limit-rate, read no more than the budget grants.
        let want = match &self.limit {
            Some(l) => l.grant(buf.len()),
            None => buf.len(),
        };
        let started = Instant::now();
        // The socket itself wakes every POLL, so Ctrl-C is seen at once
        // even while the server is silent.
        let got = loop {
            if crate::interrupt::requested() {
                break Err(crate::interrupt::error());
            }
            match self.link.read(&mut buf[..want]) {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) && started.elapsed() < wait => {}
                r => break r,
            }
        };
        if let Some(l) = &self.limit {
            l.refund(want - got.as_ref().map_or(0, |n| *n));
        }
        let n = got.map_err(|e| self.explain(e))?;
        self.keep_rate(n, started.elapsed())?;
        Ok(n)
    }
}

impl<W: Wire> Write for Socket<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm_write()?;
        self.link.write(buf).map_err(|e| self.explain(e))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.arm_write()?;
        self.link.flush().map_err(|e| self.explain(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passed_deadline_refuses_to_wait() {
        let mut l = Limits::new(Duration::from_secs(30));
        assert_eq!(l.wait().unwrap(), Duration::from_secs(30));
        l.deadline = Some(Instant::now() + Duration::from_secs(2));
        assert!(l.wait().unwrap() <= Duration::from_secs(2));
        l.deadline = Some(Instant::now() - Duration::from_millis(1));
        l.max_time = Some(Duration::from_secs(5));
        let e = l.wait().unwrap_err();
        assert!(e.to_string().contains("--max-time of 5s"), "{e}");
        assert!(l.expired());
    }
}
