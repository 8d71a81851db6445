//! Traffic policies, masquerading, affinity and load spreading.

use super::basics::{apply, pods, sc, web};
use super::*;
use crate::scenario::{Check, Expect, NodeSettings, Scenario, Step};
use crate::topology::From::{Client, Node, Pod};

fn np_local(eps: &[&str]) -> Vec<String> {
    vec![
        svc("np", "10.96.0.30")
            .type_("NodePort")
            .port("", "TCP", 80, 8080, Some(30090))
            .spec("externalTrafficPolicy: Local")
            .yaml(),
        http_slice("np", &ready(eps)),
    ]
}

/// `web` served by all six pods on each of their three ports: 18 endpoints from three slices
/// (one port number per slice, as during a rolling update of the target port).
fn web_eighteen() -> Vec<String> {
    let all = ["pod-a1", "pod-a2", "pod-a3", "pod-b1", "pod-b2", "pod-b3"];
    let mut out = vec![svc("web", "10.96.0.10").http().yaml()];
    for (i, port) in crate::topology::POD_PORTS.into_iter().enumerate() {
        out.push(
            slice("web", &[("", "TCP", port)], &ready(&all))
                .replace("name: web-x", &format!("name: web-{i}")),
        );
    }
    out
}

/// The node with its second address (the link to the remote node) in its Node object too, so
/// `explain` knows it is local.
fn with_both_node_addresses(step: Step) -> Step {
    match step {
        Step::Apply(y) => Step::Apply(y.replacen(
            "addresses: [{type: InternalIP, address: 192.168.0.10}]",
            "addresses: [{type: InternalIP, address: 192.168.0.10}, {type: InternalIP, address: 192.168.1.10}]",
            1,
        )),
        other => other,
    }
}

