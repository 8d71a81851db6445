//! ctnetlink attributes (`include/uapi/linux/netfilter/nfnetlink_conntrack.h`) as typed enums.
//!
//! Each level of nesting is its own enum with an `Other` arm, so an attribute a newer kernel
//! adds is carried, not an error. Byte order follows the kernel's policies: addresses raw,
//! ports, zones, ids, marks and status big-endian, `CTA_FILTER` flags host-endian (`NLA_U32`).

use netlink_packet_core::{
    parse_u16_be, parse_u32, parse_u32_be, parse_u8, DecodeError, DefaultNla, Emitable as _,
    ErrorContext as _, Nla, NlaBuffer, NlasIterator, Parseable,
};
use std::net::{Ipv4Addr, Ipv6Addr};

// enum ctattr_type
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_MARK: u16 = 8;
const CTA_ID: u16 = 12;
const CTA_ZONE: u16 = 18;
const CTA_FILTER: u16 = 25;
// enum ctattr_tuple
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_TUPLE_ZONE: u16 = 3;
// enum ctattr_ip
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
// enum ctattr_l4proto
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
// enum ctattr_filter
const CTA_FILTER_ORIG_FLAGS: u16 = 1;
const CTA_FILTER_REPLY_FLAGS: u16 = 2;

/// `CTA_FILTER_F_CTA_PROTO_NUM` (kernel `nf_internals.h`, part of the ABI since 5.9): the dump
/// keeps entries whose original tuple has the protocol number given in `CTA_TUPLE_ORIG`.
pub const FILTER_PROTO_NUM: u32 = 1 << 3;

/// A top-level conntrack attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CtAttr {
    /// The tuple of the first packet (client → virtual address).
    TupleOrig(Vec<TupleAttr>),
    /// The tuple replies are expected on (endpoint → client, after NAT).
    TupleReply(Vec<TupleAttr>),
    Status(u32),
    Mark(u32),
    /// The entry's id: a delete carrying it removes only that entry, not one recreated since
    /// the dump with the same tuple.
    Id(u32),
    /// Conntrack zone (absent: zone 0).
    Zone(u16),
    /// Kernel-side dump filtering (5.9+): which fields of the given tuples must match.
    Filter(Vec<FilterAttr>),
    Other(DefaultNla),
}

/// Inside `CTA_TUPLE_ORIG` / `CTA_TUPLE_REPLY`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TupleAttr {
    Ip(Vec<IpAttr>),
    Proto(Vec<ProtoAttr>),
    Zone(u16),
    Other(DefaultNla),
}

/// Inside `CTA_TUPLE_IP`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IpAttr {
    V4Src(Ipv4Addr),
    V4Dst(Ipv4Addr),
    V6Src(Ipv6Addr),
    V6Dst(Ipv6Addr),
    Other(DefaultNla),
}

/// Inside `CTA_TUPLE_PROTO`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtoAttr {
    Num(u8),
    SrcPort(u16),
    DstPort(u16),
    Other(DefaultNla),
}

/// Inside `CTA_FILTER`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FilterAttr {
    OrigFlags(u32),
    ReplyFlags(u32),
    Other(DefaultNla),
}

fn nested_len<T: Nla>(attrs: &[T]) -> usize {
    attrs.iter().map(|a| a.buffer_len()).sum()
}

fn emit_nested<T: Nla>(attrs: &[T], buffer: &mut [u8]) {
    let mut off = 0;
    for a in attrs {
        let len = a.buffer_len();
        a.emit(&mut buffer[off..off + len]);
        off += len;
    }
}

/// Parses every attribute of a nested payload with `parse`, adding `what` to errors.
pub(crate) fn parse_nested<T>(
    payload: &[u8],
    what: &str,
    parse: impl Fn(&NlaBuffer<&[u8]>) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    NlasIterator::new(payload)
        .map(|nla| {
            let nla = nla.with_context(|| format!("malformed attribute in {what}"))?;
            parse(&nla).with_context(|| format!("in {what}"))
        })
        .collect()
}

fn ipv4(payload: &[u8]) -> Result<Ipv4Addr, DecodeError> {
    let octets: [u8; 4] = payload
        .try_into()
        .map_err(|_| DecodeError::invalid_ip_address(payload.len()))?;
    Ok(Ipv4Addr::from(octets))
}

fn ipv6(payload: &[u8]) -> Result<Ipv6Addr, DecodeError> {
    let octets: [u8; 16] = payload
        .try_into()
        .map_err(|_| DecodeError::invalid_ip_address(payload.len()))?;
    Ok(Ipv6Addr::from(octets))
}

