//! Turning flags and manifests into per-family plans.

use crate::cli::NodeArgs;
use crate::host;
use crate::source::Manifests;
use anyhow::Context as _;
use std::net::IpAddr;
use switchyard_core::model::Node;
use switchyard_core::{plan, IpFamily, NodePortAddresses, ProxyConfig, ProxyPlan};

/// How this node is set up: fixed for the agent's lifetime.
#[derive(Debug, Clone)]
pub struct NodeSetup {
    pub node_name: String,
    pub configs: Vec<ProxyConfig>,
}

impl NodeSetup {
    /// Resolves the node name (flag, else the manifests' only Node, else the host name) and
    /// builds one config per family.
    pub async fn resolve(args: &NodeArgs, manifests: Option<&Manifests>) -> anyhow::Result<Self> {
        let node_name = match (
            &args.hostname_override,
            manifests.and_then(Manifests::single_node_name),
        ) {
            (Some(name), _) => name.clone(),
            (None, Some(name)) => name.to_string(),
            (None, None) => host::hostname()?,
        };
        let local_addresses = match args.nodeport_addresses {
            NodePortAddresses::Cidrs(_) => host::local_addresses()
                .await
                .context("--nodeport-addresses with CIDRs needs this host's addresses")?,
            _ => Vec::new(),
        };
        let configs =
            families(manifests.and_then(|m| m.nodes.iter().find(|n| n.name == node_name)))
                .into_iter()
                .map(|family| {
                    ProxyConfig::new(family, node_name.clone())
                        .with_cluster_cidrs(args.cluster_cidr.iter().copied())
                        .with_masquerade_all(args.masquerade_all)
                        .with_node_port_range(args.node_port_range.map(|(a, b)| a..=b))
                        .with_service_cidrs(args.service_cluster_ip_range.iter().copied())
                        .with_node_port_addresses(args.nodeport_addresses.clone())
                        .with_local_addresses(local_addresses.iter().copied())
                })
                .collect();
        Ok(Self { node_name, configs })
    }

    /// One plan per family this node serves.
    pub fn plans(&self, manifests: &Manifests) -> Vec<ProxyPlan> {
        let state = manifests.to_state(&self.node_name);
        self.configs.iter().map(|c| plan(&state, c)).collect()
    }
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
