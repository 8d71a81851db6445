//! The shared data path, built from what the service ports need ([`Need`]): dispatch rules,
//! shape chains, the search by endpoint count, pick chains and the DNAT slot maps.
//!
//! Small by construction (shapes × distinct endpoint counts), so rebuilding it to compare
//! with the last sync costs little; only parts whose rules changed are rewritten.

use super::{goto, kind_of, path_rules, Bundle, Features, Kind, Need};
use crate::names as n;
use crate::objects::{KeyType, Set, SetData};
use crate::stmt::{KeySrc, Stmt};
use std::collections::{BTreeMap, BTreeSet};
use switchyard_core::plan::{NodePortListen, ProxyPlan};

/// Uniform choice among at most this many slots is a rule cascade (the fastest shape measured
/// for small sets, DESIGN §4); larger sets are halved first, so a pick evaluates
/// O(log n + CASCADE_MAX) rules instead of O(n).
const CASCADE_MAX: u32 = 16;

pub fn structure<'a>(
    plan: &ProxyPlan,
    needs: impl IntoIterator<Item = &'a Need>,
    features: Features,
) -> Bundle {
    let all_local = plan.node_port_addresses == NodePortListen::AllLocal;
    let mut b = Bundle::default();
    b.chain(n::SERVICES);
    if all_local {
        b.chain(n::NODE_PORTS);
    }
    let mut counts: BTreeMap<(KeySrc, Kind), BTreeSet<u32>> = BTreeMap::new();
    for need in needs {
        match need {
            &Need::ChainDispatch(src) => {
                let (chain, stmt) = match src {
                    KeySrc::Vip => (n::SERVICES, Stmt::DispatchVmap(n::SERVICE_IPS.into())),
                    KeySrc::Port => (n::NODE_PORTS, Stmt::PortVmap(n::SERVICE_NODEPORTS.into())),
                };
                b.rule(chain, vec![stmt]);
            }
            Need::IpvsMark(src, kind) => super::ipvs::mark_chain(&mut b, *src, *kind),
            Need::Shape(src, shape) | Need::IpvsShape(src, shape) => {
                let ipvs = matches!(need, Need::IpvsShape(..));
                let src = *src;
                let name = shape.name();
                let chain = n::shape_chain(src, &name);
                let set = n::shape_set(src, &name);
                let key = match src {
                    KeySrc::Vip => KeyType::AddrProtoPort,
                    KeySrc::Port => KeyType::ProtoPort,
                };
                b.set(Set::new(&set, key, SetData::None));
                let dispatch = match src {
                    KeySrc::Vip => n::SERVICES,
                    KeySrc::Port => n::NODE_PORTS,
                };
                b.rule(dispatch, vec![Stmt::KeyInSet { src, set }, goto(&chain)]);
                path_rules(&mut b, plan, &chain, &shape.0, |t| {
                    if ipvs {
                        super::ipvs::target_chain(src, t)
                    } else {
                        kind_of(t).map(|k| n::count_chain(src, k.name(), None))
                    }
                });
            }
            &Need::Count(src, kind, c) => {
                counts.entry((src, kind)).or_default().insert(c);
            }
        }
    }
    if all_local {
        b.rule(n::SERVICES, vec![Stmt::FibDaddrLocal, goto(n::NODE_PORTS)]);
    }
    for ((src, kind), set) in counts {
        let counts: Vec<u32> = set.into_iter().collect();
        count_search(&mut b, src, kind, &counts, features);
        for &c in &counts {
            pick(&mut b, src, kind, 0, c);
        }
        let max = counts.last().copied().unwrap_or(0);
        for i in 0..max {
            let map = n::endpoint_map(src, kind.name(), i);
            let key = match src {
                KeySrc::Vip => KeyType::AddrProtoPort,
                KeySrc::Port => KeyType::ProtoPort,
            };
            b.set(Set::new(&map, key, SetData::Endpoint));
            if !features.map_lookup_as_set {
                b.set(Set::new(
                    n::slot_set(src, kind.name(), i),
                    key,
                    SetData::None,
                ));
            }
            b.rule(
                &n::dnat_chain(src, kind.name(), i),
                vec![Stmt::DnatMap { src, map }],
            );
        }
    }
    b
}

