//! Endpoint selection semantics shared by every mode (kube-proxy's `pkg/proxy/topology.go`).

mod categorize;

pub use categorize::{categorize_endpoints, Candidate, TrafficPolicies};
