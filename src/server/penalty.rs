//! Per-source penalties for failed token proofs, after OpenSSH's
//! `PerSourcePenalties` and vsftpd's `max_login_fails`: every wrong proof
//! from an address adds to that address's penalty, and while a penalty
//! runs, new connections from it are refused before any work is done. A
//! guesser is slowed to a few tries a minute; other addresses never notice.
//! A source is an IPv4 address or an IPv6 /64 (see [`Source`]), as for the
//! per-address connection limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::source::Source;

/// Added to a source's penalty for each failed proof.
pub const STEP: Duration = Duration::from_secs(15);
/// The longest a penalty grows.
pub const MAX: Duration = Duration::from_secs(600);
/// Most sources remembered; past this, expired entries are dropped, and
/// if none has expired, the table starts afresh (a flood of addresses must
/// not grow memory without bound).
const MAX_SOURCES: usize = 65_536;

#[derive(Default)]
pub struct Penalties {
    until: Mutex<HashMap<Source, Instant>>,
}

impl Penalties {
    /// How long `ip` must still wait, if it is penalized.
    pub fn pending(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let map = self.until.lock().unwrap();
        map.get(&Source::of(ip))
            .map(|u| u.saturating_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    /// Records a failed proof from `ip`; returns its penalty now.
    pub fn fail(&self, ip: IpAddr, now: Instant) -> Duration {
        let mut map = self.until.lock().unwrap();
        if map.len() >= MAX_SOURCES {
            map.retain(|_, u| *u > now);
            if map.len() >= MAX_SOURCES {
                map.clear();
            }
        }
        let u = map.entry(Source::of(ip)).or_insert(now);
        *u = ((*u).max(now) + STEP).min(now + MAX);
        *u - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn penalties_add_up_to_a_cap_and_stay_with_their_source() {
        let p = Penalties::default();
        let t = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(p.pending(a, t), None);
        assert_eq!(p.fail(a, t), STEP);
        assert_eq!(p.fail(a, t), 2 * STEP);
        assert_eq!(p.pending(b, t), None);
        for _ in 0..100 {
            p.fail(a, t);
        }
        assert_eq!(p.pending(a, t), Some(MAX));
        assert_eq!(p.pending(a, t + MAX), None);
        // One IPv6 host holds its /64; the mapped form of an IPv4 address
        // is that address.
        let v6a: IpAddr = "2001:db8::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8::ffff:1".parse().unwrap();
        p.fail(v6a, t);
        assert!(p.pending(v6b, t).is_some());
        let mapped: IpAddr = "::ffff:10.0.0.2".parse().unwrap();
        p.fail(mapped, t);
        assert!(p.pending(b, t).is_some());
    }
}
