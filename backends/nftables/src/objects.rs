//! Tables, chains, sets, elements and rules: each encodes itself into a batch message and
//! prints itself as an `nft` command.

use crate::expr::{write_value, write_verdict, Verdict};
use crate::netlink::{Batch, MsgType, Writer, NLM_F_APPEND, NLM_F_CREATE};
use crate::stmt::{family_word, nfproto, Stmt};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use switchyard_core::plan::{IpFamily, Protocol};

/// Our table's name, in both families.
pub const TABLE: &str = "switchyard";
/// The table of IPVS mode's helper rules (`crate::ipvs`), so that mode and nftables mode
/// never share or clean up each other's objects.
pub const IPVS_TABLE: &str = "switchyard-ipvs";
/// `TYPE_MARK` in nft's datatype numbering.
const TYPE_MARK: u32 = 19;

/// A base chain's hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Prerouting = 0,
    Input = 1,
    Forward = 2,
    Output = 3,
    Postrouting = 4,
}

impl Hook {
    fn word(self) -> &'static str {
        match self {
            Self::Prerouting => "prerouting",
            Self::Input => "input",
            Self::Forward => "forward",
            Self::Output => "output",
            Self::Postrouting => "postrouting",
        }
    }
}

/// A chain; `base` makes it a base chain attached to a hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    /// (type `nat`/`filter`, hook, priority)
    pub base: Option<(&'static str, Hook, i32)>,
}

/// The key of a set or map element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Addr(IpAddr),
    AddrProtoPort(IpAddr, Protocol, u16),
    ProtoPort(Protocol, u16),
    /// `saddr . daddr` (the hairpin set holds each endpoint address paired with itself).
    AddrPair(IpAddr, IpAddr),
}

/// Key types, as `nft` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Addr,
    AddrProtoPort,
    ProtoPort,
    AddrPair,
}

/// What a set maps its keys to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetData {
    /// A plain set.
    None,
    /// A verdict map (`: verdict`).
    Verdict,
    /// A DNAT map (`: ipv4_addr . inet_service`): address and port of an endpoint.
    Endpoint,
    /// A packet-mark map (`: mark`): the firewall mark of an IPVS virtual service.
    Mark,
}

/// A named set or map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    pub name: String,
    pub key: KeyType,
    pub data: SetData,
    /// `flags dynamic,timeout; timeout Ns` (affinity sets).
    pub timeout_seconds: Option<u32>,
}

impl Set {
    /// A set or map without timeouts.
    pub fn new(name: impl Into<String>, key: KeyType, data: SetData) -> Self {
        Self {
            name: name.into(),
            key,
            data,
            timeout_seconds: None,
        }
    }
}

/// One element: a key and, in a map, its value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Elem {
    pub key: Key,
    pub data: Option<ElemData>,
}

impl Elem {
    /// An element of a plain set.
    pub fn key(key: Key) -> Self {
        Self { key, data: None }
    }
}

/// The value of a map element (ordered, so elements can live in sets).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ElemData {
    /// `: goto <chain>` in a verdict map.
    Goto(String),
    /// `: <addr> . <port>` in a DNAT map.
    Endpoint(SocketAddr),
    /// `: 0x...` in a mark map.
    Mark(u32),
    /// Not a value: an element of a timeout set added with this many milliseconds left
    /// (`expires`), to carry affinity the kernel learned across a full sync.
    Expires(u64),
}

/// A rule: statements appended to a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub chain: String,
    pub stmts: Vec<Stmt>,
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    AddTable,
    DeleteTable,
    AddChain(Chain),
    FlushChain(String),
    DeleteChain(String),
    AddSet(Set),
    DeleteSet(String),
    AddRule(Rule),
    AddElems { set: String, elems: Vec<Elem> },
    DeleteElems { set: String, elems: Vec<Elem> },
}

/// Most elements per message: an attribute nest is limited to 64 KiB.
pub const ELEMS_PER_MESSAGE: usize = 512;

/// nft's datatype numbers, for `NFTA_SET_KEY_TYPE` (so `nft list` can print our sets).
const TYPE_IPV4_ADDR: u32 = 7;
const TYPE_IPV6_ADDR: u32 = 8;
const TYPE_INET_PROTO: u32 = 12;
const TYPE_INET_SERVICE: u32 = 13;
const TYPE_VERDICT: u32 = 0xffff_ff00;
const TYPE_BITS: u32 = 6;

impl KeyType {
    fn addr_type(f: IpFamily) -> (u32, u32) {
        match f {
            IpFamily::V4 => (TYPE_IPV4_ADDR, 4),
            IpFamily::V6 => (TYPE_IPV6_ADDR, 16),
        }
    }

