//! Render tests on hand-built plans: every key, masquerade and short-circuit decision in the
//! output must come from the plan's `PathPlan`s, whatever the service's other fields say.

use crate::build::{self, Existing};
use crate::names::{self, ServiceChains, SetNames};
use crate::sets::SetContents;
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::IpAddr;
use switchyard_core::model::ObjectRef;
use switchyard_core::plan::{
    ClusterMasquerade, Endpoint, EndpointCategories, IpFamily, LocalDetector, NodePortListen,
    PathPlan, PathRule, PlannedKey, Protocol, ProxyPlan, ServiceKey, ServicePortName,
    ServicePortPlan, SourceClass, Target, TopologyMode, VipKind,
};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn net(s: &str) -> IpNet {
    s.parse().expect("cidr")
}

fn name(svc: &str) -> ServicePortName {
    ServicePortName {
        service: ObjectRef::new("default", svc),
        port: String::new(),
        protocol: Protocol::Tcp,
    }
}

fn endpoint(addr: &str, is_local: bool) -> Endpoint {
    Endpoint {
        ip: ip(addr),
        port: 8080,
        node_name: None,
        zone: None,
        is_local,
        ready: true,
        serving: true,
        terminating: false,
    }
}

fn addr(kind: VipKind, a: &str, port: u16) -> PlannedKey {
    PlannedKey {
        kind,
        key: ServiceKey::Addr {
            ip: ip(a),
            protocol: Protocol::Tcp,
            port,
        },
    }
}

fn any_local(port: u16) -> PlannedKey {
    PlannedKey {
        kind: VipKind::NodePort,
        key: ServiceKey::AnyLocal {
            protocol: Protocol::Tcp,
            port,
        },
    }
}

fn rule(from: SourceClass, target: Target, masquerade: bool) -> PathRule {
    PathRule {
        from,
        target,
        masquerade,
    }
}

/// A service port whose non-plan fields (addresses, node port) deliberately disagree with its
/// paths: the renderer must follow the paths.
fn service(internal: PathPlan, external: Option<PathPlan>) -> ServicePortPlan {
    ServicePortPlan {
        protocol: Protocol::Tcp,
        port: 80,
        cluster_ip: ip("10.96.0.10"),
        external_ips: vec![ip("203.0.113.99")],
        load_balancer_ips: Vec::new(),
        node_port: Some(31999),
        health_check_node_port: None,
        source_ranges: None,
        affinity_timeout_seconds: None,
        endpoints: EndpointCategories {
            cluster: Some(vec![
                endpoint("10.244.1.10", true),
                endpoint("10.244.2.10", false),
            ]),
            local: Some(vec![endpoint("10.244.1.10", true)]),
            has_any: true,
        },
        internal,
        external,
        topology: TopologyMode::None,
    }
}

fn plan(services: Vec<(&str, ServicePortPlan)>, listen: NodePortListen) -> ProxyPlan {
    ProxyPlan {
        family: IpFamily::V4,
        node_name: "n1".into(),
        node_ips: vec![ip("192.168.0.10")],
        node_port_addresses: listen,
        // Says "masquerade everything": must not matter, the paths' rules decide.
        cluster_masquerade: ClusterMasquerade::All,
        pod_sources: LocalDetector::Cidrs(vec![net("10.244.0.0/16"), net("10.245.0.0/16")]),
        service_cidrs: vec![net("10.96.0.0/16")],
        services: services
            .into_iter()
            .map(|(n, s)| (name(n), s))
            .collect::<BTreeMap<_, _>>(),
        warnings: Vec::new(),
    }
}

/// The full sync's restore text, one line per rule.
fn restore(plan: &ProxyPlan) -> Vec<String> {
    let sets = SetNames::new(IpFamily::V4);
    let (tx, _) = build::full(plan, &sets, &Existing::default(), &[]);
    tx.restore_text().lines().map(str::to_string).collect()
}

/// The rules appended to `chain`, without the `-A chain ` prefix.
fn chain(lines: &[String], chain: &str) -> Vec<String> {
    let prefix = format!("-A {chain} ");
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(str::to_string)
        .collect()
}

fn comment(svc: &str) -> String {
    format!("-m comment --comment \"{}\"", name(svc))
}

