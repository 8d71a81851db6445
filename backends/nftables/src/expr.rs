//! nf_tables expressions: typed, each encoding itself as `NFTA_LIST_ELEM { NFTA_EXPR_NAME,
//! NFTA_EXPR_DATA }`. Registers use the 32-bit numbering (`NFT_REG32_00` = 8 ...), which is
//! what concatenated keys need.

use crate::netlink::Writer;

/// `NFT_REG_VERDICT`.
pub const REG_VERDICT: u32 = 0;
/// `NFT_REG32_00`: the first 32-bit data register.
pub const REG0: u32 = 8;

/// Payload bases (`enum nft_payload_bases`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    Network = 1,
    Transport = 2,
}

/// `enum nft_meta_keys` we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey {
    Mark = 3,
    /// The input interface's name, `IFNAMSIZ` (16) bytes, NUL-padded.
    IifName = 6,
    L4Proto = 16,
}

/// `enum nft_cmp_ops` we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq = 0,
    Neq = 1,
    /// Unsigned, byte-wise (`memcmp`): compare big-endian data only.
    Lt = 2,
}

/// A verdict as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Drop,
    Return,
    Jump(String),
    Goto(String),
}

/// One expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Payload {
        base: Base,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    Meta {
        key: MetaKey,
        dreg: u32,
    },
    /// `meta <key> set <sreg>`.
    MetaSet {
        key: MetaKey,
        sreg: u32,
    },
    Cmp {
        sreg: u32,
        op: CmpOp,
        data: Vec<u8>,
    },
    /// `dreg = (sreg & mask) ^ xor`.
    Bitwise {
        sreg: u32,
        dreg: u32,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    Lookup {
        set: String,
        sreg: u32,
        dreg: Option<u32>,
        invert: bool,
    },
    Immediate {
        dreg: u32,
        data: Vec<u8>,
    },
    ImmediateVerdict(Verdict),
    /// `numgen random mod <modulus>`.
    Numgen {
        dreg: u32,
        modulus: u32,
    },
    /// `ct state` into a register.
    CtState {
        dreg: u32,
    },
    /// `ct status` (the `IPS_*` bits) into a register.
    CtStatus {
        dreg: u32,
    },
    /// Host to network byte order of 32-bit words, so `<` compares numbers (`cmp` is
    /// byte-wise): what `nft` emits before comparing a `numgen` result.
    HostToNetwork32 {
        sreg: u32,
        dreg: u32,
    },
    /// `fib <saddr|daddr> type` into a register.
    FibAddrType {
        daddr: bool,
        dreg: u32,
    },
    /// DNAT to the address (and port) in registers.
    Dnat {
        family: u8,
        addr: u32,
        port: Option<u32>,
    },
    /// `masquerade fully-random`.
    MasqueradeFullyRandom,
    /// `reject with tcp reset` (`tcp_reset`), else ICMP/ICMPv6 port unreachable.
    Reject {
        tcp_reset: bool,
        icmp_code: u8,
    },
    /// `update @set { <sreg> }`.
    DynsetUpdate {
        set: String,
        sreg: u32,
    },
}

// Attribute numbers, kernel spelling.
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

/// Writes `NFTA_DATA_VALUE` or `NFTA_DATA_VERDICT` contents (inside an `NFTA_*_DATA` nest).
pub fn write_value(w: &mut Writer, data: &[u8]) {
    w.bytes(NFTA_DATA_VALUE, data);
}

pub fn write_verdict(w: &mut Writer, v: &Verdict) {
    use crate::netlink::verdict as code;
    w.nest(NFTA_DATA_VERDICT, |w| {
        let (c, chain) = match v {
            Verdict::Drop => (code::DROP, None),
            Verdict::Return => (code::RETURN, None),
            Verdict::Jump(c) => (code::JUMP, Some(c)),
            Verdict::Goto(c) => (code::GOTO, Some(c)),
        };
        w.be32(NFTA_VERDICT_CODE, c as u32);
        if let Some(chain) = chain {
            w.str(NFTA_VERDICT_CHAIN, chain);
        }
    });
}

