//! The IPVS generic-netlink layer (`switchyard_ipvs::netlink`): requests of arbitrary
//! service, destination and address values encoded as the socket sends them and decoded
//! back (a round trip), and arbitrary bytes decoded as the kernel's answers to a dump.
//!
//! Values are built through the crate's own conversions (`IpvsCmd::from(u8)`,
//! `FwdMethod::from(u32)`, `InetAddr::from_ip`), so each has one wire form and the round trip
//! must give it back exactly. New attribute variants (IPv6 work adds some) need one arm in
//! [`SvcValue`] or [`DestValue`].

use crate::cluster::few;
use arbitrary::{Arbitrary, Unstructured};
use netlink_packet_core::{DefaultNla, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST};
use netlink_packet_generic::ctrl::GenlCtrl;
use netlink_packet_generic::GenlMessage;
use std::net::IpAddr;
use switchyard_ipvs::netlink::addr::af_of;
use switchyard_ipvs::netlink::{
    decode_datagram, encode_request, CmdAttr, DestAttr, FwdMethod, InetAddr, IpvsCmd, IpvsMessage,
    SvcAttr, SvcFlags,
};

/// Attributes per nested list and messages per datagram: each attribute is encoded on its
/// own, so a few of each (and repeats) reach every arm; more only lengthen the run.
const MAX_ATTRS: usize = 16;
const MAX_MESSAGES: usize = 4;

/// An attribute number this layer does not interpret, kept as `Other` (kernel statistics,
/// newer attributes): the values that are not one of the typed arms in each list.
fn other(kinds: &[u16], pick: u8, value: Vec<u8>) -> DefaultNla {
    DefaultNla::new(kinds[usize::from(pick) % kinds.len()], value)
}

#[derive(Debug, Arbitrary)]
enum SvcValue {
    Af(u16),
    Protocol(u16),
    Addr([u8; 16]),
    Port(u16),
    Fwmark(u32),
    SchedName(String),
    Flags(u32, u32),
    Timeout(u32),
    Netmask(u32),
    PeName(String),
    Other(u8, Vec<u8>),
}