/// The endpoint picks over these endpoints (port 8080), without `-A chain`.
fn picks(endpoints: &[&str]) -> Vec<String> {
    let n = endpoints.len();
    endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let statistic = if i + 1 < n {
                format!(
                    "-m statistic --mode random --probability {:.10} ",
                    1.0 / (n - i) as f64
                )
            } else {
                String::new()
            };
            format!("-p tcp {statistic}-j DNAT --to-destination {e}:8080")
        })
        .collect()
}

#[test]
fn the_internal_path_renders_its_rules_not_the_node_masquerade_setting() {
    let internal = PathPlan {
        keys: vec![addr(VipKind::ClusterIp, "10.96.0.1", 80)],
        rules: vec![
            rule(SourceClass::Pod, Target::Cluster, false),
            rule(SourceClass::Any, Target::Cluster, true),
        ],
    };
    let p = plan(
        vec![("web", service(internal, None))],
        NodePortListen::Addresses(vec![ip("192.168.0.10")]),
    );
    let lines = restore(&p);
    let c = ServiceChains::new(&name("web"), IpFamily::V4);
    let to_cluster = format!("{} -j {}", comment("web"), c.cluster);
    assert_eq!(
        chain(&lines, &c.svc),
        [
            format!("-s 10.244.0.0/16 {to_cluster}"),
            format!("-s 10.245.0.0/16 {to_cluster}"),
            format!("-j {}", names::MARK_MASQ),
            to_cluster.clone(),
        ]
    );
    // The dispatch key is the plan's, not `cluster_ip` (10.96.0.10).
    assert_eq!(
        chain(&lines, "SWYD-T-10"),
        [format!(
            "-d 10.96.0.1/32 -p tcp --dport 80 {} -j {}",
            comment("web"),
            c.svc
        )]
    );
    let sets = SetContents::for_plan(&p);
    assert_eq!(
        sets.vips.into_iter().collect::<Vec<_>>(),
        [(ip("10.96.0.1"), Protocol::Tcp, 80)]
    );
    assert_eq!(
        sets.cluster_ips.into_iter().collect::<Vec<_>>(),
        [ip("10.96.0.1")]
    );
    // No local-endpoint chain: no rule sends to it, although the service has local endpoints.
    assert!(!lines.iter().any(|l| l.contains(&c.local)), "{lines:#?}");
    assert!(!lines.iter().any(|l| l.contains(&c.ext)), "{lines:#?}");
    // Nothing from the service's own address fields.
    for stray in ["203.0.113.99", "31999", "10.96.0.10/"] {
        assert!(
            !lines.iter().any(|l| l.contains(stray)),
            "{stray}: {lines:#?}"
        );
    }
}

#[test]
fn the_external_path_short_circuits_by_source_class_and_falls_back_to_the_filter() {
    // externalTrafficPolicy: Local, no local endpoint: pods and the host go to the cluster
    // endpoints, everything else is dropped.
    let internal = PathPlan {
        keys: vec![addr(VipKind::ClusterIp, "10.96.0.2", 80)],
        rules: vec![rule(SourceClass::Any, Target::Cluster, false)],
    };
    let external = PathPlan {
        keys: vec![
            addr(VipKind::ExternalIp, "203.0.113.5", 80),
            addr(VipKind::NodePort, "192.168.0.10", 30080),
        ],
        rules: vec![
            rule(SourceClass::Pod, Target::Cluster, false),
            rule(SourceClass::Host, Target::Cluster, true),
            rule(SourceClass::Any, Target::Drop, false),
        ],
    };
    let p = plan(
        vec![("np", service(internal, Some(external)))],
        NodePortListen::Addresses(vec![ip("192.168.0.10")]),
    );
    let lines = restore(&p);
    let c = ServiceChains::new(&name("np"), IpFamily::V4);
    let to_cluster = format!("{} -j {}", comment("np"), c.cluster);
    assert_eq!(
        chain(&lines, &c.ext),
        [
            format!("-s 10.244.0.0/16 {to_cluster}"),
            format!("-s 10.245.0.0/16 {to_cluster}"),
            format!("-m addrtype --src-type LOCAL -j {}", names::MARK_MASQ),
            format!("-m addrtype --src-type LOCAL {to_cluster}"),
        ],
        "the last rule (drop) falls off the chain, untranslated"
    );
    // The internal path sends to one set only: its chain picks and DNATs itself.
    assert_eq!(
        chain(&lines, &c.svc),
        picks(&["10.244.1.10", "10.244.2.10"])
    );
    assert_eq!(
        chain(&lines, &c.cluster),
        picks(&["10.244.1.10", "10.244.2.10"])
    );
    let sets = SetContents::for_plan(&p);
    let external_keys = [
        (ip("192.168.0.10"), Protocol::Tcp, 30080),
        (ip("203.0.113.5"), Protocol::Tcp, 80),
    ];
    assert_eq!(sets.drop.iter().copied().collect::<Vec<_>>(), external_keys);
    assert!(sets.reject.is_empty());
    for k in external_keys {
        assert!(
            sets.vips.contains(&k),
            "{k:?} is dispatched to the ext chain"
        );
    }
}

