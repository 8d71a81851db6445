//! # switchyard-conformance
//!
//! Proves that a Switchyard dataplane does what `ProxyPlan` says, with real packets through the
//! real kernel: builds a topology of network namespaces, applies scenario state through the
//! backend under test, sends TCP/UDP connections and checks who answered, with which source
//! address. One scenario table runs against every backend and yields a matrix.
//!
//! A third-party backend runs it with its own [`runner::Backend`] (a factory and a leftover
//! check): `runner::run(&[backend], &scenarios::all(), &Options::default())`.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod backends;
pub mod baseline;
pub mod family;
pub mod faults;
pub mod matrix;
pub mod netns;
pub mod node;
pub mod pods;
pub mod probe;
pub mod runner;
pub mod scenario;
pub mod scenarios;
pub mod topology;
pub mod vm;

pub use family::Family;
pub use matrix::{Cell, Matrix};
pub use runner::{run, Backend, Options};
