//! `plan()`: ClusterState + ProxyConfig → ProxyPlan. Pure; every semantic decision lives here.

mod claims;
mod display;
mod endpoints;
mod local;
mod health;
mod paths;
mod service;
mod types;

#[cfg(test)]
mod tests;

pub use local::LocalDetector;
pub use health::{health_checks, HealthCheck, NoLocalEndpoints};
pub use service::DEFAULT_AFFINITY_TIMEOUT_SECONDS;
pub use types::*;

use crate::config::{NodePortAddresses, ProxyConfig};
use crate::model::{ClusterState, Node, ObjectRef};
use crate::semantics::{categorize_endpoints, TrafficPolicies};
use crate::warning::{ObjectKind, Skipped, Warning};
use claims::Claims;
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Computes the plan for `config.family`.
///
/// Never fails: a malformed object (or port, or address) is left out and described in
/// `ProxyPlan::warnings`, and everything else is planned. Services are visited oldest first, so
/// when two claim the same NodePort or virtual address, the one that was there first keeps it.
pub fn plan(state: &ClusterState, config: &ProxyConfig) -> ProxyPlan {
    let mut warnings = Vec::new();
    let family = config.family;
    let node_ips = node_ips(state.node.as_ref(), config, &mut warnings);
    let zone = state.node.as_ref().and_then(Node::zone);
    let node_port_addresses = node_port_listen(config, &node_ips, &mut warnings);
    let cluster_masquerade = if config.masquerade_all {
        ClusterMasquerade::All
    } else if config.pod_sources.is_none() {
        ClusterMasquerade::HairpinOnly
    } else {
        ClusterMasquerade::FromOutside(config.pod_sources.clone())
    };

    let slices = endpoints::slices_by_service(state, family, &mut warnings);
    let mut ordered: Vec<_> = state.services.values().collect();
    ordered.sort_by_key(|s| {
        (
            s.meta.creation_timestamp.unwrap_or(i64::MAX),
            s.meta.object_ref(),
        )
    });

    // Phase 1: every service port's API-allocated keys (cluster IP, NodePorts), oldest first.
    let mut local_addresses = node_ips.clone();
    local_addresses.extend(config.local_addresses.iter().copied());
    let mut claims = Claims::new(local_addresses);
    let mut survivors = Vec::new();
    for svc in ordered {
        if service::not_ours(svc).is_some() {
            continue;
        }
        let Some(valid) = service::validate_service(svc, config, &node_ips, &mut warnings) else {
            continue;
        };
        let svc_ref = svc.meta.object_ref();
        let mut ports = Vec::new();
        for port in &valid.ports {
            let name = ServicePortName {
                service: svc_ref.clone(),
                port: port.name.clone(),
                protocol: port.protocol,
            };
            let cluster_key = ServiceKey::Addr {
                ip: valid.cluster_ip,
                protocol: port.protocol,
                port: port.port,
            };
            let node_port_keys: Vec<ServiceKey> = port
                .node_port
                .map(|np| node_port_keys(&node_port_addresses, port.protocol, np))
                .unwrap_or_default();
            let node_port = port.node_port.map(|np| (np, node_port_keys.as_slice()));
            if claims.allocated(
                &name,
                port.index,
                valid.cluster_ip,
                cluster_key,
                node_port,
                &mut warnings,
            ) {
                ports.push((name, port.clone(), cluster_key, node_port_keys));
            }
        }
        survivors.push((svc_ref, valid, ports));
    }

    // Phase 2: user-written addresses, which lose to every allocated key; then the paths.
    let mut services = BTreeMap::new();
    for (svc_ref, valid, ports) in &survivors {
        let svc_slices = slices.get(svc_ref).map(Vec::as_slice).unwrap_or_default();
        for (name, port, cluster_key, node_port_keys) in ports {
            let external_ips = claims.written(
                name,
                VipKind::ExternalIp,
                "spec.externalIPs",
                &valid.external_ips,
                port.port,
                &mut warnings,
            );
            let load_balancer_ips = claims.written(
                name,
                VipKind::LoadBalancerIp,
                "status.loadBalancer.ingress",
                &valid.load_balancer_ips,
                port.port,
                &mut warnings,
            );
            let externally_accessible = port.node_port.is_some()
                || !external_ips.is_empty()
                || !load_balancer_ips.is_empty();
            let policies = TrafficPolicies {
                internal_local: valid.internal_local,
                external_local: valid.external_local && externally_accessible,
                externally_accessible,
            };
            let candidates =
                endpoints::candidates_for(svc_slices, &port.name, port.protocol, &config.node_name);
            let (endpoints, topology) =
                categorize_endpoints(&candidates, policies, &config.node_name, zone);
            let internal = PathPlan {
                keys: vec![PlannedKey {
                    kind: VipKind::ClusterIp,
                    key: *cluster_key,
                }],
                rules: paths::internal_rules(
                    &cluster_masquerade,
                    target_for(&endpoints, policies.internal_local),
                ),
            };
            let external = externally_accessible.then(|| {
                let key = |kind, ip| PlannedKey {
                    kind,
                    key: ServiceKey::Addr {
                        ip,
                        protocol: port.protocol,
                        port: port.port,
                    },
                };
                let mut keys: Vec<PlannedKey> = external_ips
                    .iter()
                    .map(|ip| key(VipKind::ExternalIp, *ip))
                    .chain(
                        load_balancer_ips
                            .iter()
                            .map(|ip| key(VipKind::LoadBalancerIp, *ip)),
                    )
                    .collect();
                keys.extend(node_port_keys.iter().map(|k| PlannedKey {
                    kind: VipKind::NodePort,
                    key: *k,
                }));
                PathPlan {
                    keys,
                    rules: paths::external_rules(
                        policies.external_local,
                        target_for(&endpoints, policies.external_local),
                        target_for(&endpoints, false),
                        endpoints.has_any,
                    ),
                }
            });
            let source_ranges = valid
                .source_ranges
                .clone()
                .filter(|_| !load_balancer_ips.is_empty());
            services.insert(
                name.clone(),
                ServicePortPlan {
                    protocol: port.protocol,
                    port: port.port,
                    cluster_ip: valid.cluster_ip,
                    external_ips,
                    load_balancer_ips,
                    node_port: port.node_port,
                    // Served only where it means something: external traffic kept on
                    // this node (kube-proxy's NeedsHealthCheck; the API allocates one only
                    // for LoadBalancer Services with externalTrafficPolicy: Local).
                    health_check_node_port: valid
                        .health_check_node_port
                        .filter(|_| policies.external_local),
                    source_ranges,
                    affinity_timeout_seconds: valid.affinity_timeout_seconds,
                    endpoints,
                    internal,
                    external,
                    topology,
                },
            );
        }
    }

    ProxyPlan {
        family,
        node_name: config.node_name.clone(),
        node_ips,
        node_port_addresses,
        cluster_masquerade,
        pod_sources: config.pod_sources.clone(),
        service_cidrs: service_cidrs(state, config, &mut warnings),
        services,
        warnings,
    }
}

