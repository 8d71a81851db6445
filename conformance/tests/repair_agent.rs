//! The agent repairs tampering on its own: with `--sync-period 1s`, rules deleted behind its
//! back are noticed (a log line naming what differs), repaired by the next periodic sync, and
//! real traffic broken by the tampering flows again. nftables and iptables-nft; the faults
//! table (`tests/faults.rs`) covers every kind of object through the `Dataplane` alone.
//! Root only.

mod support;

use std::time::{Duration, Instant};
use support::*;
use switchyard_conformance::netns::require_root;
use switchyard_conformance::probe::{Observed, Probe};
use switchyard_conformance::topology::Topology;
use switchyard_core::Protocol;

const MANIFEST: &str = "apiVersion: v1\nkind: Node\nmetadata: {name: node-a}\nstatus: {addresses: [{type: InternalIP, address: 192.168.0.10}]}\n\
---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec: {clusterIP: 10.96.0.10, ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080}]}\n\
---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\n\
ports: [{name: http, protocol: TCP, port: 8080}]\nendpoints: [{addresses: [10.244.1.11], conditions: {ready: true}}]\n";

/// Whether pod-a1 reaches the endpoint (pod-a2) through the cluster IP, 3 times out of 3.
fn works(topo: &Topology) -> bool {
    let ns = topo.pod("pod-a1").expect("pod-a1").ns.path();
    Probe {
        netns: ns,
        dst: "10.96.0.10:80".parse().expect("literal"),
        proto: Protocol::Tcp,
        count: 3,
        timeout: Duration::from_secs(1),
    }
    .run()
    .expect("probe")
    .iter()
    .all(|o| matches!(o, Observed::Answered { pod, .. } if pod == "pod-a2"))
}

fn repairs(mode: Mode, tamper: &str) {
    require_root().expect("the agent repair test needs root (network namespaces)");
    let topo = Topology::build().expect("topology");
    let dir = std::env::temp_dir().join(format!("{}-repair", topo.node.name()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let manifests = dir.join("cluster.yaml");
    std::fs::write(&manifests, MANIFEST).expect("manifests");
    let log = dir.join("agent.log");
    let mut agent =
        spawn_agent(&topo.node, mode, &manifests, &["--sync-period", "1s"], &log).expect("agent");
    assert!(
        wait_for_log(&mut agent, &log, "synced"),
        "the agent did not sync"
    );
    assert!(works(&topo), "traffic before tampering");
    topo.node.exec("sh", &["-c", tamper]).expect("tampering");
    assert!(!works(&topo), "the tampering must break traffic: {tamper}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("repaired")) {
        assert!(
            Instant::now() < deadline,
            "no repair within 60 s:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let line = text
        .lines()
        .find(|l| l.contains("rules changed behind our back"))
        .unwrap_or("");
    println!("{mode:?}: {line}");
    assert!(
        !line.is_empty(),
        "the repair is announced with what differs:\n{text}"
    );
    assert!(works(&topo), "traffic after the repair");
    kill_group(&mut agent);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_agent_repairs_a_deleted_nftables_table() {
    repairs(Mode::Nftables, "nft delete table ip switchyard");
}

#[test]
fn the_agent_repairs_a_deleted_iptables_jump_and_ipset_member() {
    repairs(
        Mode::IptablesNft,
        "iptables-nft -w -t nat -D PREROUTING -m comment --comment 'switchyard service portals' -j SWYD-SERVICES && ipset del SWYD4-VIPS 10.96.0.10,tcp:80",
    );
}
