//! IPVS mode's settings, under kube-proxy's flag names (`ipvs:` in a KubeProxyConfiguration).
//! Shared by the CLI, the config file and the IPVS backend's setup in the agent.

use crate::cli::parse_duration;
use clap::{Args, ValueEnum};
use ipnet::IpNet;
use std::time::Duration;

/// The IPVS scheduler every virtual service gets (kube-proxy's `--ipvs-scheduler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum IpvsScheduler {
    /// Round robin (kube-proxy's default, also for an empty value).
    #[default]
    Rr,
    /// Weighted round robin.
    Wrr,
    /// Least connection.
    Lc,
    /// Weighted least connection.
    Wlc,
    /// Locality-based least connection.
    Lblc,
    /// Locality-based least connection with replication.
    Lblcr,
    /// Destination hashing.
    Dh,
    /// Source hashing.
    Sh,
    /// Shortest expected delay.
    Sed,
    /// Never queue.
    Nq,
    /// Maglev hashing.
    Mh,
}

/// Flags for `--mode ipvs`. Durations of zero leave the kernel's value untouched, as kube-proxy.
#[derive(Debug, Clone, Args)]
pub struct IpvsArgs {
    /// Scheduler for every IPVS virtual service.
    #[arg(long = "ipvs-scheduler", value_enum, default_value = "rr")]
    pub scheduler: IpvsScheduler,
    /// Scheduler flags (`sh-fallback`, `sh-port`, `mh-fallback`, `mh-port`), comma-separated.
    #[arg(
        long = "ipvs-scheduler-flags",
        value_delimiter = ',',
        value_name = "FLAG[,FLAG]"
    )]
    pub scheduler_flags: Vec<String>,
    /// Answer ARP only for addresses on the receiving interface (arp_ignore=1, arp_announce=2),
    /// so the VIPs on the dummy interface are not announced (MetalLB L2 needs this).
    #[arg(long = "ipvs-strict-arp")]
    pub strict_arp: bool,
    /// Idle timeout of IPVS TCP connections (0: leave the kernel's).
    #[arg(long = "ipvs-tcp-timeout", default_value = "0s", value_parser = parse_duration)]
    pub tcp_timeout: Duration,
    /// Timeout of IPVS TCP connections after a FIN (0: leave the kernel's).
    #[arg(long = "ipvs-tcpfin-timeout", default_value = "0s", value_parser = parse_duration)]
    pub tcp_fin_timeout: Duration,
    /// Timeout of IPVS UDP flows (0: leave the kernel's).
    #[arg(long = "ipvs-udp-timeout", default_value = "0s", value_parser = parse_duration)]
    pub udp_timeout: Duration,
    /// CIDRs whose IPVS services Switchyard never deletes (another agent's), comma-separated.
    #[arg(
        long = "ipvs-exclude-cidrs",
        value_delimiter = ',',
        value_name = "CIDR[,CIDR]"
    )]
    pub exclude_cidrs: Vec<IpNet>,
}
