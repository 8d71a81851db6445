//! Typed iptables rules, printed in `iptables-restore` syntax.
//!
//! Rules are data (matches and a target), not strings, so chain references, set names and
//! addresses can be inspected by tests and by the error mapper; only `Display` produces text.

use std::fmt::{self, Display, Formatter};
use std::net::{IpAddr, SocketAddr};
use switchyard_core::plan::{IpFamily, Protocol};

/// One `-A chain ...` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub chain: String,
    pub matches: Vec<Match>,
    pub target: Target,
    /// Shown as `-m comment --comment "..."`: names the service the rule serves.
    pub comment: Option<String>,
}

impl Rule {
    pub fn new(chain: impl Into<String>, target: Target) -> Self {
        Self {
            chain: chain.into(),
            matches: Vec::new(),
            target,
            comment: None,
        }
    }

    #[must_use]
    pub fn m(mut self, m: Match) -> Self {
        self.matches.push(m);
        self
    }

    #[must_use]
    pub fn comment(mut self, c: impl Into<String>) -> Self {
        self.comment = Some(c.into());
        self
    }
}

/// A match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// `-p tcp`
    Protocol(Protocol),
    /// `-s addr/mask` (mask may be non-contiguous), negated with `!`.
    Source {
        addr: IpAddr,
        mask: IpAddr,
        negate: bool,
    },
    /// `[!] -i name`, or `[!] -i prefix+` with `prefix`: the input interface (never matches
    /// locally generated packets).
    InInterface {
        name: String,
        prefix: bool,
        negate: bool,
    },
    /// `-d addr/mask`.
    Destination { addr: IpAddr, mask: IpAddr },
    /// `--dport N` (needs a preceding `Protocol`).
    DestPort(u16),
    /// `-m set --match-set NAME dst[,dst]`.
    Set { name: String, with_port: bool },
    /// `-m set --match-set NAME dst,dst,src`: (destination address, destination port, source
    /// address) is in a `hash:ip,port,ip` set (hairpin: an endpoint reached through a service
    /// from itself, as kube-proxy's IPVS mode's `KUBE-LOOP-BACK`).
    SetHairpin { name: String },
    /// `-m addrtype --src-type LOCAL` / `--dst-type LOCAL`.
    AddrTypeLocal { source: bool },
    /// `-m addrtype ! --src-type LOCAL`: the source is not a local address.
    NotLocalSource,
    /// `-m mark [!] --mark value/mask`.
    Mark { value: u32, mask: u32, negate: bool },
    /// `-m statistic --mode random --probability 1/n`: one of the remaining `n` endpoints.
    OneIn(u32),
    /// `-m recent --name N --rcheck --seconds T --reap` (affinity lookup).
    RecentCheck { name: String, seconds: u32 },
    /// `-m recent --name N --set` (affinity record).
    RecentSet { name: String },
    /// `-m conntrack --ctstate NEW`.
    NewConnection,
    /// `-m conntrack --ctstate STATE` (e.g. `INVALID`, or `DNAT`: every packet, either
    /// direction, of a connection whose destination was translated).
    CtState(&'static str),
}

/// A target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Jump(String),
    Return,
    Accept,
    Drop,
    /// `REJECT`, with TCP reset for TCP and ICMP port unreachable otherwise.
    Reject {
        tcp_reset: bool,
    },
    Dnat(SocketAddr),
    /// `MARK --or-mark`.
    OrMark(u32),
    /// `MARK --xor-mark`.
    XorMark(u32),
    /// `MASQUERADE --random-fully`.
    Masquerade,
}

impl Display for Rule {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "-A {}", self.chain)?;
        for m in &self.matches {
            write!(f, " {m}")?;
        }
        if let Some(c) = &self.comment {
            write!(f, " -m comment --comment \"{}\"", c.replace('"', "'"))?;
        }
        write!(f, " {}", self.target)
    }
}

