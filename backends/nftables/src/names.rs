//! Every name this backend creates in its table, from one scheme.
//!
//! Shared objects (the data path every service without session affinity uses) are named after
//! what they do: `int-cluster`, `ext-masq-to-cluster`, `cluster-count`, `cluster-pick-0-3`,
//! `cluster-dnat-2` / map `cluster-endpoint-2`; NodePorts on every local address prefix them
//! with `np-`. Per-service chains (session affinity, source ranges) read
//! `<kind>-<hash>-<namespace>/<service>/<port>/<proto>`: the hash keeps them unique per family
//! and endpoint, the rest lets an operator read `nft list table ip switchyard`. Everything
//! lives in the `switchyard` table, so ownership is the table itself.

use crate::stmt::KeySrc;
use switchyard_core::plan::{Endpoint, IpFamily, ServicePortName};

pub const NAT_PREROUTING: &str = "nat-prerouting";
pub const NAT_OUTPUT: &str = "nat-output";
pub const NAT_POSTROUTING: &str = "nat-postrouting";
pub const FILTER_PREROUTING: &str = "filter-prerouting";
pub const FILTER_OUTPUT_FIREWALL: &str = "filter-output-firewall";
pub const FILTER_INPUT: &str = "filter-input";
pub const FILTER_FORWARD: &str = "filter-forward";
pub const FILTER_OUTPUT: &str = "filter-output";
/// The base chains of type filter (their rules reject and drop; see `Dataplane::cleanup`).
pub const FILTER_BASE_CHAINS: [&str; 5] = [
    FILTER_PREROUTING,
    FILTER_OUTPUT_FIREWALL,
    FILTER_INPUT,
    FILTER_FORWARD,
    FILTER_OUTPUT,
];
pub const SERVICES: &str = "services";
pub const SERVICE_FILTER: &str = "service-filter";
pub const REJECT: &str = "reject-chain";
pub const MASQUERADING: &str = "masquerading";
pub const MARK_MASQ: &str = "mark-for-masquerade";

/// `fib daddr type local` traffic looks for NodePorts here (all-local NodePorts only).
pub const NODE_PORTS: &str = "node-ports";

/// Verdict maps (to per-service chains) and sets.
pub const SERVICE_IPS: &str = "service-ips";
pub const SERVICE_NODEPORTS: &str = "service-nodeports";
pub const FIREWALL_IPS: &str = "firewall-ips";
pub const CLUSTER_IPS: &str = "cluster-ips";
/// Endpoint addresses paired with themselves: `saddr . daddr` after DNAT is a hairpin.
pub const HAIRPIN: &str = "hairpin";

/// The set of service keys that have no endpoint: rejected, or (Local policy) dropped.
pub fn no_endpoint(src: KeySrc, reject: bool) -> &'static str {
    match (src, reject) {
        (KeySrc::Vip, true) => "no-endpoint-reject",
        (KeySrc::Vip, false) => "no-endpoint-drop",
        (KeySrc::Port, true) => "no-endpoint-reject-nodeports",
        (KeySrc::Port, false) => "no-endpoint-drop-nodeports",
    }
}

fn src_prefix(src: KeySrc) -> &'static str {
    match src {
        KeySrc::Vip => "",
        KeySrc::Port => "np-",
    }
}

/// A shared nat behaviour: its chain, and the set of service keys that take it.
pub fn shape_chain(src: KeySrc, shape: &str) -> String {
    format!("{}{shape}", src_prefix(src))
}

pub fn shape_set(src: KeySrc, shape: &str) -> String {
    format!("{}{shape}-services", src_prefix(src))
}

/// Root of the search by endpoint count of one endpoint kind (`cluster` or `local`); `range`
/// names an inner node covering the counts `lo..=hi`.
pub fn count_chain(src: KeySrc, kind: &str, range: Option<(u32, u32)>) -> String {
    match range {
        None => format!("{}{kind}-count", src_prefix(src)),
        Some((lo, hi)) => format!("{}{kind}-count-{lo}-{hi}", src_prefix(src)),
    }
}

/// Uniform choice among the endpoint slots `from..to`.
pub fn pick_chain(src: KeySrc, kind: &str, from: u32, to: u32) -> String {
    format!("{}{kind}-pick-{from}-{to}", src_prefix(src))
}

/// DNAT to slot `i`; the map holding slot `i` of every service key.
pub fn dnat_chain(src: KeySrc, kind: &str, i: u32) -> String {
    format!("{}{kind}-dnat-{i}", src_prefix(src))
}

pub fn endpoint_map(src: KeySrc, kind: &str, i: u32) -> String {
    format!("{}{kind}-endpoint-{i}", src_prefix(src))
}

/// The keys of slot map `i` without their endpoints, for kernels that cannot test a map's key
/// as a set member ([`crate::render::Features::map_lookup_as_set`]).
pub fn slot_set(src: KeySrc, kind: &str, i: u32) -> String {
    format!("{}{kind}-slot-{i}", src_prefix(src))
}

/// kube-proxy's masquerade mark bit, so operators recognise it.
pub const MASQ_MARK: u32 = 0x4000;

/// The chains of one service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceChains {
    pub svc: String,
    pub ext: String,
    pub fw: String,
    pub cluster: String,
    pub local: String,
}

fn label(name: &ServicePortName) -> String {
    let port = if name.port.is_empty() {
        "-"
    } else {
        name.port.as_str()
    };
    format!(
        "{}/{}/{port}/{}",
        name.service.namespace, name.service.name, name.protocol
    )
}

impl ServiceChains {
    pub fn new(name: &ServicePortName, family: IpFamily) -> Self {
        let h = hash(&format!("{name}{family}"));
        let l = label(name);
        Self {
            svc: format!("svc-{h}-{l}"),
            ext: format!("ext-{h}-{l}"),
            fw: format!("fw-{h}-{l}"),
            cluster: format!("clu-{h}-{l}"),
            local: format!("loc-{h}-{l}"),
        }
    }
}

/// The chain of one endpoint of one service port.
pub fn endpoint_chain(name: &ServicePortName, e: &Endpoint) -> String {
    format!("sep-{}-{}", hash(&format!("{name}{e}")), label(name))
}

/// The affinity set of one endpoint (source addresses recently sent there).
pub fn affinity_set(name: &ServicePortName, e: &Endpoint) -> String {
    format!("aff-{}-{}", hash(&format!("{name}{e}")), label(name))
}

/// 40-bit FNV-1a as 8 base-32 characters.
fn hash(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    const A: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    (0..8)
        .map(|i| char::from(A[((h >> (i * 5)) & 31) as usize]))
        .collect()
}

/// IPVS mode: the chain that marks packets for the virtual service of an endpoint kind.
pub fn ipvs_chain(src: KeySrc, kind: &str) -> String {
    format!("{}{kind}-ipvs", src_prefix(src))
}

/// IPVS mode: service key → firewall mark (with the masquerade bit in the `-masq` map).
pub fn ipvs_mark_map(src: KeySrc, kind: &str, masq: bool) -> String {
    let suffix = if masq { "-masq" } else { "" };
    format!("{}{kind}-fwmark{suffix}", src_prefix(src))
}

/// IPVS mode: external and load-balancer IPs bound to the dummy interface.
pub const IPVS_VIPS: &str = "ipvs-vips";
