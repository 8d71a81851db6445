//! `--mode` → a `Dataplane`. Backends register here as they land.

use crate::cli::ModeArg;
use switchyard_core::{Dataplane, IpFamily};

/// The dataplane for `mode` and `family`, or an error when this build has no such backend.
pub fn dataplane(mode: ModeArg, family: IpFamily) -> anyhow::Result<Box<dyn Dataplane>> {
    let name = mode_name(mode);
    anyhow::bail!(
        "--mode {name}: the {name} backend ({family}) is not in this build yet; \
         use --dry-run to see the plan it would program"
    )
}

pub fn mode_name(mode: ModeArg) -> &'static str {
    match mode {
        ModeArg::Iptables => "iptables",
        ModeArg::Nftables => "nftables",
        ModeArg::Ipvs => "ipvs",
    }
}
