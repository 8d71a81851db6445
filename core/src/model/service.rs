//! `v1.Service`, as far as a service proxy reads it.

use super::ObjectMeta;

/// A Service. Field names follow the API; see the module docs for why values stay untyped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Service {
    pub meta: ObjectMeta,
    /// `spec.type`: `ClusterIP` (default), `NodePort`, `LoadBalancer` or `ExternalName`.
    pub service_type: Option<String>,
    /// `spec.clusterIPs` (or `spec.clusterIP` when the list is absent). `"None"` means headless.
    pub cluster_ips: Vec<String>,
    /// `spec.ipFamilies`, index-aligned with `cluster_ips`.
    pub ip_families: Vec<String>,
    pub ports: Vec<ServicePort>,
    /// `spec.externalIPs`.
    pub external_ips: Vec<String>,
    /// `status.loadBalancer.ingress`.
    pub load_balancer_ingress: Vec<LoadBalancerIngress>,
    /// `spec.loadBalancerSourceRanges`, CIDR strings.
    pub load_balancer_source_ranges: Vec<String>,
    /// `spec.sessionAffinity`: `None` (default) or `ClientIP`.
    pub session_affinity: Option<String>,
    /// `spec.sessionAffinityConfig.clientIP.timeoutSeconds`.
    pub session_affinity_timeout_seconds: Option<i32>,
    /// `spec.externalTrafficPolicy`: `Cluster` (default) or `Local`.
    pub external_traffic_policy: Option<String>,
    /// `spec.internalTrafficPolicy`: `Cluster` (default) or `Local`.
    pub internal_traffic_policy: Option<String>,
    /// `spec.healthCheckNodePort`.
    pub health_check_node_port: Option<i32>,
    /// `spec.trafficDistribution`: `PreferClose`, `PreferSameZone` or `PreferSameNode`.
    pub traffic_distribution: Option<String>,
}

/// One entry of `spec.ports`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServicePort {
    /// Port name; empty for a single unnamed port. Endpoints are matched to it by this name.
    pub name: String,
    /// `TCP` (default), `UDP` or `SCTP`.
    pub protocol: Option<String>,
    pub port: i32,
    /// `nodePort`, for NodePort and LoadBalancer Services.
    pub node_port: Option<i32>,
}

/// One entry of `status.loadBalancer.ingress`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoadBalancerIngress {
    pub ip: Option<String>,
    /// `VIP` (default) or `Proxy`. With `Proxy` the load balancer delivers traffic to the node
    /// addressed to the node, so the proxy must *not* capture the ingress IP.
    pub ip_mode: Option<String>,
}
