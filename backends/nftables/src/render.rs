//! ProxyPlan → operations. Pure: translates the plan, decides nothing.
//!
//! ```text
//! nat-prerouting/nat-output → services: ip daddr . meta l4proto . th dport vmap @service-ips
//!     → svc-* (cluster IP) | ext-* (NodePort, external and LB IPs)
//! svc-*  masquerade decision, goto clu-*/loc-*
//! ext-*  masquerade or short-circuit, goto the external target
//! clu-*/loc-*  affinity lookups, then `numgen random mod (n-i) == 0 goto sep-i`, last unconditional
//! sep-*  hairpin masquerade, affinity update, dnat
//! filter-prerouting/filter-output-firewall (before DNAT): vmap @firewall-ips → fw-*: allowed
//!     sources return, everything else is dropped (loadBalancerSourceRanges)
//! filter-input/forward/output, new connections → service-filter: whatever is still addressed
//!     to a service was not DNATed: vmap @no-endpoint-services (reject / drop), then anything
//!     else to a cluster IP is rejected
//! ```
//! No set or map per service: dispatch is three shared verdict maps (DESIGN §4).

use crate::expr::Verdict;
use crate::names::{self as n, ServiceChains};
use crate::objects::{Chain, Elem, Hook, Key, KeyType, Op, Rule, Set, VerdictKey};
use crate::stmt::Stmt;
use ipnet::IpNet;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use switchyard_core::plan::{
    ClusterMasquerade, NodePortListen, ProxyPlan, ServicePortName, ServicePortPlan, Target,
};

fn chain(name: &str) -> Chain {
    Chain {
        name: name.to_string(),
        base: None,
    }
}

fn rule(chain: &str, stmts: Vec<Stmt>) -> Op {
    Op::AddRule(Rule {
        chain: chain.to_string(),
        stmts,
    })
}

fn goto(c: &str) -> Stmt {
    Stmt::Verdict(Verdict::Goto(c.to_string()))
}

fn jump(c: &str) -> Stmt {
    Stmt::Verdict(Verdict::Jump(c.to_string()))
}

