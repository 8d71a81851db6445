//! nf_tables over netlink: message framing, batches, and the socket that sends them.
//!
//! Kernel constants keep their kernel spelling (see `linux/netfilter/nf_tables.h`,
//! `linux/netfilter/nfnetlink.h`). Messages are written straight into one batch buffer rather
//! than through `netlink-packet-core`'s message structs: a 10k-service full sync is hundreds of
//! thousands of messages, and building each as an owned struct first only to serialise it would
//! double the work. `netlink-sys` provides the socket.

pub mod attr;
pub mod dump;
pub mod socket;

pub use attr::Writer;

pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_APPEND: u16 = 0x800;

pub const NFNL_SUBSYS_NFTABLES: u16 = 10;
pub const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
pub const NFNL_MSG_BATCH_END: u16 = 0x11;

/// `enum nf_tables_msg_types`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum MsgType {
    NewTable = 0,
    DelTable = 2,
    NewChain = 3,
    DelChain = 5,
    NewRule = 6,
    /// `NFT_MSG_DELRULE` without a handle: flushes a chain.
    DelRuleAll = 8,
    NewSet = 9,
    DelSet = 11,
    NewSetElem = 12,
    DelSetElem = 14,
}

/// `NFPROTO_*`.
pub const NFPROTO_IPV4: u8 = 2;
pub const NFPROTO_IPV6: u8 = 10;

/// Builds one batch: `BATCH_BEGIN`, messages, `BATCH_END`, each with its own sequence number so
/// an error can be traced back to the operation that caused it.
#[derive(Debug)]
pub struct Batch {
    w: Writer,
    next_seq: u32,
    next_id: u32,
}

impl Batch {
    pub fn new(first_seq: u32) -> Self {
        let mut b = Self {
            w: Writer::default(),
            next_seq: first_seq,
            next_id: 1,
        };
        b.control(NFNL_MSG_BATCH_BEGIN);
        b
    }

    fn header(&mut self, kind: u16, flags: u16, family: u8, res_id: u16) -> usize {
        let start = self.w.buf.len();
        self.w.buf.extend_from_slice(&[0; 4]); // length, patched in `finish`
        self.w.buf.extend_from_slice(&kind.to_ne_bytes());
        self.w.buf.extend_from_slice(&flags.to_ne_bytes());
        self.w.buf.extend_from_slice(&self.next_seq.to_ne_bytes());
        self.w.buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
                                                           // struct nfgenmsg { family, version = NFNETLINK_V0, res_id (big-endian) }
        self.w.buf.push(family);
        self.w.buf.push(0);
        self.w.buf.extend_from_slice(&res_id.to_be_bytes());
        self.next_seq = self.next_seq.wrapping_add(1);
        start
    }

    fn finish(&mut self, start: usize) {
        let len = u32::try_from(self.w.buf.len() - start).unwrap_or(u32::MAX);
        self.w.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    fn control(&mut self, kind: u16) {
        let start = self.header(kind, NLM_F_REQUEST, 0, NFNL_SUBSYS_NFTABLES);
        self.finish(start);
    }

    /// A batch-unique object id (`NFTA_SET_ID`, which the kernel requires on new sets).
    pub fn next_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Appends one nf_tables message whose attributes `f` writes. Returns its sequence number.
    pub fn message(
        &mut self,
        kind: MsgType,
        family: u8,
        flags: u16,
        f: impl FnOnce(&mut Writer),
    ) -> u32 {
        let seq = self.next_seq;
        let t = (NFNL_SUBSYS_NFTABLES << 8) | kind as u16;
        let start = self.header(t, NLM_F_REQUEST | flags, family, 0);
        f(&mut self.w);
        self.finish(start);
        seq
    }

    /// Marks the last message for an acknowledgement (so success is observable without an ack
    /// per message) and closes the batch. Returns the bytes and the acknowledged sequence.
    pub fn end(mut self, last_seq: Option<u32>) -> (Vec<u8>, Option<u32>) {
        if let Some(seq) = last_seq {
            // Find the message with this sequence and set NLM_F_ACK on it.
            let mut off = 0;
            while off + 16 <= self.w.buf.len() {
                let len =
                    u32::from_ne_bytes(self.w.buf[off..off + 4].try_into().unwrap_or_default())
                        as usize;
                let s = u32::from_ne_bytes(
                    self.w.buf[off + 8..off + 12].try_into().unwrap_or_default(),
                );
                if s == seq {
                    let flags = u16::from_ne_bytes(
                        self.w.buf[off + 6..off + 8].try_into().unwrap_or_default(),
                    );
                    self.w.buf[off + 6..off + 8]
                        .copy_from_slice(&(flags | NLM_F_ACK).to_ne_bytes());
                    break;
                }
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
            }
        }
        self.control(NFNL_MSG_BATCH_END);
        (self.w.buf, last_seq)
    }
}

/// Verdict codes (`NF_DROP`, `NFT_JUMP`, ...), as the kernel's signed values.
pub mod verdict {
    pub const DROP: i32 = 0;
    pub const JUMP: i32 = -3;
    pub const GOTO: i32 = -4;
    pub const RETURN: i32 = -5;
}
