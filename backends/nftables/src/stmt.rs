//! Rule statements: the vocabulary rules are written in. Each statement lowers to netlink
//! expressions and prints as `nft` syntax, from the same value, so `--dry-run`, `nft -f` and the
//! kernel all see one thing.

use crate::expr::{Base, CmpOp, Expr, MetaKey, Verdict, REG0};
use ipnet::IpNet;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use switchyard_core::plan::{IpFamily, Protocol};

/// Which packet fields make a service key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeySrc {
    /// `ip daddr . meta l4proto . th dport`: cluster, external and load-balancer IPs, and
    /// NodePorts on listed node addresses.
    Vip,
    /// `meta l4proto . th dport`: NodePorts on every local address (`--nodeport-addresses`
    /// matching all local addresses), reached after `fib daddr type local`.
    Port,
}

impl KeySrc {
    /// Loads the key into `REG0` onwards (each field padded to a 32-bit register).
    fn load(self, f: IpFamily, out: &mut Vec<Expr>) {
        let mut reg = REG0;
        if self == Self::Vip {
            out.push(load_addr(f, false, REG0));
            reg += addr_len(f) / 4;
        }
        out.push(Expr::Meta {
            key: MetaKey::L4Proto,
            dreg: reg,
        });
        out.push(Expr::Payload {
            base: Base::Transport,
            offset: 2,
            len: 2,
            dreg: reg + 1,
        });
    }

    fn text(self, f: IpFamily) -> String {
        match self {
            Self::Vip => format!("{} daddr . meta l4proto . th dport", family_word(f)),
            Self::Port => "meta l4proto . th dport".to_string(),
        }
    }
}

/// One statement of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stmt {
    /// `<key> @set`: the packet's service key is in the set (or is a key of the map).
    KeyInSet {
        src: KeySrc,
        set: String,
    },
    /// `dnat ip to <key> map @map`: DNAT to the address and port the map holds for the key.
    DnatMap {
        src: KeySrc,
        map: String,
    },
    /// `ip saddr . ip daddr @set`
    SaddrDaddrInSet(String),
    /// `ct status dnat`: the connection was DNATed.
    CtStatusDnat,
    /// `fib daddr type local`
    FibDaddrLocal,
    /// `numgen random mod modulus < bound`: true with probability bound/modulus.
    Below {
        modulus: u32,
        bound: u32,
    },
    /// `ip daddr . meta l4proto . th dport vmap @map`
    DispatchVmap(String),
    /// `meta l4proto . th dport vmap @map` (after `fib daddr type local`)
    PortVmap(String),
    /// `ip saddr [!=] net`
    Saddr {
        net: IpNet,
        negate: bool,
    },
    /// `ip daddr net`
    Daddr(IpNet),
    /// `ip daddr @set`
    DaddrInSet(String),
    /// `ip saddr @set`
    SaddrInSet(String),
    /// `fib saddr type local`
    FibSaddrLocal,
    /// `iifname [!=] "name"`, or `iifname [!=] "prefix*"` with `prefix`: the packet arrived on
    /// this interface (none for locally generated packets, which therefore never match).
    Iifname {
        name: String,
        prefix: bool,
        negate: bool,
    },
    /// `ct state new`
    CtStateNew,
    /// `meta l4proto tcp`
    L4Proto(Protocol),
    /// `numgen random mod n == 0`: true with probability 1/n.
    OneIn(u32),
    /// `meta mark & bit == 0`
    MarkClear(u32),
    /// `meta mark set meta mark ^ bit`
    MarkXor(u32),
    /// `meta mark set meta mark | bit`
    MarkOr(u32),
    /// `meta mark & bits != 0`
    MarkAny(u32),
    /// `meta mark set <key> map @map`: the packet's mark from a mark map keyed by the service
    /// key (IPVS mode: the firewall mark of the virtual service that balances it).
    MarkMap {
        src: KeySrc,
        map: String,
    },
    Masquerade,
    /// `dnat to addr:port`
    Dnat(SocketAddr),
    /// `reject with tcp reset` (TCP packets only, the match included) or `reject` (ICMP port
    /// unreachable).
    Reject {
        tcp_reset: bool,
    },
    /// `update @set { ip saddr }`
    UpdateSaddr(String),
    Verdict(Verdict),
}

/// Interface names are this long in the kernel, NUL-padded.
const IFNAMSIZ: usize = 16;

fn addr_len(f: IpFamily) -> u32 {
    match f {
        IpFamily::V4 => 4,
        IpFamily::V6 => 16,
    }
}