#[test]
fn an_untranslated_rule_before_the_last_returns() {
    let internal = PathPlan {
        keys: vec![addr(VipKind::ClusterIp, "10.96.0.3", 80)],
        rules: vec![
            rule(SourceClass::Host, Target::Reject, false),
            rule(SourceClass::Any, Target::Local, true),
        ],
    };
    let p = plan(
        vec![("odd", service(internal, None))],
        NodePortListen::Addresses(Vec::new()),
    );
    let lines = restore(&p);
    let c = ServiceChains::new(&name("odd"), IpFamily::V4);
    assert_eq!(
        chain(&lines, &c.svc),
        [
            "-m addrtype --src-type LOCAL -j RETURN".to_string(),
            format!("-j {}", names::MARK_MASQ),
            picks(&["10.244.1.10"])[0].clone(),
        ]
    );
    assert!(!lines.iter().any(|l| l.contains(&c.local)), "{lines:#?}");
    assert!(!lines.iter().any(|l| l.contains(&c.cluster)), "{lines:#?}");
}

#[test]
fn keys_on_every_local_address_use_the_addrtype_chains() {
    let internal = PathPlan {
        keys: vec![addr(VipKind::ClusterIp, "10.96.0.4", 80)],
        rules: vec![rule(SourceClass::Any, Target::Cluster, false)],
    };
    let served = PathPlan {
        keys: vec![any_local(30100)],
        rules: vec![rule(SourceClass::Any, Target::Cluster, true)],
    };
    let refused = PathPlan {
        keys: vec![any_local(30200)],
        rules: vec![rule(SourceClass::Any, Target::Reject, false)],
    };
    let rejected_internal = PathPlan {
        keys: vec![addr(VipKind::ClusterIp, "10.96.0.5", 80)],
        rules: vec![rule(SourceClass::Any, Target::Reject, false)],
    };
    let p = plan(
        vec![
            ("a", service(internal, Some(served))),
            ("b", service(rejected_internal, Some(refused))),
        ],
        NodePortListen::AllLocal,
    );
    let lines = restore(&p);
    let a = ServiceChains::new(&name("a"), IpFamily::V4);
    assert_eq!(
        chain(&lines, names::NODEPORTS),
        [format!(
            "-p tcp --dport 30100 {} -j {}",
            comment("a"),
            a.ext
        )]
    );
    assert_eq!(
        chain(&lines, names::NODEPORT_FILTER),
        [format!(
            "-p tcp --dport 30200 {} -j REJECT --reject-with tcp-reset",
            comment("b")
        )]
    );
    assert_eq!(
        chain(&lines, &a.ext),
        [format!("-j {}", names::MARK_MASQ)]
            .into_iter()
            .chain(picks(&["10.244.1.10", "10.244.2.10"]))
            .collect::<Vec<_>>()
    );
    let sets = SetContents::for_plan(&p);
    assert_eq!(
        sets.reject.into_iter().collect::<Vec<_>>(),
        [(ip("10.96.0.5"), Protocol::Tcp, 80)]
    );
    assert_eq!(sets.vips.len(), 1, "AnyLocal keys are not set entries");
}

