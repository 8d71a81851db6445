//! Hostile objects, unallocated service addresses, trusted NodePorts, and kernel state across
//! resyncs and restarts (DESIGN §7): one bad object costs only itself, nothing the kernel
//! learned is reset by a sync.

use super::basics::{apply, pods, sc, web};
use super::*;
use crate::scenario::{Check, Expect, NodeSettings, Requirement, Scenario, Step};
use crate::topology::From::{Client, Node, Pod};

/// An old object: it would win every claim among equals.
const OLD: &str = "2020-01-01T00:00:00Z";
const NEW: &str = "2024-01-01T00:00:00Z";

fn expecting_warnings(n: usize, s: Scenario) -> Scenario {
    Scenario {
        node: NodeSettings {
            warnings: n,
            ..s.node
        },
        ..s
    }
}

pub(super) fn scenarios() -> Vec<Scenario> {
    let sticky = |masq| Expect::Sticky {
        pods: vec!["pod-a2", "pod-a3", "pod-b1"],
        masq,
    };
    // Three clients the node routes for in both directions (a pod on the node, the outside
    // client, the host): a remote pod's reply from a remote endpoint would bypass this node.
    let sticky_checks = || {
        Step::Check(vec![
            Check::new(Pod("pod-a1"), "10.96.0.31:80/tcp", sticky(false)),
            Check::new(Client, "10.96.0.31:80/tcp", sticky(true)),
            Check::new(Node, "10.96.0.31:80/tcp", sticky(true)),
        ])
    };
    vec![
        expecting_warnings(1, sc(
            "hostile-external-ip-on-a-nodeport",
            "an older Service's externalIP = node IP on another's NodePort port loses; every Service works",
            vec![
                apply(&[
                    vec![
                        svc("victim", "10.96.0.40").type_("NodePort").port("", "TCP", 80, 8080, Some(30400)).created(NEW).yaml(),
                        http_slice("victim", &ready(&["pod-a2"])),
                        svc("hostile", "10.96.0.41").port("", "TCP", 30400, 8080, None).spec("externalIPs: [192.168.0.10]").created(OLD).yaml(),
                        http_slice("hostile", &ready(&["pod-b1"])),
                    ],
                    web(&["pod-a3"]),
                ]
                .concat()),
                Step::Check(vec![
                    Check::new(Client, "192.168.0.10:30400/tcp", pods(&["pod-a2"], true)),
                    Check::new(Pod("pod-a1"), "10.96.0.41:30400/tcp", pods(&["pod-b1"], false)),
                    Check::new(Pod("pod-a1"), "10.96.0.10:80/tcp", pods(&["pod-a3"], false)),
                ]),
            ],
        )),
        expecting_warnings(2, sc(
            "hostile-addresses-take-no-cluster-ip",
            "externalIPs and LB ingress naming another Service's cluster IP are ignored, whatever their age",
            vec![
                apply(&[
                    svc("victim", "10.96.0.42").http().created(NEW).yaml(),
                    http_slice("victim", &ready(&["pod-a2"])),
                    svc("by-ext", "10.96.0.43").http().spec("externalIPs: [10.96.0.42]").created(OLD).yaml(),
                    http_slice("by-ext", &ready(&["pod-b1"])),
                    svc("by-lb", "10.96.0.44").port("", "TCP", 81, 8080, None).lb("10.96.0.42").created(OLD).yaml(),
                    http_slice("by-lb", &ready(&["pod-b2"])),
                ]),
                Step::Check(vec![
                    Check::new(Pod("pod-a1"), "10.96.0.42:80/tcp", pods(&["pod-a2"], false)),
                    // Another port of the victim's cluster IP stays the victim's: refused.
                    Check::new(Pod("pod-a1"), "10.96.0.42:81/tcp", Expect::Reject),
                    Check::new(Pod("pod-a1"), "10.96.0.43:80/tcp", pods(&["pod-b1"], false)),
                    Check::new(Pod("pod-a1"), "10.96.0.44:81/tcp", pods(&["pod-b2"], false)),
                ]),
            ],
        )),
        Scenario {
            node: NodeSettings {
                service_cidr: Some("10.96.0.0/16"),
                ..NodeSettings::default()
            },
            ..sc(
                "unallocated-cluster-ip-dropped",
                "an address in the service CIDR that no Service owns is dropped; a live one on another port rejected",
                vec![
                    apply(&web(&["pod-a2"])),
                    Step::Check(vec![
                        Check::new(Pod("pod-a1"), "10.96.0.99:80/tcp", Expect::Drop),
                        Check::new(Client, "10.96.0.99:80/tcp", Expect::Drop),
                        Check::new(Pod("pod-a1"), "10.96.0.10:81/tcp", Expect::Reject),
                        Check::new(Pod("pod-a1"), "10.96.0.10:80/tcp", pods(&["pod-a2"], false)),
                    ]),
                ],
            )
        },
        sc(
            "nodeport-outside-the-default-range",
            "a NodePort the API allocated outside 30000-32767 works without --node-port-range",
            vec![
                apply(&[
                    svc("np", "10.96.0.45").type_("NodePort").port("", "TCP", 80, 8080, Some(8080)).yaml(),
                    http_slice("np", &ready(&["pod-b2"])),
                ]),
                Step::Check(vec![Check::new(Client, "192.168.0.10:8080/tcp", pods(&["pod-b2"], true))]),
            ],
        ),
        Scenario {
            requires: Some(Requirement::IptablesForward),
            ..sc(
                "forward-policy-drop",
                "with the host's FORWARD policy DROP (Docker), forwarded service traffic still passes",
                vec![
                    apply(&[
                        vec![
                            svc("np", "10.96.0.46").type_("NodePort").port("", "TCP", 80, 8080, Some(30460)).yaml(),
                            http_slice("np", &ready(&["pod-b1"])),
                            svc("np-local", "10.96.0.47").type_("NodePort").port("", "TCP", 80, 8080, Some(30470)).spec("externalTrafficPolicy: Local").yaml(),
                            http_slice("np-local", &ready(&["pod-a2"])),
                        ],
                        web(&["pod-b2"]),
                    ]
                    .concat()),
                    Step::ForwardPolicyDrop,
                    Step::Check(vec![
                        Check::new(Client, "192.168.0.10:30460/tcp", pods(&["pod-b1"], true)),
                        Check::new(Client, "192.168.0.10:30470/tcp", pods(&["pod-a2"], false)),
                        Check::new(Pod("pod-a1"), "10.96.0.10:80/tcp", pods(&["pod-b2"], false)),
                    ]),
                ],
            )
        },
        sc(
            "affinity-survives-resync-and-restart",
            "a ClientIP-affine client keeps its endpoint across a full resync and an agent restart",
            vec![
                apply(&[
                    svc("sticky", "10.96.0.31").http().spec("sessionAffinity: ClientIP").yaml(),
                    http_slice("sticky", &ready(&["pod-a2", "pod-a3", "pod-b1"])),
                ]),
                sticky_checks(),
                Step::FullResync,
                sticky_checks(),
                Step::Restart,
                sticky_checks(),
            ],
        ),
    ]
}
