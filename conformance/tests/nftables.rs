//! nftables-backend behaviour the cross-backend matrix cannot show: the kernel's own listing
//! matches our printer, failures name the object and service and keep the old rules, partial
//! syncs touch only what changed, IPv6. Needs root (network namespaces).

use std::collections::BTreeMap;
use std::path::Path;
use switchyard_conformance::netns::{require_root, unique_prefix, Netns};
use switchyard_conformance::runner::plan_for;
use switchyard_conformance::scenarios::{http_slice, manifest, ready, svc};
use switchyard_core::{diff, Dataplane, DataplaneError, IpFamily, ProxyPlan};
use switchyard_nftables::NftablesDataplane;

mod support;

/// Runs `f` with a fresh namespace and a dataplane whose socket lives in it.
fn in_netns(family: IpFamily, f: impl FnOnce(&Netns, &mut NftablesDataplane) + Send + 'static) {
    require_root().expect("root");
    let ns = Netns::create(&format!("{}-nft", unique_prefix())).expect("netns");
    let path = ns.path();
    let ns = std::sync::Arc::new(ns);
    let ns2 = ns.clone();
    std::thread::spawn(move || {
        switchyard_conformance::netns::enter_path(&path).expect("enter");
        let mut dp = NftablesDataplane::new(family);
        f(&ns2, &mut dp);
    })
    .join()
    .expect("test thread");
}

fn block<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt")
        .block_on(fut)
}

fn example_plan() -> ProxyPlan {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster.yaml"),
    )
    .expect("example");
    plan_for(&text, Default::default()).expect("plan")
}

/// Sorted (chain, rule) pairs, and the elements of each set or map.
type Parsed = (Vec<(String, String)>, BTreeMap<String, Vec<String>>);

/// (chain, rule) pairs and (map, elements) from `nft list table` output.
fn parse_listing(text: &str) -> Parsed {
    let mut rules = Vec::new();
    let mut elems: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut chain: Option<String> = None;
    let mut set: Option<String> = None;
    let mut in_elems = false;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("chain ") {
            chain = rest.strip_suffix(" {").map(str::to_string);
            continue;
        }
        if let Some(rest) = line
            .strip_prefix("map ")
            .or_else(|| line.strip_prefix("set "))
        {
            set = rest.strip_suffix(" {").map(str::to_string);
            chain = None;
            continue;
        }
        if line.starts_with("elements = {") || in_elems {
            let body = line.trim_start_matches("elements = {");
            in_elems = !body.ends_with('}');
            let body = body.trim_end_matches('}');
            let name = set.clone().unwrap_or_default();
            elems.entry(name).or_default().extend(
                body.split(',')
                    .map(|e| e.trim().to_string())
                    .filter(|e| !e.is_empty()),
            );
            continue;
        }
        if line == "}"
            || line.is_empty()
            || line.starts_with("type ")
            || line.starts_with("flags ")
            || line.starts_with("size ")
            || line.starts_with("timeout ")
        {
            continue;
        }
        if let Some(c) = &chain {
            rules.push((c.clone(), line.to_string()));
        }
    }
    rules.sort();
    (rules, elems)
}

/// (chain, rule) pairs and (map, elements) from our `nft -f` text.
fn parse_ours(text: &str) -> Parsed {
    let mut rules = Vec::new();
    let mut elems: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.splitn(5, ' ').collect();
        match fields.as_slice() {
            ["add", "rule", _, _, rest] => {
                let (chain, rule) = rest.split_once(' ').expect("chain and rule");
                rules.push((chain.to_string(), rule.to_string()));
            }
            ["add", "element", _, _, rest] => {
                let (set, body) = rest.split_once(' ').expect("set and body");
                let body = body.trim().trim_start_matches('{').trim_end_matches('}');
                elems.entry(set.to_string()).or_default().extend(
                    body.split(',')
                        .map(|e| e.trim().to_string())
                        .filter(|e| !e.is_empty()),
                );
            }
            _ => {}
        }
    }
    rules.sort();
    (rules, elems)
}

