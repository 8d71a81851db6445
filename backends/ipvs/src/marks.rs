//! Firewall marks of the IPVS virtual services: one per (service port, endpoint set), kept
//! stable across syncs, so an unchanged service port's rules and virtual services never move.
//! A new endpoint set starts at a hash of its name, so a restarted agent picks the same marks
//! for the same Services and adopts the virtual services it finds instead of replacing them.
//! A hash collides now and then (about 15 marks at 10k services), and which endpoint set wins
//! the probe depends on the names in the plan, so a restarted agent whose plan changed while
//! it was down could give one service port the mark another held; the marks the kernel's
//! helper table already uses are therefore seeded first ([`Allocator::seed`], DESIGN-NOTES
//! 268).

use std::collections::BTreeSet;
use switchyard_core::plan::{PathPlan, ProxyPlan, ServicePortName, Target};
use switchyard_nftables::Marks;

/// Marks carry their identity in bits 15..32 (`switchyard_nftables::FWMARK_BITS`); bit 14 is
/// the masquerade bit.
const SHIFT: u32 = 15;
const IDS: u32 = 1 << (32 - SHIFT);
/// The low byte repeats the identity's low byte. The kernel finds a firewall-mark virtual
/// service by hashing only the mark's low 8 bits (`ip_vs_svc_fwm_hashkey`: `(ipvs >> 8 ^
/// fwmark) & 255`, a 256-bucket table); with those bits always zero every one of our virtual
/// services shared one bucket, so each IPVS command and each new connection walked all of
/// them (one endpoint changed: 0.45 ms at 1k services, 4-6 ms at 10k, DESIGN-NOTES 280).
const SPREAD: u32 = 0xff;

