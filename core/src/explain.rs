//! "Where does this packet go?", answered from the plan alone.
//!
//! The same questions a backend's rules answer in the kernel, asked of [`ProxyPlan`] directly.
//! The conformance suite checks real packets against these answers, so explain and the
//! dataplanes cannot silently disagree.

use crate::plan::{
    ClusterMasquerade, Endpoint, NodePortListen, Protocol, ProxyPlan, ServicePortName,
    ServicePortPlan, Target, VipKind,
};
use serde::Serialize;
use std::fmt;
use std::net::IpAddr;

/// Where a packet comes from, as the rules can tell it from its source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Origin {
    /// The node itself (one of its addresses).
    Host,
    /// A pod (inside `--cluster-cidr`).
    Pod,
    /// Anything else: outside the cluster.
    Outside,
}

/// What happens to the first packet of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Verdict {
    /// Destination NAT to one of `endpoints`, chosen at random (or by affinity).
    Dnat {
        endpoints: Vec<Endpoint>,
        /// Source NAT to the node's address on the way out.
        masquerade: bool,
        /// The source is one of the endpoints: if the choice falls on itself (hairpin), that
        /// connection is masqueraded even when `masquerade` is false.
        hairpin: bool,
        affinity_timeout_seconds: Option<u32>,
    },
    /// Refused at once: TCP RST or ICMP port unreachable.
    Reject,
    /// Dropped silently.
    Drop,
    /// Not a service address: Switchyard does not touch it.
    Accept,
}

/// The answer, with the service port that matched and the reason in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub origin: Origin,
    /// The service port and the kind of address that matched, if any.
    pub matched: Option<(ServicePortName, VipKind)>,
    pub verdict: Verdict,
    pub reason: String,
}

/// Explains the first packet of a connection from `src` to `dst:dport/proto`.
pub fn explain(
    plan: &ProxyPlan,
    src: IpAddr,
    dst: IpAddr,
    dport: u16,
    proto: Protocol,
) -> Explanation {
    let origin = origin_of(plan, src);
    let Some((name, svc, via)) = find(plan, dst, dport, proto) else {
        let cluster_ip_owner = plan.services.iter().find(|(_, s)| s.cluster_ip == dst);
        return match cluster_ip_owner {
            Some((name, _)) => Explanation {
                origin,
                matched: None,
                verdict: Verdict::Reject,
                reason: format!(
                    "{dst} is the cluster IP of {} but no port {dport}/{proto} is defined there",
                    name.service
                ),
            },
            None => Explanation {
                origin,
                matched: None,
                verdict: Verdict::Accept,
                reason: format!("{dst}:{dport}/{proto} is not a service address; not proxied"),
            },
        };
    };
    let (verdict, reason) = decide(plan, svc, via, origin, src);
    Explanation {
        origin,
        matched: Some((name.clone(), via)),
        verdict,
        reason,
    }
}

/// Whether `src` is the host, a pod or outside, as the rules see it.
pub fn origin_of(plan: &ProxyPlan, src: IpAddr) -> Origin {
    if plan.node_ips.contains(&src) {
        Origin::Host
    } else if plan.pod_cidrs.iter().any(|c| c.contains(&src)) {
        Origin::Pod
    } else {
        Origin::Outside
    }
}

/// The service port owning `dst:dport/proto`. Virtual IPs are matched before NodePorts, as the
/// dispatch rules do.
fn find(
    plan: &ProxyPlan,
    dst: IpAddr,
    dport: u16,
    proto: Protocol,
) -> Option<(&ServicePortName, &ServicePortPlan, VipKind)> {
    let candidates = || plan.services.iter().filter(|(_, s)| s.protocol == proto);
    let by_vip = candidates()
        .filter(|(_, s)| s.port == dport)
        .find_map(|(n, s)| {
            if s.cluster_ip == dst {
                return Some((n, s, VipKind::ClusterIp));
            }
            s.external_vips()
                .find(|(_, ip)| *ip == dst)
                .map(|(kind, _)| (n, s, kind))
        });
    by_vip.or_else(|| {
        let listens = match &plan.node_port_addresses {
            // Explain only knows the node's addresses from its Node object.
            NodePortListen::AllLocal => plan.node_ips.contains(&dst),
            NodePortListen::Addresses(addrs) => addrs.contains(&dst),
        };
        listens
            .then(|| candidates().find(|(_, s)| s.node_port == Some(dport)))
            .flatten()
            .map(|(n, s)| (n, s, VipKind::NodePort))
    })
}

