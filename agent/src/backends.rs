//! `--mode` → a `Dataplane`. Backends register here as they land.

use crate::cli::{ModeArg, RunArgs, VariantArg};
use switchyard_core::{Dataplane, IpFamily};
use switchyard_iptables::{IptablesConfig, Variant};
use switchyard_nftables::NftablesDataplane;

/// The dataplane for the chosen mode and `family`, or an error when this build has no such
/// backend.
pub fn dataplane(args: &RunArgs, family: IpFamily) -> anyhow::Result<Box<dyn Dataplane>> {
    match args.mode {
        ModeArg::Iptables => {
            let mut config = IptablesConfig::new(family);
            match args.iptables_variant {
                VariantArg::Auto => {}
                VariantArg::Nft => config = config.variant(Variant::Nft),
                VariantArg::Legacy => config = config.variant(Variant::Legacy),
            }
            Ok(Box::new(config.build()))
        }
        ModeArg::Nftables => Ok(Box::new(NftablesDataplane::new(family))),
        mode @ ModeArg::Ipvs => {
            let name = mode_name(mode);
            anyhow::bail!(
                "--mode {name}: the {name} backend ({family}) is not in this build yet; \
                 use --dry-run to see the plan it would program"
            )
        }
    }
}

pub fn mode_name(mode: ModeArg) -> &'static str {
    match mode {
        ModeArg::Iptables => "iptables",
        ModeArg::Nftables => "nftables",
        ModeArg::Ipvs => "ipvs",
    }
}

/// Removes what every mode other than `keep` owns, in both families (`keep = None`: every
/// mode, for `--cleanup`). Run after the first successful sync, so a node switching modes does not keep
/// the old mode's rules. A variant whose tools are not installed has nothing to clean.
pub async fn cleanup_modes(keep: Option<ModeArg>) -> anyhow::Result<()> {
    let mut failures = Vec::new();
    for family in [IpFamily::V4, IpFamily::V6] {
        if keep == Some(ModeArg::Nftables) {
            break;
        }
        match NftablesDataplane::new(family).cleanup().await {
            Ok(()) => tracing::info!(%family, "nftables table removed"),
            Err(e) => failures.push(format!("nftables {family}: {e}")),
        }
    }
    for variant in [Variant::Nft, Variant::Legacy] {
        if keep == Some(ModeArg::Iptables) {
            break;
        }
        for family in [IpFamily::V4, IpFamily::V6] {
            let mut d = IptablesConfig::new(family).variant(variant).build();
            match d.cleanup().await {
                Ok(()) => tracing::info!(?variant, %family, "iptables rules removed"),
                Err(switchyard_core::DataplaneError::Unsupported { what, .. }) => {
                    tracing::info!(?variant, %family, "{what} not installed: nothing to clean")
                }
                Err(e) => failures.push(format!("iptables {variant:?} {family}: {e}")),
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("cleanup failed: {}", failures.join("; "))
    }
}
