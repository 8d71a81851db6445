//! The nat table's fixed part: entry chains, the dispatch tree's inner levels (16 + 256
//! chains, ~550 restore lines a family) and the masquerade rules. It depends only on the
//! family, whether NodePorts listen on every local address, and the set names, so it is built
//! and rendered once per process for each of those and shared by every full sync: before,
//! every full sync built and printed it again, which was most of a small cluster's sync (and
//! of the `iptables_render` fuzz target's runs, DESIGN-NOTES 230, 236).

use crate::names::{self, SetNames};
use crate::render::any_local_keys;
use crate::rules::{Match, Rule, Table, Target};
use crate::tx::TableChanges;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use switchyard_core::plan::{IpFamily, ProxyPlan};

/// The skeleton's chains and rules, with their restore lines.
#[derive(Debug, PartialEq, Eq)]
pub struct NatSkeleton {
    /// The set names it was built with (the cache serves only these).
    sets: SetNames,
    /// Chains, in declaration order.
    pub declare: Vec<String>,
    /// Rules, in order; none jumps into a service port's chains, so `restore_order` keeps
    /// them all, in this order, among the fixed chains' rules.
    pub rules: Vec<Rule>,
    /// `declare` as restore lines (`:CHAIN - [0:0]`), exactly as `Transaction::restore_text`
    /// prints a declaration.
    pub declare_text: String,
    /// `rules` as restore lines, exactly as `Transaction::restore_text` prints an append.
    pub rules_text: String,
}

/// Built skeletons: [family][NodePorts on every local address].
static CACHE: [[OnceLock<Arc<NatSkeleton>>; 2]; 2] = [
    [OnceLock::new(), OnceLock::new()],
    [OnceLock::new(), OnceLock::new()],
];

/// The skeleton for `plan`'s family and NodePort addresses, with the sets `sets`: the shared
/// one when the names are the family's own (always, outside tests), else built for the call.
pub fn nat_skeleton(plan: &ProxyPlan, sets: &SetNames) -> Arc<NatSkeleton> {
    let any_local = any_local_keys(plan);
    let slot = &CACHE[usize::from(plan.family == IpFamily::V6)][usize::from(any_local)];
    let cached = slot.get_or_init(|| {
        Arc::new(NatSkeleton::new(
            plan.family,
            any_local,
            SetNames::new(plan.family),
        ))
    });
    if cached.sets == *sets {
        Arc::clone(cached)
    } else {
        Arc::new(NatSkeleton::new(plan.family, any_local, sets.clone()))
    }
}

impl NatSkeleton {
    fn new(family: IpFamily, any_local: bool, sets: SetNames) -> Self {
        let nat = build(family, any_local, &sets);
        let mut declare_text = String::new();
        for c in &nat.declare {
            let _ = writeln!(declare_text, ":{c} - [0:0]");
        }
        let mut rules_text = String::new();
        for r in &nat.rules {
            let _ = writeln!(rules_text, "{r}");
        }
        Self {
            sets,
            declare: nat.declare,
            rules: nat.rules,
            declare_text,
            rules_text,
        }
    }
}

/// Builds the skeleton's chains and rules (what `NatSkeleton` caches).
fn build(f: IpFamily, any_local: bool, sets: &SetNames) -> TableChanges {
    let mut nat = TableChanges::new(Table::Nat);
    nat.declare.extend([
        names::SERVICES.to_string(),
        names::POSTROUTING.to_string(),
        names::MARK_MASQ.to_string(),
        names::TREE_ROOT.to_string(),
    ]);
    nat.rules.push(
        Rule::new(names::SERVICES, Target::Jump(names::TREE_ROOT.into()))
            .m(Match::Set {
                name: sets.vips.clone(),
                with_port: true,
            })
            .comment("service addresses"),
    );
    if any_local {
        nat.declare.push(names::NODEPORTS.into());
        nat.rules.push(
            Rule::new(names::SERVICES, Target::Jump(names::NODEPORTS.into()))
                .m(Match::AddrTypeLocal { source: false })
                .comment("node ports on every local address"),
        );
    }
    for l1 in 0..16u8 {
        let child = names::tree_chain(l1, None);
        nat.declare.push(child.clone());
        nat.rules
            .push(
                Rule::new(names::TREE_ROOT, Target::Jump(child.clone())).m(Match::Destination {
                    addr: last_byte(f, l1),
                    mask: last_byte(f, 0x0f),
                }),
            );
        for l2 in 0..16u8 {
            let leaf = names::tree_chain(l1, Some(l2));
            nat.declare.push(leaf.clone());
            nat.rules.push(
                Rule::new(child.clone(), Target::Jump(leaf)).m(Match::Destination {
                    addr: last_byte(f, l2 << 4),
                    mask: last_byte(f, 0xf0),
                }),
            );
        }
    }
    // Hairpin: a connection we DNATed to the endpoint it came from is masqueraded, or the
    // endpoint would answer itself directly. One set lookup instead of a rule per endpoint.
    nat.rules.push(
        Rule::new(names::POSTROUTING, Target::OrMark(names::MASQ_MARK))
            .m(Match::CtState("DNAT"))
            .m(Match::SetHairpin {
                name: sets.hairpin.clone(),
            })
            .comment("hairpin"),
    );
    nat.rules.push(
        Rule::new(names::POSTROUTING, Target::Return).m(Match::Mark {
            value: names::MASQ_MARK,
            mask: names::MASQ_MARK,
            negate: true,
        }),
    );
    // Clear the bit so a packet re-entering (e.g. through a tunnel) is not masqueraded twice.
    nat.rules.push(Rule::new(
        names::POSTROUTING,
        Target::XorMark(names::MASQ_MARK),
    ));
    nat.rules
        .push(Rule::new(names::POSTROUTING, Target::Masquerade));
    nat.rules.push(Rule::new(
        names::MARK_MASQ,
        Target::OrMark(names::MASQ_MARK),
    ));
    nat
}

/// An address whose last byte is `byte` and all else zero, for bucket masks.
fn last_byte(family: IpFamily, byte: u8) -> IpAddr {
    match family {
        IpFamily::V4 => IpAddr::from([0, 0, 0, byte]),
        IpFamily::V6 => {
            let mut a = [0u8; 16];
            a[15] = byte;
            IpAddr::from(a)
        }
    }
}
