//! Table-driven tests of `plan()`: fixtures here, the tables in the sibling files.

mod claims;
mod health;
mod incremental;
mod semantics;
mod validation;

use crate::config::ProxyConfig;
use crate::flow::{Expect, PacketFlow};
use crate::model::{
    ClusterState, Endpoint, EndpointConditions, EndpointPort, EndpointSlice, LoadBalancerIngress,
    Node, NodeAddress, ObjectMeta, Service, ServicePort, LABEL_SERVICE_NAME, LABEL_TOPOLOGY_ZONE,
};
use crate::plan::{plan, IpFamily, Protocol, ProxyPlan};
use std::net::{IpAddr, SocketAddr};

pub(super) const NODE: &str = "node-a";
pub(super) const NODE_IP: &str = "192.168.0.10";
pub(super) const NODE_IP6: &str = "fd00::10";
pub(super) const POD: &str = "10.244.1.99"; // a pod (client) in the cluster CIDR
pub(super) const OUTSIDE: &str = "203.0.113.9";
pub(super) const CLUSTER_CIDR: &str = "10.244.0.0/16";

pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

pub(super) fn sa(s: &str) -> SocketAddr {
    s.parse().expect("test socket address")
}

/// The default config: IPv4, node-a, cluster CIDR 10.244.0.0/16.
pub(super) fn config() -> ProxyConfig {
    ProxyConfig::new(IpFamily::V4, NODE).with_cluster_cidrs([CLUSTER_CIDR.parse().expect("cidr")])
}

pub(super) fn node() -> Node {
    Node {
        name: NODE.into(),
        labels: [(LABEL_TOPOLOGY_ZONE.to_string(), "zone-a".to_string())].into(),
        addresses: vec![
            NodeAddress {
                address_type: "InternalIP".into(),
                address: NODE_IP.into(),
            },
            NodeAddress {
                address_type: "InternalIP".into(),
                address: NODE_IP6.into(),
            },
        ],
    }
}

/// A ClusterIP Service `default/<name>` with one unnamed TCP port 80.
pub(super) fn svc(name: &str, cluster_ip: &str) -> Svc {
    Svc(Service {
        meta: ObjectMeta::new("default", name),
        cluster_ips: vec![cluster_ip.into()],
        ports: vec![ServicePort {
            port: 80,
            ..ServicePort::default()
        }],
        ..Service::default()
    })
}

/// Service builder.
pub(super) struct Svc(pub Service);