/// The table's fixed objects: base chains, shared chains, maps and sets, and their rules.
/// Returns (chains, sets, rules) so a full sync can order them.
pub fn skeleton(plan: &ProxyPlan) -> (Vec<Op>, Vec<Op>, Vec<Op>) {
    let all_local = plan.node_port_addresses == NodePortListen::AllLocal;
    let base = |name: &str, kind, hook, prio| {
        Op::AddChain(Chain {
            name: name.to_string(),
            base: Some((kind, hook, prio)),
        })
    };
    let mut chains = vec![
        base(n::NAT_PREROUTING, "nat", Hook::Prerouting, -100),
        base(n::NAT_OUTPUT, "nat", Hook::Output, -100),
        base(n::NAT_POSTROUTING, "nat", Hook::Postrouting, 100),
        base(n::FILTER_PREROUTING, "filter", Hook::Prerouting, -110),
        base(n::FILTER_OUTPUT_FIREWALL, "filter", Hook::Output, -110),
        base(n::FILTER_INPUT, "filter", Hook::Input, 0),
        base(n::FILTER_FORWARD, "filter", Hook::Forward, 0),
        base(n::FILTER_OUTPUT, "filter", Hook::Output, 0),
    ];
    for c in [
        n::SERVICES,
        n::SERVICE_FILTER,
        n::REJECT,
        n::MASQUERADING,
        n::MARK_MASQ,
    ] {
        chains.push(Op::AddChain(chain(c)));
    }
    let map = |name: &str, key| {
        Op::AddSet(Set {
            name: name.to_string(),
            key,
            map: true,
            timeout_seconds: None,
        })
    };
    let mut sets = vec![
        map(n::SERVICE_IPS, KeyType::AddrProtoPort),
        map(n::NO_ENDPOINT_SERVICES, KeyType::AddrProtoPort),
        map(n::FIREWALL_IPS, KeyType::AddrProtoPort),
        Op::AddSet(Set {
            name: n::CLUSTER_IPS.to_string(),
            key: KeyType::Addr,
            map: false,
            timeout_seconds: None,
        }),
    ];
    if all_local {
        sets.push(map(n::SERVICE_NODEPORTS, KeyType::ProtoPort));
        sets.push(map(n::NO_ENDPOINT_NODEPORTS, KeyType::ProtoPort));
    }
    let new_conn_filter = vec![Stmt::CtStateNew, jump(n::SERVICE_FILTER)];
    let mut rules = vec![
        rule(n::NAT_PREROUTING, vec![jump(n::SERVICES)]),
        rule(n::NAT_OUTPUT, vec![jump(n::SERVICES)]),
        rule(n::NAT_POSTROUTING, vec![jump(n::MASQUERADING)]),
        rule(
            n::FILTER_PREROUTING,
            vec![Stmt::DispatchVmap(n::FIREWALL_IPS.into())],
        ),
        rule(
            n::FILTER_OUTPUT_FIREWALL,
            vec![Stmt::DispatchVmap(n::FIREWALL_IPS.into())],
        ),
        rule(n::FILTER_INPUT, new_conn_filter.clone()),
        rule(n::FILTER_FORWARD, new_conn_filter.clone()),
        rule(n::FILTER_OUTPUT, new_conn_filter),
        rule(
            n::SERVICE_FILTER,
            vec![Stmt::DispatchVmap(n::NO_ENDPOINT_SERVICES.into())],
        ),
    ];
    if all_local {
        rules.push(rule(
            n::SERVICE_FILTER,
            vec![Stmt::LocalPortVmap(n::NO_ENDPOINT_NODEPORTS.into())],
        ));
    }
    rules.extend([
        rule(
            n::SERVICE_FILTER,
            vec![Stmt::DaddrInSet(n::CLUSTER_IPS.into()), goto(n::REJECT)],
        ),
        rule(n::REJECT, vec![Stmt::Reject { tcp_reset: true }]),
        rule(n::REJECT, vec![Stmt::Reject { tcp_reset: false }]),
        rule(n::SERVICES, vec![Stmt::DispatchVmap(n::SERVICE_IPS.into())]),
    ]);
    if all_local {
        rules.push(rule(
            n::SERVICES,
            vec![Stmt::LocalPortVmap(n::SERVICE_NODEPORTS.into())],
        ));
    }
    rules.extend([
        rule(
            n::MASQUERADING,
            vec![
                Stmt::MarkClear(n::MASQ_MARK),
                Stmt::Verdict(Verdict::Return),
            ],
        ),
        rule(n::MASQUERADING, vec![Stmt::MarkXor(n::MASQ_MARK)]),
        rule(n::MASQUERADING, vec![Stmt::Masquerade]),
        rule(n::MARK_MASQ, vec![Stmt::MarkOr(n::MASQ_MARK)]),
    ]);
    if let ClusterMasquerade::FromOutside(cidrs) = &plan.cluster_masquerade {
        chains.push(Op::AddChain(chain(n::MASQ_OUTSIDE)));
        for c in cidrs {
            rules.push(rule(
                n::MASQ_OUTSIDE,
                vec![
                    Stmt::Saddr {
                        net: *c,
                        negate: false,
                    },
                    Stmt::Verdict(Verdict::Return),
                ],
            ));
        }
        rules.push(rule(n::MASQ_OUTSIDE, vec![jump(n::MARK_MASQ)]));
    }
    (chains, sets, rules)
}

/// Everything one service port owns: chains, affinity sets, rules, and its map elements.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ServiceObjects {
    pub chains: BTreeSet<String>,
    pub sets: Vec<Set>,
    pub rules: Vec<Op>,
    /// (map or set name, element)
    pub elems: BTreeSet<(String, Elem)>,
}

