//! `plan()`: ClusterState + ProxyConfig → ProxyPlan. Pure; every semantic decision lives here.

mod claims;
mod display;
mod endpoints;
mod health;
mod incremental;
mod local;
mod paths;
mod service;
mod types;

#[cfg(test)]
mod tests;

pub use health::{health_checks, HealthCheck, NoLocalEndpoints};
pub use incremental::{PlanUpdate, Planner};
pub use local::LocalDetector;
pub use service::DEFAULT_AFFINITY_TIMEOUT_SECONDS;
pub use types::*;

use crate::config::{NodePortAddresses, ProxyConfig};
use crate::model::{ClusterState, Node, ObjectRef, Service};
use crate::semantics::{categorize_endpoints, TrafficPolicies};
use crate::warning::{ObjectKind, Skipped, Warning};
use claims::Claims;
use ipnet::IpNet;
use service::ValidService;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Computes the plan for `config.family`.
///
/// Never fails: a malformed object (or port, or address) is left out and described in
/// `ProxyPlan::warnings`, and everything else is planned. Services are visited oldest first, so
/// when two claim the same NodePort or virtual address, the one that was there first keeps it.
///
/// This is the reference: [`Planner`] keeps the same result up to date change by change, from
/// the same steps (`NodeInputs`, `claim_allocated`, `claim_written`, `plan_port`).
pub fn plan(state: &ClusterState, config: &ProxyConfig) -> ProxyPlan {
    let mut warnings = Vec::new();
    let node = NodeInputs::new(state.node.as_ref(), config);
    warnings.extend(node.warnings.iter().cloned());
    let slices = endpoints::slices_by_service(state, config.family, &mut warnings);
    let mut ordered: Vec<_> = state.services.values().collect();
    ordered.sort_by_key(|s| precedence(s));

    // Phase 1: every service port's API-allocated keys (cluster IP, NodePorts), oldest first.
    let mut claims = Claims::new(node.local_addresses.clone());
    let mut survivors = Vec::new();
    for svc in ordered {
        if service::not_ours(svc).is_some() {
            continue;
        }
        let Some(valid) = service::validate_service(svc, config, &node.node_ips, &mut warnings)
        else {
            continue;
        };
        let svc_ref = svc.meta.object_ref();
        let ports = claim_allocated(&mut claims, &svc_ref, &valid, &node, &mut warnings);
        survivors.push((svc_ref, valid, ports));
    }

    // Phase 2: user-written addresses, which lose to every allocated key; then the paths.
    let mut services = BTreeMap::new();
    for (svc_ref, valid, ports) in &mut survivors {
        claim_written(&mut claims, valid, ports, &mut warnings);
        let svc_slices = slices.get(svc_ref).map(Vec::as_slice).unwrap_or_default();
        for claimed in ports.iter() {
            let planned = plan_port(&node, config, valid, claimed, svc_slices);
            services.insert(claimed.name.clone(), planned);
        }
    }

    let service_cidrs = service_cidrs(state, config, &mut warnings);
    node.into_plan(config, service_cidrs, services, warnings)
}

/// The order in which Services claim keys: oldest first, then namespace/name.
pub(crate) fn precedence(svc: &Service) -> (i64, ObjectRef) {
    (
        svc.meta.creation_timestamp.unwrap_or(i64::MAX),
        svc.meta.object_ref(),
    )
}

/// Everything node-wide a service port's plan reads: when any of it changes, every service
/// port must be planned again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeInputs {
    pub node_ips: Vec<IpAddr>,
    pub zone: Option<String>,
    pub node_port_addresses: NodePortListen,
    /// The node's addresses plus the host's (`--nodeport-addresses` CIDRs): what a
    /// [`ServiceKey::AnyLocal`] key covers.
    pub local_addresses: Vec<IpAddr>,
    pub cluster_masquerade: ClusterMasquerade,
    /// The Node's own warnings (bad addresses, no address of the family).
    pub warnings: Vec<Warning>,
}

impl NodeInputs {
    pub(crate) fn new(node: Option<&Node>, config: &ProxyConfig) -> Self {
        let mut warnings = Vec::new();
        let node_ips = node_ips(node, config, &mut warnings);
        let node_port_addresses = node_port_listen(config, &node_ips, &mut warnings);
        let cluster_masquerade = if config.masquerade_all {
            ClusterMasquerade::All
        } else if config.pod_sources.is_none() {
            ClusterMasquerade::HairpinOnly
        } else {
            ClusterMasquerade::FromOutside(config.pod_sources.clone())
        };
        let mut local_addresses = node_ips.clone();
        local_addresses.extend(config.local_addresses.iter().copied());
        Self {
            zone: node.and_then(Node::zone).map(str::to_string),
            node_ips,
            node_port_addresses,
            local_addresses,
            cluster_masquerade,
            warnings,
        }
    }

