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
pub mod ipvs;
mod service;
mod shared;
mod skeleton;
mod slots;

pub use ipvs::Marks;
pub use service::service;
pub use shared::structure;
pub use skeleton::skeleton;

use crate::expr::Verdict;
use crate::names as n;
use crate::objects::{Elem, Hook, Key, Set};
use crate::stmt::{KeySrc, Stmt};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use switchyard_core::plan::{LocalDetector, PathRule, ProxyPlan, ServiceKey, SourceClass, Target};

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

/// A nat behaviour many service keys share: the plan's rules of a path (source class →
/// target, masquerade), everything decided for a key except its endpoints. Paths with the
/// same rules share one chain, whichever kind of address they serve.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Shape(pub Vec<PathRule>);

impl Shape {
    /// The chain's name, read off its rules: `pod-cluster.masq-cluster` is "pods to the
    /// cluster endpoints, everything else masqueraded to them".
    pub fn name(&self) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|r| {
                let from = match r.from {
                    SourceClass::Pod => "pod-",
                    SourceClass::Host => "host-",
                    SourceClass::Any => "",
                };
                let masq = if r.masquerade { "masq-" } else { "" };
                let to = match r.target {
                    Target::Cluster => "cluster",
                    Target::Local => "local",
                    Target::Reject => "reject",
                    Target::Drop => "drop",
                };
                format!("{from}{masq}{to}")
            })
            .collect();
        parts.join(".")
    }
}

/// Kernel constructs that not every supported kernel accepts; [`crate::NftablesDataplane`]
/// learns them at `probe()` by trying them in a throwaway table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// A `lookup` of a map's key without reading its value (`<key> @map` as a set test).
    /// Kernels before 6.? (e.g. Debian 12's 6.1) reject it with EINVAL; then the count search
    /// uses plain slot sets (`<kind>-slot-<i>`) kept beside the slot maps.
    pub map_lookup_as_set: bool,
}

impl Default for Features {
    /// The newest kernels' shape (what `--dry-run` prints without probing).
    fn default() -> Self {
        Self {
            map_lookup_as_set: true,
        }
    }
}

/// Writes the rules of a path into a nat chain, in the plan's order: traffic of each rule's
/// source class is marked for masquerade if the rule says so, then sent to `to(target)`.
/// Untranslated targets (reject, drop) leave nat, so the filter chains refuse the packet.
pub fn path_rules(
    b: &mut Bundle,
    plan: &ProxyPlan,
    chain: &str,
    rules: &[PathRule],
    to: impl Fn(Target) -> Option<String>,
) {
    b.chain(chain);
    for (i, rule) in rules.iter().enumerate() {
        let matches: Vec<Vec<Stmt>> = match rule.from {
            SourceClass::Pod => pod_matches(&plan.pod_sources),
            SourceClass::Host => vec![vec![Stmt::FibSaddrLocal]],
            SourceClass::Any => vec![vec![]],
        };
        let last = i + 1 == rules.len();
        for m in matches {
            if rule.masquerade {
                b.rule(chain, [m.clone(), vec![jump(n::MARK_MASQ)]].concat());
            }
            match to(rule.target) {
                Some(dest) => b.rule(chain, [m, vec![goto(&dest)]].concat()),
                None if !last => b.rule(chain, [m, vec![Stmt::Verdict(Verdict::Return)]].concat()),
                None => {}
            }
        }
    }
}

/// The alternatives that recognise a pod, one rule each (no alternative: nothing is a pod).
fn pod_matches(pods: &LocalDetector) -> Vec<Vec<Stmt>> {
    match pods {
        LocalDetector::Cidrs(cidrs) => cidrs
            .iter()
            .map(|net| {
                vec![Stmt::Saddr {
                    net: *net,
                    negate: false,
                }]
            })
            .collect(),
        LocalDetector::InputInterface(name) => vec![vec![Stmt::Iifname {
            name: name.clone(),
            prefix: false,
            negate: false,
        }]],
        LocalDetector::InterfacePrefix(prefix) => vec![vec![Stmt::Iifname {
            name: prefix.clone(),
            prefix: true,
            negate: false,
        }]],
    }
}

/// The endpoint kind a target balances over (`None`: not translated).
pub fn kind_of(t: Target) -> Option<Kind> {
    match t {
        Target::Cluster => Some(Kind::Cluster),
        Target::Local => Some(Kind::Local),
        Target::Reject | Target::Drop => None,
    }
}

/// A plan key as this backend matches it.
pub fn key_of(k: &ServiceKey) -> (KeySrc, Key) {
    match *k {
        ServiceKey::Addr { ip, protocol, port } => {
            (KeySrc::Vip, Key::AddrProtoPort(ip, protocol, port))
        }
        ServiceKey::AnyLocal { protocol, port } => (KeySrc::Port, Key::ProtoPort(protocol, port)),
    }
}

/// A shared object a service port relies on; it exists while any service port needs it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Need {
    /// The shape's chain and key set, and its rule in the dispatch chain.
    Shape(KeySrc, Shape),
    /// Picking among this many endpoints of this kind (count search, pick chains, slot maps).
    Count(KeySrc, Kind, u32),
    /// The verdict-map dispatch to per-service chains.
    ChainDispatch(KeySrc),
    /// IPVS mode: the shape's chain and key set, sending to the marking chains.
    IpvsShape(KeySrc, Shape),
    /// IPVS mode: the marking chain of an endpoint kind and its mark maps.
    IpvsMark(KeySrc, Kind),
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
