//! Encoding and decoding, byte for byte where the layout matters.

use super::*;
use netlink_packet_core::{
    DefaultNla, NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable as _,
    NLM_F_DUMP, NLM_F_REQUEST,
};
use std::net::{Ipv4Addr, Ipv6Addr};

fn framed(msg: CtMessage, flags: u16) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = 7;
    let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
    nl.finalize();
    let mut buf = vec![0; nl.buffer_len()];
    nl.serialize(&mut buf);
    buf
}

fn unframed(bytes: &[u8]) -> CtMessage {
    match NetlinkMessage::<CtMessage>::deserialize(bytes)
        .expect("decodes")
        .payload
    {
        NetlinkPayload::InnerMessage(m) => m,
        other => panic!("not a ctnetlink message: {other:?}"),
    }
}

#[test]
fn dump_request_bytes() {
    let msg = dump_request(IpFamily::V4, 17);
    assert_eq!(
        msg.message_type(),
        0x0101,
        "CTNETLINK << 8 | IPCTNL_MSG_CT_GET"
    );
    let mut want = vec![2, 0, 0, 0]; // nfgenmsg: AF_INET, NFNETLINK_V0, res_id 0
                                     // CTA_TUPLE_ORIG (nested) { CTA_TUPLE_PROTO (nested) { CTA_PROTO_NUM = 17 } }
    want.extend([
        16, 0, 0x01, 0x80, 12, 0, 0x02, 0x80, 5, 0, 1, 0, 17, 0, 0, 0,
    ]);
    // CTA_FILTER (nested) { ORIG_FLAGS = PROTO_NUM, REPLY_FLAGS = 0 }, host byte order.
    want.extend([20, 0, 25, 0x80, 8, 0, 1, 0]);
    want.extend(FILTER_PROTO_NUM.to_ne_bytes());
    want.extend([8, 0, 2, 0, 0, 0, 0, 0]);
    let bytes = framed(msg.clone(), NLM_F_REQUEST | NLM_F_DUMP);
    assert_eq!(&bytes[16..], want.as_slice());
    assert_eq!(
        u16::from_ne_bytes([bytes[6], bytes[7]]),
        NLM_F_REQUEST | NLM_F_DUMP
    );
    assert_eq!(unframed(&bytes), msg);
}

/// An entry as the kernel sends it: nested flags set, ports big-endian, attributes we do not
/// model (CTA_TIMEOUT, CTA_USE) carried as `Other`.
#[test]
fn decodes_a_kernel_entry() {
    let mut p = vec![2, 0, 0, 0];
    // CTA_TUPLE_ORIG: IP 10.244.1.5 -> 10.96.0.10, UDP 40000 -> 53
    p.extend([52, 0, 0x01, 0x80]);
    p.extend([
        20, 0, 0x01, 0x80, 8, 0, 1, 0, 10, 244, 1, 5, 8, 0, 2, 0, 10, 96, 0, 10,
    ]);
    p.extend([28, 0, 0x02, 0x80, 5, 0, 1, 0, 17, 0, 0, 0]);
    p.extend([6, 0, 2, 0, 0x9c, 0x40, 0, 0, 6, 0, 3, 0, 0, 53, 0, 0]);
    // CTA_TUPLE_REPLY: IP 10.244.2.1 -> 10.244.1.5, UDP 5353 -> 40000
    p.extend([52, 0, 0x02, 0x80]);
    p.extend([
        20, 0, 0x01, 0x80, 8, 0, 1, 0, 10, 244, 2, 1, 8, 0, 2, 0, 10, 244, 1, 5,
    ]);
    p.extend([28, 0, 0x02, 0x80, 5, 0, 1, 0, 17, 0, 0, 0]);
    p.extend([6, 0, 2, 0, 0x14, 0xe9, 0, 0, 6, 0, 3, 0, 0x9c, 0x40, 0, 0]);
    p.extend([8, 0, 3, 0, 0, 0, 0, 0x08]); // CTA_STATUS = IPS_CONFIRMED
    p.extend([8, 0, 7, 0, 0, 0, 0, 30]); // CTA_TIMEOUT 30 (not modelled)
    p.extend([8, 0, 12, 0, 0xde, 0xad, 0xbe, 0xef]); // CTA_ID
    p.extend([6, 0, 18, 0, 0, 5, 0, 0]); // CTA_ZONE 5
    let mut bytes = Vec::new();
    bytes.extend(((16 + p.len()) as u32).to_ne_bytes());
    bytes.extend(0x0100u16.to_ne_bytes()); // IPCTNL_MSG_CT_NEW
    bytes.extend(0x0002u16.to_ne_bytes()); // NLM_F_MULTI
    bytes.extend(1u32.to_ne_bytes());
    bytes.extend(0u32.to_ne_bytes());
    bytes.extend(&p);

    let msg = unframed(&bytes);
    assert_eq!(msg.kind, CtMsgType::New);
    assert!(msg
        .attrs
        .iter()
        .any(|a| matches!(a, CtAttr::Other(nla) if *nla == DefaultNla::new(7, vec![0, 0, 0, 30]))));
    let flow = Flow::from_message(&msg).expect("a UDP entry");
    let ip = |s: &str| s.parse::<IpAddr>().expect("address");
    assert_eq!(
        flow.orig,
        Tuple {
            src: ip("10.244.1.5"),
            dst: ip("10.96.0.10"),
            protocol: 17,
            src_port: 40000,
            dst_port: 53
        }
    );
    assert_eq!(
        (flow.reply.src, flow.reply.src_port),
        (ip("10.244.2.1"), 5353)
    );
    assert_eq!((flow.zone, flow.id), (5, Some(0xdead_beef)));

    // Deleting it names the original tuple, the zone and the id, nothing else.
    let del = flow.delete_request(IpFamily::V4);
    assert_eq!(del.message_type(), 0x0102);
    let orig_and_rest = &bytes[16 + 4..16 + 4 + 52];
    let del_bytes = framed(del.clone(), NLM_F_REQUEST);
    assert_eq!(&del_bytes[16 + 4..16 + 4 + 52], orig_and_rest);
    assert_eq!(
        &del_bytes[16 + 56..],
        &[6, 0, 18, 0, 0, 5, 0, 0, 8, 0, 12, 0, 0xde, 0xad, 0xbe, 0xef]
    );
    assert_eq!(unframed(&del_bytes), del);
}

