//! The plan's vocabulary: what every backend renders and every test checks against.

use super::LocalDetector;
use crate::model::ObjectRef;
use crate::warning::Warning;
use ipnet::IpNet;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// IP address family. Each family gets its own plan and its own kernel tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    pub fn of(ip: &IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }

    /// The spelling of `spec.ipFamilies` and `addressType`.
    pub fn api_name(self) -> &'static str {
        match self {
            Self::V4 => "IPv4",
            Self::V6 => "IPv6",
        }
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.api_name())
    }
}

/// Transport protocol of a Service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

    /// The API spelling (`TCP`).
    pub fn api_name(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        }
    }

    /// The lower-case spelling used by `nft`, `iptables` and `/etc/protocols` (`tcp`).
    pub fn lower(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        }
    }

    /// IANA protocol number, as matched by `meta l4proto`.
    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
            Self::Sctp => 132,
        }
    }
}

impl FromStr for Protocol {
    type Err = String;
    /// Accepts either spelling, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.api_name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown protocol {s:?} (want TCP, UDP or SCTP)"))
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.lower())
    }
}

/// Identifies one port of one Service: `namespace/name:port-name/protocol`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ServicePortName {
    pub service: ObjectRef,
    /// The port's `name`; empty for a Service's single unnamed port.
    pub port: String,
    pub protocol: Protocol,
}

impl fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.service)?;
        if !self.port.is_empty() {
            write!(f, ":{}", self.port)?;
        }
        write!(f, "/{}", self.protocol)
    }
}

/// The plan for one address family: every service port, with every decision already made.
///
/// This is the oracle of DESIGN §1. Backends render it and decide nothing; the conformance suite
/// and [`crate::explain`] read the same value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProxyPlan {
    pub family: IpFamily,
    pub node_name: String,
    /// This node's own addresses of the family, from its Node object. Traffic from them is
    /// "from the host".
    pub node_ips: Vec<IpAddr>,
    /// Where NodePorts listen.
    pub node_port_addresses: NodePortListen,
    /// How cluster-IP traffic is masqueraded.
    pub cluster_masquerade: ClusterMasquerade,
    /// Which sources are pods (`--detect-local-mode`; `--cluster-cidr` by default): they keep
    /// their address to cluster IPs, and are short-circuited to the cluster endpoints for
    /// external traffic. Rules of [`SourceClass::Pod`] match exactly this. None known: only
    /// host-originated traffic is short-circuited.
    pub pod_sources: LocalDetector,
    /// Service CIDRs (`--service-cluster-ip-range`, ServiceCIDR objects): traffic to an address
    /// inside them that no Service owns is dropped, as kube-proxy's nftables mode does. Empty:
    /// unknown, nothing is dropped.
    pub service_cidrs: Vec<IpNet>,
    pub services: BTreeMap<ServicePortName, ServicePortPlan>,
    /// What was skipped while planning. Not rendered; logged and counted by the agent.
    pub warnings: Vec<Warning>,
}

/// Where NodePorts are reachable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum NodePortListen {
    /// Any address local to the node (`fib daddr type local` / `--dst-type LOCAL`).
    AllLocal,
    /// Exactly these node addresses.
    Addresses(Vec<IpAddr>),
}

/// Which connections to a cluster IP are masqueraded (SNAT to the node's address) on the way to
/// an endpoint. Independent of this, every endpoint masquerades its own hairpin traffic
/// ([`Endpoint`] reached from its own address), or the reply would bypass the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ClusterMasquerade {
    /// `--masquerade-all`.
    All,
    /// Connections not from a pod (by this detector, the plan's `pod_sources`): such a client
    /// routed to the service range via this node, and the reply must come back the same way.
    FromOutside(LocalDetector),
    /// No cluster CIDR is known: only hairpin traffic is masqueraded.
    HairpinOnly,
}

