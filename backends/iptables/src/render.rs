//! ProxyPlan → Transaction. Pure: decides nothing, only translates the plan into rules.
//!
//! Datapath shape (nat table), chosen so that cost does not grow with the service count:
//! ```text
//! PREROUTING/OUTPUT → SWYD-SERVICES
//!   -m set --match-set SWYD4-VIPS dst,dst → SWYD-T          one hash lookup guards everything
//!     SWYD-T:    16 rules on address bits 0-3  → SWYD-T-k
//!     SWYD-T-k:  16 rules on address bits 4-7  → SWYD-T-kj  (256 leaves)
//!     SWYD-T-kj: -d VIP -p P --dport N → SWYD-s<h>-svc | -ext | -fw
//!   [-m addrtype --dst-type LOCAL → SWYD-NODEPORTS]          only with --nodeport-addresses all
//! SWYD-s<h>-svc        masquerade decision, then SWYD-s<h>-clu or SWYD-s<h>-loc
//! SWYD-s<h>-ext        masquerade / short-circuit, then the external target
//! SWYD-s<h>-fw         allowed sources → SWYD-s<h>-ext
//! SWYD-s<h>-clu / loc  affinity lookups, then a random cascade over SWYD-s<h>-e<h2>
//! SWYD-s<h>-e<h2>      one endpoint: hairpin masquerade, affinity record, DNAT
//! ```
//! Anything addressed to a service that nat did not translate meets the filter table's
//! SWYD-FILTER (INPUT/FORWARD/OUTPUT, new connections): set lookups reject (no endpoints) or
//! drop (Local policy without local endpoints, source ranges), and anything else to a cluster IP
//! is rejected.

use crate::names::{self, ServiceChains, SetNames};
use crate::rules::{host_mask, Match, Rule, Table, Target};
use crate::sets::{dispatch_entries, Entry, Key};
use crate::tx::TableChanges;
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use switchyard_core::plan::{
    ClusterMasquerade, IpFamily, NodePortListen, ProxyPlan, ServicePortName, ServicePortPlan,
    Target as PlanTarget,
};

/// The built-in chains we hook, and the jump rule each gets.
pub fn base_jumps() -> Vec<(Table, Rule)> {
    let mut out = Vec::new();
    for chain in ["PREROUTING", "OUTPUT"] {
        let r = Rule::new(chain, Target::Jump(names::SERVICES.into()))
            .comment("switchyard service portals");
        out.push((Table::Nat, r));
    }
    let r = Rule::new("POSTROUTING", Target::Jump(names::POSTROUTING.into()))
        .comment("switchyard postrouting");
    out.push((Table::Nat, r));
    for chain in ["INPUT", "FORWARD", "OUTPUT"] {
        let r = Rule::new(chain, Target::Jump(names::FILTER.into()))
            .m(Match::NewConnection)
            .comment("switchyard service filter");
        out.push((Table::Filter, r));
    }
    out
}

/// Which dispatch leaf an address belongs to: its last byte, low nibble then high nibble.
pub fn leaf_of(ip: &IpAddr) -> (u8, u8) {
    let last = match ip {
        IpAddr::V4(a) => a.octets()[3],
        IpAddr::V6(a) => a.octets()[15],
    };
    (last & 0xf, last >> 4)
}

/// An address whose last byte is `byte` and all else zero, for bucket masks.
fn last_byte(family: IpFamily, byte: u8) -> IpAddr {
    match family {
        IpFamily::V4 => IpAddr::from([0, 0, 0, byte]),
        IpFamily::V6 => {
            let mut a = [0u8; 16];
            a[15] = byte;
            IpAddr::from(a)
        }
    }
}