/// Binary search on a key's endpoint count among the counts in use (ascending, non-empty):
/// slot map `c - 1` holds exactly the keys with at least `c` endpoints, so one lookup halves
/// the candidates. Leaves go to the uniform pick among that many slots.
fn count_search(b: &mut Bundle, src: KeySrc, kind: Kind, counts: &[u32], features: Features) {
    let root = n::count_chain(src, kind.name(), None);
    match counts {
        [] => {}
        [only] => b.rule(
            &root,
            vec![goto(&n::pick_chain(src, kind.name(), 0, *only))],
        ),
        _ => count_node(b, src, kind, counts, &root, features),
    }
}

fn count_node(
    b: &mut Bundle,
    src: KeySrc,
    kind: Kind,
    counts: &[u32],
    chain: &str,
    features: Features,
) {
    let (low, high) = counts.split_at(counts.len() / 2);
    let target = |b: &mut Bundle, part: &[u32]| -> String {
        match part {
            [only] => n::pick_chain(src, kind.name(), 0, *only),
            _ => {
                let range = (part[0], part[part.len() - 1]);
                let name = n::count_chain(src, kind.name(), Some(range));
                count_node(b, src, kind, part, &name, features);
                name
            }
        }
    };
    let high_target = target(b, high);
    let low_target = target(b, low);
    b.rule(
        chain,
        vec![
            // Slot c-1 is filled exactly for keys with at least c endpoints.
            Stmt::KeyInSet {
                src,
                set: if features.map_lookup_as_set {
                    n::endpoint_map(src, kind.name(), high[0] - 1)
                } else {
                    n::slot_set(src, kind.name(), high[0] - 1)
                },
            },
            goto(&high_target),
        ],
    );
    b.rule(chain, vec![goto(&low_target)]);
}

