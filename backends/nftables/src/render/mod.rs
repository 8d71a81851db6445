//! ProxyPlan → objects. Pure: translates the plan, decides nothing.
//!
//! ```text
//! nat-prerouting/nat-output → services:
//!     <key> @<shape>-services goto <shape>         one rule per shape in use (data path)
//!     ip daddr . meta l4proto . th dport vmap @service-ips → per-service chains (affinity)
//!     fib daddr type local goto node-ports         (NodePorts on every local address: the
//!                                                   same rules keyed `meta l4proto . th dport`)
//! <shape>  e.g. int-cluster, ext-masq-to-cluster, ext-sc-to-local: masquerade decision and
//!          short-circuit, then goto <kind>-count (kind = cluster | local endpoints)
//! <kind>-count   binary search on the endpoint count: `<key> @<kind>-endpoint-<c-1>` holds
//!                exactly the keys with at least c endpoints
//! <kind>-pick-0-<n>   uniform choice among n slots: `numgen random mod (n-i) == 0 goto
//!                     <kind>-dnat-<i>`, last unconditional (larger n: split in halves first)
//! <kind>-dnat-<i>     dnat ip to <key> map @<kind>-endpoint-<i>
//! nat-postrouting → masquerading: hairpin (`ct status dnat ip saddr . ip daddr @hairpin`) and
//!     the masquerade mark
//! filter-prerouting/filter-output-firewall (before DNAT): vmap @firewall-ips → fw-*: allowed
//!     sources return, everything else is dropped (loadBalancerSourceRanges)
//! filter-input/forward/output, new connections → service-filter: whatever is still addressed
//!     to a service was not DNATed: @no-endpoint-reject (reject), @no-endpoint-drop (drop), then
//!     anything else to a cluster IP is rejected
//! ```
//!
//! **Why a data path.** A service port without session affinity owns no chain and no rule:
//! only elements (its keys in a shape set, its endpoints in the slot maps, hairpin pairs). The
//! kernel validates a table's whole jump graph at commit whenever a batch adds a rule or a
//! `goto` element (DESIGN-NOTES 33, 38); a batch of plain elements skips that, so an endpoint
//! change costs the same at 10 or 10k services. Rules change only when a shape or an endpoint
//! count appears or disappears cluster-wide, and then the graph to validate is the few shared
//! chains. Services with `sessionAffinity: ClientIP` keep per-service and per-endpoint chains
//! with per-endpoint affinity sets ([`chain_path`]), the kube-proxy shape, because affinity
//! must hold across all of a service's addresses, which a per-key data path cannot express.
//! No set or map per service in either path (DESIGN §4).

mod chain_path;
mod service;
mod shared;
mod skeleton;
mod slots;

pub use service::service;
pub use shared::structure;
pub use skeleton::skeleton;

use crate::expr::Verdict;
use crate::objects::{Elem, Hook, Key, Set};
use crate::stmt::{KeySrc, Stmt};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

/// The endpoint in each DNAT slot, per endpoint kind, of one service port.
pub type Slots = BTreeMap<Kind, Vec<SocketAddr>>;

/// Chains with their rules, sets and maps, and elements: one part of the ruleset.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// Base chains: (type, hook, priority).
    pub hooks: BTreeMap<String, (&'static str, Hook, i32)>,
    /// Every chain of the part, with its rules in order.
    pub chains: BTreeMap<String, Vec<Vec<Stmt>>>,
    pub sets: BTreeMap<String, Set>,
    /// (set or map, element)
    pub elems: BTreeSet<(String, Elem)>,
}

impl Bundle {
    /// Declares a chain (so it exists even without rules).
    pub fn chain(&mut self, name: &str) {
        self.chains.entry(name.to_string()).or_default();
    }

    pub fn rule(&mut self, chain: &str, stmts: Vec<Stmt>) {
        self.chains
            .entry(chain.to_string())
            .or_default()
            .push(stmts);
    }

    pub fn set(&mut self, set: Set) {
        self.sets.insert(set.name.clone(), set);
    }

    pub fn elem(&mut self, set: &str, elem: Elem) {
        self.elems.insert((set.to_string(), elem));
    }

    /// Adds another part's objects (names never overlap between parts).
    pub fn merge(&mut self, other: Bundle) {
        self.hooks.extend(other.hooks);
        for (name, rules) in other.chains {
            self.chains.entry(name).or_default().extend(rules);
        }
        self.sets.extend(other.sets);
        self.elems.extend(other.elems);
    }
}

/// Which endpoint set a packet is balanced over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `endpoints.cluster`.
    Cluster,
    /// `endpoints.local`.
    Local,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Cluster => "cluster",
            Self::Local => "local",
        }
    }
}

/// A nat behaviour many service keys share: everything the plan decides for a key except its
/// endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Shape {
    /// Cluster-IP traffic: the node's masquerade policy, then the given endpoints.
    Internal(Kind),
    /// NodePort, external-IP and load-balancer traffic ([`switchyard_core::plan::ExternalPlan`]).
    External {
        masquerade: bool,
        short_circuit: bool,
        /// `None`: traffic from outside is not translated (dropped or rejected in filter).
        to: Option<Kind>,
    },
}

impl Shape {
    pub fn name(self) -> String {
        match self {
            Self::Internal(k) => format!("int-{}", k.name()),
            Self::External {
                masquerade,
                short_circuit,
                to,
            } => {
                let mut s = String::from("ext");
                if masquerade {
                    s.push_str("-masq");
                }
                if short_circuit {
                    s.push_str("-sc");
                }
                if let Some(k) = to {
                    s.push_str("-to-");
                    s.push_str(k.name());
                }
                s
            }
        }
    }
}

/// A shared object a service port relies on; it exists while any service port needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Need {
    /// The shape's chain and key set, and its rule in the dispatch chain.
    Shape(KeySrc, Shape),
    /// Picking among this many endpoints of this kind (count search, pick chains, slot maps).
    Count(KeySrc, Kind, u32),
    /// The verdict-map dispatch to per-service chains.
    ChainDispatch(KeySrc),
}

/// Everything one service port contributes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ServiceObjects {
    /// Objects only this service port has: per-service chains and sets, and elements keyed by
    /// its own addresses (the plan gives every address:port/protocol one owner).
    pub own: Bundle,
    /// Elements of shared sets that several service ports may hold (a cluster IP with several
    /// ports, an endpoint address in several services): reference-counted.
    pub shared_elems: BTreeSet<(&'static str, Key)>,
    pub needs: BTreeSet<Need>,
    /// The slot order used (data path only); the next partial sync keeps it stable.
    pub slots: Slots,
}

fn goto(c: &str) -> Stmt {
    Stmt::Verdict(Verdict::Goto(c.to_string()))
}

fn jump(c: &str) -> Stmt {
    Stmt::Verdict(Verdict::Jump(c.to_string()))
}