/// The static part of the nat table: entry chains and the dispatch tree's inner levels.
pub fn nat_skeleton(plan: &ProxyPlan, sets: &SetNames, nat: &mut TableChanges) {
    let f = plan.family;
    nat.declare.extend([
        names::SERVICES.to_string(),
        names::POSTROUTING.to_string(),
        names::MARK_MASQ.to_string(),
        names::TREE_ROOT.to_string(),
    ]);
    nat.rules.push(
        Rule::new(names::SERVICES, Target::Jump(names::TREE_ROOT.into()))
            .m(Match::Set {
                name: sets.vips.clone(),
                with_port: true,
            })
            .comment("service addresses"),
    );
    if plan.node_port_addresses == NodePortListen::AllLocal {
        nat.declare.push(names::NODEPORTS.into());
        nat.rules.push(
            Rule::new(names::SERVICES, Target::Jump(names::NODEPORTS.into()))
                .m(Match::AddrTypeLocal { source: false })
                .comment("node ports on every local address"),
        );
    }
    for l1 in 0..16u8 {
        let child = names::tree_chain(l1, None);
        nat.declare.push(child.clone());
        nat.rules
            .push(
                Rule::new(names::TREE_ROOT, Target::Jump(child.clone())).m(Match::Destination {
                    addr: last_byte(f, l1),
                    mask: last_byte(f, 0x0f),
                }),
            );
        for l2 in 0..16u8 {
            let leaf = names::tree_chain(l1, Some(l2));
            nat.declare.push(leaf.clone());
            nat.rules.push(
                Rule::new(child.clone(), Target::Jump(leaf)).m(Match::Destination {
                    addr: last_byte(f, l2 << 4),
                    mask: last_byte(f, 0xf0),
                }),
            );
        }
    }
    nat.rules.push(
        Rule::new(names::POSTROUTING, Target::Return).m(Match::Mark {
            value: names::MASQ_MARK,
            mask: names::MASQ_MARK,
            negate: true,
        }),
    );
    // Clear the bit so a packet re-entering (e.g. through a tunnel) is not masqueraded twice.
    nat.rules.push(Rule::new(
        names::POSTROUTING,
        Target::XorMark(names::MASQ_MARK),
    ));
    nat.rules
        .push(Rule::new(names::POSTROUTING, Target::Masquerade));
    nat.rules.push(Rule::new(
        names::MARK_MASQ,
        Target::OrMark(names::MASQ_MARK),
    ));
    if let ClusterMasquerade::FromOutside(cidrs) = &plan.cluster_masquerade {
        nat.declare.push(names::MASQ_OUTSIDE.into());
        for c in cidrs {
            nat.rules
                .push(Rule::new(names::MASQ_OUTSIDE, Target::Return).m(source(c, false)));
        }
        nat.rules.push(Rule::new(
            names::MASQ_OUTSIDE,
            Target::Jump(names::MARK_MASQ.into()),
        ));
    }
}

/// The filter table: set-driven reject and drop, plus per-port rules for NodePorts on every
/// local address.
pub fn filter_table(plan: &ProxyPlan, sets: &SetNames, filter: &mut TableChanges) {
    filter.declare.push(names::FILTER.into());
    let tcp = || Match::Protocol(switchyard_core::Protocol::Tcp);
    let keyed = |name: &String| Match::Set {
        name: name.clone(),
        with_port: true,
    };
    let r = |t| Rule::new(names::FILTER, t);
    filter.rules.extend([
        r(Target::Drop)
            .m(Match::Mark {
                value: names::DROP_MARK,
                mask: names::DROP_MARK,
                negate: false,
            })
            .comment("marked by a source-range firewall"),
        r(Target::Reject { tcp_reset: true })
            .m(tcp())
            .m(keyed(&sets.reject))
            .comment("no endpoints"),
        r(Target::Reject { tcp_reset: false })
            .m(keyed(&sets.reject))
            .comment("no endpoints"),
        r(Target::Drop)
            .m(keyed(&sets.drop))
            .comment("no local endpoints or source not allowed"),
        r(Target::Reject { tcp_reset: true })
            .m(tcp())
            .m(Match::Set {
                name: sets.cluster_ips.clone(),
                with_port: false,
            })
            .comment("no such port on the cluster IP"),
        r(Target::Reject { tcp_reset: false })
            .m(Match::Set {
                name: sets.cluster_ips.clone(),
                with_port: false,
            })
            .comment("no such port on the cluster IP"),
    ]);
    if plan.node_port_addresses == NodePortListen::AllLocal {
        filter.declare.push(names::NODEPORT_FILTER.into());
        filter.rules.push(
            Rule::new(names::FILTER, Target::Jump(names::NODEPORT_FILTER.into()))
                .m(Match::AddrTypeLocal { source: false }),
        );
        filter.rules.extend(all_local_node_port_filter_rules(plan));
    }
}

