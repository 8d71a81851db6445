//! Which sources are this cluster's pods: kube-proxy's `LocalTrafficDetector`, decided once.
//!
//! Rules of [`super::SourceClass::Pod`] match what this says, in every backend: a source
//! address inside CIDRs (`ClusterCIDR`, `NodeCIDR`), or the interface a packet arrived on
//! (`BridgeInterface`, `InterfaceNamePrefix`, for CNIs whose pod addresses are not known up
//! front). The agent picks the variant from `--detect-local-mode`; core only carries it, so the
//! backends render one match (`ip saddr` / `iifname`, `-s` / `-i`) from one decision.

use ipnet::IpNet;
use serde::Serialize;
use std::fmt;
use std::net::IpAddr;

/// How rules recognise a packet from a pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum LocalDetector {
    /// Source address inside one of these CIDRs (of the plan's family). Empty: no source is a
    /// pod (no `--cluster-cidr`), so only hairpin traffic is masqueraded.
    Cidrs(Vec<IpNet>),
    /// Arrived on exactly this interface (`--detect-local-mode BridgeInterface`, e.g. `cni0`).
    InputInterface(String),
    /// Arrived on an interface whose name starts with this (`InterfaceNamePrefix`, e.g.
    /// `cali` for per-pod veths). nft `iifname "cali*"`, iptables `-i cali+`.
    InterfacePrefix(String),
}

impl Default for LocalDetector {
    fn default() -> Self {
        Self::Cidrs(Vec::new())
    }
}

impl LocalDetector {
    /// True when no source can be a pod (no CIDR given): pod rules are left out.
    pub fn is_none(&self) -> bool {
        matches!(self, Self::Cidrs(c) if c.is_empty())
    }

    /// Whether a packet from `src` that arrived on `iif` (`None`: unknown, or locally
    /// generated) is a pod's, by the same test the kernel rules make.
    pub fn matches(&self, src: IpAddr, iif: Option<&str>) -> bool {
        match self {
            Self::Cidrs(cidrs) => cidrs.iter().any(|c| c.contains(&src)),
            Self::InputInterface(name) => iif == Some(name.as_str()),
            Self::InterfacePrefix(prefix) => iif.is_some_and(|i| i.starts_with(prefix.as_str())),
        }
    }

    /// Whether the answer depends on the input interface, which an address alone cannot tell
    /// (`explain` says so rather than guess).
    pub fn by_interface(&self) -> bool {
        !matches!(self, Self::Cidrs(_))
    }
}

impl fmt::Display for LocalDetector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cidrs(c) if c.is_empty() => f.write_str("no source (no cluster CIDR)"),
            Self::Cidrs(c) => {
                let list: Vec<String> = c.iter().map(ToString::to_string).collect();
                write!(f, "sources in {}", list.join(", "))
            }
            Self::InputInterface(name) => write!(f, "input interface {name}"),
            Self::InterfacePrefix(p) => write!(f, "input interface {p}*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_by_address_or_interface() {
        let ip: IpAddr = "10.244.1.5".parse().expect("ip");
        let cidrs = LocalDetector::Cidrs(vec!["10.244.0.0/16".parse().expect("cidr")]);
        assert!(cidrs.matches(ip, None));
        assert!(!cidrs.matches("192.168.0.1".parse().expect("ip"), Some("cni0")));
        let bridge = LocalDetector::InputInterface("cni0".into());
        assert!(bridge.matches(ip, Some("cni0")));
        assert!(!bridge.matches(ip, Some("cni01")) && !bridge.matches(ip, None));
        let prefix = LocalDetector::InterfacePrefix("cali".into());
        assert!(prefix.matches(ip, Some("cali12ab")));
        assert!(!prefix.matches(ip, Some("eth0")) && !prefix.matches(ip, None));
        assert!(LocalDetector::default().is_none() && !bridge.is_none());
    }
}