fn saddr_offset(f: IpFamily) -> u32 {
    match f {
        IpFamily::V4 => 12,
        IpFamily::V6 => 8,
    }
}

fn daddr_offset(f: IpFamily) -> u32 {
    match f {
        IpFamily::V4 => 16,
        IpFamily::V6 => 24,
    }
}

/// The packet's source (`saddr`) or destination address into `dreg`.
fn load_addr(f: IpFamily, source: bool, dreg: u32) -> Expr {
    Expr::Payload {
        base: Base::Network,
        offset: if source {
            saddr_offset(f)
        } else {
            daddr_offset(f)
        },
        len: addr_len(f),
        dreg,
    }
}

/// Membership of the key that starts at `REG0` in `set` (or among a map's keys).
fn member_of(set: &str) -> Expr {
    Expr::Lookup {
        set: set.to_string(),
        sreg: REG0,
        dreg: None,
        invert: false,
    }
}

pub(crate) fn nfproto(f: IpFamily) -> u8 {
    match f {
        IpFamily::V4 => crate::netlink::NFPROTO_IPV4,
        IpFamily::V6 => crate::netlink::NFPROTO_IPV6,
    }
}

pub fn family_word(f: IpFamily) -> &'static str {
    match f {
        IpFamily::V4 => "ip",
        IpFamily::V6 => "ip6",
    }
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// `RTN_LOCAL` as `fib ... type` stores it (host byte order u32).
const RTN_LOCAL: u32 = 2;
/// `NF_CT_STATE_BIT(IP_CT_NEW)`.
const CT_STATE_NEW: u32 = 1 << 3;
/// `IPS_DST_NAT`.
const CT_STATUS_DNAT: u32 = 1 << 5;

/// `reg & bit` compared with zero (`Neq`: the bit is set, `Eq`: it is clear), on a host-order
/// 32-bit value.
fn test_bit(reg: u32, bit: u32, op: CmpOp, out: &mut Vec<Expr>) {
    out.push(Expr::Bitwise {
        sreg: reg,
        dreg: reg,
        mask: bit.to_ne_bytes().to_vec(),
        xor: vec![0; 4],
    });
    out.push(Expr::Cmp {
        sreg: reg,
        op,
        data: vec![0; 4],
    });
}

/// The service key, then a verdict-map lookup of it.
fn key_vmap(src: KeySrc, map: &str, f: IpFamily, out: &mut Vec<Expr>) {
    src.load(f, out);
    out.push(Expr::Lookup {
        set: map.to_string(),
        sreg: REG0,
        dreg: Some(crate::expr::REG_VERDICT),
        invert: false,
    });
}

/// `fib daddr type local` / `fib saddr type local`.
fn fib_local(daddr: bool, out: &mut Vec<Expr>) {
    out.push(Expr::FibAddrType { daddr, dreg: REG0 });
    out.push(Expr::Cmp {
        sreg: REG0,
        op: CmpOp::Eq,
        data: RTN_LOCAL.to_ne_bytes().to_vec(),
    });
}