/// With NodePorts on every local address, the nat NODEPORTS chain (linear, only walked by traffic
/// to the node itself).
pub fn all_local_node_port_rules(plan: &ProxyPlan) -> Vec<Rule> {
    let mut out = Vec::new();
    for (name, svc) in &plan.services {
        let (Some(np), Some(ext)) = (
            svc.node_port,
            svc.external.as_ref().map(crate::interim_old_external),
        ) else {
            continue;
        };
        if matches!(ext.target, PlanTarget::Cluster | PlanTarget::Local) || ext.short_circuit {
            let chains = ServiceChains::new(name, plan.family);
            out.push(
                Rule::new(names::NODEPORTS, Target::Jump(chains.ext))
                    .m(Match::Protocol(svc.protocol))
                    .m(Match::DestPort(np))
                    .comment(name.to_string()),
            );
        }
    }
    out
}

fn all_local_node_port_filter_rules(plan: &ProxyPlan) -> Vec<Rule> {
    let mut out = Vec::new();
    for (name, svc) in &plan.services {
        let (Some(np), Some(ext)) = (
            svc.node_port,
            svc.external.as_ref().map(crate::interim_old_external),
        ) else {
            continue;
        };
        let target = match ext.target {
            PlanTarget::Reject => Target::Reject {
                tcp_reset: svc.protocol == switchyard_core::Protocol::Tcp,
            },
            PlanTarget::Drop => Target::Drop,
            PlanTarget::Cluster | PlanTarget::Local => continue,
        };
        out.push(
            Rule::new(names::NODEPORT_FILTER, target)
                .m(Match::Protocol(svc.protocol))
                .m(Match::DestPort(np))
                .comment(name.to_string()),
        );
    }
    out
}

/// One dispatch rule's data: the address:port, where it goes, and whose it is.
pub type LeafEntry<'a> = (Key, Entry, &'a ServicePortName);

/// All dispatch entries of the plan, by leaf.
pub fn leaves(plan: &ProxyPlan) -> BTreeMap<(u8, u8), Vec<LeafEntry<'_>>> {
    let mut out: BTreeMap<(u8, u8), Vec<_>> = BTreeMap::new();
    for (name, svc) in &plan.services {
        for (key, entry) in dispatch_entries(plan, svc) {
            out.entry(leaf_of(&key.0))
                .or_default()
                .push((key, entry, name));
        }
    }
    out
}

