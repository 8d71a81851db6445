//! iptables-backend behaviour the cross-backend matrix cannot show: failure handling, jump
//! repair, partial syncs, the text in the kernel matching `render`, and IPv6. Both variants.
//! Needs root (network namespaces): without it the tests fail and say so.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use switchyard_conformance::netns::{require_root, timed_in, unique_prefix, Netns};
use switchyard_conformance::probe::{Observed, Probe};
use switchyard_conformance::runner::plan_for;
use switchyard_conformance::scenarios::{http_slice, manifest, ready, svc};
use switchyard_conformance::topology::{Topology, CLUSTER_CIDR, NODE_NAME};
use switchyard_core::{diff, Dataplane, DataplaneError, IpFamily, Protocol, ProxyPlan};
use switchyard_iptables::{IptablesConfig, IptablesDataplane, Variant};
use switchyard_synthetic as synthetic;

const VARIANTS: [Variant; 2] = [Variant::Nft, Variant::Legacy];

fn save(v: Variant) -> &'static str {
    match v {
        Variant::Nft => "iptables-nft-save",
        Variant::Legacy => "iptables-legacy-save",
    }
}

fn iptables(v: Variant) -> &'static str {
    match v {
        Variant::Nft => "iptables-nft",
        Variant::Legacy => "iptables-legacy",
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn setup(v: Variant, family: IpFamily) -> (Netns, IptablesDataplane) {
    require_root().expect("root");
    let ns = Netns::create(&format!("{}-ipt", unique_prefix())).expect("netns");
    let dp = IptablesConfig::new(family)
        .variant(v)
        .netns(ns.path())
        .build();
    (ns, dp)
}

fn three_services(b_eps: &[&str]) -> ProxyPlan {
    let yaml = manifest(&[
        svc("a", "10.96.0.1").http().yaml(),
        http_slice("a", &ready(&["pod-a1"])),
        svc("b", "10.96.0.2").http().yaml(),
        http_slice("b", &ready(b_eps)),
        svc("c", "10.96.0.3").http().yaml(),
        http_slice("c", &ready(&["pod-b2"])),
    ]);
    plan_for(&yaml, Default::default()).expect("plan")
}

#[test]
fn partial_sync_rewrites_only_the_changed_service() {
    for v in VARIANTS {
        let (ns, mut dp) = setup(v, IpFamily::V4);
        rt().block_on(async {
            dp.probe().await.expect("probe");
            let first = three_services(&["pod-a2"]);
            let stats = dp.apply(&first, None).await.expect("full sync");
            assert!(stats.full);
            let second = three_services(&["pod-a2", "pod-b1"]);
            let changes = diff(&first, &second);
            let text = dp.render(&second, Some(&changes));
            assert!(
                text.contains("default/b/tcp")
                    && !text.contains("default/a/tcp")
                    && !text.contains("default/c/tcp"),
                "{v:?}: partial transaction touches other services:\n{text}"
            );
            let stats = dp
                .apply(&second, Some(&changes))
                .await
                .expect("partial sync");
            assert!(
                !stats.full && stats.service_ports_written == 1,
                "{v:?}: {stats:?}"
            );
            let saved = ns.exec(save(v), &["-t", "nat"]).expect("save");
            assert!(
                saved.contains("--to-destination 10.244.2.10:8080"),
                "{v:?}: new endpoint missing:\n{saved}"
            );
            assert_eq!(
                saved.matches("-j DNAT").count(),
                4,
                "{v:?}: one DNAT per endpoint:\n{saved}"
            );
        });
    }
}

#[test]
fn kernel_holds_every_rule_render_printed() {
    for v in VARIANTS {
        let (ns, mut dp) = setup(v, IpFamily::V4);
        rt().block_on(async {
            dp.probe().await.expect("probe");
            let plan = plan_for(
                &std::fs::read_to_string(
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster.yaml"),
                )
                .expect("example"),
                Default::default(),
            )
            .expect("plan");
            let rendered = dp.render(&plan, None);
            dp.apply(&plan, None).await.expect("apply");
            let restore: Vec<&str> = rendered
                .split("# --- ipset restore (after the rules) ---")
                .next()
                .and_then(|s| s.split("--noflush ---\n").nth(1))
                .expect("restore section")
                .lines()
                .collect();
            let saved = ns.exec(save(v), &[]).expect("save");
            let ours = |l: &&&str| {
                (l.starts_with("-A SWYD-") || l.starts_with("-I ")) && l.contains("SWYD")
            };
            let rendered_rules = restore.iter().filter(ours).count();
            let saved_rules = saved
                .lines()
                .filter(|l| l.starts_with("-A") && l.contains("SWYD"))
                .count();
            assert_eq!(
                saved_rules, rendered_rules,
                "{v:?}: kernel rule count differs from render"
            );
            for chain in restore
                .iter()
                .filter_map(|l| l.strip_prefix(':'))
                .filter_map(|l| l.split(' ').next())
            {
                assert!(
                    saved.contains(&format!(":{chain} ")),
                    "{v:?}: chain {chain} missing from the kernel"
                );
            }
        });
    }
}

/// The shape that keeps stock tools usable at scale (issue 17), in the kernel: 200 ClusterIP
/// services x 10 endpoints own one chain each (no chain per endpoint), `iptables-save` lists
/// the ruleset, `iptables-restore --test` accepts what it printed, and hairpin pairs are one
/// `hash:ip,ip` set.
#[test]
fn stock_tools_list_and_reload_the_ruleset_with_one_chain_per_service_port() {
    const SERVICES: usize = 200;
    for v in VARIANTS {
        let (ns, mut dp) = setup(v, IpFamily::V4);
        let plan = synthetic::plan_of(&synthetic::cluster(SERVICES, 10));
        rt().block_on(async {
            dp.probe().await.expect("probe");
            dp.apply(&plan, None).await.expect("full sync");
        });
        let nat = ns
            .exec(save(v), &["-t", "nat"])
            .expect("iptables-save -t nat");
        let service_chains = nat.lines().filter(|l| l.starts_with(":SWYD-s")).count();
        assert_eq!(
            service_chains, SERVICES,
            "{v:?}: one chain per ClusterIP service port"
        );
        assert_eq!(
            nat.matches("-j DNAT").count(),
            SERVICES * 10,
            "{v:?}: one DNAT per endpoint"
        );
        let all = ns.exec(save(v), &[]).expect("iptables-save");
        let restore = match v {
            Variant::Nft => "iptables-nft-restore",
            Variant::Legacy => "iptables-legacy-restore",
        };
        timed_in(&ns, restore, &["--test"], &all)
            .unwrap_or_else(|e| panic!("{v:?}: restore --test rejects iptables-save: {e:#}"));
        let hairpin = ns
            .exec("ipset", &["list", "SWYD4-HAIRPIN"])
            .expect("hairpin set");
        assert!(hairpin.contains("Type: hash:ip,port,ip"), "{hairpin}");
        assert!(
            hairpin.contains("Number of entries: 2000"),
            "{v:?}: every endpoint paired with itself:\n{}",
            &hairpin[..hairpin.len().min(400)]
        );
    }
}

#[test]
fn deleted_base_jump_is_recreated_on_the_next_sync() {
    for v in VARIANTS {
        let (ns, mut dp) = setup(v, IpFamily::V4);
        rt().block_on(async {
            dp.probe().await.expect("probe");
            let plan = three_services(&["pod-a2"]);
            dp.apply(&plan, None).await.expect("apply");
            ns.exec(
                iptables(v),
                &[
                    "-t",
                    "nat",
                    "-D",
                    "PREROUTING",
                    "-m",
                    "comment",
                    "--comment",
                    "switchyard service portals",
                    "-j",
                    "SWYD-SERVICES",
                ],
            )
            .expect("delete jump");
            let before = ns.exec(save(v), &["-t", "nat"]).expect("save");
            assert!(!before.contains("-A PREROUTING"), "{v:?}: jump still there");
            // Nothing changed in the plan: an incremental sync with an empty change set.
            let stats = dp
                .apply(&plan, Some(&diff(&plan, &plan)))
                .await
                .expect("sync");
            assert!(!stats.full);
            let after = ns.exec(save(v), &["-t", "nat"]).expect("save");
            assert_eq!(
                after.matches("-A PREROUTING").count(),
                1,
                "{v:?}: jump not restored exactly once:\n{after}"
            );
            assert_eq!(
                after.matches("-A OUTPUT").count(),
                1,
                "{v:?}: OUTPUT jump duplicated:\n{after}"
            );
        });
    }
}

#[test]
fn failed_restore_names_line_and_service_keeps_rules_and_forces_full_sync() {
    for v in VARIANTS {
        let (ns, mut dp) = setup(v, IpFamily::V4);
        rt().block_on(async {
            dp.probe().await.expect("probe");
            let first = three_services(&["pod-a2"]);
            dp.apply(&first, None).await.expect("apply");
            // Someone else references our chain for service b, so deleting it must fail.
            let saved = ns.exec(save(v), &["-t", "nat"]).expect("save");
            let svc_b = saved
                .lines()
                .filter(|l| l.starts_with("-A ") && l.contains("default/b/tcp"))
                .filter_map(|l| l.split_whitespace().last())
                .find(|chain| chain.starts_with("SWYD-s") && chain.ends_with("-svc"))
                .expect("service b chain")
                .to_string();
            ns.exec(iptables(v), &["-t", "nat", "-N", "FOREIGN"])
                .expect("foreign chain");
            ns.exec(iptables(v), &["-t", "nat", "-A", "FOREIGN", "-j", &svc_b])
                .expect("foreign ref");

            let yaml = manifest(&[
                svc("a", "10.96.0.1").http().yaml(),
                http_slice("a", &ready(&["pod-a1"])),
                svc("c", "10.96.0.3").http().yaml(),
                http_slice("c", &ready(&["pod-b2"])),
            ]);
            let second = plan_for(&yaml, Default::default()).expect("plan");
            let err = dp
                .apply(&second, Some(&diff(&first, &second)))
                .await
                .expect_err("the -X must fail");
            let text = err.to_string();
            assert!(
                matches!(err, DataplaneError::ToolFailed { line: Some(_), .. }),
                "{v:?}: {text}"
            );
            assert!(
                text.contains(&svc_b) && text.contains("default/b/tcp"),
                "{v:?}: error must name the chain and the service: {text}"
            );
            // The nat table is committed atomically: service b's rules are still there.
            let kept = ns.exec(save(v), &["-t", "nat"]).expect("save");
            assert!(
                kept.contains(&format!(":{svc_b}")) && kept.contains("default/b/tcp"),
                "{v:?}: previous rules lost:\n{kept}"
            );

            ns.exec(iptables(v), &["-t", "nat", "-F", "FOREIGN"])
                .expect("unblock");
            let stats = dp
                .apply(&second, Some(&diff(&first, &second)))
                .await
                .expect("retry");
            assert!(stats.full, "{v:?}: the sync after a failure must be full");
            let now = ns.exec(save(v), &["-t", "nat"]).expect("save");
            assert!(
                !now.contains("default/b/tcp"),
                "{v:?}: stale service survived the full sync"
            );
        });
    }
}

#[test]
fn ipv6_rules_load_through_ip6tables() {
    for v in VARIANTS {
        let (ns, mut dp) = setup(v, IpFamily::V6);
        rt().block_on(async {
            dp.probe().await.expect("probe");
            let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: v6}\nspec:\n  clusterIP: fd00:96::10\n  ipFamilies: [IPv6]\n  type: NodePort\n  ports: [{port: 80, nodePort: 30080}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: v6-x, labels: {kubernetes.io/service-name: v6}}\naddressType: IPv6\nports: [{name: '', port: 8080, protocol: TCP}]\nendpoints:\n- addresses: ['fd00:244::10']\n  nodeName: n1\n";
            let mut m = switchyard_agent::source::Manifests::default();
            m.add_text(Path::new("v6.yaml"), yaml).expect("yaml");
            let config = switchyard_core::ProxyConfig::new(IpFamily::V6, "n1").with_cluster_cidrs(["fd00:244::/56".parse().expect("cidr")]).with_node_port_addresses(switchyard_core::NodePortAddresses::All);
            let plan = switchyard_core::plan(&m.to_state("n1"), &config);
            assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
            dp.apply(&plan, None).await.expect("apply v6");
            let save6 = match v {
                Variant::Nft => "ip6tables-nft-save",
                Variant::Legacy => "ip6tables-legacy-save",
            };
            let saved = ns.exec(save6, &["-t", "nat"]).expect("save");
            assert!(saved.contains("--to-destination [fd00:244::10]:8080"), "{v:?}:\n{saved}");
            assert!(saved.contains("-A SWYD-NODEPORTS -p tcp -m tcp --dport 30080") || saved.contains("-A SWYD-NODEPORTS -p tcp --dport 30080"), "{v:?}:\n{saved}");
            let sets = ns.exec("ipset", &["list", "SWYD6-VIPS"]).expect("ipset");
            assert!(sets.contains("fd00:96::10,tcp:80"), "{sets}");
            dp.cleanup().await.expect("cleanup");
            let left = ns.exec(save6, &[]).expect("save");
            assert!(!left.contains("SWYD"), "{v:?}: leftovers:\n{left}");
        });
    }
}

