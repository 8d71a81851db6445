//! `k8s-openapi` objects → `switchyard_core::model`. Field-for-field copies; no validation here
//! (that is `core::plan`'s job, so a bad value costs only its object).

use k8s_openapi::api::core::v1 as core_v1;
use k8s_openapi::api::discovery::v1 as discovery_v1;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta as K8sMeta;
use switchyard_core::model::{
    Endpoint, EndpointConditions, EndpointHints, EndpointPort, EndpointSlice, LoadBalancerIngress,
    Node, NodeAddress, ObjectMeta, Service, ServiceCidr, ServicePort, LABEL_HEADLESS,
    LABEL_SERVICE_NAME, LABEL_SERVICE_PROXY_NAME,
};

/// Label the EndpointSlice mirroring controller puts on the slices it creates.
const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const MIRRORING_CONTROLLER: &str = "endpointslicemirroring-controller.k8s.io";

pub fn meta(m: &K8sMeta, default_namespace: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: m
            .namespace
            .clone()
            .unwrap_or_else(|| default_namespace.to_string()),
        name: m.name.clone().unwrap_or_default(),
        labels: read_labels(m),
        creation_timestamp: m.creation_timestamp.as_ref().map(|t| t.0.as_second()),
    }
}

/// The labels `core` reads (a slice's Service, the two opt-outs of a Service). The rest are
/// left behind: real objects carry many (Helm, app, team labels), and at 10k+ objects each
/// kept map costs megabytes of agent memory for nothing.
fn read_labels(m: &K8sMeta) -> std::collections::BTreeMap<String, String> {
    let read = [LABEL_SERVICE_NAME, LABEL_SERVICE_PROXY_NAME, LABEL_HEADLESS];
    m.labels
        .iter()
        .flatten()
        .filter(|(k, _)| read.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

pub fn service(s: &core_v1::Service, default_namespace: &str) -> Service {
    let spec = s.spec.clone().unwrap_or_default();
    // `clusterIPs` supersedes `clusterIP`; objects written by hand often carry only the latter.
    let cluster_ips = match (spec.cluster_ips, spec.cluster_ip) {
        (Some(ips), _) if !ips.is_empty() => ips,
        (_, Some(ip)) if !ip.is_empty() => vec![ip],
        _ => Vec::new(),
    };
    let ingress = s
        .status
        .as_ref()
        .and_then(|st| st.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone())
        .unwrap_or_default();
    Service {
        meta: meta(&s.metadata, default_namespace),
        service_type: spec.type_,
        cluster_ips,
        ip_families: spec.ip_families.unwrap_or_default(),
        ports: spec
            .ports
            .unwrap_or_default()
            .into_iter()
            .map(|p| ServicePort {
                name: p.name.unwrap_or_default(),
                protocol: p.protocol,
                port: p.port,
                node_port: p.node_port,
            })
            .collect(),
        external_ips: spec.external_ips.unwrap_or_default(),
        load_balancer_ingress: ingress
            .into_iter()
            .map(|i| LoadBalancerIngress {
                ip: i.ip,
                ip_mode: i.ip_mode,
            })
            .collect(),
        load_balancer_source_ranges: spec.load_balancer_source_ranges.unwrap_or_default(),
        session_affinity: spec.session_affinity,
        session_affinity_timeout_seconds: spec
            .session_affinity_config
            .and_then(|c| c.client_ip)
            .and_then(|c| c.timeout_seconds),
        external_traffic_policy: spec.external_traffic_policy,
        internal_traffic_policy: spec.internal_traffic_policy,
        health_check_node_port: spec.health_check_node_port,
        traffic_distribution: spec.traffic_distribution,
    }
}

pub fn endpoint_slice(s: &discovery_v1::EndpointSlice, default_namespace: &str) -> EndpointSlice {
    EndpointSlice {
        meta: meta(&s.metadata, default_namespace),
        address_type: s.address_type.clone(),
        endpoints: s
            .endpoints
            .iter()
            .map(|e| {
                let c = e.conditions.clone().unwrap_or_default();
                let hints = e.hints.clone().unwrap_or_default();
                Endpoint {
                    addresses: e.addresses.clone(),
                    conditions: EndpointConditions {
                        ready: c.ready,
                        serving: c.serving,
                        terminating: c.terminating,
                    },
                    node_name: e.node_name.clone(),
                    zone: e.zone.clone(),
                    hints: EndpointHints {
                        for_zones: hints
                            .for_zones
                            .unwrap_or_default()
                            .into_iter()
                            .map(|z| z.name)
                            .collect(),
                        for_nodes: hints
                            .for_nodes
                            .unwrap_or_default()
                            .into_iter()
                            .map(|n| n.name)
                            .collect(),
                    },
                }
            })
            .collect(),
        ports: s
            .ports
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|p| EndpointPort {
                name: p.name,
                protocol: p.protocol,
                port: p.port,
            })
            .collect(),
    }
}

/// Converts a v1 Endpoints object the way the EndpointSlice mirroring controller does: one slice
/// per subset and address family, `addresses` ready, `notReadyAddresses` not ready, only the
/// `ready` condition set. Addresses that parse as neither family go into the IPv4 slice, where
/// the planner reports them.
pub fn mirror_endpoints(e: &core_v1::Endpoints, default_namespace: &str) -> Vec<EndpointSlice> {
    let base = meta(&e.metadata, default_namespace);
    let mut slices = Vec::new();
    for (i, subset) in e.subsets.iter().flatten().enumerate() {
        let ports: Vec<EndpointPort> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| EndpointPort {
                name: p.name.clone(),
                protocol: p.protocol.clone(),
                port: Some(p.port),
            })
            .collect();
        let ready = subset.addresses.iter().flatten().map(|a| (a, true));
        let not_ready = subset
            .not_ready_addresses
            .iter()
            .flatten()
            .map(|a| (a, false));
        let all: Vec<_> = ready.chain(not_ready).collect();
        for family in ["IPv4", "IPv6"] {
            let endpoints: Vec<Endpoint> = all
                .iter()
                .filter(|(a, _)| (a.ip.contains(':')) == (family == "IPv6"))
                .map(|(a, ready)| Endpoint {
                    addresses: vec![a.ip.clone()],
                    conditions: EndpointConditions {
                        ready: Some(*ready),
                        serving: None,
                        terminating: None,
                    },
                    node_name: a.node_name.clone(),
                    zone: None,
                    hints: EndpointHints::default(),
                })
                .collect();
            if endpoints.is_empty() {
                continue;
            }
            let mut m = base.clone();
            m.name = format!("{}-mirror-{i}-{}", base.name, family.to_ascii_lowercase());
            m.labels
                .insert(LABEL_SERVICE_NAME.into(), base.name.clone());
            m.labels
                .insert(LABEL_MANAGED_BY.into(), MIRRORING_CONTROLLER.into());
            slices.push(EndpointSlice {
                meta: m,
                address_type: family.into(),
                endpoints,
                ports: ports.clone(),
            });
        }
    }
    slices
}

pub fn node(n: &core_v1::Node) -> Node {
    Node {
        name: n.metadata.name.clone().unwrap_or_default(),
        labels: n.metadata.labels.clone().unwrap_or_default(),
        addresses: n
            .status
            .as_ref()
            .and_then(|s| s.addresses.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|a| NodeAddress {
                address_type: a.type_,
                address: a.address,
            })
            .collect(),
    }
}

/// A ServiceCIDR: its name and `spec.cidrs`, unparsed (the planner validates them).
pub fn service_cidr(c: &k8s_openapi::api::networking::v1::ServiceCIDR) -> ServiceCidr {
    ServiceCidr {
        name: c.metadata.name.clone().unwrap_or_default(),
        cidrs: c
            .spec
            .as_ref()
            .and_then(|s| s.cidrs.clone())
            .unwrap_or_default(),
    }
}
