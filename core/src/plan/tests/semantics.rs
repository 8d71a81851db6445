//! The semantics table: one row per behaviour of DESIGN §2, each checked through `explain`.

use super::*;
use crate::config::NodePortAddresses;
use crate::flow::Expect::{Accept, Drop, Reject};
use crate::model::{LABEL_HEADLESS, LABEL_SERVICE_PROXY_NAME};
use crate::plan::{PathPlan, Target, TopologyMode, DEFAULT_AFFINITY_TIMEOUT_SECONDS};

const VIP: &str = "10.96.0.10:80/tcp";
const LOCAL_EP: &str = "10.244.1.10";
const LOCAL_EP_SA: &str = "10.244.1.10:8080";
const REMOTE_EP: &str = "10.244.2.10";
const REMOTE_EP_SA: &str = "10.244.2.10:8080";
const NODE_PORT: &str = "192.168.0.10:30080/tcp";
const EXT_IP: &str = "198.51.100.7";
const LB_IP: &str = "198.51.100.8";

fn web() -> Svc {
    svc("web", "10.96.0.10")
}

/// Slice with a local and a remote endpoint in the given conditions.
fn eps(local: Cond, remote: Cond) -> Slice {
    slice("web-1", "web", 8080)
        .ep(LOCAL_EP, NODE, local)
        .ep(REMOTE_EP, "node-b", remote)
}

fn both() -> Slice {
    eps(Cond::Ready, Cond::Ready)
}

