//! # switchyard-iptables
//!
//! Switchyard's iptables dataplane. Renders a `ProxyPlan` into one `iptables-restore --noflush`
//! transaction per sync (plus `ipset restore` for the guard sets), for iptables-nft or
//! iptables-legacy, IPv4 or IPv6. See `render` for the datapath shape and why it stays flat
//! as services grow.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod build;
pub mod check;
mod dataplane;
mod exec;
mod names;
mod render;
mod restore_order;
mod rules;
mod sets;
mod skeleton;
#[cfg(test)]
mod tests;
mod tx;

pub use dataplane::{detect_variant, IptablesConfig, IptablesDataplane};
pub use exec::{restore_error, Variant};