impl Nla for CtAttr {
    fn value_len(&self) -> usize {
        match self {
            Self::TupleOrig(a) | Self::TupleReply(a) => nested_len(a),
            Self::Filter(a) => nested_len(a),
            Self::Status(_) | Self::Mark(_) | Self::Id(_) => 4,
            Self::Zone(_) => 2,
            Self::Other(nla) => nla.value_len(),
        }
    }
    fn kind(&self) -> u16 {
        match self {
            Self::TupleOrig(_) => CTA_TUPLE_ORIG,
            Self::TupleReply(_) => CTA_TUPLE_REPLY,
            Self::Status(_) => CTA_STATUS,
            Self::Mark(_) => CTA_MARK,
            Self::Id(_) => CTA_ID,
            Self::Zone(_) => CTA_ZONE,
            Self::Filter(_) => CTA_FILTER,
            Self::Other(nla) => nla.kind(),
        }
    }
    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Self::TupleOrig(a) | Self::TupleReply(a) => emit_nested(a, buffer),
            Self::Filter(a) => emit_nested(a, buffer),
            Self::Status(v) | Self::Mark(v) | Self::Id(v) => {
                buffer[..4].copy_from_slice(&v.to_be_bytes())
            }
            Self::Zone(v) => buffer[..2].copy_from_slice(&v.to_be_bytes()),
            Self::Other(nla) => nla.emit_value(buffer),
        }
    }
    fn is_nested(&self) -> bool {
        matches!(
            self,
            Self::TupleOrig(_) | Self::TupleReply(_) | Self::Filter(_)
        )
    }
}

impl<'a> Parseable<NlaBuffer<&'a [u8]>> for CtAttr {
    fn parse(buf: &NlaBuffer<&'a [u8]>) -> Result<Self, DecodeError> {
        let p = buf.value();
        Ok(match buf.kind() {
            CTA_TUPLE_ORIG => Self::TupleOrig(parse_nested(p, "CTA_TUPLE_ORIG", TupleAttr::parse)?),
            CTA_TUPLE_REPLY => {
                Self::TupleReply(parse_nested(p, "CTA_TUPLE_REPLY", TupleAttr::parse)?)
            }
            CTA_STATUS => Self::Status(parse_u32_be(p).context("CTA_STATUS")?),
            CTA_MARK => Self::Mark(parse_u32_be(p).context("CTA_MARK")?),
            CTA_ID => Self::Id(parse_u32_be(p).context("CTA_ID")?),
            CTA_ZONE => Self::Zone(parse_u16_be(p).context("CTA_ZONE")?),
            CTA_FILTER => Self::Filter(parse_nested(p, "CTA_FILTER", FilterAttr::parse)?),
            _ => Self::Other(DefaultNla::parse(buf)?),
        })
    }
}

impl Nla for TupleAttr {
    fn value_len(&self) -> usize {
        match self {
            Self::Ip(a) => nested_len(a),
            Self::Proto(a) => nested_len(a),
            Self::Zone(_) => 2,
            Self::Other(nla) => nla.value_len(),
        }
    }
    fn kind(&self) -> u16 {
        match self {
            Self::Ip(_) => CTA_TUPLE_IP,
            Self::Proto(_) => CTA_TUPLE_PROTO,
            Self::Zone(_) => CTA_TUPLE_ZONE,
            Self::Other(nla) => nla.kind(),
        }
    }
    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Self::Ip(a) => emit_nested(a, buffer),
            Self::Proto(a) => emit_nested(a, buffer),
            Self::Zone(v) => buffer[..2].copy_from_slice(&v.to_be_bytes()),
            Self::Other(nla) => nla.emit_value(buffer),
        }
    }
    fn is_nested(&self) -> bool {
        matches!(self, Self::Ip(_) | Self::Proto(_))
    }
}

impl TupleAttr {
    fn parse(buf: &NlaBuffer<&[u8]>) -> Result<Self, DecodeError> {
        let p = buf.value();
        Ok(match buf.kind() {
            CTA_TUPLE_IP => Self::Ip(parse_nested(p, "CTA_TUPLE_IP", IpAttr::parse)?),
            CTA_TUPLE_PROTO => Self::Proto(parse_nested(p, "CTA_TUPLE_PROTO", ProtoAttr::parse)?),
            CTA_TUPLE_ZONE => Self::Zone(parse_u16_be(p).context("CTA_TUPLE_ZONE")?),
            _ => Self::Other(DefaultNla::parse(buf)?),
        })
    }
}

