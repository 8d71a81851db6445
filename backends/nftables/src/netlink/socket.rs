//! The NETLINK_NETFILTER socket: sends a batch in one `sendmsg`, then reads acknowledgements
//! and errors until the acknowledged message answers.

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;
use std::io;

use super::{NLMSG_DONE, NLMSG_ERROR};

/// A kernel error answering one message of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NlError {
    pub seq: u32,
    /// Positive errno.
    pub errno: i32,
}

/// One message of a dump's answer: (message type, payload after the netlink header).
pub type Dumped = (u16, Vec<u8>);

/// An nf_tables netlink socket, bound to the network namespace it was created in.
#[derive(Debug)]
pub struct NfSocket {
    sock: Socket,
}

impl NfSocket {
    /// Opens the socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_NETFILTER)?;
        sock.bind_auto()?;
        let fd = &sock;
        // Large buffers: a cold start of 10k services is one batch of many megabytes, and a
        // failing batch can answer with many errors. *Force variants need CAP_NET_ADMIN, which
        // a proxy has; fall back to the plain ones.
        let big = 256 * 1024 * 1024;
        if setsockopt(fd, sockopt::SndBufForce, &big).is_err() {
            let _ = setsockopt(fd, sockopt::SndBuf, &big);
        }
        if setsockopt(fd, sockopt::RcvBufForce, &(64 * 1024 * 1024)).is_err() {
            let _ = setsockopt(fd, sockopt::RcvBuf, &(64 * 1024 * 1024));
        }
        setsockopt(fd, sockopt::ReceiveTimeout, &TimeVal::new(30, 0)).map_err(io::Error::from)?;
        let _ = sock.set_ext_ack(true);
        Ok(Self { sock })
    }

    /// Sends a whole batch and waits for the answer to `ack_seq`. Returns every error the kernel
    /// reported (empty = committed).
    pub fn send_batch(&self, bytes: &[u8], ack_seq: u32) -> io::Result<Vec<NlError>> {
        let sent = self.sock.send(bytes, 0)?;
        if sent != bytes.len() {
            return Err(io::Error::other(format!(
                "short netlink send: {sent} of {} bytes",
                bytes.len()
            )));
        }
        let mut errors = Vec::new();
        loop {
            let (buf, _) = match self.sock.recv_from_full() {
                Ok(r) => r,
                // After an error the kernel may not answer the acknowledged message at all.
                Err(e)
                    if !errors.is_empty()
                        && matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                {
                    return Ok(errors)
                }
                Err(e) => return Err(e),
            };
            let mut done = false;
            for (kind, msg) in messages(&buf) {
                if kind == NLMSG_ERROR && msg.len() >= 16 + 4 + 16 {
                    let code = i32::from_ne_bytes(msg[16..20].try_into().unwrap_or_default());
                    // The original header follows the error code: its seq names the message.
                    let seq = u32::from_ne_bytes(msg[28..32].try_into().unwrap_or_default());
                    if code != 0 {
                        errors.push(NlError { seq, errno: -code });
                    }
                    if seq == ack_seq {
                        done = true;
                    }
                } else if kind == NLMSG_DONE {
                    done = true;
                }
            }
            if done {
                return Ok(errors);
            }
            if !errors.is_empty() {
                // Keep reading briefly for more errors, then give up waiting for the ack.
                let fd = &self.sock;
                setsockopt(fd, sockopt::ReceiveTimeout, &TimeVal::new(0, 200_000))
                    .map_err(io::Error::from)?;
            }
        }
    }

    /// Sends one dump request and collects every answer until `NLMSG_DONE`, as (message type,
    /// payload after the netlink header). `Ok(Err(errno))`: the kernel refused the request.
    pub fn dump(&self, request: &[u8]) -> io::Result<Result<Vec<Dumped>, i32>> {
        self.sock.send(request, 0)?;
        let mut out = Vec::new();
        loop {
            let (buf, _) = self.sock.recv_from_full()?;
            for (kind, msg) in messages(&buf) {
                match kind {
                    NLMSG_DONE => return Ok(Ok(out)),
                    NLMSG_ERROR if msg.len() >= 20 => {
                        let code = i32::from_ne_bytes(msg[16..20].try_into().unwrap_or_default());
                        if code != 0 {
                            return Ok(Err(-code));
                        }
                    }
                    _ => out.push((kind, msg[16..].to_vec())),
                }
            }
        }
    }
}

impl NfSocket {
    /// Sends one request that asks for an acknowledgement (`NLM_F_ACK`) and collects its
    /// answers until the acknowledgement. `Ok(Err(errno))`: the kernel refused the request.
    pub fn request(&self, request: &[u8]) -> io::Result<Result<Vec<Dumped>, i32>> {
        self.sock.send(request, 0)?;
        let mut out = Vec::new();
        loop {
            let (buf, _) = self.sock.recv_from_full()?;
            for (kind, msg) in messages(&buf) {
                if kind == NLMSG_ERROR && msg.len() >= 20 {
                    let code = i32::from_ne_bytes(msg[16..20].try_into().unwrap_or_default());
                    return Ok(if code == 0 { Ok(out) } else { Err(-code) });
                }
                out.push((kind, msg[16..].to_vec()));
            }
        }
    }
}

/// The netlink messages in one received buffer, as (type, whole message with its 16-byte
/// header). Stops at the first malformed length rather than reading past it.
pub fn messages(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut off = 0;
    std::iter::from_fn(move || {
        let header = buf.get(off..off + 16)?;
        let len = u32::from_ne_bytes(header[0..4].try_into().unwrap_or_default()) as usize;
        let kind = u16::from_ne_bytes(header[4..6].try_into().unwrap_or_default());
        let msg = buf.get(off..off + len).filter(|_| len >= 16)?;
        off += (len + 3) & !3;
        Some((kind, msg))
    })
}
