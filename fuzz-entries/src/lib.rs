//! # switchyard-fuzz-entries
//!
//! One function per fuzz target. `fuzz/` (a cargo-fuzz crate, its own workspace, nightly) calls
//! them from `fuzz_target!`; `tests/replay.rs` calls them on stable with every file of
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/`, so the corpora and any crash
//! found become regression tests of `cargo test`. Each function must not panic on any input;
//! where a round trip exists it asserts it (a failed assertion is a finding).

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod cluster;
mod incremental;
mod ipvs;
mod targets;

pub use incremental::plan_incremental;
pub use ipvs::ipvs_netlink;
pub use targets::{iptables_parsers, iptables_render, manifest, nft_dump, nft_encode, plan};

/// A target's entry function.
pub type Entry = fn(&[u8]);

/// The targets by name, as `fuzz/fuzz_targets/<name>.rs` and the corpus directories call them.
pub const TARGETS: [(&str, Entry); 8] = [
    ("manifest", manifest),
    ("plan", plan),
    ("plan_incremental", plan_incremental),
    ("nft_encode", nft_encode),
    ("nft_dump", nft_dump),
    ("iptables_render", iptables_render),
    ("iptables_parsers", iptables_parsers),
    ("ipvs_netlink", ipvs_netlink),
];
