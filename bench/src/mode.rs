//! The modes the report sweeps, each with its backend and the stock tool it is compared with.
//!
//! A mode whose backend is not in this build stays in the sweep as "not measured" with the
//! reason, so its column is visibly empty rather than silently missing. When the IPVS backend
//! lands, [`Mode::Ipvs`] gets a [`Backend`] variant and its cells run in the VM harness
//! (`switchyard_conformance::vm`; this host has no IPVS), baseline `ipvsadm -R`.

use std::path::Path;
use std::time::Duration;
use switchyard_conformance::baseline;
use switchyard_core::{ApplyStats, Changes, Dataplane, DataplaneError, IpFamily, ProxyPlan};
use switchyard_iptables::{IptablesConfig, IptablesDataplane, Variant};
use switchyard_nftables::NftablesDataplane;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Nftables,
    IptablesNft,
    IptablesLegacy,
    Ipvs,
}

impl Mode {
    pub const ALL: [Mode; 4] = [
        Mode::Nftables,
        Mode::IptablesNft,
        Mode::IptablesLegacy,
        Mode::Ipvs,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Nftables => "nftables",
            Mode::IptablesNft => "iptables-nft",
            Mode::IptablesLegacy => "iptables-legacy",
            Mode::Ipvs => "ipvs",
        }
    }

    /// The stock tool loading the same ruleset: the full-sync baseline.
    pub fn baseline_name(self) -> &'static str {
        match self {
            Mode::Nftables => "nft -f",
            Mode::IptablesNft => "iptables-nft-restore",
            Mode::IptablesLegacy => "iptables-legacy-restore",
            Mode::Ipvs => "ipvsadm -R",
        }
    }

    /// Why nothing is measured for this mode in this build, if so.
    pub fn not_measured(self) -> Option<&'static str> {
        match self {
            Mode::Ipvs => Some(
                "IPVS backend not in this build; this host has no IPVS, so its cells and \
                 ipvsadm -R will run in the VM harness",
            ),
            _ => None,
        }
    }

    /// This mode's backend, for a process or thread already inside network namespace `netns`
    /// (the nftables socket is bound where it is created; iptables tools get the path).
    pub fn backend(self, netns: &Path) -> Option<Backend> {
        let iptables = |v| {
            Box::new(
                IptablesConfig::new(IpFamily::V4)
                    .variant(v)
                    .netns(netns)
                    .build(),
            )
        };
        match self {
            Mode::Nftables => Some(Backend::Nftables(Box::new(NftablesDataplane::new(
                IpFamily::V4,
            )))),
            Mode::IptablesNft => Some(Backend::Iptables(iptables(Variant::Nft), Variant::Nft)),
            Mode::IptablesLegacy => Some(Backend::Iptables(
                iptables(Variant::Legacy),
                Variant::Legacy,
            )),
            Mode::Ipvs => None,
        }
    }
}

/// A backend under test, with what its baseline tool needs.
#[derive(Debug)]
pub enum Backend {
    Nftables(Box<NftablesDataplane>),
    Iptables(Box<IptablesDataplane>, Variant),
}

impl Backend {
    fn dataplane(&mut self) -> &mut dyn Dataplane {
        match self {
            Backend::Nftables(dp) => dp.as_mut(),
            Backend::Iptables(dp, _) => dp.as_mut(),
        }
    }

    pub async fn probe(&mut self) -> Result<(), DataplaneError> {
        self.dataplane().probe().await
    }

    pub async fn apply(
        &mut self,
        plan: &ProxyPlan,
        changes: Option<&Changes>,
    ) -> Result<ApplyStats, DataplaneError> {
        self.dataplane().apply(plan, changes).await
    }

    pub async fn cleanup(&mut self) -> Result<(), DataplaneError> {
        self.dataplane().cleanup().await
    }

    /// The stock tool loading the ruleset this backend renders for `plan` (full sync) into a
    /// fresh namespace: `nft -f` of `render`, or a bare `iptables-restore` of the restore
    /// input (ipsets pre-created, untimed).
    pub fn baseline(&self, plan: &ProxyPlan) -> anyhow::Result<Duration> {
        match self {
            Backend::Nftables(dp) => baseline::nft_file(&dp.render(plan, None)),
            Backend::Iptables(dp, v) => {
                baseline::iptables_restore(*v, &dp.restore_input(plan, None))
            }
        }
    }
}
