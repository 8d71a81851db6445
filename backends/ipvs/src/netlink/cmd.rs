//! `IPVS_CMD_*` and the top-level `IPVS_CMD_ATTR_*`: one generic-netlink message of the
//! family, `{ cmd, attrs }`.

use super::{DestAttr, SvcAttr, IPVS_GENL_NAME, IPVS_GENL_VERSION};
use netlink_packet_core::{
    parse_u32, DecodeError, DefaultNla, Emitable, ErrorContext, Nla, NlaBuffer, NlasIterator,
    Parseable, ParseableParametrized, NLA_F_NESTED,
};
use netlink_packet_generic::{GenlFamily, GenlHeader};

const IPVS_CMD_NEW_SERVICE: u8 = 1;
const IPVS_CMD_SET_SERVICE: u8 = 2;
const IPVS_CMD_DEL_SERVICE: u8 = 3;
const IPVS_CMD_GET_SERVICE: u8 = 4;
const IPVS_CMD_NEW_DEST: u8 = 5;
const IPVS_CMD_SET_DEST: u8 = 6;
const IPVS_CMD_DEL_DEST: u8 = 7;
const IPVS_CMD_GET_DEST: u8 = 8;
const IPVS_CMD_SET_CONFIG: u8 = 12;
const IPVS_CMD_GET_CONFIG: u8 = 13;
const IPVS_CMD_GET_INFO: u8 = 15;
const IPVS_CMD_FLUSH: u8 = 17;

const IPVS_CMD_ATTR_SERVICE: u16 = 1;
const IPVS_CMD_ATTR_DEST: u16 = 2;
const IPVS_CMD_ATTR_TIMEOUT_TCP: u16 = 4;
const IPVS_CMD_ATTR_TIMEOUT_TCP_FIN: u16 = 5;
const IPVS_CMD_ATTR_TIMEOUT_UDP: u16 = 6;

/// The commands Switchyard sends (and the kernel echoes in dumps). `Flush` exists in the
/// kernel but clears every service on the node, including ones we do not own, so nothing here
/// sends it; it is listed so a dump of it decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IpvsCmd {
    NewService,
    SetService,
    DelService,
    GetService,
    NewDest,
    SetDest,
    DelDest,
    GetDest,
    SetConfig,
    GetConfig,
    GetInfo,
    Flush,
    Other(u8),
}

impl From<u8> for IpvsCmd {
    fn from(v: u8) -> Self {
        match v {
            IPVS_CMD_NEW_SERVICE => Self::NewService,
            IPVS_CMD_SET_SERVICE => Self::SetService,
            IPVS_CMD_DEL_SERVICE => Self::DelService,
            IPVS_CMD_GET_SERVICE => Self::GetService,
            IPVS_CMD_NEW_DEST => Self::NewDest,
            IPVS_CMD_SET_DEST => Self::SetDest,
            IPVS_CMD_DEL_DEST => Self::DelDest,
            IPVS_CMD_GET_DEST => Self::GetDest,
            IPVS_CMD_SET_CONFIG => Self::SetConfig,
            IPVS_CMD_GET_CONFIG => Self::GetConfig,
            IPVS_CMD_GET_INFO => Self::GetInfo,
            IPVS_CMD_FLUSH => Self::Flush,
            other => Self::Other(other),
        }
    }
}

impl From<IpvsCmd> for u8 {
    fn from(c: IpvsCmd) -> u8 {
        match c {
            IpvsCmd::NewService => IPVS_CMD_NEW_SERVICE,
            IpvsCmd::SetService => IPVS_CMD_SET_SERVICE,
            IpvsCmd::DelService => IPVS_CMD_DEL_SERVICE,
            IpvsCmd::GetService => IPVS_CMD_GET_SERVICE,
            IpvsCmd::NewDest => IPVS_CMD_NEW_DEST,
            IpvsCmd::SetDest => IPVS_CMD_SET_DEST,
            IpvsCmd::DelDest => IPVS_CMD_DEL_DEST,
            IpvsCmd::GetDest => IPVS_CMD_GET_DEST,
            IpvsCmd::SetConfig => IPVS_CMD_SET_CONFIG,
            IpvsCmd::GetConfig => IPVS_CMD_GET_CONFIG,
            IpvsCmd::GetInfo => IPVS_CMD_GET_INFO,
            IpvsCmd::Flush => IPVS_CMD_FLUSH,
            IpvsCmd::Other(v) => v,
        }
    }
}

