//! Arbitrary clusters: the fuzzer's bytes become Services, EndpointSlices and a Node whose
//! fields are mostly drawn from small pools of valid values (so objects collide, share
//! addresses and reach deep into `plan()`), and sometimes arbitrary strings (so validation is
//! exercised too).
//!
//! Every list is bounded (see the `MAX_*` constants): a Vec derived by `arbitrary` grows until
//! the input runs out, so a 4 KiB input became ~100 Services with quadratic work in `explain`
//! and the renderers, and the targets ran at ~100 executions a second. The bounds keep every
//! branch reachable: `plan()` decides per service port, and a collision needs two objects.

use arbitrary::{Arbitrary, Unstructured};
use std::collections::BTreeMap;
use switchyard_core::model::{
    Endpoint, EndpointConditions, EndpointHints, EndpointPort, EndpointSlice, LoadBalancerIngress,
    Node, NodeAddress, ObjectMeta, ObjectRef, Service, ServicePort,
};
use switchyard_core::ClusterState;

/// An address: from a pool (v4 and v6 service, pod and node ranges) or any text.
#[derive(Debug, Arbitrary)]
enum Addr {
    ServiceV4(u8),
    PodV4(u8),
    NodeV4(u8),
    ServiceV6(u8),
    PodV6(u8),
    Text(String),
}

impl Addr {
    fn text(&self) -> String {
        match self {
            Self::ServiceV4(b) => format!("10.96.0.{}", b % 8),
            Self::PodV4(b) => format!("10.244.{}.{}", b % 3, b % 7),
            Self::NodeV4(b) => format!("192.168.0.{}", 10 + b % 3),
            Self::ServiceV6(b) => format!("fd00:96::{:x}", b % 8),
            Self::PodV6(b) => format!("fd00:244::{:x}", b % 7),
            Self::Text(t) => t.clone(),
        }
    }
}

/// One of a few values, or any text.
#[derive(Debug, Arbitrary)]
pub(crate) enum Word {
    Pick(u8),
    Text(String),
}