impl Stmt {
    /// The expressions implementing this statement.
    pub fn exprs(&self, f: IpFamily, out: &mut Vec<Expr>) {
        match self {
            Self::KeyInSet { src, set } => {
                src.load(f, out);
                out.push(member_of(set));
            }
            Self::DnatMap { src, map } => {
                src.load(f, out);
                out.push(Expr::Lookup {
                    set: map.clone(),
                    sreg: REG0,
                    dreg: Some(REG0),
                    invert: false,
                });
                out.push(Expr::Dnat {
                    family: nfproto(f),
                    addr: REG0,
                    port: Some(REG0 + addr_len(f) / 4),
                });
            }
            Self::SaddrDaddrInSet(set) => {
                out.push(load_addr(f, true, REG0));
                out.push(load_addr(f, false, REG0 + addr_len(f) / 4));
                out.push(member_of(set));
            }
            Self::CtStatusDnat => {
                out.push(Expr::CtStatus { dreg: REG0 });
                test_bit(REG0, CT_STATUS_DNAT, CmpOp::Neq, out);
            }
            Self::FibDaddrLocal => fib_local(true, out),
            Self::Below { modulus, bound } => {
                out.push(Expr::Numgen {
                    dreg: REG0,
                    modulus: *modulus,
                });
                out.push(Expr::HostToNetwork32 {
                    sreg: REG0,
                    dreg: REG0,
                });
                out.push(Expr::Cmp {
                    sreg: REG0,
                    op: CmpOp::Lt,
                    data: bound.to_be_bytes().to_vec(),
                });
            }
            Self::DispatchVmap(map) => key_vmap(KeySrc::Vip, map, f, out),
            Self::PortVmap(map) => key_vmap(KeySrc::Port, map, f, out),
            Self::Saddr { .. } | Self::Daddr(_) => {
                let (net, negate, source) = match self {
                    Self::Saddr { net, negate } => (net, *negate, true),
                    Self::Daddr(net) => (net, false, false),
                    _ => return,
                };
                let len = addr_len(f);
                out.push(load_addr(f, source, REG0));
                if net.prefix_len() < net.max_prefix_len() {
                    out.push(Expr::Bitwise {
                        sreg: REG0,
                        dreg: REG0,
                        mask: ip_bytes(&net.netmask()),
                        xor: vec![0; len as usize],
                    });
                }
                let op = if negate { CmpOp::Neq } else { CmpOp::Eq };
                out.push(Expr::Cmp {
                    sreg: REG0,
                    op,
                    data: ip_bytes(&net.network()),
                });
            }
            Self::DaddrInSet(set) | Self::SaddrInSet(set) => {
                out.push(load_addr(f, matches!(self, Self::SaddrInSet(_)), REG0));
                out.push(member_of(set));
            }
            Self::FibSaddrLocal => fib_local(false, out),
            Self::Iifname {
                name,
                prefix,
                negate,
            } => {
                out.push(Expr::Meta {
                    key: MetaKey::IifName,
                    dreg: REG0,
                });
                // A whole name compares all 16 bytes, NUL padding included; a prefix compares
                // only its own bytes (what nft emits for `"prefix*"`).
                let mut data = name.as_bytes().to_vec();
                if !*prefix {
                    data.resize(IFNAMSIZ, 0);
                }
                let op = if *negate { CmpOp::Neq } else { CmpOp::Eq };
                out.push(Expr::Cmp {
                    sreg: REG0,
                    op,
                    data,
                });
            }
            Self::CtStateNew => {
                out.push(Expr::CtState { dreg: REG0 });
                test_bit(REG0, CT_STATE_NEW, CmpOp::Neq, out);
            }
            Self::L4Proto(p) => {
                out.push(Expr::Meta {
                    key: MetaKey::L4Proto,
                    dreg: REG0,
                });
                out.push(Expr::Cmp {
                    sreg: REG0,
                    op: CmpOp::Eq,
                    data: vec![p.number()],
                });
            }
            Self::OneIn(n) => {
                out.push(Expr::Numgen {
                    dreg: REG0,
                    modulus: *n,
                });
                out.push(Expr::Cmp {
                    sreg: REG0,
                    op: CmpOp::Eq,
                    data: 0u32.to_ne_bytes().to_vec(),
                });
            }
            Self::MarkClear(bit) => {
                out.push(Expr::Meta {
                    key: MetaKey::Mark,
                    dreg: REG0,
                });
                test_bit(REG0, *bit, CmpOp::Eq, out);
            }
            Self::MarkAny(bits) => {
                out.push(Expr::Meta {
                    key: MetaKey::Mark,
                    dreg: REG0,
                });
                test_bit(REG0, *bits, CmpOp::Neq, out);
            }
            Self::MarkMap { src, map } => {
                src.load(f, out);
                out.push(Expr::Lookup {
                    set: map.clone(),
                    sreg: REG0,
                    dreg: Some(REG0),
                    invert: false,
                });
                out.push(Expr::MetaSet {
                    key: MetaKey::Mark,
                    sreg: REG0,
                });
            }
            Self::MarkXor(bit) | Self::MarkOr(bit) => {
                let mask = if matches!(self, Self::MarkOr(_)) {
                    !bit
                } else {
                    u32::MAX
                };
                out.push(Expr::Meta {
                    key: MetaKey::Mark,
                    dreg: REG0,
                });
                out.push(Expr::Bitwise {
                    sreg: REG0,
                    dreg: REG0,
                    mask: mask.to_ne_bytes().to_vec(),
                    xor: bit.to_ne_bytes().to_vec(),
                });
                out.push(Expr::MetaSet {
                    key: MetaKey::Mark,
                    sreg: REG0,
                });
            }
            Self::Masquerade => out.push(Expr::MasqueradeFullyRandom),
            Self::Dnat(to) => {
                let port_reg = REG0 + addr_len(f) / 4;
                out.push(Expr::Immediate {
                    dreg: REG0,
                    data: ip_bytes(&to.ip()),
                });
                out.push(Expr::Immediate {
                    dreg: port_reg,
                    data: to.port().to_be_bytes().to_vec(),
                });
                out.push(Expr::Dnat {
                    family: nfproto(f),
                    addr: REG0,
                    port: Some(port_reg),
                });
            }
            Self::Reject { tcp_reset } => {
                if *tcp_reset {
                    // A TCP reset needs a TCP packet: the match nft adds implicitly.
                    Self::L4Proto(Protocol::Tcp).exprs(f, out);
                }
                // ICMP_PORT_UNREACH = 3, ICMPV6_PORT_UNREACH = 4.
                let icmp_code = if f == IpFamily::V4 { 3 } else { 4 };
                out.push(Expr::Reject {
                    tcp_reset: *tcp_reset,
                    icmp_code,
                });
            }
            Self::UpdateSaddr(set) => {
                out.push(load_addr(f, true, REG0));
                out.push(Expr::DynsetUpdate {
                    set: set.clone(),
                    sreg: REG0,
                });
            }
            Self::Verdict(v) => out.push(Expr::ImmediateVerdict(v.clone())),
        }
    }

