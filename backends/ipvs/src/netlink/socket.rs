//! A blocking generic-netlink socket for the IPVS family: resolves the family id once, then
//! pipelines requests (many messages per `sendmsg`, acks read back in bulk) and runs dumps.
//!
//! IPVS has no transactions: each message is applied on its own, so a failed message does not
//! stop the ones after it. [`IpvsSocket::execute`] reports every failure by message index, and
//! the caller maps the index back to the service port it was built for.

use super::cmd::IpvsMessage;
use super::IPVS_GENL_NAME;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::GenlMessage;
use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr};
use std::io;

/// Messages in flight before their acks are read: bounded so the acks always fit the
/// socket's receive buffer (an ack costs ~1 KiB of buffer accounting, and the default
/// `rmem_max` is 208 KiB).
const WINDOW: usize = 128;
const ENOENT: i32 = 2;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SocketError {
    #[error("opening a generic netlink socket: {0}")]
    Open(#[source] io::Error),
    /// The controller does not know the family: the `ip_vs` module is not loaded (or the
    /// kernel was built without IPVS).
    #[error("the kernel has no IPVS generic netlink family (load the ip_vs module, or use a kernel with CONFIG_IP_VS)")]
    NoFamily,
    #[error("resolving the IPVS generic netlink family: {0}")]
    Resolve(String),
    #[error("{step}: {source}")]
    Io {
        step: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("decoding the kernel's answer to {step}: {message}")]
    Decode { step: &'static str, message: String },
    /// A dump request itself was refused.
    #[error("{step} refused by the kernel: {}", io::Error::from_raw_os_error(*errno))]
    Refused { step: &'static str, errno: i32 },
}

/// One refused message of a batch: its index in the batch and the kernel's errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub index: usize,
    pub errno: i32,
}

/// The IPVS family's socket, bound in the network namespace of the thread that opened it.
#[derive(Debug)]
pub struct IpvsSocket {
    socket: Socket,
    family_id: u16,
    seq: u32,
    buf: Vec<u8>,
}

impl IpvsSocket {
    /// Opens the socket and resolves the `IPVS` family.
    pub fn open() -> Result<Self, SocketError> {
        let mut socket = Socket::new(NETLINK_GENERIC).map_err(SocketError::Open)?;
        socket.bind_auto().map_err(SocketError::Open)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(SocketError::Open)?;
        // Acks without the echoed request: a 10k-service sync reads 100k acks.
        socket.set_cap_ack(true).map_err(SocketError::Open)?;
        let mut s = Self {
            socket,
            family_id: 0,
            seq: 0,
            buf: Vec::new(),
        };
        s.family_id = s.resolve()?;
        Ok(s)
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn resolve(&mut self) -> Result<u16, SocketError> {
        let mut genl = GenlMessage::from_payload(GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName(IPVS_GENL_NAME.to_string())],
        });
        genl.finalize();
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK;
        header.sequence_number = self.next_seq();
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(genl));
        msg.finalize();
        let mut out = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut out);
        self.send(&out, "resolving the IPVS family")?;
        let mut id = None;
        loop {
            for m in self.recv::<GenlMessage<GenlCtrl>>("resolving the IPVS family")? {
                match m.payload {
                    NetlinkPayload::InnerMessage(genl) => {
                        id = genl.payload.nlas.iter().find_map(|a| match a {
                            GenlCtrlAttrs::FamilyId(id) => Some(*id),
                            _ => None,
                        });
                    }
                    NetlinkPayload::Error(e) => match e.code {
                        None => {
                            return id.ok_or_else(|| {
                                SocketError::Resolve("no family id in the answer".into())
                            })
                        }
                        Some(code) if -code.get() == ENOENT => return Err(SocketError::NoFamily),
                        Some(code) => {
                            return Err(SocketError::Resolve(
                                io::Error::from_raw_os_error(-code.get()).to_string(),
                            ))
                        }
                    },
                    _ => {}
                }
            }
        }
    }

    /// Encodes one request into `out`.
    fn encode(&mut self, msg: &IpvsMessage, flags: u16, out: &mut Vec<u8>) -> u32 {
        let seq = self.next_seq();
        encode_request(msg, self.family_id, flags, seq, out);
        seq
    }

    /// Sends `msgs` in order, each acknowledged; returns the refused ones. Stops early only on
    /// a transport error.
    pub fn execute(&mut self, msgs: &[IpvsMessage]) -> Result<Vec<Refusal>, SocketError> {
        let mut refused = Vec::new();
        for (chunk_no, chunk) in msgs.chunks(WINDOW).enumerate() {
            let mut out = Vec::with_capacity(chunk.len() * 96);
            let mut first_seq = 0;
            for (i, m) in chunk.iter().enumerate() {
                let seq = self.encode(m, NLM_F_REQUEST | NLM_F_ACK, &mut out);
                if i == 0 {
                    first_seq = seq;
                }
            }
            self.send(&out, "sending IPVS requests")?;
            let mut acked = 0;
            while acked < chunk.len() {
                for m in self.recv::<GenlMessage<IpvsMessage>>("reading IPVS acks")? {
                    if let NetlinkPayload::Error(e) = m.payload {
                        acked += 1;
                        if let Some(code) = e.code {
                            let offset = m.header.sequence_number.wrapping_sub(first_seq) as usize;
                            refused.push(Refusal {
                                index: chunk_no * WINDOW + offset,
                                errno: -code.get(),
                            });
                        }
                    }
                }
            }
        }
        Ok(refused)
    }

    /// Runs a dump request (`GET_SERVICE`, `GET_DEST` with the service attribute) and returns
    /// every answer.
    pub fn dump(
        &mut self,
        msg: &IpvsMessage,
        step: &'static str,
    ) -> Result<Vec<IpvsMessage>, SocketError> {
        let mut out = Vec::new();
        self.encode(msg, NLM_F_REQUEST | NLM_F_DUMP, &mut out);
        self.send(&out, step)?;
        let mut answers = Vec::new();
        loop {
            for m in self.recv::<GenlMessage<IpvsMessage>>(step)? {
                match m.payload {
                    NetlinkPayload::InnerMessage(genl) => answers.push(genl.payload),
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::Error(e) => match e.code {
                        Some(code) => {
                            return Err(SocketError::Refused {
                                step,
                                errno: -code.get(),
                            })
                        }
                        None => return Ok(answers),
                    },
                    _ => {}
                }
            }
        }
    }

    /// Sends one request and waits for its ack; `Err(Refused)` carries the errno.
    pub fn request(&mut self, msg: &IpvsMessage, step: &'static str) -> Result<(), SocketError> {
        match self.execute(std::slice::from_ref(msg))?.first() {
            Some(r) => Err(SocketError::Refused {
                step,
                errno: r.errno,
            }),
            None => Ok(()),
        }
    }

    fn send(&self, buf: &[u8], step: &'static str) -> Result<(), SocketError> {
        self.socket
            .send(buf, 0)
            .map(|_| ())
            .map_err(|source| SocketError::Io { step, source })
    }

    /// Reads one datagram and decodes the messages in it.
    fn recv<I>(&mut self, step: &'static str) -> Result<Vec<NetlinkMessage<I>>, SocketError>
    where
        I: netlink_packet_core::NetlinkDeserializable + std::fmt::Debug,
    {
        self.buf.clear();
        self.buf.reserve(64 * 1024);
        let n = self
            .socket
            .recv(&mut self.buf, 0)
            .map_err(|source| SocketError::Io { step, source })?;
        decode_datagram(&self.buf[..n.min(self.buf.len())], step)
    }
}

