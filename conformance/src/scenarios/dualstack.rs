//! Dual-stack Services written as such: each family's endpoints differ, so a packet of one
//! family reaching the other family's endpoint set shows. These run in the dual-stack column
//! only ([`Families::DualAsWritten`]); every other scenario gets its IPv6 and dual-stack cells
//! by translation (`crate::family`), like `nodeport-addresses-cidr` here.

use super::basics::{apply, pods};
use super::*;
use crate::family::{v6_of, Families};
use crate::scenario::{Check, Expect, NodeSettings, Scenario, Step};
use crate::topology::From::{Client, Node, Pod};

fn dual(name: &'static str, about: &'static str, steps: Vec<Step>) -> Scenario {
    Scenario {
        name,
        about,
        node: NodeSettings {
            families: Families::DualAsWritten,
            ..NodeSettings::default()
        },
        steps,
        requires: None,
    }
}

/// A RequireDualStack Service with both cluster IPs (`10.96.0.<n>` and its twin).
fn dual_svc(name: &'static str, v4: &'static str) -> Svc {
    let v6 = v6_of(
        v4.parse()
            .unwrap_or_else(|_| panic!("{v4}: not an IPv4 address")),
    );
    svc(name, v4)
        .spec(&format!("clusterIPs: [{v4}, \"{v6}\"]"))
        .spec("ipFamilyPolicy: RequireDualStack")
        .spec("ipFamilies: [IPv4, IPv6]")
}

/// The IPv6 EndpointSlice of `service`: port 8080/TCP, these ready pods' IPv6 addresses.
fn v6_slice(service: &str, eps: &[&str]) -> String {
    let mut y = http_slice(service, &ready(eps))
        .replace("addressType: IPv4", "addressType: IPv6")
        .replace(
            &format!("name: {service}-x"),
            &format!("name: {service}-x6"),
        );
    for (_, ip, _) in PODS {
        y = y.replace(&format!("[{ip}]"), &format!("[\"{}\"]", v6_of(ip)));
    }
    y
}

/// The manifest with the Node carrying both families' InternalIPs.
fn dual_manifest(objects: &[String]) -> Step {
    match apply(objects) {
        Step::Apply(y) => Step::Apply(y.replacen(
            "addresses: [{type: InternalIP, address: 192.168.0.10}]",
            "addresses: [{type: InternalIP, address: 192.168.0.10}, {type: InternalIP, address: \"fd00:192:168::10\"}]",
            1,
        )),
        other => other,
    }
}

/// A NodePort Service `np` (30080) on pod-a1 and pod-b1.
fn np() -> Vec<String> {
    vec![
        svc("np", "10.96.0.75")
            .type_("NodePort")
            .port("", "TCP", 80, 8080, Some(30080))
            .yaml(),
        http_slice("np", &ready(&["pod-a1", "pod-b1"])),
    ]
}