/// Applies `plan`, lists the table, and compares every rule and element with our printer.
fn assert_listing_matches_printer(ns: &Netns, dp: &mut NftablesDataplane, plan: &ProxyPlan) {
    let ours = dp.render(plan, None);
    block(dp.apply(plan, None)).expect("apply");
    let fam = match plan.family {
        IpFamily::V4 => "ip",
        IpFamily::V6 => "ip6",
    };
    let listing = ns
        .exec("nft", &["list", "table", fam, "switchyard"])
        .expect("nft list");
    let (kernel_rules, mut kernel_elems) = parse_listing(&listing);
    let (our_rules, mut our_elems) = parse_ours(&ours);
    assert!(our_rules.len() > 50, "the plan should render many rules");
    let missing: Vec<_> = our_rules
        .iter()
        .filter(|r| !kernel_rules.contains(r))
        .collect();
    let extra: Vec<_> = kernel_rules
        .iter()
        .filter(|r| !our_rules.contains(r))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "printer vs kernel:\nonly ours: {missing:#?}\nonly kernel: {extra:#?}"
    );
    for v in kernel_elems.values_mut().chain(our_elems.values_mut()) {
        v.sort();
    }
    assert_eq!(kernel_elems, our_elems, "map and set elements differ");
}

#[test]
fn nft_list_matches_our_printer() {
    in_netns(IpFamily::V4, |ns, dp| {
        assert_listing_matches_printer(ns, dp, &example_plan());
    });
}

/// A plan that makes the backend emit every statement and object kind it has: NodePorts on
/// every local address (the `np-` objects), 20 endpoints (the halving pick), both traffic
/// policies Local with short-circuit, session affinity on a NodePort (per-service chains
/// behind `service-nodeports`), source ranges, no-endpoint reject and drop.
fn feature_plan(family: IpFamily) -> ProxyPlan {
    let (node, vip, ep, ext, cidr, range, kind) = match family {
        IpFamily::V4 => (
            "192.168.0.10",
            "10.96.0.",
            "10.244.1.",
            "198.51.100.",
            "10.244.0.0/16",
            "203.0.113.0/24",
            "IPv4",
        ),
        IpFamily::V6 => (
            "fd00:1::10",
            "fd00:96::",
            "fd00:244::",
            "2001:db8:5::",
            "fd00:244::/56",
            "2001:db8:7::/48",
            "IPv6",
        ),
    };
    let service = |name: &str, ip: u32, spec: &str| {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  clusterIP: {vip}{ip}\n  ipFamilies: [{kind}]\n{spec}"
        )
    };
    let slice = |name: &str, eps: &[(u32, &str)]| {
        let mut y = format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-x, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: {kind}\nports: [{{name: '', port: 8080, protocol: TCP}}]\nendpoints:\n"
        );
        for (i, node) in eps {
            y.push_str(&format!("- addresses: ['{ep}{i}']\n  nodeName: {node}\n"));
        }
        y
    };
    let twenty: Vec<(u32, &str)> = (10..30)
        .map(|i| (i, if i < 15 { "n1" } else { "n2" }))
        .collect();
    let mut yaml = format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: n1}}\nstatus:\n  addresses: [{{type: InternalIP, address: '{node}'}}]\n"
    );
    yaml += &service(
        "big",
        1,
        "  type: NodePort\n  ports: [{port: 80, targetPort: 8080, nodePort: 30100}]\n",
    );
    yaml += &slice("big", &twenty);
    yaml += &service("local", 2, "  type: NodePort\n  externalTrafficPolicy: Local\n  internalTrafficPolicy: Local\n  ports: [{port: 80, targetPort: 8080, nodePort: 30101}]\n");
    yaml += &slice("local", &[(40, "n1"), (41, "n1"), (42, "n2")]);
    yaml += &service("sticky", 3, "  type: NodePort\n  sessionAffinity: ClientIP\n  ports: [{port: 80, targetPort: 8080, nodePort: 30102}]\n");
    yaml += &slice("sticky", &[(50, "n1"), (51, "n2")]);
    yaml += &service("lb", 4, &format!("  type: LoadBalancer\n  externalIPs: ['{ext}7']\n  loadBalancerSourceRanges: ['{range}']\n  ports: [{{port: 80, targetPort: 8080, nodePort: 30104}}]\n"));
    yaml += &format!("status:\n  loadBalancer:\n    ingress:\n    - ip: '{ext}9'\n");
    yaml += &slice("lb", &[(60, "n2")]);
    yaml += &service("none", 5, "  ports: [{port: 80}]\n");
    yaml += &service("remote-only", 6, "  type: NodePort\n  externalTrafficPolicy: Local\n  ports: [{port: 80, targetPort: 8080, nodePort: 30103}]\n");
    yaml += &slice("remote-only", &[(70, "n2")]);
    let mut m = switchyard_agent::source::Manifests::default();
    m.add_text(Path::new("features.yaml"), &yaml).expect("yaml");
    let config = switchyard_core::ProxyConfig::new(family, "n1")
        .with_cluster_cidrs([cidr.parse().expect("cidr")])
        .with_node_port_addresses(switchyard_core::NodePortAddresses::All)
        .with_service_cidrs(SERVICE_CIDRS.iter().map(|c| c.parse().expect("cidr")));
    let plan = switchyard_core::plan(&m.to_state("n1"), &config);
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    plan
}