/// The rules of one dispatch leaf.
pub fn leaf_rules(family: IpFamily, leaf: (u8, u8), entries: &[LeafEntry<'_>]) -> Vec<Rule> {
    let chain = names::tree_chain(leaf.0, Some(leaf.1));
    entries
        .iter()
        .map(|((ip, proto, port), entry, name)| {
            let chains = ServiceChains::new(name, family);
            let to = match entry {
                Entry::Cluster => chains.svc,
                Entry::External => chains.ext,
                Entry::Firewall => chains.fw,
            };
            Rule::new(chain.clone(), Target::Jump(to))
                .m(Match::Destination {
                    addr: *ip,
                    mask: host_mask(family),
                })
                .m(Match::Protocol(*proto))
                .m(Match::DestPort(*port))
                .comment(name.to_string())
        })
        .collect()
}

/// The chains and rules of one service port.
pub fn service(
    plan: &ProxyPlan,
    name: &ServicePortName,
    svc: &ServicePortPlan,
) -> (BTreeSet<String>, Vec<Rule>) {
    let family = plan.family;
    let c = ServiceChains::new(name, family);
    let comment = name.to_string();
    let mut chains = BTreeSet::new();
    let mut rules = Vec::new();
    let policy_chain = |t: PlanTarget| match t {
        PlanTarget::Cluster => Some(c.cluster.clone()),
        PlanTarget::Local => Some(c.local.clone()),
        PlanTarget::Reject | PlanTarget::Drop => None,
    };

    // Cluster-IP entry.
    if let Some(to) = policy_chain(svc.internal.fallback()) {
        chains.insert(c.svc.clone());
        match &plan.cluster_masquerade {
            ClusterMasquerade::All => {
                rules.push(Rule::new(&c.svc, Target::Jump(names::MARK_MASQ.into())))
            }
            ClusterMasquerade::FromOutside(_) => {
                rules.push(Rule::new(&c.svc, Target::Jump(names::MASQ_OUTSIDE.into())))
            }
            ClusterMasquerade::HairpinOnly => {}
        }
        rules.push(Rule::new(&c.svc, Target::Jump(to)).comment(comment.clone()));
    }

    // External entry.
    if let Some(ext) = svc.external.as_ref().map(crate::interim_old_external) {
        let to = policy_chain(ext.target);
        if to.is_some() || ext.short_circuit {
            chains.insert(c.ext.clone());
            if ext.masquerade {
                rules.push(Rule::new(&c.ext, Target::Jump(names::MARK_MASQ.into())));
            }
            if ext.short_circuit {
                for cidr in &plan.pod_cidrs {
                    rules.push(
                        Rule::new(&c.ext, Target::Jump(c.cluster.clone()))
                            .m(source(cidr, false))
                            .comment("short-circuit pod traffic"),
                    );
                }
                rules.push(
                    Rule::new(&c.ext, Target::Jump(names::MARK_MASQ.into()))
                        .m(Match::AddrTypeLocal { source: true })
                        .comment("masquerade host traffic"),
                );
                rules.push(
                    Rule::new(&c.ext, Target::Jump(c.cluster.clone()))
                        .m(Match::AddrTypeLocal { source: true })
                        .comment("short-circuit host traffic"),
                );
            }
            if let Some(to) = to {
                rules.push(Rule::new(&c.ext, Target::Jump(to)).comment(comment.clone()));
            }
        }
        if let Some(ranges) = &svc.source_ranges {
            // Allowed sources continue to the external chain (or, without one, stay
            // untranslated for the filter's reject); everything else is marked for the filter
            // to drop (nat cannot drop).
            chains.insert(c.fw.clone());
            let allowed = if chains.contains(&c.ext) {
                Target::Jump(c.ext.clone())
            } else {
                Target::Return
            };
            for net in &ranges.allow {
                rules.push(Rule::new(&c.fw, allowed.clone()).m(source(net, false)));
            }
            if ranges.allow_from_load_balancer_ips {
                for ip in &svc.load_balancer_ips {
                    rules.push(Rule::new(&c.fw, allowed.clone()).m(Match::Source {
                        addr: *ip,
                        mask: host_mask(family),
                        negate: false,
                    }));
                }
            }
            rules.push(
                Rule::new(&c.fw, Target::OrMark(names::DROP_MARK))
                    .comment("source not in loadBalancerSourceRanges"),
            );
        }
    }

    // Endpoint sets, each once, and their endpoint chains.
    let mut endpoint_chains = BTreeSet::new();
    for (set_chain, set) in [
        (&c.cluster, &svc.endpoints.cluster),
        (&c.local, &svc.endpoints.local),
    ] {
        let Some(set) = set.as_ref().filter(|s| !s.is_empty()) else {
            continue;
        };
        let used = rules
            .iter()
            .any(|r| r.target == Target::Jump(set_chain.clone()));
        if !used {
            continue;
        }
        chains.insert(set_chain.clone());
        let seps: Vec<String> = set
            .iter()
            .map(|e| names::endpoint_chain(name, family, e))
            .collect();
        if let Some(seconds) = svc.affinity_timeout_seconds {
            for sep in &seps {
                rules.push(
                    Rule::new(set_chain, Target::Jump(sep.clone()))
                        .m(Match::RecentCheck {
                            name: sep.clone(),
                            seconds,
                        })
                        .comment("session affinity"),
                );
            }
        }
        let n = seps.len();
        for (i, sep) in seps.iter().enumerate() {
            let mut r = Rule::new(set_chain, Target::Jump(sep.clone()));
            if i + 1 < n {
                r = r.m(Match::OneIn(u32::try_from(n - i).unwrap_or(u32::MAX)));
            }
            rules.push(r);
        }
        for (e, sep) in set.iter().zip(seps) {
            if !endpoint_chains.insert(sep.clone()) {
                continue;
            }
            chains.insert(sep.clone());
            rules.push(
                Rule::new(&sep, Target::Jump(names::MARK_MASQ.into()))
                    .m(Match::Source {
                        addr: e.ip,
                        mask: host_mask(family),
                        negate: false,
                    })
                    .comment("hairpin"),
            );
            let mut dnat = Rule::new(&sep, Target::Dnat(SocketAddr::new(e.ip, e.port)))
                .m(Match::Protocol(svc.protocol));
            if svc.affinity_timeout_seconds.is_some() {
                dnat = dnat.m(Match::RecentSet { name: sep.clone() });
            }
            rules.push(dnat.comment(comment.clone()));
        }
    }
    (chains, rules)
}

fn source(net: &IpNet, negate: bool) -> Match {
    Match::Source {
        addr: net.network(),
        mask: net.netmask(),
        negate,
    }
}
