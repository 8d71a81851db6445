//! What the plan says about load-balancer health checks and Local-policy gaps, read by the
//! agent's healthCheckNodePort servers and metrics. Decided here, once, from the plan, so the
//! agent only serves and counts.

use super::types::{ProxyPlan, ServicePortPlan, Target};
use crate::model::ObjectRef;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// One Service's `healthCheckNodePort` and what its server must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HealthCheck {
    /// The port to serve on (`spec.healthCheckNodePort`).
    pub port: u16,
    /// This node's ready endpoints of the Service, counted by address over all its ports
    /// (kube-proxy's `LocalReadyEndpoints`): 0 answers 503, so the load balancer skips the node.
    /// Serving-but-terminating endpoints are not counted, even when the Local path falls back
    /// to them: a draining node must fail its health check.
    pub local_endpoints: usize,
}

/// Service ports with a `Local` policy whose traffic is dropped because this node has none of
/// the endpoints that exist elsewhere (kube-proxy's `sync_proxy_rules_no_local_endpoints_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct NoLocalEndpoints {
    /// `internalTrafficPolicy: Local`: the cluster IP drops.
    pub internal: usize,
    /// `externalTrafficPolicy: Local`: external traffic from outside the node drops.
    pub external: usize,
}

impl ProxyPlan {
    /// The health checks of this family's plan, by Service.
    pub fn health_checks(&self) -> BTreeMap<ObjectRef, HealthCheck> {
        let mut ips: BTreeMap<&ObjectRef, (u16, BTreeSet<IpAddr>)> = BTreeMap::new();
        for (name, sp) in &self.services {
            let Some(port) = sp.health_check_node_port else {
                continue;
            };
            let entry = ips
                .entry(&name.service)
                .or_insert_with(|| (port, BTreeSet::new()));
            entry.1.extend(local_ready(sp));
        }
        ips.into_iter()
            .map(|(svc, (port, ips))| {
                let check = HealthCheck {
                    port,
                    local_endpoints: ips.len(),
                };
                (svc.clone(), check)
            })
            .collect()
    }

    /// How many service ports drop Local-policy traffic for want of a local endpoint.
    pub fn no_local_endpoints(&self) -> NoLocalEndpoints {
        let mut out = NoLocalEndpoints::default();
        for sp in self.services.values() {
            if sp.internal.fallback() == Target::Drop {
                out.internal += 1;
            }
            if sp.external.as_ref().map(|p| p.fallback()) == Some(Target::Drop) {
                out.external += 1;
            }
        }
        out
    }
}

/// The health checks of a node serving `plans` (one per family): one server per Service,
/// counting the larger family's local endpoints, so a dual-stack pod counts once, as in each
/// of kube-proxy's per-family views.
pub fn health_checks(plans: &[&ProxyPlan]) -> BTreeMap<ObjectRef, HealthCheck> {
    let mut out: BTreeMap<ObjectRef, HealthCheck> = BTreeMap::new();
    for plan in plans {
        for (svc, check) in plan.health_checks() {
            out.entry(svc)
                .and_modify(|c| c.local_endpoints = c.local_endpoints.max(check.local_endpoints))
                .or_insert(check);
        }
    }
    out
}

/// The ready endpoints on this node a service port's Local set holds.
fn local_ready(sp: &ServicePortPlan) -> impl Iterator<Item = IpAddr> + '_ {
    sp.endpoints
        .local
        .iter()
        .flatten()
        .filter(|e| e.is_local && e.ready)
        .map(|e| e.ip)
}