/// Where traffic under a policy goes: its endpoint set if non-empty; otherwise reject when no
/// endpoint exists anywhere, or drop when a `Local` policy has endpoints only on other nodes.
fn target_for(endpoints: &EndpointCategories, local: bool) -> Target {
    let (set, target) = if local {
        (&endpoints.local, Target::Local)
    } else {
        (&endpoints.cluster, Target::Cluster)
    };
    match set {
        Some(set) if !set.is_empty() => target,
        _ if local && endpoints.has_any => Target::Drop,
        _ => Target::Reject,
    }
}

/// This node's addresses of the family: `InternalIP`s first, then `ExternalIP`s.
fn node_ips(node: Option<&Node>, config: &ProxyConfig, warnings: &mut Vec<Warning>) -> Vec<IpAddr> {
    let Some(node) = node else { return Vec::new() };
    let mut ips = Vec::new();
    for wanted in ["InternalIP", "ExternalIP"] {
        for (i, addr) in node.addresses.iter().enumerate() {
            if addr.address_type != wanted {
                continue;
            }
            match addr.address.trim().parse::<IpAddr>() {
                Ok(ip) if IpFamily::of(&ip) == config.family && !ips.contains(&ip) => ips.push(ip),
                Ok(_) => {}
                Err(_) => warnings.push(Warning {
                    kind: ObjectKind::Node,
                    object: ObjectRef::new("", node.name.clone()),
                    field: format!("status.addresses[{i}].address"),
                    problem: format!("{:?} is not an IP address", addr.address),
                    skipped: Skipped::Address,
                }),
            }
        }
    }
    ips
}

