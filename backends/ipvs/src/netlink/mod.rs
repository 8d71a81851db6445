//! IPVS over generic netlink (`include/uapi/linux/ip_vs.h`), on netlink-packet-core and
//! netlink-packet-generic: the family's commands and typed attributes ([`cmd`], [`service`],
//! [`dest`]), and a blocking socket that resolves the family and pipelines requests
//! ([`socket`]). No usable crate exists for this family (DESIGN §4); kernel constants keep their
//! kernel spelling.

pub mod addr;
pub mod cmd;
pub mod dest;
pub mod service;
pub mod socket;

#[cfg(test)]
mod tests;

pub use addr::InetAddr;
pub use cmd::{CmdAttr, IpvsCmd, IpvsMessage};
pub use dest::{DestAttr, FwdMethod};
pub use service::{SvcAttr, SvcFlags};
pub use socket::{decode_datagram, encode_request, IpvsSocket, Refusal, SocketError};

/// `IPVS_GENL_NAME`: the family the generic-netlink controller resolves.
pub const IPVS_GENL_NAME: &str = "IPVS";
/// `IPVS_GENL_VERSION`.
pub const IPVS_GENL_VERSION: u8 = 1;

/// `AF_INET` / `AF_INET6`, as IPVS carries them in `IPVS_SVC_ATTR_AF`.
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// Writes a NUL-terminated string into an attribute value of `s.len() + 1` bytes.
fn emit_cstr(buf: &mut [u8], s: &str) {
    buf[..s.len()].copy_from_slice(s.as_bytes());
    buf[s.len()] = 0;
}
