//! The Kubernetes objects Switchyard reads, mirrored field by field.
//!
//! These types are deliberately *loosely* typed: IPs, protocols and policies stay strings and
//! ports stay `i32`, exactly as they arrive from the API server or a manifest file. Turning them
//! into typed values is validation, and validation is [`crate::plan`]'s job, because a bad value
//! must cost only the object that carries it (with a [`crate::Warning`] naming the field), never
//! the whole sync. Conversions from `k8s-openapi` types live in the agent, so this crate stays
//! free of the Kubernetes client stack.

mod endpoints;
mod node;
mod service;
mod tracked;

pub use endpoints::{Endpoint, EndpointConditions, EndpointHints, EndpointPort, EndpointSlice};
pub use node::{Node, NodeAddress};
pub use service::{LoadBalancerIngress, Service, ServicePort};
pub use tracked::{Touched, TrackedState};

use std::collections::BTreeMap;
use std::fmt;

/// Label that opts a Service out of Switchyard when set to any value (another proxy owns it).
pub const LABEL_SERVICE_PROXY_NAME: &str = "service.kubernetes.io/service-proxy-name";
/// Label that marks a Service headless regardless of its cluster IP.
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
/// Label that ties an EndpointSlice to its Service.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// Node label carrying the node's zone.
pub const LABEL_TOPOLOGY_ZONE: &str = "topology.kubernetes.io/zone";

/// `namespace/name` of a namespaced object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
pub struct ObjectRef {
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Cluster-scoped objects (Nodes) have no namespace.
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// The metadata Switchyard uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectMeta {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Creation time in Unix seconds. Decides which of two colliding Services keeps a contested
    /// NodePort or virtual address: the older one, so a new object can never break a working one.
    pub creation_timestamp: Option<i64>,
}

impl ObjectMeta {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            ..Self::default()
        }
    }

    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef::new(self.namespace.clone(), self.name.clone())
    }
}

/// Everything the planner looks at: the objects of the cluster as this node sees them.
///
/// Keyed by `namespace/name` so that a source can upsert and delete objects as watch events arrive
/// and hand the planner a consistent snapshot.
#[derive(Debug, Clone, Default)]
pub struct ClusterState {
    pub services: BTreeMap<ObjectRef, Service>,
    pub endpoint_slices: BTreeMap<ObjectRef, EndpointSlice>,
    /// This node, if known. Supplies the node's addresses (for NodePorts) and zone (for topology).
    pub node: Option<Node>,
    /// `networking.k8s.io/v1` ServiceCIDRs by name: the ranges cluster IPs are allocated from.
    pub service_cidrs: BTreeMap<String, ServiceCidr>,
}

/// A `networking.k8s.io/v1` ServiceCIDR (cluster-scoped): `spec.cidrs`, unparsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceCidr {
    pub name: String,
    pub cidrs: Vec<String>,
}

impl ClusterState {
    pub fn upsert_service(&mut self, service: Service) {
        self.services.insert(service.meta.object_ref(), service);
    }

    pub fn upsert_service_cidr(&mut self, cidr: ServiceCidr) {
        self.service_cidrs.insert(cidr.name.clone(), cidr);
    }

    pub fn upsert_endpoint_slice(&mut self, slice: EndpointSlice) {
        self.endpoint_slices.insert(slice.meta.object_ref(), slice);
    }
}