#[test]
fn filter_rejects_live_cluster_ips_then_drops_the_rest_of_the_service_cidrs() {
    let internal = PathPlan {
        keys: vec![addr(VipKind::ClusterIp, "10.96.0.1", 80)],
        rules: vec![rule(SourceClass::Any, Target::Cluster, false)],
    };
    let p = plan(
        vec![("web", service(internal, None))],
        NodePortListen::Addresses(Vec::new()),
    );
    let lines = restore(&p);
    let filter = chain(&lines, names::FILTER);
    let live = filter
        .iter()
        .rposition(|r| r.contains("SWYD4-CLUSTER-IPS"))
        .expect("cluster-IP reject");
    let cidr = filter
        .iter()
        .position(|r| r.starts_with("-d 10.96.0.0/16 "))
        .expect("service CIDR drop");
    assert!(live < cidr, "{filter:#?}");
    assert!(filter[cidr].ends_with("-j DROP"), "{}", filter[cidr]);
    assert_eq!(
        cidr,
        filter.len() - 1,
        "the CIDR drop comes last: {filter:#?}"
    );

    assert_eq!(
        chain(&lines, names::FORWARD),
        [
            "-m conntrack --ctstate INVALID -m comment --comment \"invalid, nat would not translate it\" -j DROP",
            "-m mark --mark 0x4000/0x4000 -m comment --comment \"masqueraded service traffic\" -j ACCEPT",
            "-m conntrack --ctstate DNAT -m comment --comment \"service traffic and its replies\" -j ACCEPT",
        ]
    );
    // Without service CIDRs, nothing is dropped by address.
    let mut none = p.clone();
    none.service_cidrs.clear();
    let filter = chain(&restore(&none), names::FILTER);
    assert!(
        !filter.iter().any(|r| r.contains("unallocated")),
        "{filter:#?}"
    );
}

#[test]
fn a_partial_sync_rewrites_the_filter_when_the_service_cidrs_change() {
    let internal = PathPlan {
        keys: vec![addr(VipKind::ClusterIp, "10.96.0.1", 80)],
        rules: vec![rule(SourceClass::Any, Target::Cluster, false)],
    };
    let old = plan(
        vec![("web", service(internal, None))],
        NodePortListen::Addresses(Vec::new()),
    );
    let sets = SetNames::new(IpFamily::V4);
    let (_, after) = build::full(&old, &sets, &Existing::default(), &[]);
    let committed = build::Committed {
        plan: old.clone(),
        sets: after.sets,
        existing: after.existing,
    };
    let mut new = old.clone();
    new.service_cidrs.push(net("10.97.0.0/16"));
    let changes = switchyard_core::diff(&old, &new);
    let (tx, _) = build::partial(&committed, &new, &changes, &sets, &[]);
    let text = tx.restore_text();
    assert!(
        text.contains("-A SWYD-FILTER -d 10.97.0.0/16 "),
        "partial sync lost the new CIDR:\n{text}"
    );
    let (tx, _) = build::partial(
        &committed,
        &old,
        &switchyard_core::diff(&old, &old),
        &sets,
        &[],
    );
    assert!(
        !tx.restore_text().contains("SWYD-FILTER"),
        "an unchanged plan leaves the filter alone"
    );
}

/// What a walk of the rendered nat rules does with one source: whether it was marked for
/// masquerade and which endpoints it may be DNATed to (all the picks it can reach).
#[derive(Debug, PartialEq, Eq)]
struct Walk {
    masquerade: bool,
    endpoints: Vec<IpAddr>,
}

/// Walks `chain` of a full restore text for a source that is (or is not) in the first pod
/// CIDR and (or not) a local address. `statistic` matches may or may not match, so every
/// DNAT reachable is collected; the walk stops at the last pick, which has none.
fn walk(lines: &[String], chain_name: &str, pod: bool, local: bool, w: Walk) -> Option<Walk> {
    let mut w = w;
    let first_pod = "-s 10.244.0.0/16";
    for r in chain(lines, chain_name) {
        let matched = (!r.contains("-s ")
            || (r.contains(&format!("! {first_pod}")) && !pod)
            || (r.starts_with(first_pod) && pod))
            && (!r.contains("--src-type LOCAL") || (r.contains("! --src-type LOCAL") != local));
        if !matched {
            continue;
        }
        if r.ends_with(&format!("-j {}", names::MARK_MASQ)) {
            w.masquerade = true;
        } else if r.ends_with("-j RETURN") {
            return None;
        } else if let Some(dest) = r.split("--to-destination ").nth(1) {
            let ep: std::net::SocketAddr = dest.parse().expect("endpoint");
            w.endpoints.push(ep.ip());
            if !r.contains("statistic") {
                return Some(w);
            }
        } else if let Some(next) = r.split("-j ").last().filter(|j| j.starts_with("SWYD-s")) {
            return walk(lines, next, pod, local, w);
        } else {
            panic!("unexpected rule in {chain_name}: {r}");
        }
    }
    // Falling off the chain: untranslated (a pick chain always ends with an unconditional
    // DNAT, so only a path chain gets here).
    None
}