/// Everything decided for one Service port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServicePortPlan {
    pub protocol: Protocol,
    /// The Service port (what clients connect to on the cluster, external and LB IPs).
    pub port: u16,
    pub cluster_ip: IpAddr,
    pub external_ips: Vec<IpAddr>,
    /// Ingress IPs with `ipMode: VIP` (or unset); `Proxy` ingress IPs are not captured.
    pub load_balancer_ips: Vec<IpAddr>,
    pub node_port: Option<u16>,
    /// `healthCheckNodePort`, served by the agent's health server, not by proxy rules; set only
    /// when external traffic uses the `Local` policy (see [`ProxyPlan::health_checks`]).
    pub health_check_node_port: Option<u16>,
    /// Set when `loadBalancerSourceRanges` applies: traffic to a load-balancer IP from any other
    /// source is dropped. Not applied to NodePorts or external IPs (as in Kubernetes).
    pub source_ranges: Option<SourceRanges>,
    /// `sessionAffinity: ClientIP`: a client keeps its endpoint for this many seconds of silence.
    pub affinity_timeout_seconds: Option<u32>,
    pub endpoints: EndpointCategories,
    /// Traffic to the cluster IP.
    pub internal: PathPlan,
    /// Traffic to NodePorts, external IPs and load-balancer IPs; `None` when the service port
    /// has none of those.
    pub external: Option<PathPlan>,
    /// How topology narrowed the cluster endpoints.
    pub topology: TopologyMode,
}

impl ServicePortPlan {
    /// The endpoints a target sends to (empty for `Reject`/`Drop`).
    pub fn endpoints_for(&self, target: Target) -> &[Endpoint] {
        let set = match target {
            Target::Cluster => self.endpoints.cluster.as_deref(),
            Target::Local => self.endpoints.local.as_deref(),
            Target::Reject | Target::Drop => None,
        };
        set.unwrap_or_default()
    }

    /// Both paths: the internal one, then the external one if any.
    pub fn paths(&self) -> impl Iterator<Item = &PathPlan> {
        std::iter::once(&self.internal).chain(self.external.as_ref())
    }

    /// Every endpoint some path of this port can reach: the set to program affinity state and
    /// endpoint chains for, and to clear conntrack entries against.
    pub fn reachable_endpoints(&self) -> Vec<&Endpoint> {
        let mut all: Vec<&Endpoint> = self
            .paths()
            .flat_map(PathPlan::endpoint_targets)
            .flat_map(|t| self.endpoints_for(t))
            .collect();
        all.sort_by_key(|e| (e.ip, e.port));
        all.dedup_by_key(|e| (e.ip, e.port));
        all
    }
}

/// The kinds of address a service port is reached on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum VipKind {
    ClusterIp,
    ExternalIp,
    LoadBalancerIp,
    NodePort,
}

impl fmt::Display for VipKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ClusterIp => "cluster IP",
            Self::ExternalIp => "external IP",
            Self::LoadBalancerIp => "load-balancer IP",
            Self::NodePort => "NodePort",
        })
    }
}

/// The outcome of kube-proxy's `CategorizeEndpoints` for one service port.
///
/// `None` means the service port never uses that kind of endpoint (so a backend creates no chain
/// for it); `Some(empty)` means it uses it but has none right now.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct EndpointCategories {
    /// Endpoints for `Cluster` traffic policy: ready ones (narrowed by topology), or the
    /// serving-terminating ones when no endpoint is ready.
    pub cluster: Option<Vec<Endpoint>>,
    /// Endpoints on this node for `Local` traffic policy, with the same fallback.
    pub local: Option<Vec<Endpoint>>,
    /// Whether any usable (ready, or serving and terminating) endpoint exists on any node.
    /// Decides between "reject" (nothing anywhere) and "drop" (nothing on this node).
    pub has_any: bool,
}

/// Where one kind of traffic goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Target {
    /// Load-balance over `endpoints.cluster` (never empty when targeted).
    Cluster,
    /// Load-balance over `endpoints.local` (never empty when targeted).
    Local,
    /// No usable endpoint anywhere: refuse at once (TCP RST / ICMP port unreachable), so clients
    /// fail fast instead of timing out.
    Reject,
    /// `Local` policy with endpoints elsewhere but none here: drop silently, so an external load
    /// balancer's health check fails over to another node instead of seeing a refusal.
    Drop,
}

