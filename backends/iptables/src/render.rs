//! ProxyPlan → Transaction. Pure: decides nothing, only translates the plan into rules. Keys
//! come from each path's `keys` (core's claimed kernel keys), the masquerade and short-circuit
//! decisions from each path's `rules` (walked by [`path_rules`]), the endpoint sets from
//! `PathPlan::endpoint_targets`, the reject/drop refusals from `PathPlan::fallback`.
//!
//! Datapath shape (nat table), chosen so that cost does not grow with the service count:
//! ```text
//! PREROUTING/OUTPUT → SWYD-SERVICES
//!   -m set --match-set SWYD4-VIPS dst,dst → SWYD-T          one hash lookup guards everything
//!     SWYD-T:    16 rules on address bits 0-3  → SWYD-T-k
//!     SWYD-T-k:  16 rules on address bits 4-7  → SWYD-T-kj  (256 leaves)
//!     SWYD-T-kj: -d VIP -p P --dport N → SWYD-s<h>-svc | -ext | -fw   (`Addr` keys)
//!   [-m addrtype --dst-type LOCAL → SWYD-NODEPORTS]          `AnyLocal` keys (NodePorts on
//!                                                             every local address)
//! SWYD-s<h>-svc        the internal path's rules: masquerade decision (per source class),
//!                      then, without affinity, the endpoint picks inline:
//!                      `-m statistic --probability 1/k -j DNAT --to-destination ip:port`
//! SWYD-s<h>-ext        the external path's rules, likewise (short-circuit is a rule)
//! SWYD-s<h>-fw         allowed sources → SWYD-s<h>-ext
//! SWYD-s<h>-clu / loc  only for a path whose rules send to two endpoint sets, or with
//!                      affinity: affinity lookups, then the picks (DNAT, or with affinity
//!                      a jump to SWYD-s<h>-e<h2>)
//! SWYD-s<h>-e<h2>      affinity only: one endpoint: affinity record, DNAT
//! SWYD-POSTROUTING     hairpin: `--ctstate DNAT -m set --match-set SWYD4-HAIRPIN dst,dst,src`
//!                      marks for masquerade (one set of `endpoint,port,endpoint` entries, no
//!                      rule per endpoint)
//! ```
//! Anything addressed to a service that nat did not translate meets the filter table's
//! SWYD-FILTER (INPUT/FORWARD/OUTPUT, new connections): set lookups reject (no endpoints) or
//! drop (Local policy without local endpoints, source ranges), anything else to a live cluster
//! IP is rejected, and anything else inside a service CIDR is dropped. SWYD-FORWARD lets
//! service traffic through a FORWARD policy of DROP.

use crate::names::{self, ServiceChains, SetNames};
use crate::rules::{host_mask, Match, Rule, Table, Target};
use crate::sets::{addr_key, dispatch_entries, refusal, Entry, Key};
use crate::tx::TableChanges;
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use switchyard_core::plan::{
    Endpoint, IpFamily, LocalDetector, NodePortListen, PathPlan, PathRule, Protocol, ProxyPlan,
    ServiceKey, ServicePortName, ServicePortPlan, SourceClass, Target as PlanTarget,
};

/// The built-in chains we hook, and the jump rule each gets. Inserted at position 1 when
/// missing; the two filter FORWARD jumps match disjoint packets (see `filter_table` and
/// DESIGN-NOTES 51), so their relative order does not matter.
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
    let r = Rule::new("FORWARD", Target::Jump(names::FORWARD.into()))
        .comment("switchyard forwarding rules");
    out.push((Table::Filter, r));
    out
}

/// Whether NodePorts listen on every local address, i.e. whether the plan can hold
/// `ServiceKey::AnyLocal` keys (core only makes them then). Decides whether the `addrtype`
/// chains exist; which ports they hold comes from the keys.
pub(crate) fn any_local_keys(plan: &ProxyPlan) -> bool {
    plan.node_port_addresses == NodePortListen::AllLocal
}

/// Which dispatch leaf an address belongs to: its last byte, low nibble then high nibble.
pub fn leaf_of(ip: &IpAddr) -> (u8, u8) {
    let last = match ip {
        IpAddr::V4(a) => a.octets()[3],
        IpAddr::V6(a) => a.octets()[15],
    };
    (last & 0xf, last >> 4)
}

