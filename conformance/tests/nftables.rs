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
    plan_for(&text, false).expect("plan")
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

#[test]
fn nft_list_matches_our_printer() {
    in_netns(IpFamily::V4, |ns, dp| {
        let plan = example_plan();
        let ours = dp.render(&plan, None);
        block(dp.apply(&plan, None)).expect("apply");
        let listing = ns
            .exec("nft", &["list", "table", "ip", "switchyard"])
            .expect("nft list");
        let (kernel_rules, mut kernel_elems) = parse_listing(&listing);
        let (our_rules, mut our_elems) = parse_ours(&ours);
        assert!(our_rules.len() > 50, "the example should render many rules");
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
    });
}

fn services(b_eps: &[&str]) -> ProxyPlan {
    let yaml = manifest(&[
        svc("a", "10.96.0.1").http().yaml(),
        http_slice("a", &ready(&["pod-a1"])),
        svc("b", "10.96.0.2")
            .http()
            .spec("sessionAffinity: ClientIP")
            .yaml(),
        http_slice("b", &ready(b_eps)),
        svc("c", "10.96.0.3").http().yaml(),
        http_slice("c", &ready(&["pod-b2"])),
    ]);
    plan_for(&yaml, false).expect("plan")
}

#[test]
fn partial_sync_touches_only_the_changed_service() {
    in_netns(IpFamily::V4, |ns, dp| {
        let first = services(&["pod-a2"]);
        block(dp.apply(&first, None)).expect("full");
        let second = services(&["pod-a2", "pod-b1"]);
        let changes = diff(&first, &second);
        let text = dp.render(&second, Some(&changes));
        assert!(
            !text.contains("delete table") && text.contains("default/b/-/tcp"),
            "{text}"
        );
        assert!(
            !text.contains("default/a/") && !text.contains("default/c/"),
            "partial touches others:\n{text}"
        );
        let stats = block(dp.apply(&second, Some(&changes))).expect("partial");
        assert!(!stats.full && stats.service_ports_written == 1, "{stats:?}");
        let listing = ns
            .exec("nft", &["list", "table", "ip", "switchyard"])
            .expect("list");
        assert!(listing.contains("dnat to 10.244.2.10:8080"), "{listing}");
        assert_eq!(
            listing.matches("dnat to").count(),
            4,
            "one dnat per endpoint:\n{listing}"
        );
        assert_eq!(
            listing.matches("set aff-").count(),
            2,
            "one affinity set per endpoint of b:\n{listing}"
        );
        // Back to one endpoint: the removed endpoint's chain and affinity set are gone.
        let changes = diff(&second, &first);
        block(dp.apply(&first, Some(&changes))).expect("partial back");
        let listing = ns
            .exec("nft", &["list", "table", "ip", "switchyard"])
            .expect("list");
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
        let first = services(&["pod-a2"]);
        block(dp.apply(&first, None)).expect("full");
        let listing = ns
            .exec("nft", &["list", "table", "ip", "switchyard"])
            .expect("list");
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

        let second = services(&["pod-b1"]);
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
        let kept = ns
            .exec("nft", &["list", "table", "ip", "switchyard"])
            .expect("list");
        assert!(
            kept.contains("dnat to 10.244.1.10:8080") && kept.contains("dnat to 10.244.2.11:8080"),
            "the batch must not half-apply:\n{kept}"
        );
        assert!(
            !kept.contains("10.244.2.10"),
            "nothing of the failed batch may be visible:\n{kept}"
        );

        let stats = block(dp.apply(&second, Some(&diff(&first, &second)))).expect("retry");
        assert!(stats.full, "after a failure the next sync must be full");
        let now = ns
            .exec("nft", &["list", "table", "ip", "switchyard"])
            .expect("list");
        assert!(
            now.contains("dnat to 10.244.2.10:8080") && !now.contains("10.244.1.11"),
            "{now}"
        );
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
        assert!(listing.contains("dnat to [fd00:244::10]:8080"), "{listing}");
        assert!(
            listing.contains("fd00:96::10 . tcp . 80 : goto svc-"),
            "{listing}"
        );
        assert!(listing.contains("tcp . 30080 : goto ext-"), "{listing}");
        block(dp.cleanup()).expect("cleanup");
        let tables = ns.exec("nft", &["list", "tables"]).expect("tables");
        assert!(!tables.contains("switchyard"), "{tables}");
    });
}