    /// The plan of these inputs and these service ports.
    pub(crate) fn into_plan(
        self,
        config: &ProxyConfig,
        service_cidrs: Vec<IpNet>,
        services: BTreeMap<ServicePortName, ServicePortPlan>,
        warnings: Vec<Warning>,
    ) -> ProxyPlan {
        ProxyPlan {
            family: config.family,
            node_name: config.node_name.clone(),
            node_ips: self.node_ips,
            node_port_addresses: self.node_port_addresses,
            cluster_masquerade: self.cluster_masquerade,
            pod_sources: config.pod_sources.clone(),
            service_cidrs,
            services,
            warnings,
        }
    }
}

/// A service port that won its API-allocated keys (phase 1), with the user-written addresses
/// it kept (phase 2).
#[derive(Debug, Clone)]
pub(crate) struct ClaimedPort {
    pub name: ServicePortName,
    pub port: service::ValidPort,
    pub cluster_key: ServiceKey,
    pub node_port_keys: Vec<ServiceKey>,
    pub external_ips: Vec<IpAddr>,
    pub load_balancer_ips: Vec<IpAddr>,
}

/// Phase 1 for one Service: the ports whose cluster IP and NodePort keys are free.
pub(crate) fn claim_allocated(
    claims: &mut Claims,
    svc_ref: &ObjectRef,
    valid: &ValidService,
    node: &NodeInputs,
    warnings: &mut Vec<Warning>,
) -> Vec<ClaimedPort> {
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
            .map(|np| node_port_keys(&node.node_port_addresses, port.protocol, np))
            .unwrap_or_default();
        let node_port = port.node_port.map(|np| (np, node_port_keys.as_slice()));
        if claims.allocated(
            &name,
            port.index,
            valid.cluster_ip,
            cluster_key,
            node_port,
            warnings,
        ) {
            ports.push(ClaimedPort {
                name,
                port: port.clone(),
                cluster_key,
                node_port_keys,
                external_ips: Vec::new(),
                load_balancer_ips: Vec::new(),
            });
        }
    }
    ports
}

/// Phase 2 for one Service: the external and load-balancer IPs each surviving port may keep.
pub(crate) fn claim_written(
    claims: &mut Claims,
    valid: &ValidService,
    ports: &mut [ClaimedPort],
    warnings: &mut Vec<Warning>,
) {
    for claimed in ports {
        claimed.external_ips = claims.written(
            &claimed.name,
            VipKind::ExternalIp,
            "spec.externalIPs",
            &valid.external_ips,
            claimed.port.port,
            warnings,
        );
        claimed.load_balancer_ips = claims.written(
            &claimed.name,
            VipKind::LoadBalancerIp,
            "status.loadBalancer.ingress",
            &valid.load_balancer_ips,
            claimed.port.port,
            warnings,
        );
    }
}

/// Everything decided for one claimed service port, from its Service, its slices and the
/// node-wide inputs.
pub(crate) fn plan_port(
    node: &NodeInputs,
    config: &ProxyConfig,
    valid: &ValidService,
    claimed: &ClaimedPort,
    svc_slices: &[endpoints::ValidSlice],
) -> ServicePortPlan {
    let port = &claimed.port;
    let externally_accessible = port.node_port.is_some()
        || !claimed.external_ips.is_empty()
        || !claimed.load_balancer_ips.is_empty();
    let policies = TrafficPolicies {
        internal_local: valid.internal_local,
        external_local: valid.external_local && externally_accessible,
        externally_accessible,
    };
    let candidates =
        endpoints::candidates_for(svc_slices, &port.name, port.protocol, &config.node_name);
    let (endpoints, topology) = categorize_endpoints(
        &candidates,
        policies,
        &config.node_name,
        node.zone.as_deref(),
    );
    let internal = PathPlan {
        keys: vec![PlannedKey {
            kind: VipKind::ClusterIp,
            key: claimed.cluster_key,
        }],
        rules: paths::internal_rules(
            &node.cluster_masquerade,
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
        let mut keys: Vec<PlannedKey> = claimed
            .external_ips
            .iter()
            .map(|ip| key(VipKind::ExternalIp, *ip))
            .chain(
                claimed
                    .load_balancer_ips
                    .iter()
                    .map(|ip| key(VipKind::LoadBalancerIp, *ip)),
            )
            .collect();
        keys.extend(claimed.node_port_keys.iter().map(|k| PlannedKey {
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
        .filter(|_| !claimed.load_balancer_ips.is_empty());
    ServicePortPlan {
        protocol: port.protocol,
        port: port.port,
        cluster_ip: valid.cluster_ip,
        external_ips: claimed.external_ips.clone(),
        load_balancer_ips: claimed.load_balancer_ips.clone(),
        node_port: port.node_port,
        // Served only where it means something: external traffic kept on this node
        // (kube-proxy's NeedsHealthCheck; the API allocates one only for LoadBalancer
        // Services with externalTrafficPolicy: Local).
        health_check_node_port: valid
            .health_check_node_port
            .filter(|_| policies.external_local),
        source_ranges,
        affinity_timeout_seconds: valid.affinity_timeout_seconds,
        endpoints,
        internal,
        external,
        topology,
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
pub(crate) fn service_cidrs(
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
