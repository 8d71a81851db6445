//! Changes over time, cleanup, mode switches and coexistence with foreign rules.

use super::basics::{apply, pods, sc, web};
use super::*;
use crate::scenario::{Check, Expect, Scenario, Step};
use crate::topology::From::{Client, Pod};

fn np(node_port: u16, eps: &[&str]) -> Vec<String> {
    vec![
        svc("np", "10.96.0.40")
            .type_("NodePort")
            .port("", "TCP", 80, 8080, Some(node_port))
            .yaml(),
        http_slice("np", &ready(eps)),
    ]
}

pub(super) fn scenarios() -> Vec<Scenario> {
    vec![
        sc(
            "endpoint-added",
            "a new endpoint starts receiving traffic after the next sync",
            vec![
                apply(&web(&["pod-a2"])),
                Step::Check(vec![Check::new(
                    Pod("pod-a1"),
                    "10.96.0.10:80/tcp",
                    pods(&["pod-a2"], false),
                )]),
                apply(&web(&["pod-a2", "pod-b1"])),
                Step::Check(vec![Check::new(
                    Pod("pod-a1"),
                    "10.96.0.10:80/tcp",
                    Expect::Spread {
                        pods: vec!["pod-a2", "pod-b1"],
                        masq: false,
                    },
                )]),
            ],
        ),
        sc(
            "endpoint-removed",
            "a removed endpoint stops receiving new connections",
            vec![
                apply(&web(&["pod-a2", "pod-b1"])),
                Step::Check(vec![Check::new(
                    Pod("pod-a1"),
                    "10.96.0.10:80/tcp",
                    pods(&["pod-a2", "pod-b1"], false),
                )]),
                apply(&web(&["pod-b1"])),
                Step::Check(vec![Check {
                    count: 20,
                    ..Check::new(Pod("pod-a1"), "10.96.0.10:80/tcp", pods(&["pod-b1"], false))
                }]),
            ],
        ),
        sc(
            "service-deleted",
            "a deleted Service's rules are gone; the others keep working",
            vec![
                apply(&[web(&["pod-b1"]), np(30100, &["pod-b2"])].concat()),
                apply(&np(30100, &["pod-b2"])),
                Step::Check(vec![
                    Check::new(Pod("pod-a1"), "10.96.0.10:80/tcp", Expect::NotProxied),
                    Check::new(Client, "192.168.0.10:30100/tcp", pods(&["pod-b2"], true)),
                ]),
            ],
        ),
        sc(
            "port-changed",
            "changing a Service port moves it: the old port is refused, the new one works",
            vec![
                apply(&web(&["pod-b1"])),
                apply(&[
                    svc("web", "10.96.0.10")
                        .port("", "TCP", 81, 8080, None)
                        .yaml(),
                    http_slice("web", &ready(&["pod-b1"])),
                ]),
                Step::Check(vec![
                    Check::new(Pod("pod-a1"), "10.96.0.10:80/tcp", Expect::Reject),
                    Check::new(Pod("pod-a1"), "10.96.0.10:81/tcp", pods(&["pod-b1"], false)),
                ]),
            ],
        ),
        sc(
            "nodeport-changed",
            "changing a NodePort moves it",
            vec![
                apply(&np(30101, &["pod-b1"])),
                Step::Check(vec![Check::new(
                    Client,
                    "192.168.0.10:30101/tcp",
                    pods(&["pod-b1"], true),
                )]),
                apply(&np(30102, &["pod-b1"])),
                Step::Check(vec![
                    Check::new(Client, "192.168.0.10:30101/tcp", Expect::NotProxied),
                    Check::new(Client, "192.168.0.10:30102/tcp", pods(&["pod-b1"], true)),
                ]),
            ],
        ),
        sc(
            "endpoints-to-none-and-back",
            "losing every endpoint turns into a reject, and back",
            vec![
                apply(&web(&["pod-b1"])),
                apply(&[
                    svc("web", "10.96.0.10").http().yaml(),
                    http_slice("web", &[]),
                ]),
                Step::Check(vec![Check::new(
                    Pod("pod-a1"),
                    "10.96.0.10:80/tcp",
                    Expect::Reject,
                )]),
                apply(&web(&["pod-b2"])),
                Step::Check(vec![Check::new(
                    Pod("pod-a1"),
                    "10.96.0.10:80/tcp",
                    pods(&["pod-b2"], false),
                )]),
            ],
        ),
        sc(
            "cleanup-removes-everything",
            "cleanup leaves nothing of ours, and service traffic is no longer proxied",
            vec![
                apply(&web(&["pod-b1"])),
                Step::Check(vec![Check::new(
                    Pod("pod-a1"),
                    "10.96.0.10:80/tcp",
                    pods(&["pod-b1"], false),
                )]),
                Step::CleanupAndVerify,
                apply(&[]),
                Step::Check(vec![Check::new(
                    Pod("pod-a1"),
                    "10.96.0.10:80/tcp",
                    Expect::NotProxied,
                )]),
            ],
        ),
        sc(
            "mode-switch",
            "applying with one backend, cleaning up and switching to another leaves no leftovers",
            vec![
                apply(&web(&["pod-b1"])),
                Step::SwitchBackend,
                apply(&web(&["pod-b2"])),
                Step::Check(vec![Check::new(
                    Pod("pod-a1"),
                    "10.96.0.10:80/tcp",
                    pods(&["pod-b2"], false),
                )]),
            ],
        ),
        sc(
            "foreign-rules-survive",
            "rules in tables and chains we do not own survive syncs and cleanup",
            vec![
                Step::NodeCommand(vec!["iptables-nft", "-t", "nat", "-N", "FOREIGN-NFT"]),
                Step::NodeCommand(vec![
                    "iptables-legacy",
                    "-t",
                    "filter",
                    "-N",
                    "FOREIGN-LEGACY",
                ]),
                Step::NodeCommand(vec!["nft", "add", "table", "inet", "foreign"]),
                Step::NodeCommand(vec!["nft", "add", "chain", "inet", "foreign", "keep"]),
                apply(&web(&["pod-b1"])),
                apply(&web(&["pod-b2"])),
                Step::Check(vec![Check::new(
                    Pod("pod-a1"),
                    "10.96.0.10:80/tcp",
                    pods(&["pod-b2"], false),
                )]),
                Step::CleanupAndVerify,
                Step::NodeOutput {
                    command: vec!["iptables-nft-save", "-t", "nat"],
                    contains: vec![":FOREIGN-NFT"],
                },
                Step::NodeOutput {
                    command: vec!["iptables-legacy-save", "-t", "filter"],
                    contains: vec![":FOREIGN-LEGACY"],
                },
                Step::NodeOutput {
                    command: vec!["nft", "list", "table", "inet", "foreign"],
                    contains: vec!["chain keep"],
                },
            ],
        ),
    ]
}