impl Svc {
    pub fn ports(mut self, ports: &[(&str, &str, i32, Option<i32>)]) -> Self {
        self.0.ports = ports
            .iter()
            .map(|(name, proto, port, node_port)| ServicePort {
                name: name.to_string(),
                protocol: Some(proto.to_string()),
                port: *port,
                node_port: *node_port,
            })
            .collect();
        self
    }
    pub fn node_port(mut self, n: i32) -> Self {
        self.0.service_type = Some("NodePort".into());
        self.0.ports[0].node_port = Some(n);
        self
    }
    pub fn type_(mut self, t: &str) -> Self {
        self.0.service_type = Some(t.into());
        self
    }
    pub fn cluster_ips(mut self, ips: &[&str], families: &[&str]) -> Self {
        self.0.cluster_ips = ips.iter().map(|s| s.to_string()).collect();
        self.0.ip_families = families.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn etp_local(mut self) -> Self {
        self.0.external_traffic_policy = Some("Local".into());
        self
    }
    pub fn itp_local(mut self) -> Self {
        self.0.internal_traffic_policy = Some("Local".into());
        self
    }
    pub fn external_ip(mut self, ip: &str) -> Self {
        self.0.external_ips.push(ip.into());
        self
    }
    pub fn lb(mut self, ip: &str, mode: Option<&str>) -> Self {
        self.0.service_type = Some("LoadBalancer".into());
        self.0.load_balancer_ingress.push(LoadBalancerIngress {
            ip: Some(ip.into()),
            ip_mode: mode.map(str::to_string),
        });
        self
    }
    pub fn ranges(mut self, ranges: &[&str]) -> Self {
        self.0.load_balancer_source_ranges = ranges.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn affinity(mut self, timeout: Option<i32>) -> Self {
        self.0.session_affinity = Some("ClientIP".into());
        self.0.session_affinity_timeout_seconds = timeout;
        self
    }
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.0.meta.labels.insert(k.into(), v.into());
        self
    }
    pub fn created(mut self, t: i64) -> Self {
        self.0.meta.creation_timestamp = Some(t);
        self
    }
    pub fn with(mut self, f: impl FnOnce(&mut Service)) -> Self {
        f(&mut self.0);
        self
    }
}

/// An EndpointSlice for `default/<service>` with one unnamed TCP port.
pub(super) fn slice(name: &str, service: &str, port: i32) -> Slice {
    let mut meta = ObjectMeta::new("default", name);
    meta.labels
        .insert(LABEL_SERVICE_NAME.into(), service.into());
    Slice(EndpointSlice {
        meta,
        address_type: "IPv4".into(),
        endpoints: Vec::new(),
        ports: vec![EndpointPort {
            name: Some(String::new()),
            protocol: Some("TCP".into()),
            port: Some(port),
        }],
    })
}

/// Endpoint conditions, named.
#[derive(Clone, Copy)]
pub(super) enum Cond {
    Ready,
    NotReady,
    ServingTerminating,
    NotServingTerminating,
}

pub(super) struct Slice(pub EndpointSlice);

impl Slice {
    pub fn ports(mut self, ports: &[(&str, &str, Option<i32>)]) -> Self {
        self.0.ports = ports
            .iter()
            .map(|(name, proto, port)| EndpointPort {
                name: Some(name.to_string()),
                protocol: Some(proto.to_string()),
                port: *port,
            })
            .collect();
        self
    }
    pub fn family(mut self, address_type: &str) -> Self {
        self.0.address_type = address_type.into();
        self
    }
    pub fn ep(self, address: &str, node: &str, cond: Cond) -> Self {
        self.ep_hinted(address, node, cond, &[], &[])
    }
    pub fn ep_hinted(
        mut self,
        address: &str,
        node: &str,
        cond: Cond,
        zones: &[&str],
        nodes: &[&str],
    ) -> Self {
        let (ready, serving, terminating) = match cond {
            Cond::Ready => (true, true, false),
            Cond::NotReady => (false, false, false),
            Cond::ServingTerminating => (false, true, true),
            Cond::NotServingTerminating => (false, false, true),
        };
        self.0.endpoints.push(Endpoint {
            addresses: vec![address.into()],
            conditions: EndpointConditions {
                ready: Some(ready),
                serving: Some(serving),
                terminating: Some(terminating),
            },
            node_name: Some(node.into()),
            zone: None,
            hints: crate::model::EndpointHints {
                for_zones: zones.iter().map(|s| s.to_string()).collect(),
                for_nodes: nodes.iter().map(|s| s.to_string()).collect(),
            },
        });
        self
    }
}

/// One row of a table: objects, config, and the flows that must hold.
pub(super) struct Case {
    pub name: &'static str,
    pub state: ClusterState,
    pub config: ProxyConfig,
    pub flows: Vec<PacketFlow>,
    /// Extra assertions on the plan, for what flows cannot show.
    pub check: Option<fn(&ProxyPlan)>,
}

impl Case {
    pub fn new(name: &'static str) -> Self {
        let state = ClusterState {
            node: Some(node()),
            ..ClusterState::default()
        };
        Self {
            name,
            state,
            config: config(),
            flows: Vec::new(),
            check: None,
        }
    }
    pub fn svc(mut self, s: Svc) -> Self {
        self.state.upsert_service(s.0);
        self
    }
    pub fn slice(mut self, s: Slice) -> Self {
        self.state.upsert_endpoint_slice(s.0);
        self
    }
    pub fn config(mut self, f: impl FnOnce(ProxyConfig) -> ProxyConfig) -> Self {
        self.config = f(self.config);
        self
    }
    /// A flow: `to` is `ip:port/proto`.
    pub fn flow(mut self, from: &str, to: &str, expect: Expect, masq: bool) -> Self {
        let (addr, proto) = to.split_once('/').expect("ip:port/proto");
        let dst = sa(addr);
        self.flows.push(PacketFlow {
            name: format!("{} {from} -> {to}", self.name),
            src: ip(from),
            proto: proto.parse::<Protocol>().expect("protocol"),
            dst: dst.ip(),
            dport: dst.port(),
            expect,
            masq,
        });
        self
    }
    pub fn check(mut self, f: fn(&ProxyPlan)) -> Self {
        self.check = Some(f);
        self
    }
    pub fn run(&self) -> Result<(), String> {
        let plan = plan(&self.state, &self.config);
        for flow in &self.flows {
            flow.check(&plan)?;
        }
        if let Some(check) = self.check {
            check(&plan);
        }
        Ok(())
    }
}

/// `Expect::Dnat` from `ip:port` strings.
pub(super) fn dnat(eps: &[&str]) -> Expect {
    Expect::Dnat(eps.iter().map(|s| sa(s)).collect())
}