#[test]
fn the_variant_in_use_removes_our_rules_from_the_other_one() {
    for v in VARIANTS {
        let (ns, mut old) = setup(v.other(), IpFamily::V4);
        let mut new = IptablesConfig::new(IpFamily::V4)
            .variant(v)
            .netns(ns.path())
            .build();
        // Someone else's chain in the other variant must survive.
        ns.exec(iptables(v.other()), &["-t", "nat", "-N", "FOREIGN"])
            .expect("foreign chain");
        rt().block_on(async {
            let plan = three_services(&["pod-a2"]);
            old.probe().await.expect("probe");
            old.apply(&plan, None)
                .await
                .expect("sync in the old variant");
            new.probe().await.expect("probe");
            new.apply(&plan, None)
                .await
                .expect("sync in the new variant");
        });
        let before = ns.exec(save(v.other()), &[]).expect("save");
        assert!(
            !before.contains("SWYD"),
            "{:?} still holds our rules after syncing with {v:?}:\n{before}",
            v.other()
        );
        assert!(before.contains(":FOREIGN"), "foreign chain removed");
        let now = ns.exec(save(v), &[]).expect("save");
        assert!(
            now.contains("-j SWYD-SERVICES") && now.contains("default/b/tcp"),
            "{v:?} lacks our rules:\n{now}"
        );
    }
}