/// The filter table.
///
/// `SWYD-FILTER` (INPUT/FORWARD/OUTPUT, new connections) refuses what nat left addressed to a
/// service: packets a source-range firewall marked, then set-driven reject and drop (keys whose
/// path falls back to reject/drop), then any other port of a live cluster IP (reject), then,
/// with NodePorts on every local address, their refusals, and last any other address inside a
/// service CIDR (drop: an unallocated cluster IP, as kube-proxy's `cluster-ips-check`).
///
/// `SWYD-FORWARD` (every forwarded packet) lets service traffic through hosts whose FORWARD
/// policy is DROP (Docker sets it): it drops conntrack-INVALID packets (which nat would not
/// un-DNAT), accepts packets carrying the masquerade mark, and accepts every packet of a DNATed
/// connection (both directions). It accepts nothing `SWYD-FILTER` refuses: those are new and
/// not DNATed, and never carry the masquerade mark (DESIGN-NOTES 51).
pub fn filter_table(plan: &ProxyPlan, sets: &SetNames, filter: &mut TableChanges) {
    filter.declare.push(names::FILTER.into());
    let tcp = || Match::Protocol(Protocol::Tcp);
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
    if any_local_keys(plan) {
        filter.declare.push(names::NODEPORT_FILTER.into());
        filter.rules.push(
            Rule::new(names::FILTER, Target::Jump(names::NODEPORT_FILTER.into()))
                .m(Match::AddrTypeLocal { source: false }),
        );
        filter.rules.extend(any_local_filter_rules(plan));
    }
    for net in &plan.service_cidrs {
        filter.rules.push(
            r(Target::Drop)
                .m(Match::Destination {
                    addr: net.network(),
                    mask: net.netmask(),
                })
                .comment("unallocated service IP"),
        );
    }

    filter.declare.push(names::FORWARD.into());
    let fwd = |t| Rule::new(names::FORWARD, t);
    filter.rules.extend([
        fwd(Target::Drop)
            .m(Match::CtState("INVALID"))
            .comment("invalid, nat would not translate it"),
        fwd(Target::Accept)
            .m(Match::Mark {
                value: names::MASQ_MARK,
                mask: names::MASQ_MARK,
                negate: false,
            })
            .comment("masqueraded service traffic"),
        fwd(Target::Accept)
            .m(Match::CtState("DNAT"))
            .comment("service traffic and its replies"),
    ]);
}

/// The nat `SWYD-NODEPORTS` chain (NodePorts on every local address, walked only by traffic to
/// the node itself, linear): one rule per `AnyLocal` key that nat dispatches.
pub fn any_local_node_port_rules(plan: &ProxyPlan) -> Vec<Rule> {
    let mut out = Vec::new();
    for (name, svc) in &plan.services {
        for (key, entry) in dispatch_entries(svc) {
            let ServiceKey::AnyLocal { protocol, port } = key else {
                continue;
            };
            let chains = ServiceChains::new(name, plan.family);
            out.push(
                Rule::new(names::NODEPORTS, Target::Jump(chains.entry(entry)))
                    .m(Match::Protocol(protocol))
                    .m(Match::DestPort(port))
                    .comment(name.to_string()),
            );
        }
    }
    out
}

/// `SWYD-NODEPORT-FILTER`: one refusal per `AnyLocal` key whose path falls back to reject or
/// drop (the `addrtype` counterpart of the reject/drop sets).
fn any_local_filter_rules(plan: &ProxyPlan) -> Vec<Rule> {
    let mut out = Vec::new();
    for (name, svc) in &plan.services {
        for path in svc.paths() {
            let Some(refuse) = refusal(path) else {
                continue;
            };
            for k in &path.keys {
                let ServiceKey::AnyLocal { protocol, port } = k.key else {
                    continue;
                };
                let target = if refuse == PlanTarget::Reject {
                    Target::Reject {
                        tcp_reset: protocol == Protocol::Tcp,
                    }
                } else {
                    Target::Drop
                };
                out.push(
                    Rule::new(names::NODEPORT_FILTER, target)
                        .m(Match::Protocol(protocol))
                        .m(Match::DestPort(port))
                        .comment(name.to_string()),
                );
            }
        }
    }
    out
}

