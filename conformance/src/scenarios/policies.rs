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
            node: NodeSettings { masquerade_all: true },
            ..sc("masquerade-all", "--masquerade-all masquerades pod traffic to cluster IPs too", vec![
                apply(&web(&["pod-b1"])),
                Step::Check(vec![Check::new(Pod("pod-a1"), "10.96.0.10:80/tcp", pods(&["pod-b1"], true))]),
            ])
        },
    ]
}