/// Every rule list of up to three rules (the last `Any`, as core makes them), with one and with
/// two pod CIDRs: for each kind of source, the rendered chain masquerades exactly when the
/// plan's first matching rule says so and DNATs only to that rule's endpoint set — whether the
/// path got its picks inline or kept the jump shape.
#[test]
fn rendered_paths_decide_exactly_as_the_plan_rules_for_every_source() {
    let classes = [SourceClass::Pod, SourceClass::Host, SourceClass::Any];
    let targets = [Target::Cluster, Target::Local, Target::Drop];
    let mut single = Vec::new();
    for from in classes {
        for target in targets {
            for masquerade in [false, true] {
                single.push(rule(from, target, masquerade));
            }
        }
    }
    let lasts: Vec<PathRule> = single
        .iter()
        .copied()
        .filter(|r| r.from == SourceClass::Any)
        .collect();
    let mut lists: Vec<Vec<PathRule>> = lasts.iter().map(|l| vec![*l]).collect();
    for a in &single {
        for l in &lasts {
            lists.push(vec![*a, *l]);
            for b in &single {
                lists.push(vec![*a, *b, *l]);
            }
        }
    }
    let (cluster, local) = (ip("10.244.2.10"), ip("10.244.1.10"));
    let mut inlined = 0;
    for pod_cidrs in [
        vec![net("10.244.0.0/16")],
        vec![net("10.244.0.0/16"), net("10.250.0.0/16")],
    ] {
        for rules in &lists {
            let path = PathPlan {
                keys: vec![addr(VipKind::ClusterIp, "10.96.0.1", 80)],
                rules: rules.clone(),
            };
            if !path.translates() {
                continue;
            }
            let mut svc = service(path.clone(), None);
            svc.endpoints.cluster = Some(vec![endpoint("10.244.2.10", false)]);
            svc.endpoints.local = Some(vec![endpoint("10.244.1.10", true)]);
            let mut p = plan(vec![("p", svc)], NodePortListen::Addresses(Vec::new()));
            p.pod_sources = LocalDetector::Cidrs(pod_cidrs.clone());
            let lines = restore(&p);
            let c = ServiceChains::new(&name("p"), IpFamily::V4);
            if !lines
                .iter()
                .any(|l| l.contains(&c.cluster) || l.contains(&c.local))
            {
                inlined += 1;
            }
            for (pod, local_src) in [(true, false), (true, true), (false, true), (false, false)] {
                let first = rules
                    .iter()
                    .find(|r| match r.from {
                        SourceClass::Pod => pod,
                        SourceClass::Host => local_src,
                        SourceClass::Any => true,
                    })
                    .expect("the last rule is Any");
                let expected = match first.target {
                    Target::Cluster => Some(Walk {
                        masquerade: first.masquerade,
                        endpoints: vec![cluster],
                    }),
                    Target::Local => Some(Walk {
                        masquerade: first.masquerade,
                        endpoints: vec![local],
                    }),
                    Target::Reject | Target::Drop => None,
                };
                let start = Walk {
                    masquerade: false,
                    endpoints: Vec::new(),
                };
                let got = walk(&lines, &c.svc, pod, local_src, start);
                // An untranslated source may have been marked on its way: only the filter
                // sees it then, and it is refused, so the mark does not matter.
                let got = got.filter(|w| !w.endpoints.is_empty());
                assert_eq!(
                    got,
                    expected,
                    "rules {rules:?}, pod CIDRs {pod_cidrs:?}, pod={pod} local={local_src}:\n{}",
                    chain(&lines, &c.svc).join("\n")
                );
            }
        }
    }
    assert!(
        inlined > 100,
        "most rule lists render without a set chain: {inlined}"
    );
}

