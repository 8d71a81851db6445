//! # switchyard-synthetic
//!
//! The one generator of benchmark scenarios. Every benchmark (the backends' benches in
//! `conformance`, the agent's API and manifest benches, the report in `switchyard-bench`)
//! builds its cluster here, so figures compare across benches and across commits:
//!
//! - [`cluster`]: `n` ClusterIP services x `k` endpoints as a `core::ClusterState`, with the
//!   fixed scales the benches sweep;
//! - [`objects`]: the same cluster as Kubernetes objects, as the API server would serve them
//!   (the fields the model ignores filled in as `kubectl get` prints them);
//! - [`dump`]: those objects written as a multi-document YAML file or a `kubectl get -o json`
//!   `v1 List`, the offline source's input.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod cluster;
pub mod dump;
pub mod objects;

pub use cluster::{
    add_service, cluster, control_scales, endpoint_slice, plan_of, scales, service, SWEEP,
};
