//! Reading our table back from the kernel: elements, to carry what the kernel learned at run
//! time (affinity entries, with their remaining lifetime) across a full sync, which replaces
//! the table; and the ruleset generation and our table's chains, rules and sets, to notice
//! when someone else changed them (`crate::check`). Only our own table is read.

use super::attr::Writer;
use super::socket::{Dumped, NfSocket};
use super::{NFNL_SUBSYS_NFTABLES, NLM_F_ACK, NLM_F_REQUEST};
use std::collections::{BTreeMap, BTreeSet};
use std::io;

const NLM_F_DUMP: u16 = 0x300;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_GETSET: u16 = 10;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_NEWGEN: u16 = 15;
const NFT_MSG_GETGEN: u16 = 16;
/// `NFTA_CHAIN_TABLE`, `NFTA_RULE_TABLE`, `NFTA_SET_TABLE`: the table is attribute 1 in all three.
const NFTA_OBJ_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_SET_NAME: u16 = 2;
const NFTA_GEN_ID: u16 = 1;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
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
    /// A map element's value's raw bytes (`NFTA_SET_ELEM_DATA`'s `NFTA_DATA_VALUE`).
    pub data: Option<Vec<u8>>,
}

/// A request message for nf_tables message `msg` (flags `flags`) with string attributes.
fn request(msg: u16, flags: u16, family: u8, seq: u32, strings: &[(u16, &str)]) -> Vec<u8> {
    let mut w = Writer::default();
    w.buf.extend_from_slice(&[0; 4]);
    let kind = (NFNL_SUBSYS_NFTABLES << 8) | msg;
    w.buf.extend_from_slice(&kind.to_ne_bytes());
    w.buf.extend_from_slice(&flags.to_ne_bytes());
    w.buf.extend_from_slice(&seq.to_ne_bytes());
    w.buf.extend_from_slice(&0u32.to_ne_bytes());
    w.buf.extend_from_slice(&[family, 0, 0, 0]); // struct nfgenmsg
    for (t, v) in strings {
        w.str(*t, v);
    }
    let len = u32::try_from(w.buf.len()).unwrap_or(u32::MAX);
    w.buf[0..4].copy_from_slice(&len.to_ne_bytes());
    w.buf
}

/// The ruleset generation: a counter the kernel bumps at every committed batch in this network
/// namespace, whoever sent it (nft, iptables-nft, us). Unchanged = nothing was changed.
pub fn generation(sock: &NfSocket, seq: u32) -> io::Result<u32> {
    let req = request(NFT_MSG_GETGEN, NLM_F_REQUEST | NLM_F_ACK, 0, seq, &[]);
    let messages = sock.request(&req)?.map_err(io::Error::from_raw_os_error)?;
    parse_generation(&messages).ok_or_else(|| io::Error::other("no NFTA_GEN_ID in the answer"))
}

/// The generation id in a `NFT_MSG_NEWGEN` answer.
pub fn parse_generation(messages: &[Dumped]) -> Option<u32> {
    messages
        .iter()
        .filter(|(kind, _)| *kind == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN)
        .filter_map(|(_, payload)| payload.get(4..))
        .flat_map(attributes)
        .find(|(t, _)| *t == NFTA_GEN_ID)
        .and_then(|(_, v)| v.try_into().ok().map(u32::from_be_bytes))
}

/// What our table holds, by name: the chains, the number of rules in each, and the sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableObjects {
    pub chains: BTreeSet<String>,
    pub rules: BTreeMap<String, usize>,
    pub sets: BTreeSet<String>,
}

/// Lists `table`'s chains, rules (counted per chain) and sets. A missing table lists empty.
pub fn table_objects(
    sock: &NfSocket,
    family: u8,
    table: &str,
    seq: u32,
) -> io::Result<TableObjects> {
    let mut all = Vec::new();
    for msg in [NFT_MSG_GETCHAIN, NFT_MSG_GETRULE, NFT_MSG_GETSET] {
        let req = request(
            msg,
            NLM_F_REQUEST | NLM_F_DUMP,
            family,
            seq,
            &[(NFTA_OBJ_TABLE, table)],
        );
        match sock.dump(&req)? {
            Ok(m) => all.extend(m),
            Err(ENOENT) => {}
            Err(errno) => return Err(io::Error::from_raw_os_error(errno)),
        }
    }
    Ok(parse_table_objects(&all, table))
}