/// Appends `msg` to `out` as one netlink request of the family `family_id`. A free function
/// (the socket only adds the sequence number) so the fuzz target checks the exact bytes a
/// sync sends.
pub fn encode_request(msg: &IpvsMessage, family_id: u16, flags: u16, seq: u32, out: &mut Vec<u8>) {
    let mut genl = GenlMessage::from_payload(msg.clone());
    genl.set_resolved_family_id(family_id);
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut nl = NetlinkMessage::new(header, NetlinkPayload::from(genl));
    nl.finalize();
    let start = out.len();
    out.resize(start + nl.buffer_len(), 0);
    nl.serialize(&mut out[start..]);
}

/// Decodes one datagram from the kernel: netlink messages back to back, each padded to 4
/// bytes. A length that does not fit the datagram is an error, never a panic: this is what
/// the fuzz target feeds arbitrary bytes.
pub fn decode_datagram<I>(
    data: &[u8],
    step: &'static str,
) -> Result<Vec<NetlinkMessage<I>>, SocketError>
where
    I: netlink_packet_core::NetlinkDeserializable + std::fmt::Debug,
{
    let mut msgs = Vec::new();
    let mut off = 0;
    while off + 16 <= data.len() {
        let len =
            u32::from_ne_bytes([data[off], data[off + 1], data[off + 2], data[off + 3]]) as usize;
        if len < 16 || off + len > data.len() {
            return Err(SocketError::Decode {
                step,
                message: format!("netlink message of length {len} at offset {off}"),
            });
        }
        let m = NetlinkMessage::<I>::deserialize(&data[off..off + len]).map_err(|e| {
            SocketError::Decode {
                step,
                message: e.to_string(),
            }
        })?;
        msgs.push(m);
        off += (len + 3) & !3;
    }
    Ok(msgs)
}
