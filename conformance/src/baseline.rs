//! Benchmark baselines: the stock tool loading the very text a backend renders, into a fresh
//! network namespace, timed in the same run as the backend (so machine drift hits both).

use crate::netns::{timed_in, unique_prefix, Netns};
use std::time::Duration;
use switchyard_iptables::Variant;

/// `nft -f` of `text` (a ruleset as the nftables backend renders it) into a fresh namespace.
pub fn nft_file(text: &str) -> anyhow::Result<Duration> {
    let ns = Netns::create(&format!("{}-nftbase", unique_prefix()))?;
    timed_in(&ns, "nft", &["-f", "/dev/stdin"], text)
}

/// A bare `iptables-restore --noflush --wait` of `text` (the iptables backend's restore input)
/// into a fresh namespace. The ipsets the rules name are created first, untimed: the figure
/// is the restore tool's alone.
pub fn iptables_restore(variant: Variant, text: &str) -> anyhow::Result<Duration> {
    let ns = Netns::create(&format!("{}-base", unique_prefix()))?;
    for set in [
        "SWYD4-VIPS hash:ip,port",
        "SWYD4-REJECT hash:ip,port",
        "SWYD4-DROP hash:ip,port",
        "SWYD4-CLUSTER-IPS hash:ip",
        "SWYD4-HAIRPIN hash:ip,port,ip",
    ] {
        let mut args = vec!["create"];
        args.extend(set.split(' '));
        ns.exec("ipset", &args)?;
    }
    timed_in(&ns, restore_tool(variant), &["--noflush", "--wait"], text)
}

/// The restore tool of `variant`.
pub fn restore_tool(variant: Variant) -> &'static str {
    match variant {
        Variant::Nft => "iptables-nft-restore",
        Variant::Legacy => "iptables-legacy-restore",
    }
}
