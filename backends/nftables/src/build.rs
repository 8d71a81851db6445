//! Full and partial transactions, and what the backend remembers between syncs.

use crate::names as n;
use crate::objects::{Elem, Key, Op};
use crate::render::{self, ServiceObjects};
use crate::tx::Transaction;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use switchyard_core::plan::ProxyPlan;
use switchyard_core::Changes;

/// What the last successful sync committed.
#[derive(Debug, Clone)]
pub struct Committed {
    pub plan: ProxyPlan,
    /// How many service ports use each cluster IP (the `cluster-ips` set holds each once).
    pub cluster_ips: BTreeMap<IpAddr, usize>,
}

impl Committed {
    /// Records a successful partial sync: only the touched service ports are copied.
    pub fn advance(
        &mut self,
        plan: &ProxyPlan,
        changes: &Changes,
        cluster_ips: BTreeMap<IpAddr, usize>,
    ) {
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
        self.cluster_ips = cluster_ips;
    }
}

/// Groups elements per map, in map order, as add or delete operations.
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

fn note_owner(owners: &mut BTreeMap<String, String>, o: &ServiceObjects, name: &str) {
    for c in &o.chains {
        owners.insert(c.clone(), name.to_string());
    }
    for s in &o.sets {
        owners.insert(s.name.clone(), name.to_string());
    }
}

/// A full sync: the table is replaced whole in one batch (`add`, `delete`, `add` table, then
/// everything), so there is never a moment without rules and nothing stale survives.
pub fn full(plan: &ProxyPlan) -> (Transaction, Committed) {
    let (chains, sets, rules) = render::skeleton(plan);
    let mut ops = vec![Op::AddTable, Op::DeleteTable, Op::AddTable];
    ops.extend(chains);
    let mut owners = BTreeMap::new();
    let objects: Vec<ServiceObjects> = plan
        .services
        .iter()
        .map(|(name, svc)| {
            let o = render::service(plan, name, svc);
            note_owner(&mut owners, &o, &name.to_string());
            o
        })
        .collect();
    for o in &objects {
        ops.extend(o.chains.iter().map(|c| {
            Op::AddChain(crate::objects::Chain {
                name: c.clone(),
                base: None,
            })
        }));
    }
    ops.extend(sets);
    for o in &objects {
        ops.extend(o.sets.iter().cloned().map(Op::AddSet));
    }
    ops.extend(rules);
    let mut elems = Vec::new();
    for o in objects {
        ops.extend(o.rules);
        elems.extend(o.elems);
    }
    let mut cluster_ips: BTreeMap<IpAddr, usize> = BTreeMap::new();
    for svc in plan.services.values() {
        *cluster_ips.entry(svc.cluster_ip).or_default() += 1;
    }
    elems.extend(cluster_ips.keys().map(|ip| {
        (
            n::CLUSTER_IPS.to_string(),
            Elem {
                key: Key::Addr(*ip),
                verdict: None,
            },
        )
    }));
    ops.extend(elem_ops(elems, true));
    let tx = Transaction {
        family: plan.family,
        full: true,
        ops,
        owners,
        service_ports: plan.services.len(),
    };
    let committed = Committed {
        plan: plan.clone(),
        cluster_ips,
    };
    (tx, committed)
}

/// A partial sync: only the touched service ports' chains, sets and elements change.
///
/// Returns the transaction and the cluster-IP counts after it; on success the caller records
/// the touched ports in its committed plan (`Committed::advance`), so a partial sync costs
/// O(changes), not O(services): the committed plan is never cloned whole.
pub fn partial(
    old: &Committed,
    plan: &ProxyPlan,
    changes: &Changes,
) -> (Transaction, BTreeMap<IpAddr, usize>) {
    let mut add_chains = Vec::new();
    let mut add_sets = Vec::new();
    let mut flush = Vec::new();
    let mut rules = Vec::new();
    let mut del_elems = Vec::new();
    let mut add_elems = Vec::new();
    let mut del_chains = Vec::new();
    let mut del_sets = Vec::new();
    let mut owners = BTreeMap::new();
    let mut cluster_ips = old.cluster_ips.clone();

    for name in changes.touched() {
        let label = name.to_string();
        let before = old
            .plan
            .services
            .get(name)
            .map(|s| render::service(&old.plan, name, s))
            .unwrap_or_default();
        let after = plan
            .services
            .get(name)
            .map(|s| render::service(plan, name, s))
            .unwrap_or_default();
        note_owner(&mut owners, &before, &label);
        note_owner(&mut owners, &after, &label);
        for c in after.chains.difference(&before.chains) {
            add_chains.push(Op::AddChain(crate::objects::Chain {
                name: c.clone(),
                base: None,
            }));
        }
        for c in &before.chains {
            flush.push(Op::FlushChain(c.clone()));
            if !after.chains.contains(c) {
                del_chains.push(Op::DeleteChain(c.clone()));
            }
        }
        let old_sets: BTreeSet<&String> = before.sets.iter().map(|s| &s.name).collect();
        let new_sets: BTreeSet<&String> = after.sets.iter().map(|s| &s.name).collect();
        add_sets.extend(
            after
                .sets
                .iter()
                .filter(|s| !old_sets.contains(&s.name))
                .cloned()
                .map(Op::AddSet),
        );
        del_sets.extend(
            old_sets
                .difference(&new_sets)
                .map(|s| Op::DeleteSet((*s).clone())),
        );
        del_elems.extend(before.elems.difference(&after.elems).cloned());
        add_elems.extend(after.elems.difference(&before.elems).cloned());
        rules.extend(after.rules);

        if let Some(s) = old.plan.services.get(name) {
            if let Some(count) = cluster_ips.get_mut(&s.cluster_ip) {
                *count -= 1;
                if *count == 0 {
                    cluster_ips.remove(&s.cluster_ip);
                    del_elems.push((
                        n::CLUSTER_IPS.into(),
                        Elem {
                            key: Key::Addr(s.cluster_ip),
                            verdict: None,
                        },
                    ));
                }
            }
        }
        if let Some(s) = plan.services.get(name) {
            let count = cluster_ips.entry(s.cluster_ip).or_default();
            *count += 1;
            if *count == 1 {
                add_elems.push((
                    n::CLUSTER_IPS.into(),
                    Elem {
                        key: Key::Addr(s.cluster_ip),
                        verdict: None,
                    },
                ));
            }
        }
    }
    // A cluster IP removed and re-added in the same sync is neither.
    let readded: BTreeSet<(String, Elem)> = del_elems
        .iter()
        .filter(|e| add_elems.contains(e))
        .cloned()
        .collect();
    del_elems.retain(|e| !readded.contains(e));
    add_elems.retain(|e| !readded.contains(e));

    let mut ops = add_chains;
    ops.extend(add_sets);
    ops.extend(flush);
    ops.extend(rules);
    ops.extend(elem_ops(del_elems, false));
    ops.extend(elem_ops(add_elems, true));
    ops.extend(del_chains);
    ops.extend(del_sets);
    let tx = Transaction {
        family: plan.family,
        full: false,
        ops,
        owners,
        service_ports: changes.touched().count(),
    };
    (tx, cluster_ips)
}
