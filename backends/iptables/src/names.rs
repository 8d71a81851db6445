//! Every name this backend creates, from one scheme, and the predicate that recognises them.
//!
//! iptables chain names must fit 28 characters, so per-service names carry a hash of the
//! service port (and endpoint) instead of the name itself; comments on the rules say which
//! service a chain belongs to. ipsets are `SWYD<4|6>-<ROLE>` because ipset sets are per family.
//!
//! Two kinds of chain, told apart by the character after `SWYD-`:
//! - fixed chains, `SWYD-<UPPER CASE>` (`SWYD-SERVICES`, `SWYD-T-3f`, ...), one set per node;
//! - per-service-port chains, `SWYD-s<hash>-<kind>`: `svc`, `ext`, `fw`, `clu`, `loc`, and
//!   `e<hash>` for each endpoint. All of a service port's chains share the `SWYD-s<hash>` prefix
//!   (its *group*), and lower case sorts after upper case, so every group sorts after every
//!   fixed chain. `restore_order` depends on both properties to keep iptables-nft-restore
//!   linear; see there.

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
/// Jumped to from filter FORWARD for every packet: lets service traffic through a DROP policy.
pub const FORWARD: &str = "SWYD-FORWARD";
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
        let g = group(name, family);
        Self {
            svc: format!("{g}-svc"),
            ext: format!("{g}-ext"),
            fw: format!("{g}-fw"),
            cluster: format!("{g}-clu"),
            local: format!("{g}-loc"),
        }
    }
}

/// The chain of one endpoint of one service port (also the `recent` list name for affinity).
/// 9 hash characters (45 bits) only need to tell apart the endpoints of one service port.
pub fn endpoint_chain(name: &ServicePortName, family: IpFamily, endpoint: &Endpoint) -> String {
    format!(
        "{}-e{}",
        group(name, family),
        hash_name(&format!("{name}{endpoint}"), 9)
    )
}

/// `SWYD-s<hash>`: the prefix every chain of one service port shares. 11 hash characters (55
/// bits) keep the longest name (an endpoint chain) at exactly 28 characters.
fn group(name: &ServicePortName, family: IpFamily) -> String {
    format!(
        "{GROUP_PREFIX}{}",
        hash_name(&format!("{name}{family}"), 11)
    )
}

const GROUP_PREFIX: &str = "SWYD-s";
const GROUP_LEN: usize = GROUP_PREFIX.len() + 11;

/// The service-port group a chain belongs to (`SWYD-s<hash>`), or `None` for fixed chains.
pub fn service_group(chain: &str) -> Option<&str> {
    chain
        .get(..GROUP_LEN)
        .filter(|g| g.starts_with(GROUP_PREFIX) && chain.as_bytes().get(GROUP_LEN) == Some(&b'-'))
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

/// 64-bit FNV-1a, printed as `len` lower-case base-32 characters (at most 12): short enough
/// for the 28-character limit, wide enough that two service ports of one node never collide in
/// practice. (A cryptographic hash is not needed: names are not a security boundary, and one
/// more dependency is not worth it.)
fn hash_name(s: &str, len: usize) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    (0..len.min(12))
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
        let endpoint = Endpoint {
            ip: "fd00::1".parse().expect("ip"),
            port: 8443,
            node_name: None,
            zone: None,
            is_local: false,
            ready: true,
            serving: true,
            terminating: false,
        };
        let sep = endpoint_chain(&name, IpFamily::V6, &endpoint);
        assert_eq!(sep.len(), 28, "{sep}");
        let group = service_group(&c.svc).expect("a service chain has a group");
        for chain in [&c.svc, &c.ext, &c.fw, &c.cluster, &c.local, &sep] {
            assert!(chain.len() <= 28, "{chain}");
            assert!(is_owned(chain));
            assert_eq!(service_group(chain), Some(group), "{chain}");
        }
        // Every group sorts after every fixed chain (restore_order relies on it).
        for fixed in [
            SERVICES,
            POSTROUTING,
            MARK_MASQ,
            NODEPORTS,
            FILTER,
            NODEPORT_FILTER,
        ]
        .into_iter()
        .chain([FORWARD, TREE_ROOT, &tree_chain(15, Some(15))])
        {
            assert_eq!(service_group(fixed), None, "{fixed}");
            assert!(fixed < group, "{fixed} sorts before {group}");
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