fn node_port_listen(
    config: &ProxyConfig,
    node_ips: &[IpAddr],
    warnings: &mut Vec<Warning>,
) -> NodePortListen {
    match &config.node_port_addresses {
        NodePortAddresses::All => NodePortListen::AllLocal,
        NodePortAddresses::Primary => match node_ips.first() {
            Some(ip) => NodePortListen::Addresses(vec![*ip]),
            None => {
                warnings.push(Warning {
                    kind: ObjectKind::Node,
                    object: ObjectRef::new("", config.node_name.clone()),
                    field: "status.addresses".into(),
                    problem: format!(
                        "no {} address known for this node; NodePorts listen on all local addresses",
                        config.family
                    ),
                    skipped: Skipped::Nothing,
                });
                NodePortListen::AllLocal
            }
        },
        NodePortAddresses::Cidrs(cidrs) => {
            let cidrs: Vec<_> = cidrs
                .iter()
                .filter(|c| IpFamily::of(&c.addr()) == config.family)
                .collect();
            // No CIDR of this family (or one covering it all): this family listens on every
            // local address, as kube-proxy does.
            if cidrs.is_empty() || cidrs.iter().any(|c| c.prefix_len() == 0) {
                return NodePortListen::AllLocal;
            }
            let mut addrs: Vec<IpAddr> = config
                .local_addresses
                .iter()
                .filter(|ip| cidrs.iter().any(|c| c.contains(*ip)))
                .copied()
                .collect();
            addrs.sort();
            addrs.dedup();
            NodePortListen::Addresses(addrs)
        }
    }
}

/// The keys a NodePort is reached by: one per listening node address, or one for every local
/// address.
fn node_port_keys(listen: &NodePortListen, protocol: Protocol, port: u16) -> Vec<ServiceKey> {
    match listen {
        NodePortListen::AllLocal => vec![ServiceKey::AnyLocal { protocol, port }],
        NodePortListen::Addresses(addrs) => addrs
            .iter()
            .map(|&ip| ServiceKey::Addr { ip, protocol, port })
            .collect(),
    }
}

/// The service CIDRs of the family: `--service-cluster-ip-range` plus every ServiceCIDR
/// object's (an unparsable one is skipped with a warning naming the object and field).
fn service_cidrs(
    state: &ClusterState,
    config: &ProxyConfig,
    warnings: &mut Vec<Warning>,
) -> Vec<IpNet> {
    let mut out = config.service_cidrs.clone();
    for obj in state.service_cidrs.values() {
        for (i, raw) in obj.cidrs.iter().enumerate() {
            match raw.trim().parse::<IpNet>() {
                Ok(net) if IpFamily::of(&net.addr()) == config.family => out.push(net.trunc()),
                Ok(_) => {}
                Err(_) => warnings.push(Warning {
                    kind: ObjectKind::ServiceCidr,
                    object: ObjectRef::new("", obj.name.clone()),
                    field: format!("spec.cidrs[{i}]"),
                    problem: format!("{raw:?} is not a CIDR"),
                    skipped: Skipped::Address,
                }),
            }
        }
    }
    out.sort();
    out.dedup();
    out
}
