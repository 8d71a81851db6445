//! Command-line flags, named after kube-proxy's where they exist.

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;
use switchyard_core::{NodePortAddresses, Protocol};

#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Kubernetes service proxy: Services and EndpointSlices to kernel rules"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Say where a packet would go, from the plan: which service port matches, which endpoints
    /// may answer, whether it is masqueraded, or why it is rejected or dropped.
    Explain(ExplainArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    Iptables,
    Nftables,
    Ipvs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VariantArg {
    Auto,
    Nft,
    Legacy,
}

/// kube-proxy's `--detect-local-mode`: which sources count as pods (and so are not
/// masqueraded on their way to a cluster IP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum DetectLocalMode {
    /// `--cluster-cidr`.
    #[default]
    #[value(name = "ClusterCIDR")]
    ClusterCidr,
    /// This node's `spec.podCIDRs`, followed live from its Node object (API source).
    #[value(name = "NodeCIDR")]
    NodeCidr,
    /// Packets that arrived on `--pod-bridge-interface` (e.g. `cni0`).
    #[value(name = "BridgeInterface")]
    BridgeInterface,
    /// Packets that arrived on an interface named `--pod-interface-name-prefix*`.
    #[value(name = "InterfaceNamePrefix")]
    InterfaceNamePrefix,
}

/// The agent proper.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// A kube-proxy KubeProxyConfiguration file (kubeproxy.config.k8s.io/v1alpha1, YAML or
    /// JSON); flags given on the command line override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Remove what kube-proxy left on this node (its KUBE-* iptables chains in both variants,
    /// `table ip/ip6 kube-proxy`, KUBE-* ipsets, the kube-ipvs0 interface, its address-based
    /// IPVS virtual services but those in --ipvs-exclude-cidrs) and exit.
    #[arg(long, conflicts_with_all = ["dry_run", "once", "cleanup"])]
    pub cleanup_kube_proxy: bool,
    /// Kernel dataplane to program.
    #[arg(long, value_enum, default_value = "nftables")]
    pub mode: ModeArg,
    /// With --mode iptables: which iptables to drive. `auto` detects it as kube-proxy does.
    #[arg(long, value_enum, default_value = "auto")]
    pub iptables_variant: VariantArg,
    #[command(flatten)]
    pub ipvs: crate::ipvs_args::IpvsArgs,
    #[command(flatten)]
    pub node: NodeArgs,
    /// Print what would be programmed and exit; touches nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: print the ProxyPlan (every decision, per service port) instead of the
    /// backend's rules.
    #[arg(long, requires = "dry_run")]
    pub show_plan: bool,
    /// Apply one full sync and exit (for scripts, node bootstrap and benchmarks).
    #[arg(long, conflicts_with = "dry_run")]
    pub once: bool,
    /// Remove every rule Switchyard owns, in all modes and both families, and exit.
    #[arg(long, conflicts_with_all = ["dry_run", "once"])]
    pub cleanup: bool,
    /// Wait at least this long between syncs, so bursts of changes coalesce into one.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub min_sync_period: Duration,
    /// Resync everything at least this often, repairing rules someone else removed.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub sync_period: Duration,
    /// Where /healthz and /livez listen (kube-proxy's); empty disables the server.
    #[arg(long, default_value = "0.0.0.0:10256", value_parser = crate::ops::parse_bind_address, value_name = "IP:PORT")]
    pub healthz_bind_address: crate::ops::BindAddress,
    /// Where /metrics listens (kube-proxy's); empty disables the server.
    #[arg(long, default_value = "127.0.0.1:10249", value_parser = crate::ops::parse_bind_address, value_name = "IP:PORT")]
    pub metrics_bind_address: crate::ops::BindAddress,
}

