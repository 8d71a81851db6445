//! The rules of each path, by source class: the short-circuit and masquerade decisions, made
//! here once for every backend and for `explain`.

use super::{ClusterMasquerade, PathRule, SourceClass, Target};

fn rule(from: SourceClass, target: Target, masquerade: bool) -> PathRule {
    PathRule {
        from,
        target,
        // Masquerading means nothing for traffic that is not translated.
        masquerade: masquerade && sends_to_endpoints(target),
    }
}

fn sends_to_endpoints(t: Target) -> bool {
    matches!(t, Target::Cluster | Target::Local)
}

/// Cluster-IP traffic: everything goes to `target`; with `--cluster-cidr`, pods keep their
/// address and every other source (host, routed clients) is masqueraded, so replies come back
/// through this node; with `--masquerade-all` everything is masqueraded.
pub(super) fn internal_rules(masquerade: &ClusterMasquerade, target: Target) -> Vec<PathRule> {
    match masquerade {
        ClusterMasquerade::All => vec![rule(SourceClass::Any, target, true)],
        ClusterMasquerade::FromOutside(_) if sends_to_endpoints(target) => vec![
            rule(SourceClass::Pod, target, false),
            rule(SourceClass::Any, target, true),
        ],
        ClusterMasquerade::FromOutside(_) | ClusterMasquerade::HairpinOnly => {
            vec![rule(SourceClass::Any, target, false)]
        }
    }
}

/// NodePort, external-IP and load-balancer traffic.
///
/// `externalTrafficPolicy: Cluster`: everything goes to `target`, masqueraded (the endpoint may
/// be on another node, so the reply must come back through this one).
/// `Local`: outside clients go to `target` (the local endpoints, or drop/reject) with their
/// address kept. Pods and the host never left the cluster and must work on nodes without a
/// local endpoint, so while any endpoint exists they are short-circuited to `cluster` (pods
/// unmasqueraded, the host masqueraded).
pub(super) fn external_rules(
    local: bool,
    target: Target,
    cluster: Target,
    has_any: bool,
) -> Vec<PathRule> {
    let mut rules = Vec::new();
    if local && has_any {
        rules.push(rule(SourceClass::Pod, cluster, false));
        rules.push(rule(SourceClass::Host, cluster, true));
    }
    rules.push(rule(SourceClass::Any, target, !local));
    rules
}