fn cases() -> Vec<Case> {
    use Cond::*;
    let both_eps = dnat(&[LOCAL_EP_SA, REMOTE_EP_SA]);
    let local_only = dnat(&[LOCAL_EP_SA]);
    let remote_only = dnat(&[REMOTE_EP_SA]);
    vec![
        // --- cluster IP basics and masquerade -------------------------------------------------
        Case::new("clusterip ready endpoints from pod, not masqueraded")
            .svc(web())
            .slice(both())
            .flow(POD, VIP, both_eps.clone(), false),
        Case::new("clusterip from outside the cluster CIDR is masqueraded")
            .svc(web())
            .slice(both())
            .flow(OUTSIDE, VIP, both_eps.clone(), true),
        Case::new("clusterip from the host is masqueraded")
            .svc(web())
            .slice(both())
            .flow(NODE_IP, VIP, both_eps.clone(), true),
        Case::new("masquerade-all masquerades pod traffic")
            .svc(web())
            .slice(both())
            .config(|c| c.with_masquerade_all(true))
            .flow(POD, VIP, both_eps.clone(), true),
        Case::new("no cluster CIDR: only hairpin is masqueraded")
            .svc(web())
            .slice(both())
            .config(|c| c.with_cluster_cidrs([]))
            .flow(OUTSIDE, VIP, both_eps.clone(), false),
        Case::new("hairpin: endpoint reaching its own service is flagged")
            .svc(web())
            .slice(both())
            .flow(LOCAL_EP, VIP, both_eps.clone(), false)
            .check(|p| {
                let e = crate::explain(p, ip(LOCAL_EP), ip("10.96.0.10"), 80, Protocol::Tcp);
                assert!(
                    matches!(e.verdict, crate::Verdict::Dnat { hairpin: true, .. }),
                    "{e:?}"
                );
            }),
        Case::new("traffic to a non-service address is not proxied")
            .svc(web())
            .slice(both())
            .flow(POD, "10.96.0.99:80/tcp", Accept, false),
        Case::new("unknown port on a cluster IP is rejected")
            .svc(web())
            .slice(both())
            .flow(POD, "10.96.0.10:81/tcp", Reject, false),
        Case::new("wrong protocol on a cluster IP port is rejected")
            .svc(web())
            .slice(both())
            .flow(POD, "10.96.0.10:80/udp", Reject, false),
        // --- endpoint conditions --------------------------------------------------------------
        Case::new("not-ready endpoint excluded")
            .svc(web())
            .slice(eps(Ready, NotReady))
            .flow(POD, VIP, local_only.clone(), false),
        Case::new("no ready endpoint: serving-terminating fallback")
            .svc(web())
            .slice(eps(NotServingTerminating, ServingTerminating))
            .flow(POD, VIP, remote_only.clone(), false),
        Case::new("ready endpoints preferred over serving-terminating")
            .svc(web())
            .slice(eps(ServingTerminating, Ready))
            .flow(POD, VIP, remote_only.clone(), false),
        Case::new("no endpoints at all: reject")
            .svc(web())
            .flow(POD, VIP, Reject, false),
        Case::new("only not-ready and not-serving endpoints: reject")
            .svc(web())
            .slice(eps(NotReady, NotServingTerminating))
            .flow(POD, VIP, Reject, false),
        // --- internalTrafficPolicy ------------------------------------------------------------
        Case::new("itp Local uses only local endpoints")
            .svc(web().itp_local())
            .slice(both())
            .flow(POD, VIP, local_only.clone(), false),
        Case::new("itp Local, endpoints only elsewhere: drop")
            .svc(web().itp_local())
            .slice(eps(NotReady, Ready))
            .flow(POD, VIP, Drop, false),
        Case::new("itp Local, no endpoints anywhere: reject")
            .svc(web().itp_local())
            .flow(POD, VIP, Reject, false),
        Case::new("itp Local falls back to local serving-terminating")
            .svc(web().itp_local())
            .slice(eps(ServingTerminating, Ready))
            .flow(POD, VIP, local_only.clone(), false),
        // --- externalTrafficPolicy ------------------------------------------------------------
        Case::new("etp Cluster NodePort from outside: all endpoints, masqueraded")
            .svc(web().node_port(30080))
            .slice(both())
            .flow(OUTSIDE, NODE_PORT, both_eps.clone(), true),
        Case::new("etp Local NodePort from outside: local endpoints, client IP kept")
            .svc(web().node_port(30080).etp_local())
            .slice(both())
            .flow(OUTSIDE, NODE_PORT, local_only.clone(), false),
        Case::new("etp Local, no local endpoint: outside traffic dropped")
            .svc(web().node_port(30080).etp_local())
            .slice(eps(NotReady, Ready))
            .flow(OUTSIDE, NODE_PORT, Drop, false),
        Case::new("etp Local: pod traffic short-circuited to cluster endpoints")
            .svc(web().node_port(30080).etp_local())
            .slice(eps(NotReady, Ready))
            .flow(POD, NODE_PORT, remote_only.clone(), false),
        Case::new("etp Local: host traffic short-circuited and masqueraded")
            .svc(web().node_port(30080).etp_local())
            .slice(eps(NotReady, Ready))
            .flow(NODE_IP, NODE_PORT, remote_only.clone(), true),
        Case::new("etp Local, no endpoints anywhere: reject from every origin")
            .svc(web().node_port(30080).etp_local())
            .flow(OUTSIDE, NODE_PORT, Reject, false)
            .flow(POD, NODE_PORT, Reject, false)
            .flow(NODE_IP, NODE_PORT, Reject, false),
        Case::new(
            "etp Local + itp Local: cluster IP local-only, external short-circuit uses cluster set",
        )
        .svc(web().node_port(30080).etp_local().itp_local())
        .slice(both())
        .flow(POD, VIP, local_only.clone(), false)
        .flow(POD, NODE_PORT, both_eps.clone(), false)
        .flow(OUTSIDE, NODE_PORT, local_only.clone(), false),
        Case::new("etp Cluster + itp Local: cluster IP drops, NodePort uses all")
            .svc(web().node_port(30080).itp_local())
            .slice(eps(NotReady, Ready))
            .flow(POD, VIP, Drop, false)
            .flow(OUTSIDE, NODE_PORT, remote_only.clone(), true),
        Case::new("itp Local without external access uses no cluster set")
            .svc(web().itp_local())
            .slice(both())
            .check(|p| {
                let s = p.services.values().next().expect("planned");
                assert_eq!(s.endpoints.cluster, None, "cluster set unused");
                assert!(s.external.is_none());
            }),
        // --- NodePort addresses ---------------------------------------------------------------
        Case::new("NodePort not reachable on a non-node address")
            .svc(web().node_port(30080))
            .slice(both())
            .flow(OUTSIDE, "192.168.0.99:30080/tcp", Accept, false),
        Case::new("nodeport-addresses All listens on every local address")
            .svc(web().node_port(30080))
            .slice(both())
            .config(|c| c.with_node_port_addresses(NodePortAddresses::All))
            .flow(OUTSIDE, NODE_PORT, both_eps.clone(), true)
            .check(|p| assert_eq!(p.node_port_addresses, crate::plan::NodePortListen::AllLocal)),
        Case::new("nodeport-addresses CIDRs select matching local addresses")
            .svc(web().node_port(30080))
            .slice(both())
            .config(|c| {
                c.with_node_port_addresses(NodePortAddresses::Cidrs(vec!["172.16.0.0/12"
                    .parse()
                    .expect("cidr")]))
                    .with_local_addresses([ip("172.17.0.1"), ip(NODE_IP), ip("fd00::1")])
            })
            .flow(OUTSIDE, "172.17.0.1:30080/tcp", both_eps.clone(), true)
            .flow(OUTSIDE, NODE_PORT, Accept, false),
        // --- external IPs and load balancers --------------------------------------------------
        Case::new("external IP reaches all endpoints, masqueraded")
            .svc(web().external_ip(EXT_IP))
            .slice(both())
            .flow(OUTSIDE, "198.51.100.7:80/tcp", both_eps.clone(), true),
        Case::new("load-balancer ingress IP reaches all endpoints")
            .svc(web().lb(LB_IP, None))
            .slice(both())
            .flow(OUTSIDE, "198.51.100.8:80/tcp", both_eps.clone(), true),
        Case::new("ingress with ipMode Proxy is not captured")
            .svc(web().lb(LB_IP, Some("Proxy")))
            .slice(both())
            .flow(OUTSIDE, "198.51.100.8:80/tcp", Accept, false),
        Case::new("ingress IP ignored for a non-LoadBalancer Service")
            .svc(web().lb(LB_IP, None).type_("ClusterIP"))
            .slice(both())
            .flow(OUTSIDE, "198.51.100.8:80/tcp", Accept, false),
        Case::new("loadBalancerSourceRanges allows a listed source")
            .svc(web().lb(LB_IP, None).ranges(&["203.0.113.0/24"]))
            .slice(both())
            .flow(OUTSIDE, "198.51.100.8:80/tcp", both_eps.clone(), true),
        Case::new("loadBalancerSourceRanges drops other sources")
            .svc(web().lb(LB_IP, None).ranges(&["198.18.0.0/15"]))
            .slice(both())
            .flow(OUTSIDE, "198.51.100.8:80/tcp", Drop, false),
        Case::new("loadBalancerSourceRanges do not apply to NodePorts or external IPs")
            .svc(
                web()
                    .lb(LB_IP, None)
                    .node_port(30080)
                    .external_ip(EXT_IP)
                    .ranges(&["198.18.0.0/15"]),
            )
            .slice(both())
            .flow(OUTSIDE, NODE_PORT, both_eps.clone(), true)
            .flow(OUTSIDE, "198.51.100.7:80/tcp", both_eps.clone(), true),
        Case::new("loadBalancerSourceRanges of the other family only: all dropped")
            .svc(web().lb(LB_IP, None).ranges(&["2001:db8::/32"]))
            .slice(both())
            .flow(OUTSIDE, "198.51.100.8:80/tcp", Drop, false),
        Case::new("range containing a node address also allows LB-IP sources")
            .svc(web().lb(LB_IP, None).ranges(&["192.168.0.0/24"]))
            .slice(both())
            .flow(LB_IP, "198.51.100.8:80/tcp", both_eps.clone(), true)
            .check(|p| {
                let r = p
                    .services
                    .values()
                    .next()
                    .and_then(|s| s.source_ranges.clone())
                    .expect("ranges");
                assert!(r.allow_from_load_balancer_ips);
            }),
        Case::new("etp Local LB: outside traffic keeps client IP")
            .svc(web().lb(LB_IP, None).etp_local())
            .slice(both())
            .flow(OUTSIDE, "198.51.100.8:80/tcp", local_only.clone(), false),
        // --- affinity -------------------------------------------------------------------------
        Case::new("ClientIP affinity with default timeout")
            .svc(web().affinity(None))
            .slice(both())
            .flow(POD, VIP, both_eps.clone(), false)
            .check(|p| {
                let s = p.services.values().next().expect("planned");
                assert_eq!(
                    s.affinity_timeout_seconds,
                    Some(DEFAULT_AFFINITY_TIMEOUT_SECONDS)
                );
            }),
        Case::new("ClientIP affinity with explicit timeout")
            .svc(web().affinity(Some(60)))
            .slice(both())
            .check(|p| {
                assert_eq!(
                    p.services
                        .values()
                        .next()
                        .and_then(|s| s.affinity_timeout_seconds),
                    Some(60)
                )
            }),
        Case::new("no affinity by default")
            .svc(web())
            .slice(both())
            .check(|p| {
                assert_eq!(
                    p.services
                        .values()
                        .next()
                        .and_then(|s| s.affinity_timeout_seconds),
                    None
                )
            }),
        // --- skips ----------------------------------------------------------------------------
        Case::new("headless Service is not proxied")
            .svc(svc("hl", "None"))
            .slice(slice("hl-1", "hl", 80).ep(LOCAL_EP, NODE, Ready))
            .check(|p| assert!(p.services.is_empty() && p.warnings.is_empty())),
        Case::new("ExternalName Service is not proxied")
            .svc(svc("ext", "10.96.0.11").type_("ExternalName"))
            .flow(POD, "10.96.0.11:80/tcp", Accept, false)
            .check(|p| assert!(p.warnings.is_empty())),
        Case::new("service-proxy-name label: not ours")
            .svc(web().label(LABEL_SERVICE_PROXY_NAME, "other-proxy"))
            .slice(both())
            .flow(POD, VIP, Accept, false),
        Case::new("headless label: not proxied")
            .svc(web().label(LABEL_HEADLESS, ""))
            .slice(both())
            .flow(POD, VIP, Accept, false),
        // --- ports ----------------------------------------------------------------------------
        Case::new("named ports matched by name, not position")
            .svc(web().ports(&[("http", "TCP", 80, None), ("metrics", "TCP", 9090, None)]))
            .slice(
                slice("web-1", "web", 0)
                    .ports(&[("metrics", "TCP", Some(19090)), ("http", "TCP", Some(8080))])
                    .ep(LOCAL_EP, NODE, Ready),
            )
            .flow(POD, VIP, local_only.clone(), false)
            .flow(
                POD,
                "10.96.0.10:9090/tcp",
                dnat(&["10.244.1.10:19090"]),
                false,
            ),
        Case::new("named target port unresolved in the pod: no endpoints, reject")
            .svc(web().ports(&[("http", "TCP", 80, None)]))
            .slice(
                slice("web-1", "web", 0)
                    .ports(&[("http", "TCP", None)])
                    .ep(LOCAL_EP, NODE, Ready),
            )
            .flow(POD, VIP, Reject, false),
        Case::new("slice port of another protocol does not match")
            .svc(web())
            .slice(
                slice("web-1", "web", 0)
                    .ports(&[("", "UDP", Some(8080))])
                    .ep(LOCAL_EP, NODE, Ready),
            )
            .flow(POD, VIP, Reject, false),
        Case::new("same port number with two protocols")
            .svc(
                svc("dns", "10.96.0.53")
                    .ports(&[("dns", "UDP", 53, None), ("dns-tcp", "TCP", 53, None)]),
            )
            .slice(
                slice("dns-1", "dns", 0)
                    .ports(&[("dns", "UDP", Some(5353)), ("dns-tcp", "TCP", Some(5354))])
                    .ep(LOCAL_EP, NODE, Ready),
            )
            .flow(POD, "10.96.0.53:53/udp", dnat(&["10.244.1.10:5353"]), false)
            .flow(POD, "10.96.0.53:53/tcp", dnat(&["10.244.1.10:5354"]), false),
        Case::new("SCTP service port")
            .svc(web().ports(&[("", "SCTP", 80, None)]))
            .slice(
                slice("web-1", "web", 0)
                    .ports(&[("", "SCTP", Some(8080))])
                    .ep(LOCAL_EP, NODE, Ready),
            )
            .flow(POD, "10.96.0.10:80/sctp", local_only.clone(), false),
        // --- slices ---------------------------------------------------------------------------
        Case::new("multiple slices merged")
            .svc(web())
            .slice(slice("web-1", "web", 8080).ep(LOCAL_EP, NODE, Ready))
            .slice(slice("web-2", "web", 8080).ep(REMOTE_EP, "node-b", Ready))
            .flow(POD, VIP, both_eps.clone(), false),
        Case::new("duplicate endpoints across slices deduplicated")
            .svc(web())
            .slice(slice("web-1", "web", 8080).ep(LOCAL_EP, NODE, Ready))
            .slice(slice("web-2", "web", 8080).ep(LOCAL_EP, NODE, Ready))
            .check(|p| {
                let s = p.services.values().next().expect("planned");
                assert_eq!(s.endpoints.cluster.as_ref().map(Vec::len), Some(1));
            }),
        Case::new("duplicate endpoint: local copy wins")
            .svc(web().itp_local())
            .slice(slice("web-1", "web", 8080).ep(LOCAL_EP, "node-b", Ready))
            .slice(slice("web-2", "web", 8080).ep(LOCAL_EP, NODE, Ready))
            .flow(POD, VIP, local_only.clone(), false),
        Case::new("endpoints of an unrelated service are not used")
            .svc(web())
            .slice(slice("other-1", "other", 8080).ep(LOCAL_EP, NODE, Ready))
            .flow(POD, VIP, Reject, false),
        Case::new("FQDN slice ignored")
            .svc(web())
            .slice(
                slice("web-1", "web", 8080)
                    .family("FQDN")
                    .ep("example.com", NODE, Ready),
            )
            .flow(POD, VIP, Reject, false)
            .check(|p| assert!(p.warnings.is_empty(), "{:?}", p.warnings)),
        // --- dual stack -----------------------------------------------------------------------
        Case::new("dual-stack Service: IPv4 plan uses the IPv4 cluster IP and slice")
            .svc(web().cluster_ips(&["10.96.0.10", "fd00:96::10"], &["IPv4", "IPv6"]))
            .slice(both())
            .slice(
                slice("web-v6", "web", 8080)
                    .family("IPv6")
                    .ep("fd00:244::10", NODE, Ready),
            )
            .flow(POD, VIP, both_eps.clone(), false),
        Case::new("dual-stack Service: IPv6 plan uses the IPv6 cluster IP and slice")
            .svc(web().cluster_ips(&["10.96.0.10", "fd00:96::10"], &["IPv4", "IPv6"]))
            .slice(both())
            .slice(
                slice("web-v6", "web", 8080)
                    .family("IPv6")
                    .ep("fd00:244::10", NODE, Ready),
            )
            .config(|_| {
                ProxyConfig::new(IpFamily::V6, NODE)
                    .with_cluster_cidrs(["fd00:244::/56".parse().expect("cidr")])
            })
            .flow(
                "fd00:244::99",
                "[fd00:96::10]:80/tcp",
                dnat(&["[fd00:244::10]:8080"]),
                false,
            )
            .check(|p| assert_eq!(p.node_ips, vec![ip(NODE_IP6)])),
        Case::new("IPv6-only Service absent from the IPv4 plan")
            .svc(svc("v6", "fd00:96::20"))
            .check(|p| assert!(p.services.is_empty() && p.warnings.is_empty())),
        // --- topology -------------------------------------------------------------------------
        Case::new("zone hints narrow cluster endpoints to this zone")
            .svc(web())
            .slice(
                slice("web-1", "web", 8080)
                    .ep_hinted(LOCAL_EP, NODE, Ready, &["zone-a"], &[])
                    .ep_hinted(REMOTE_EP, "node-b", Ready, &["zone-b"], &[]),
            )
            .flow(POD, VIP, local_only.clone(), false)
            .check(|p| {
                assert_eq!(
                    p.services.values().next().map(|s| s.topology),
                    Some(TopologyMode::Zone)
                )
            }),
        Case::new("incomplete zone hints are ignored")
            .svc(web())
            .slice(
                slice("web-1", "web", 8080)
                    .ep_hinted(LOCAL_EP, NODE, Ready, &["zone-a"], &[])
                    .ep(REMOTE_EP, "node-b", Ready),
            )
            .flow(POD, VIP, both_eps.clone(), false),
        Case::new("zone hints not naming this zone are ignored")
            .svc(web())
            .slice(
                slice("web-1", "web", 8080)
                    .ep_hinted(LOCAL_EP, NODE, Ready, &["zone-b"], &[])
                    .ep_hinted(REMOTE_EP, "node-b", Ready, &["zone-c"], &[]),
            )
            .flow(POD, VIP, both_eps.clone(), false),
        Case::new("node hints (PreferSameNode) narrow to this node")
            .svc(web())
            .slice(
                slice("web-1", "web", 8080)
                    .ep_hinted(LOCAL_EP, NODE, Ready, &["zone-a"], &[NODE])
                    .ep_hinted(REMOTE_EP, "node-b", Ready, &["zone-a"], &["node-b"]),
            )
            .flow(POD, VIP, local_only.clone(), false)
            .check(|p| {
                assert_eq!(
                    p.services.values().next().map(|s| s.topology),
                    Some(TopologyMode::Node)
                )
            }),
        Case::new("topology never narrows Local-policy endpoints")
            .svc(web().node_port(30080).etp_local())
            .slice(
                slice("web-1", "web", 8080)
                    .ep_hinted(LOCAL_EP, NODE, Ready, &["zone-b"], &[])
                    .ep_hinted(REMOTE_EP, "node-b", Ready, &["zone-a"], &[]),
            )
            .flow(OUTSIDE, NODE_PORT, local_only.clone(), false)
            .flow(POD, VIP, remote_only.clone(), false),
        // --- plan shape -----------------------------------------------------------------------
        Case::new("targets name endpoint sets, never empty ones")
            .svc(web().node_port(30080).etp_local())
            .slice(eps(NotReady, Ready))
            .check(|p| {
                let s = p.services.values().next().expect("planned");
                assert_eq!(s.internal.fallback(), Target::Cluster);
                assert_eq!(
                    s.external.as_ref().map(PathPlan::fallback),
                    Some(Target::Drop)
                );
                assert_eq!(s.endpoints.local, Some(vec![]));
                assert!(s.endpoints.has_any);
            }),
    ]
}

#[test]
fn semantics_table() {
    let cases = cases();
    assert!(
        cases.len() >= 40,
        "the table must cover at least 40 behaviours, has {}",
        cases.len()
    );
    let mut names = std::collections::HashSet::new();
    let mut failures = Vec::new();
    for case in &cases {
        assert!(
            names.insert(case.name),
            "duplicate row name {:?}",
            case.name
        );
        assert!(
            !case.flows.is_empty() || case.check.is_some(),
            "row {:?} asserts nothing",
            case.name
        );
        if let Err(e) = case.run() {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} row(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
