//! Node-level settings that shape the plan (kube-proxy's flags of the same names).

use crate::plan::{IpFamily, LocalDetector};
use ipnet::IpNet;
use std::net::IpAddr;
use std::ops::RangeInclusive;

/// Settings for one family's plan. Build with [`ProxyConfig::new`] and the `with_*` methods.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct ProxyConfig {
    /// Address family this plan covers; a dual-stack node plans twice.
    pub family: IpFamily,
    /// This node's name (`--hostname-override`): decides which endpoints are local.
    pub node_name: String,
    /// Which sources are pods (`--detect-local-mode`; `--cluster-cidr` by default). Traffic
    /// from others to a cluster IP is masqueraded, and pods' traffic to an external address of
    /// an `externalTrafficPolicy: Local` Service is short-circuited to the cluster endpoints.
    /// No CIDR: neither happens.
    pub pod_sources: LocalDetector,
    /// `--masquerade-all`: masquerade every connection to a cluster IP.
    pub masquerade_all: bool,
    /// `--node-port-range`: when set, NodePorts outside it are rejected as malformed. `None`
    /// (the default) trusts the API server, which allocated them from its own
    /// `--service-node-port-range`, as kube-proxy does: a cluster with a custom range must not
    /// silently lose NodePorts on nodes that lack the flag.
    pub node_port_range: Option<RangeInclusive<u16>>,
    /// Service CIDRs of this family (`--service-cluster-ip-range`, ServiceCIDR objects).
    pub service_cidrs: Vec<IpNet>,
    /// `--nodeport-addresses`: where NodePorts listen.
    pub node_port_addresses: NodePortAddresses,
    /// This host's interface addresses, used to resolve [`NodePortAddresses::Cidrs`]. Supplied by
    /// the caller because `core` does no I/O.
    pub local_addresses: Vec<IpAddr>,
}

/// `--nodeport-addresses`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NodePortAddresses {
    /// The node's primary address of the family (its `InternalIP`, else `ExternalIP`), as
    /// kube-proxy's nftables mode does by default. Chosen as the default for every mode so that
    /// modes behave the same, and because listening on every local address (docker0, cni0, ...)
    /// surprises operators.
    #[default]
    Primary,
    /// Every local address of the node (kube-proxy's iptables-mode default).
    All,
    /// The node's local addresses inside these CIDRs.
    Cidrs(Vec<IpNet>),
}

impl ProxyConfig {
    pub fn new(family: IpFamily, node_name: impl Into<String>) -> Self {
        Self {
            family,
            node_name: node_name.into(),
            pod_sources: LocalDetector::default(),
            masquerade_all: false,
            node_port_range: None,
            service_cidrs: Vec::new(),
            node_port_addresses: NodePortAddresses::Primary,
            local_addresses: Vec::new(),
        }
    }

    /// Pods are the sources inside these CIDRs (`ClusterCIDR`/`NodeCIDR` detection). Keeps only
    /// the CIDRs of this config's family: a dual-stack `--cluster-cidr` list can be passed to
    /// both families' configs unchanged.
    pub fn with_cluster_cidrs(self, cidrs: impl IntoIterator<Item = IpNet>) -> Self {
        self.with_pod_sources(LocalDetector::Cidrs(cidrs.into_iter().collect()))
    }

    /// Sets how pods are recognised; CIDRs of the other family are dropped.
    pub fn with_pod_sources(mut self, detector: LocalDetector) -> Self {
        let family = self.family;
        self.pod_sources = match detector {
            LocalDetector::Cidrs(cidrs) => LocalDetector::Cidrs(
                cidrs
                    .into_iter()
                    .filter(|c| IpFamily::of(&c.addr()) == family)
                    .collect(),
            ),
            by_interface => by_interface,
        };
        self
    }

    pub fn with_masquerade_all(mut self, on: bool) -> Self {
        self.masquerade_all = on;
        self
    }

    /// Checks NodePorts against `range` (`None`: trust the API server).
    pub fn with_node_port_range(mut self, range: Option<RangeInclusive<u16>>) -> Self {
        self.node_port_range = range;
        self
    }

    /// Keeps only the CIDRs of this config's family, like [`Self::with_cluster_cidrs`].
    pub fn with_service_cidrs(mut self, cidrs: impl IntoIterator<Item = IpNet>) -> Self {
        let family = self.family;
        self.service_cidrs = cidrs
            .into_iter()
            .filter(|c| IpFamily::of(&c.addr()) == family)
            .map(|c| c.trunc())
            .collect();
        self
    }

    pub fn with_node_port_addresses(mut self, addresses: NodePortAddresses) -> Self {
        self.node_port_addresses = addresses;
        self
    }

    pub fn with_local_addresses(mut self, addresses: impl IntoIterator<Item = IpAddr>) -> Self {
        self.local_addresses = addresses.into_iter().collect();
        self
    }
}