/// Service CIDRs of the feature plan: traffic to unowned addresses inside them is dropped.
const SERVICE_CIDRS: [&str; 2] = ["10.96.0.0/12", "fd00:96::/108"];

/// Both kernel shapes: the count search testing the slot maps themselves (newer kernels), and
/// the plain slot sets older kernels need (Debian 12's 6.1). The fallback shape must load on
/// every kernel; the newer one must load exactly when `probe()` says the kernel has it (and be
/// refused otherwise), so the probe and the shapes cannot drift apart. This is the rule-shape
/// guard run on every kernel of the matrix (the VM runs this test binary too).
#[test]
fn nft_list_matches_our_printer_for_every_statement_in_both_families() {
    for (family, map_lookup_as_set) in [
        (IpFamily::V4, true),
        (IpFamily::V6, true),
        (IpFamily::V4, false),
        (IpFamily::V6, false),
    ] {
        in_netns(family, move |ns, dp| {
            block(dp.probe()).expect("probe");
            let kernel_has_it = dp.features().map_lookup_as_set;
            let features = switchyard_nftables::Features { map_lookup_as_set };
            *dp = NftablesDataplane::new(family).with_features(features);
            let plan = feature_plan(family);
            if map_lookup_as_set && !kernel_has_it {
                match block(dp.apply(&plan, None)) {
                    Err(DataplaneError::KernelRejected {
                        errno: Some(22), ..
                    }) => return,
                    other => panic!(
                        "probe said this kernel cannot look a map's key up as a set, \
                         but the shape that needs it gave {other:?}"
                    ),
                }
            }
            let text = dp.render(&plan, None);
            let count_lookup = if map_lookup_as_set {
                "@np-cluster-endpoint-2 goto np-cluster-count-3-20"
            } else {
                "@np-cluster-slot-2 goto np-cluster-count-3-20"
            };
            let cidr = SERVICE_CIDRS[usize::from(family == IpFamily::V6)];
            let service_cidr_drop = format!("daddr {cidr} drop");
            // Every statement form, so a printer/kernel mismatch in any of them shows.
            for want in [
                "daddr . meta l4proto . th dport @pod-cluster.masq-cluster-services goto pod-cluster.masq-cluster",
                "fib daddr type local goto node-ports",
                "meta l4proto . th dport @np-pod-cluster.host-masq-cluster.local-services goto np-pod-cluster.host-masq-cluster.local",
                "meta l4proto . th dport vmap @service-nodeports",
                "to meta l4proto . th dport map @np-cluster-endpoint-19",
                "numgen random mod 20 < 10 goto cluster-pick-0-10",
                "numgen random mod 10 0 goto cluster-dnat-10",
                count_lookup,
                &service_cidr_drop,
                "ct status dnat",
                "saddr . ",
                "fib saddr type local jump mark-for-masquerade",
                "fib daddr type local meta l4proto . th dport @no-endpoint-drop-nodeports drop",
                "@no-endpoint-reject goto reject-chain",
                "update @aff-",
                "vmap @firewall-ips",
                "reject with tcp reset",
                "masquerade fully-random",
                "meta mark set meta mark | 0x00004000",
                "ct state new jump service-filter",
            ] {
                assert!(
                    text.contains(want),
                    "{family}: render lacks {want:?}:\n{text}"
                );
            }
            assert_listing_matches_printer(ns, dp, &plan);
        });
    }
}

