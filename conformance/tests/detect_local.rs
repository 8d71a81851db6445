//! `--detect-local-mode BridgeInterface` / `InterfaceNamePrefix` with real packets, in every
//! backend: which sources count as pods (and so keep their address to a cluster IP) is decided
//! by the interface a packet arrived on, not by its address. Needs root (network namespaces).
//!
//! The suite's topology plus one routed pod, Calico-style: its own veth `cali-routed` on the
//! node, no bridge. Both pods' addresses are inside 10.244.0.0/16, so a CIDR-based rule could
//! not tell them apart; each detector must make exactly its own pod unmasqueraded.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use switchyard_conformance::backends;
use switchyard_conformance::netns::{enter_path, require_root, unique_prefix, Netns};
use switchyard_conformance::probe::{Observed, Probe};
use switchyard_conformance::runner::Backend;
use switchyard_conformance::scenarios::{http_slice, manifest, ready, svc};
use switchyard_conformance::topology::{Topology, NODE_NAME, NODE_REMOTE_LINK_IP};
use switchyard_core::{plan, IpFamily, LocalDetector, Protocol, ProxyConfig, ProxyPlan};
use switchyard_iptables::Variant;

const ROUTED_POD_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 3, 10);
const CLUSTER_IP: &str = "10.96.0.50";

/// A pod on the node reached through its own veth (`cali-routed`), routed, no bridge.
fn routed_pod(topo: &Topology) -> anyhow::Result<Netns> {
    let ns = Netns::create(&format!("{}-routed", unique_prefix()))?;
    topo.node.ip(&[
        "link",
        "add",
        "cali-routed",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        ns.name(),
    ])?;
    topo.node
        .ip(&["addr", "add", "10.244.3.1/24", "dev", "cali-routed"])?;
    topo.node.ip(&["link", "set", "cali-routed", "up"])?;
    ns.ip(&["addr", "add", &format!("{ROUTED_POD_IP}/24"), "dev", "eth0"])?;
    ns.ip(&["link", "set", "eth0", "up"])?;
    ns.ip(&["route", "add", "default", "via", "10.244.3.1"])?;
    Ok(ns)
}

/// A cluster IP whose only endpoint is on the remote node (pod-b1), so a masqueraded
/// connection shows the node's address on that link as its peer.
fn plan_with(pods: LocalDetector) -> ProxyPlan {
    let yaml = manifest(&[
        svc("web", "10.96.0.50").http().yaml(),
        http_slice("web", &ready(&["pod-b1"])),
    ]);
    let mut m = switchyard_agent::source::Manifests::default();
    m.add_text(std::path::Path::new("detect-local.yaml"), &yaml)
        .expect("manifest");
    let config = ProxyConfig::new(IpFamily::V4, NODE_NAME).with_pod_sources(pods);
    let p = plan(&m.to_state(NODE_NAME), &config);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    p
}

/// The peer address pod-b1 saw for one connection from `ns`.
fn peer_seen_from(ns: &Netns) -> IpAddr {
    let dst: SocketAddr = format!("{CLUSTER_IP}:80").parse().expect("addr");
    let seen = Probe {
        netns: ns.path(),
        dst,
        proto: Protocol::Tcp,
        count: 1,
        timeout: Duration::from_secs(5),
    }
    .run()
    .expect("probe");
    match seen.as_slice() {
        [Observed::Answered { pod, peer, .. }] if pod == "pod-b1" => *peer,
        other => panic!("from {}: want pod-b1 to answer, got {other:?}", ns.name()),
    }
}

/// The kernel's listing of the node's rules by `backend`, and the match a detector must
/// appear as in it.
fn listing(backend: &Backend, node: &Netns, detector: &LocalDetector) -> (String, String) {
    let (name, prefix) = match detector {
        LocalDetector::InputInterface(n) => (n.as_str(), false),
        LocalDetector::InterfacePrefix(p) => (p.as_str(), true),
        LocalDetector::Cidrs(_) => panic!("interface detectors only"),
    };
    if backend.name == "nftables" {
        let star = if prefix { "*" } else { "" };
        let text = node.exec("nft", &["list", "ruleset"]).expect("nft list");
        (text, format!("iifname \"{name}{star}\""))
    } else {
        let plus = if prefix { "+" } else { "" };
        let save = format!("{}-save", backend.name);
        let text = node.exec(&save, &["-t", "nat"]).expect("iptables-save");
        (text, format!("-i {name}{plus} "))
    }
}

/// For each detector, (source, masqueraded?) for the bridged pod, the routed pod and the
/// outside client, checked through `backend`.
fn check(backend: Backend) {
    require_root().expect("root");
    let topo = Topology::build().expect("topology");
    let routed = routed_pod(&topo).expect("routed pod");
    let bridged = topo.pod("pod-a1").expect("pod-a1");
    let masqueraded = IpAddr::V4(NODE_REMOTE_LINK_IP);
    let cases = [
        (
            LocalDetector::InterfacePrefix("cali".into()),
            [(&routed, false), (&bridged.ns, true), (&topo.client, true)],
        ),
        (
            LocalDetector::InputInterface("br0".into()),
            [(&routed, true), (&bridged.ns, false), (&topo.client, true)],
        ),
    ];
    let node_path = topo.node.path();
    std::thread::scope(|s| {
        s.spawn(|| {
            enter_path(&node_path).expect("enter the node");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let mut dp = (backend.factory)(&node_path, IpFamily::V4);
            rt.block_on(dp.probe()).expect("probe");
            for (detector, expected) in &cases {
                let p = plan_with(detector.clone());
                rt.block_on(dp.apply(&p, None)).expect("apply");
                // What we print is what the kernel lists back.
                let (listing, want) = listing(&backend, &topo.node, detector);
                assert!(
                    listing.contains(&want) && dp.render(&p, None).contains(&want),
                    "{}: {want:?} in both the kernel's listing and our rendering:\n{listing}",
                    backend.name
                );
                for (ns, masq) in expected {
                    let peer = peer_seen_from(ns);
                    let own = if ns.name() == routed.name() {
                        IpAddr::V4(ROUTED_POD_IP)
                    } else if ns.name() == bridged.ns.name() {
                        bridged.ip
                    } else {
                        IpAddr::V4(switchyard_conformance::topology::CLIENT_IP)
                    };
                    let want = if *masq { masqueraded } else { own };
                    assert_eq!(
                        peer,
                        want,
                        "{}: pods are {detector}; from {} (masquerade expected: {masq})",
                        backend.name,
                        ns.name()
                    );
                }
            }
            rt.block_on(dp.cleanup()).expect("cleanup");
        });
    });
    drop(routed);
}

#[test]
fn pods_by_input_interface_nftables() {
    check(backends::nftables());
}

#[test]
fn pods_by_input_interface_iptables_nft() {
    check(backends::iptables(Variant::Nft));
}

#[test]
fn pods_by_input_interface_iptables_legacy() {
    check(backends::iptables(Variant::Legacy));
}
