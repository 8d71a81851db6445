//! Reading elements back from the kernel: used only to carry what the kernel learned at run
//! time (affinity entries, with their remaining lifetime) across a full sync, which replaces
//! the table. Only our own table's sets are read.

use super::attr::Writer;
use super::socket::NfSocket;
use super::{NFNL_SUBSYS_NFTABLES, NLM_F_REQUEST};
use std::io;

const NLM_F_DUMP: u16 = 0x300;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_EXPIRATION: u16 = 5;
const NFTA_DATA_VALUE: u16 = 1;
const ENOENT: i32 = 2;

/// One element as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpedElem {
    /// The key's raw bytes (`NFTA_DATA_VALUE`).
    pub key: Vec<u8>,
    /// Milliseconds until the element expires (timeout sets only).
    pub expires_ms: Option<u64>,
}

/// The elements of `table`'s set `set`, or `None` when the table or set does not exist.
pub fn set_elements(
    sock: &NfSocket,
    family: u8,
    table: &str,
    set: &str,
    seq: u32,
) -> io::Result<Option<Vec<DumpedElem>>> {
    let mut w = Writer::default();
    w.buf.extend_from_slice(&[0; 4]);
    let kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM;
    w.buf.extend_from_slice(&kind.to_ne_bytes());
    w.buf
        .extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    w.buf.extend_from_slice(&seq.to_ne_bytes());
    w.buf.extend_from_slice(&0u32.to_ne_bytes());
    w.buf.extend_from_slice(&[family, 0, 0, 0]); // struct nfgenmsg
    w.str(NFTA_SET_ELEM_LIST_TABLE, table);
    w.str(NFTA_SET_ELEM_LIST_SET, set);
    let len = u32::try_from(w.buf.len()).unwrap_or(u32::MAX);
    w.buf[0..4].copy_from_slice(&len.to_ne_bytes());
    let messages = match sock.dump(&w.buf)? {
        Ok(m) => m,
        Err(ENOENT) => return Ok(None),
        Err(errno) => return Err(io::Error::from_raw_os_error(errno)),
    };
    let mut out = Vec::new();
    for (kind, payload) in messages {
        if kind != ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM) {
            continue;
        }
        // Skip struct nfgenmsg.
        let Some(attrs) = payload.get(4..) else {
            continue;
        };
        for (t, list) in attributes(attrs) {
            if t != NFTA_SET_ELEM_LIST_ELEMENTS {
                continue;
            }
            for (t, elem) in attributes(list) {
                if t == NFTA_LIST_ELEM {
                    out.extend(parse_elem(elem));
                }
            }
        }
    }
    Ok(Some(out))
}

fn parse_elem(elem: &[u8]) -> Option<DumpedElem> {
    let mut key = None;
    let mut expires_ms = None;
    for (t, v) in attributes(elem) {
        match t {
            NFTA_SET_ELEM_KEY => {
                key = attributes(v)
                    .find(|(t, _)| *t == NFTA_DATA_VALUE)
                    .map(|(_, v)| v.to_vec());
            }
            NFTA_SET_ELEM_EXPIRATION => {
                expires_ms = v.try_into().ok().map(u64::from_be_bytes);
            }
            _ => {}
        }
    }
    Some(DumpedElem {
        key: key?,
        expires_ms,
    })
}

/// Iterates over the attributes in `buf` as (type without flags, payload). Stops at the first
/// malformed header rather than reading past it.
pub fn attributes(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut off = 0;
    std::iter::from_fn(move || {
        let header = buf.get(off..off + 4)?;
        let len = usize::from(u16::from_ne_bytes([header[0], header[1]]));
        let kind = u16::from_ne_bytes([header[2], header[3]]) & 0x3fff;
        if len < 4 {
            return None;
        }
        let payload = buf.get(off + 4..off + len)?;
        off += (len + 3) & !3;
        Some((kind, payload))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_listed_element_and_stops_on_truncation() {
        let mut w = Writer::default();
        w.nest(NFTA_SET_ELEM_KEY, |w| {
            w.bytes(NFTA_DATA_VALUE, &[10, 244, 1, 5])
        });
        w.be64(NFTA_SET_ELEM_EXPIRATION, 4321);
        let e = parse_elem(&w.buf).expect("element");
        assert_eq!(e.key, vec![10, 244, 1, 5]);
        assert_eq!(e.expires_ms, Some(4321));
        assert!(
            parse_elem(&w.buf[..6]).is_none(),
            "truncated key: no element"
        );
    }
}
