//! [`Cidr`]: an address range as block lists store it. The range math is the `ipnet`
//! crate's; this type adds what the block lists need on top: IPv4-mapped IPv6 addresses
//! taken as the IPv4 address they carry, a bare address read as one host, a strict
//! prefix syntax, and serde as the canonical `network/prefix` text.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// An address range: a network address (host bits zero) and a prefix length. IPv4
/// addresses mapped into IPv6 (`::ffff:a.b.c.d`) are treated as the IPv4 address they
/// carry, so one rule covers both forms a dual-stack listener may report.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr(
    /// Truncated (host bits zero), never an IPv4-mapped range of prefix 96 or more.
    IpNet,
);

/// Error for a string that is not an address or a CIDR range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an IP address or CIDR range (like 192.0.2.0/24 or 2001:db8::/32)")]
pub struct InvalidCidr;

impl Cidr {
    /// The range of `prefix` bits around `addr` (host bits cleared); `None` when the
    /// prefix is longer than the address.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let (addr, prefix) = match addr {
            // A mapped address with a prefix inside the IPv4 part is that IPv4 range.
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() && prefix >= 96 => {
                (addr.to_canonical(), prefix - 96)
            }
            _ => (addr, prefix),
        };
        IpNet::new(addr, prefix).ok().map(|net| Self(net.trunc()))
    }

    /// The range holding exactly `addr`.
    pub fn host(addr: IpAddr) -> Self {
        Self(IpNet::from(addr.to_canonical()))
    }

    /// The network address.
    pub fn network(&self) -> IpAddr {
        self.0.network()
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.0.prefix_len()
    }

    /// Whether `addr` is in the range.
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.0.contains(&addr.to_canonical())
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cidr")
            .field("network", &self.network())
            .field("prefix", &self.prefix())
            .finish()
    }
}

impl fmt::Display for Cidr {
    /// Always `network/prefix`, the canonical form stored and compared.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix())
    }
}

impl FromStr for Cidr {
    type Err = InvalidCidr;

    /// `addr` (one host) or `addr/prefix` with a prefix of one to three decimal digits;
    /// host bits of a range are cleared.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        match s.split_once('/') {
            None => s.parse::<IpAddr>().map(Cidr::host).map_err(|_| InvalidCidr),
            Some((addr, prefix)) => {
                let addr = addr.parse::<IpAddr>().map_err(|_| InvalidCidr)?;
                if prefix.is_empty()
                    || prefix.len() > 3
                    || !prefix.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(InvalidCidr);
                }
                let prefix = prefix.parse::<u8>().map_err(|_| InvalidCidr)?;
                Cidr::new(addr, prefix).ok_or(InvalidCidr)
            }
        }
    }
}

impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn cidrs_parse_normalize_and_contain() {
        let net: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(net.to_string(), "10.0.0.0/8");
        assert!(net.contains("10.255.0.1".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.9.9.9".parse().unwrap()));
        let host: Cidr = "192.0.2.7".parse().unwrap();
        assert_eq!(host.to_string(), "192.0.2.7/32");
        assert_eq!("::ffff:192.0.2.7".parse::<Cidr>().unwrap(), host);
        assert_eq!("::ffff:192.0.2.0/120".parse::<Cidr>().unwrap().to_string(), "192.0.2.0/24");
        // A mapped address with a prefix above the IPv4 part stays an IPv6 range.
        let wide: Cidr = "::ffff:192.0.2.7/80".parse().unwrap();
        assert_eq!(wide.to_string(), "::/80");
        assert!(!wide.contains("192.0.2.7".parse().unwrap()));
        let v6: Cidr = "2001:db8:1:2::99/64".parse().unwrap();
        assert_eq!(v6.to_string(), "2001:db8:1:2::/64");
        assert!(v6.contains("2001:db8:1:2:ffff::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().prefix(), 0);
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(!"::/0".parse::<Cidr>().unwrap().contains("8.8.8.8".parse().unwrap()));
        // Prefix bounds and syntax: one to three digits, at most the address's length.
        assert_eq!(" 10.0.0.0/032 ".parse::<Cidr>().unwrap().to_string(), "10.0.0.0/32");
        assert_eq!("::/128".parse::<Cidr>().unwrap().prefix(), 128);
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "::ffff:1.2.3.4/129",
            "10.0.0.0/",
            "10.0.0.0/0032",
            "10.0.0.0/256",
            "10.0.0/8",
            "x",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "1.2.3.4/08x",
            "1.2.3.4/8/8",
            "/8",
        ] {
            assert_eq!(bad.parse::<Cidr>(), Err(InvalidCidr), "{bad:?}");
        }
        let json = serde_json::to_string(&net).unwrap();
        assert_eq!(json, "\"10.0.0.0/8\"");
        assert_eq!(serde_json::from_str::<Cidr>(&json).unwrap(), net);
        assert!(serde_json::from_str::<Cidr>("\"10.0.0.0/33\"").is_err());
        assert_eq!(format!("{net:?}"), "Cidr { network: 10.0.0.0, prefix: 8 }");
    }

    /// The expected network of `addr/prefix`, by bit arithmetic independent of `ipnet`.
    fn masked(addr: IpAddr, prefix: u8) -> IpAddr {
        match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        }
    }

    proptest! {
        /// `addr/prefix` parses exactly when the prefix fits the address, to the masked
        /// network, covers exactly the addresses of the same family that mask to it, and
        /// prints as text that parses back to the same range.
        #[test]
        fn ranges_are_masked_networks(addr in any::<IpAddr>(), prefix in 0u8..=140, probe in any::<IpAddr>()) {
            // Mapped addresses have their own property below.
            let (addr, probe) = (addr.to_canonical(), probe.to_canonical());
            let text = format!("{addr}/{prefix}");
            let bits = if addr.is_ipv4() { 32 } else { 128 };
            let parsed = text.parse::<Cidr>();
            prop_assert_eq!(parsed.is_ok(), prefix <= bits, "{}", text);
            if let Ok(net) = parsed {
                prop_assert_eq!(net.network(), masked(addr, prefix));
                prop_assert_eq!(net.prefix(), prefix);
                prop_assert!(net.contains(addr));
                let inside = probe.is_ipv4() == addr.is_ipv4() && masked(probe, prefix) == net.network();
                prop_assert_eq!(net.contains(probe), inside, "{} {}", text, probe);
                prop_assert_eq!(net.to_string(), format!("{}/{prefix}", masked(addr, prefix)));
                prop_assert_eq!(net.to_string().parse::<Cidr>(), Ok(net));
                prop_assert_eq!(Cidr::new(addr, prefix), Some(net));
            }
            prop_assert_eq!(Cidr::host(addr), format!("{addr}").parse::<Cidr>().unwrap());
            prop_assert_eq!(Cidr::host(addr).prefix(), bits);
        }

        /// A mapped address with a prefix inside its IPv4 part is that IPv4 range, and
        /// covers both forms of its addresses.
        #[test]
        fn mapped_ranges_are_their_ipv4_ranges(v4 in any::<Ipv4Addr>(), prefix in 96u8..=128) {
            let mapped: Cidr = format!("{}/{prefix}", v4.to_ipv6_mapped()).parse().unwrap();
            let plain: Cidr = format!("{v4}/{}", prefix - 96).parse().unwrap();
            prop_assert_eq!(mapped, plain);
            prop_assert!(mapped.contains(IpAddr::V4(v4)));
            prop_assert!(mapped.contains(IpAddr::V6(v4.to_ipv6_mapped())));
            prop_assert_eq!(Cidr::host(IpAddr::V6(v4.to_ipv6_mapped())), Cidr::host(IpAddr::V4(v4)));
        }

        /// Any text parses or fails without a panic; what parses prints as its canonical
        /// form, which parses back to the same range.
        #[test]
        fn any_text_parses_or_fails(s in "[0-9a-fA-F:./ ]{0,45}|\\PC{0,20}") {
            if let Ok(net) = s.parse::<Cidr>() {
                prop_assert_eq!(net.to_string().parse::<Cidr>(), Ok(net), "{:?}", s);
            }
        }
    }
}
