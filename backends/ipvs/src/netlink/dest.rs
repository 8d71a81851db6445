//! `IPVS_DEST_ATTR_*`: the attributes nested in `IPVS_CMD_ATTR_DEST`.

use super::InetAddr;
use netlink_packet_core::{
    parse_u16, parse_u16_be, parse_u32, parse_u8, DecodeError, DefaultNla, ErrorContext, Nla,
    NlaBuffer, Parseable,
};

const IPVS_DEST_ATTR_ADDR: u16 = 1;
const IPVS_DEST_ATTR_PORT: u16 = 2;
const IPVS_DEST_ATTR_FWD_METHOD: u16 = 3;
const IPVS_DEST_ATTR_WEIGHT: u16 = 4;
const IPVS_DEST_ATTR_U_THRESH: u16 = 5;
const IPVS_DEST_ATTR_L_THRESH: u16 = 6;
const IPVS_DEST_ATTR_ACTIVE_CONNS: u16 = 7;
const IPVS_DEST_ATTR_INACT_CONNS: u16 = 8;
const IPVS_DEST_ATTR_PERSIST_CONNS: u16 = 9;
const IPVS_DEST_ATTR_ADDR_FAMILY: u16 = 11;
const IPVS_DEST_ATTR_TUN_TYPE: u16 = 13;
const IPVS_DEST_ATTR_TUN_PORT: u16 = 14;
const IPVS_DEST_ATTR_TUN_FLAGS: u16 = 15;

const IP_VS_CONN_F_MASQ: u32 = 0;
const IP_VS_CONN_F_LOCALNODE: u32 = 1;
const IP_VS_CONN_F_TUNNEL: u32 = 2;
const IP_VS_CONN_F_DROUTE: u32 = 3;
const IP_VS_CONN_F_BYPASS: u32 = 4;
/// `IP_VS_CONN_F_FWD_MASK`: the forwarding method is the low 3 bits of the connection flags.
const IP_VS_CONN_F_FWD_MASK: u32 = 0x7;

/// How IPVS forwards to a destination. Switchyard uses only `Masq` (NAT: the destination's
/// replies come back through this node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FwdMethod {
    Masq,
    LocalNode,
    Tunnel,
    DirectRoute,
    Bypass,
    Other(u32),
}

impl From<u32> for FwdMethod {
    fn from(v: u32) -> Self {
        match v & IP_VS_CONN_F_FWD_MASK {
            IP_VS_CONN_F_MASQ => Self::Masq,
            IP_VS_CONN_F_LOCALNODE => Self::LocalNode,
            IP_VS_CONN_F_TUNNEL => Self::Tunnel,
            IP_VS_CONN_F_DROUTE => Self::DirectRoute,
            IP_VS_CONN_F_BYPASS => Self::Bypass,
            other => Self::Other(other),
        }
    }
}

impl From<FwdMethod> for u32 {
    fn from(m: FwdMethod) -> u32 {
        match m {
            FwdMethod::Masq => IP_VS_CONN_F_MASQ,
            FwdMethod::LocalNode => IP_VS_CONN_F_LOCALNODE,
            FwdMethod::Tunnel => IP_VS_CONN_F_TUNNEL,
            FwdMethod::DirectRoute => IP_VS_CONN_F_DROUTE,
            FwdMethod::Bypass => IP_VS_CONN_F_BYPASS,
            FwdMethod::Other(v) => v,
        }
    }
}

/// One destination attribute; `Other` keeps statistics and newer attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DestAttr {
    Addr(InetAddr),
    /// Network byte order on the wire.
    Port(u16),
    FwdMethod(FwdMethod),
    /// 0 = quiesced: no new connections, existing ones continue (graceful termination).
    Weight(u32),
    UpperThreshold(u32),
    LowerThreshold(u32),
    /// Dump only: connections in ESTABLISHED (TCP) or any (UDP) state.
    ActiveConns(u32),
    /// Dump only: the other connections (TCP closing, TIME_WAIT …).
    InactiveConns(u32),
    /// Dump only: persistence templates pointing at this destination.
    PersistConns(u32),
    /// `AF_INET` / `AF_INET6` (kernels since 5.1 accept a family differing from the service's).
    AddrFamily(u16),
    TunType(u8),
    TunPort(u16),
    TunFlags(u16),
    Other(DefaultNla),
}

