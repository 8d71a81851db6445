//! `--mode` → a `Dataplane`. Backends register here as they land.

use crate::cli::{ModeArg, RunArgs, VariantArg};
use switchyard_core::{Dataplane, IpFamily};
use switchyard_iptables::{IptablesConfig, Variant};

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
        mode @ (ModeArg::Nftables | ModeArg::Ipvs) => {
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
