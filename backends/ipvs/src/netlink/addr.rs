//! `union nf_inet_addr`: the 16 bytes IPVS uses for every address, read according to the
//! address family carried beside it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address as IPVS stores it: IPv4 in the first 4 bytes, the rest zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct InetAddr(pub [u8; 16]);

impl InetAddr {
    pub const LEN: usize = 16;

    pub fn from_ip(ip: IpAddr) -> Self {
        let mut b = [0u8; 16];
        match ip {
            IpAddr::V4(v4) => b[..4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => b.copy_from_slice(&v6.octets()),
        }
        Self(b)
    }

    /// The address for family `af` (`AF_INET` reads the first 4 bytes); `None` for an
    /// unknown family.
    pub fn to_ip(self, af: u16) -> Option<IpAddr> {
        match af {
            super::AF_INET => Some(IpAddr::V4(Ipv4Addr::new(
                self.0[0], self.0[1], self.0[2], self.0[3],
            ))),
            super::AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(self.0))),
            _ => None,
        }
    }

    /// Parses an attribute value: the kernel sends 16 bytes; 4 are accepted too (an IPv4
    /// address written by a tool that sends only what it needs).
    pub fn parse(value: &[u8]) -> Result<Self, netlink_packet_core::DecodeError> {
        let mut b = [0u8; 16];
        match value.len() {
            4 | 16 => b[..value.len()].copy_from_slice(value),
            n => return Err(format!("IPVS address of {n} bytes (want 4 or 16)").into()),
        }
        Ok(Self(b))
    }
}

/// The kernel family of an address.
pub fn af_of(ip: &IpAddr) -> u16 {
    match ip {
        IpAddr::V4(_) => super::AF_INET,
        IpAddr::V6(_) => super::AF_INET6,
    }
}
