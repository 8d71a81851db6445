//! Full and partial transactions, and what the backend remembers between syncs.
//!
//! Both are computed from [`Bundle`]s: a full sync creates one bundle (skeleton, shared
//! structure, every service port); a partial sync compares the touched service ports' bundles,
//! and the shared structure, before and after, and emits only the difference.

use crate::objects::{Chain, Elem, Key, Op, Rule, IPVS_TABLE, TABLE};
use crate::render::{self, Bundle, Features, Marks, Need, ServiceObjects, Slots};
use crate::stmt::Stmt;
use crate::tx::Transaction;
use std::collections::{BTreeMap, BTreeSet};
use switchyard_core::plan::{ProxyPlan, ServicePortName};
use switchyard_core::Changes;

/// A shared element: (set, key).
type SharedElem = (&'static str, Key);

/// What the last successful sync committed.
#[derive(Debug, Clone)]
pub struct Committed {
    pub plan: ProxyPlan,
    /// How many service ports hold each shared element (cluster IPs, hairpin pairs).
    refs: BTreeMap<SharedElem, usize>,
    /// How many service ports need each shared object.
    needs: BTreeMap<Need, usize>,
    /// The slot order in the kernel of each data-path service port.
    slots: BTreeMap<ServicePortName, Slots>,
}

/// How a partial sync changes the committed state besides the plan.
#[derive(Debug, Default)]
pub struct Delta {
    refs: BTreeMap<SharedElem, isize>,
    needs: BTreeMap<Need, isize>,
    slots: BTreeMap<ServicePortName, Slots>,
}

fn apply_counts<K: Ord + Clone>(counts: &mut BTreeMap<K, usize>, delta: &BTreeMap<K, isize>) {
    for k in delta.keys() {
        let now = count_after(counts, delta, k);
        if now == 0 {
            counts.remove(k);
        } else {
            counts.insert(k.clone(), now);
        }
    }
}

fn count_after<K: Ord>(counts: &BTreeMap<K, usize>, delta: &BTreeMap<K, isize>, k: &K) -> usize {
    let d = delta.get(k).copied().unwrap_or(0);
    counts.get(k).copied().unwrap_or(0).saturating_add_signed(d)
}

impl Committed {
    /// Records a successful partial sync: only the touched service ports are copied, so a
    /// partial sync costs O(changes), not O(services).
    pub fn advance(&mut self, plan: &ProxyPlan, changes: &Changes, delta: Delta) {
        for name in changes.touched() {
            match plan.services.get(name) {
                Some(svc) => {
                    self.plan.services.insert(name.clone(), svc.clone());
                }
                None => {
                    self.plan.services.remove(name);
                }
            }
        }
        apply_counts(&mut self.refs, &delta.refs);
        apply_counts(&mut self.needs, &delta.needs);
        for (name, slots) in delta.slots {
            if slots.is_empty() {
                self.slots.remove(&name);
            } else {
                self.slots.insert(name, slots);
            }
        }
    }
}

/// Who owns what, to name the service port in kernel errors.
#[derive(Debug, Default)]
struct Owners {
    objects: BTreeMap<String, String>,
    keys: BTreeMap<Key, String>,
}

impl Owners {
    fn note(&mut self, o: &ServiceObjects, name: &ServicePortName) {
        let label = name.to_string();
        for c in o.own.chains.keys().chain(o.own.sets.keys()) {
            self.objects.insert(c.clone(), label.clone());
        }
        for (_, e) in &o.own.elems {
            self.keys.insert(e.key, label.clone());
        }
    }
}

/// Operations that create a bundle in a table that lacks it, in an order that never references
/// a missing object: chains, sets, rules, elements.
fn creation_ops(b: Bundle, ops: &mut Vec<Op>) {
    for name in b.chains.keys() {
        ops.push(Op::AddChain(Chain {
            name: name.clone(),
            base: b.hooks.get(name).copied(),
        }));
    }
    ops.extend(b.sets.into_values().map(Op::AddSet));
    for (chain, rules) in b.chains {
        push_rules(&chain, rules, ops);
    }
    ops.extend(elem_ops(b.elems, true));
}

fn push_rules(chain: &str, rules: Vec<Vec<Stmt>>, ops: &mut Vec<Op>) {
    ops.extend(rules.into_iter().map(|stmts| {
        Op::AddRule(Rule {
            chain: chain.to_string(),
            stmts,
        })
    }));
}

/// Groups elements per set, in set order, as add or delete operations.
fn elem_ops(elems: impl IntoIterator<Item = (String, Elem)>, add: bool) -> Vec<Op> {
    let mut by_set: BTreeMap<String, Vec<Elem>> = BTreeMap::new();
    for (set, e) in elems {
        by_set.entry(set).or_default().push(e);
    }
    by_set
        .into_iter()
        .map(|(set, elems)| {
            if add {
                Op::AddElems { set, elems }
            } else {
                Op::DeleteElems { set, elems }
            }
        })
        .collect()
}

/// The operations that turn `before` into `after`, in an order that never references a
/// missing object: new chains and sets, rewritten chains, elements (deleted before added, so
/// a changed value is a delete and an add of its key), then what is gone.
fn diff_ops(before: Bundle, after: Bundle) -> Vec<Op> {
    let mut ops = Vec::new();
    for name in after
        .chains
        .keys()
        .filter(|c| !before.chains.contains_key(*c))
    {
        ops.push(Op::AddChain(Chain {
            name: name.clone(),
            base: None,
        }));
    }
    for (name, set) in &after.sets {
        if !before.sets.contains_key(name) {
            ops.push(Op::AddSet(set.clone()));
        }
    }
    for (name, rules) in &before.chains {
        if after.chains.get(name) != Some(rules) && !rules.is_empty() {
            ops.push(Op::FlushChain(name.clone()));
        }
    }
    for (name, rules) in &after.chains {
        if before.chains.get(name) != Some(rules) {
            push_rules(name, rules.clone(), &mut ops);
        }
    }
    let gone: Vec<(String, Elem)> = before.elems.difference(&after.elems).cloned().collect();
    let new: Vec<(String, Elem)> = after.elems.difference(&before.elems).cloned().collect();
    ops.extend(elem_ops(gone, false));
    ops.extend(elem_ops(new, true));
    for name in before
        .chains
        .keys()
        .filter(|c| !after.chains.contains_key(*c))
    {
        ops.push(Op::DeleteChain(name.clone()));
    }
    for name in before.sets.keys().filter(|s| !after.sets.contains_key(*s)) {
        ops.push(Op::DeleteSet(name.clone()));
    }
    ops
}

/// A full sync: the table is replaced whole in one batch (`add`, `delete`, `add` table, then
/// everything), so there is never a moment without rules and nothing stale survives.
/// `marks`: IPVS mode's helper rules in its own table (see `render::ipvs`).
pub fn full(
    plan: &ProxyPlan,
    features: Features,
    marks: Option<&Marks>,
) -> (Transaction, Committed) {
    let mut all = render::skeleton(plan, marks.is_some());
    let mut owners = Owners::default();
    let mut refs: BTreeMap<SharedElem, usize> = BTreeMap::new();
    let mut needs: BTreeMap<Need, usize> = BTreeMap::new();
    let mut slots = BTreeMap::new();
    for (name, svc) in &plan.services {
        let mut o = render::service(plan, name, svc, None, features, marks);
        owners.note(&o, name);
        if !o.slots.is_empty() {
            slots.insert(name.clone(), std::mem::take(&mut o.slots));
        }
        for e in o.shared_elems {
            *refs.entry(e).or_default() += 1;
        }
        for n in o.needs {
            *needs.entry(n).or_default() += 1;
        }
        all.merge(o.own);
    }
    all.merge(render::structure(plan, needs.keys(), features));
    for (set, key) in refs.keys() {
        all.elem(set, Elem::key(*key));
    }
    let mut ops = vec![Op::AddTable, Op::DeleteTable, Op::AddTable];
    creation_ops(all, &mut ops);
    let tx = Transaction {
        family: plan.family,
        table: table_of(marks),
        full: true,
        ops,
        owners: owners.objects,
        key_owners: owners.keys,
        service_ports: plan.services.len(),
    };
    let committed = Committed {
        plan: plan.clone(),
        refs,
        needs,
        slots,
    };
    (tx, committed)
}

/// A partial sync: only the touched service ports' objects, and the shared objects whose
/// need appeared or vanished, change.
///
/// Returns the transaction and how the reference counts change; on success the caller
/// records both (`Committed::advance`).
pub fn partial(
    old: &Committed,
    plan: &ProxyPlan,
    changes: &Changes,
    features: Features,
    marks: Option<&Marks>,
) -> (Transaction, Delta) {
    let mut before = Bundle::default();
    let mut after = Bundle::default();
    let mut owners = Owners::default();
    let mut delta = Delta::default();
    for name in changes.touched() {
        let kept = old.slots.get(name);
        let render_in = |p: &ProxyPlan| {
            p.services
                .get(name)
                .map(|s| render::service(p, name, s, kept, features, marks))
                .unwrap_or_default()
        };
        let (b, mut a) = (render_in(&old.plan), render_in(plan));
        delta
            .slots
            .insert(name.clone(), std::mem::take(&mut a.slots));
        owners.note(&b, name);
        owners.note(&a, name);
        for e in b.shared_elems {
            *delta.refs.entry(e).or_default() -= 1;
        }
        for e in a.shared_elems {
            *delta.refs.entry(e).or_default() += 1;
        }
        for n in b.needs {
            *delta.needs.entry(n).or_default() -= 1;
        }
        for n in a.needs {
            *delta.needs.entry(n).or_default() += 1;
        }
        before.merge(b.own);
        after.merge(a.own);
    }
    for (e, _) in delta.refs.iter().filter(|(_, d)| **d != 0) {
        let was = old.refs.get(e).copied().unwrap_or(0);
        let now = count_after(&old.refs, &delta.refs, e);
        let (set, key) = *e;
        if was == 0 && now > 0 {
            after.elem(set, Elem::key(key));
        } else if was > 0 && now == 0 {
            before.elem(set, Elem::key(key));
        }
    }
    let needs_after: BTreeSet<Need> = old
        .needs
        .keys()
        .chain(delta.needs.keys())
        .filter(|n| count_after(&old.needs, &delta.needs, n) > 0)
        .cloned()
        .collect();
    if old.needs.keys().ne(needs_after.iter()) {
        before.merge(render::structure(&old.plan, old.needs.keys(), features));
        after.merge(render::structure(plan, &needs_after, features));
    }
    let ops = diff_ops(before, after);
    let tx = Transaction {
        family: plan.family,
        table: table_of(marks),
        full: false,
        ops,
        owners: owners.objects,
        key_owners: owners.keys,
        service_ports: changes.touched().count(),
    };
    (tx, delta)
}

/// nftables mode's table, or IPVS mode's when rendering its helper rules.
pub fn table_of(marks: Option<&Marks>) -> &'static str {
    if marks.is_some() {
        IPVS_TABLE
    } else {
        TABLE
    }
}
