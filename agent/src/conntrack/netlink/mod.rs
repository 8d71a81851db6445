//! An in-project ctnetlink layer on netlink-packet-core: the messages the cleanup needs
//! (`IPCTNL_MSG_CT_GET` dumps filtered by the kernel, `IPCTNL_MSG_CT_DELETE` by tuple) and a
//! typed view of a dumped entry. DESIGN-NOTES 140 says why not `netlink-packet-netfilter`.

mod attr;
mod message;

pub use attr::{CtAttr, FilterAttr, IpAttr, ProtoAttr, TupleAttr, FILTER_PROTO_NUM};
pub use message::{CtMessage, CtMsgType};

use std::net::IpAddr;
use switchyard_core::IpFamily;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// `nfgen_family` of a family.
pub fn af(family: IpFamily) -> u8 {
    match family {
        IpFamily::V4 => AF_INET,
        IpFamily::V6 => AF_INET6,
    }
}

/// One direction of a conntrack entry with ports (TCP, UDP, SCTP...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub src_port: u16,
    pub dst_port: u16,
}

impl Tuple {
    /// `None` when an address, the protocol or a port is missing (ICMP entries have no ports).
    fn from_attrs(attrs: &[TupleAttr]) -> Option<Self> {
        let (mut src, mut dst, mut protocol, mut src_port, mut dst_port) =
            (None, None, None, None, None);
        for a in attrs {
            match a {
                TupleAttr::Ip(ips) => {
                    for ip in ips {
                        match ip {
                            IpAttr::V4Src(a) => src = Some(IpAddr::V4(*a)),
                            IpAttr::V4Dst(a) => dst = Some(IpAddr::V4(*a)),
                            IpAttr::V6Src(a) => src = Some(IpAddr::V6(*a)),
                            IpAttr::V6Dst(a) => dst = Some(IpAddr::V6(*a)),
                            IpAttr::Other(_) => {}
                        }
                    }
                }
                TupleAttr::Proto(protos) => {
                    for p in protos {
                        match p {
                            ProtoAttr::Num(n) => protocol = Some(*n),
                            ProtoAttr::SrcPort(n) => src_port = Some(*n),
                            ProtoAttr::DstPort(n) => dst_port = Some(*n),
                            ProtoAttr::Other(_) => {}
                        }
                    }
                }
                TupleAttr::Zone(_) | TupleAttr::Other(_) => {}
            }
        }
        Some(Self {
            src: src?,
            dst: dst?,
            protocol: protocol?,
            src_port: src_port?,
            dst_port: dst_port?,
        })
    }

    fn to_attrs(self) -> Vec<TupleAttr> {
        let ips = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => vec![IpAttr::V4Src(s), IpAttr::V4Dst(d)],
            (IpAddr::V6(s), IpAddr::V6(d)) => vec![IpAttr::V6Src(s), IpAttr::V6Dst(d)],
            // Parsed entries never mix families; keep each address in its own spelling.
            (s, d) => vec![ip_attr(s, true), ip_attr(d, false)],
        };
        vec![
            TupleAttr::Ip(ips),
            TupleAttr::Proto(vec![
                ProtoAttr::Num(self.protocol),
                ProtoAttr::SrcPort(self.src_port),
                ProtoAttr::DstPort(self.dst_port),
            ]),
        ]
    }
}

fn ip_attr(ip: IpAddr, src: bool) -> IpAttr {
    match (ip, src) {
        (IpAddr::V4(a), true) => IpAttr::V4Src(a),
        (IpAddr::V4(a), false) => IpAttr::V4Dst(a),
        (IpAddr::V6(a), true) => IpAttr::V6Src(a),
        (IpAddr::V6(a), false) => IpAttr::V6Dst(a),
    }
}

/// A dumped conntrack entry, as far as the cleanup reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub orig: Tuple,
    pub reply: Tuple,
    /// Conntrack zone; 0 when the kernel sent none.
    pub zone: u16,
    pub id: Option<u32>,
}

impl Flow {
    /// The entry a dump answer describes; `None` for entries without ports or incomplete ones.
    pub fn from_message(msg: &CtMessage) -> Option<Self> {
        let (mut orig, mut reply, mut zone, mut id) = (None, None, 0, None);
        for a in &msg.attrs {
            match a {
                CtAttr::TupleOrig(t) => orig = Tuple::from_attrs(t),
                CtAttr::TupleReply(t) => reply = Tuple::from_attrs(t),
                CtAttr::Zone(z) => zone = *z,
                CtAttr::Id(i) => id = Some(*i),
                _ => {}
            }
        }
        Some(Self {
            orig: orig?,
            reply: reply?,
            zone,
            id,
        })
    }

    /// `IPCTNL_MSG_CT_DELETE` of exactly this entry: its original tuple, its zone, and its id
    /// (so an entry recreated since the dump with the same tuple is left alone: `ENOENT`).
    pub fn delete_request(&self, family: IpFamily) -> CtMessage {
        let mut attrs = vec![CtAttr::TupleOrig(self.orig.to_attrs())];
        if self.zone != 0 {
            attrs.push(CtAttr::Zone(self.zone));
        }
        if let Some(id) = self.id {
            attrs.push(CtAttr::Id(id));
        }
        CtMessage {
            kind: CtMsgType::Delete,
            family: af(family),
            attrs,
        }
    }
}

/// `IPCTNL_MSG_CT_GET` dump of one family's entries of one L4 protocol, filtered in the kernel
/// (`CTA_FILTER` with the protocol number of the original tuple; 5.9+, so on our 6.1 floor).
pub fn dump_request(family: IpFamily, protocol: u8) -> CtMessage {
    CtMessage {
        kind: CtMsgType::Get,
        family: af(family),
        attrs: vec![
            CtAttr::TupleOrig(vec![TupleAttr::Proto(vec![ProtoAttr::Num(protocol)])]),
            CtAttr::Filter(vec![
                FilterAttr::OrigFlags(FILTER_PROTO_NUM),
                FilterAttr::ReplyFlags(0),
            ]),
        ],
    }
}

/// The same dump without the kernel filter, for a kernel that refuses `CTA_FILTER`: entries
/// are then filtered here (the family still in the kernel, by `nfgen_family`).
pub fn dump_request_unfiltered(family: IpFamily) -> CtMessage {
    CtMessage {
        kind: CtMsgType::Get,
        family: af(family),
        attrs: Vec::new(),
    }
}

#[cfg(test)]
mod tests;
