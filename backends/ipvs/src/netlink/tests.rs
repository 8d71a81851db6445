//! Encode/decode tests: every attribute variant round-trips, and the bytes match the layout of
//! `include/uapi/linux/ip_vs.h` (attribute numbers, byte orders, `struct ip_vs_flags`,
//! `union nf_inet_addr`).

use super::*;
use netlink_packet_core::{DefaultNla, Emitable, ParseableParametrized};
use netlink_packet_generic::GenlHeader;
use std::net::IpAddr;

fn emit(msg: &IpvsMessage) -> Vec<u8> {
    let mut b = vec![0u8; msg.buffer_len()];
    msg.emit(&mut b);
    b
}

fn parse(cmd: IpvsCmd, b: &[u8]) -> IpvsMessage {
    let header = GenlHeader {
        cmd: cmd.into(),
        version: IPVS_GENL_VERSION,
    };
    IpvsMessage::parse_with_param(b, header).expect("own bytes parse")
}

fn round_trip(msg: IpvsMessage) {
    let bytes = emit(&msg);
    assert_eq!(parse(msg.cmd, &bytes), msg);
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

#[test]
fn every_service_attribute_round_trips() {
    round_trip(IpvsMessage::new(
        IpvsCmd::NewService,
        vec![CmdAttr::Service(vec![
            SvcAttr::Af(AF_INET6),
            SvcAttr::Protocol(132),
            SvcAttr::Addr(InetAddr::from_ip(ip("fd00::10"))),
            SvcAttr::Port(8443),
            SvcAttr::Fwmark(0x18000),
            SvcAttr::SchedName("mh".into()),
            SvcAttr::Flags(SvcFlags {
                flags: service::IP_VS_SVC_F_PERSISTENT | service::IP_VS_SVC_F_SCHED1,
                mask: u32::MAX,
            }),
            SvcAttr::Timeout(10800),
            SvcAttr::Netmask(128),
            SvcAttr::PeName("sip".into()),
            SvcAttr::Other(DefaultNla::new(10, vec![1, 2, 3, 4])),
        ])],
    ));
}

#[test]
fn every_dest_attribute_round_trips() {
    round_trip(IpvsMessage::new(
        IpvsCmd::NewDest,
        vec![
            CmdAttr::Service(vec![SvcAttr::Af(AF_INET), SvcAttr::Fwmark(7)]),
            CmdAttr::Dest(vec![
                DestAttr::Addr(InetAddr::from_ip(ip("10.1.2.3"))),
                DestAttr::Port(80),
                DestAttr::FwdMethod(FwdMethod::Masq),
                DestAttr::Weight(0),
                DestAttr::UpperThreshold(5),
                DestAttr::LowerThreshold(1),
                DestAttr::ActiveConns(3),
                DestAttr::InactiveConns(4),
                DestAttr::PersistConns(2),
                DestAttr::AddrFamily(AF_INET),
                DestAttr::TunType(1),
                DestAttr::TunPort(6081),
                DestAttr::TunFlags(3),
                DestAttr::Other(DefaultNla::new(12, vec![9; 8])),
            ]),
        ],
    ));
}

#[test]
fn every_command_and_config_attribute_round_trips() {
    for cmd in [
        IpvsCmd::NewService,
        IpvsCmd::SetService,
        IpvsCmd::DelService,
        IpvsCmd::GetService,
        IpvsCmd::NewDest,
        IpvsCmd::SetDest,
        IpvsCmd::DelDest,
        IpvsCmd::GetDest,
        IpvsCmd::SetConfig,
        IpvsCmd::GetConfig,
        IpvsCmd::GetInfo,
        IpvsCmd::Flush,
        IpvsCmd::Other(99),
    ] {
        assert_eq!(IpvsCmd::from(u8::from(cmd)), cmd);
        round_trip(IpvsMessage::new(
            cmd,
            vec![
                CmdAttr::TimeoutTcp(900),
                CmdAttr::TimeoutTcpFin(120),
                CmdAttr::TimeoutUdp(300),
                CmdAttr::Other(DefaultNla::new(3, vec![0; 4])),
            ],
        ));
    }
    for m in [
        FwdMethod::Masq,
        FwdMethod::LocalNode,
        FwdMethod::Tunnel,
        FwdMethod::DirectRoute,
        FwdMethod::Bypass,
    ] {
        assert_eq!(FwdMethod::from(u32::from(m)), m);
    }
}

/// The bytes of a service key as the header lays them out: `IPVS_CMD_ATTR_SERVICE` (1,
/// nested) holding AF (1, u16 host order, padded), PROTOCOL (2), ADDR (3, 16 bytes), PORT (4,
/// big-endian).
#[test]
fn service_key_matches_the_header_layout() {
    let msg = IpvsMessage::new(
        IpvsCmd::DelService,
        vec![CmdAttr::Service(vec![
            SvcAttr::Af(AF_INET),
            SvcAttr::Protocol(6),
            SvcAttr::Addr(InetAddr::from_ip(ip("10.96.0.1"))),
            SvcAttr::Port(443),
        ])],
    );
    let mut want = Vec::new();
    want.extend_from_slice(&(4u16 + 8 + 8 + 20 + 8).to_ne_bytes());
    want.extend_from_slice(&(1u16 | 0x8000).to_ne_bytes()); // NLA_F_NESTED
    want.extend_from_slice(&6u16.to_ne_bytes());
    want.extend_from_slice(&1u16.to_ne_bytes());
    want.extend_from_slice(&2u16.to_ne_bytes());
    want.extend_from_slice(&[0, 0]);
    want.extend_from_slice(&6u16.to_ne_bytes());
    want.extend_from_slice(&2u16.to_ne_bytes());
    want.extend_from_slice(&6u16.to_ne_bytes());
    want.extend_from_slice(&[0, 0]);
    want.extend_from_slice(&20u16.to_ne_bytes());
    want.extend_from_slice(&3u16.to_ne_bytes());
    want.extend_from_slice(&[10, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    want.extend_from_slice(&6u16.to_ne_bytes());
    want.extend_from_slice(&4u16.to_ne_bytes());
    want.extend_from_slice(&[0x01, 0xbb, 0, 0]);
    assert_eq!(emit(&msg), want);
}

/// `struct ip_vs_flags { __u32 flags; __u32 mask; }` and the scheduler name as a C string.
#[test]
fn flags_and_scheduler_match_the_header_layout() {
    let msg = IpvsMessage::new(
        IpvsCmd::NewService,
        vec![CmdAttr::Service(vec![
            SvcAttr::SchedName("rr".into()),
            SvcAttr::Flags(SvcFlags {
                flags: 1,
                mask: 0xffff_ffff,
            }),
        ])],
    );
    let b = emit(&msg);
    // nested header (4), then SCHED_NAME: len 7 ("rr\0" + 4), type 6, "rr\0", 1 pad byte
    assert_eq!(&b[4..12], &[7, 0, 6, 0, b'r', b'r', 0, 0]);
    // FLAGS: len 12, type 7, flags = 1, mask = all ones
    assert_eq!(&b[12..16], &[12, 0, 7, 0]);
    assert_eq!(&b[16..20], &1u32.to_ne_bytes());
    assert_eq!(&b[20..24], &[0xff; 4]);
}

/// A destination as the kernel dumps it (16-byte address, big-endian port, counters in host
/// order) decodes into the typed view.
#[test]
fn kernel_dest_dump_decodes() {
    let mut b = Vec::new();
    let mut nla = |kind: u16, v: &[u8]| {
        b.extend_from_slice(&(4 + v.len() as u16).to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(v);
        b.resize((b.len() + 3) & !3, 0);
    };
    nla(1, &[10, 244, 1, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    nla(2, &[0x1f, 0x90]);
    nla(4, &0u32.to_ne_bytes());
    nla(7, &2u32.to_ne_bytes());
    nla(11, &2u16.to_ne_bytes());
    let mut outer = Vec::new();
    outer.extend_from_slice(&(4 + b.len() as u16).to_ne_bytes());
    outer.extend_from_slice(&2u16.to_ne_bytes()); // no NLA_F_NESTED, as the kernel sends it
    outer.extend_from_slice(&b);
    let msg = parse(IpvsCmd::NewDest, &outer);
    let dest = msg.dest().expect("dest attribute");
    assert_eq!(
        dest,
        &[
            DestAttr::Addr(InetAddr::from_ip(ip("10.244.1.5"))),
            DestAttr::Port(8080),
            DestAttr::Weight(0),
            DestAttr::ActiveConns(2),
            DestAttr::AddrFamily(AF_INET),
        ]
    );
    assert_eq!(
        InetAddr::from_ip(ip("10.244.1.5")).to_ip(AF_INET),
        Some(ip("10.244.1.5"))
    );
}

#[test]
fn malformed_values_are_errors_not_panics() {
    // ADDR of 3 bytes, FLAGS of 4 bytes
    for (kind, v) in [(3u16, vec![1u8, 2, 3]), (7, vec![0; 4]), (4, vec![1])] {
        let mut inner = Vec::new();
        inner.extend_from_slice(&(4 + v.len() as u16).to_ne_bytes());
        inner.extend_from_slice(&kind.to_ne_bytes());
        inner.extend_from_slice(&v);
        inner.resize((inner.len() + 3) & !3, 0);
        let mut outer = Vec::new();
        outer.extend_from_slice(&(4 + inner.len() as u16).to_ne_bytes());
        outer.extend_from_slice(&1u16.to_ne_bytes());
        outer.extend_from_slice(&inner);
        let header = GenlHeader { cmd: 1, version: 1 };
        assert!(IpvsMessage::parse_with_param(&outer[..], header).is_err());
    }
}

/// An IPv6 firewall-mark service and an IPv6 destination, as the IPv6 lane sends them: every
/// attribute that carries a family or an address round-trips with `AF_INET6` and all 16
/// bytes.
#[test]
fn ipv6_service_and_dest_round_trip() {
    let vip = InetAddr::from_ip(ip("fd00:10:96::a"));
    let dest = InetAddr::from_ip(ip("fd00:10:244:1::10"));
    round_trip(IpvsMessage::new(
        IpvsCmd::NewService,
        vec![CmdAttr::Service(vec![
            SvcAttr::Af(AF_INET6),
            SvcAttr::Fwmark(0x1234_8000),
            SvcAttr::SchedName("rr".into()),
            SvcAttr::Flags(SvcFlags {
                flags: 0,
                mask: u32::MAX,
            }),
            SvcAttr::Timeout(0),
            SvcAttr::Netmask(128),
        ])],
    ));
    round_trip(IpvsMessage::new(
        IpvsCmd::NewService,
        vec![CmdAttr::Service(vec![
            SvcAttr::Af(AF_INET6),
            SvcAttr::Protocol(6),
            SvcAttr::Addr(vip),
            SvcAttr::Port(443),
        ])],
    ));
    round_trip(IpvsMessage::new(
        IpvsCmd::SetDest,
        vec![
            CmdAttr::Service(vec![SvcAttr::Af(AF_INET6), SvcAttr::Fwmark(0x1234_8000)]),
            CmdAttr::Dest(vec![
                DestAttr::Addr(dest),
                DestAttr::Port(8080),
                DestAttr::AddrFamily(AF_INET6),
                DestAttr::FwdMethod(FwdMethod::Masq),
                DestAttr::Weight(0),
            ]),
        ],
    ));
    assert_eq!(vip.to_ip(AF_INET6), Some(ip("fd00:10:96::a")));
    assert_eq!(dest.to_ip(AF_INET6), Some(ip("fd00:10:244:1::10")));
    assert_eq!(addr::af_of(&ip("fd00::1")), AF_INET6);
    assert_eq!(addr::af_of(&ip("10.0.0.1")), AF_INET);
}

/// The bytes of an IPv6 destination key: the service's AF is 10 (`AF_INET6`, u16 host
/// order), the destination's address is the whole 16-byte `union nf_inet_addr`, its family
/// (`IPVS_DEST_ATTR_ADDR_FAMILY`, 11) is 10 too.
#[test]
fn ipv6_dest_key_matches_the_header_layout() {
    let msg = IpvsMessage::new(
        IpvsCmd::DelDest,
        vec![
            CmdAttr::Service(vec![SvcAttr::Af(AF_INET6), SvcAttr::Fwmark(0x8000)]),
            CmdAttr::Dest(vec![
                DestAttr::Addr(InetAddr::from_ip(ip("fd00:10:244:1::10"))),
                DestAttr::Port(80),
                DestAttr::AddrFamily(AF_INET6),
            ]),
        ],
    );
    let b = emit(&msg);
    // service: nested header, AF (len 6, type 1, value 10, 2 pad), FWMARK (len 8, type 5)
    assert_eq!(&b[0..4], &[4 + 8 + 8, 0, 1, 0x80]);
    assert_eq!(&b[4..8], &[6, 0, 1, 0]);
    assert_eq!(&b[8..10], &10u16.to_ne_bytes());
    assert_eq!(&b[12..16], &[8, 0, 5, 0]);
    assert_eq!(&b[16..20], &0x8000u32.to_ne_bytes());
    // dest: nested header, ADDR (len 20, type 1, 16 bytes), PORT (big-endian), ADDR_FAMILY
    assert_eq!(&b[20..24], &[4 + 20 + 8 + 8, 0, 2, 0x80]);
    assert_eq!(&b[24..28], &[20, 0, 1, 0]);
    assert_eq!(
        &b[28..44],
        &[0xfd, 0, 0, 0x10, 0x02, 0x44, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x10]
    );
    assert_eq!(&b[44..50], &[6, 0, 2, 0, 0, 80]);
    assert_eq!(&b[52..56], &[6, 0, 11, 0]);
    assert_eq!(&b[56..58], &10u16.to_ne_bytes());
    assert_eq!(b.len(), 60);
}

/// An IPv6 service and destination as the kernel dumps them decode into the typed view,
/// and the address reads back as IPv6 only with the family beside it.
#[test]
fn kernel_ipv6_dump_decodes() {
    fn nla(b: &mut Vec<u8>, kind: u16, v: &[u8]) {
        b.extend_from_slice(&(4 + v.len() as u16).to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(v);
        b.resize((b.len() + 3) & !3, 0);
    }
    let octets: std::net::Ipv6Addr = "fd00:10:244:2::11".parse().expect("test address");
    let v6 = IpAddr::V6(octets);
    let mut svc = Vec::new();
    nla(&mut svc, 1, &10u16.to_ne_bytes());
    nla(&mut svc, 5, &0x0001_8000u32.to_ne_bytes());
    nla(&mut svc, 6, b"rr\0");
    nla(&mut svc, 9, &128u32.to_ne_bytes());
    let mut dest = Vec::new();
    nla(&mut dest, 1, &octets.octets());
    nla(&mut dest, 2, &[0x1f, 0x90]);
    nla(&mut dest, 11, &10u16.to_ne_bytes());
    let mut outer = Vec::new();
    nla(&mut outer, 1, &svc); // no NLA_F_NESTED, as the kernel sends it
    nla(&mut outer, 2, &dest);
    let msg = parse(IpvsCmd::NewDest, &outer);
    assert_eq!(
        msg.service().expect("service attribute"),
        &[
            SvcAttr::Af(AF_INET6),
            SvcAttr::Fwmark(0x0001_8000),
            SvcAttr::SchedName("rr".into()),
            SvcAttr::Netmask(128),
        ]
    );
    let dest = msg.dest().expect("dest attribute");
    assert_eq!(
        dest,
        &[
            DestAttr::Addr(InetAddr::from_ip(v6)),
            DestAttr::Port(8080),
            DestAttr::AddrFamily(AF_INET6),
        ]
    );
    let a = InetAddr::from_ip(v6);
    assert_eq!(a.to_ip(AF_INET6), Some(v6));
    assert_eq!(a.to_ip(AF_INET), Some(ip("253.0.0.16")), "first 4 bytes");
    assert_eq!(a.to_ip(99), None, "unknown family");
}