/// `count` TCP connections from `ns` to `to`, one second each at most.
fn connect(ns: &Netns, to: &str, count: usize) -> Vec<Observed> {
    let dst: SocketAddr = to.parse().expect("address");
    Probe {
        netns: ns.path(),
        dst,
        proto: Protocol::Tcp,
        count,
        timeout: Duration::from_millis(1000),
    }
    .run()
    .expect("probe")
}

fn answered_by(observed: &[Observed], pod: &str) -> bool {
    observed
        .iter()
        .all(|o| matches!(o, Observed::Answered { pod: p, .. } if p == pod))
}

/// Hosts running Docker have a FORWARD policy of DROP: forwarded service traffic must still
/// flow (SWYD-FORWARD), masqueraded or not. And an address inside a service CIDR that no
/// Service owns is dropped, after the live cluster IPs' other ports are rejected. Real packets
/// through the conformance topology; each rule is then removed to show the packets depended
/// on it.
#[test]
fn forwarding_survives_a_drop_policy_and_unallocated_service_ips_are_dropped() {
    require_root().expect("root");
    for v in VARIANTS {
        let topo = Topology::build().expect("topology");
        let mut dp = IptablesConfig::new(IpFamily::V4)
            .variant(v)
            .netns(topo.node.path())
            .build();
        let yaml = manifest(&[
            svc("np", "10.96.0.20")
                .type_("NodePort")
                .port("", "TCP", 80, 8080, Some(30080))
                .yaml(),
            http_slice("np", &ready(&["pod-b1"])),
            svc("loc", "10.96.0.21")
                .type_("NodePort")
                .port("", "TCP", 80, 8080, Some(30081))
                .spec("externalTrafficPolicy: Local")
                .yaml(),
            http_slice("loc", &ready(&["pod-a2"])),
        ]);
        let mut m = switchyard_agent::source::Manifests::default();
        m.add_text(Path::new("forward.yaml"), &yaml).expect("yaml");
        let config = switchyard_core::ProxyConfig::new(IpFamily::V4, NODE_NAME)
            .with_cluster_cidrs([CLUSTER_CIDR.parse().expect("cidr")])
            .with_service_cidrs(["10.96.0.0/16".parse().expect("cidr")]);
        let plan = switchyard_core::plan(&m.to_state(NODE_NAME), &config);
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        rt().block_on(async {
            dp.probe().await.expect("probe");
            dp.apply(&plan, None).await.expect("apply");
        });
        let node = &topo.node;
        let pod_a1 = &topo.pod("pod-a1").expect("pod").ns;

        // Unallocated service IPs. 10.96.0.99 is routed to the outside client, whose sink
        // answers any connection that reaches it: only our drop makes it time out.
        let saved = node.exec(save(v), &["-t", "filter"]).expect("save");
        let filter_rules: Vec<&str> = saved
            .lines()
            .filter(|l| l.starts_with("-A SWYD-FILTER "))
            .collect();
        let drop_at = filter_rules
            .iter()
            .position(|l| l.starts_with("-A SWYD-FILTER -d 10.96.0.0/16 "))
            .unwrap_or_else(|| panic!("{v:?}: no service-CIDR drop:\n{saved}"));
        assert!(filter_rules[drop_at].ends_with("-j DROP"), "{v:?}: {saved}");
        assert!(
            filter_rules[..drop_at]
                .iter()
                .any(|l| l.contains("SWYD4-CLUSTER-IPS") && l.contains("REJECT")),
            "{v:?}: the cluster-IP reject must come first:\n{saved}"
        );
        for from in [node, pod_a1] {
            let seen = connect(from, "10.96.0.99:80", 1);
            assert_eq!(
                seen,
                [Observed::TimedOut],
                "{v:?}: unallocated IP from {}",
                from.name()
            );
        }
        let seen = connect(node, "10.96.0.20:81", 1);
        assert_eq!(
            seen,
            [Observed::Refused],
            "{v:?}: live cluster IP, unknown port"
        );
        let position = (drop_at + 1).to_string();
        let delete = ["-t", "filter", "-D", "SWYD-FILTER", position.as_str()];
        node.exec(iptables(v), &delete)
            .expect("delete the drop rule");
        let seen = connect(node, "10.96.0.99:80", 1);
        assert!(
            answered_by(&seen, "sink"),
            "{v:?}: control: without the drop, the outside sink answers: {seen:?}"
        );

        // FORWARD policy DROP, as Docker sets it.
        node.exec(iptables(v), &["-t", "filter", "-P", "FORWARD", "DROP"])
            .expect("policy");
        let cases = [
            // NodePort, policy Cluster: masqueraded, forwarded to the remote node.
            (&topo.client, "192.168.0.10:30080", "pod-b1"),
            // NodePort, policy Local: client address kept (no masquerade mark).
            (&topo.client, "192.168.0.10:30081", "pod-a2"),
            // Pod to cluster IP, not masqueraded (--cluster-cidr), forwarded to the remote node.
            (pod_a1, "10.96.0.20:80", "pod-b1"),
        ];
        for (from, to, pod) in cases {
            let seen = connect(from, to, 3);
            assert!(
                answered_by(&seen, pod),
                "{v:?}: {to} from {} with FORWARD DROP: {seen:?}",
                from.name()
            );
        }
        node.exec(
            iptables(v),
            &[
                "-t",
                "filter",
                "-D",
                "FORWARD",
                "-m",
                "comment",
                "--comment",
                "switchyard forwarding rules",
                "-j",
                "SWYD-FORWARD",
            ],
        )
        .expect("delete the FORWARD jump");
        for (from, to, _) in cases {
            let seen = connect(from, to, 1);
            assert_eq!(
                seen,
                [Observed::TimedOut],
                "{v:?}: control: {to} without SWYD-FORWARD"
            );
        }
    }
}