/// A key the kernel matches a new connection's destination on: what dispatch looks up.
///
/// Core computes every key of every service port and gives each key exactly one owner across
/// all kinds of address ([`VipKind`]), so backends can put all keys into one key space (a set,
/// a map, an ipset) and never meet a duplicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum ServiceKey {
    /// `address:port/protocol`: cluster IPs, external IPs, load-balancer IPs, and NodePorts on
    /// the node addresses they listen on.
    Addr {
        ip: IpAddr,
        protocol: Protocol,
        port: u16,
    },
    /// `port/protocol` on any address local to the node: NodePorts when they listen on every
    /// local address (`--nodeport-addresses` covering the whole family).
    AnyLocal { protocol: Protocol, port: u16 },
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Addr {
                ip: IpAddr::V6(ip),
                protocol,
                port,
            } => write!(f, "[{ip}]:{port}/{protocol}"),
            Self::Addr { ip, protocol, port } => write!(f, "{ip}:{port}/{protocol}"),
            Self::AnyLocal { protocol, port } => write!(f, "*:{port}/{protocol} (local)"),
        }
    }
}

/// One key of a path and the kind of address it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PlannedKey {
    pub kind: VipKind,
    pub key: ServiceKey,
}

/// Who sent a packet, as far as rules can tell from its source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum SourceClass {
    /// A pod, as [`ProxyPlan::pod_sources`] recognises it (source CIDR or input interface).
    Pod,
    /// This node itself: the source is one of its local addresses.
    Host,
    /// Anything (the last rule of every path).
    Any,
}

/// One rule of a path: traffic from `from` goes to `target`, masqueraded or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PathRule {
    pub from: SourceClass,
    pub target: Target,
    /// SNAT to the node's address on the way to the endpoint. Only ever set with an endpoint
    /// target (`Cluster`/`Local`).
    pub masquerade: bool,
}

/// How one path of a service port (its cluster IP, or its external addresses) is handled.
///
/// This is the one place the short-circuit and masquerade decisions are made: backends and
/// [`crate::explain`] walk `rules` in order, and the first rule whose source class matches
/// decides. The last rule is always [`SourceClass::Any`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathPlan {
    /// The kernel keys that lead to this path, each owned by this service port alone.
    pub keys: Vec<PlannedKey>,
    pub rules: Vec<PathRule>,
}

impl PathPlan {
    /// Where traffic that no earlier rule caught goes: the last rule's target.
    pub fn fallback(&self) -> Target {
        self.rules.last().map_or(Target::Reject, |r| r.target)
    }

    /// The endpoint sets some rule of this path sends to, each once, in rule order.
    pub fn endpoint_targets(&self) -> Vec<Target> {
        let mut out = Vec::new();
        for r in &self.rules {
            if matches!(r.target, Target::Cluster | Target::Local) && !out.contains(&r.target) {
                out.push(r.target);
            }
        }
        out
    }

    /// Whether any rule translates traffic (so dispatch must send this path's keys to nat).
    pub fn translates(&self) -> bool {
        !self.endpoint_targets().is_empty()
    }
}

/// How topology narrowed the cluster endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TopologyMode {
    /// All endpoints are candidates.
    None,
    /// Only endpoints hinted for this node's zone (`PreferClose`/`PreferSameZone`).
    Zone,
    /// Only endpoints hinted for this node (`PreferSameNode`).
    Node,
}

/// One endpoint as planned.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
    pub node_name: Option<String>,
    pub zone: Option<String>,
    /// Runs on this node.
    pub is_local: bool,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(ip) => write!(f, "{ip}:{}", self.port),
            IpAddr::V6(ip) => write!(f, "[{ip}]:{}", self.port),
        }
    }
}

/// `loadBalancerSourceRanges` for one family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceRanges {
    /// Sources allowed to reach the load-balancer IPs. May be empty when every range the Service
    /// lists belongs to the other family or was malformed: then nothing is allowed, because a
    /// restriction that failed to parse must not turn into "open to all".
    pub allow: Vec<IpNet>,
    /// Also allow sources equal to a load-balancer IP. Set when a range contains a node address:
    /// a VIP-style load balancer loops the node's own requests back with the VIP as source.
    pub allow_from_load_balancer_ips: bool,
}

impl SourceRanges {
    pub fn allows(&self, src: IpAddr, load_balancer_ips: &[IpAddr]) -> bool {
        self.allow.iter().any(|net| net.contains(&src))
            || (self.allow_from_load_balancer_ips && load_balancer_ips.contains(&src))
    }
}
