//! A ctnetlink message: `struct nfgenmsg` then attributes, inside a netlink header whose type
//! is `NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_*`.

use super::attr::CtAttr;
use netlink_packet_core::{
    DecodeError, Emitable as _, NetlinkDeserializable, NetlinkHeader, NetlinkSerializable,
};

const NFNL_SUBSYS_CTNETLINK: u8 = 1;
const NFNETLINK_V0: u8 = 0;
// enum cntl_msg_types
const IPCTNL_MSG_CT_NEW: u8 = 0;
const IPCTNL_MSG_CT_GET: u8 = 1;
const IPCTNL_MSG_CT_DELETE: u8 = 2;
/// `struct nfgenmsg`: family, version, resource id (big-endian).
const NFGENMSG_LEN: usize = 4;

/// `enum cntl_msg_types`, with the ones we never send or expect kept as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtMsgType {
    New,
    Get,
    Delete,
    Other(u8),
}

impl From<u8> for CtMsgType {
    fn from(v: u8) -> Self {
        match v {
            IPCTNL_MSG_CT_NEW => Self::New,
            IPCTNL_MSG_CT_GET => Self::Get,
            IPCTNL_MSG_CT_DELETE => Self::Delete,
            other => Self::Other(other),
        }
    }
}

impl From<CtMsgType> for u8 {
    fn from(t: CtMsgType) -> u8 {
        match t {
            CtMsgType::New => IPCTNL_MSG_CT_NEW,
            CtMsgType::Get => IPCTNL_MSG_CT_GET,
            CtMsgType::Delete => IPCTNL_MSG_CT_DELETE,
            CtMsgType::Other(v) => v,
        }
    }
}

/// One ctnetlink request or answer. Dumped entries arrive as `New`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtMessage {
    pub kind: CtMsgType,
    /// `nfgen_family`: `AF_INET`/`AF_INET6` (a dump of that family only), or `AF_UNSPEC`.
    pub family: u8,
    pub attrs: Vec<CtAttr>,
}

impl NetlinkSerializable for CtMessage {
    fn message_type(&self) -> u16 {
        u16::from(NFNL_SUBSYS_CTNETLINK) << 8 | u16::from(u8::from(self.kind))
    }
    fn buffer_len(&self) -> usize {
        NFGENMSG_LEN + self.attrs.as_slice().buffer_len()
    }
    fn serialize(&self, buffer: &mut [u8]) {
        buffer[0] = self.family;
        buffer[1] = NFNETLINK_V0;
        buffer[2..4].copy_from_slice(&0u16.to_be_bytes());
        self.attrs.as_slice().emit(&mut buffer[NFGENMSG_LEN..]);
    }
}

impl NetlinkDeserializable for CtMessage {
    type Error = DecodeError;
    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<Self, DecodeError> {
        let [subsys, kind] = header.message_type.to_be_bytes();
        if subsys != NFNL_SUBSYS_CTNETLINK {
            return Err(format!("not a ctnetlink message (subsystem {subsys})").into());
        }
        if payload.len() < NFGENMSG_LEN {
            return Err(DecodeError::buffer_too_small(payload.len(), NFGENMSG_LEN));
        }
        let attrs =
            super::attr::parse_nested(&payload[NFGENMSG_LEN..], "ctnetlink message", |nla| {
                <CtAttr as netlink_packet_core::Parseable<_>>::parse(nla)
            })?;
        Ok(Self {
            kind: CtMsgType::from(kind),
            family: payload[0],
            attrs,
        })
    }
}