/// A top-level attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CmdAttr {
    /// The service a command is about (nested).
    Service(Vec<SvcAttr>),
    /// The destination a command is about (nested).
    Dest(Vec<DestAttr>),
    /// Idle timeouts, seconds (`IPVS_CMD_SET_CONFIG`; 0 leaves a value unchanged).
    TimeoutTcp(u32),
    TimeoutTcpFin(u32),
    TimeoutUdp(u32),
    Other(DefaultNla),
}

impl Nla for CmdAttr {
    fn value_len(&self) -> usize {
        match self {
            Self::Service(a) => a.as_slice().buffer_len(),
            Self::Dest(a) => a.as_slice().buffer_len(),
            Self::TimeoutTcp(_) | Self::TimeoutTcpFin(_) | Self::TimeoutUdp(_) => 4,
            Self::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Self::Service(_) => IPVS_CMD_ATTR_SERVICE | NLA_F_NESTED,
            Self::Dest(_) => IPVS_CMD_ATTR_DEST | NLA_F_NESTED,
            Self::TimeoutTcp(_) => IPVS_CMD_ATTR_TIMEOUT_TCP,
            Self::TimeoutTcpFin(_) => IPVS_CMD_ATTR_TIMEOUT_TCP_FIN,
            Self::TimeoutUdp(_) => IPVS_CMD_ATTR_TIMEOUT_UDP,
            Self::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buf: &mut [u8]) {
        match self {
            Self::Service(a) => a.as_slice().emit(buf),
            Self::Dest(a) => a.as_slice().emit(buf),
            Self::TimeoutTcp(v) | Self::TimeoutTcpFin(v) | Self::TimeoutUdp(v) => {
                buf.copy_from_slice(&v.to_ne_bytes())
            }
            Self::Other(nla) => nla.emit_value(buf),
        }
    }
}

fn parse_nested<A>(v: &[u8], what: &'static str) -> Result<Vec<A>, DecodeError>
where
    A: for<'a> Parseable<NlaBuffer<&'a [u8]>>,
{
    NlasIterator::new(v)
        .map(|nla| nla.and_then(|nla| A::parse(&nla)))
        .collect::<Result<Vec<_>, _>>()
        .context(what)
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for CmdAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            IPVS_CMD_ATTR_SERVICE => Self::Service(parse_nested(v, "IPVS_CMD_ATTR_SERVICE")?),
            IPVS_CMD_ATTR_DEST => Self::Dest(parse_nested(v, "IPVS_CMD_ATTR_DEST")?),
            IPVS_CMD_ATTR_TIMEOUT_TCP => {
                Self::TimeoutTcp(parse_u32(v).context("IPVS_CMD_ATTR_TIMEOUT_TCP")?)
            }
            IPVS_CMD_ATTR_TIMEOUT_TCP_FIN => {
                Self::TimeoutTcpFin(parse_u32(v).context("IPVS_CMD_ATTR_TIMEOUT_TCP_FIN")?)
            }
            IPVS_CMD_ATTR_TIMEOUT_UDP => {
                Self::TimeoutUdp(parse_u32(v).context("IPVS_CMD_ATTR_TIMEOUT_UDP")?)
            }
            _ => Self::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// One message of the IPVS family: the payload of a `GenlMessage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsMessage {
    pub cmd: IpvsCmd,
    pub attrs: Vec<CmdAttr>,
}

impl IpvsMessage {
    pub fn new(cmd: IpvsCmd, attrs: Vec<CmdAttr>) -> Self {
        Self { cmd, attrs }
    }

    /// The nested service attributes, if the message has them.
    pub fn service(&self) -> Option<&[SvcAttr]> {
        self.attrs.iter().find_map(|a| match a {
            CmdAttr::Service(s) => Some(s.as_slice()),
            _ => None,
        })
    }

    /// The nested destination attributes, if the message has them.
    pub fn dest(&self) -> Option<&[DestAttr]> {
        self.attrs.iter().find_map(|a| match a {
            CmdAttr::Dest(d) => Some(d.as_slice()),
            _ => None,
        })
    }
}

impl GenlFamily for IpvsMessage {
    fn family_name() -> &'static str {
        IPVS_GENL_NAME
    }

    fn command(&self) -> u8 {
        self.cmd.into()
    }

    fn version(&self) -> u8 {
        IPVS_GENL_VERSION
    }
}

impl Emitable for IpvsMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for IpvsMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        Ok(Self {
            cmd: header.cmd.into(),
            attrs: parse_nested(buf, "IPVS message attributes")?,
        })
    }
}
