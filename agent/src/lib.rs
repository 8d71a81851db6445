//! The Switchyard node agent as a library: the binary (`main.rs`) is a thin wrapper, and the
//! conformance suite reuses the manifest source and the per-family planning.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod backends;
pub mod cli;
pub mod explain;
pub mod families;
pub mod host;
pub mod ipvs_args;
pub mod node;
pub mod run;
pub mod source;
pub mod sync;
