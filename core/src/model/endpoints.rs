//! `discovery.k8s.io/v1.EndpointSlice`, as far as a service proxy reads it.

use super::{ObjectMeta, LABEL_SERVICE_NAME};

/// An EndpointSlice. A Service's endpoints are the union of all slices labelled with its name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EndpointSlice {
    pub meta: ObjectMeta,
    /// `addressType`: `IPv4`, `IPv6` or `FQDN` (the last is never proxied).
    pub address_type: String,
    pub endpoints: Vec<Endpoint>,
    pub ports: Vec<EndpointPort>,
}

impl EndpointSlice {
    /// The Service this slice belongs to, from its `kubernetes.io/service-name` label.
    pub fn service_name(&self) -> Option<&str> {
        self.meta.labels.get(LABEL_SERVICE_NAME).map(String::as_str)
    }
}

/// One endpoint of a slice.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Endpoint {
    /// Only the first address is used, as kube-proxy does.
    pub addresses: Vec<String>,
    pub conditions: EndpointConditions,
    pub node_name: Option<String>,
    pub zone: Option<String>,
    pub hints: EndpointHints,
}

/// `conditions`. Absent values take the API's documented defaults: ready defaults to true,
/// serving to the value of ready, terminating to false.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EndpointConditions {
    pub ready: Option<bool>,
    pub serving: Option<bool>,
    pub terminating: Option<bool>,
}

/// `hints`, written by the EndpointSlice controller from `trafficDistribution`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EndpointHints {
    pub for_zones: Vec<String>,
    pub for_nodes: Vec<String>,
}

/// One entry of `ports`: the resolved target port for the Service port of the same name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EndpointPort {
    pub name: Option<String>,
    pub protocol: Option<String>,
    pub port: Option<i32>,
}
