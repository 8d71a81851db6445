//! `v1.Node`: this node's addresses and zone.

use super::LABEL_TOPOLOGY_ZONE;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Node {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `status.addresses`.
    pub addresses: Vec<NodeAddress>,
}

/// One entry of `status.addresses`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeAddress {
    /// `InternalIP`, `ExternalIP`, `Hostname`, ...
    pub address_type: String,
    pub address: String,
}

impl Node {
    pub fn zone(&self) -> Option<&str> {
        self.labels.get(LABEL_TOPOLOGY_ZONE).map(String::as_str)
    }
}
