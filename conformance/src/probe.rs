//! Sending real connections from inside a namespace and recording who answered.

use crate::netns::enter_path;
use std::io::{ErrorKind, Read as _};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;
use switchyard_core::Protocol;

/// What one connection attempt saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// A pod answered: its name, the port it served on, the peer address it saw.
    Answered {
        pod: String,
        port: u16,
        peer: IpAddr,
    },
    /// Refused at once: TCP RST or ICMP port unreachable.
    Refused,
    /// No answer within the timeout.
    TimedOut,
    /// Anything else (e.g. ICMP host unreachable), with the error.
    Failed(String),
}

impl std::fmt::Display for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Answered { pod, port, peer } => write!(f, "{pod}:{port} (saw peer {peer})"),
            Self::Refused => f.write_str("refused"),
            Self::TimedOut => f.write_str("timed out"),
            Self::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

/// A batch of identical attempts from one namespace.
#[derive(Debug, Clone)]
pub struct Probe {
    pub netns: PathBuf,
    pub dst: SocketAddr,
    pub proto: Protocol,
    pub count: usize,
    pub timeout: Duration,
}

impl Probe {
    /// Runs the attempts one after another on a thread inside the namespace.
    pub fn run(self) -> anyhow::Result<Vec<Observed>> {
        let handle = std::thread::spawn(move || -> anyhow::Result<Vec<Observed>> {
            enter_path(&self.netns)?;
            Ok((0..self.count)
                .map(|_| once(self.dst, self.proto, self.timeout))
                .collect())
        });
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("probe thread panicked"))?
    }
}

/// One attempt.
pub fn once(dst: SocketAddr, proto: Protocol, timeout: Duration) -> Observed {
    match proto {
        Protocol::Tcp => tcp(dst, timeout),
        Protocol::Udp => udp(dst, timeout),
        Protocol::Sctp => sctp(dst, timeout),
    }
}

/// A one-to-one style SCTP association, used like a TCP stream. A blocking SCTP `connect`
/// honours `SO_SNDTIMEO` and gives `EINPROGRESS` when it expires (no answer to INIT); an
/// ABORT from a port without listener gives `ECONNREFUSED`.
fn sctp(dst: SocketAddr, timeout: Duration) -> Observed {
    use nix::sys::socket::{
        connect, socket, AddressFamily, SockFlag, SockProtocol, SockType, SockaddrIn, SockaddrIn6,
    };
    use std::os::fd::AsRawFd as _;
    let family = match dst {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = match socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Sctp,
    ) {
        Ok(fd) => fd,
        Err(e) => return Observed::Failed(format!("cannot open an SCTP socket: {e}")),
    };
    let mut stream = TcpStream::from(fd);
    if let Err(e) = stream
        .set_write_timeout(Some(timeout))
        .and_then(|_| stream.set_read_timeout(Some(timeout)))
    {
        return Observed::Failed(e.to_string());
    }
    let connected = match dst {
        SocketAddr::V4(v4) => connect(stream.as_raw_fd(), &SockaddrIn::from(v4)),
        SocketAddr::V6(v6) => connect(stream.as_raw_fd(), &SockaddrIn6::from(v6)),
    };
    match connected {
        Ok(()) => {}
        Err(nix::errno::Errno::EINPROGRESS) => return Observed::TimedOut,
        Err(e) => return classify(&std::io::Error::from(e)),
    }
    let mut text = String::new();
    match stream.read_to_string(&mut text) {
        Ok(_) => parse(&text),
        Err(e) => classify(&e),
    }
}