    /// The statement in `nft` syntax, as `nft list` prints it.
    pub fn text(&self, f: IpFamily, out: &mut String) {
        let fam = family_word(f);
        let _ = match self {
            Self::KeyInSet { src, set } => write!(out, "{} @{set}", src.text(f)),
            Self::DnatMap { src, map } => write!(out, "dnat {fam} to {} map @{map}", src.text(f)),
            Self::SaddrDaddrInSet(s) => write!(out, "{fam} saddr . {fam} daddr @{s}"),
            Self::CtStatusDnat => write!(out, "ct status dnat"),
            Self::FibDaddrLocal => write!(out, "fib daddr type local"),
            Self::Below { modulus, bound } => write!(out, "numgen random mod {modulus} < {bound}"),
            Self::DispatchVmap(m) => write!(out, "{fam} daddr . meta l4proto . th dport vmap @{m}"),
            Self::PortVmap(m) => write!(out, "meta l4proto . th dport vmap @{m}"),
            Self::Saddr { net, negate } => {
                let op = if *negate { "!= " } else { "" };
                if net.prefix_len() == net.max_prefix_len() {
                    write!(out, "{fam} saddr {op}{}", net.addr())
                } else {
                    write!(out, "{fam} saddr {op}{}", net.trunc())
                }
            }
            Self::Daddr(net) if net.prefix_len() == net.max_prefix_len() => {
                write!(out, "{fam} daddr {}", net.addr())
            }
            Self::Daddr(net) => write!(out, "{fam} daddr {}", net.trunc()),
            Self::DaddrInSet(s) => write!(out, "{fam} daddr @{s}"),
            Self::SaddrInSet(s) => write!(out, "{fam} saddr @{s}"),
            Self::FibSaddrLocal => write!(out, "fib saddr type local"),
            Self::Iifname {
                name,
                prefix,
                negate,
            } => {
                let op = if *negate { "!= " } else { "" };
                let star = if *prefix { "*" } else { "" };
                write!(out, "iifname {op}\"{name}{star}\"")
            }
            Self::CtStateNew => write!(out, "ct state new"),
            Self::L4Proto(p) => write!(out, "meta l4proto {}", p.lower()),
            // nft lists an implicit `==` this way.
            Self::OneIn(n) => write!(out, "numgen random mod {n} 0"),
            Self::MarkClear(b) => write!(out, "meta mark & {b:#010x} == 0x00000000"),
            Self::MarkXor(b) => write!(out, "meta mark set meta mark ^ {b:#010x}"),
            Self::MarkOr(b) => write!(out, "meta mark set meta mark | {b:#010x}"),
            Self::MarkAny(b) => write!(out, "meta mark & {b:#010x} != 0x00000000"),
            Self::MarkMap { src, map } => write!(out, "meta mark set {} map @{map}", src.text(f)),
            Self::Masquerade => write!(out, "masquerade fully-random"),
            Self::Dnat(to) => match to {
                SocketAddr::V4(a) => write!(out, "dnat to {a}"),
                SocketAddr::V6(a) => write!(out, "dnat to [{}]:{}", a.ip(), a.port()),
            },
            Self::Reject { tcp_reset: true } => write!(out, "reject with tcp reset"),
            Self::Reject { tcp_reset: false } => write!(out, "reject"),
            Self::UpdateSaddr(s) => write!(out, "update @{s} {{ {fam} saddr }}"),
            Self::Verdict(v) => match v {
                Verdict::Drop => write!(out, "drop"),
                Verdict::Return => write!(out, "return"),
                Verdict::Jump(c) => write!(out, "jump {c}"),
                Verdict::Goto(c) => write!(out, "goto {c}"),
            },
        };
    }
}
