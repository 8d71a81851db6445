//! The backends this repository ships, as conformance `Backend`s. A third-party backend builds
//! its own `Backend` the same way: a factory and a leftover check.

use crate::netns::Netns;
use crate::runner::Backend;
use std::sync::Arc;
use switchyard_iptables::{IptablesConfig, Variant};
use switchyard_ipvs::netlink::IpvsSocket;
use switchyard_ipvs::{IpvsConfig, IpvsDataplane};
use switchyard_nftables::NftablesDataplane;

/// `iptables-nft` or `iptables-legacy`.
pub fn iptables(variant: Variant) -> Backend {
    let name = match variant {
        Variant::Nft => "iptables-nft",
        Variant::Legacy => "iptables-legacy",
    };
    Backend {
        name: name.into(),
        factory: Arc::new(move |node, family| {
            Box::new(
                IptablesConfig::new(family)
                    .variant(variant)
                    .netns(node)
                    .build(),
            )
        }),
        leftovers: Arc::new(move |node: &Netns| {
            let saves = match variant {
                Variant::Nft => ["iptables-nft-save", "ip6tables-nft-save"],
                Variant::Legacy => ["iptables-legacy-save", "ip6tables-legacy-save"],
            };
            let mut left = Vec::new();
            for save in saves {
                left.extend(
                    node.exec(save, &[])?
                        .lines()
                        .filter(|l| l.contains("SWYD"))
                        .map(|l| format!("{save}: {l}")),
                );
            }
            left.extend(
                node.exec("ipset", &["list", "-n"])?
                    .lines()
                    .filter(|l| l.contains("SWYD"))
                    .map(|l| format!("ipset {l}")),
            );
            Ok(left)
        }),
        unavailable: Arc::new(|| None),
    }
}

/// The native nftables backend.
pub fn nftables() -> Backend {
    Backend {
        name: "nftables".into(),
        factory: Arc::new(|_node, family| Box::new(NftablesDataplane::new(family))),
        leftovers: Arc::new(|node: &Netns| {
            Ok(node
                .exec("nft", &["list", "tables"])?
                .lines()
                .filter(|l| l.contains("switchyard"))
                .map(str::to_string)
                .collect())
        }),
        unavailable: Arc::new(|| None),
    }
}

/// IPVS mode (default settings: `rr`). Not applicable on a kernel without IPVS (this host's),
/// with the reason; the VM kernels have it.
pub fn ipvs() -> Backend {
    Backend {
        name: "ipvs".into(),
        factory: Arc::new(|_node, family| {
            Box::new(IpvsDataplane::new(family, IpvsConfig::default()))
        }),
        leftovers: Arc::new(|node: &Netns| {
            let mut left: Vec<String> = node
                .exec("nft", &["list", "tables"])?
                .lines()
                .filter(|l| l.contains("switchyard"))
                .map(str::to_string)
                .collect();
            left.extend(
                node.exec("ip", &["-o", "link", "show"])?
                    .lines()
                    .filter(|l| l.contains(switchyard_ipvs::DUMMY))
                    .map(|l| format!("interface {}", l.trim())),
            );
            left.extend(
                node.exec("cat", &["/proc/net/ip_vs"])?
                    .lines()
                    .filter(|l| l.starts_with("FWM"))
                    .map(|l| format!("IPVS service {}", l.trim())),
            );
            Ok(left)
        }),
        unavailable: Arc::new(|| {
            IpvsSocket::open()
                .err()
                .map(|e| format!("this kernel cannot run IPVS mode: {e}"))
        }),
    }
}

/// Backends for `--mode` names: `iptables` means both variants.
pub fn by_mode(mode: &str) -> anyhow::Result<Vec<Backend>> {
    Ok(match mode {
        "iptables" => vec![iptables(Variant::Nft), iptables(Variant::Legacy)],
        "iptables-nft" => vec![iptables(Variant::Nft)],
        "iptables-legacy" => vec![iptables(Variant::Legacy)],
        "nftables" => vec![nftables()],
        "ipvs" => vec![ipvs()],
        other => anyhow::bail!(
            "unknown mode {other:?} (want nftables, iptables, iptables-nft, iptables-legacy, ipvs)"
        ),
    })
}
