//! `IPVS_SVC_ATTR_*`: the attributes nested in `IPVS_CMD_ATTR_SERVICE`.

use super::InetAddr;
use netlink_packet_core::{
    parse_string, parse_u16, parse_u16_be, parse_u32, DecodeError, DefaultNla, ErrorContext, Nla,
    NlaBuffer, Parseable,
};

const IPVS_SVC_ATTR_AF: u16 = 1;
const IPVS_SVC_ATTR_PROTOCOL: u16 = 2;
const IPVS_SVC_ATTR_ADDR: u16 = 3;
const IPVS_SVC_ATTR_PORT: u16 = 4;
const IPVS_SVC_ATTR_FWMARK: u16 = 5;
const IPVS_SVC_ATTR_SCHED_NAME: u16 = 6;
const IPVS_SVC_ATTR_FLAGS: u16 = 7;
const IPVS_SVC_ATTR_TIMEOUT: u16 = 8;
const IPVS_SVC_ATTR_NETMASK: u16 = 9;
const IPVS_SVC_ATTR_PE_NAME: u16 = 11;

/// `IP_VS_SVC_F_PERSISTENT`: connections of one client stick to one destination for the
/// service's timeout (what `sessionAffinity: ClientIP` needs).
pub const IP_VS_SVC_F_PERSISTENT: u32 = 0x0001;
/// `IP_VS_SVC_F_HASHED`: set by the kernel on services it has hashed; never ours to write.
pub const IP_VS_SVC_F_HASHED: u32 = 0x0002;
/// `IP_VS_SVC_F_SCHED1..3`: scheduler-specific flags (`sh`/`mh`: fallback, port).
pub const IP_VS_SVC_F_SCHED1: u32 = 0x0008;
pub const IP_VS_SVC_F_SCHED2: u32 = 0x0010;
pub const IP_VS_SVC_F_SCHED3: u32 = 0x0020;

/// `struct ip_vs_flags { __u32 flags; __u32 mask; }`, host byte order: only the bits in
/// `mask` are changed by a SET.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SvcFlags {
    pub flags: u32,
    pub mask: u32,
}

/// One service attribute. `Other` keeps what this layer does not interpret (statistics,
/// attributes of newer kernels) so a dump parses whatever the kernel adds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SvcAttr {
    /// `AF_INET` / `AF_INET6`.
    Af(u16),
    /// IP protocol number (`IPPROTO_TCP` …); absent for firewall-mark services.
    Protocol(u16),
    Addr(InetAddr),
    /// Network byte order on the wire.
    Port(u16),
    /// Firewall mark: the service matches packets carrying this mark instead of an
    /// address/port.
    Fwmark(u32),
    SchedName(String),
    Flags(SvcFlags),
    /// Persistence timeout, seconds.
    Timeout(u32),
    /// Persistence granularity: a prefix mask (IPv4, `0xffffffff`) or length (IPv6, `128`).
    Netmask(u32),
    /// Persistence engine name (`sip`).
    PeName(String),
    Other(DefaultNla),
}

impl Nla for SvcAttr {
    fn value_len(&self) -> usize {
        match self {
            Self::Af(_) | Self::Protocol(_) | Self::Port(_) => 2,
            Self::Addr(_) => InetAddr::LEN,
            Self::Fwmark(_) | Self::Timeout(_) | Self::Netmask(_) => 4,
            Self::SchedName(s) | Self::PeName(s) => s.len() + 1,
            Self::Flags(_) => 8,
            Self::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Self::Af(_) => IPVS_SVC_ATTR_AF,
            Self::Protocol(_) => IPVS_SVC_ATTR_PROTOCOL,
            Self::Addr(_) => IPVS_SVC_ATTR_ADDR,
            Self::Port(_) => IPVS_SVC_ATTR_PORT,
            Self::Fwmark(_) => IPVS_SVC_ATTR_FWMARK,
            Self::SchedName(_) => IPVS_SVC_ATTR_SCHED_NAME,
            Self::Flags(_) => IPVS_SVC_ATTR_FLAGS,
            Self::Timeout(_) => IPVS_SVC_ATTR_TIMEOUT,
            Self::Netmask(_) => IPVS_SVC_ATTR_NETMASK,
            Self::PeName(_) => IPVS_SVC_ATTR_PE_NAME,
            Self::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buf: &mut [u8]) {
        match self {
            Self::Af(v) | Self::Protocol(v) => buf.copy_from_slice(&v.to_ne_bytes()),
            Self::Port(p) => buf.copy_from_slice(&p.to_be_bytes()),
            Self::Addr(a) => buf.copy_from_slice(&a.0),
            Self::Fwmark(v) | Self::Timeout(v) | Self::Netmask(v) => {
                buf.copy_from_slice(&v.to_ne_bytes())
            }
            Self::SchedName(s) | Self::PeName(s) => super::emit_cstr(buf, s),
            Self::Flags(f) => {
                buf[..4].copy_from_slice(&f.flags.to_ne_bytes());
                buf[4..].copy_from_slice(&f.mask.to_ne_bytes());
            }
            Self::Other(nla) => nla.emit_value(buf),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for SvcAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            IPVS_SVC_ATTR_AF => Self::Af(parse_u16(v).context("IPVS_SVC_ATTR_AF")?),
            IPVS_SVC_ATTR_PROTOCOL => {
                Self::Protocol(parse_u16(v).context("IPVS_SVC_ATTR_PROTOCOL")?)
            }
            IPVS_SVC_ATTR_ADDR => Self::Addr(InetAddr::parse(v).context("IPVS_SVC_ATTR_ADDR")?),
            IPVS_SVC_ATTR_PORT => Self::Port(parse_u16_be(v).context("IPVS_SVC_ATTR_PORT")?),
            IPVS_SVC_ATTR_FWMARK => Self::Fwmark(parse_u32(v).context("IPVS_SVC_ATTR_FWMARK")?),
            IPVS_SVC_ATTR_SCHED_NAME => {
                Self::SchedName(parse_string(v).context("IPVS_SVC_ATTR_SCHED_NAME")?)
            }
            IPVS_SVC_ATTR_FLAGS if v.len() == 8 => Self::Flags(SvcFlags {
                flags: parse_u32(&v[..4]).context("IPVS_SVC_ATTR_FLAGS")?,
                mask: parse_u32(&v[4..]).context("IPVS_SVC_ATTR_FLAGS")?,
            }),
            IPVS_SVC_ATTR_FLAGS => {
                return Err(format!("IPVS_SVC_ATTR_FLAGS of {} bytes (want 8)", v.len()).into())
            }
            IPVS_SVC_ATTR_TIMEOUT => Self::Timeout(parse_u32(v).context("IPVS_SVC_ATTR_TIMEOUT")?),
            IPVS_SVC_ATTR_NETMASK => Self::Netmask(parse_u32(v).context("IPVS_SVC_ATTR_NETMASK")?),
            IPVS_SVC_ATTR_PE_NAME => {
                Self::PeName(parse_string(v).context("IPVS_SVC_ATTR_PE_NAME")?)
            }
            _ => Self::Other(DefaultNla::parse(buf)?),
        })
    }
}