impl Word {
    fn of(&self, pool: &[&str]) -> String {
        match self {
            Self::Pick(i) => pool[usize::from(*i) % pool.len()].to_string(),
            Self::Text(t) => t.clone(),
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Port {
    name: Word,
    protocol: Option<Word>,
    port: i32,
    node_port: Option<i32>,
    small: bool,
}

#[derive(Debug, Arbitrary)]
pub(crate) struct Svc {
    name: Word,
    type_: Option<Word>,
    #[arbitrary(with = few::<Addr, MAX_ADDRESSES>)]
    cluster_ips: Vec<Addr>,
    #[arbitrary(with = few::<Word, MAX_ADDRESSES>)]
    families: Vec<Word>,
    #[arbitrary(with = few::<Port, MAX_PORTS>)]
    ports: Vec<Port>,
    #[arbitrary(with = few::<Addr, MAX_ADDRESSES>)]
    external_ips: Vec<Addr>,
    #[arbitrary(with = few::<(Option<Addr>, Option<Word>), MAX_ADDRESSES>)]
    lb: Vec<(Option<Addr>, Option<Word>)>,
    #[arbitrary(with = few::<Word, MAX_ADDRESSES>)]
    ranges: Vec<Word>,
    affinity: Option<Word>,
    timeout: Option<i32>,
    etp: Option<Word>,
    itp: Option<Word>,
    hc_node_port: Option<i32>,
    distribution: Option<Word>,
    created: Option<i64>,
}

#[derive(Debug, Arbitrary)]
struct Ep {
    #[arbitrary(with = few::<Addr, MAX_ADDRESSES>)]
    addresses: Vec<Addr>,
    ready: Option<bool>,
    serving: Option<bool>,
    terminating: Option<bool>,
    node: Option<Word>,
    zone: Option<Word>,
    #[arbitrary(with = few::<Word, MAX_ADDRESSES>)]
    for_zones: Vec<Word>,
    #[arbitrary(with = few::<Word, MAX_ADDRESSES>)]
    for_nodes: Vec<Word>,
}

#[derive(Debug, Arbitrary)]
pub(crate) struct Slice {
    service: Word,
    suffix: u8,
    address_type: Word,
    #[arbitrary(with = few::<Ep, MAX_ENDPOINTS>)]
    endpoints: Vec<Ep>,
    #[arbitrary(with = few::<(Option<Word>, Option<Word>, Option<i32>), MAX_PORTS>)]
    ports: Vec<(Option<Word>, Option<Word>, Option<i32>)>,
}

/// This node's addresses (type, address) and zone label.
#[derive(Debug, Arbitrary)]
pub(crate) struct NodeInput {
    #[arbitrary(with = few::<(Word, Addr), MAX_ADDRESSES>)]
    addresses: Vec<(Word, Addr)>,
    zone: Option<Word>,
}

/// A whole cluster as the fuzzer describes it.
#[derive(Debug, Arbitrary)]
pub struct Cluster {
    #[arbitrary(with = few::<Svc, MAX_OBJECTS>)]
    services: Vec<Svc>,
    #[arbitrary(with = few::<Slice, MAX_OBJECTS>)]
    slices: Vec<Slice>,
    node: Option<NodeInput>,
    /// Flags of the proxy config: masquerade-all, NodePorts on every local address.
    pub masquerade_all: bool,
    pub nodeports_on_all: bool,
}

/// At most this many Services and this many EndpointSlices in a cluster (core's own
/// incremental property test draws from 6 names; two objects already collide).
pub(crate) const MAX_OBJECTS: usize = 6;
/// Ports of a Service or a slice (a Service port is planned on its own; 3 gives name
/// matching a choice, and duplicates).
pub(crate) const MAX_PORTS: usize = 3;
/// Endpoints of a slice: enough for local/remote, ready/terminating and zone hints to mix.
pub(crate) const MAX_ENDPOINTS: usize = 4;
/// Addresses, families, ranges, hints of one object.
pub(crate) const MAX_ADDRESSES: usize = 3;

/// Between 0 and `N` values, the count read from the input: a bounded `Vec`.
pub(crate) fn few<T: for<'a> Arbitrary<'a>, const N: usize>(
    u: &mut Unstructured<'_>,
) -> arbitrary::Result<Vec<T>> {
    let n = u.int_in_range(0..=N)?;
    (0..n).map(|_| T::arbitrary(u)).collect()
}

const NAMES: [&str; 4] = ["web", "db", "dns", "api"];
const PROTOCOLS: [&str; 4] = ["TCP", "UDP", "SCTP", "tcp"];
const PORT_NAMES: [&str; 3] = ["", "http", "dns"];
const TYPES: [&str; 5] = [
    "ClusterIP",
    "NodePort",
    "LoadBalancer",
    "ExternalName",
    "Bogus",
];
const POLICIES: [&str; 3] = ["Cluster", "Local", "Other"];
const FAMILIES: [&str; 3] = ["IPv4", "IPv6", "IPv5"];
const RANGES: [&str; 4] = ["0.0.0.0/0", "203.0.113.0/24", "192.168.0.0/16", "fd00::/8"];
const ZONES: [&str; 2] = ["zone-a", "zone-b"];
const NODES: [&str; 2] = ["node-a", "node-b"];

fn meta(name: String, created: Option<i64>, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        namespace: "default".into(),
        name,
        labels,
        creation_timestamp: created,
    }
}

fn key(meta: &ObjectMeta) -> ObjectRef {
    ObjectRef {
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
    }
}

impl Svc {
    pub(crate) fn service(&self) -> Service {
        let port = |p: &Port| ServicePort {
            name: p.name.of(&PORT_NAMES),
            protocol: p.protocol.as_ref().map(|w| w.of(&PROTOCOLS)),
            port: if p.small {
                p.port.rem_euclid(100)
            } else {
                p.port
            },
            node_port: p
                .node_port
                .map(|n| if p.small { 30000 + n.rem_euclid(8) } else { n }),
        };
        Service {
            meta: meta(self.name.of(&NAMES), self.created, BTreeMap::new()),
            service_type: self.type_.as_ref().map(|w| w.of(&TYPES)),
            cluster_ips: self.cluster_ips.iter().map(Addr::text).collect(),
            ip_families: self.families.iter().map(|w| w.of(&FAMILIES)).collect(),
            ports: self.ports.iter().map(port).collect(),
            external_ips: self.external_ips.iter().map(Addr::text).collect(),
            load_balancer_ingress: self
                .lb
                .iter()
                .map(|(ip, mode)| LoadBalancerIngress {
                    ip: ip.as_ref().map(Addr::text),
                    ip_mode: mode.as_ref().map(|w| w.of(&["VIP", "Proxy"])),
                })
                .collect(),
            load_balancer_source_ranges: self.ranges.iter().map(|w| w.of(&RANGES)).collect(),
            session_affinity: self.affinity.as_ref().map(|w| w.of(&["None", "ClientIP"])),
            session_affinity_timeout_seconds: self.timeout,
            external_traffic_policy: self.etp.as_ref().map(|w| w.of(&POLICIES)),
            internal_traffic_policy: self.itp.as_ref().map(|w| w.of(&POLICIES)),
            health_check_node_port: self.hc_node_port,
            traffic_distribution: self
                .distribution
                .as_ref()
                .map(|w| w.of(&["PreferClose", "PreferSameZone", "PreferSameNode"])),
        }
    }
}

impl Slice {
    pub(crate) fn slice(&self) -> EndpointSlice {
        let service = self.service.of(&NAMES);
        let labels = BTreeMap::from([("kubernetes.io/service-name".to_string(), service.clone())]);
        EndpointSlice {
            meta: meta(format!("{service}-{}", self.suffix % 4), None, labels),
            address_type: self.address_type.of(&FAMILIES),
            endpoints: self
                .endpoints
                .iter()
                .map(|e| Endpoint {
                    addresses: e.addresses.iter().map(Addr::text).collect(),
                    conditions: EndpointConditions {
                        ready: e.ready,
                        serving: e.serving,
                        terminating: e.terminating,
                    },
                    node_name: e.node.as_ref().map(|w| w.of(&NODES)),
                    zone: e.zone.as_ref().map(|w| w.of(&ZONES)),
                    hints: EndpointHints {
                        for_zones: e.for_zones.iter().map(|w| w.of(&ZONES)).collect(),
                        for_nodes: e.for_nodes.iter().map(|w| w.of(&NODES)).collect(),
                    },
                })
                .collect(),
            ports: self
                .ports
                .iter()
                .map(|(name, proto, port)| EndpointPort {
                    name: name.as_ref().map(|w| w.of(&PORT_NAMES)),
                    protocol: proto.as_ref().map(|w| w.of(&PROTOCOLS)),
                    port: *port,
                })
                .collect(),
        }
    }
}

impl NodeInput {
    pub(crate) fn node(&self) -> Node {
        Node {
            name: "node-a".into(),
            labels: self
                .zone
                .iter()
                .map(|z| ("topology.kubernetes.io/zone".to_string(), z.of(&ZONES)))
                .collect(),
            addresses: self
                .addresses
                .iter()
                .map(|(t, a)| NodeAddress {
                    address_type: t.of(&["InternalIP", "ExternalIP", "Hostname"]),
                    address: a.text(),
                })
                .collect(),
        }
    }
}

/// The key a Service or slice name from the pool would have (for deletions).
pub(crate) fn service_key(name: &Word) -> ObjectRef {
    ObjectRef {
        namespace: "default".into(),
        name: name.of(&NAMES),
    }
}

/// The key of the slice `Slice { service, suffix, .. }` would have.
pub(crate) fn slice_key(service: &Word, suffix: u8) -> ObjectRef {
    ObjectRef {
        namespace: "default".into(),
        name: format!("{}-{}", service.of(&NAMES), suffix % 4),
    }
}

impl Cluster {
    /// Reads a cluster from the fuzzer's bytes.
    pub fn from_bytes(data: &[u8]) -> arbitrary::Result<Self> {
        Self::arbitrary_take_rest(Unstructured::new(data))
    }

    /// The cluster as the planner's input.
    pub fn state(&self) -> ClusterState {
        let mut state = ClusterState::default();
        for svc in self.services.iter().map(Svc::service) {
            state.services.insert(key(&svc.meta), svc);
        }
        for slice in self.slices.iter().map(Slice::slice) {
            state.endpoint_slices.insert(key(&slice.meta), slice);
        }
        state.node = self.node.as_ref().map(NodeInput::node);
        state
    }
}
