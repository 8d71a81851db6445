//! Service shapes: cluster IPs, ports, protocols, NodePorts, external and load-balancer IPs,
//! endpoint conditions.

use super::*;
use crate::scenario::{Check, Expect, NodeSettings, Requirement, Scenario, Step};
use crate::topology::From::{Client, Node, Pod};

pub(super) fn sc(name: &'static str, about: &'static str, steps: Vec<Step>) -> Scenario {
    Scenario {
        name,
        about,
        node: NodeSettings::default(),
        steps,
        requires: None,
    }
}

pub(super) fn apply(objects: &[String]) -> Step {
    Step::Apply(manifest(objects))
}

pub(super) fn pods(pods: &[&'static str], masq: bool) -> Expect {
    Expect::Pods {
        pods: pods.to_vec(),
        masq,
    }
}

pub(super) fn web(eps: &[&str]) -> Vec<String> {
    vec![
        svc("web", "10.96.0.10").http().yaml(),
        http_slice("web", &ready(eps)),
    ]
}

pub(super) fn scenarios() -> Vec<Scenario> {
    vec![
        sc("clusterip-tcp", "pod to a cluster IP over TCP reaches the endpoints, source kept", vec![
            apply(&web(&["pod-a2", "pod-b1"])),
            Step::Check(vec![Check::new(Pod("pod-a1"), "10.96.0.10:80/tcp", pods(&["pod-a2", "pod-b1"], false))]),
        ]),
        sc("clusterip-udp", "pod to a cluster IP over UDP", vec![
            apply(&[svc("dns", "10.96.0.53").port("", "UDP", 53, 8081, None).yaml(), slice("dns", &[("", "UDP", 8081)], &ready(&["pod-a2", "pod-b2"]))]),
            Step::Check(vec![Check::new(Pod("pod-a1"), "10.96.0.53:53/udp", pods(&["pod-a2", "pod-b2"], false))]),
        ]),
        Scenario {
            requires: Some(Requirement::Sctp),
            ..sc("clusterip-sctp", "pod to a cluster IP over SCTP", vec![
                apply(&[svc("sig", "10.96.0.60").port("", "SCTP", 80, 8080, None).yaml(), slice("sig", &[("", "SCTP", 8080)], &ready(&["pod-a2"]))]),
                Step::Check(vec![Check::new(Pod("pod-a1"), "10.96.0.60:80/sctp", pods(&["pod-a2"], false))]),
            ])
        },
        sc("multi-port-named", "named ports map to the target ports the slice names, not by position", vec![
            apply(&[
                svc("multi", "10.96.0.11").port("http", "TCP", 80, 8080, None).port("metrics", "TCP", 9090, 9100, None).yaml(),
                slice("multi", &[("metrics", "TCP", 9100), ("http", "TCP", 8080)], &ready(&["pod-b1"])),
            ]),
            Step::Check(vec![
                Check::new(Pod("pod-a1"), "10.96.0.11:80/tcp", pods(&["pod-b1"], false)),
                Check::new(Pod("pod-a1"), "10.96.0.11:9090/tcp", pods(&["pod-b1"], false)),
            ]),
        ]),
        sc("same-port-two-protocols", "port 53 over TCP and UDP go to different target ports", vec![
            apply(&[
                svc("dns2", "10.96.0.54").port("dns", "UDP", 53, 8081, None).port("dns-tcp", "TCP", 53, 9100, None).yaml(),
                slice("dns2", &[("dns", "UDP", 8081), ("dns-tcp", "TCP", 9100)], &ready(&["pod-b2"])),
            ]),
            Step::Check(vec![
                Check::new(Pod("pod-a1"), "10.96.0.54:53/udp", pods(&["pod-b2"], false)),
                Check::new(Pod("pod-a1"), "10.96.0.54:53/tcp", pods(&["pod-b2"], false)),
            ]),
        ]),
        sc("clusterip-unknown-port-rejected", "a cluster IP on a port no Service defines is refused at once", vec![
            apply(&web(&["pod-b1"])),
            Step::Check(vec![Check::new(Pod("pod-a1"), "10.96.0.10:81/tcp", Expect::Reject)]),
        ]),
        sc("nodeport-from-outside", "NodePort on the node address from an outside client, masqueraded", vec![
            apply(&[svc("np", "10.96.0.12").type_("NodePort").port("", "TCP", 80, 8080, Some(30080)).yaml(), http_slice("np", &ready(&["pod-a1", "pod-b1"]))]),
            Step::Check(vec![Check::new(Client, "192.168.0.10:30080/tcp", pods(&["pod-a1", "pod-b1"], true))]),
        ]),
        sc("nodeport-from-node", "NodePort from the node itself, masqueraded", vec![
            apply(&[svc("np", "10.96.0.12").type_("NodePort").port("", "TCP", 80, 8080, Some(30080)).yaml(), http_slice("np", &ready(&["pod-b1"]))]),
            Step::Check(vec![Check::new(Node, "192.168.0.10:30080/tcp", pods(&["pod-b1"], true))]),
        ]),
        sc("nodeport-udp", "UDP NodePort from an outside client", vec![
            apply(&[svc("npu", "10.96.0.13").type_("NodePort").port("", "UDP", 53, 8081, Some(30053)).yaml(), slice("npu", &[("", "UDP", 8081)], &ready(&["pod-b2"]))]),
            Step::Check(vec![Check::new(Client, "192.168.0.10:30053/udp", pods(&["pod-b2"], true))]),
        ]),
        sc("external-ip", "an external IP routed to the node reaches the endpoints, masqueraded", vec![
            apply(&[svc("ext", "10.96.0.14").http().spec("externalIPs: [198.51.100.7]").yaml(), http_slice("ext", &ready(&["pod-a2", "pod-b2"]))]),
            Step::Check(vec![Check::new(Client, "198.51.100.7:80/tcp", pods(&["pod-a2", "pod-b2"], true))]),
        ]),
        sc("loadbalancer-ip", "a load-balancer ingress IP reaches the endpoints", vec![
            apply(&[svc("lb", "10.96.0.15").port("", "TCP", 80, 8080, Some(30081)).lb("198.51.100.8").yaml(), http_slice("lb", &ready(&["pod-b3"]))]),
            Step::Check(vec![Check::new(Client, "198.51.100.8:80/tcp", pods(&["pod-b3"], true))]),
        ]),
        sc("lb-source-range-allows", "loadBalancerSourceRanges lets a listed client in", vec![
            apply(&[
                svc("lbr", "10.96.0.16").port("", "TCP", 80, 8080, Some(30082)).lb("198.51.100.9").spec("loadBalancerSourceRanges: [192.168.0.20/32]").yaml(),
                http_slice("lbr", &ready(&["pod-b1"])),
            ]),
            Step::Check(vec![Check::new(Client, "198.51.100.9:80/tcp", pods(&["pod-b1"], true))]),
        ]),
        sc("lb-source-range-denies", "loadBalancerSourceRanges drops other clients, not the NodePort", vec![
            apply(&[
                svc("lbr", "10.96.0.16").port("", "TCP", 80, 8080, Some(30082)).lb("198.51.100.9").spec("loadBalancerSourceRanges: [198.18.0.0/16]").yaml(),
                http_slice("lbr", &ready(&["pod-b1"])),
            ]),
            Step::Check(vec![
                Check::new(Client, "198.51.100.9:80/tcp", Expect::Drop),
                Check::new(Client, "192.168.0.10:30082/tcp", pods(&["pod-b1"], true)),
            ]),
        ]),
        sc(
            "lb-source-range-no-endpoints",
            "no endpoints behind a source-restricted LB: allowed sources are refused, others dropped",
            vec![
                apply(&[
                    svc("lbr", "10.96.0.16")
                        .port("", "TCP", 80, 8080, Some(30082))
                        .lb("198.51.100.9")
                        .spec("loadBalancerSourceRanges: [192.168.0.20/32]")
                        .yaml(),
                    http_slice("lbr", &[]),
                ]),
                Step::Check(vec![
                    Check::new(Client, "198.51.100.9:80/tcp", Expect::Reject),
                    Check::new(Pod("pod-a1"), "198.51.100.9:80/tcp", Expect::Drop),
                ]),
            ],
        ),
        sc("no-endpoints-reject-tcp", "no endpoints: TCP is refused with a reset, not left to time out", vec![
            apply(&[svc("empty", "10.96.0.17").port("", "TCP", 80, 8080, Some(30083)).type_("NodePort").yaml(), http_slice("empty", &[])]),
            Step::Check(vec![
                Check::new(Pod("pod-a1"), "10.96.0.17:80/tcp", Expect::Reject),
                Check::new(Client, "192.168.0.10:30083/tcp", Expect::Reject),
                Check::new(Node, "10.96.0.17:80/tcp", Expect::Reject),
            ]),
        ]),
        sc("no-endpoints-reject-udp", "no endpoints: UDP gets ICMP port unreachable", vec![
            apply(&[svc("emptyu", "10.96.0.18").port("", "UDP", 53, 8081, None).yaml(), slice("emptyu", &[("", "UDP", 8081)], &[])]),
            Step::Check(vec![Check::new(Pod("pod-a1"), "10.96.0.18:53/udp", Expect::Reject)]),
        ]),
        sc("not-ready-excluded", "a not-ready endpoint never receives traffic", vec![
            apply(&[svc("web", "10.96.0.10").http().yaml(), http_slice("web", &[("pod-a2", Cond::Ready), ("pod-b1", Cond::NotReady)])]),
            Step::Check(vec![Check { count: 20, ..Check::new(Pod("pod-a1"), "10.96.0.10:80/tcp", pods(&["pod-a2"], false)) }]),
        ]),
        sc("serving-terminating-fallback", "with nothing ready, serving-terminating endpoints are used", vec![
            apply(&[svc("web", "10.96.0.10").http().yaml(), http_slice("web", &[("pod-a2", Cond::NotReady), ("pod-b1", Cond::Terminating)])]),
            Step::Check(vec![Check { count: 10, ..Check::new(Pod("pod-a1"), "10.96.0.10:80/tcp", pods(&["pod-b1"], false)) }]),
        ]),
        sc("selectorless-manual-endpoints", "a Service without selector uses hand-written v1 Endpoints", vec![
            apply(&[
                svc("legacy", "10.96.0.19").port("pg", "TCP", 5432, 8080, None).selectorless().yaml(),
                "apiVersion: v1\nkind: Endpoints\nmetadata: {name: legacy, namespace: default}\nsubsets:\n- addresses: [{ip: 10.244.2.11, nodeName: node-b}]\n  ports: [{name: pg, port: 8080}]\n".into(),
            ]),
            Step::Check(vec![Check::new(Pod("pod-a1"), "10.96.0.19:5432/tcp", pods(&["pod-b2"], false))]),
        ]),
        sc("externalname-and-headless-no-rules", "ExternalName and headless Services program nothing; pod traffic is untouched", vec![
            apply(&[
                svc("en", "10.96.0.20").type_("ExternalName").yaml(),
                svc("hl", "None").http().yaml(),
                http_slice("hl", &ready(&["pod-b1"])),
            ]),
            Step::Check(vec![
                Check::new(Pod("pod-a1"), "10.96.0.20:80/tcp", Expect::NotProxied),
                Check::new(Pod("pod-a1"), "10.244.2.10:8080/tcp", Expect::Direct("pod-b1")),
                Check::new(Client, "10.244.2.10:8080/tcp", Expect::Direct("pod-b1")),
            ]),
        ]),
    ]
}
