//! # switchyard-core
//!
//! Kubernetes Service semantics, computed once, for every Switchyard dataplane.
//!
//! ```text
//! ClusterState (Services, EndpointSlices, this Node) + ProxyConfig
//!        │ plan()                     pure, no I/O
//!        ▼
//!    ProxyPlan ──diff()──▶ Changes    which service ports changed
//!        │
//!        ├─▶ Dataplane::apply / render   backends program it
//!        └─▶ explain()                   "where does this packet go"
//! ```
//!
//! A third-party backend depends on this crate alone: implement [`Dataplane`] by rendering the
//! [`ProxyPlan`]; never re-derive which endpoints a packet may reach.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod config;
pub mod conntrack;
pub mod dataplane;
pub mod diff;
pub mod explain;
pub mod flow;
pub mod model;
pub mod plan;
pub mod semantics;
pub mod warning;

pub use config::{NodePortAddresses, ProxyConfig};
pub use conntrack::{stale_flows, FlowCleanup};
pub use dataplane::{ApplyStats, Dataplane, DataplaneError, Drift, Mode};
pub use diff::{diff, Changes};
pub use explain::{explain, Explanation, Origin, Verdict};
pub use flow::{Expect, PacketFlow};
pub use model::ClusterState;
pub use plan::{
    health_checks, plan, HealthCheck, IpFamily, LocalDetector, NoLocalEndpoints, PlanUpdate,
    Planner, Protocol, ProxyPlan, ServicePortName, ServicePortPlan, Target,
};
pub use warning::Warning;
