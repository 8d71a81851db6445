//! IPVS mode's node settings: what the agent's `--ipvs-*` flags (or the config file) say.

use ipnet::IpNet;
use std::time::Duration;

/// Scheduler flags (`--ipvs-scheduler-flags`), as kube-proxy names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchedulerFlag {
    /// `sh-fallback` / `mh-fallback`: skip an unavailable destination (IP_VS_SVC_F_SCHED1).
    Fallback,
    /// `sh-port` / `mh-port`: hash the source port too (IP_VS_SVC_F_SCHED2).
    Port,
}

impl SchedulerFlag {
    /// Parses one flag for `scheduler`; `None` for a flag that scheduler does not have.
    pub fn parse(scheduler: &str, flag: &str) -> Option<Self> {
        match (scheduler, flag) {
            ("sh", "sh-fallback") | ("mh", "mh-fallback") => Some(Self::Fallback),
            ("sh", "sh-port") | ("mh", "mh-port") => Some(Self::Port),
            _ => None,
        }
    }

    pub fn bits(self) -> u32 {
        match self {
            Self::Fallback => crate::netlink::service::IP_VS_SVC_F_SCHED1,
            Self::Port => crate::netlink::service::IP_VS_SVC_F_SCHED2,
        }
    }
}

/// Everything IPVS mode needs besides the plan.
#[derive(Debug, Clone)]
pub struct IpvsConfig {
    /// Kernel scheduler name (`rr`, `wrr`, `lc`, `wlc`, `lblc`, `lblcr`, `dh`, `sh`, `sed`,
    /// `nq`, `mh`): module `ip_vs_<name>`.
    pub scheduler: String,
    pub scheduler_flags: Vec<SchedulerFlag>,
    /// `arp_ignore=1`, `arp_announce=2`: the VIPs on the dummy interface are not announced.
    pub strict_arp: bool,
    /// IPVS idle timeouts; zero leaves the kernel's value.
    pub tcp_timeout: Duration,
    pub tcp_fin_timeout: Duration,
    pub udp_timeout: Duration,
    /// kube-proxy's `excludeCIDRs`: virtual services with addresses in these ranges belong to
    /// someone else. Switchyard programs only firewall-mark services in its own mark range, so
    /// it never deletes an address-based service at all; the ranges are kept for the log.
    pub exclude_cidrs: Vec<IpNet>,
    /// How long a removed or terminating destination may keep connections (weight 0) before
    /// it is deleted anyway.
    pub drain_bound: Duration,
}

impl Default for IpvsConfig {
    fn default() -> Self {
        Self {
            scheduler: "rr".into(),
            scheduler_flags: Vec::new(),
            strict_arp: false,
            tcp_timeout: Duration::ZERO,
            tcp_fin_timeout: Duration::ZERO,
            udp_timeout: Duration::ZERO,
            exclude_cidrs: Vec::new(),
            drain_bound: Duration::from_secs(15 * 60),
        }
    }
}