impl Display for Match {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Self::Protocol(p) => write!(f, "-p {}", p.lower()),
            Self::Source { addr, mask, negate } => {
                write!(
                    f,
                    "{}-s {}",
                    if *negate { "! " } else { "" },
                    net(*addr, *mask)
                )
            }
            Self::Destination { addr, mask } => write!(f, "-d {}", net(*addr, *mask)),
            Self::InInterface {
                name,
                prefix,
                negate,
            } => write!(
                f,
                "{}-i {name}{}",
                if *negate { "! " } else { "" },
                if *prefix { "+" } else { "" }
            ),
            Self::DestPort(p) => write!(f, "--dport {p}"),
            Self::Set { name, with_port } => {
                write!(
                    f,
                    "-m set --match-set {name} {}",
                    if *with_port { "dst,dst" } else { "dst" }
                )
            }
            Self::SetHairpin { name } => write!(f, "-m set --match-set {name} dst,dst,src"),
            Self::NotLocalSource => f.write_str("-m addrtype ! --src-type LOCAL"),
            Self::AddrTypeLocal { source } => {
                write!(
                    f,
                    "-m addrtype --{}-type LOCAL",
                    if *source { "src" } else { "dst" }
                )
            }
            Self::Mark {
                value,
                mask,
                negate,
            } => {
                write!(
                    f,
                    "-m mark {}--mark {value:#x}/{mask:#x}",
                    if *negate { "! " } else { "" }
                )
            }
            Self::OneIn(n) => write!(
                f,
                "-m statistic --mode random --probability {:.10}",
                1.0 / f64::from(*n)
            ),
            Self::RecentCheck { name, seconds } => {
                write!(
                    f,
                    "-m recent --name {name} --rcheck --seconds {seconds} --reap"
                )
            }
            Self::RecentSet { name } => write!(f, "-m recent --name {name} --set"),
            Self::NewConnection => f.write_str("-m conntrack --ctstate NEW"),
            Self::CtState(state) => write!(f, "-m conntrack --ctstate {state}"),
        }
    }
}

impl Display for Target {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Self::Jump(chain) => write!(f, "-j {chain}"),
            Self::Return => f.write_str("-j RETURN"),
            Self::Accept => f.write_str("-j ACCEPT"),
            Self::Drop => f.write_str("-j DROP"),
            Self::Reject { tcp_reset: true } => f.write_str("-j REJECT --reject-with tcp-reset"),
            Self::Reject { tcp_reset: false } => f.write_str("-j REJECT"),
            Self::Dnat(SocketAddr::V4(a)) => write!(f, "-j DNAT --to-destination {a}"),
            Self::Dnat(SocketAddr::V6(a)) => {
                write!(f, "-j DNAT --to-destination [{}]:{}", a.ip(), a.port())
            }
            Self::OrMark(m) => write!(f, "-j MARK --or-mark {m:#x}"),
            Self::XorMark(m) => write!(f, "-j MARK --xor-mark {m:#x}"),
            Self::Masquerade => f.write_str("-j MASQUERADE --random-fully"),
        }
    }
}

/// `addr/prefix` when the mask is contiguous, `addr/mask` otherwise.
fn net(addr: IpAddr, mask: IpAddr) -> String {
    let bits: u128 = match mask {
        IpAddr::V4(m) => u128::from(u32::from(m)) << 96,
        IpAddr::V6(m) => u128::from(m),
    };
    let ones = bits.leading_ones();
    let width = if addr.is_ipv4() { 32 } else { 128 };
    let contiguous = bits.count_ones() == ones;
    if contiguous {
        format!("{addr}/{}", ones.min(width))
    } else {
        format!("{addr}/{mask}")
    }
}

/// A full-length mask for `family` (a host match).
pub fn host_mask(family: IpFamily) -> IpAddr {
    match family {
        IpFamily::V4 => IpAddr::from([255u8; 4]),
        IpFamily::V6 => IpAddr::from([255u8; 16]),
    }
}

/// The built-in tables we write to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Filter,
    Nat,
}

impl Table {
    pub fn name(self) -> &'static str {
        match self {
            Self::Filter => "filter",
            Self::Nat => "nat",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_print_in_restore_syntax() {
        let r = Rule::new("SWYD-T-5", Target::Jump("SWYD-saaaaaaaaaaa-svc".into()))
            .m(Match::Destination {
                addr: "10.96.0.10".parse().expect("ip"),
                mask: host_mask(IpFamily::V4),
            })
            .m(Match::Protocol(Protocol::Tcp))
            .m(Match::DestPort(80))
            .comment("shop/web:http/tcp");
        assert_eq!(
            r.to_string(),
            "-A SWYD-T-5 -d 10.96.0.10/32 -p tcp --dport 80 -m comment --comment \"shop/web:http/tcp\" -j SWYD-saaaaaaaaaaa-svc"
        );
        let bucket = Match::Destination {
            addr: "0.0.0.5".parse().expect("ip"),
            mask: "0.0.0.15".parse().expect("ip"),
        };
        assert_eq!(bucket.to_string(), "-d 0.0.0.5/0.0.0.15");
        let dnat6 = Target::Dnat("[fd00::1]:8080".parse().expect("sa"));
        assert_eq!(dnat6.to_string(), "-j DNAT --to-destination [fd00::1]:8080");
        assert_eq!(
            Match::Source {
                addr: "10.0.0.0".parse().expect("ip"),
                mask: "255.0.0.0".parse().expect("ip"),
                negate: true
            }
            .to_string(),
            "! -s 10.0.0.0/8"
        );
        assert_eq!(
            Match::OneIn(3).to_string(),
            "-m statistic --mode random --probability 0.3333333333"
        );
    }
}