impl Nla for DestAttr {
    fn value_len(&self) -> usize {
        match self {
            Self::Addr(_) => InetAddr::LEN,
            Self::Port(_) | Self::AddrFamily(_) | Self::TunPort(_) | Self::TunFlags(_) => 2,
            Self::TunType(_) => 1,
            Self::FwdMethod(_)
            | Self::Weight(_)
            | Self::UpperThreshold(_)
            | Self::LowerThreshold(_)
            | Self::ActiveConns(_)
            | Self::InactiveConns(_)
            | Self::PersistConns(_) => 4,
            Self::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Self::Addr(_) => IPVS_DEST_ATTR_ADDR,
            Self::Port(_) => IPVS_DEST_ATTR_PORT,
            Self::FwdMethod(_) => IPVS_DEST_ATTR_FWD_METHOD,
            Self::Weight(_) => IPVS_DEST_ATTR_WEIGHT,
            Self::UpperThreshold(_) => IPVS_DEST_ATTR_U_THRESH,
            Self::LowerThreshold(_) => IPVS_DEST_ATTR_L_THRESH,
            Self::ActiveConns(_) => IPVS_DEST_ATTR_ACTIVE_CONNS,
            Self::InactiveConns(_) => IPVS_DEST_ATTR_INACT_CONNS,
            Self::PersistConns(_) => IPVS_DEST_ATTR_PERSIST_CONNS,
            Self::AddrFamily(_) => IPVS_DEST_ATTR_ADDR_FAMILY,
            Self::TunType(_) => IPVS_DEST_ATTR_TUN_TYPE,
            Self::TunPort(_) => IPVS_DEST_ATTR_TUN_PORT,
            Self::TunFlags(_) => IPVS_DEST_ATTR_TUN_FLAGS,
            Self::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buf: &mut [u8]) {
        match self {
            Self::Addr(a) => buf.copy_from_slice(&a.0),
            Self::Port(p) | Self::TunPort(p) => buf.copy_from_slice(&p.to_be_bytes()),
            Self::AddrFamily(v) | Self::TunFlags(v) => buf.copy_from_slice(&v.to_ne_bytes()),
            Self::TunType(v) => buf[0] = *v,
            Self::FwdMethod(m) => buf.copy_from_slice(&u32::from(*m).to_ne_bytes()),
            Self::Weight(v)
            | Self::UpperThreshold(v)
            | Self::LowerThreshold(v)
            | Self::ActiveConns(v)
            | Self::InactiveConns(v)
            | Self::PersistConns(v) => buf.copy_from_slice(&v.to_ne_bytes()),
            Self::Other(nla) => nla.emit_value(buf),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for DestAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let v = buf.value();
        let u32_of = |name: &str| parse_u32(v).context(name.to_string());
        Ok(match buf.kind() {
            IPVS_DEST_ATTR_ADDR => Self::Addr(InetAddr::parse(v).context("IPVS_DEST_ATTR_ADDR")?),
            IPVS_DEST_ATTR_PORT => Self::Port(parse_u16_be(v).context("IPVS_DEST_ATTR_PORT")?),
            IPVS_DEST_ATTR_FWD_METHOD => {
                Self::FwdMethod(u32_of("IPVS_DEST_ATTR_FWD_METHOD")?.into())
            }
            IPVS_DEST_ATTR_WEIGHT => Self::Weight(u32_of("IPVS_DEST_ATTR_WEIGHT")?),
            IPVS_DEST_ATTR_U_THRESH => Self::UpperThreshold(u32_of("IPVS_DEST_ATTR_U_THRESH")?),
            IPVS_DEST_ATTR_L_THRESH => Self::LowerThreshold(u32_of("IPVS_DEST_ATTR_L_THRESH")?),
            IPVS_DEST_ATTR_ACTIVE_CONNS => {
                Self::ActiveConns(u32_of("IPVS_DEST_ATTR_ACTIVE_CONNS")?)
            }
            IPVS_DEST_ATTR_INACT_CONNS => {
                Self::InactiveConns(u32_of("IPVS_DEST_ATTR_INACT_CONNS")?)
            }
            IPVS_DEST_ATTR_PERSIST_CONNS => {
                Self::PersistConns(u32_of("IPVS_DEST_ATTR_PERSIST_CONNS")?)
            }
            IPVS_DEST_ATTR_ADDR_FAMILY => {
                Self::AddrFamily(parse_u16(v).context("IPVS_DEST_ATTR_ADDR_FAMILY")?)
            }
            IPVS_DEST_ATTR_TUN_TYPE => {
                Self::TunType(parse_u8(v).context("IPVS_DEST_ATTR_TUN_TYPE")?)
            }
            IPVS_DEST_ATTR_TUN_PORT => {
                Self::TunPort(parse_u16_be(v).context("IPVS_DEST_ATTR_TUN_PORT")?)
            }
            IPVS_DEST_ATTR_TUN_FLAGS => {
                Self::TunFlags(parse_u16(v).context("IPVS_DEST_ATTR_TUN_FLAGS")?)
            }
            _ => Self::Other(DefaultNla::parse(buf)?),
        })
    }
}