/// Decodes chain, rule and set dump answers, keeping only `table`'s objects (the kernel may
/// ignore the table filter of a dump request). Malformed messages are skipped.
pub fn parse_table_objects(messages: &[Dumped], table: &str) -> TableObjects {
    let mut out = TableObjects::default();
    for (kind, payload) in messages {
        let Some(attrs) = payload.get(4..) else {
            continue;
        };
        let string = |want: u16| {
            attributes(attrs).find(|(t, _)| *t == want).map(|(_, v)| {
                String::from_utf8_lossy(v.strip_suffix(&[0]).unwrap_or(v)).into_owned()
            })
        };
        if string(NFTA_OBJ_TABLE).as_deref() != Some(table) {
            continue;
        }
        let Some(msg) = kind.checked_sub(NFNL_SUBSYS_NFTABLES << 8) else {
            continue;
        };
        match msg {
            NFT_MSG_NEWCHAIN => out.chains.extend(string(NFTA_CHAIN_NAME)),
            NFT_MSG_NEWRULE => {
                if let Some(chain) = string(NFTA_RULE_CHAIN) {
                    *out.rules.entry(chain).or_default() += 1;
                }
            }
            NFT_MSG_NEWSET => out.sets.extend(string(NFTA_SET_NAME)),
            _ => {}
        }
    }
    out
}

/// The elements of `table`'s set `set`, or `None` when the table or set does not exist.
pub fn set_elements(
    sock: &NfSocket,
    family: u8,
    table: &str,
    set: &str,
    seq: u32,
) -> io::Result<Option<Vec<DumpedElem>>> {
    let req = request(
        NFT_MSG_GETSETELEM,
        NLM_F_REQUEST | NLM_F_DUMP,
        family,
        seq,
        &[
            (NFTA_SET_ELEM_LIST_TABLE, table),
            (NFTA_SET_ELEM_LIST_SET, set),
        ],
    );
    let messages = match sock.dump(&req)? {
        Ok(m) => m,
        Err(ENOENT) => return Ok(None),
        Err(errno) => return Err(io::Error::from_raw_os_error(errno)),
    };
    Ok(Some(parse_set_elements(&messages)))
}

/// Decodes a set element dump's answer. Malformed elements are skipped.
pub fn parse_set_elements(messages: &[Dumped]) -> Vec<DumpedElem> {
    let mut out = Vec::new();
    for (kind, payload) in messages {
        if *kind != ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM) {
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
    out
}

fn parse_elem(elem: &[u8]) -> Option<DumpedElem> {
    let mut key = None;
    let mut data = None;
    let mut expires_ms = None;
    let value = |v: &[u8]| {
        attributes(v)
            .find(|(t, _)| *t == NFTA_DATA_VALUE)
            .map(|(_, v)| v.to_vec())
    };
    for (t, v) in attributes(elem) {
        match t {
            NFTA_SET_ELEM_KEY => key = value(v),
            NFTA_SET_ELEM_DATA => data = value(v),
            NFTA_SET_ELEM_EXPIRATION => {
                expires_ms = v.try_into().ok().map(u64::from_be_bytes);
            }
            _ => {}
        }
    }
    Some(DumpedElem {
        key: key?,
        expires_ms,
        data,
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
        w.nest(NFTA_SET_ELEM_DATA, |w| {
            w.bytes(NFTA_DATA_VALUE, &0x8000_u32.to_ne_bytes())
        });
        let e = parse_elem(&w.buf).expect("element");
        assert_eq!(e.key, vec![10, 244, 1, 5]);
        assert_eq!(e.expires_ms, Some(4321));
        assert_eq!(e.data, Some(0x8000_u32.to_ne_bytes().to_vec()));
        assert!(
            parse_elem(&w.buf[..6]).is_none(),
            "truncated key: no element"
        );
    }
}