/// Where objects come from and how this node is set up: shared by the agent and `explain`.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Read Services, EndpointSlices, Endpoints and Nodes from this YAML file (or every
    /// *.yaml/*.yml in this directory) instead of the Kubernetes API; re-read when it changes.
    #[arg(long, value_name = "PATH")]
    pub manifests: Option<PathBuf>,
    /// Kubeconfig for the Kubernetes API source. Without it (and without --manifests) the
    /// agent uses the in-cluster service account.
    #[arg(long, value_name = "PATH", conflicts_with = "manifests")]
    pub kubeconfig: Option<PathBuf>,
    /// The Kubernetes API server's URL; overrides the kubeconfig's server (as kube-proxy).
    #[arg(long, value_name = "URL", conflicts_with = "manifests")]
    pub master: Option<String>,
    /// This node's name. Default: the only Node in --manifests, else the host name.
    #[arg(long, value_name = "NAME")]
    pub hostname_override: Option<String>,
    /// Pod CIDRs (comma-separated, one per family): traffic from outside them to a cluster IP
    /// is masqueraded.
    #[arg(long, value_delimiter = ',', value_name = "CIDR[,CIDR]")]
    pub cluster_cidr: Vec<IpNet>,
    /// Which sources are pods: `ClusterCIDR` (--cluster-cidr), `NodeCIDR` (this Node's
    /// spec.podCIDRs, followed live; API source only), `BridgeInterface` or
    /// `InterfaceNamePrefix` (the interface a packet arrived on).
    #[arg(long, value_enum, default_value = "ClusterCIDR")]
    pub detect_local_mode: DetectLocalMode,
    /// With `--detect-local-mode BridgeInterface`: the pods' bridge (e.g. `cni0`).
    #[arg(long, value_name = "NAME")]
    pub pod_bridge_interface: Option<String>,
    /// With `--detect-local-mode InterfaceNamePrefix`: the prefix of the pods' host-side
    /// interfaces (e.g. `cali`, `veth`).
    #[arg(long, value_name = "PREFIX")]
    pub pod_interface_name_prefix: Option<String>,
    /// Masquerade all traffic to cluster IPs.
    #[arg(long)]
    pub masquerade_all: bool,
    /// Where NodePorts listen: `primary` (the node's InternalIP per family, the default), or
    /// comma-separated CIDRs of local addresses (`0.0.0.0/0,::/0` = every local address).
    #[arg(long, default_value = "primary", value_parser = parse_node_port_addresses, value_name = "primary|CIDR[,CIDR]")]
    pub nodeport_addresses: NodePortAddresses,
    /// Check NodePorts against this range (the API server's --service-node-port-range) and
    /// treat others as malformed. Unset (the default), NodePorts are trusted as the API server
    /// allocated them, as kube-proxy does.
    #[arg(long, value_parser = parse_port_range, value_name = "FIRST-LAST")]
    pub node_port_range: Option<(u16, u16)>,
    /// Service CIDRs (comma-separated, one per family; the API server's
    /// --service-cluster-ip-range): traffic to an address inside them that no Service owns is
    /// dropped. ServiceCIDR objects in the manifests add to these; with the API source it is
    /// used only when the API serves no ServiceCIDRs.
    #[arg(long, value_delimiter = ',', value_name = "CIDR[,CIDR]")]
    pub service_cluster_ip_range: Vec<IpNet>,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Source address of the packet.
    #[arg(long, value_name = "IP")]
    pub from: IpAddr,
    /// Destination, as IP:PORT/PROTO (e.g. 10.96.0.10:80/tcp, [fd00::10]:53/udp).
    #[arg(long, value_name = "IP:PORT/PROTO", value_parser = parse_destination)]
    pub to: (IpAddr, u16, Protocol),
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `1s`, `500ms`, `2m`, `1h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 1s, 500ms, 2m)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

fn parse_node_port_addresses(s: &str) -> Result<NodePortAddresses, String> {
    if s.trim() == "primary" {
        return Ok(NodePortAddresses::Primary);
    }
    s.split(',')
        .map(|c| c.trim().parse::<IpNet>().map_err(|e| format!("{c:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()
        .map(NodePortAddresses::Cidrs)
}

fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?}: want FIRST-LAST"))?;
    let a: u16 = a.trim().parse().map_err(|e| format!("{a:?}: {e}"))?;
    let b: u16 = b.trim().parse().map_err(|e| format!("{b:?}: {e}"))?;
    if a == 0 || a > b {
        return Err(format!("{s:?}: want 1 <= FIRST <= LAST"));
    }
    Ok((a, b))
}

/// `IP:PORT/PROTO`, with IPv6 in brackets.
fn parse_destination(s: &str) -> Result<(IpAddr, u16, Protocol), String> {
    let (addr, proto) = s
        .rsplit_once('/')
        .ok_or_else(|| format!("{s:?}: want IP:PORT/PROTO"))?;
    let addr: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr:?}: {e}"))?;
    let proto: Protocol = proto.parse()?;
    Ok((addr.ip(), addr.port(), proto))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("1d").is_err());
    }

    #[test]
    fn destinations() {
        let (ip, port, proto) = parse_destination("[fd00::10]:53/udp").expect("valid");
        assert_eq!(
            (ip.to_string().as_str(), port, proto),
            ("fd00::10", 53, Protocol::Udp)
        );
        assert!(parse_destination("10.0.0.1:80").is_err());
        assert!(parse_destination("10.0.0.1:80/icmp").is_err());
    }

    #[test]
    fn node_port_addresses() {
        assert_eq!(
            parse_node_port_addresses("primary"),
            Ok(NodePortAddresses::Primary)
        );
        assert!(
            matches!(parse_node_port_addresses("10.0.0.0/8,::/0"), Ok(NodePortAddresses::Cidrs(c)) if c.len() == 2)
        );
        assert!(parse_node_port_addresses("bogus").is_err());
        assert!(parse_port_range("32767-30000").is_err());
    }
}
