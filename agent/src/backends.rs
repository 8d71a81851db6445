//! `--mode` → a `Dataplane`. Backends register here as they land.

use crate::cli::{ModeArg, RunArgs, VariantArg};
use crate::ipvs_args::IpvsArgs;
use clap::ValueEnum as _;
use std::time::Instant;
use switchyard_core::{Dataplane, IpFamily};
use switchyard_iptables::{IptablesConfig, Variant};
use switchyard_ipvs::{IpvsConfig, IpvsDataplane, Retirement, SchedulerFlag};
use switchyard_nftables::NftablesDataplane;

/// The IPVS backend's settings from `--ipvs-*` (or the config file's `ipvs:`). A scheduler
/// flag the scheduler does not have is an error, as in kube-proxy.
pub fn ipvs_config(args: &IpvsArgs) -> anyhow::Result<IpvsConfig> {
    let scheduler = args
        .scheduler
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_else(|| "rr".into());
    let mut flags = Vec::new();
    for f in &args.scheduler_flags {
        match SchedulerFlag::parse(&scheduler, f) {
            Some(flag) => flags.push(flag),
            None => anyhow::bail!(
                "--ipvs-scheduler-flags: {f:?} is not a flag of scheduler {scheduler:?} \
                 (sh: sh-fallback, sh-port; mh: mh-fallback, mh-port)"
            ),
        }
    }
    Ok(IpvsConfig {
        scheduler,
        scheduler_flags: flags,
        strict_arp: args.strict_arp,
        tcp_timeout: args.tcp_timeout,
        tcp_fin_timeout: args.tcp_fin_timeout,
        udp_timeout: args.udp_timeout,
        exclude_cidrs: args.exclude_cidrs.clone(),
        ..IpvsConfig::default()
    })
}

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
        ModeArg::Ipvs => Ok(Box::new(IpvsDataplane::new(
            family,
            ipvs_config(&args.ipvs)?,
        ))),
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
/// mode at once, for `--cleanup`). Run after the first successful sync, so a node switching
/// modes does not keep the old mode's rules. A variant whose tools are not installed has
/// nothing to clean. IPVS mode's virtual services may have to outlive this call: the
/// retirement returned, when some still carry connections, is stepped by the sync loop.
pub async fn cleanup_modes(keep: Option<ModeArg>) -> anyhow::Result<Option<IpvsRetirement>> {
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
    let mut retiring = None;
    match keep {
        Some(ModeArg::Ipvs) => {}
        Some(_) => {
            let mut r = IpvsRetirement::new();
            if !r.step().await {
                retiring = Some(r);
            }
        }
        None => {
            for family in [IpFamily::V4, IpFamily::V6] {
                match IpvsDataplane::new(family, IpvsConfig::default())
                    .cleanup()
                    .await
                {
                    Ok(()) => tracing::info!(%family, "ipvs leftovers removed"),
                    Err(e) => failures.push(format!("ipvs {family}: {e}")),
                }
            }
        }
    }
    if failures.is_empty() {
        Ok(retiring)
    } else {
        anyhow::bail!("cleanup failed: {}", failures.join("; "))
    }
}

/// IPVS mode's leftovers on a node that switched to another mode: the helper table goes at
/// once, the virtual services and addresses once no destination has established connections
/// or the drain bound passed (`switchyard_ipvs::Retirement`, DESIGN-NOTES 266). Stepped every
/// `--sync-period`; a failed step is logged and retried at the next.
#[derive(Debug)]
pub struct IpvsRetirement {
    lanes: Vec<IpvsDataplane>,
    since: Instant,
    steps: u32,
}

impl IpvsRetirement {
    fn new() -> Self {
        Self {
            lanes: [IpFamily::V4, IpFamily::V6]
                .into_iter()
                .map(|f| IpvsDataplane::new(f, IpvsConfig::default()))
                .collect(),
            since: Instant::now(),
            steps: 0,
        }
    }

    /// One step in every family not done yet; true once IPVS mode left nothing behind.
    pub async fn step(&mut self) -> bool {
        let first = self.steps == 0;
        self.steps += 1;
        let mut left = Vec::new();
        for mut lane in std::mem::take(&mut self.lanes) {
            let family = lane.family();
            match lane.retire(self.since).await {
                Ok(Retirement::Done) => tracing::info!(%family, "ipvs leftovers removed"),
                Ok(Retirement::Draining {
                    services,
                    established,
                }) => {
                    if first {
                        tracing::info!(
                            %family, services, established,
                            "IPVS mode's virtual services stay until their established \
                             connections end; new connections take the new mode's rules"
                        );
                    } else {
                        tracing::debug!(%family, services, established, "IPVS mode still draining");
                    }
                    left.push(lane);
                }
                Err(e) => {
                    tracing::warn!(%family, "removing IPVS mode's leftovers (retried at the next sync period): {e}");
                    left.push(lane);
                }
            }
        }
        self.lanes = left;
        self.lanes.is_empty()
    }
}