impl Expr {
    fn name(&self) -> &'static str {
        match self {
            Self::Payload { .. } => "payload",
            Self::Meta { .. } | Self::MetaSet { .. } => "meta",
            Self::Cmp { .. } => "cmp",
            Self::Bitwise { .. } => "bitwise",
            Self::Lookup { .. } => "lookup",
            Self::Immediate { .. } | Self::ImmediateVerdict(_) => "immediate",
            Self::Numgen { .. } => "numgen",
            Self::CtState { .. } | Self::CtStatus { .. } => "ct",
            Self::HostToNetwork32 { .. } => "byteorder",
            Self::FibAddrType { .. } => "fib",
            Self::Dnat { .. } => "nat",
            Self::MasqueradeFullyRandom => "masq",
            Self::Reject { .. } => "reject",
            Self::DynsetUpdate { .. } => "dynset",
        }
    }

    /// Appends this expression as one element of an `NFTA_RULE_EXPRESSIONS` list.
    pub fn write(&self, w: &mut Writer) {
        w.nest(NFTA_LIST_ELEM, |w| {
            w.str(NFTA_EXPR_NAME, self.name());
            w.nest(NFTA_EXPR_DATA, |w| self.write_data(w));
        });
    }

    fn write_data(&self, w: &mut Writer) {
        match self {
            Self::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                w.be32(1, *dreg); // NFTA_PAYLOAD_DREG
                w.be32(2, *base as u32); // NFTA_PAYLOAD_BASE
                w.be32(3, *offset); // NFTA_PAYLOAD_OFFSET
                w.be32(4, *len); // NFTA_PAYLOAD_LEN
            }
            Self::Meta { key, dreg } => {
                w.be32(2, *key as u32); // NFTA_META_KEY
                w.be32(1, *dreg); // NFTA_META_DREG
            }
            Self::MetaSet { key, sreg } => {
                w.be32(2, *key as u32);
                w.be32(3, *sreg); // NFTA_META_SREG
            }
            Self::Cmp { sreg, op, data } => {
                w.be32(1, *sreg); // NFTA_CMP_SREG
                w.be32(2, *op as u32); // NFTA_CMP_OP
                w.nest(3, |w| write_value(w, data)); // NFTA_CMP_DATA
            }
            Self::Bitwise {
                sreg,
                dreg,
                mask,
                xor,
            } => {
                w.be32(1, *sreg); // NFTA_BITWISE_SREG
                w.be32(2, *dreg); // NFTA_BITWISE_DREG
                w.be32(3, u32::try_from(mask.len()).unwrap_or(0)); // NFTA_BITWISE_LEN
                w.nest(4, |w| write_value(w, mask)); // NFTA_BITWISE_MASK
                w.nest(5, |w| write_value(w, xor)); // NFTA_BITWISE_XOR
            }
            Self::Lookup {
                set,
                sreg,
                dreg,
                invert,
            } => {
                w.str(1, set); // NFTA_LOOKUP_SET
                w.be32(2, *sreg); // NFTA_LOOKUP_SREG
                if let Some(d) = dreg {
                    w.be32(3, *d); // NFTA_LOOKUP_DREG
                }
                if *invert {
                    w.be32(5, 1); // NFTA_LOOKUP_FLAGS = NFT_LOOKUP_F_INV
                }
            }
            Self::Immediate { dreg, data } => {
                w.be32(1, *dreg); // NFTA_IMMEDIATE_DREG
                w.nest(2, |w| write_value(w, data)); // NFTA_IMMEDIATE_DATA
            }
            Self::ImmediateVerdict(v) => {
                w.be32(1, REG_VERDICT);
                w.nest(2, |w| write_verdict(w, v));
            }
            Self::Numgen { dreg, modulus } => {
                w.be32(1, *dreg); // NFTA_NG_DREG
                w.be32(2, *modulus); // NFTA_NG_MODULUS
                w.be32(3, 1); // NFTA_NG_TYPE = NFT_NG_RANDOM
            }
            Self::CtState { dreg } => {
                w.be32(1, *dreg); // NFTA_CT_DREG
                w.be32(2, 0); // NFTA_CT_KEY = NFT_CT_STATE
            }
            Self::CtStatus { dreg } => {
                w.be32(1, *dreg); // NFTA_CT_DREG
                w.be32(2, 2); // NFTA_CT_KEY = NFT_CT_STATUS
            }
            Self::HostToNetwork32 { sreg, dreg } => {
                w.be32(1, *sreg); // NFTA_BYTEORDER_SREG
                w.be32(2, *dreg); // NFTA_BYTEORDER_DREG
                w.be32(3, 1); // NFTA_BYTEORDER_OP = NFT_BYTEORDER_HTON
                w.be32(4, 4); // NFTA_BYTEORDER_LEN
                w.be32(5, 4); // NFTA_BYTEORDER_SIZE
            }
            Self::FibAddrType { daddr, dreg } => {
                w.be32(1, *dreg); // NFTA_FIB_DREG
                w.be32(2, 3); // NFTA_FIB_RESULT = NFT_FIB_RESULT_ADDRTYPE
                w.be32(3, if *daddr { 2 } else { 1 }); // NFTA_FIB_FLAGS = DADDR | SADDR
            }
            Self::Dnat { family, addr, port } => {
                w.be32(1, 1); // NFTA_NAT_TYPE = NFT_NAT_DNAT
                w.be32(2, u32::from(*family)); // NFTA_NAT_FAMILY
                w.be32(3, *addr); // NFTA_NAT_REG_ADDR_MIN
                if let Some(p) = port {
                    w.be32(5, *p); // NFTA_NAT_REG_PROTO_MIN
                }
            }
            Self::MasqueradeFullyRandom => {
                w.be32(1, 0x10); // NFTA_MASQ_FLAGS = NF_NAT_RANGE_PROTO_RANDOM_FULLY
            }
            Self::Reject {
                tcp_reset,
                icmp_code,
            } => {
                w.be32(1, if *tcp_reset { 1 } else { 0 }); // NFTA_REJECT_TYPE: TCP_RST | ICMP_UNREACH
                if !*tcp_reset {
                    w.bytes(2, &[*icmp_code]); // NFTA_REJECT_ICMP_CODE (u8)
                }
            }
            Self::DynsetUpdate { set, sreg } => {
                w.str(1, set); // NFTA_DYNSET_SET_NAME
                w.be32(3, 1); // NFTA_DYNSET_OP = NFT_DYNSET_OP_UPDATE
                w.be32(4, *sreg); // NFTA_DYNSET_SREG_KEY
            }
        }
    }
}