impl SvcValue {
    fn attr(&self) -> SvcAttr {
        match self {
            Self::Af(v) => SvcAttr::Af(*v),
            Self::Protocol(v) => SvcAttr::Protocol(*v),
            Self::Addr(a) => SvcAttr::Addr(InetAddr(*a)),
            Self::Port(p) => SvcAttr::Port(*p),
            Self::Fwmark(m) => SvcAttr::Fwmark(*m),
            Self::SchedName(s) => SvcAttr::SchedName(s.clone()),
            Self::Flags(flags, mask) => SvcAttr::Flags(SvcFlags {
                flags: *flags,
                mask: *mask,
            }),
            Self::Timeout(t) => SvcAttr::Timeout(*t),
            Self::Netmask(m) => SvcAttr::Netmask(*m),
            Self::PeName(s) => SvcAttr::PeName(s.clone()),
            // IPVS_SVC_ATTR_STATS (10), _STATS64 (12), and numbers after the last one.
            Self::Other(k, v) => SvcAttr::Other(other(&[10, 12, 13, 14, 200], *k, v.clone())),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum DestValue {
    Addr([u8; 16]),
    Port(u16),
    FwdMethod(u32),
    Weight(u32),
    UpperThreshold(u32),
    LowerThreshold(u32),
    ActiveConns(u32),
    InactiveConns(u32),
    PersistConns(u32),
    AddrFamily(u16),
    TunType(u8),
    TunPort(u16),
    TunFlags(u16),
    Other(u8, Vec<u8>),
}

impl DestValue {
    fn attr(&self) -> DestAttr {
        match self {
            Self::Addr(a) => DestAttr::Addr(InetAddr(*a)),
            Self::Port(p) => DestAttr::Port(*p),
            Self::FwdMethod(m) => DestAttr::FwdMethod(FwdMethod::from(*m)),
            Self::Weight(v) => DestAttr::Weight(*v),
            Self::UpperThreshold(v) => DestAttr::UpperThreshold(*v),
            Self::LowerThreshold(v) => DestAttr::LowerThreshold(*v),
            Self::ActiveConns(v) => DestAttr::ActiveConns(*v),
            Self::InactiveConns(v) => DestAttr::InactiveConns(*v),
            Self::PersistConns(v) => DestAttr::PersistConns(*v),
            Self::AddrFamily(v) => DestAttr::AddrFamily(*v),
            Self::TunType(v) => DestAttr::TunType(*v),
            Self::TunPort(v) => DestAttr::TunPort(*v),
            Self::TunFlags(v) => DestAttr::TunFlags(*v),
            // IPVS_DEST_ATTR_STATS (10), _STATS64 (12), and numbers after the last one.
            Self::Other(k, v) => DestAttr::Other(other(&[10, 12, 16, 200], *k, v.clone())),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum CmdValue {
    Service(#[arbitrary(with = few::<SvcValue, MAX_ATTRS>)] Vec<SvcValue>),
    Dest(#[arbitrary(with = few::<DestValue, MAX_ATTRS>)] Vec<DestValue>),
    TimeoutTcp(u32),
    TimeoutTcpFin(u32),
    TimeoutUdp(u32),
    Other(u8, Vec<u8>),
}

impl CmdValue {
    fn attr(&self) -> CmdAttr {
        match self {
            Self::Service(a) => CmdAttr::Service(a.iter().map(SvcValue::attr).collect()),
            Self::Dest(a) => CmdAttr::Dest(a.iter().map(DestValue::attr).collect()),
            Self::TimeoutTcp(v) => CmdAttr::TimeoutTcp(*v),
            Self::TimeoutTcpFin(v) => CmdAttr::TimeoutTcpFin(*v),
            Self::TimeoutUdp(v) => CmdAttr::TimeoutUdp(*v),
            // IPVS_CMD_ATTR_DAEMON (3), and numbers after the last one.
            Self::Other(k, v) => CmdAttr::Other(other(&[3, 7, 8, 200], *k, v.clone())),
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Message {
    cmd: u8,
    #[arbitrary(with = few::<CmdValue, MAX_ATTRS>)]
    attrs: Vec<CmdValue>,
}

#[derive(Debug, Arbitrary)]
struct Input {
    /// The resolved family id (the kernel gives generic families ids from 16 up).
    family_id: u16,
    seq: u32,
    dump: bool,
    #[arbitrary(with = few::<Message, MAX_MESSAGES>)]
    messages: Vec<Message>,
    #[arbitrary(with = few::<IpAddr, MAX_MESSAGES>)]
    addresses: Vec<IpAddr>,
    /// Bytes read as a datagram of the kernel's answers.
    reply: Vec<u8>,
}

/// The target. Panics when a request does not decode back to itself, an address does not
/// survive `union nf_inet_addr`, or decoding an answer panics.
pub fn ipvs_netlink(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let family_id = input.family_id.max(16);
    let flags = if input.dump {
        NLM_F_REQUEST | netlink_packet_core::NLM_F_DUMP
    } else {
        NLM_F_REQUEST | NLM_F_ACK
    };
    let sent: Vec<IpvsMessage> = input
        .messages
        .iter()
        .map(|m| {
            IpvsMessage::new(
                IpvsCmd::from(m.cmd),
                m.attrs.iter().map(CmdValue::attr).collect(),
            )
        })
        .collect();
    let mut bytes = Vec::new();
    for (i, m) in sent.iter().enumerate() {
        encode_request(
            m,
            family_id,
            flags,
            input.seq.wrapping_add(i as u32),
            &mut bytes,
        );
    }
    let decoded = decode_datagram::<GenlMessage<IpvsMessage>>(&bytes, "fuzz round trip")
        .unwrap_or_else(|e| panic!("own requests do not decode: {e}"));
    assert_eq!(decoded.len(), sent.len(), "one message per request");
    for (i, (m, want)) in decoded.into_iter().zip(&sent).enumerate() {
        assert_eq!(m.header.message_type, family_id, "message {i}: family id");
        assert_eq!(m.header.flags, flags, "message {i}: flags");
        assert_eq!(
            m.header.sequence_number,
            input.seq.wrapping_add(i as u32),
            "message {i}: sequence number"
        );
        match m.payload {
            NetlinkPayload::InnerMessage(genl) => {
                assert_eq!(&genl.payload, want, "message {i} round trip")
            }
            other => panic!("message {i} decoded as {other:?}"),
        }
    }

    for ip in &input.addresses {
        let inet = InetAddr::from_ip(*ip);
        assert_eq!(inet.to_ip(af_of(ip)), Some(*ip), "address round trip");
        assert_eq!(InetAddr::parse(&inet.0).ok(), Some(inet), "address parse");
    }

    // The kernel's answers: what a dump (and the family lookup) reads, from arbitrary bytes.
    let _ = decode_datagram::<GenlMessage<IpvsMessage>>(&input.reply, "fuzz dump");
    let _ = decode_datagram::<GenlMessage<GenlCtrl>>(&input.reply, "fuzz family lookup");
}
