//! Conntrack cleanup: UDP clients that keep their source port across endpoint changes.
//!
//! Every probe of a pinned check leaves a conntrack entry the next one meets, so the new rules
//! only apply once the agent's cleanup (`switchyard_agent::conntrack`, run by the runner after
//! each apply as the sync loop runs it) has deleted the stale entry. Without it the client
//! keeps reaching the departed endpoint (here it still answers, so that is what the check sees)
//! or the address it reached before the Service existed.

use super::basics::{apply, pods, sc};
use super::*;
use crate::scenario::{Check, Expect, Scenario, Step};
use crate::topology::From::{Client, Pod};

const DNS: &str = "10.96.0.60:53/udp";
const DNS_NODEPORT: &str = "192.168.0.10:30060/udp";

/// `default/dns`: UDP 53 → 8080 on 10.96.0.60, NodePort 30060, with these ready endpoints.
fn dns(eps: &[&str]) -> Vec<String> {
    vec![
        svc("dns", "10.96.0.60")
            .type_("NodePort")
            .port("", "UDP", 53, 8080, Some(30060))
            .yaml(),
        slice("dns", &[("", "UDP", 8080)], &ready(eps)),
    ]
}

/// A pod client on the cluster IP and an outside client on the NodePort, both pinned.
fn both(expect_pod: Expect, expect_client: Expect) -> Step {
    Step::Check(vec![
        Check::pinned(Pod("pod-a1"), DNS, expect_pod),
        Check::pinned(Client, DNS_NODEPORT, expect_client),
    ])
}

pub(super) fn scenarios() -> Vec<Scenario> {
    vec![
        sc(
            "conntrack-udp-scaled-to-zero-and-back",
            "UDP clients keeping their source port are rejected at zero endpoints and reach the new endpoint after (kube-proxy #139628)",
            vec![
                apply(&dns(&["pod-b1"])),
                both(pods(&["pod-b1"], false), pods(&["pod-b1"], true)),
                apply(&dns(&[])),
                both(Expect::Reject, Expect::Reject),
                apply(&dns(&["pod-b2"])),
                both(pods(&["pod-b2"], false), pods(&["pod-b2"], true)),
            ],
        ),
        sc(
            "conntrack-udp-endpoint-replaced",
            "DNS pods replaced in one update: a client keeping its source port reaches the new pod (kube-proxy #126130)",
            vec![
                apply(&dns(&["pod-b1"])),
                both(pods(&["pod-b1"], false), pods(&["pod-b1"], true)),
                apply(&dns(&["pod-b2"])),
                both(pods(&["pod-b2"], false), pods(&["pod-b2"], true)),
            ],
        ),
        sc(
            "conntrack-udp-traffic-before-service",
            "UDP sent to a cluster IP before its Service existed reaches the endpoints once it does (kube-proxy #48370)",
            vec![
                apply(&[svc("other", "10.96.0.61").http().yaml()]),
                Step::Check(vec![Check::pinned(Pod("pod-a1"), DNS, Expect::NotProxied)]),
                apply(&dns(&["pod-b1"])),
                Step::Check(vec![Check::pinned(Pod("pod-a1"), DNS, pods(&["pod-b1"], false))]),
            ],
        ),
    ]
}
