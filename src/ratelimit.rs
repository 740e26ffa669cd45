//! Bandwidth limits (`get --limit-rate`, `serve --limit-rate`): a token
//! bucket that grants bytes as time passes. The client shares one bucket
//! between all connections of a `get`; the server gives each connection its
//! own. Grants are small (about 50 ms worth) so data flows evenly rather
//! than in bursts that would stall the peer's writes.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most bytes granted at once, whatever the rate.
const MAX_GRANT: u64 = 256 * 1024;

pub struct RateLimiter {
    /// Bytes per second.
    rate: u64,
    /// What one grant waits for: about 1/20 s worth.
    quantum: u64,
    state: Mutex<State>,
}

struct State {
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// A limiter for `rate` bytes per second (at least 1).
    pub fn new(rate: u64) -> RateLimiter {
        let rate = rate.max(1);
        let quantum = (rate / 20).max(rate.min(512)).min(MAX_GRANT);
        RateLimiter {
            rate,
            quantum,
            state: Mutex::new(State {
                // Start with one grant's worth, not a whole second's burst.
                tokens: quantum as f64,
                last: Instant::now(),
            }),
        }
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Waits until some bytes may go, then grants up to `want` of them
    /// (at least one when `want` > 0). Bytes granted but not used can be
    /// given back with [`RateLimiter::refund`].
    pub fn grant(&self, want: usize) -> usize {
        if want == 0 {
            return 0;
        }
        let need = (want as u64).min(self.quantum) as f64;
        loop {
            let wait = {
                let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let earned = now.duration_since(s.last).as_secs_f64() * self.rate as f64;
                // A bucket of two grants: an idle pause earns no burst.
                s.tokens = (s.tokens + earned).min(2.0 * self.quantum as f64);
                s.last = now;
                if s.tokens >= need {
                    let n = (s.tokens.floor() as u64).min(want as u64).min(MAX_GRANT);
                    s.tokens -= n as f64;
                    return n as usize;
                }
                (need - s.tokens) / self.rate as f64
            };
            std::thread::sleep(Duration::from_secs_f64(wait));
        }
    }

    /// Gives back `n` bytes of a grant that were not used.
    pub fn refund(&self, n: usize) {
        if n > 0 {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.tokens = (s.tokens + n as f64).min(2.0 * self.quantum as f64);
        }
    }
}

/// Parses a rate such as `10M`, `500k`, `1.5G` or `65536` (bytes per
/// second; K, M, G and T are powers of 1024, as in curl and rsync; a
/// trailing `B`, `iB` or `/s` is allowed).
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "'{text}' is not a rate (try 10M for 10 MiB/s, 500K, or a number of bytes per second)"
        )
    };
    let t = text.trim();
    let t = t.strip_suffix("/s").unwrap_or(t);
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix(['B', 'b']))
        .unwrap_or(t);
    let (num, mult) = match t.chars().last() {
        Some(c) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_lowercase() {
                'k' => 10,
                'm' => 20,
                'g' => 30,
                't' => 40,
                _ => return Err(bad()),
            };
            (&t[..t.len() - 1], (1u64 << shift) as f64)
        }
        _ => (t, 1.0),
    };
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    let bytes = v * mult;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(format!("'{text}' must be at least 1 byte per second"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_like_curl() {
        assert_eq!(parse_rate("65536"), Ok(65536));
        assert_eq!(parse_rate("10M"), Ok(10 << 20));
        assert_eq!(parse_rate("10m"), Ok(10 << 20));
        assert_eq!(parse_rate("500K"), Ok(500 << 10));
        assert_eq!(parse_rate("1.5G"), Ok(3 << 29));
        assert_eq!(parse_rate("10MB"), Ok(10 << 20));
        assert_eq!(parse_rate("10MiB/s"), Ok(10 << 20));
        for bad in ["", "M", "ten", "10X", "0", "-5M", "0.1"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn grants_never_exceed_the_ask_and_follow_the_rate() {
        let l = RateLimiter::new(200_000);
        assert_eq!(l.grant(0), 0);
        assert!(l.grant(5) <= 5);
        let started = Instant::now();
        let mut total = 0;
        while total < 100_000 {
            total += l.grant(64 * 1024);
        }
        // 100 kB at 200 kB/s takes about half a second; the bucket never
        // holds more than two grants (20 kB), so it cannot be much less.
        assert!(started.elapsed() >= Duration::from_millis(350));
    }
}
