//! The transaction: one sync's operations, built once, printed (`render`) or sent (`apply`) as
//! one atomic netlink batch.

use crate::netlink::Batch;
use crate::objects::{ElemData, Key, Op};
use std::collections::BTreeMap;
use std::fmt::{self, Display, Formatter};
use switchyard_core::plan::IpFamily;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub family: IpFamily,
    /// The table every operation is in (`ip switchyard`, or IPVS mode's `ip switchyard-ipvs`).
    pub table: &'static str,
    pub full: bool,
    pub ops: Vec<Op>,
    /// Which service port each per-service chain or set belongs to, to name it in errors.
    pub owners: BTreeMap<String, String>,
    /// Which service port each element key belongs to (a key has one owner).
    pub key_owners: BTreeMap<Key, String>,
    /// Service ports written.
    pub service_ports: usize,
}

/// An encoded transaction: bytes, the sequence to wait for, and which op each sequence is.
#[derive(Debug)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub ack_seq: u32,
    /// (first sequence of the op's messages, op index), ascending.
    pub seq_to_op: Vec<(u32, usize)>,
}

impl Transaction {
    pub fn encode(&self, first_seq: u32) -> Encoded {
        let mut b = Batch::new(first_seq);
        let mut seq_to_op = Vec::with_capacity(self.ops.len());
        let mut last = first_seq;
        for (i, op) in self.ops.iter().enumerate() {
            let seqs = op.encode(self.family, self.table, &mut b);
            if let (Some(first), Some(l)) = (seqs.first(), seqs.last()) {
                seq_to_op.push((*first, i));
                last = *l;
            }
        }
        let (bytes, _) = b.end(Some(last));
        Encoded {
            bytes,
            ack_seq: last,
            seq_to_op,
        }
    }

    /// The operation a kernel error's sequence number points at.
    pub fn op_for_seq(encoded: &Encoded, seq: u32) -> Option<usize> {
        let pos = encoded.seq_to_op.partition_point(|(s, _)| *s <= seq);
        pos.checked_sub(1).map(|p| encoded.seq_to_op[p].1)
    }

    /// The service port an op belongs to, if it is a per-service object.
    pub fn owner_of(&self, op: &Op) -> Option<&String> {
        let name = match op {
            Op::AddChain(c) => c.name.as_str(),
            Op::FlushChain(n) | Op::DeleteChain(n) | Op::DeleteSet(n) => n.as_str(),
            Op::AddSet(s) => s.name.as_str(),
            Op::AddRule(r) => r.chain.as_str(),
            Op::AddElems { elems, .. } | Op::DeleteElems { elems, .. } => {
                return elems.iter().find_map(|e| match &e.data {
                    Some(ElemData::Goto(c)) => self.owners.get(c),
                    _ => self.key_owners.get(&e.key),
                })
            }
            Op::AddTable | Op::DeleteTable => return None,
        };
        self.owners.get(name)
    }
}

impl Display for Transaction {
    /// `nft -f` input: exactly the operations `apply` sends.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        for op in &self.ops {
            op.text(self.family, self.table, &mut s);
        }
        f.write_str(&s)
    }
}