/// Uniform choice among slots `from..to` (shared by every count whose tree reaches it).
fn pick(b: &mut Bundle, src: KeySrc, kind: Kind, from: u32, to: u32) -> String {
    let name = n::pick_chain(src, kind.name(), from, to);
    if b.chains.contains_key(&name) {
        return name;
    }
    b.chain(&name);
    let size = to - from;
    if size <= CASCADE_MAX {
        for slot in from..to {
            let mut stmts = Vec::new();
            if slot + 1 < to {
                stmts.push(Stmt::OneIn(to - slot));
            }
            stmts.push(goto(&n::dnat_chain(src, kind.name(), slot)));
            b.rule(&name, stmts);
        }
    } else {
        let mid = from + size / 2;
        let low = pick(b, src, kind, from, mid);
        let high = pick(b, src, kind, mid, to);
        b.rule(
            &name,
            vec![
                Stmt::Below {
                    modulus: size,
                    bound: mid - from,
                },
                goto(&low),
            ],
        );
        b.rule(&name, vec![goto(&high)]);
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::Verdict;
    use switchyard_core::plan::{ClusterMasquerade, IpFamily};

    fn plan() -> ProxyPlan {
        ProxyPlan {
            family: IpFamily::V4,
            node_name: "n".into(),
            node_ips: vec![],
            node_port_addresses: NodePortListen::Addresses(vec![]),
            cluster_masquerade: ClusterMasquerade::HairpinOnly,
            pod_sources: Default::default(),
            service_cidrs: vec![],
            services: Default::default(),
            warnings: vec![],
        }
    }

    /// Walks the rules from `chain` for a packet whose key is in exactly the sets `member`
    /// accepts, and returns the probability of reaching each endpoint map's DNAT. Conditions
    /// of one rule are `KeyInSet` (decided by `member`), `OneIn` and `Below` (independent
    /// random draws); a rule that does not match falls through to the next.
    fn reach(b: &Bundle, chain: &str, member: &dyn Fn(&str) -> bool) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        walk(b, chain, 1.0, member, &mut out);
        out
    }

    fn walk(
        b: &Bundle,
        chain: &str,
        mut p: f64,
        member: &dyn Fn(&str) -> bool,
        out: &mut BTreeMap<String, f64>,
    ) {
        let rules = b
            .chains
            .get(chain)
            .unwrap_or_else(|| panic!("missing chain {chain}"));
        for rule in rules {
            let mut taken = 1.0;
            let mut target = None;
            for s in rule {
                match s {
                    Stmt::KeyInSet { set, .. } => {
                        assert!(b.sets.contains_key(set), "lookup in missing set {set}");
                        if !member(set) {
                            taken = 0.0;
                        }
                    }
                    Stmt::OneIn(k) => taken *= 1.0 / f64::from(*k),
                    Stmt::Below { modulus, bound } => {
                        taken *= f64::from(*bound) / f64::from(*modulus)
                    }
                    Stmt::Verdict(Verdict::Goto(c)) => target = Some(c.clone()),
                    Stmt::DnatMap { map, .. } => {
                        assert!(b.sets.contains_key(map), "dnat from missing map {map}");
                        *out.entry(map.clone()).or_default() += p * taken;
                    }
                    other => panic!("unexpected statement in the pick path: {other:?}"),
                }
            }
            if let Some(t) = target {
                walk(b, &t, p * taken, member, out);
            }
            p *= 1.0 - taken;
            if p == 0.0 {
                return;
            }
        }
    }

    #[test]
    fn every_pick_is_uniform_over_its_slots() {
        for n in 1..=70u32 {
            let needs = [Need::Count(KeySrc::Vip, Kind::Cluster, n)];
            let b = structure(&plan(), &needs, Features::default());
            let root = n::count_chain(KeySrc::Vip, "cluster", None);
            let got = reach(&b, &root, &|_| true);
            assert_eq!(got.len(), n as usize, "n={n}: {got:?}");
            for (map, p) in &got {
                assert!(
                    (p - 1.0 / f64::from(n)).abs() < 1e-12,
                    "n={n}: {map} chosen with probability {p}"
                );
            }
        }
    }

    #[test]
    fn count_search_routes_each_count_to_its_own_slots() {
        for counts in [
            vec![1],
            vec![1, 2],
            vec![3, 10],
            vec![1, 2, 5, 6, 9, 17, 40],
            (1..=33).collect(),
        ] {
            let needs: Vec<Need> = counts
                .iter()
                .map(|&c| Need::Count(KeySrc::Port, Kind::Local, c))
                .collect();
            // Both shapes: the count search tests the slot maps themselves, or (kernels that
            // cannot look a map's key up as a set) the plain slot sets kept beside them.
            for map_lookup_as_set in [true, false] {
                let features = Features { map_lookup_as_set };
                let b = structure(&plan(), &needs, features);
                let slot = |i: u32| {
                    if map_lookup_as_set {
                        n::endpoint_map(KeySrc::Port, "local", i)
                    } else {
                        n::slot_set(KeySrc::Port, "local", i)
                    }
                };
                let root = n::count_chain(KeySrc::Port, "local", None);
                let max = *counts.last().expect("counts");
                assert!(b.sets.contains_key(&slot(max - 1)));
                assert!(!b.sets.contains_key(&slot(max)));
                for &c in &counts {
                    // A key with c endpoints is in the slots 0..c and in no other.
                    let member = |set: &str| (0..c).any(|i| set == slot(i));
                    let got = reach(&b, &root, &member);
                    let want: BTreeMap<String, f64> = (0..c)
                        .map(|i| {
                            (
                                n::endpoint_map(KeySrc::Port, "local", i),
                                1.0 / f64::from(c),
                            )
                        })
                        .collect();
                    assert_eq!(
                        got.keys().collect::<Vec<_>>(),
                        want.keys().collect::<Vec<_>>(),
                        "counts {counts:?}, c={c}, {features:?}"
                    );
                    for (k, p) in &got {
                        assert!(
                            (p - want[k]).abs() < 1e-12,
                            "counts {counts:?}, c={c}: {k} {p}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_structure_is_small_and_shared() {
        // Ten distinct counts up to 100: chains stay O(distinct counts + largest count).
        let needs: Vec<Need> = (1..=10)
            .map(|i| Need::Count(KeySrc::Vip, Kind::Cluster, i * 10))
            .collect();
        let b = structure(&plan(), &needs, Features::default());
        let rules: usize = b.chains.values().map(Vec::len).sum();
        assert!(b.chains.len() < 260, "{} chains", b.chains.len());
        assert!(rules < 800, "{rules} rules");
    }
}
