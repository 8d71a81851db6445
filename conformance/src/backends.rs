//! The backends this repository ships, as conformance `Backend`s. A third-party backend builds
//! its own `Backend` the same way: a factory and a leftover check.

use crate::netns::Netns;
use crate::runner::Backend;
use std::sync::Arc;
use switchyard_iptables::{IptablesConfig, Variant};
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
    }
}

/// Backends for `--mode` names: `iptables` means both variants.
pub fn by_mode(mode: &str) -> anyhow::Result<Vec<Backend>> {
    Ok(match mode {
        "iptables" => vec![iptables(Variant::Nft), iptables(Variant::Legacy)],
        "iptables-nft" => vec![iptables(Variant::Nft)],
        "iptables-legacy" => vec![iptables(Variant::Legacy)],
        "nftables" => vec![nftables()],
        "ipvs" => anyhow::bail!("--mode ipvs: that backend is not in this build yet"),
        other => anyhow::bail!(
            "unknown mode {other:?} (want nftables, iptables, iptables-nft, iptables-legacy)"
        ),
    })
}