/// One dispatch rule's data: the address:port, where it goes, and whose it is.
pub type LeafEntry<'a> = (Key, Entry, &'a ServicePortName);

/// All address-keyed dispatch entries of the plan, by leaf.
pub fn leaves(plan: &ProxyPlan) -> BTreeMap<(u8, u8), Vec<LeafEntry<'_>>> {
    let mut out: BTreeMap<(u8, u8), Vec<_>> = BTreeMap::new();
    for (name, svc) in &plan.services {
        for (key, entry) in dispatch_entries(svc) {
            if let Some(key) = addr_key(&key) {
                out.entry(leaf_of(&key.0))
                    .or_default()
                    .push((key, entry, name));
            }
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
            Rule::new(chain.clone(), Target::Jump(chains.entry(*entry)))
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

impl ServiceChains {
    /// The chain a dispatch entry jumps to.
    fn entry(&self, entry: Entry) -> String {
        match entry {
            Entry::Internal => self.svc.clone(),
            Entry::External => self.ext.clone(),
            Entry::Firewall => self.fw.clone(),
        }
    }
}

/// The nat rules of one path's chain: the plan's rules in order, first match deciding. Each
/// rule's source class becomes its match (`Pod`: one rule per pod CIDR; `Host`: a local source
/// address; `Any`: none); traffic it catches is marked for masquerade if the rule says so, then
/// jumps to the endpoint-set chain `to(target)`, which always DNATs. An untranslated target
/// (reject, drop) returns, leaving the packet to the filter table, unless it is the last rule,
/// where falling off the chain does the same.
///
/// With `inline`, the rules that end the list with one translating target (the *tail*: the
/// last rule and every rule before it with the same target) get no jump: only their masquerade
/// decision is written, and the returned target's endpoint picks are for the caller to append
/// to this chain, so a path whose rules all send to one endpoint set needs no chain but its
/// own. First-match order within the tail is kept by negation: a masquerading rule excludes the
/// sources of the non-masquerading tail rules before it (`! -s <pod CIDR>`, `-m addrtype !
/// --src-type LOCAL`). When that is not expressible in one rule (more than one pod CIDR to
/// exclude) the whole path keeps the jump shape and `None` is returned. Rules before the tail
/// are written as without `inline` (each jumps away or returns).
pub fn path_rules(
    plan: &ProxyPlan,
    chain: &str,
    rules: &[PathRule],
    to: impl Fn(PlanTarget) -> Option<String>,
    comment: &str,
    inline: bool,
) -> (Vec<Rule>, Option<PlanTarget>) {
    let tail = if inline {
        inline_tail(plan, rules)
    } else {
        None
    };
    let head = &rules[..tail.unwrap_or(rules.len())];
    let mut out = Vec::new();
    for (i, rule) in head.iter().enumerate() {
        let last = i + 1 == rules.len();
        for m in class_matches(plan, rule.from) {
            let with = |r: Rule| m.iter().fold(r, |r, m| r.m(m.clone()));
            if rule.masquerade {
                out.push(with(Rule::new(
                    chain,
                    Target::Jump(names::MARK_MASQ.into()),
                )));
            }
            match to(rule.target) {
                Some(dest) => out.push(with(Rule::new(chain, Target::Jump(dest))).comment(comment)),
                None if !last => out.push(with(Rule::new(chain, Target::Return))),
                None => {}
            }
        }
    }
    let Some(start) = tail else {
        return (out, None);
    };
    // The tail's masquerade decision. `shield_*`: a non-masquerading tail rule for that class
    // came first, so later masquerading rules must not catch its sources.
    let (mut shield_pod, mut shield_host) = (false, false);
    for rule in &rules[start..] {
        if !rule.masquerade {
            match rule.from {
                SourceClass::Pod => shield_pod = true,
                SourceClass::Host => shield_host = true,
                // Nothing after a non-masquerading `Any` rule is reachable.
                SourceClass::Any => break,
            }
            continue;
        }
        let unreachable = match rule.from {
            SourceClass::Pod => shield_pod,
            SourceClass::Host => shield_host,
            SourceClass::Any => false,
        };
        if unreachable {
            continue;
        }
        let not_pod = shield_pod.then(|| not_pod(&plan.pod_sources)).flatten();
        let not_host = shield_host.then_some(Match::NotLocalSource);
        for m in class_matches(plan, rule.from) {
            let mut all: Vec<Match> = m
                .into_iter()
                .chain(not_pod.clone())
                .chain(not_host.clone())
                .collect();
            // In iptables-save's order: `-s`, then `-i`, then the rest (`-m`).
            all.sort_by_key(|m| match m {
                Match::Source { .. } => 0,
                Match::InInterface { .. } => 1,
                _ => 2,
            });
            let r = all.into_iter().fold(
                Rule::new(chain, Target::Jump(names::MARK_MASQ.into())),
                Rule::m,
            );
            out.push(r);
        }
    }
    (out, Some(rules[start].target))
}

/// Where the inlinable tail of `rules` starts (see [`path_rules`]), if it has one.
fn inline_tail(plan: &ProxyPlan, rules: &[PathRule]) -> Option<usize> {
    let target = rules.last()?.target;
    if !matches!(target, PlanTarget::Cluster | PlanTarget::Local) {
        return None;
    }
    let start = rules
        .iter()
        .rposition(|r| r.target != target)
        .map_or(0, |i| i + 1);
    // Excluding pods in one rule needs a single pod CIDR (or none: then nothing is a pod).
    let tail = &rules[start..];
    let excludes_pods = tail.iter().enumerate().any(|(i, r)| {
        r.from == SourceClass::Pod && !r.masquerade && tail[i + 1..].iter().any(|l| l.masquerade)
    });
    let one_pod_match = match &plan.pod_sources {
        LocalDetector::Cidrs(cidrs) => cidrs.len() <= 1,
        LocalDetector::InputInterface(_) | LocalDetector::InterfacePrefix(_) => true,
    };
    (!excludes_pods || one_pod_match).then_some(start)
}

/// The one match that excludes pods (`! -s cidr`, `! -i name[+]`); `None` with no CIDR
/// (nothing is a pod). Only asked when [`inline_tail`] saw a single pod match.
fn not_pod(pods: &LocalDetector) -> Option<Match> {
    match pods {
        LocalDetector::Cidrs(cidrs) => cidrs.first().map(|net| Match::Source {
            addr: net.network(),
            mask: net.netmask(),
            negate: true,
        }),
        by_interface => pod_interface(by_interface, true),
    }
}

/// `-i name` / `-i prefix+` for interface-based pod detection.
fn pod_interface(pods: &LocalDetector, negate: bool) -> Option<Match> {
    match pods {
        LocalDetector::Cidrs(_) => None,
        LocalDetector::InputInterface(name) => Some(Match::InInterface {
            name: name.clone(),
            prefix: false,
            negate,
        }),
        LocalDetector::InterfacePrefix(prefix) => Some(Match::InInterface {
            name: prefix.clone(),
            prefix: true,
            negate,
        }),
    }
}

/// The alternatives a source class matches: one match list per rule to write.
fn class_matches(plan: &ProxyPlan, class: SourceClass) -> Vec<Option<Match>> {
    match class {
        SourceClass::Pod => match &plan.pod_sources {
            LocalDetector::Cidrs(cidrs) => cidrs.iter().map(|net| Some(source(net))).collect(),
            by_interface => vec![pod_interface(by_interface, false)],
        },
        SourceClass::Host => vec![Some(Match::AddrTypeLocal { source: true })],
        SourceClass::Any => vec![None],
    }
}

/// The endpoint picks that end an endpoint-set chain (or an inlined path chain): endpoint `i`
/// of `n` with probability `1/(n-i)`, the last unconditionally, each DNATing straight to its
/// endpoint. No comment: these are most of the rules at scale (a comment each costs ~20% of
/// the restore time at 10k services), and the chain they are in is named in `owners` for
/// errors and by the commented dispatch rule that jumps to it for readers (kube-proxy's
/// large-cluster mode drops its endpoint comments likewise).
fn picks(chain: &str, svc: &ServicePortPlan, set: &[Endpoint]) -> Vec<Rule> {
    let n = set.len();
    set.iter()
        .enumerate()
        .map(|(i, e)| {
            let r = Rule::new(chain, Target::Dnat(SocketAddr::new(e.ip, e.port)))
                .m(Match::Protocol(svc.protocol));
            if i + 1 < n {
                r.m(Match::OneIn(u32::try_from(n - i).unwrap_or(u32::MAX)))
            } else {
                r
            }
        })
        .collect()
}

/// The chains and rules of one service port.
///
/// Without session affinity a service port owns no per-endpoint chain: each path's chain
/// decides masquerade and picks an endpoint itself (`path_rules` with `inline`), so a
/// ClusterIP port is one chain and a NodePort of `Cluster` policy two, whatever the endpoint
/// count; an endpoint-set chain (`clu`/`loc`, picks and DNAT) exists only for paths whose
/// rules send to more than one set. With affinity, every path jumps to its endpoint-set chain,
/// which checks the `recent` list of each endpoint chain before picking; the endpoint chain
/// records the client and DNATs. Hairpin masquerade is not here: one POSTROUTING rule and the
/// hairpin set (`nat_skeleton`).
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
    let set_chain = |t: PlanTarget| match t {
        PlanTarget::Cluster => Some(c.cluster.clone()),
        PlanTarget::Local => Some(c.local.clone()),
        PlanTarget::Reject | PlanTarget::Drop => None,
    };
    let affinity = svc.affinity_timeout_seconds;

    // Each path that translates: its chain walks the plan's rules.
    for (path, chain) in [
        (Some(&svc.internal), &c.svc),
        (svc.external.as_ref(), &c.ext),
    ] {
        let Some(path) = path.filter(|p| p.translates()) else {
            continue;
        };
        chains.insert(chain.clone());
        let (head, inlined) = path_rules(
            plan,
            chain,
            &path.rules,
            set_chain,
            &comment,
            affinity.is_none(),
        );
        rules.extend(head);
        if let Some(target) = inlined {
            rules.extend(picks(chain, svc, svc.endpoints_for(target)));
        }
    }

    // Source ranges: allowed sources continue to the external chain (or, without one, stay
    // untranslated for the filter's reject/drop); everything else is marked for the filter to
    // drop (nat cannot drop).
    let firewalled = dispatch_entries(svc)
        .iter()
        .any(|(_, e)| *e == Entry::Firewall);
    if let Some(ranges) = svc.source_ranges.as_ref().filter(|_| firewalled) {
        chains.insert(c.fw.clone());
        let allowed = if chains.contains(&c.ext) {
            Target::Jump(c.ext.clone())
        } else {
            Target::Return
        };
        for net in &ranges.allow {
            rules.push(Rule::new(&c.fw, allowed.clone()).m(source(net)));
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

    // The endpoint-set chains some path rule jumps to, each once.
    let mut used: Vec<PlanTarget> = svc.paths().flat_map(PathPlan::endpoint_targets).collect();
    used.sort();
    used.dedup();
    let mut endpoint_chains = BTreeSet::new();
    for target in used {
        let (Some(set_chain), set) = (set_chain(target), svc.endpoints_for(target)) else {
            continue;
        };
        let jumped_to = rules
            .iter()
            .any(|r| matches!(&r.target, Target::Jump(t) if *t == set_chain));
        if set.is_empty() || !jumped_to {
            continue;
        }
        chains.insert(set_chain.clone());
        let Some(seconds) = affinity else {
            rules.extend(picks(&set_chain, svc, set));
            continue;
        };
        let seps: Vec<String> = set
            .iter()
            .map(|e| names::endpoint_chain(name, family, e))
            .collect();
        for sep in &seps {
            rules.push(
                Rule::new(&set_chain, Target::Jump(sep.clone()))
                    .m(Match::RecentCheck {
                        name: sep.clone(),
                        seconds,
                    })
                    .comment("session affinity"),
            );
        }
        let n = seps.len();
        for (i, sep) in seps.iter().enumerate() {
            let mut r = Rule::new(&set_chain, Target::Jump(sep.clone()));
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
                Rule::new(&sep, Target::Dnat(SocketAddr::new(e.ip, e.port)))
                    .m(Match::Protocol(svc.protocol))
                    .m(Match::RecentSet { name: sep.clone() })
                    .comment(comment.clone()),
            );
        }
    }
    (chains, rules)
}

fn source(net: &IpNet) -> Match {
    Match::Source {
        addr: net.network(),
        mask: net.netmask(),
        negate: false,
    }
}
