//! # switchyard-nftables
//!
//! Switchyard's nftables dataplane, speaking nf_tables netlink directly (no `nft` binary, no
//! libnftnl): a typed statement layer (`stmt`) lowers to expressions (`expr`) and objects
//! (`objects`), collected into one `Transaction` per sync that is either printed as `nft -f`
//! input (`render`, `--dry-run`) or sent as one atomic batch (`apply`). Everything lives in the
//! `ip switchyard` / `ip6 switchyard` table. See `render` for the ruleset's shape.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod build;
mod check;
mod dataplane;
mod expr;
mod names;
mod netlink;
mod objects;
mod render;
mod stmt;
mod tx;

pub use dataplane::NftablesDataplane;
pub use names::MASQ_MARK;
pub use render::ipvs::{mark_maps, mark_owners, marks_in_maps, steers_by_mark, Marks, FWMARK_BITS};
pub use render::Features;

pub use tx::Transaction;

/// The netlink framing and the dump decoders, public for the fuzz targets (`fuzz-entries`).
pub mod wire;
