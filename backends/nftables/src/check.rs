//! Noticing that someone else changed our table (`Dataplane::check`).
//!
//! Two stages, so the periodic check costs one netlink round trip when nothing happened:
//! 1. The ruleset generation. The kernel bumps it at every committed batch in the network
//!    namespace. The backend records it right after its own commit (only when no other batch
//!    slipped in around ours); unchanged means nobody touched anything.
//! 2. When it moved (another agent may have changed only its own tables), our table's chains,
//!    rules per chain, sets and elements per set are listed and compared with what a full
//!    sync of the committed plan creates. Counting catches every deletion (our table, a chain,
//!    a jump or any rule, a set, an element) and additions to our objects; it does not see a
//!    rule replaced by a different one of the same count, which nobody does by accident.

use crate::netlink::dump::TableObjects;
use crate::objects::Op;
use crate::tx::Transaction;
use std::collections::{BTreeMap, BTreeSet};

/// What a full sync of a plan creates, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    pub objects: TableObjects,
    /// Elements per set, for sets whose contents are ours alone (not affinity sets, which
    /// the kernel fills at run time).
    pub elems: BTreeMap<String, usize>,
}

impl Expected {
    /// Reads the creations of a full sync's transaction.
    pub fn of(tx: &Transaction) -> Self {
        let mut e = Expected::default();
        let mut learned: BTreeSet<&str> = BTreeSet::new();
        for op in &tx.ops {
            match op {
                Op::AddChain(c) => {
                    e.objects.chains.insert(c.name.clone());
                }
                Op::AddRule(r) => *e.objects.rules.entry(r.chain.clone()).or_default() += 1,
                Op::AddSet(s) => {
                    e.objects.sets.insert(s.name.clone());
                    if s.timeout_seconds.is_some() {
                        learned.insert(&s.name);
                    } else {
                        e.elems.entry(s.name.clone()).or_default();
                    }
                }
                Op::AddElems { set, elems } if !learned.contains(set.as_str()) => {
                    *e.elems.entry(set.clone()).or_default() += elems.len();
                }
                _ => {}
            }
        }
        e
    }

    /// Differences between these objects and what the kernel listed of table `table`, one
    /// finding per object.
    pub fn compare_objects(&self, family: &str, table: &str, found: &TableObjects) -> Vec<String> {
        let mut out = Vec::new();
        if found == &TableObjects::default() {
            out.push(format!("table {family} {table}: missing"));
            return out;
        }
        for c in self.objects.chains.difference(&found.chains) {
            out.push(format!("chain {c}: missing"));
        }
        for c in found.chains.difference(&self.objects.chains) {
            out.push(format!("chain {c}: not ours to have"));
        }
        for c in self.objects.chains.intersection(&found.chains) {
            let want = self.objects.rules.get(c).copied().unwrap_or(0);
            let have = found.rules.get(c).copied().unwrap_or(0);
            if want != have {
                out.push(format!("chain {c}: {have} rules, expected {want}"));
            }
        }
        for s in self.objects.sets.difference(&found.sets) {
            out.push(format!("set {s}: missing"));
        }
        for s in found.sets.difference(&self.objects.sets) {
            out.push(format!("set {s}: not ours to have"));
        }
        out
    }

    /// A finding for set `set` holding `have` elements, if that is not what it should hold.
    pub fn compare_elems(&self, set: &str, have: usize) -> Option<String> {
        let want = *self.elems.get(set)?;
        (want != have).then(|| format!("set {set}: {have} elements, expected {want}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build;
    use crate::render::Features;
    use switchyard_core::{plan, ClusterState, IpFamily, ProxyConfig};

    #[test]
    fn a_missing_rule_chain_set_or_table_is_named() {
        let plan = plan(
            &ClusterState::default(),
            &ProxyConfig::new(IpFamily::V4, "node-a"),
        );
        let expected = Expected::of(&build::full(&plan, Features::default(), None).0);
        assert!(
            !expected.objects.chains.is_empty(),
            "the skeleton has chains"
        );
        let intact = expected.objects.clone();
        assert!(expected
            .compare_objects("ip", "switchyard", &intact)
            .is_empty());

        let mut tampered = intact.clone();
        let chain = tampered.chains.iter().next().cloned().expect("a chain");
        tampered.chains.remove(&chain);
        let found = expected.compare_objects("ip", "switchyard", &tampered);
        assert_eq!(found, vec![format!("chain {chain}: missing")]);

        let mut tampered = intact.clone();
        let (chain, n) = tampered
            .rules
            .iter_mut()
            .next()
            .map(|(c, n)| (c.clone(), n))
            .expect("a rule");
        *n -= 1;
        let want = *n + 1;
        let found = expected.compare_objects("ip", "switchyard", &tampered);
        assert_eq!(
            found,
            vec![format!(
                "chain {chain}: {} rules, expected {want}",
                want - 1
            )]
        );

        let found = expected.compare_objects("ip", "switchyard", &TableObjects::default());
        assert_eq!(found, vec!["table ip switchyard: missing".to_string()]);
    }
}
