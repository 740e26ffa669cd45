//! Who a connection comes from, for the limits that count per client: the
//! per-address connection limit and the penalty for failed token proofs.
//! Both count the same unit, so a client cannot slip past one by the way
//! it is counted by the other.
//!
//! The unit is an IPv4 address, or the /64 an IPv6 address is in. One
//! host usually holds a whole /64 (SLAAC, privacy addresses) and can pick
//! any address in it at will, so counting IPv6 per address would give one
//! host 2^64 allowances; a /64 is what one IPv4 address behind NAT is.
//! (A LAN shares one /64 as it would share one public IPv4 address.) An
//! IPv4-mapped IPv6 address (a dual-stack socket) is its IPv4 address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    V4(Ipv4Addr),
    /// The first 64 bits of the address; the rest are zero.
    V6Net(Ipv6Addr),
}

impl Source {
    pub fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4),
                None => Source::V6Net(Ipv6Addr::from(u128::from(v6) & !0u128 << 64)),
            },
        }
    }
}

/// For log lines: `10.0.0.1`, or `2001:db8::/64`.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::V4(a) => write!(f, "{a}"),
            Source::V6Net(n) => write!(f, "{n}/64"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(s: &str) -> Source {
        Source::of(s.parse().unwrap())
    }

    #[test]
    fn ipv4_is_per_address_and_ipv6_per_64() {
        assert_ne!(of("10.0.0.1"), of("10.0.0.2"));
        assert_eq!(of("2001:db8::1"), of("2001:db8::ffff:ffff:ffff:1"));
        assert_ne!(of("2001:db8:0:0::1"), of("2001:db8:0:1::1"));
        assert_eq!(of("::ffff:10.0.0.2"), of("10.0.0.2"));
        assert_eq!(of("::1"), of("::2"));
        assert_eq!(of("2001:db8::1").to_string(), "2001:db8::/64");
        assert_eq!(of("::ffff:10.0.0.2").to_string(), "10.0.0.2");
    }
}
