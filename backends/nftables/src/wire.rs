//! The wire-level pieces the fuzz targets exercise: the batch's message framing, the attribute
//! walker, the dump decoders `Dataplane::check` and the affinity carry-over use, and writers of
//! objects as the kernel lists them (for round trips).

use crate::netlink::attr::Writer;
use crate::netlink::NFNL_SUBSYS_NFTABLES;

pub use crate::netlink::dump::{
    attributes, parse_generation, parse_set_elements, parse_table_objects, DumpedElem, TableObjects,
};
pub use crate::netlink::socket::Dumped;

/// The netlink messages of a buffer (a batch we send, or a dump answer), each with its
/// 16-byte header; stops at the first malformed length.
pub fn messages(buf: &[u8]) -> Vec<&[u8]> {
    crate::netlink::socket::messages(buf)
        .map(|(_, m)| m)
        .collect()
}

fn listed(msg: u16, strings: &[(u16, &str)]) -> Dumped {
    let mut w = Writer::default();
    w.buf.extend_from_slice(&[2, 0, 0, 0]); // struct nfgenmsg
    for (t, v) in strings {
        w.str(*t, v);
    }
    ((NFNL_SUBSYS_NFTABLES << 8) | msg, w.buf)
}

/// A chain as a `NFT_MSG_NEWCHAIN` dump answer lists it.
pub fn listed_chain(table: &str, chain: &str) -> Dumped {
    listed(3, &[(1, table), (3, chain)])
}

/// A rule of `chain` as a `NFT_MSG_NEWRULE` dump answer lists it.
pub fn listed_rule(table: &str, chain: &str) -> Dumped {
    listed(6, &[(1, table), (2, chain)])
}

/// A set as a `NFT_MSG_NEWSET` dump answer lists it.
pub fn listed_set(table: &str, set: &str) -> Dumped {
    listed(9, &[(1, table), (2, set)])
}