/// The objects of one service port.
pub fn service(plan: &ProxyPlan, name: &ServicePortName, svc: &ServicePortPlan) -> ServiceObjects {
    let c = ServiceChains::new(name, plan.family);
    let mut o = ServiceObjects::default();
    let proto = svc.protocol;
    let policy_chain = |t: Target| match t {
        Target::Cluster => Some(c.cluster.clone()),
        Target::Local => Some(c.local.clone()),
        Target::Reject | Target::Drop => None,
    };
    let no_endpoint = |t: Target| match t {
        Target::Reject => Some(VerdictKey::Goto(n::REJECT.into())),
        Target::Drop => Some(VerdictKey::Drop),
        Target::Cluster | Target::Local => None,
    };
    let cluster_key = Key::AddrProtoPort(svc.cluster_ip, proto, svc.port);

    // Cluster IP.
    if let Some(to) = policy_chain(svc.internal) {
        o.chains.insert(c.svc.clone());
        match &plan.cluster_masquerade {
            ClusterMasquerade::All => o.rules.push(rule(&c.svc, vec![jump(n::MARK_MASQ)])),
            ClusterMasquerade::FromOutside(_) => {
                o.rules.push(rule(&c.svc, vec![jump(n::MASQ_OUTSIDE)]))
            }
            ClusterMasquerade::HairpinOnly => {}
        }
        o.rules.push(rule(&c.svc, vec![goto(&to)]));
        o.elems.insert((
            n::SERVICE_IPS.into(),
            Elem {
                key: cluster_key,
                verdict: Some(VerdictKey::Goto(c.svc.clone())),
            },
        ));
    }
    if let Some(v) = no_endpoint(svc.internal) {
        o.elems.insert((
            n::NO_ENDPOINT_SERVICES.into(),
            Elem {
                key: cluster_key,
                verdict: Some(v),
            },
        ));
    }

    // External addresses.
    if let Some(ext) = svc.external {
        let mut keys: Vec<Key> = svc
            .external_vips()
            .map(|(_, ip)| Key::AddrProtoPort(ip, proto, svc.port))
            .collect();
        let mut local_port_key = None;
        if let Some(np) = svc.node_port {
            match &plan.node_port_addresses {
                NodePortListen::Addresses(addrs) => {
                    keys.extend(addrs.iter().map(|ip| Key::AddrProtoPort(*ip, proto, np)))
                }
                NodePortListen::AllLocal => local_port_key = Some(Key::ProtoPort(proto, np)),
            }
        }
        let to = policy_chain(ext.target);
        if to.is_some() || ext.short_circuit {
            o.chains.insert(c.ext.clone());
            if ext.masquerade {
                o.rules.push(rule(&c.ext, vec![jump(n::MARK_MASQ)]));
            }
            if ext.short_circuit {
                for cidr in &plan.pod_cidrs {
                    o.rules.push(rule(
                        &c.ext,
                        vec![
                            Stmt::Saddr {
                                net: *cidr,
                                negate: false,
                            },
                            goto(&c.cluster),
                        ],
                    ));
                }
                o.rules
                    .push(rule(&c.ext, vec![Stmt::FibSaddrLocal, jump(n::MARK_MASQ)]));
                o.rules
                    .push(rule(&c.ext, vec![Stmt::FibSaddrLocal, goto(&c.cluster)]));
            }
            if let Some(to) = &to {
                o.rules.push(rule(&c.ext, vec![goto(to)]));
            }
            for k in &keys {
                o.elems.insert((
                    n::SERVICE_IPS.into(),
                    Elem {
                        key: *k,
                        verdict: Some(VerdictKey::Goto(c.ext.clone())),
                    },
                ));
            }
            if let Some(k) = local_port_key {
                o.elems.insert((
                    n::SERVICE_NODEPORTS.into(),
                    Elem {
                        key: k,
                        verdict: Some(VerdictKey::Goto(c.ext.clone())),
                    },
                ));
            }
        }
        if let Some(v) = no_endpoint(ext.target) {
            for k in &keys {
                o.elems.insert((
                    n::NO_ENDPOINT_SERVICES.into(),
                    Elem {
                        key: *k,
                        verdict: Some(v.clone()),
                    },
                ));
            }
            if let Some(k) = local_port_key {
                o.elems.insert((
                    n::NO_ENDPOINT_NODEPORTS.into(),
                    Elem {
                        key: k,
                        verdict: Some(v.clone()),
                    },
                ));
            }
        }
        if let Some(ranges) = &svc.source_ranges {
            o.chains.insert(c.fw.clone());
            let mut allowed: Vec<IpNet> = ranges.allow.clone();
            if ranges.allow_from_load_balancer_ips {
                allowed.extend(svc.load_balancer_ips.iter().map(|ip| IpNet::from(*ip)));
            }
            for net in allowed {
                o.rules.push(rule(
                    &c.fw,
                    vec![
                        Stmt::Saddr { net, negate: false },
                        Stmt::Verdict(Verdict::Return),
                    ],
                ));
            }
            o.rules
                .push(rule(&c.fw, vec![Stmt::Verdict(Verdict::Drop)]));
            for ip in &svc.load_balancer_ips {
                let key = Key::AddrProtoPort(*ip, proto, svc.port);
                o.elems.insert((
                    n::FIREWALL_IPS.into(),
                    Elem {
                        key,
                        verdict: Some(VerdictKey::Goto(c.fw.clone())),
                    },
                ));
            }
        }
    }

    // Endpoint sets, each once, and their endpoint chains.
    let mut done = BTreeSet::new();
    for (set_chain, set) in [
        (&c.cluster, &svc.endpoints.cluster),
        (&c.local, &svc.endpoints.local),
    ] {
        let Some(set) = set.as_ref().filter(|s| !s.is_empty()) else {
            continue;
        };
        let target = Stmt::Verdict(Verdict::Goto(set_chain.clone()));
        let used = o
            .rules
            .iter()
            .any(|r| matches!(r, Op::AddRule(r) if r.stmts.last() == Some(&target)));
        if !used {
            continue;
        }
        o.chains.insert(set_chain.clone());
        let seps: Vec<String> = set.iter().map(|e| n::endpoint_chain(name, e)).collect();
        if svc.affinity_timeout_seconds.is_some() {
            for (e, sep) in set.iter().zip(&seps) {
                let aff = n::affinity_set(name, e);
                o.rules
                    .push(rule(set_chain, vec![Stmt::SaddrInSet(aff), goto(sep)]));
            }
        }
        let count = seps.len();
        for (i, sep) in seps.iter().enumerate() {
            let mut stmts = Vec::new();
            if i + 1 < count {
                stmts.push(Stmt::OneIn(u32::try_from(count - i).unwrap_or(u32::MAX)));
            }
            stmts.push(goto(sep));
            o.rules.push(rule(set_chain, stmts));
        }
        for (e, sep) in set.iter().zip(seps) {
            if !done.insert(sep.clone()) {
                continue;
            }
            o.chains.insert(sep.clone());
            let host = IpNet::from(e.ip);
            o.rules.push(rule(
                &sep,
                vec![
                    Stmt::Saddr {
                        net: host,
                        negate: false,
                    },
                    jump(n::MARK_MASQ),
                ],
            ));
            if let Some(t) = svc.affinity_timeout_seconds {
                let aff = n::affinity_set(name, e);
                o.sets.push(Set {
                    name: aff.clone(),
                    key: KeyType::Addr,
                    map: false,
                    timeout_seconds: Some(t),
                });
                o.rules.push(rule(&sep, vec![Stmt::UpdateSaddr(aff)]));
            }
            o.rules.push(rule(
                &sep,
                vec![
                    Stmt::L4Proto(proto),
                    Stmt::Dnat(SocketAddr::new(e.ip, e.port)),
                ],
            ));
        }
    }
    o
}
