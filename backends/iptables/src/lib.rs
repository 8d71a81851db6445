//! # switchyard-iptables
//!
//! Switchyard's iptables dataplane. Renders a `ProxyPlan` into one `iptables-restore --noflush`
//! transaction per sync (plus `ipset restore` for the guard sets), for iptables-nft or
//! iptables-legacy, IPv4 or IPv6. See `render` for the datapath shape and why it stays flat
//! as services grow.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod build;
mod dataplane;
mod exec;
mod names;
mod render;
mod restore_order;
mod rules;
mod sets;
mod tx;

pub use dataplane::{detect_variant, IptablesConfig, IptablesDataplane};
pub use exec::Variant;

/// Interim (replaced by the plan-driven renderer): the old external-path summary.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OldExternal {
    pub target: switchyard_core::plan::Target,
    pub masquerade: bool,
    pub short_circuit: bool,
}

pub(crate) fn interim_old_external(p: &switchyard_core::plan::PathPlan) -> OldExternal {
    OldExternal {
        target: p.fallback(),
        masquerade: p.rules.last().is_some_and(|r| r.masquerade),
        short_circuit: p
            .rules
            .iter()
            .any(|r| r.from != switchyard_core::plan::SourceClass::Any),
    }
}
