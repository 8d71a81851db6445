//! Every name this backend creates in its table, from one scheme.
//!
//! Per-service chains read `<kind>-<hash>-<namespace>/<service>/<port>/<proto>`: the hash keeps
//! them unique per family and endpoint, the rest lets an operator read `nft list table ip
//! switchyard`. Everything lives in the `switchyard` table, so ownership is the table itself.

use switchyard_core::plan::{Endpoint, IpFamily, ServicePortName};

pub const NAT_PREROUTING: &str = "nat-prerouting";
pub const NAT_OUTPUT: &str = "nat-output";
pub const NAT_POSTROUTING: &str = "nat-postrouting";
pub const FILTER_PREROUTING: &str = "filter-prerouting";
pub const FILTER_OUTPUT_FIREWALL: &str = "filter-output-firewall";
pub const FILTER_INPUT: &str = "filter-input";
pub const FILTER_FORWARD: &str = "filter-forward";
pub const FILTER_OUTPUT: &str = "filter-output";
pub const SERVICES: &str = "services";
pub const SERVICE_FILTER: &str = "service-filter";
pub const REJECT: &str = "reject-chain";
pub const MASQUERADING: &str = "masquerading";
pub const MARK_MASQ: &str = "mark-for-masquerade";
pub const MASQ_OUTSIDE: &str = "masquerade-outside-pods";

/// Verdict maps and sets.
pub const SERVICE_IPS: &str = "service-ips";
pub const SERVICE_NODEPORTS: &str = "service-nodeports";
pub const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
pub const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
pub const FIREWALL_IPS: &str = "firewall-ips";
pub const CLUSTER_IPS: &str = "cluster-ips";

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
