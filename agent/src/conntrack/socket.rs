//! The NETLINK_NETFILTER socket the cleanup talks ctnetlink over: one dump, then one delete per
//! stale entry, each acknowledged. Blocking, with a receive timeout, so a kernel that never
//! answers costs one sync a bounded wait, not the agent.

use super::netlink::{dump_request, dump_request_unfiltered, CtMessage, Flow};
use super::ConntrackError;
use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP,
    NLM_F_REQUEST,
};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;
use std::io;
use switchyard_core::IpFamily;

const EINVAL: i32 = 22;
const EOPNOTSUPP: i32 = 95;
/// The entry expired (or was replaced) between the dump and the delete.
pub const ENOENT: i32 = 2;

/// A ctnetlink socket, bound to the network namespace of the thread that opened it.
#[derive(Debug)]
pub struct CtSocket {
    sock: Socket,
    seq: u32,
}

impl CtSocket {
    pub fn open() -> Result<Self, ConntrackError> {
        let open = || -> io::Result<Socket> {
            let mut sock = Socket::new(NETLINK_NETFILTER)?;
            sock.bind_auto()?;
            // A dump of a large table arrives in many datagrams; give the kernel room.
            let _ = setsockopt(&sock, sockopt::RcvBufForce, &(8 * 1024 * 1024));
            setsockopt(&sock, sockopt::ReceiveTimeout, &TimeVal::new(10, 0))?;
            Ok(sock)
        };
        Ok(Self {
            sock: open().map_err(ConntrackError::Open)?,
            seq: 0,
        })
    }

    /// The entries of one family and L4 protocol, and whether the kernel filtered them.
    /// Filtered in the kernel where it supports `CTA_FILTER`; a kernel that refuses it is asked
    /// for the family's whole table, and the protocol is filtered here.
    pub fn dump(
        &mut self,
        family: IpFamily,
        protocol: u8,
    ) -> Result<(Vec<Flow>, bool), ConntrackError> {
        let (answers, filtered) = match self.request(dump_request(family, protocol), NLM_F_DUMP) {
            Err(ConntrackError::Kernel { errno, .. }) if errno == EINVAL || errno == EOPNOTSUPP => {
                tracing::debug!(
                    errno,
                    "the kernel refuses a filtered conntrack dump; dumping all"
                );
                (
                    self.request(dump_request_unfiltered(family), NLM_F_DUMP)?,
                    false,
                )
            }
            other => (other?, true),
        };
        let flows = answers
            .iter()
            .filter_map(Flow::from_message)
            .filter(|f| f.orig.protocol == protocol)
            .collect();
        Ok((flows, filtered))
    }

    /// Deletes one entry. `Err(Kernel { errno: ENOENT })`: it is already gone.
    pub fn delete(&mut self, family: IpFamily, flow: &Flow) -> Result<(), ConntrackError> {
        self.request(flow.delete_request(family), NLM_F_ACK)
            .map(drop)
    }

    /// Sends one request and reads until its answer ends: `NLMSG_DONE` for a dump, the
    /// acknowledgement (or error) otherwise. Returns the ctnetlink messages received.
    fn request(&mut self, msg: CtMessage, flags: u16) -> Result<Vec<CtMessage>, ConntrackError> {
        let step = match flags & NLM_F_DUMP {
            0 => "delete",
            _ => "dump",
        };
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        nl.finalize();
        let mut buf = vec![0; nl.buffer_len()];
        nl.serialize(&mut buf);
        self.sock
            .send(&buf, 0)
            .map_err(|source| ConntrackError::Io { step, source })?;

        let mut out = Vec::new();
        loop {
            let (data, _) = self
                .sock
                .recv_from_full()
                .map_err(|source| ConntrackError::Io { step, source })?;
            let mut off = 0;
            while off < data.len() {
                let len = NetlinkBuffer::new_checked(&data[off..])
                    .map_err(|source| ConntrackError::Decode { step, source })?
                    .length() as usize;
                let msg = NetlinkMessage::<CtMessage>::deserialize(&data[off..off + len])
                    .map_err(|source| ConntrackError::Decode { step, source })?;
                off += (len + 3) & !3;
                if msg.header.sequence_number != self.seq {
                    continue; // a late answer to an earlier request
                }
                match msg.payload {
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out),
                            Some(code) => Err(ConntrackError::Kernel {
                                step,
                                errno: -code.get(),
                            }),
                        }
                    }
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    _ => {}
                }
            }
        }
    }
}