pub(super) fn scenarios() -> Vec<Scenario> {
    let np_addresses = |families| NodeSettings {
        nodeport_addresses: Some("192.168.1.0/24"),
        families,
        ..NodeSettings::default()
    };
    vec![
        Scenario {
            node: np_addresses(Families::Every),
            ..super::basics::sc(
                "nodeport-addresses-cidr",
                "--nodeport-addresses 192.168.1.0/24: NodePorts on the node address inside it only",
                vec![
                    apply(&np()),
                    Step::Check(vec![
                        Check::new(Client, "192.168.1.10:30080/tcp", pods(&["pod-a1", "pod-b1"], true)),
                        Check::new(Client, "192.168.0.10:30080/tcp", Expect::NotProxied),
                    ]),
                ],
            )
        },
        Scenario {
            node: np_addresses(Families::DualAsWritten),
            ..super::basics::sc(
                "dual-stack-nodeport-addresses-one-family",
                "--nodeport-addresses with an IPv4 CIDR only: IPv4 NodePorts inside it, IPv6 on every node address (as kube-proxy)",
                vec![
                    // The link address in the Node object too, so `explain` knows it is local.
                    match dual_manifest(&[
                        dual_svc("np", "10.96.0.75").type_("NodePort").port("", "TCP", 80, 8080, Some(30080)).yaml(),
                        http_slice("np", &ready(&["pod-a1", "pod-b1"])),
                        v6_slice("np", &["pod-a1", "pod-b1"]),
                    ]) {
                        Step::Apply(y) => Step::Apply(y.replacen(
                            "address: \"fd00:192:168::10\"}",
                            "address: \"fd00:192:168::10\"}, {type: InternalIP, address: \"fd00:192:168:1::10\"}",
                            1,
                        )),
                        other => other,
                    },
                    Step::Check(vec![
                        Check::new(Client, "192.168.1.10:30080/tcp", pods(&["pod-a1", "pod-b1"], true)),
                        Check::new(Client, "192.168.0.10:30080/tcp", Expect::NotProxied),
                        Check::new(Client, "[fd00:192:168::10]:30080/tcp", pods(&["pod-a1", "pod-b1"], true)),
                        Check::new(Client, "[fd00:192:168:1::10]:30080/tcp", pods(&["pod-a1", "pod-b1"], true)),
                    ]),
                ],
            )
        },
        dual(
            "dual-stack-each-family-its-own-endpoints",
            "a dual-stack Service: cluster IP and NodePort of each family reach only that family's slice",
            vec![
                dual_manifest(&[
                    dual_svc("ds", "10.96.0.70")
                        .type_("NodePort")
                        .port("", "TCP", 80, 8080, Some(30700))
                        .yaml(),
                    http_slice("ds", &ready(&["pod-a2", "pod-b1"])),
                    v6_slice("ds", &["pod-b2"]),
                ]),
                Step::Check(vec![
                    Check::new(Pod("pod-a1"), "10.96.0.70:80/tcp", pods(&["pod-a2", "pod-b1"], false)),
                    Check::new(Pod("pod-a1"), "[fd00:10:96::70]:80/tcp", pods(&["pod-b2"], false)),
                    Check::new(Client, "192.168.0.10:30700/tcp", pods(&["pod-a2", "pod-b1"], true)),
                    Check::new(Client, "[fd00:192:168::10]:30700/tcp", pods(&["pod-b2"], true)),
                    Check::new(Node, "[fd00:10:96::70]:80/tcp", pods(&["pod-b2"], true)),
                ]),
            ],
        ),
        dual(
            "dual-stack-one-family-without-endpoints",
            "an empty IPv6 slice rejects IPv6 while IPv4 keeps its endpoints, and back",
            vec![
                dual_manifest(&[
                    dual_svc("ds", "10.96.0.71").http().yaml(),
                    http_slice("ds", &ready(&["pod-b1"])),
                    v6_slice("ds", &[]),
                ]),
                Step::Check(vec![
                    Check::new(Pod("pod-a1"), "10.96.0.71:80/tcp", pods(&["pod-b1"], false)),
                    Check::new(Pod("pod-a1"), "[fd00:10:96::71]:80/tcp", Expect::Reject),
                ]),
                dual_manifest(&[
                    dual_svc("ds", "10.96.0.71").http().yaml(),
                    http_slice("ds", &[]),
                    v6_slice("ds", &["pod-a3"]),
                ]),
                Step::Check(vec![
                    Check::new(Pod("pod-a1"), "10.96.0.71:80/tcp", Expect::Reject),
                    Check::new(Pod("pod-a1"), "[fd00:10:96::71]:80/tcp", pods(&["pod-a3"], false)),
                ]),
            ],
        ),
        dual(
            "dual-stack-source-ranges-per-family",
            "loadBalancerSourceRanges with IPv4 entries only: IPv4 filtered by them, IPv6 closed (DESIGN-NOTES 183)",
            vec![
                dual_manifest(&[
                    dual_svc("lbr", "10.96.0.72")
                        .port("", "TCP", 80, 8080, Some(30720))
                        .lb("198.51.100.9")
                        .spec("loadBalancerSourceRanges: [192.168.0.20/32]")
                        .yaml()
                        .replace(
                            "    - ip: 198.51.100.9\n",
                            "    - ip: 198.51.100.9\n    - ip: \"fd00:198:51:100::9\"\n",
                        ),
                    http_slice("lbr", &ready(&["pod-b1"])),
                    v6_slice("lbr", &["pod-b1"]),
                ]),
                Step::Check(vec![
                    Check::new(Client, "198.51.100.9:80/tcp", pods(&["pod-b1"], true)),
                    Check::new(Client, "[fd00:198:51:100::9]:80/tcp", Expect::Drop),
                    // Source ranges never apply to the NodePort, in either family.
                    Check::new(Client, "[fd00:192:168::10]:30720/tcp", pods(&["pod-b1"], true)),
                ]),
            ],
        ),
        dual(
            "dual-stack-single-stack-services-side-by-side",
            "on a dual-stack node an IPv4-only and an IPv6-only Service each exist in their own family only",
            vec![
                dual_manifest(&[
                    svc("v4only", "10.96.0.73").http().yaml(),
                    http_slice("v4only", &ready(&["pod-a2"])),
                    svc("v6only", "fd00:10:96::74")
                        .http()
                        .spec("ipFamilies: [IPv6]")
                        .yaml()
                        .replace("clusterIP: fd00:10:96::74", "clusterIP: \"fd00:10:96::74\""),
                    v6_slice("v6only", &["pod-b3"]),
                ]),
                Step::Check(vec![
                    Check::new(Pod("pod-a1"), "10.96.0.73:80/tcp", pods(&["pod-a2"], false)),
                    Check::new(Pod("pod-a1"), "[fd00:10:96::74]:80/tcp", pods(&["pod-b3"], false)),
                    // The twins of each: no Service, untouched (answered by the sink).
                    Check::new(Pod("pod-a1"), "[fd00:10:96::73]:80/tcp", Expect::NotProxied),
                    Check::new(Pod("pod-a1"), "10.96.0.74:80/tcp", Expect::NotProxied),
                ]),
            ],
        ),
    ]
}
