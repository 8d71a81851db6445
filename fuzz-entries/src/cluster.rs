//! Arbitrary clusters: the fuzzer's bytes become Services, EndpointSlices and a Node whose
//! fields are mostly drawn from small pools of valid values (so objects collide, share
//! addresses and reach deep into `plan()`), and sometimes arbitrary strings (so validation is
//! exercised too).

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
enum Word {
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
struct Svc {
    name: Word,
    type_: Option<Word>,
    cluster_ips: Vec<Addr>,
    families: Vec<Word>,
    ports: Vec<Port>,
    external_ips: Vec<Addr>,
    lb: Vec<(Option<Addr>, Option<Word>)>,
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
    addresses: Vec<Addr>,
    ready: Option<bool>,
    serving: Option<bool>,
    terminating: Option<bool>,
    node: Option<Word>,
    zone: Option<Word>,
    for_zones: Vec<Word>,
    for_nodes: Vec<Word>,
}

#[derive(Debug, Arbitrary)]
struct Slice {
    service: Word,
    suffix: u8,
    address_type: Word,
    endpoints: Vec<Ep>,
    ports: Vec<(Option<Word>, Option<Word>, Option<i32>)>,
}

/// This node's addresses (type, address) and zone label.
type NodeInput = (Vec<(Word, Addr)>, Option<Word>);

/// A whole cluster as the fuzzer describes it.
#[derive(Debug, Arbitrary)]
pub struct Cluster {
    services: Vec<Svc>,
    slices: Vec<Slice>,
    node: Option<NodeInput>,
    /// Flags of the proxy config: masquerade-all, NodePorts on every local address.
    pub masquerade_all: bool,
    pub nodeports_on_all: bool,
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

impl Cluster {
    /// Reads a cluster from the fuzzer's bytes.
    pub fn from_bytes(data: &[u8]) -> arbitrary::Result<Self> {
        Self::arbitrary_take_rest(Unstructured::new(data))
    }

    /// The cluster as the planner's input.
    pub fn state(&self) -> ClusterState {
        let mut state = ClusterState::default();
        for s in &self.services {
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
            let svc = Service {
                meta: meta(s.name.of(&NAMES), s.created, BTreeMap::new()),
                service_type: s.type_.as_ref().map(|w| w.of(&TYPES)),
                cluster_ips: s.cluster_ips.iter().map(Addr::text).collect(),
                ip_families: s.families.iter().map(|w| w.of(&FAMILIES)).collect(),
                ports: s.ports.iter().map(port).collect(),
                external_ips: s.external_ips.iter().map(Addr::text).collect(),
                load_balancer_ingress: s
                    .lb
                    .iter()
                    .map(|(ip, mode)| LoadBalancerIngress {
                        ip: ip.as_ref().map(Addr::text),
                        ip_mode: mode.as_ref().map(|w| w.of(&["VIP", "Proxy"])),
                    })
                    .collect(),
                load_balancer_source_ranges: s.ranges.iter().map(|w| w.of(&RANGES)).collect(),
                session_affinity: s.affinity.as_ref().map(|w| w.of(&["None", "ClientIP"])),
                session_affinity_timeout_seconds: s.timeout,
                external_traffic_policy: s.etp.as_ref().map(|w| w.of(&POLICIES)),
                internal_traffic_policy: s.itp.as_ref().map(|w| w.of(&POLICIES)),
                health_check_node_port: s.hc_node_port,
                traffic_distribution: s
                    .distribution
                    .as_ref()
                    .map(|w| w.of(&["PreferClose", "PreferSameZone", "PreferSameNode"])),
            };
            let key = ObjectRef {
                namespace: svc.meta.namespace.clone(),
                name: svc.meta.name.clone(),
            };
            state.services.insert(key, svc);
        }
        for sl in &self.slices {
            let service = sl.service.of(&NAMES);
            let labels =
                BTreeMap::from([("kubernetes.io/service-name".to_string(), service.clone())]);
            let slice = EndpointSlice {
                meta: meta(format!("{service}-{}", sl.suffix % 4), None, labels),
                address_type: sl.address_type.of(&FAMILIES),
                endpoints: sl
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
                ports: sl
                    .ports
                    .iter()
                    .map(|(name, proto, port)| EndpointPort {
                        name: name.as_ref().map(|w| w.of(&PORT_NAMES)),
                        protocol: proto.as_ref().map(|w| w.of(&PROTOCOLS)),
                        port: *port,
                    })
                    .collect(),
            };
            let key = ObjectRef {
                namespace: slice.meta.namespace.clone(),
                name: slice.meta.name.clone(),
            };
            state.endpoint_slices.insert(key, slice);
        }
        state.node = self.node.as_ref().map(|(addresses, zone)| Node {
            name: "node-a".into(),
            labels: zone
                .iter()
                .map(|z| ("topology.kubernetes.io/zone".to_string(), z.of(&ZONES)))
                .collect(),
            addresses: addresses
                .iter()
                .map(|(t, a)| NodeAddress {
                    address_type: t.of(&["InternalIP", "ExternalIP", "Hostname"]),
                    address: a.text(),
                })
                .collect(),
        });
        state
    }
}