#[test]
fn every_variant_round_trips() {
    let v4 = Ipv4Addr::new(192, 0, 2, 1);
    let v6: Ipv6Addr = "fd00::1".parse().expect("address");
    let msg = CtMessage {
        kind: CtMsgType::Other(6),
        family: 10,
        attrs: vec![
            CtAttr::TupleOrig(vec![
                TupleAttr::Ip(vec![
                    IpAttr::V4Src(v4),
                    IpAttr::V4Dst(v4),
                    IpAttr::V6Src(v6),
                    IpAttr::V6Dst(v6),
                    IpAttr::Other(DefaultNla::new(9, vec![1, 2, 3, 4])),
                ]),
                TupleAttr::Proto(vec![
                    ProtoAttr::Num(132),
                    ProtoAttr::SrcPort(1),
                    ProtoAttr::DstPort(65535),
                    ProtoAttr::Other(DefaultNla::new(4, vec![0, 1])),
                ]),
                TupleAttr::Zone(3),
                TupleAttr::Other(DefaultNla::new(9, vec![7])),
            ]),
            CtAttr::TupleReply(vec![]),
            CtAttr::Status(0x1234_5678),
            CtAttr::Mark(0x8000),
            CtAttr::Id(42),
            CtAttr::Zone(65535),
            CtAttr::Filter(vec![
                FilterAttr::OrigFlags(0x3f),
                FilterAttr::ReplyFlags(1),
                FilterAttr::Other(DefaultNla::new(3, vec![0; 4])),
            ]),
            CtAttr::Other(DefaultNla::new(7, vec![0, 0, 0, 30])),
        ],
    };
    for kind in [
        CtMsgType::New,
        CtMsgType::Get,
        CtMsgType::Delete,
        CtMsgType::Other(6),
    ] {
        let m = CtMessage {
            kind,
            ..msg.clone()
        };
        assert_eq!(unframed(&framed(m.clone(), NLM_F_REQUEST)), m);
    }
}

#[test]
fn other_subsystems_and_short_payloads_are_errors() {
    let mut bytes = framed(dump_request(IpFamily::V6, 132), NLM_F_REQUEST);
    bytes[5] = 10; // NFNL_SUBSYS_NFTABLES
    assert!(NetlinkMessage::<CtMessage>::deserialize(&bytes).is_err());
    let short = framed(
        CtMessage {
            kind: CtMsgType::Get,
            family: 2,
            attrs: vec![],
        },
        0,
    );
    let mut cut = short[..18].to_vec();
    cut[0] = 18;
    assert!(NetlinkMessage::<CtMessage>::deserialize(&cut).is_err());
}

#[test]
fn entries_without_ports_are_not_flows() {
    let icmp = CtMessage {
        kind: CtMsgType::New,
        family: 2,
        attrs: vec![CtAttr::TupleOrig(vec![TupleAttr::Proto(vec![
            ProtoAttr::Num(1),
        ])])],
    };
    assert_eq!(Flow::from_message(&icmp), None);
}