    /// (nft type id, key length in bytes: each concatenated field padded to 4 bytes)
    fn encoding(self, f: IpFamily) -> (u32, u32) {
        let (addr, alen) = Self::addr_type(f);
        match self {
            Self::Addr => (addr, alen),
            Self::AddrProtoPort => (
                (((addr << TYPE_BITS) | TYPE_INET_PROTO) << TYPE_BITS) | TYPE_INET_SERVICE,
                alen + 8,
            ),
            Self::ProtoPort => ((TYPE_INET_PROTO << TYPE_BITS) | TYPE_INET_SERVICE, 8),
            Self::AddrPair => ((addr << TYPE_BITS) | addr, 2 * alen),
        }
    }

    fn text(self, f: IpFamily) -> &'static str {
        match (self, f) {
            (Self::Addr, IpFamily::V4) => "ipv4_addr",
            (Self::Addr, IpFamily::V6) => "ipv6_addr",
            (Self::AddrProtoPort, IpFamily::V4) => "ipv4_addr . inet_proto . inet_service",
            (Self::AddrProtoPort, IpFamily::V6) => "ipv6_addr . inet_proto . inet_service",
            (Self::ProtoPort, _) => "inet_proto . inet_service",
            (Self::AddrPair, IpFamily::V4) => "ipv4_addr . ipv4_addr",
            (Self::AddrPair, IpFamily::V6) => "ipv6_addr . ipv6_addr",
        }
    }
}

impl SetData {
    /// (`NFTA_SET_DATA_TYPE`, `NFTA_SET_DATA_LEN`) for a map.
    fn encoding(self, f: IpFamily) -> Option<(u32, u32)> {
        let (addr, alen) = KeyType::addr_type(f);
        match self {
            Self::None => None,
            Self::Verdict => Some((TYPE_VERDICT, 0)),
            Self::Endpoint => Some(((addr << TYPE_BITS) | TYPE_INET_SERVICE, alen + 4)),
            Self::Mark => Some((TYPE_MARK, 4)),
        }
    }

    /// `NFTA_SET_USERDATA`, which the kernel stores for nft and never reads: for a mark map,
    /// the note that its values are in host byte order (libnftnl's `NFTNL_UDATA_SET_DATABYTEORDER`
    /// = 1, a u32 `BYTEORDER_HOST_ENDIAN` = 1). Without it nft assumes big-endian and prints
    /// every mark byte-swapped, so `nft list` disagreed with `ipvsadm` (DESIGN-NOTES 289).
    fn user_data(self) -> Option<Vec<u8>> {
        const SET_DATABYTEORDER: u8 = 1;
        const BYTEORDER_HOST_ENDIAN: u32 = 1;
        match self {
            Self::Mark => {
                let mut tlv = vec![SET_DATABYTEORDER, 4];
                tlv.extend_from_slice(&BYTEORDER_HOST_ENDIAN.to_ne_bytes());
                Some(tlv)
            }
            Self::None | Self::Verdict | Self::Endpoint => None,
        }
    }

    fn text(self, f: IpFamily) -> &'static str {
        match (self, f) {
            (Self::None, _) => "",
            (Self::Verdict, _) => " : verdict",
            (Self::Endpoint, IpFamily::V4) => " : ipv4_addr . inet_service",
            (Self::Endpoint, IpFamily::V6) => " : ipv6_addr . inet_service",
            (Self::Mark, _) => " : mark",
        }
    }
}