fn decide(
    plan: &ProxyPlan,
    svc: &ServicePortPlan,
    via: VipKind,
    origin: Origin,
    src: IpAddr,
) -> (Verdict, String) {
    if via == VipKind::ClusterIp {
        let masquerade = match &plan.cluster_masquerade {
            ClusterMasquerade::All => true,
            ClusterMasquerade::FromOutside(cidrs) => !cidrs.iter().any(|c| c.contains(&src)),
            ClusterMasquerade::HairpinOnly => false,
        };
        let why = if masquerade {
            "cluster traffic, masqueraded (source outside the cluster CIDR or --masquerade-all)"
        } else {
            "cluster traffic"
        };
        return to_target(svc, svc.internal, masquerade, src, why);
    }
    if via == VipKind::LoadBalancerIp {
        if let Some(ranges) = &svc.source_ranges {
            if !ranges.allows(src, &svc.load_balancer_ips) {
                return (
                    Verdict::Drop,
                    format!("source {src} is outside loadBalancerSourceRanges"),
                );
            }
        }
    }
    // Not externally accessible cannot happen for an external VIP or NodePort match.
    let Some(external) = svc.external else {
        return (Verdict::Reject, "service port has no external path".into());
    };
    match origin {
        Origin::Pod if external.short_circuit => to_target(
            svc,
            Target::Cluster,
            false,
            src,
            "pod traffic short-circuited to cluster endpoints (externalTrafficPolicy: Local)",
        ),
        Origin::Host if external.short_circuit => to_target(
            svc,
            Target::Cluster,
            true,
            src,
            "host traffic short-circuited to cluster endpoints and masqueraded (externalTrafficPolicy: Local)",
        ),
        _ if external.masquerade => to_target(
            svc,
            external.target,
            true,
            src,
            "external traffic, masqueraded (externalTrafficPolicy: Cluster)",
        ),
        _ => to_target(
            svc,
            external.target,
            false,
            src,
            "external traffic to local endpoints, client IP kept (externalTrafficPolicy: Local)",
        ),
    }
}

fn to_target(
    svc: &ServicePortPlan,
    target: Target,
    masquerade: bool,
    src: IpAddr,
    why: &str,
) -> (Verdict, String) {
    match target {
        Target::Reject => (
            Verdict::Reject,
            "no usable endpoint on any node: rejected".into(),
        ),
        Target::Drop => (
            Verdict::Drop,
            "traffic policy Local and no usable endpoint on this node: dropped".into(),
        ),
        Target::Cluster | Target::Local => {
            let endpoints = svc.endpoints_for(target).to_vec();
            let hairpin = endpoints.iter().any(|e| e.ip == src);
            let mut reason = format!(
                "{why}; {} endpoint(s) of the {target:?} set",
                endpoints.len()
            );
            if let Some(t) = svc.affinity_timeout_seconds {
                reason.push_str(&format!("; ClientIP affinity {t}s"));
            }
            (
                Verdict::Dnat {
                    endpoints,
                    masquerade,
                    hairpin,
                    affinity_timeout_seconds: svc.affinity_timeout_seconds,
                },
                reason,
            )
        }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "origin:   {:?}", self.origin)?;
        match &self.matched {
            Some((name, via)) => writeln!(f, "matched:  {name} ({via})")?,
            None => writeln!(f, "matched:  no service port")?,
        }
        match &self.verdict {
            Verdict::Dnat {
                endpoints,
                masquerade,
                hairpin,
                affinity_timeout_seconds,
            } => {
                let list: Vec<String> = endpoints.iter().map(Endpoint::to_string).collect();
                writeln!(f, "verdict:  DNAT to one of [{}]", list.join(", "))?;
                writeln!(
                    f,
                    "masquerade: {}{}",
                    if *masquerade { "yes" } else { "no" },
                    if *hairpin {
                        " (hairpin: yes when the source is chosen)"
                    } else {
                        ""
                    }
                )?;
                if let Some(t) = affinity_timeout_seconds {
                    writeln!(f, "affinity: ClientIP, {t}s")?;
                }
            }
            Verdict::Reject => writeln!(f, "verdict:  REJECT")?,
            Verdict::Drop => writeln!(f, "verdict:  DROP")?,
            Verdict::Accept => writeln!(f, "verdict:  ACCEPT (not proxied)")?,
        }
        write!(f, "why:      {}", self.reason)
    }
}