/// The shape that keeps `iptables-save` usable at scale: a service port without affinity owns
/// at most two chains (one per path), whatever its endpoint count, and no endpoint chain; with
/// affinity, endpoint chains remain (the `recent` lists need them).
#[test]
fn a_service_port_without_affinity_owns_at_most_two_chains() {
    let internal = PathPlan {
        keys: vec![addr(VipKind::ClusterIp, "10.96.0.1", 80)],
        rules: vec![
            rule(SourceClass::Pod, Target::Cluster, false),
            rule(SourceClass::Any, Target::Cluster, true),
        ],
    };
    let external = PathPlan {
        keys: vec![addr(VipKind::NodePort, "192.168.0.10", 30080)],
        rules: vec![rule(SourceClass::Any, Target::Cluster, true)],
    };
    let many: Vec<Endpoint> = (0..50)
        .map(|i| endpoint(&format!("10.244.3.{i}"), false))
        .collect();
    let mut clusterip = service(internal.clone(), None);
    clusterip.endpoints.cluster = Some(many.clone());
    let mut nodeport = service(internal.clone(), Some(external));
    nodeport.endpoints.cluster = Some(many.clone());
    let mut sticky = service(internal, None);
    sticky.affinity_timeout_seconds = Some(10800);
    let mut p = plan(
        vec![("cip", clusterip), ("np", nodeport), ("sticky", sticky)],
        NodePortListen::Addresses(vec![ip("192.168.0.10")]),
    );
    p.pod_sources = LocalDetector::Cidrs(vec![net("10.244.0.0/16")]);
    let lines = restore(&p);
    let declared = |svc: &str| -> Vec<String> {
        let group = &ServiceChains::new(&name(svc), IpFamily::V4).svc[..17];
        lines
            .iter()
            .filter_map(|l| l.strip_prefix(':'))
            .filter(|l| l.starts_with(group))
            .map(|l| l.split(' ').next().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(declared("cip").len(), 1, "{:?}", declared("cip"));
    assert_eq!(declared("np").len(), 2, "{:?}", declared("np"));
    assert_eq!(
        declared("sticky").len(),
        4,
        "svc, clu and one chain per endpoint: {:?}",
        declared("sticky")
    );
    let c = ServiceChains::new(&name("cip"), IpFamily::V4);
    assert_eq!(
        chain(&lines, &c.svc)[0],
        format!("! -s 10.244.0.0/16 -j {}", names::MARK_MASQ),
        "masquerade unless from a pod"
    );
    assert_eq!(
        chain(&lines, &c.svc)
            .iter()
            .filter(|r| r.contains("-j DNAT"))
            .count(),
        50
    );
    // Hairpin: one rule against the set of endpoint pairs, holding every endpoint once.
    assert_eq!(
        chain(&lines, names::POSTROUTING)[0],
        "-m conntrack --ctstate DNAT -m set --match-set SWYD4-HAIRPIN dst,dst,src -m comment --comment \"hairpin\" -j MARK --or-mark 0x4000"
    );
    let sets = SetContents::for_plan(&p);
    assert_eq!(sets.hairpin.len(), 52, "50 + the sticky service's 2");
}

/// The shared skeleton's text stands for its chains and rules exactly: a full sync prints the
/// same bytes as rendering every line, for both families, both NodePort listens, with stale
/// chains and missing jumps around it, and with set names of its own.
#[test]
fn the_shared_skeleton_prints_what_rendering_it_prints() {
    let internal = PathPlan {
        keys: vec![addr(VipKind::ClusterIp, "10.96.0.4", 80)],
        rules: vec![rule(SourceClass::Pod, Target::Cluster, false)],
    };
    let external = PathPlan {
        keys: vec![
            any_local(30100),
            addr(VipKind::NodePort, "192.168.0.10", 30100),
        ],
        rules: vec![rule(SourceClass::Any, Target::Cluster, true)],
    };
    let existing = Existing {
        nat: ["SWYD-sold00000000-svc", "SWYD-OLD"]
            .map(String::from)
            .into(),
        filter: Default::default(),
    };
    for family in [IpFamily::V4, IpFamily::V6] {
        for listen in [
            NodePortListen::AllLocal,
            NodePortListen::Addresses(vec![ip("192.168.0.10")]),
        ] {
            let mut p = plan(
                vec![("a", service(internal.clone(), Some(external.clone())))],
                listen,
            );
            p.family = family;
            let mut own = SetNames::new(family);
            own.vips = "OTHER-VIPS".into();
            for sets in [SetNames::new(family), own] {
                let (tx, _) = build::full(&p, &sets, &existing, &crate::render::base_jumps());
                let shared = tx
                    .nat
                    .skeleton
                    .clone()
                    .expect("a full sync has the skeleton");
                assert!(
                    shared.rules_text.contains(&sets.vips),
                    "built for its set names"
                );
                let mut rendered = tx.clone();
                rendered.nat.skeleton = None;
                assert_eq!(tx.restore_text(), rendered.restore_text());
            }
        }
    }
}
