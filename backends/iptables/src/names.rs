//! Every name this backend creates, from one scheme, and the predicate that recognises them.
//!
//! Chains are `SWYD-<KIND>-<hash>`: iptables chain names must fit 28 characters, so per-service
//! names carry a hash of the service port (and endpoint) instead of the name itself; comments on
//! the rules say which service a chain belongs to. ipsets are `SWYD<4|6>-<ROLE>` because ipset
//! sets are per family.

use switchyard_core::plan::{Endpoint, IpFamily, ServicePortName};

/// Prefix of everything we own.
pub const PREFIX: &str = "SWYD-";

/// Jumped to from nat PREROUTING and OUTPUT: service dispatch.
pub const SERVICES: &str = "SWYD-SERVICES";
/// Jumped to from nat POSTROUTING: masquerade marked packets.
pub const POSTROUTING: &str = "SWYD-POSTROUTING";
/// Marks a packet for masquerade.
pub const MARK_MASQ: &str = "SWYD-MARK-MASQ";
/// NodePorts on every local address (`--nodeport-addresses` all).
pub const NODEPORTS: &str = "SWYD-NODEPORTS";
/// Jumped to from filter INPUT, FORWARD and OUTPUT for new connections: reject and drop.
pub const FILTER: &str = "SWYD-FILTER";
/// Reject/drop for NodePorts on every local address.
pub const NODEPORT_FILTER: &str = "SWYD-NODEPORT-FILTER";
/// Marks for masquerade unless the source is a pod (`--cluster-cidr`).
pub const MASQ_OUTSIDE: &str = "SWYD-MASQ-OUTSIDE";
/// Root of the dispatch tree.
pub const TREE_ROOT: &str = "SWYD-T";

/// The packet-mark bit meaning "masquerade this connection" (kube-proxy's bit, so operators
/// recognise it and a node moving off kube-proxy keeps the same meaning).
pub const MASQ_MARK: u32 = 0x4000;

/// The packet-mark bit meaning "drop this connection" (kube-proxy's former KUBE-MARK-DROP bit):
/// set in nat by a source-range firewall, acted on in filter, because nat cannot drop.
pub const DROP_MARK: u32 = 0x8000;

/// A dispatch tree chain. Level 1 splits on destination address bits 0–3, level 2 on bits
/// 4–7 (see `render::dispatch`).
pub fn tree_chain(level1: u8, level2: Option<u8>) -> String {
    match level2 {
        None => format!("SWYD-T-{level1:x}"),
        Some(l2) => format!("SWYD-T-{level1:x}{l2:x}"),
    }
}

/// The chains of one service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceChains {
    /// Cluster-IP entry: masquerade decision, then the internal target.
    pub svc: String,
    /// External entry (NodePort, external IP, LB IP).
    pub ext: String,
    /// Load-balancer source-range firewall.
    pub fw: String,
    /// The cluster endpoint set.
    pub cluster: String,
    /// The local endpoint set.
    pub local: String,
}

impl ServiceChains {
    pub fn new(name: &ServicePortName, family: IpFamily) -> Self {
        let h = hash_name(&format!("{name}{family}"));
        Self {
            svc: format!("SWYD-SVC-{h}"),
            ext: format!("SWYD-EXT-{h}"),
            fw: format!("SWYD-FW-{h}"),
            cluster: format!("SWYD-CLU-{h}"),
            local: format!("SWYD-LOC-{h}"),
        }
    }
}

/// The chain of one endpoint of one service port (also the `recent` list name for affinity).
pub fn endpoint_chain(name: &ServicePortName, endpoint: &Endpoint) -> String {
    format!("SWYD-SEP-{}", hash_name(&format!("{name}{endpoint}")))
}

/// The ipsets of one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetNames {
    /// `hash:ip,port`: every address:port/proto the nat dispatch handles (the guard).
    pub vips: String,
    /// `hash:ip,port`: addresses:ports to reject when not DNATed (no endpoints).
    pub reject: String,
    /// `hash:ip,port`: addresses:ports to drop when not DNATed (Local policy without local
    /// endpoints, load-balancer source ranges).
    pub drop: String,
    /// `hash:ip`: every cluster IP (anything to them that is not DNATed is rejected).
    pub cluster_ips: String,
}

impl SetNames {
    pub fn new(family: IpFamily) -> Self {
        let f = match family {
            IpFamily::V4 => '4',
            IpFamily::V6 => '6',
        };
        Self {
            vips: format!("SWYD{f}-VIPS"),
            reject: format!("SWYD{f}-REJECT"),
            drop: format!("SWYD{f}-DROP"),
            cluster_ips: format!("SWYD{f}-CLUSTER-IPS"),
        }
    }

    pub fn all(&self) -> [&str; 4] {
        [&self.vips, &self.reject, &self.drop, &self.cluster_ips]
    }
}

/// Whether a chain or set name is ours (for cleanup).
pub fn is_owned(name: &str) -> bool {
    name.starts_with(PREFIX) || name.starts_with("SWYD4-") || name.starts_with("SWYD6-")
}

/// 64-bit FNV-1a, printed as 13 base-32 characters: short enough for the 28-character limit,
/// wide enough that two service ports of one node never collide in practice. (A cryptographic
/// hash is not needed: names are not a security boundary, and one more dependency is not worth
/// it.)
fn hash_name(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    (0..13)
        .map(|i| char::from(ALPHABET[((h >> (i * 5)) & 31) as usize]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::model::ObjectRef;
    use switchyard_core::Protocol;

    #[test]
    fn names_fit_iptables_limits_and_are_recognised() {
        let name = ServicePortName {
            service: ObjectRef::new(
                "a-very-long-namespace-name-indeed",
                "and-a-long-service-name",
            ),
            port: "https-metrics".into(),
            protocol: Protocol::Tcp,
        };
        let c = ServiceChains::new(&name, IpFamily::V6);
        for chain in [&c.svc, &c.ext, &c.fw, &c.cluster, &c.local] {
            assert!(chain.len() <= 28, "{chain}");
            assert!(is_owned(chain));
        }
        assert_ne!(
            ServiceChains::new(&name, IpFamily::V4),
            c,
            "families get distinct chains"
        );
        for set in SetNames::new(IpFamily::V4).all() {
            assert!(set.len() <= 31 && is_owned(set), "{set}");
        }
        assert!(!is_owned("KUBE-SERVICES"));
    }
}
