//! The rows: nftables (also run against IPVS mode's helper table), both iptables variants,
//! and IPVS mode's own objects.

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

/// A pod to the cluster IP, 20 connections, each endpoint answering some: a destination
/// that stops taking connections does not fail [`cluster_ip_from_pod`] in IPVS mode (the
/// other one answers them all), so the IPVS destination rows need this. 20 keep it quick
/// in the VM; IPVS's `rr` alternates, and the spread test at p = 0.001 still holds for a
/// random pick.
pub fn both_endpoints_from_pod() -> Check {
    Check {
        count: 20,
        ..Check::new(
            From::Pod("pod-a1"),
            "10.96.0.10:80/tcp",
            Expect::Spread {
                pods: vec!["pod-a2", "pod-b1"],
                masq: false,
            },
        )
    }
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

/// Shell that sets `$m` to the mark of the IPVS virtual service pods' traffic to the cluster
/// IP uses (pods are inside the cluster CIDR: not masqueraded, so the mark without the
/// masquerade bit 0x4000 = 16384; the node's own traffic uses the other one) and fails
/// when there is none. `ipvsadm -L` prints marks from 2^31 up as negative numbers, which
/// its own `-f` refuses: made unsigned again.
macro_rules! pod_mark {
    () => {
        "m=$(ipvsadm -Ln | awk '$1 == \"FWM\" { v = $2; if (v < 0) v += 4294967296; \
           if (int(v / 16384) % 2 == 0) { printf \"%.0f\\n\", v; exit } }'); \
         test -n \"$m\" && "
    };
}

/// Backends whose rules live in an nftables table of the nftables rule builder: nftables
/// mode's `switchyard`, IPVS mode's helper table `switchyard-ipvs` (`{table}` in commands).
const NFT_TABLES: &[&str] = &["nftables", "ipvs"];

/// Every row.
pub fn all() -> Vec<Fault> {
    vec![
        Fault {
            name: "nft-table-deleted",
            about: "`nft delete table ip switchyard` (another agent flushing the ruleset)",
            backends: NFT_TABLES,
            tamper: vec!["nft delete table ip {table}"],
            breaks: cluster_ip_from_pod(),
        },
        Fault {
            name: "nft-base-chain-deleted",
            about: "our nat prerouting base chain flushed and deleted",
            backends: NFT_TABLES,
            tamper: vec![
                "nft flush chain ip {table} nat-prerouting",
                "nft delete chain ip {table} nat-prerouting",
            ],
            breaks: nodeport_from_client(),
        },
        Fault {
            name: "nft-jump-deleted",
            about: "the `jump services` rule of our nat output base chain deleted by handle",
            backends: NFT_TABLES,
            tamper: vec![
                "h=$(nft -a list chain ip {table} nat-output | sed -n 's/.*jump services # handle \\([0-9]*\\).*/\\1/p'); \
                 test -n \"$h\" && nft delete rule ip {table} nat-output handle $h",
            ],
            breaks: cluster_ip_from_node(),
        },
        Fault {
            name: "nft-set-element-deleted",
            about: "the cluster IP's element of the dispatch set deleted",
            backends: NFT_TABLES,
            tamper: vec![
                "nft delete element ip {table} pod-cluster.masq-cluster-services '{ 10.96.0.10 . tcp . 80 }'",
            ],
            breaks: cluster_ip_from_pod(),
        },
        Fault {
            name: "nft-map-element-deleted",
            about: "one endpoint's element of an endpoint map deleted (half the connections)",
            backends: &["nftables"],
            tamper: vec![
                "nft delete element ip switchyard cluster-endpoint-1 '{ 10.96.0.10 . tcp . 80 }'",
            ],
            breaks: cluster_ip_from_pod(),
        },
        Fault {
            name: "ipt-jump-deleted",
            about: "the PREROUTING jump to SWYD-SERVICES deleted",
            backends: &["iptables"],
            tamper: vec![
                "{iptables} -w -t nat -D PREROUTING -m comment --comment 'switchyard service portals' -j SWYD-SERVICES",
            ],
            breaks: cluster_ip_from_pod(),
        },
        Fault {
            name: "ipt-chain-deleted",
            about: "SWYD-SERVICES unhooked, flushed and deleted (kube-proxy's e2e)",
            backends: &["iptables"],
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
            backends: &["iptables"],
            tamper: vec![
                "c=$({iptables}-save -t nat | grep -o '^:SWYD-s[0-9a-z]*-svc' | head -n1 | tr -d :); \
                 test -n \"$c\" && {iptables} -w -t nat -F \"$c\"",
            ],
            breaks: cluster_ip_from_pod(),
        },
        Fault {
            name: "ipt-ipset-member-deleted",
            about: "the cluster IP's member of the dispatch ipset deleted",
            backends: &["iptables"],
            tamper: vec!["ipset del SWYD4-VIPS 10.96.0.10,tcp:80"],
            breaks: cluster_ip_from_pod(),
        },
        Fault {
            name: "ipvs-service-deleted",
            about: "the virtual service pod traffic to the cluster IP is marked for, deleted",
            backends: &["ipvs"],
            tamper: vec![concat!(pod_mark!(), "ipvsadm -D -f \"$m\"")],
            breaks: cluster_ip_from_pod(),
        },
        Fault {
            name: "ipvs-destination-deleted",
            about: "the remote endpoint deleted from that virtual service (half the connections)",
            backends: &["ipvs"],
            tamper: vec![concat!(pod_mark!(), "ipvsadm -d -f \"$m\" -r 10.244.2.10:8080")],
            breaks: both_endpoints_from_pod(),
        },
        Fault {
            name: "ipvs-destination-quiesced",
            about: "the remote endpoint's weight in that virtual service set to 0",
            backends: &["ipvs"],
            tamper: vec![concat!(pod_mark!(), "ipvsadm -e -f \"$m\" -r 10.244.2.10:8080 -m -w 0")],
            breaks: both_endpoints_from_pod(),
        },
        Fault {
            name: "ipvs-interface-deleted",
            about: "the dummy interface holding the service addresses deleted",
            backends: &["ipvs"],
            tamper: vec!["ip link del swyd-ipvs0"],
            breaks: cluster_ip_from_pod(),
        },
        Fault {
            name: "ipvs-address-deleted",
            about: "the cluster IP removed from the dummy interface",
            backends: &["ipvs"],
            tamper: vec!["ip addr del 10.96.0.10/32 dev swyd-ipvs0"],
            breaks: cluster_ip_from_pod(),
        },
        Fault {
            name: "ipvs-mark-element-deleted",
            about: "the cluster IP's element of the firewall-mark map deleted",
            backends: &["ipvs"],
            tamper: vec!["nft delete element ip switchyard-ipvs cluster-fwmark '{ 10.96.0.10 . tcp . 80 }'"],
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
        for b in ["nftables", "iptables-nft", "iptables-legacy", "ipvs"] {
            assert!(rows.iter().filter(|f| f.applies_to(b)).count() >= 4, "{b}");
        }
    }
}
