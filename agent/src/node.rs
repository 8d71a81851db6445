//! Turning flags and the node's own objects into per-family configs and plans.
//!
//! The families planned are fixed when the agent starts (one dataplane lane each, DESIGN-NOTES
//! 11). Everything else the Node object contributes — its addresses and zone (read by
//! `core::plan` from `ClusterState::node`), its `spec.podCIDRs` (with
//! `--detect-local-mode NodeCIDR`) and whether it exists at all — is read again at every
//! re-plan, so a Node edited or deleted while the agent runs is followed live.

use crate::cli::{DetectLocalMode, NodeArgs};
use crate::host;
use crate::source::Manifests;
use anyhow::Context as _;
use clap::ValueEnum as _;
use ipnet::IpNet;
use std::net::IpAddr;
use switchyard_core::model::Node;
use switchyard_core::{
    plan, ClusterState, IpFamily, LocalDetector, NodePortAddresses, ProxyConfig, ProxyPlan,
};

/// How this node is set up: the name and families are fixed for the agent's lifetime; the
/// per-family configs are rebuilt from [`NodeFacts`] at every plan.
#[derive(Debug, Clone)]
pub struct NodeSetup {
    pub node_name: String,
    /// The flags' configs, one per planned family.
    pub configs: Vec<ProxyConfig>,
    detect_local: DetectLocalMode,
}

/// What the source knows about this node beyond `ClusterState`, read at every plan.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    /// The Node's `spec.podCIDRs` (used with `--detect-local-mode NodeCIDR`).
    pub pod_cidrs: Vec<IpNet>,
    /// Whether `--service-cluster-ip-range` applies: always offline; with the API source only
    /// when the API does not serve ServiceCIDRs (then the objects are the truth).
    pub service_cidr_flag: bool,
}

impl Default for NodeFacts {
    fn default() -> Self {
        Self {
            pod_cidrs: Vec::new(),
            service_cidr_flag: true,
        }
    }
}

impl NodeSetup {
    /// Offline: resolves the node name (flag, else the manifests' only Node, else the host
    /// name) and plans the families of that Node's addresses.
    pub async fn resolve(args: &NodeArgs, manifests: Option<&Manifests>) -> anyhow::Result<Self> {
        let node_name = match (
            &args.hostname_override,
            manifests.and_then(Manifests::single_node_name),
        ) {
            (Some(name), _) => name.clone(),
            (None, Some(name)) => name.to_string(),
            (None, None) => host::hostname()?,
        };
        let node = manifests.and_then(|m| m.nodes.iter().find(|n| n.name == node_name));
        Self::for_node(args, node_name, node).await
    }

    /// The setup for `node_name`, planning the families of `node`'s addresses (both when the
    /// Node is unknown or lists none).
    pub async fn for_node(
        args: &NodeArgs,
        node_name: String,
        node: Option<&Node>,
    ) -> anyhow::Result<Self> {
        let local_addresses = match args.nodeport_addresses {
            NodePortAddresses::Cidrs(_) => host::local_addresses()
                .await
                .context("--nodeport-addresses with CIDRs needs this host's addresses")?,
            _ => Vec::new(),
        };
        let pod_sources = pod_sources(args)?;
        let configs = families(node)
            .into_iter()
            .map(|family| {
                ProxyConfig::new(family, node_name.clone())
                    .with_pod_sources(pod_sources.clone())
                    .with_masquerade_all(args.masquerade_all)
                    .with_node_port_range(args.node_port_range.map(|(a, b)| a..=b))
                    .with_service_cidrs(args.service_cluster_ip_range.iter().copied())
                    .with_node_port_addresses(args.nodeport_addresses.clone())
                    .with_local_addresses(local_addresses.iter().copied())
            })
            .collect();
        Ok(Self {
            node_name,
            configs,
            detect_local: args.detect_local_mode,
        })
    }

    /// The families this node plans.
    pub fn families(&self) -> Vec<IpFamily> {
        self.configs.iter().map(|c| c.family).collect()
    }

    /// The configs for the node as it is now.
    pub fn configs_for(&self, facts: &NodeFacts) -> Vec<ProxyConfig> {
        self.configs
            .iter()
            .map(|c| {
                let mut c = c.clone();
                if self.detect_local == DetectLocalMode::NodeCidr {
                    c = c.with_cluster_cidrs(facts.pod_cidrs.iter().copied());
                }
                if !facts.service_cidr_flag {
                    c.service_cidrs.clear();
                }
                c
            })
            .collect()
    }

    /// One plan per family this node serves.
    pub fn plans(&self, manifests: &Manifests) -> Vec<ProxyPlan> {
        self.plan_state(&manifests.to_state(&self.node_name), &NodeFacts::default())
    }

    /// One plan per family for `state`, with the configs rebuilt from `facts`.
    pub fn plan_state(&self, state: &ClusterState, facts: &NodeFacts) -> Vec<ProxyPlan> {
        self.configs_for(facts)
            .iter()
            .map(|c| plan(state, c))
            .collect()
    }
}

/// How pods are recognised, from `--detect-local-mode` and its companion flag (for
/// `NodeCIDR`, the flag's CIDRs until [`NodeSetup::configs_for`] substitutes the Node's).
/// Decided here once; core carries it into the plan and every backend renders it.
fn pod_sources(args: &NodeArgs) -> anyhow::Result<LocalDetector> {
    let interface = |value: &Option<String>, flag: &str| -> anyhow::Result<String> {
        let name = value.as_deref().with_context(|| {
            format!(
                "--detect-local-mode {} needs {flag}",
                args.detect_local_mode
                    .to_possible_value()
                    .map(|v| v.get_name().to_string())
                    .unwrap_or_default()
            )
        })?;
        crate::config::values::interface_name(name).map_err(|e| anyhow::anyhow!("{flag}: {e}"))
    };
    Ok(match args.detect_local_mode {
        DetectLocalMode::ClusterCidr | DetectLocalMode::NodeCidr => {
            LocalDetector::Cidrs(args.cluster_cidr.clone())
        }
        DetectLocalMode::BridgeInterface => LocalDetector::InputInterface(interface(
            &args.pod_bridge_interface,
            "--pod-bridge-interface (detectLocal.bridgeInterface)",
        )?),
        DetectLocalMode::InterfaceNamePrefix => LocalDetector::InterfacePrefix(interface(
            &args.pod_interface_name_prefix,
            "--pod-interface-name-prefix (detectLocal.interfaceNamePrefix)",
        )?),
    })
}

/// The families to plan: those of the node's addresses when its Node object lists any (a
/// single-stack node gets no plan, and no rules, for the other family), else both.
fn families(node: Option<&Node>) -> Vec<IpFamily> {
    let ips: Vec<IpAddr> = node
        .into_iter()
        .flat_map(|n| &n.addresses)
        .filter(|a| a.address_type == "InternalIP" || a.address_type == "ExternalIP")
        .filter_map(|a| a.address.parse().ok())
        .collect();
    let families: Vec<IpFamily> = [IpFamily::V4, IpFamily::V6]
        .into_iter()
        .filter(|f| ips.iter().any(|ip| IpFamily::of(ip) == *f))
        .collect();
    if families.is_empty() {
        vec![IpFamily::V4, IpFamily::V6]
    } else {
        families
    }
}
