//! # switchyard-ipvs
//!
//! Switchyard's IPVS dataplane. Every service port's endpoint sets become firewall-mark IPVS
//! virtual services (`state`, `ops`); the helper rules that decide which traffic goes to
//! which of them, masquerade, reject and drop come from the nftables backend's builders in
//! their own table `switchyard-ipvs` (`switchyard_nftables::NftablesDataplane::ipvs_helpers`),
//! so the plan's rules are rendered by one rule builder, not a third copy. Virtual addresses
//! live on the dummy interface `swyd-ipvs0` (`link`). One `Transaction` per sync is printed
//! (`--dry-run`) or performed (`apply`).
//!
//! - `netlink`: the IPVS generic-netlink family as typed messages, and a pipelining socket.
//! - `marks`: stable firewall marks per (service port, endpoint set).
//! - `state`: wanted vs. committed virtual services, destinations and addresses; the diff.
//! - `check`: what the kernel holds of ours against what was committed (drift).
//! - `sysctl`: what kube-proxy sets for IPVS.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod check;
pub mod config;
mod dataplane;
mod link;
mod listing;
mod marks;
pub mod netlink;
mod ops;
mod state;
mod sysctl;
mod tx;

pub use config::{IpvsConfig, SchedulerFlag};
pub use dataplane::{IpvsDataplane, Retirement};
pub use link::DUMMY;
pub use tx::Transaction;
