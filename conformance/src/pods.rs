//! Small servers inside pod namespaces. Each answers with its pod name, its port and the peer
//! address it saw, so a probe can tell which endpoint answered and whether it was masqueraded.

use crate::netns::Netns;
use std::net::{Ipv6Addr, SocketAddr};
use std::thread::JoinHandle;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::oneshot;

/// The servers of one pod: a thread in the pod's namespace running a small runtime. Stopped
/// and joined on drop.
#[derive(Debug)]
pub struct PodServer {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl PodServer {
    /// Starts TCP and UDP servers on `ports` inside `ns`; returns once they are listening.
    /// Each socket is bound to `[::]` without `IPV6_V6ONLY`, so it serves both families; an
    /// IPv4 peer is reported in IPv4 form, as on an IPv4 socket.
    pub fn start(ns: &Netns, pod: &'static str, ports: &[u16]) -> anyhow::Result<Self> {
        let path = ns.path();
        let ports = ports.to_vec();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
        let thread = std::thread::Builder::new()
            .name(format!("server-{pod}"))
            .spawn(move || {
                let setup = (|| -> anyhow::Result<tokio::runtime::Runtime> {
                    crate::netns::enter_path(&path)?;
                    Ok(tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?)
                })();
                let rt = match setup {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    let mut tasks = Vec::new();
                    for port in ports {
                        let addr = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
                        let tcp = match tokio::net::TcpListener::bind(addr).await {
                            Ok(l) => l,
                            Err(e) => {
                                let _ = ready_tx.send(Err(e.into()));
                                return;
                            }
                        };
                        let udp = match tokio::net::UdpSocket::bind(addr).await {
                            Ok(s) => s,
                            Err(e) => {
                                let _ = ready_tx.send(Err(e.into()));
                                return;
                            }
                        };
                        tasks.push(tokio::spawn(serve_tcp(tcp, pod, port)));
                        // SCTP where the kernel has it (the probes need a listener to tell
                        // "reached the pod" from "refused"); same reply as TCP.
                        if let Some(sctp) = sctp_listener(addr) {
                            tasks.push(tokio::spawn(serve_tcp(sctp, pod, port)));
                        }
                        tasks.push(tokio::spawn(serve_udp(udp, pod, port)));
                    }
                    let _ = ready_tx.send(Ok(()));
                    let _ = stop_rx.await;
                    for t in tasks {
                        t.abort();
                    }
                });
            })?;
        ready_rx.recv()??;
        Ok(Self {
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

impl Drop for PodServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A one-to-one style SCTP listener, driven through tokio's `TcpListener`: `accept`, `write`
/// and `shutdown` mean the same on a SOCK_STREAM SCTP socket, so the TCP server code serves it.
/// `None` when the kernel has no SCTP.
fn sctp_listener(addr: SocketAddr) -> Option<tokio::net::TcpListener> {
    use nix::sys::socket::{
        bind, listen, socket, AddressFamily, Backlog, SockFlag, SockProtocol, SockType, SockaddrIn6,
    };
    use std::os::fd::AsRawFd as _;
    let SocketAddr::V6(v6) = addr else {
        return None;
    };
    let fd = socket(
        AddressFamily::Inet6,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        SockProtocol::Sctp,
    )
    .ok()?;
    bind(fd.as_raw_fd(), &SockaddrIn6::from(v6)).ok()?;
    listen(&fd, Backlog::new(64).ok()?).ok()?;
    tokio::net::TcpListener::from_std(std::net::TcpListener::from(fd)).ok()
}

/// The reply line: `<pod> <port> <peer-ip>` (an IPv4-mapped peer in IPv4 form).
fn reply(pod: &str, port: u16, peer: SocketAddr) -> String {
    format!("{pod} {port} {}\n", peer.ip().to_canonical())
}

async fn serve_tcp(listener: tokio::net::TcpListener, pod: &'static str, port: u16) {
    loop {
        let Ok((mut stream, peer)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let _ = stream.write_all(reply(pod, port, peer).as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

async fn serve_udp(socket: tokio::net::UdpSocket, pod: &'static str, port: u16) {
    let mut buf = [0u8; 512];
    loop {
        let Ok((_, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let _ = socket
            .send_to(reply(pod, port, peer).as_bytes(), peer)
            .await;
    }
}