/// Services a and c (data path) and b (session affinity: per-service chains).
fn services(a_eps: &[&str], b_eps: &[&str]) -> ProxyPlan {
    let yaml = manifest(&[
        svc("a", "10.96.0.1").http().yaml(),
        http_slice("a", &ready(a_eps)),
        svc("b", "10.96.0.2")
            .http()
            .spec("sessionAffinity: ClientIP")
            .yaml(),
        http_slice("b", &ready(b_eps)),
        svc("c", "10.96.0.3").http().yaml(),
        http_slice("c", &ready(&["pod-b2"])),
    ]);
    plan_for(&yaml, Default::default()).expect("plan")
}

fn list(ns: &Netns) -> String {
    ns.exec("nft", &["list", "table", "ip", "switchyard"])
        .expect("nft list")
}

/// The lines of an `nft -f` text that change rules or chains (anything but elements).
fn rule_changes(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.starts_with("add element") && !l.starts_with("delete element"))
        .collect()
}

#[test]
fn endpoint_changes_on_the_data_path_are_elements_only() {
    in_netns(IpFamily::V4, |ns, dp| {
        let first = services(&["pod-a1"], &["pod-a2"]);
        block(dp.apply(&first, None)).expect("full");

        // One endpoint replaced by another: same count, so only slot-map elements and the
        // hairpin pairs change. No rule is added, so the kernel validates nothing.
        let second = services(&["pod-a3"], &["pod-a2"]);
        let text = dp.render(&second, Some(&diff(&first, &second)));
        assert!(rule_changes(&text).is_empty(), "rules changed:\n{text}");
        assert!(
            text.contains("delete element ip switchyard cluster-endpoint-0 { 10.96.0.1 . tcp . 80 }")
                && text.contains(
                    "add element ip switchyard cluster-endpoint-0 { 10.96.0.1 . tcp . 80 : 10.244.1.12 . 8080 }"
                ),
            "{text}"
        );
        let stats = block(dp.apply(&second, Some(&diff(&first, &second)))).expect("partial");
        assert!(!stats.full && stats.service_ports_written == 1, "{stats:?}");
        let now = list(ns);
        assert!(
            now.contains("10.96.0.1 . tcp . 80 : 10.244.1.12 . 8080")
                && !now.contains("10.244.1.10 . 10.244.1.10"),
            "new endpoint in, old hairpin pair out:\n{now}"
        );

        // A second endpoint: a count no service had, so the shared pick for two endpoints
        // appears (rules in shared chains only), and goes again when a is back to one.
        let third = services(&["pod-a3", "pod-b1"], &["pod-a2"]);
        let text = dp.render(&third, Some(&diff(&second, &third)));
        let changed = rule_changes(&text);
        assert!(
            changed.iter().all(|l| l.contains("cluster-")) && !changed.is_empty(),
            "only shared pick objects may change:\n{text}"
        );
        assert!(!text.contains("default/"), "no per-service object:\n{text}");
        block(dp.apply(&third, Some(&diff(&second, &third)))).expect("partial");
        let now = list(ns);
        assert!(
            now.contains("10.96.0.1 . tcp . 80 : 10.244.2.10 . 8080")
                && now.contains("chain cluster-pick-0-2"),
            "{now}"
        );
        block(dp.apply(&second, Some(&diff(&third, &second)))).expect("partial back");
        let now = list(ns);
        assert!(
            !now.contains("cluster-pick-0-2") && !now.contains("cluster-endpoint-1"),
            "the two-endpoint pick outlived its last user:\n{now}"
        );
    });
}

#[test]
fn partial_sync_touches_only_the_changed_service() {
    in_netns(IpFamily::V4, |ns, dp| {
        let first = services(&["pod-a1"], &["pod-a2"]);
        block(dp.apply(&first, None)).expect("full");
        let second = services(&["pod-a1"], &["pod-a2", "pod-b1"]);
        let changes = diff(&first, &second);
        let text = dp.render(&second, Some(&changes));
        assert!(
            !text.contains("delete table") && text.contains("default/b/-/tcp"),
            "{text}"
        );
        assert!(
            !text.contains("10.96.0.1 ") && !text.contains("10.96.0.3 "),
            "partial touches others:\n{text}"
        );
        let stats = block(dp.apply(&second, Some(&changes))).expect("partial");
        assert!(!stats.full && stats.service_ports_written == 1, "{stats:?}");
        let listing = list(ns);
        assert!(listing.contains("dnat to 10.244.2.10:8080"), "{listing}");
        assert_eq!(
            listing.matches("dnat to").count(),
            2,
            "one dnat rule per endpoint of the affinity service:\n{listing}"
        );
        assert_eq!(
            listing.matches("set aff-").count(),
            2,
            "one affinity set per endpoint of b:\n{listing}"
        );
        // Back to one endpoint: the removed endpoint's chain and affinity set are gone.
        let changes = diff(&second, &first);
        block(dp.apply(&first, Some(&changes))).expect("partial back");
        let listing = list(ns);
        assert!(
            !listing.contains("10.244.2.10"),
            "stale endpoint survived:\n{listing}"
        );
        assert_eq!(listing.matches("set aff-").count(), 1, "{listing}");
    });
}

