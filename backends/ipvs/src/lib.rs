//! # switchyard-ipvs
//!
//! Switchyard's IPVS dataplane. `netlink`: the IPVS generic-netlink family as typed messages
//! and a pipelining socket.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod netlink;