pub(super) fn scenarios() -> Vec<Scenario> {
    vec![
        sc("session-affinity-sticky", "sessionAffinity ClientIP keeps a client on one endpoint across 20 connections", vec![
            apply(&[
                svc("sticky", "10.96.0.31").http().spec("sessionAffinity: ClientIP").yaml(),
                http_slice("sticky", &ready(&["pod-a2", "pod-a3", "pod-b1"])),
            ]),
            Step::Check(vec![Check::new(Pod("pod-a1"), "10.96.0.31:80/tcp", Expect::Sticky { pods: vec!["pod-a2", "pod-a3", "pod-b1"], masq: false })]),
        ]),
        sc("load-spread-three-endpoints", "300 connections spread over 3 endpoints: each hit, chi-square sane", vec![
            apply(&web(&["pod-a2", "pod-b1", "pod-b2"])),
            Step::Check(vec![Check::new(Pod("pod-a1"), "10.96.0.10:80/tcp", Expect::Spread { pods: vec!["pod-a2", "pod-b1", "pod-b2"], masq: false })]),
        ]),
        sc("load-spread-eighteen-endpoints", "300 outside connections over 18 endpoints (3 slices): every pod hit, chi-square sane", vec![
            apply(&web_eighteen()),
            Step::Check(vec![Check::new(Client, "10.96.0.10:80/tcp", Expect::Spread { pods: vec!["pod-a1", "pod-a2", "pod-a3", "pod-b1", "pod-b2", "pod-b3"], masq: true })]),
        ]),
        Scenario {
            node: NodeSettings { nodeports_on_all_addresses: true, ..NodeSettings::default() },
            ..sc("nodeports-on-every-local-address", "--nodeport-addresses matching all: NodePorts answer on every node address, policies and affinity included", vec![
                with_both_node_addresses(apply(&[
                    svc("np-all", "10.96.0.12").type_("NodePort").port("", "TCP", 80, 8080, Some(30080)).yaml(),
                    http_slice("np-all", &ready(&["pod-a1", "pod-b1"])),
                    np_local(&["pod-a2", "pod-b1"]).join("---\n"),
                    svc("sticky", "10.96.0.31").type_("NodePort").port("", "TCP", 80, 8080, Some(30091)).spec("sessionAffinity: ClientIP").yaml(),
                    http_slice("sticky", &ready(&["pod-a2", "pod-a3", "pod-b1"])),
                ])),
                Step::Check(vec![
                    Check::new(Client, "192.168.0.10:30080/tcp", pods(&["pod-a1", "pod-b1"], true)),
                    Check::new(Client, "192.168.1.10:30080/tcp", pods(&["pod-a1", "pod-b1"], true)),
                    Check::new(Client, "192.168.1.10:30090/tcp", pods(&["pod-a2"], false)),
                    Check::new(Pod("pod-a1"), "192.168.1.10:30090/tcp", pods(&["pod-a2", "pod-b1"], false)),
                    Check::new(Client, "192.168.1.10:30091/tcp", Expect::Sticky { pods: vec!["pod-a2", "pod-a3", "pod-b1"], masq: true }),
                ]),
            ])
        },
        sc("etp-local-keeps-client-ip", "externalTrafficPolicy Local: outside traffic reaches only local endpoints, client IP kept", vec![
            apply(&np_local(&["pod-a2", "pod-b1"])),
            Step::Check(vec![Check::new(Client, "192.168.0.10:30090/tcp", pods(&["pod-a2"], false))]),
        ]),
        sc("etp-local-no-local-drops", "externalTrafficPolicy Local without a local endpoint drops outside traffic", vec![
            apply(&np_local(&["pod-b1"])),
            Step::Check(vec![Check::new(Client, "192.168.0.10:30090/tcp", Expect::Drop)]),
        ]),
        sc("etp-local-short-circuit", "externalTrafficPolicy Local: pods and the host still reach remote endpoints", vec![
            apply(&np_local(&["pod-b1"])),
            Step::Check(vec![
                Check::new(Pod("pod-a1"), "192.168.0.10:30090/tcp", pods(&["pod-b1"], false)),
                Check::new(Node, "192.168.0.10:30090/tcp", pods(&["pod-b1"], true)),
            ]),
        ]),
        sc("itp-local", "internalTrafficPolicy Local: cluster-IP traffic stays on this node", vec![
            apply(&[svc("itp", "10.96.0.32").http().spec("internalTrafficPolicy: Local").yaml(), http_slice("itp", &ready(&["pod-a2", "pod-b1"]))]),
            Step::Check(vec![Check { count: 20, ..Check::new(Pod("pod-a1"), "10.96.0.32:80/tcp", pods(&["pod-a2"], false)) }]),
        ]),
        sc("itp-local-no-local-drops", "internalTrafficPolicy Local without a local endpoint drops", vec![
            apply(&[svc("itp", "10.96.0.32").http().spec("internalTrafficPolicy: Local").yaml(), http_slice("itp", &ready(&["pod-b1"]))]),
            Step::Check(vec![Check::new(Pod("pod-a1"), "10.96.0.32:80/tcp", Expect::Drop)]),
        ]),
        sc("masquerade-outside-to-clusterip", "traffic from outside the cluster CIDR to a cluster IP is masqueraded", vec![
            apply(&web(&["pod-b1"])),
            Step::Check(vec![
                Check::new(Client, "10.96.0.10:80/tcp", pods(&["pod-b1"], true)),
                Check::new(Node, "10.96.0.10:80/tcp", pods(&["pod-b1"], true)),
            ]),
        ]),
        sc("hairpin", "a pod reaching itself through its Service is masqueraded, so the reply returns", vec![
            apply(&web(&["pod-a1"])),
            Step::Check(vec![Check::new(Pod("pod-a1"), "10.96.0.10:80/tcp", pods(&["pod-a1"], true))]),
        ]),
        Scenario {
            node: NodeSettings { masquerade_all: true, ..NodeSettings::default() },
            ..sc("masquerade-all", "--masquerade-all masquerades pod traffic to cluster IPs too", vec![
                apply(&web(&["pod-b1"])),
                Step::Check(vec![Check::new(Pod("pod-a1"), "10.96.0.10:80/tcp", pods(&["pod-b1"], true))]),
            ])
        },
    ]
}