#[test]
fn kernel_error_names_object_and_service_keeps_rules_and_forces_full_sync() {
    in_netns(IpFamily::V4, |ns, dp| {
        let first = services(&["pod-a1"], &["pod-a2"]);
        block(dp.apply(&first, None)).expect("full");
        let listing = list(ns);
        let chain = listing
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("chain sep-")
                    .filter(|c| c.contains("default/b/"))
            })
            .map(|c| format!("sep-{}", c.trim_end_matches(" {")))
            .expect("endpoint chain of b");
        // Someone removes one of our chains behind our back (after flushing its referrers).
        let clu = listing
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("chain clu-")
                    .filter(|c| c.contains("default/b/"))
            })
            .map(|c| format!("clu-{}", c.trim_end_matches(" {")))
            .expect("cluster chain of b");
        ns.exec("nft", &["flush", "chain", "ip", "switchyard", &clu])
            .expect("flush");
        ns.exec("nft", &["delete", "chain", "ip", "switchyard", &chain])
            .expect("delete");

        // The same batch also changes a (data path): none of it may become visible.
        let second = services(&["pod-a3"], &["pod-b1"]);
        let err = block(dp.apply(&second, Some(&diff(&first, &second))))
            .expect_err("flushing the missing chain must fail");
        let text = err.to_string();
        assert!(
            matches!(err, DataplaneError::KernelRejected { errno: Some(2), .. }),
            "{text}"
        );
        assert!(
            text.contains(&chain) && text.contains("default/b/tcp"),
            "error must name chain and service: {text}"
        );
        let kept = list(ns);
        assert!(
            kept.contains("10.96.0.1 . tcp . 80 : 10.244.1.10 . 8080")
                && kept.contains("10.96.0.3 . tcp . 80 : 10.244.2.11 . 8080"),
            "the batch must not half-apply:\n{kept}"
        );
        assert!(
            !kept.contains("10.244.2.10") && !kept.contains("10.244.1.12"),
            "nothing of the failed batch may be visible:\n{kept}"
        );

        let stats = block(dp.apply(&second, Some(&diff(&first, &second)))).expect("retry");
        assert!(stats.full, "after a failure the next sync must be full");
        let now = list(ns);
        assert!(
            now.contains("dnat to 10.244.2.10:8080")
                && now.contains("10.96.0.1 . tcp . 80 : 10.244.1.12 . 8080")
                && !now.contains("10.244.1.11"),
            "{now}"
        );
    });
}

#[test]
fn element_error_names_the_map_and_the_service() {
    in_netns(IpFamily::V4, |ns, dp| {
        let first = services(&["pod-a1"], &["pod-a2"]);
        block(dp.apply(&first, None)).expect("full");
        // Someone deletes a's endpoint element behind our back; our delete of it then fails.
        ns.exec(
            "nft",
            &[
                "delete",
                "element",
                "ip",
                "switchyard",
                "cluster-endpoint-0",
                "{ 10.96.0.1 . tcp . 80 }",
            ],
        )
        .expect("delete element");
        let second = services(&["pod-a3"], &["pod-a2"]);
        let err = block(dp.apply(&second, Some(&diff(&first, &second))))
            .expect_err("deleting a missing element must fail");
        let text = err.to_string();
        assert!(
            text.contains("cluster-endpoint-0") && text.contains("default/a/tcp"),
            "error must name the map and the service: {text}"
        );
        let stats = block(dp.apply(&second, Some(&diff(&first, &second)))).expect("retry");
        assert!(stats.full, "after a failure the next sync must be full");
        assert!(list(ns).contains("10.96.0.1 . tcp . 80 : 10.244.1.12 . 8080"));
    });
}

