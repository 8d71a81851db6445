//! "Where does this packet go?", answered from the plan alone.
//!
//! The same questions a backend's rules answer in the kernel, asked of [`ProxyPlan`] directly.
//! The conformance suite checks real packets against these answers, so explain and the
//! dataplanes cannot silently disagree.

use crate::plan::{
    Endpoint, Protocol, ProxyPlan, ServiceKey, ServicePortName, ServicePortPlan, SourceClass,
    Target, VipKind,
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
        let (verdict, reason) = match cluster_ip_owner {
            Some((name, _)) => (
                Verdict::Reject,
                format!(
                    "{dst} is the cluster IP of {} but no port {dport}/{proto} is defined there",
                    name.service
                ),
            ),
            None => match plan.service_cidrs.iter().find(|c| c.contains(&dst)) {
                Some(cidr) => (
                    Verdict::Drop,
                    format!("{dst} is inside service CIDR {cidr} but no Service owns it: dropped"),
                ),
                None => (
                    Verdict::Accept,
                    format!("{dst}:{dport}/{proto} is not a service address; not proxied"),
                ),
            },
        };
        return Explanation {
            origin,
            matched: None,
            verdict,
            reason,
        };
    };
    let (verdict, reason) = decide(plan, svc, via, src);
    Explanation {
        origin,
        matched: Some((name.clone(), via)),
        verdict,
        reason,
    }
}

/// Whether `src` is a pod, the host or outside, in the order the path rules test them. With
/// interface-based pod detection an address alone never says "pod" (the kernel rules look at
/// the input interface, which a question about addresses does not carry).
pub fn origin_of(plan: &ProxyPlan, src: IpAddr) -> Origin {
    if plan.pod_sources.matches(src, None) {
        Origin::Pod
    } else if plan.node_ips.contains(&src) {
        Origin::Host
    } else {
        Origin::Outside
    }
}

/// Whether a source address belongs to a rule's source class. Explain knows the node's
/// addresses from its Node object only; the kernel rules test every local address.
fn in_class(plan: &ProxyPlan, class: SourceClass, src: IpAddr) -> bool {
    match class {
        SourceClass::Pod => plan.pod_sources.matches(src, None),
        SourceClass::Host => plan.node_ips.contains(&src),
        SourceClass::Any => true,
    }
}

/// The service port owning `dst:dport/proto`, by the plan's keys. Address keys are matched
/// before "any local address" NodePort keys, as the dispatch rules do.
fn find(
    plan: &ProxyPlan,
    dst: IpAddr,
    dport: u16,
    proto: Protocol,
) -> Option<(&ServicePortName, &ServicePortPlan, VipKind)> {
    let lookup = |wanted: ServiceKey| {
        plan.services.iter().find_map(|(n, s)| {
            s.paths()
                .flat_map(|p| &p.keys)
                .find(|k| k.key == wanted)
                .map(|k| (n, s, k.kind))
        })
    };
    let exact = ServiceKey::Addr {
        ip: dst,
        protocol: proto,
        port: dport,
    };
    lookup(exact).or_else(|| {
        plan.node_ips
            .contains(&dst)
            .then(|| {
                lookup(ServiceKey::AnyLocal {
                    protocol: proto,
                    port: dport,
                })
            })
            .flatten()
    })
}

fn decide(plan: &ProxyPlan, svc: &ServicePortPlan, via: VipKind, src: IpAddr) -> (Verdict, String) {
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
    let path = match via {
        VipKind::ClusterIp => Some(&svc.internal),
        _ => svc.external.as_ref(),
    };
    let Some(rule) = path.and_then(|p| p.rules.iter().find(|r| in_class(plan, r.from, src))) else {
        return (Verdict::Reject, "service port has no such path".into());
    };
    let why = match (via, rule.from, rule.masquerade) {
        (VipKind::ClusterIp, _, true) => {
            "cluster traffic, masqueraded (source outside the cluster CIDR or --masquerade-all)"
        }
        (VipKind::ClusterIp, _, false) => "cluster traffic",
        (_, SourceClass::Pod, _) => {
            "pod traffic short-circuited to cluster endpoints (externalTrafficPolicy: Local)"
        }
        (_, SourceClass::Host, _) => {
            "host traffic short-circuited to cluster endpoints and masqueraded (externalTrafficPolicy: Local)"
        }
        (_, SourceClass::Any, true) => {
            "external traffic, masqueraded (externalTrafficPolicy: Cluster)"
        }
        (_, SourceClass::Any, false) => {
            "external traffic to local endpoints, client IP kept (externalTrafficPolicy: Local)"
        }
    };
    to_target(svc, rule.target, rule.masquerade, src, why)
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
