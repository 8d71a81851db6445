//! Full and partial transactions from a plan, and what the backend remembers between syncs.

use crate::names::{self, SetNames};
use crate::render;
use crate::rules::{Rule, Table};
use crate::sets::{self, dispatch_entries, SetContents, SetOp};
use crate::skeleton;
use crate::tx::{TableChanges, Transaction};
use std::collections::{BTreeMap, BTreeSet};
use switchyard_core::plan::{ProxyPlan, ServiceKey};
use switchyard_core::Changes;

/// Our chains that exist in the kernel, per table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Existing {
    pub nat: BTreeSet<String>,
    pub filter: BTreeSet<String>,
}

/// What the kernel holds once a transaction has succeeded (computed with it, so the caller
/// need not derive it again).
#[derive(Debug, Clone)]
pub struct After {
    pub existing: Existing,
    pub sets: SetContents,
}

/// What the last successful sync committed.
#[derive(Debug, Clone)]
pub struct Committed {
    pub plan: ProxyPlan,
    pub sets: SetContents,
    pub existing: Existing,
}

/// A full sync: every chain we own is declared (flushed) and rewritten, chains that exist but
/// are no longer wanted are deleted, and the sets are replaced whole.
pub fn full(
    plan: &ProxyPlan,
    sets: &SetNames,
    existing: &Existing,
    missing_jumps: &[(Table, Rule)],
) -> (Transaction, After) {
    let mut filter = TableChanges::new(Table::Filter);
    let mut nat = TableChanges::with_skeleton(Table::Nat, skeleton::nat_skeleton(plan, sets));
    render::filter_table(plan, sets, &mut filter);
    nat.rules.extend(render::any_local_node_port_rules(plan));
    for (leaf, entries) in render::leaves(plan) {
        nat.rules
            .extend(render::leaf_rules(plan.family, leaf, &entries));
    }
    let mut owners = BTreeMap::new();
    for (name, svc) in &plan.services {
        let (chains, rules) = render::service(plan, name, svc);
        owners.extend(chains.iter().map(|c| (c.clone(), name.to_string())));
        nat.declare.extend(chains);
        nat.rules.extend(rules);
    }
    add_jumps(&mut filter, &mut nat, missing_jumps);

    let now = Existing {
        nat: nat.declare.iter().cloned().collect(),
        filter: filter.declare.iter().cloned().collect(),
    };
    for (table, before, after) in [
        (&mut nat, &existing.nat, &now.nat),
        (&mut filter, &existing.filter, &now.filter),
    ] {
        let stale: Vec<String> = before.difference(after).cloned().collect();
        table.declare.extend(stale.iter().cloned());
        table.delete.extend(stale);
    }

    let contents = SetContents::for_plan(plan);
    let hairpin_set = &sets.hairpin;
    let tx = Transaction {
        family: plan.family,
        full: true,
        // Create the sets, and add every new entry before the rules that need them exist...
        // The hairpin set (an entry per endpoint: 100k at 10k services x 10 endpoints, the
        // largest by far) is instead swapped in whole here, once: an endpoint that is going
        // away loses its hairpin masquerade a moment before its DNAT rule goes, which only a
        // connection from that endpoint to itself, opened in that moment, can notice.
        sets_before: sets::create_all(sets, plan.family)
            .into_iter()
            .chain(
                sets::diff_ops(sets, &SetContents::default(), &contents)
                    .0
                    .into_iter()
                    .filter(|op| !matches!(op, SetOp::Add { name, .. } if name == hairpin_set)),
            )
            .chain(sets::replace_ops(sets, plan.family, &contents, true))
            .collect(),
        filter,
        nat,
        // ...then make them exact by swapping in freshly filled copies.
        sets_after: sets::replace_ops(sets, plan.family, &contents, false),
        service_ports: plan.services.len(),
        owners,
    };
    (
        tx,
        After {
            existing: now,
            sets: contents,
        },
    )
}

/// A partial sync: only the chains of touched service ports and the dispatch leaves holding
/// their addresses are rewritten; set entries are added and removed one by one.
pub fn partial(
    old: &Committed,
    plan: &ProxyPlan,
    changes: &Changes,
    sets: &SetNames,
    missing_jumps: &[(Table, Rule)],
) -> (Transaction, After) {
    let mut filter = TableChanges::new(Table::Filter);
    let mut nat = TableChanges::new(Table::Nat);
    let mut existing = old.existing.clone();
    let mut leaves = BTreeSet::new();
    // Keys on any local address live in linear chains (nat SWYD-NODEPORTS and filter
    // SWYD-NODEPORT-FILTER), rewritten whole when a touched service port has one.
    let mut touches_any_local = false;
    let mut owners = BTreeMap::new();

    for name in changes.touched() {
        let before = old.plan.services.get(name);
        let after = plan.services.get(name);
        let old_chains = before
            .map(|s| render::service(&old.plan, name, s).0)
            .unwrap_or_default();
        let (new_chains, rules) = after
            .map(|s| render::service(plan, name, s))
            .unwrap_or_default();
        for s in before.into_iter().chain(after) {
            leaves.extend(
                dispatch_entries(s)
                    .iter()
                    .filter_map(|(k, _)| sets::addr_key(k))
                    .map(|(ip, _, _)| render::leaf_of(&ip)),
            );
            touches_any_local |= s
                .paths()
                .flat_map(|path| &path.keys)
                .any(|k| matches!(k.key, ServiceKey::AnyLocal { .. }));
        }
        let stale: Vec<String> = old_chains.difference(&new_chains).cloned().collect();
        owners.extend(
            old_chains
                .iter()
                .chain(&new_chains)
                .map(|c| (c.clone(), name.to_string())),
        );
        nat.declare.extend(new_chains.iter().cloned());
        nat.declare.extend(stale.iter().cloned());
        nat.delete.extend(stale.iter().cloned());
        nat.rules.extend(rules);
        for c in stale {
            existing.nat.remove(&c);
        }
        existing.nat.extend(new_chains);
    }

    let all_leaves = render::leaves(plan);
    for leaf in leaves {
        nat.declare.push(names::tree_chain(leaf.0, Some(leaf.1)));
        if let Some(entries) = all_leaves.get(&leaf) {
            nat.rules
                .extend(render::leaf_rules(plan.family, leaf, entries));
        }
    }
    if touches_any_local {
        nat.declare.push(names::NODEPORTS.into());
        nat.rules.extend(render::any_local_node_port_rules(plan));
    }
    // The filter table is small and fixed but for those refusals and the service CIDRs: rewrite
    // it whole when either may have changed. (`diff` reports a CIDR change as node-level, which
    // makes the sync full; checking here too keeps a partial sync from ever leaving them stale.)
    if touches_any_local || old.plan.service_cidrs != plan.service_cidrs {
        render::filter_table(plan, sets, &mut filter);
    }
    add_jumps(&mut filter, &mut nat, missing_jumps);

    let contents = SetContents::for_plan(plan);
    let (adds, dels) = sets::diff_ops(sets, &old.sets, &contents);
    let tx = Transaction {
        family: plan.family,
        full: false,
        sets_before: adds,
        filter,
        nat,
        sets_after: dels,
        service_ports: changes.touched().count(),
        owners,
    };
    (
        tx,
        After {
            existing,
            sets: contents,
        },
    )
}

fn add_jumps(filter: &mut TableChanges, nat: &mut TableChanges, jumps: &[(Table, Rule)]) {
    for (table, rule) in jumps {
        match table {
            Table::Filter => filter.insert.push(rule.clone()),
            Table::Nat => nat.insert.push(rule.clone()),
        }
    }
}
