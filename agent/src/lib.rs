//! The Switchyard node agent as a library: the binary (`main.rs`) is a thin wrapper, and the
//! conformance suite reuses the manifest source and the per-family planning.

// One allowed exception, `memory::release_freed` (DESIGN-NOTES 287).
#![deny(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod backends;
pub mod cli;
pub mod config;
pub mod conntrack;
pub mod explain;
pub mod families;
pub mod health;
pub mod host;
pub mod http;
pub mod ipvs_args;
pub mod live;
pub mod memory;
pub mod metrics;
pub mod migrate;
pub mod node;
pub mod ops;
pub mod run;
pub mod source;
pub mod sync;
