//! Which endpoints each kind of traffic may reach: kube-proxy's `CategorizeEndpoints`, once.

use crate::plan::{Endpoint, EndpointCategories, TopologyMode};

/// An endpoint before categorisation: the planned endpoint plus its topology hints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub endpoint: Endpoint,
    pub zone_hints: Vec<String>,
    pub node_hints: Vec<String>,
}

/// The traffic-policy facts of a service port that decide which categories it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrafficPolicies {
    /// `internalTrafficPolicy: Local`.
    pub internal_local: bool,
    /// `externalTrafficPolicy: Local` (only meaningful when externally accessible).
    pub external_local: bool,
    /// Has a NodePort, an external IP or a load-balancer IP.
    pub externally_accessible: bool,
}

impl TrafficPolicies {
    /// Cluster-policy endpoints are used by internal traffic with `Cluster` policy, and by every
    /// externally accessible port: even with `externalTrafficPolicy: Local`, pod and host
    /// traffic to an external address is short-circuited to them.
    pub fn uses_cluster_endpoints(self) -> bool {
        !self.internal_local || self.externally_accessible
    }

    /// Local-policy endpoints are used when either policy that applies is `Local`.
    pub fn uses_local_endpoints(self) -> bool {
        self.internal_local || (self.externally_accessible && self.external_local)
    }
}

/// Splits a service port's endpoints into the cluster and local categories.
///
/// Rules (identical to kube-proxy):
/// - Cluster: ready endpoints allowed by topology; if none, serving-and-terminating endpoints
///   allowed by topology (topology already fell back to "all" when it would select nothing
///   ready, so an empty result means nothing is ready anywhere).
/// - Local: this node's ready endpoints; if none, this node's serving-and-terminating ones.
///   Topology never narrows local endpoints.
/// - `has_any`: some endpoint anywhere is ready, or serving and terminating.
///
/// The result is sorted by address and port so that plans compare and render stably.
pub fn categorize_endpoints(
    candidates: &[Candidate],
    policies: TrafficPolicies,
    node_name: &str,
    zone: Option<&str>,
) -> (EndpointCategories, TopologyMode) {
    let usable = |e: &Endpoint| e.ready || (e.serving && e.terminating);
    let has_any = candidates.iter().any(|c| usable(&c.endpoint));
    let mut topology = TopologyMode::None;

    let cluster = policies.uses_cluster_endpoints().then(|| {
        topology = topology_mode(candidates, node_name, zone);
        let pick = |want: fn(&Endpoint) -> bool| -> Vec<Endpoint> {
            candidates
                .iter()
                .filter(|c| want(&c.endpoint) && allowed_by_topology(c, topology, node_name, zone))
                .map(|c| c.endpoint.clone())
                .collect()
        };
        let ready = pick(|e| e.ready);
        if ready.is_empty() {
            pick(|e| !e.ready && e.serving && e.terminating)
        } else {
            ready
        }
    });

    let local = policies.uses_local_endpoints().then(|| {
        let pick = |want: fn(&Endpoint) -> bool| -> Vec<Endpoint> {
            candidates
                .iter()
                .filter(|c| c.endpoint.is_local && want(&c.endpoint))
                .map(|c| c.endpoint.clone())
                .collect()
        };
        let ready = pick(|e| e.ready);
        if ready.is_empty() {
            pick(|e| !e.ready && e.serving && e.terminating)
        } else {
            ready
        }
    });

    let sorted = |set: Option<Vec<Endpoint>>| {
        set.map(|mut v| {
            v.sort();
            v
        })
    };
    (
        EndpointCategories {
            cluster: sorted(cluster),
            local: sorted(local),
            has_any,
        },
        topology,
    )
}

/// Topology applies only when *every* ready endpoint carries hints of a kind and at least one
/// hint names this node (or zone); otherwise the hints are incomplete (the EndpointSlice
/// controller is mid-update, or the Service does not ask for topology) and all endpoints are used.
/// Node hints win over zone hints, as `PreferSameNode` is the narrower request.
fn topology_mode(candidates: &[Candidate], node_name: &str, zone: Option<&str>) -> TopologyMode {
    let ready: Vec<&Candidate> = candidates.iter().filter(|c| c.endpoint.ready).collect();
    if ready.is_empty() {
        return TopologyMode::None;
    }
    let all_node_hinted = ready.iter().all(|c| !c.node_hints.is_empty());
    if all_node_hinted
        && ready
            .iter()
            .any(|c| c.node_hints.iter().any(|n| n == node_name))
    {
        return TopologyMode::Node;
    }
    let all_zone_hinted = ready.iter().all(|c| !c.zone_hints.is_empty());
    if let Some(zone) = zone {
        if all_zone_hinted && ready.iter().any(|c| c.zone_hints.iter().any(|z| z == zone)) {
            return TopologyMode::Zone;
        }
    }
    TopologyMode::None
}

fn allowed_by_topology(
    c: &Candidate,
    mode: TopologyMode,
    node_name: &str,
    zone: Option<&str>,
) -> bool {
    match mode {
        TopologyMode::None => true,
        TopologyMode::Node => c.node_hints.iter().any(|n| n == node_name),
        TopologyMode::Zone => zone.is_some_and(|z| c.zone_hints.iter().any(|h| h == z)),
    }
}