#[test]
fn ipv6_table_is_programmed() {
    in_netns(IpFamily::V6, |ns, dp| {
        let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: v6}\nspec:\n  clusterIP: fd00:96::10\n  ipFamilies: [IPv6]\n  type: NodePort\n  ports: [{port: 80, nodePort: 30080}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: v6-x, labels: {kubernetes.io/service-name: v6}}\naddressType: IPv6\nports: [{name: '', port: 8080, protocol: TCP}]\nendpoints:\n- addresses: ['fd00:244::10']\n  nodeName: n1\n";
        let mut m = switchyard_agent::source::Manifests::default();
        m.add_text(Path::new("v6.yaml"), yaml).expect("yaml");
        let config = switchyard_core::ProxyConfig::new(IpFamily::V6, "n1")
            .with_cluster_cidrs(["fd00:244::/56".parse().expect("cidr")])
            .with_node_port_addresses(switchyard_core::NodePortAddresses::All);
        let plan = switchyard_core::plan(&m.to_state("n1"), &config);
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        block(dp.probe()).expect("probe");
        block(dp.apply(&plan, None)).expect("apply v6");
        let listing = ns
            .exec("nft", &["list", "table", "ip6", "switchyard"])
            .expect("list");
        assert!(
            listing.contains("fd00:96::10 . tcp . 80 : fd00:244::10 . 8080")
                && listing.contains("tcp . 30080 : fd00:244::10 . 8080"),
            "cluster IP and NodePort on every local address:\n{listing}"
        );
        assert!(
            listing.contains(
                "dnat ip6 to ip6 daddr . meta l4proto . th dport map @cluster-endpoint-0"
            ) && listing.contains("dnat ip6 to meta l4proto . th dport map @np-cluster-endpoint-0")
                && listing.contains("ip6 saddr . ip6 daddr @hairpin"),
            "{listing}"
        );
        block(dp.cleanup()).expect("cleanup");
        let tables = ns.exec("nft", &["list", "tables"]).expect("tables");
        assert!(!tables.contains("switchyard"), "{tables}");
    });
}

/// The listing with the slot number taken out of the DNAT slot maps' names: a partial sync
/// keeps endpoints in their slots, a full sync numbers them afresh, and both are right as
/// long as each key maps to the same endpoints.
fn normalized(listing: &str) -> Parsed {
    let (rules, elems) = parse_listing(listing);
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (set, mut v) in elems {
        let name = match set.rsplit_once("-endpoint-") {
            Some((kind, i)) if i.parse::<u32>().is_ok() => format!("{kind}-endpoint-*"),
            _ => set,
        };
        out.entry(name).or_default().append(&mut v);
    }
    for v in out.values_mut() {
        v.sort();
    }
    (rules, out)
}