impl Nla for IpAttr {
    fn value_len(&self) -> usize {
        match self {
            Self::V4Src(_) | Self::V4Dst(_) => 4,
            Self::V6Src(_) | Self::V6Dst(_) => 16,
            Self::Other(nla) => nla.value_len(),
        }
    }
    fn kind(&self) -> u16 {
        match self {
            Self::V4Src(_) => CTA_IP_V4_SRC,
            Self::V4Dst(_) => CTA_IP_V4_DST,
            Self::V6Src(_) => CTA_IP_V6_SRC,
            Self::V6Dst(_) => CTA_IP_V6_DST,
            Self::Other(nla) => nla.kind(),
        }
    }
    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Self::V4Src(a) | Self::V4Dst(a) => buffer[..4].copy_from_slice(&a.octets()),
            Self::V6Src(a) | Self::V6Dst(a) => buffer[..16].copy_from_slice(&a.octets()),
            Self::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl IpAttr {
    fn parse(buf: &NlaBuffer<&[u8]>) -> Result<Self, DecodeError> {
        let p = buf.value();
        Ok(match buf.kind() {
            CTA_IP_V4_SRC => Self::V4Src(ipv4(p).context("CTA_IP_V4_SRC")?),
            CTA_IP_V4_DST => Self::V4Dst(ipv4(p).context("CTA_IP_V4_DST")?),
            CTA_IP_V6_SRC => Self::V6Src(ipv6(p).context("CTA_IP_V6_SRC")?),
            CTA_IP_V6_DST => Self::V6Dst(ipv6(p).context("CTA_IP_V6_DST")?),
            _ => Self::Other(DefaultNla::parse(buf)?),
        })
    }
}

impl Nla for ProtoAttr {
    fn value_len(&self) -> usize {
        match self {
            Self::Num(_) => 1,
            Self::SrcPort(_) | Self::DstPort(_) => 2,
            Self::Other(nla) => nla.value_len(),
        }
    }
    fn kind(&self) -> u16 {
        match self {
            Self::Num(_) => CTA_PROTO_NUM,
            Self::SrcPort(_) => CTA_PROTO_SRC_PORT,
            Self::DstPort(_) => CTA_PROTO_DST_PORT,
            Self::Other(nla) => nla.kind(),
        }
    }
    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Self::Num(n) => buffer[0] = *n,
            Self::SrcPort(p) | Self::DstPort(p) => buffer[..2].copy_from_slice(&p.to_be_bytes()),
            Self::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl ProtoAttr {
    fn parse(buf: &NlaBuffer<&[u8]>) -> Result<Self, DecodeError> {
        let p = buf.value();
        Ok(match buf.kind() {
            CTA_PROTO_NUM => Self::Num(parse_u8(p).context("CTA_PROTO_NUM")?),
            CTA_PROTO_SRC_PORT => Self::SrcPort(parse_u16_be(p).context("CTA_PROTO_SRC_PORT")?),
            CTA_PROTO_DST_PORT => Self::DstPort(parse_u16_be(p).context("CTA_PROTO_DST_PORT")?),
            _ => Self::Other(DefaultNla::parse(buf)?),
        })
    }
}

impl Nla for FilterAttr {
    fn value_len(&self) -> usize {
        match self {
            Self::OrigFlags(_) | Self::ReplyFlags(_) => 4,
            Self::Other(nla) => nla.value_len(),
        }
    }
    fn kind(&self) -> u16 {
        match self {
            Self::OrigFlags(_) => CTA_FILTER_ORIG_FLAGS,
            Self::ReplyFlags(_) => CTA_FILTER_REPLY_FLAGS,
            Self::Other(nla) => nla.kind(),
        }
    }
    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            // NLA_U32: host byte order, unlike every other number here.
            Self::OrigFlags(v) | Self::ReplyFlags(v) => {
                buffer[..4].copy_from_slice(&v.to_ne_bytes())
            }
            Self::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl FilterAttr {
    fn parse(buf: &NlaBuffer<&[u8]>) -> Result<Self, DecodeError> {
        let p = buf.value();
        Ok(match buf.kind() {
            CTA_FILTER_ORIG_FLAGS => {
                Self::OrigFlags(parse_u32(p).context("CTA_FILTER_ORIG_FLAGS")?)
            }
            CTA_FILTER_REPLY_FLAGS => {
                Self::ReplyFlags(parse_u32(p).context("CTA_FILTER_REPLY_FLAGS")?)
            }
            _ => Self::Other(DefaultNla::parse(buf)?),
        })
    }
}