/// The firewall mark of identity `id` (1..IDS).
fn mark_of(id: u32) -> u32 {
    (id << SHIFT) | (id & SPREAD)
}

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
        .filter(|svc| switchyard_nftables::steers_by_mark(svc))
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
    /// Marks the kernel's helper table gives endpoint sets this allocator has not allocated
    /// (after a restart): preferred over the hash.
    seeded: Marks,
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
        let mut wanted = Vec::new();
        for name in names {
            out.extend(self.of(name));
            for t in targets(plan, name) {
                if !out.contains_key(&(name.clone(), t)) {
                    wanted.push((name.clone(), t));
                }
            }
        }
        // Seeded marks first, so no hash probe of an earlier name takes one of them.
        let free = |m: u32, taken: &BTreeSet<u32>| !self.used.contains(&m) && !taken.contains(&m);
        wanted.retain(|key| match self.seeded.get(key) {
            Some(&m) if free(m, &taken) => {
                taken.insert(m);
                out.insert(key.clone(), m);
                false
            }
            _ => true,
        });
        let seeded: BTreeSet<u32> = self.seeded.values().copied().collect();
        for (name, t) in wanted {
            let mut id = preferred_id(&name, t);
            let mut tries = 0;
            while !free(mark_of(id), &taken) || seeded.contains(&mark_of(id)) {
                id = id % (IDS - 1) + 1;
                tries += 1;
                if tries >= IDS {
                    tracing::warn!(service = %name, "no firewall mark left for this service port");
                    break;
                }
            }
            if tries < IDS {
                taken.insert(mark_of(id));
                out.insert((name, t), mark_of(id));
            }
        }
        out
    }

    /// Prefers these marks (what the kernel's helper table gives each endpoint set) for
    /// endpoint sets not allocated yet; a mark another set holds here is not taken, nor one
    /// of another layout (a mark written before its low byte repeated the identity gets a
    /// new one, once).
    pub fn seed(&mut self, marks: Marks) {
        self.seeded = marks
            .into_iter()
            .filter(|(k, m)| {
                is_ours(*m)
                    && *m == mark_of(*m >> SHIFT)
                    && !self.used.contains(m)
                    && !self.marks.contains_key(k)
            })
            .collect();
    }

    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
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
            let m = mark_of(preferred_id(&n, Target::Cluster));
            assert!(is_ours(m));
            assert_eq!(m & 0x4000, 0);
            seen.insert(m);
        }
        assert!(seen.len() > 1900, "hash spreads: {}", seen.len());
        assert!(a.marks.is_empty());
    }

    /// The kernel hashes a firewall-mark virtual service by the mark's low byte into 256
    /// buckets: 20,000 marks must fill them evenly, not one (what marks with a zero low byte
    /// did). Deepest bucket at most twice the mean.
    #[test]
    fn marks_spread_over_the_kernels_service_buckets() {
        use switchyard_synthetic::cluster::{cluster, plan_of};
        let plan = plan_of(&cluster(10_000, 1));
        let marks = Allocator::default().marks(&plan, plan.services.keys());
        let mut buckets = [0usize; 256];
        for m in marks.values() {
            buckets[(*m & 0xff) as usize] += 1;
        }
        let mean = marks.len() / 256;
        let deepest = buckets.iter().copied().max().unwrap_or(0);
        assert!(mean > 10, "too few marks to judge: {}", marks.len());
        assert!(
            deepest <= 2 * mean,
            "deepest bucket {deepest}, mean {mean}: IPVS would walk a long chain per lookup"
        );
    }

    #[test]
    fn marks_of_another_layout_are_not_seeded() {
        let key = (name("a"), Target::Cluster);
        let mut a = Allocator::default();
        a.seed(Marks::from([(key.clone(), 7 << SHIFT)]));
        assert!(a.seeded.is_empty(), "a mark with a zero low byte was kept");
        a.seed(Marks::from([(key, mark_of(7))]));
        assert_eq!(a.seeded.len(), 1);
    }

    /// A restarted agent whose plan changed while it was down: seeded from the helper table's
    /// mark maps, every endpoint set both plans have keeps its mark. Unseeded, some move (the
    /// hash collisions of DESIGN-NOTES 251), which is what makes this test able to fail.
    #[test]
    fn seeded_marks_survive_a_restart_whose_plan_changed() {
        use std::collections::BTreeMap;
        use switchyard_synthetic::cluster::{cluster, plan_of};
        // Before: services 0..3000. After: 1500..4500 (half gone, half new).
        let before = plan_of(&cluster(3000, 1));
        let mut after_state = cluster(4500, 1);
        let gone: Vec<_> = after_state.services.keys().take(1500).cloned().collect();
        for k in gone {
            after_state.services.remove(&k);
        }
        let after = plan_of(&after_state);
        let marks_before = Allocator::default().marks(&before, before.services.keys());
        // What the kernel's mark maps hold after the old agent's sync.
        let mut listed: BTreeMap<String, Vec<(Vec<u8>, u32)>> = BTreeMap::new();
        for ((map, key), owner) in switchyard_nftables::mark_owners(&before) {
            if let Some(&m) = marks_before.get(&owner) {
                listed.entry(map).or_default().push((key, m));
            }
        }
        let moved = |marks: &Marks| {
            marks
                .iter()
                .filter(|(k, m)| marks_before.get(*k).is_some_and(|b| b != *m))
                .count()
        };
        let unseeded = Allocator::default().marks(&after, after.services.keys());
        let mut seeded = Allocator::default();
        seeded.seed(switchyard_nftables::marks_in_maps(&after, &listed));
        let seeded = seeded.marks(&after, after.services.keys());
        let kept = seeded
            .keys()
            .filter(|k| marks_before.contains_key(*k))
            .count();
        assert!(kept >= 1400, "the plans share endpoint sets: {kept}");
        assert!(
            moved(&unseeded) > 0,
            "no collision in this plan: the test would pass without seeding"
        );
        assert_eq!(moved(&seeded), 0, "seeded marks moved");
        let distinct: BTreeSet<u32> = seeded.values().copied().collect();
        assert_eq!(
            distinct.len(),
            seeded.len(),
            "two endpoint sets share a mark"
        );
    }
}