/// Address then port, the port padded to a 32-bit register: a DNAT map's value.
fn endpoint_bytes(to: &SocketAddr) -> Vec<u8> {
    let mut v = ip_bytes(&to.ip());
    v.extend_from_slice(&to.port().to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn endpoint_text(to: &SocketAddr) -> String {
    format!("{} . {}", to.ip(), to.port())
}

impl Key {
    /// Register layout: each field padded to 4 bytes; protocol one byte, port big-endian.
    pub(crate) fn bytes(&self) -> Vec<u8> {
        let ip = ip_bytes;
        let proto_port = |p: &Protocol, port: &u16| {
            let mut v = vec![p.number(), 0, 0, 0];
            v.extend_from_slice(&port.to_be_bytes());
            v.extend_from_slice(&[0, 0]);
            v
        };
        match self {
            Self::Addr(a) => ip(a),
            Self::AddrProtoPort(a, p, port) => {
                let mut v = ip(a);
                v.extend(proto_port(p, port));
                v
            }
            Self::ProtoPort(p, port) => proto_port(p, port),
            Self::AddrPair(a, b) => {
                let mut v = ip(a);
                v.extend(ip(b));
                v
            }
        }
    }

    fn text(&self) -> String {
        match self {
            Self::Addr(a) => a.to_string(),
            Self::AddrProtoPort(a, p, port) => format!("{a} . {} . {port}", p.lower()),
            Self::ProtoPort(p, port) => format!("{} . {port}", p.lower()),
            Self::AddrPair(a, b) => format!("{a} . {b}"),
        }
    }
}

impl Op {
    /// Appends this operation's message(s) to the batch; returns their sequence numbers.
    pub fn encode(&self, f: IpFamily, table_name: &str, b: &mut Batch) -> Vec<u32> {
        let fam = nfproto(f);
        let table = |w: &mut Writer| w.str(1, table_name); // NFTA_*_TABLE = 1 for every object
        match self {
            Self::AddTable => {
                vec![b.message(MsgType::NewTable, fam, NLM_F_CREATE, |w| {
                    w.str(1, table_name)
                })]
            }
            Self::DeleteTable => {
                vec![b.message(MsgType::DelTable, fam, 0, |w| w.str(1, table_name))]
            }
            Self::AddChain(c) => vec![b.message(MsgType::NewChain, fam, NLM_F_CREATE, |w| {
                table(w);
                w.str(3, &c.name); // NFTA_CHAIN_NAME
                if let Some((kind, hook, prio)) = c.base {
                    w.nest(4, |w| {
                        // NFTA_CHAIN_HOOK
                        w.be32(1, hook as u32); // NFTA_HOOK_HOOKNUM
                        w.be32(2, prio as u32); // NFTA_HOOK_PRIORITY
                    });
                    w.be32(5, 1); // NFTA_CHAIN_POLICY = NF_ACCEPT
                    w.str(7, kind); // NFTA_CHAIN_TYPE
                }
            })],
            Self::FlushChain(name) => vec![b.message(MsgType::DelRuleAll, fam, 0, |w| {
                table(w);
                w.str(2, name); // NFTA_RULE_CHAIN
            })],
            Self::DeleteChain(name) => vec![b.message(MsgType::DelChain, fam, 0, |w| {
                table(w);
                w.str(3, name);
            })],
            Self::AddSet(s) => {
                let id = b.next_id();
                vec![b.message(MsgType::NewSet, fam, NLM_F_CREATE, |w| {
                    // No NFTA_SET_DESC: like nft, a hash set of concatenated keys needs only the key length.
                    let (ktype, klen) = s.key.encoding(f);
                    table(w);
                    w.str(2, &s.name); // NFTA_SET_NAME
                    let mut flags = 0u32;
                    let data = s.data.encoding(f);
                    if data.is_some() {
                        flags |= 0x8; // NFT_SET_MAP
                    }
                    if s.timeout_seconds.is_some() {
                        flags |= 0x10 | 0x20; // NFT_SET_TIMEOUT | NFT_SET_EVAL (dynamic)
                    }
                    w.be32(3, flags); // NFTA_SET_FLAGS
                    w.be32(4, ktype); // NFTA_SET_KEY_TYPE
                    w.be32(5, klen); // NFTA_SET_KEY_LEN
                    if let Some((dtype, dlen)) = data {
                        w.be32(6, dtype); // NFTA_SET_DATA_TYPE
                        w.be32(7, dlen); // NFTA_SET_DATA_LEN
                    }
                    w.be32(10, id); // NFTA_SET_ID
                    if let Some(udata) = s.data.user_data() {
                        w.bytes(13, &udata); // NFTA_SET_USERDATA
                    }
                    if let Some(t) = s.timeout_seconds {
                        w.be64(11, u64::from(t) * 1000); // NFTA_SET_TIMEOUT (ms)
                    }
                })]
            }
            Self::DeleteSet(name) => vec![b.message(MsgType::DelSet, fam, 0, |w| {
                table(w);
                w.str(2, name);
            })],
            Self::AddRule(r) => {
                vec![
                    b.message(MsgType::NewRule, fam, NLM_F_CREATE | NLM_F_APPEND, |w| {
                        table(w);
                        w.str(2, &r.chain); // NFTA_RULE_CHAIN
                        let mut exprs = Vec::new();
                        for s in &r.stmts {
                            s.exprs(f, &mut exprs);
                        }
                        w.nest(4, |w| {
                            // NFTA_RULE_EXPRESSIONS
                            for e in &exprs {
                                e.write(w);
                            }
                        });
                    }),
                ]
            }
            Self::AddElems { set, elems } | Self::DeleteElems { set, elems } => {
                let kind = if matches!(self, Self::AddElems { .. }) {
                    MsgType::NewSetElem
                } else {
                    MsgType::DelSetElem
                };
                let flags = if kind == MsgType::NewSetElem {
                    NLM_F_CREATE
                } else {
                    0
                };
                elems
                    .chunks(ELEMS_PER_MESSAGE)
                    .map(|chunk| {
                        b.message(kind, fam, flags, |w| {
                            table(w); // NFTA_SET_ELEM_LIST_TABLE
                            w.str(2, set); // NFTA_SET_ELEM_LIST_SET
                            w.nest(3, |w| {
                                // NFTA_SET_ELEM_LIST_ELEMENTS
                                for e in chunk {
                                    w.nest(1, |w| {
                                        w.nest(1, |w| write_value(w, &e.key.bytes())); // NFTA_SET_ELEM_KEY
                                                                                       // NFTA_SET_ELEM_DATA
                                        match (&e.data, kind) {
                                            (Some(ElemData::Goto(c)), MsgType::NewSetElem) => {
                                                let v = Verdict::Goto(c.clone());
                                                w.nest(2, |w| write_verdict(w, &v));
                                            }
                                            (Some(ElemData::Endpoint(to)), MsgType::NewSetElem) => {
                                                w.nest(2, |w| write_value(w, &endpoint_bytes(to)));
                                            }
                                            (Some(ElemData::Mark(m)), MsgType::NewSetElem) => {
                                                w.nest(2, |w| write_value(w, &m.to_ne_bytes()));
                                            }
                                            (Some(ElemData::Expires(ms)), MsgType::NewSetElem) => {
                                                w.be64(5, *ms); // NFTA_SET_ELEM_EXPIRATION
                                            }
                                            _ => {}
                                        }
                                    });
                                }
                            });
                        })
                    })
                    .collect()
            }
        }
    }

    /// This operation as `nft -f` input.
    pub fn text(&self, f: IpFamily, table: &str, out: &mut String) {
        let fam = family_word(f);
        let _ = match self {
            Self::AddTable => writeln!(out, "add table {fam} {table}"),
            Self::DeleteTable => writeln!(out, "delete table {fam} {table}"),
            Self::AddChain(c) => match c.base {
                Some((kind, hook, prio)) => writeln!(
                    out,
                    "add chain {fam} {table} {} {{ type {kind} hook {} priority {prio} ; }}",
                    c.name,
                    hook.word()
                ),
                None => writeln!(out, "add chain {fam} {table} {}", c.name),
            },
            Self::FlushChain(n) => writeln!(out, "flush chain {fam} {table} {n}"),
            Self::DeleteChain(n) => writeln!(out, "delete chain {fam} {table} {n}"),
            Self::AddSet(s) => {
                let what = if s.data == SetData::None {
                    "set"
                } else {
                    "map"
                };
                let data = s.data.text(f);
                let extra = match s.timeout_seconds {
                    Some(t) => format!(" flags dynamic,timeout ; timeout {t}s ;"),
                    None => String::new(),
                };
                writeln!(
                    out,
                    "add {what} {fam} {table} {} {{ type {}{data} ;{extra} }}",
                    s.name,
                    s.key.text(f)
                )
            }
            Self::DeleteSet(n) => writeln!(out, "delete set {fam} {table} {n}"),
            Self::AddRule(r) => {
                let _ = write!(out, "add rule {fam} {table} {}", r.chain);
                for s in &r.stmts {
                    out.push(' ');
                    s.text(f, out);
                }
                writeln!(out)
            }
            Self::AddElems { set, elems } | Self::DeleteElems { set, elems } => {
                let verb = if matches!(self, Self::AddElems { .. }) {
                    "add"
                } else {
                    "delete"
                };
                for chunk in elems.chunks(ELEMS_PER_MESSAGE) {
                    let _ = write!(out, "{verb} element {fam} {table} {set} {{ ");
                    for (i, e) in chunk.iter().enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        out.push_str(&e.key.text());
                        match (&e.data, verb) {
                            (Some(ElemData::Goto(c)), "add") => {
                                let _ = write!(out, " : goto {c}");
                            }
                            (Some(ElemData::Endpoint(to)), "add") => {
                                let _ = write!(out, " : {}", endpoint_text(to));
                            }
                            (Some(ElemData::Mark(m)), "add") => {
                                let _ = write!(out, " : {m:#010x}");
                            }
                            (Some(ElemData::Expires(ms)), "add") => {
                                let _ = write!(out, " expires {ms}ms");
                            }
                            _ => {}
                        }
                    }
                    out.push_str(" }\n");
                }
                Ok(())
            }
        };
    }

    /// Names the object, for error messages.
    pub fn describe(&self, f: IpFamily, table: &str) -> String {
        let fam = family_word(f);
        match self {
            Self::AddTable | Self::DeleteTable => format!("table {fam} {table}"),
            Self::AddChain(c) => format!("chain {fam} {table} {}", c.name),
            Self::FlushChain(n) | Self::DeleteChain(n) => format!("chain {fam} {table} {n}"),
            Self::AddSet(s) => format!("set {fam} {table} {}", s.name),
            Self::DeleteSet(n) => format!("set {fam} {table} {n}"),
            Self::AddRule(r) => format!("rule in chain {fam} {table} {}", r.chain),
            Self::AddElems { set, .. } | Self::DeleteElems { set, .. } => {
                format!("elements of {fam} {table} {set}")
            }
        }
    }
}