fn tcp(dst: SocketAddr, timeout: Duration) -> Observed {
    let mut stream = match TcpStream::connect_timeout(&dst, timeout) {
        Ok(s) => s,
        Err(e) => return classify(&e),
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let mut text = String::new();
    match stream.read_to_string(&mut text) {
        Ok(_) => parse(&text),
        Err(e) => classify(&e),
    }
}

fn udp(dst: SocketAddr, timeout: Duration) -> Observed {
    match udp_socket(dst) {
        Ok(socket) => udp_on(&socket, timeout),
        Err(e) => classify(&e),
    }
}

/// A UDP socket of the calling thread's network namespace, bound to an ephemeral port and
/// connected to `dst` (so ICMP errors reach it).
fn udp_socket(dst: SocketAddr) -> std::io::Result<UdpSocket> {
    let bind: SocketAddr = if dst.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(bind)?;
    socket.connect(dst)?;
    Ok(socket)
}

/// A UDP client that keeps its source port: created in `netns`, then usable from any thread
/// (a socket stays in the namespace it was created in). Probe it with [`udp_on`].
pub fn pinned_udp(netns: &std::path::Path, dst: SocketAddr) -> anyhow::Result<UdpSocket> {
    let netns = netns.to_path_buf();
    std::thread::spawn(move || -> anyhow::Result<UdpSocket> {
        enter_path(&netns)?;
        Ok(udp_socket(dst)?)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("socket thread panicked"))?
}

/// One request and its answer over an existing connected UDP socket.
pub fn udp_on(socket: &UdpSocket, timeout: Duration) -> Observed {
    if let Err(e) = socket.set_read_timeout(Some(timeout)) {
        return classify(&e);
    }
    if let Err(e) = socket.send(b"ping") {
        return classify(&e);
    }
    let mut buf = [0u8; 512];
    match socket.recv(&mut buf) {
        Ok(n) => parse(&String::from_utf8_lossy(&buf[..n])),
        Err(e) => classify(&e),
    }
}

fn classify(e: &std::io::Error) -> Observed {
    match e.kind() {
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset => Observed::Refused,
        ErrorKind::TimedOut | ErrorKind::WouldBlock => Observed::TimedOut,
        _ => Observed::Failed(e.to_string()),
    }
}

fn parse(text: &str) -> Observed {
    let mut parts = text.split_whitespace();
    let (Some(pod), Some(port), Some(peer)) = (parts.next(), parts.next(), parts.next()) else {
        return Observed::Failed(format!("unexpected reply {text:?}"));
    };
    match (port.parse(), peer.parse()) {
        (Ok(port), Ok(peer)) => Observed::Answered {
            pod: pod.to_string(),
            port,
            peer,
        },
        _ => Observed::Failed(format!("unexpected reply {text:?}")),
    }
}

/// Connect-to-first-byte times of `count` sequential TCP connections from inside `netns`, after
/// `warmup` unmeasured ones.
///
/// A connection that times out (2 s) counts as a 2 s sample and is reported on stderr:
/// thousands of back-to-back connections to one server port reuse client ports into the
/// server's TIME_WAIT sockets, and a rare SYN lost twice there says nothing about the rules
/// under test. More than 1% timeouts, a refusal or an empty reply is an error: a benchmark
/// of a broken path is meaningless.
pub fn connect_latencies(
    netns: &std::path::Path,
    dst: SocketAddr,
    count: usize,
    warmup: usize,
) -> anyhow::Result<Vec<Duration>> {
    const TIMEOUT: Duration = Duration::from_secs(2);
    let netns = netns.to_path_buf();
    let handle = std::thread::spawn(move || -> anyhow::Result<Vec<Duration>> {
        enter_path(&netns)?;
        let mut out = Vec::with_capacity(count);
        let mut buf = [0u8; 64];
        let mut timeouts = 0usize;
        for i in 0..count + warmup {
            let started = std::time::Instant::now();
            let answer = TcpStream::connect_timeout(&dst, TIMEOUT).and_then(|mut s| {
                s.set_read_timeout(Some(TIMEOUT))?;
                s.read(&mut buf)
            });
            let took = match answer {
                Ok(0) => anyhow::bail!("{dst}: connection closed without a reply"),
                Ok(_) => started.elapsed(),
                Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                    timeouts += 1;
                    anyhow::ensure!(
                        timeouts * 100 <= count + warmup,
                        "{dst}: {timeouts} of {} connections timed out",
                        i + 1
                    );
                    TIMEOUT
                }
                Err(e) => return Err(anyhow::Error::new(e).context(format!("connecting to {dst}"))),
            };
            if i >= warmup {
                out.push(took);
            }
        }
        if timeouts > 0 {
            eprintln!(
                "note: {dst}: {timeouts} of {} connections timed out (counted as 2 s)",
                count + warmup
            );
        }
        Ok(out)
    });
    handle
        .join()
        .map_err(|_| anyhow::anyhow!("latency thread panicked"))?
}

/// The `q`-quantile (0..=1) of `samples`, in microseconds.
pub fn quantile_us(samples: &[Duration], q: f64) -> f64 {
    let mut v: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let idx = ((v.len() - 1) as f64 * q).round() as usize;
    v[idx.min(v.len() - 1)]
}

/// The no-rules floor as a real node has it: connection tracking and NAT hooks active (an empty
/// nat base chain in a foreign table, as any CNI's masquerade rule causes), no proxy rules. The
/// table is removed again before returning. Without it, the first proxy rule would be charged
/// with turning connection tracking on.
pub fn floor_latencies(
    node: &crate::netns::Netns,
    client: &std::path::Path,
    dst: SocketAddr,
    count: usize,
    warmup: usize,
) -> anyhow::Result<Vec<Duration>> {
    node.nft("add table ip floor")?;
    node.nft("add chain ip floor pre { type nat hook prerouting priority -100 ; }")?;
    let samples = connect_latencies(client, dst, count, warmup);
    node.nft("delete table ip floor")?;
    samples
}

/// p50 with the rules and p50 of the floor, measured back to back `pairs` times: `with_rules`
/// installs the rules and samples, `floor` removes them and samples. Neighbouring
/// measurements share the machine's state, so slow drift (a virtual machine's noisy phases,
/// DESIGN-NOTES 36) cancels in each pair's ratio; report the median of those.
pub fn interleaved_p50s(
    pairs: usize,
    mut with_rules: impl FnMut() -> anyhow::Result<Vec<Duration>>,
    mut floor: impl FnMut() -> anyhow::Result<Vec<Duration>>,
) -> anyhow::Result<Vec<(f64, f64)>> {
    (0..pairs)
        .map(|_| {
            let on = quantile_us(&with_rules()?, 0.5);
            let off = quantile_us(&floor()?, 0.5);
            Ok((on, off))
        })
        .collect()
}

/// The pairs as `rules/floor` p50s, then the median of their ratios: the figure to read.
pub fn pairs_summary(pairs: &[(f64, f64)]) -> String {
    let each: Vec<String> = pairs
        .iter()
        .map(|(on, off)| format!("{on:.1}/{off:.1}"))
        .collect();
    let mut r: Vec<f64> = pairs.iter().map(|(on, off)| on / off).collect();
    r.sort_by(f64::total_cmp);
    let median = r.get(r.len() / 2).copied().unwrap_or(f64::NAN);
    format!(
        "{} interleaved pairs (p50 us, rules/floor): {}  median ratio = {median:.3}",
        pairs.len(),
        each.join(" ")
    )
}
