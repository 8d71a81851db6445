//! Firewall marks of the IPVS virtual services: one per (service port, endpoint set), kept
//! stable across syncs, so an unchanged service port's rules and virtual services never move.
//! A new endpoint set starts at a hash of its name, so a restarted agent picks the same marks
//! for the same Services and adopts the virtual services it finds instead of replacing them.

use std::collections::BTreeSet;
use switchyard_core::plan::{PathPlan, ProxyPlan, ServicePortName, Target};
use switchyard_nftables::Marks;

/// Marks use bits 15..32 (`switchyard_nftables::FWMARK_BITS`); bit 14 is the masquerade bit.
const SHIFT: u32 = 15;
const IDS: u32 = 1 << (32 - SHIFT);

/// Whether a virtual service with this mark is one of ours.
pub fn is_ours(fwmark: u32) -> bool {
    fwmark & switchyard_nftables::FWMARK_BITS != 0
}

fn preferred_id(name: &ServicePortName, t: Target) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in format!("{name}|{t:?}").bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % (IDS - 1)) + 1
}

/// The endpoint sets a service port's paths send to through IPVS (none with session
/// affinity: the helper rules balance those, see `switchyard_nftables::render::ipvs`).
fn targets(plan: &ProxyPlan, name: &ServicePortName) -> Vec<Target> {
    let mut t: Vec<Target> = plan
        .services
        .get(name)
        .filter(|svc| svc.affinity_timeout_seconds.is_none())
        .map(|svc| svc.paths().flat_map(PathPlan::endpoint_targets).collect())
        .unwrap_or_default();
    t.sort();
    t.dedup();
    t
}

#[derive(Debug, Default, Clone)]
pub struct Allocator {
    marks: Marks,
    used: BTreeSet<u32>,
}

impl Allocator {
    /// The marks of the service ports `names` in `plan`: those allocated, plus new ones for
    /// endpoint sets that appeared; entries of sets that disappeared are kept, so the old
    /// plan still renders with its marks. Pure: the allocator changes in [`Self::commit`].
    pub fn marks<'a>(
        &self,
        plan: &ProxyPlan,
        names: impl IntoIterator<Item = &'a ServicePortName>,
    ) -> Marks {
        let mut out = Marks::new();
        let mut taken: BTreeSet<u32> = BTreeSet::new();
        for name in names {
            out.extend(self.of(name));
            for t in targets(plan, name) {
                if out.contains_key(&(name.clone(), t)) {
                    continue;
                }
                let mut id = preferred_id(name, t);
                let mut tries = 0;
                while self.used.contains(&(id << SHIFT)) || taken.contains(&(id << SHIFT)) {
                    id = id % (IDS - 1) + 1;
                    tries += 1;
                    if tries >= IDS {
                        tracing::warn!(service = %name, "no firewall mark left for this service port");
                        break;
                    }
                }
                if tries < IDS {
                    taken.insert(id << SHIFT);
                    out.insert((name.clone(), t), id << SHIFT);
                }
            }
        }
        out
    }

    fn of(&self, name: &ServicePortName) -> Vec<((ServicePortName, Target), u32)> {
        self.marks
            .range((name.clone(), Target::Cluster)..=(name.clone(), Target::Drop))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Records the marks now in use for `names` (of `plan`, after a successful sync).
    pub fn commit<'a>(
        &mut self,
        plan: &ProxyPlan,
        names: impl IntoIterator<Item = &'a ServicePortName>,
        marks: &Marks,
    ) {
        for name in names {
            for (k, m) in self.of(name) {
                self.marks.remove(&k);
                self.used.remove(&m);
            }
            for t in targets(plan, name) {
                if let Some(&m) = marks.get(&(name.clone(), t)) {
                    self.marks.insert((name.clone(), t), m);
                    self.used.insert(m);
                }
            }
        }
    }

    /// Forgets everything (full sync, cleanup).
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ServicePortName {
        ServicePortName {
            service: switchyard_core::model::ObjectRef {
                namespace: "ns".into(),
                name: s.into(),
            },
            port: String::new(),
            protocol: switchyard_core::Protocol::Tcp,
        }
    }

    #[test]
    fn marks_are_ours_distinct_and_leave_the_masquerade_bit_free() {
        let a = Allocator::default();
        let mut seen = BTreeSet::new();
        for i in 0..2000 {
            let n = name(&format!("s{i}"));
            let id = preferred_id(&n, Target::Cluster);
            let m = id << SHIFT;
            assert!(is_ours(m));
            assert_eq!(m & 0x4000, 0);
            seen.insert(m);
        }
        assert!(seen.len() > 1900, "hash spreads: {}", seen.len());
        assert!(a.marks.is_empty());
    }
}
