//! The rows: nftables and both iptables variants.

use super::Fault;
use crate::scenario::{Check, Expect};
use crate::scenarios::{http_slice, manifest, ready, svc};
use crate::topology::From;

/// The cluster the faults run against: one NodePort Service with a cluster IP and two
/// endpoints (one local, one on the other node), and its state before the last change (one
/// endpoint), so the backend has done a full and an incremental sync before the tampering.
pub fn manifests() -> [String; 2] {
    let web = |eps: &[&str]| {
        manifest(&[
            svc("web", "10.96.0.10")
                .type_("NodePort")
                .port("", "TCP", 80, 8080, Some(30080))
                .yaml(),
            http_slice("web", &ready(eps)),
        ])
    };
    [web(&["pod-a2"]), web(&["pod-a2", "pod-b1"])]
}

fn both() -> Expect {
    Expect::Pods {
        pods: vec!["pod-a2", "pod-b1"],
        masq: false,
    }
}

/// A pod to the cluster IP: both endpoints, source kept.
pub fn cluster_ip_from_pod() -> Check {
    Check::new(From::Pod("pod-a1"), "10.96.0.10:80/tcp", both())
}

/// The node itself to the cluster IP (the output path): both endpoints, masqueraded.
pub fn cluster_ip_from_node() -> Check {
    Check::new(
        From::Node,
        "10.96.0.10:80/tcp",
        Expect::Pods {
            pods: vec!["pod-a2", "pod-b1"],
            masq: true,
        },
    )
}

/// The outside client to the NodePort on the node's address: both endpoints, masqueraded.
pub fn nodeport_from_client() -> Check {
    Check::new(
        From::Client,
        "192.168.0.10:30080/tcp",
        Expect::Pods {
            pods: vec!["pod-a2", "pod-b1"],
            masq: true,
        },
    )
}

/// Every row.
pub fn all() -> Vec<Fault> {
    vec![
        Fault {
            name: "nft-table-deleted",
            about: "`nft delete table ip switchyard` (another agent flushing the ruleset)",
            backend: "nftables",
            tamper: vec!["nft delete table ip switchyard"],
            breaks: cluster_ip_from_pod(),
        },
        Fault {
            name: "nft-base-chain-deleted",
            about: "our nat prerouting base chain flushed and deleted",
            backend: "nftables",
            tamper: vec![
                "nft flush chain ip switchyard nat-prerouting",
                "nft delete chain ip switchyard nat-prerouting",
            ],
            breaks: nodeport_from_client(),
        },
        Fault {
            name: "nft-jump-deleted",
            about: "the `jump services` rule of our nat output base chain deleted by handle",
            backend: "nftables",
            tamper: vec![
                "h=$(nft -a list chain ip switchyard nat-output | sed -n 's/.*jump services # handle \\([0-9]*\\).*/\\1/p'); \
                 test -n \"$h\" && nft delete rule ip switchyard nat-output handle $h",
            ],
            breaks: cluster_ip_from_node(),
        },
        Fault {
            name: "nft-set-element-deleted",
            about: "the cluster IP's element of the dispatch set deleted",
            backend: "nftables",
            tamper: vec![
                "nft delete element ip switchyard pod-cluster.masq-cluster-services '{ 10.96.0.10 . tcp . 80 }'",
            ],
            breaks: cluster_ip_from_pod(),
        },
        Fault {
            name: "nft-map-element-deleted",
            about: "one endpoint's element of an endpoint map deleted (half the connections)",
            backend: "nftables",
            tamper: vec![
                "nft delete element ip switchyard cluster-endpoint-1 '{ 10.96.0.10 . tcp . 80 }'",
            ],
            breaks: cluster_ip_from_pod(),
        },
        Fault {
            name: "ipt-jump-deleted",
            about: "the PREROUTING jump to SWYD-SERVICES deleted",
            backend: "iptables",
            tamper: vec![
                "{iptables} -w -t nat -D PREROUTING -m comment --comment 'switchyard service portals' -j SWYD-SERVICES",
            ],
            breaks: cluster_ip_from_pod(),
        },
        Fault {
            name: "ipt-chain-deleted",
            about: "SWYD-SERVICES unhooked, flushed and deleted (kube-proxy's e2e)",
            backend: "iptables",
            tamper: vec![
                "{iptables} -w -t nat -D PREROUTING -m comment --comment 'switchyard service portals' -j SWYD-SERVICES",
                "{iptables} -w -t nat -D OUTPUT -m comment --comment 'switchyard service portals' -j SWYD-SERVICES",
                "{iptables} -w -t nat -F SWYD-SERVICES",
                "{iptables} -w -t nat -X SWYD-SERVICES",
            ],
            breaks: nodeport_from_client(),
        },
        Fault {
            name: "ipt-rule-deleted",
            about: "the service port's own chain flushed (its endpoint picks deleted)",
            backend: "iptables",
            tamper: vec![
                "c=$({iptables}-save -t nat | grep -o '^:SWYD-s[0-9a-z]*-svc' | head -n1 | tr -d :); \
                 test -n \"$c\" && {iptables} -w -t nat -F \"$c\"",
            ],
            breaks: cluster_ip_from_pod(),
        },
        Fault {
            name: "ipt-ipset-member-deleted",
            about: "the cluster IP's member of the dispatch ipset deleted",
            backend: "iptables",
            tamper: vec!["ipset del SWYD4-VIPS 10.96.0.10,tcp:80"],
            breaks: cluster_ip_from_pod(),
        },
    ]
}

/// Every check of the table, all of which pass before tampering and after the repair.
pub fn baseline() -> Vec<Check> {
    vec![
        cluster_ip_from_pod(),
        cluster_ip_from_node(),
        nodeport_from_client(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_shipped_backend_has_rows() {
        let rows = all();
        let names: std::collections::BTreeSet<_> = rows.iter().map(|f| f.name).collect();
        assert_eq!(names.len(), rows.len());
        for b in ["nftables", "iptables-nft", "iptables-legacy"] {
            assert!(rows.iter().filter(|f| f.applies_to(b)).count() >= 4, "{b}");
        }
    }
}