#[test]
fn partial_syncs_end_where_a_full_sync_would() {
    let step = |a: &[&str], c: &[&str], b_affinity: bool, c_local: bool, with_d: bool| {
        let mut objects = vec![
            svc("a", "10.96.0.1").http().yaml(),
            http_slice("a", &ready(a)),
        ];
        let b = svc("b", "10.96.0.2").http();
        let b = if b_affinity {
            b.spec("sessionAffinity: ClientIP")
        } else {
            b
        };
        objects.push(b.yaml());
        objects.push(http_slice("b", &ready(&["pod-a2", "pod-b1"])));
        let c_svc = svc("c", "10.96.0.3")
            .type_("NodePort")
            .port("", "TCP", 80, 8080, Some(30080));
        let c_svc = if c_local {
            c_svc.spec("externalTrafficPolicy: Local")
        } else {
            c_svc
        };
        objects.push(c_svc.yaml());
        objects.push(http_slice("c", &ready(c)));
        if with_d {
            objects.push(
                svc("d", "10.96.0.4")
                    .http()
                    .spec("sessionAffinity: ClientIP")
                    .yaml(),
            );
            objects.push(http_slice(
                "d",
                &ready(&["pod-a1", "pod-a2", "pod-a3", "pod-b1"]),
            ));
        }
        plan_for(&manifest(&objects), Default::default()).expect("plan")
    };
    let plans = [
        step(&["pod-a1"], &["pod-a2", "pod-b2"], true, false, false),
        // a grows to a count nobody had; c shrinks; d (affinity) appears.
        step(
            &["pod-a1", "pod-a3", "pod-b3"],
            &["pod-b2"],
            true,
            false,
            true,
        ),
        // b leaves the chain path; a's first endpoint replaced; c turns Local.
        step(
            &["pod-b1", "pod-a3", "pod-b3"],
            &["pod-b2", "pod-a1"],
            false,
            true,
            true,
        ),
        // a loses every endpoint (reject); d goes; c back to Cluster.
        step(&[], &["pod-a1", "pod-a2", "pod-a3"], false, false, false),
        // Back to the start: b back on the chain path.
        step(&["pod-a1"], &["pod-a2", "pod-b2"], true, false, false),
    ];
    in_netns(IpFamily::V4, move |ns, dp| {
        block(dp.apply(&plans[0], None)).expect("full");
        for (i, pair) in plans.windows(2).enumerate() {
            let stats =
                block(dp.apply(&pair[1], Some(&diff(&pair[0], &pair[1])))).expect("partial");
            assert!(!stats.full, "step {i} was not partial");
            let reference = Netns::create(&format!("{}-nftref", unique_prefix())).expect("netns");
            let full_text = NftablesDataplane::new(IpFamily::V4).render(&pair[1], None);
            switchyard_conformance::netns::timed_in(
                &reference,
                "nft",
                &["-f", "/dev/stdin"],
                &full_text,
            )
            .expect("full sync by nft -f");
            let want = normalized(&list(&reference));
            let got = normalized(&list(ns));
            let only = |x: &Parsed, y: &Parsed| -> Vec<String> {
                let mut d: Vec<String> =
                    x.0.iter()
                        .filter(|r| !y.0.contains(r))
                        .map(|r| format!("{r:?}"))
                        .collect();
                for (set, v) in &x.1 {
                    for e in v
                        .iter()
                        .filter(|e| !y.1.get(set).is_some_and(|w| w.contains(e)))
                    {
                        d.push(format!("{set}: {e}"));
                    }
                }
                d
            };
            assert!(
                want == got,
                "step {i}: after partial syncs the table differs from a full sync\nonly after partials: {:#?}\nonly in full sync: {:#?}",
                only(&got, &want),
                only(&want, &got)
            );
        }
    });
}

/// IPVS mode's helper table read back: the marks its mark maps hold for each endpoint set are
/// the marks it was written with, also for a fresh instance (what a restarted IPVS agent seeds
/// its mark allocator with, DESIGN-NOTES 268).
#[test]
fn ipvs_helper_marks_read_back_from_the_kernel() {
    require_root().expect("root");
    let ns = Netns::create(&format!("{}-nftipvs", unique_prefix())).expect("netns");
    let path = ns.path();
    let marks = std::thread::spawn(move || {
        switchyard_conformance::netns::enter_path(&path).expect("enter");
        let plan = example_plan();
        let owners: std::collections::BTreeSet<_> = switchyard_nftables::mark_owners(&plan)
            .into_values()
            .collect();
        assert!(owners.len() >= 3, "endpoint sets to mark: {owners:?}");
        let marks: switchyard_nftables::Marks = owners
            .into_iter()
            .zip(1u32..)
            .map(|(owner, i)| (owner, i << 15))
            .collect();
        let mut dp = NftablesDataplane::ipvs_helpers(IpFamily::V4);
        block(dp.probe()).expect("probe");
        dp.apply_ipvs(&plan, None, &marks).expect("apply");
        assert_eq!(dp.ipvs_marks_in_kernel(&plan).expect("read back"), marks);
        let mut restarted = NftablesDataplane::ipvs_helpers(IpFamily::V4);
        assert_eq!(
            restarted.ipvs_marks_in_kernel(&plan).expect("read back"),
            marks
        );
        marks
    })
    .join()
    .expect("test thread");
    // nft shows the operator the marks ipvsadm shows (DESIGN-NOTES 289): every value of a
    // mark map, as `nft -j` prints it, is a mark we wrote (with the masquerade bit or not).
    let printed = support::ipvs::steering(&ns).expect("nft -j list table ip switchyard-ipvs");
    let written: std::collections::BTreeSet<u32> = marks
        .values()
        .flat_map(|m| [*m, m | switchyard_nftables::MASQ_MARK])
        .collect();
    for (key, value) in &printed {
        assert!(
            written.contains(value),
            "nft prints {value} for {key}: not a mark we wrote ({written:x?})"
        );
    }
    assert!(printed.len() >= 3, "mark map elements printed: {printed:?}");
    drop(ns);
}
