//! Turning flags and the node's own objects into per-family configs and plans.
//!
//! Everything the Node object contributes — which families the node has (its addresses and
//! `spec.podCIDRs`), its addresses and zone (read by `core::plan` from `ClusterState::node`),
//! its `spec.podCIDRs` (with `--detect-local-mode NodeCIDR`) and whether it exists at all — is
//! read again at every re-plan, so a Node edited or deleted while the agent runs is followed
//! live: a family it gains gets a plan (and the agent a dataplane lane, `crate::families`),
//! a family it loses gets none (and its rules are removed).

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

/// How this node is set up: the name is fixed for the agent's lifetime; which families are
/// planned, and the per-family configs, are decided from [`NodeFacts`] and the Node at every
/// plan.
#[derive(Debug, Clone)]
pub struct NodeSetup {
    pub node_name: String,
    /// The flags' configs, one per family (IPv4, IPv6); a plan uses those of the node's
    /// families ([`node_families`]).
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
    /// name).
    pub async fn resolve(args: &NodeArgs, manifests: Option<&Manifests>) -> anyhow::Result<Self> {
        let node_name = match (
            &args.hostname_override,
            manifests.and_then(Manifests::single_node_name),
        ) {
            (Some(name), _) => name.clone(),
            (None, Some(name)) => name.to_string(),
            (None, None) => host::hostname()?,
        };
        Self::for_node(args, node_name).await
    }

    /// The setup for `node_name`.
    pub async fn for_node(args: &NodeArgs, node_name: String) -> anyhow::Result<Self> {
        let local_addresses = match args.nodeport_addresses {
            NodePortAddresses::Cidrs(_) => host::local_addresses()
                .await
                .context("--nodeport-addresses with CIDRs needs this host's addresses")?,
            _ => Vec::new(),
        };
        let pod_sources = pod_sources(args)?;
        let configs = [IpFamily::V4, IpFamily::V6]
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

    /// The configs for the node as it is now: one per family it has.
    pub fn configs_for(&self, node: Option<&Node>, facts: &NodeFacts) -> Vec<ProxyConfig> {
        let families = node_families(node, &facts.pod_cidrs);
        self.configs
            .iter()
            .filter(|c| families.contains(&c.family))
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

    /// One plan per family the node has now (`state.node`, `facts`), with the configs rebuilt
    /// from `facts`.
    pub fn plan_state(&self, state: &ClusterState, facts: &NodeFacts) -> Vec<ProxyPlan> {
        self.configs_for(state.node.as_ref(), facts)
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

/// The families to plan: those of the node's InternalIP/ExternalIP addresses and `podCIDRs`
/// when it has any (a single-stack node gets no plan, and no rules, for the other family; a
/// node whose pods have IPv6 addresses needs IPv6 Services even if its own addresses are all
/// IPv4), else both (no Node object yet, or one that lists nothing: planning a family too many
/// costs an empty table, planning one too few breaks its Services).
pub fn node_families(node: Option<&Node>, pod_cidrs: &[IpNet]) -> Vec<IpFamily> {
    let ips: Vec<IpAddr> = node
        .into_iter()
        .flat_map(|n| &n.addresses)
        .filter(|a| a.address_type == "InternalIP" || a.address_type == "ExternalIP")
        .filter_map(|a| a.address.trim().parse().ok())
        .chain(pod_cidrs.iter().map(|c| c.addr()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::model::NodeAddress;

    fn node(addresses: &[(&str, &str)]) -> Node {
        Node {
            name: "n".into(),
            addresses: addresses
                .iter()
                .map(|(t, a)| NodeAddress {
                    address_type: t.to_string(),
                    address: a.to_string(),
                })
                .collect(),
            ..Node::default()
        }
    }

    #[test]
    fn families_come_from_addresses_and_pod_cidrs() {
        use IpFamily::{V4, V6};
        let v4 = node(&[("InternalIP", "192.168.0.10"), ("Hostname", "n")]);
        assert_eq!(node_families(Some(&v4), &[]), [V4]);
        let dual = node(&[
            ("InternalIP", "192.168.0.10"),
            ("ExternalIP", "2001:db8::1"),
        ]);
        assert_eq!(node_families(Some(&dual), &[]), [V4, V6]);
        // IPv6 pods on a node whose own addresses are IPv4: IPv6 Services are needed too.
        let pods6: IpNet = "fd00:10:244:1::/64".parse().expect("cidr");
        assert_eq!(node_families(Some(&v4), &[pods6]), [V4, V6]);
        // Unknown: both (a family too many costs an empty table; one too few, Services).
        assert_eq!(node_families(None, &[]), [V4, V6]);
        let nothing = node(&[("Hostname", "n"), ("InternalIP", "not-an-ip")]);
        assert_eq!(node_families(Some(&nothing), &[]), [V4, V6]);
    }
}
