//! kill -9 mid-sync at 10k services, in every mode: the agent (and the restore tools it runs,
//! as a container kill takes them) is SIGKILLed at random points of a full sync from ruleset A
//! to ruleset B, many times (uniformly between planning, before the kernel is touched, and a
//! little after an uninterrupted sync would have ended). After each kill the kernel must hold A or B — never a mix — and
//! the next start must converge (it is checked to reproduce A exactly before the next round).
//!
//! nftables: the whole sync is one netlink batch, so the table is exactly A or B.
//! iptables: a sync is `ipset restore` (create and add), one `iptables-restore` (filter, then
//! nat, each table committed atomically at its `COMMIT`), `ipset restore` (swap in exact
//! sets). Each table must be exactly A's or B's, and every set must lie between A∩B and A∪B
//! (entries are only added before the rules and only removed after them) — DESIGN-NOTES 195.
//!
//! Sizes: `SWYD_KILL9_SERVICES` (default 10000), `SWYD_KILL9_ROUNDS` (default 4, what CI runs; longer runs: DESIGN-NOTES 199). Root only.

mod support;

use std::collections::BTreeMap;
use std::time::Instant;
use support::*;
use switchyard_conformance::netns::{require_root, unique_prefix, Netns};

struct Setup {
    ns: Netns,
    dir: std::path::PathBuf,
    a: std::path::PathBuf,
    b: std::path::PathBuf,
}

fn setup(tag: &str) -> Setup {
    setup_sized(tag, env_or("SWYD_KILL9_SERVICES", 10_000))
}

fn setup_sized(tag: &str, n: usize) -> Setup {
    require_root().expect("kill -9 tests need root (network namespaces)");
    let ns = Netns::create(&format!("{}-k9{tag}", unique_prefix())).expect("namespace");
    ns.ip(&["link", "set", "lo", "up"]).expect("lo up");
    let dir = std::env::temp_dir().join(format!("{}-kill9-{tag}", ns.name()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (a, b) = (dir.join("a.yaml"), dir.join("b.yaml"));
    std::fs::write(&a, synthetic(n, 1)).expect("write A");
    std::fs::write(&b, synthetic(n, 2)).expect("write B");
    Setup { ns, dir, a, b }
}

/// Runs the rounds; `snapshot` reads the kernel's state, `classify` names it ("A", "B") or
/// explains why it is a mix.
fn rounds<S: PartialEq + std::fmt::Debug>(
    s: &Setup,
    mode: Mode,
    snapshot: impl Fn() -> S,
    classify: impl Fn(&S, &S, &S) -> Result<&'static str, String>,
) -> (S, S) {
    let log = s.dir.join("agent.log");
    let took_b = {
        once(&s.ns, mode, &s.a, &log).expect("sync A");
        once(&s.ns, mode, &s.b, &log).expect("sync B")
    };
    let state_b = snapshot();
    let took_a = once(&s.ns, mode, &s.a, &log).expect("sync A again");
    let state_a = snapshot();
    assert_ne!(
        state_a, state_b,
        "A and B must differ for the test to mean anything"
    );
    // Kills land anywhere from planning (before the kernel is touched) to a little after an
    // uninterrupted sync would have ended.
    let span = took_b.max(took_a).mul_f64(1.2);
    println!(
        "{mode:?}: an uninterrupted sync A->B takes {took_b:?} after planning (B->A {took_a:?})"
    );
    let mut rng = Rng::from_env_or_clock();
    let mut seen: BTreeMap<&'static str, usize> = BTreeMap::new();
    let started = Instant::now();
    for round in 0..env_or("SWYD_KILL9_ROUNDS", 4) {
        let at = span.mul_f64(rng.unit());
        let mut child = spawn_agent(&s.ns, mode, &s.b, &["--once"], &log).expect("start");
        wait_for_log(&mut child, &log, PLANNED);
        std::thread::sleep(at);
        let finished = matches!(child.try_wait(), Ok(Some(_)));
        kill_group(&mut child);
        let now = snapshot();
        match classify(&now, &state_a, &state_b) {
            Ok(which) => {
                println!("{mode:?} round {round}: killed {at:?} after planning: {which}");
                *seen.entry(which).or_default() += 1;
            }
            Err(why) => panic!(
                "{mode:?} round {round}: killed {at:?} into the sync (finished: {finished}): a mix of A and B: {why}"
            ),
        }
        // The next start converges: a full sync reproduces A exactly.
        once(&s.ns, mode, &s.a, &log).expect("the next start converges");
        assert!(
            snapshot() == state_a,
            "{mode:?} round {round}: the start after the kill did not converge to A"
        );
    }
    println!("{mode:?}: {seen:?} in {:?}", started.elapsed());
    assert!(seen.values().sum::<usize>() >= 1, "no round ran");
    let _ = std::fs::remove_dir_all(&s.dir);
    (state_a, state_b)
}

#[test]
fn nftables_holds_the_old_or_the_new_table_after_kill_9() {
    let s = setup("n");
    let snap = || nft_snapshot(&s.ns).expect("nft list");
    rounds(&s, Mode::Nftables, snap, |now, a, b| {
        if now == a {
            Ok("A")
        } else if now == b {
            Ok("B")
        } else {
            Err(format!(
                "the table is neither ({} objects)",
                now.as_ref().map_or(0, |t| t.lines().count())
            ))
        }
    });
}

/// What an iptables mode holds: each table's chains and our sets.
#[derive(Debug, PartialEq)]
struct IptState {
    nat: String,
    filter: String,
    sets: BTreeMap<String, std::collections::BTreeSet<String>>,
}

fn iptables_rounds(mode: Mode, tag: &str) {
    let s = setup(tag);
    let snap = || IptState {
        nat: iptables_snapshot(&s.ns, mode, "nat").expect("save nat"),
        filter: iptables_snapshot(&s.ns, mode, "filter").expect("save filter"),
        sets: ipsets(&s.ns).expect("ipset save"),
    };
    rounds(&s, mode, snap, |now, a, b| {
        let nat = match &now.nat {
            n if *n == a.nat => "A",
            n if *n == b.nat => "B",
            _ => return Err("table nat is neither A's nor B's".into()),
        };
        if now.filter != a.filter && now.filter != b.filter {
            return Err("table filter is neither A's nor B's".into());
        }
        for (name, members) in &now.sets {
            if name.ends_with("-T") {
                continue; // a temporary fill, not referenced by any rule
            }
            let (in_a, in_b) = (a.sets.get(name), b.sets.get(name));
            let (Some(in_a), Some(in_b)) = (in_a, in_b) else {
                return Err(format!("set {name} is neither A's nor B's"));
            };
            if let Some(x) = members
                .iter()
                .find(|m| !in_a.contains(*m) && !in_b.contains(*m))
            {
                return Err(format!("set {name} holds {x}, in neither A nor B"));
            }
            if let Some(x) = in_a.intersection(in_b).find(|m| !members.contains(*m)) {
                return Err(format!("set {name} lacks {x}, in both A and B"));
            }
        }
        Ok(nat)
    });
}

#[test]
fn iptables_nft_holds_old_or_new_tables_after_kill_9() {
    iptables_rounds(Mode::IptablesNft, "i");
}

#[test]
fn iptables_legacy_holds_old_or_new_tables_after_kill_9() {
    iptables_rounds(Mode::IptablesLegacy, "l");
}

/// IPVS mode, in the Debian 6.1 guest (the host kernel has no IPVS). IPVS netlink has no
/// transactions, so a sync is: addresses, virtual services and destinations added or changed
/// (leaving destinations drained to weight 0, never removed), then the helper table
/// `switchyard-ipvs` as one nf_tables batch, then the virtual services and addresses nothing
/// steers to any more deleted (DESIGN-NOTES 250). So after a kill at any point: the helper
/// table is exactly A's or B's; every service key it steers goes to a virtual service that
/// exists, whose active destinations lie between that key's A∩B and A∪B; the addresses lie
/// between A∩B and A∪B. Size: `SWYD_KILL9_IPVS_SERVICES` (default 10000, as the host modes),
/// rounds `SWYD_KILL9_ROUNDS` (default 4). Run by hand (`-- --ignored`): under TCG on 2 cores
/// it takes ~30 minutes at 10k, a third of CI's budget (DESIGN-NOTES 283).
#[test]
#[ignore = "~30 minutes in the VM at 10k services: run by hand (DESIGN-NOTES 283)"]
fn ipvs_holds_old_or_new_rules_and_services_after_kill_9() {
    guest::run_test_in_vm(
        "ipvs_kill_9_rounds_in_the_guest",
        &["SWYD_KILL9_IPVS_SERVICES", "SWYD_KILL9_ROUNDS", "SWYD_SEED"],
        std::time::Duration::from_secs(3000),
    );
}

/// The guest half of [`ipvs_holds_old_or_new_rules_and_services_after_kill_9`].
#[test]
#[ignore = "runs inside the VM guest, started by ipvs_holds_old_or_new_rules_and_services_after_kill_9"]
fn ipvs_kill_9_rounds_in_the_guest() {
    let s = setup_sized("v", env_or("SWYD_KILL9_IPVS_SERVICES", 10_000));
    let snap = || ipvs::IpvsState::read(&s.ns).expect("read IPVS state");
    let (a, b) = rounds(&s, Mode::Ipvs, snap, ipvs::classify);
    for (name, whole) in [("A", &a), ("B", &b)] {
        let unserved = ipvs::unserved(whole);
        assert!(
            unserved.is_empty() && !whole.steer.is_empty(),
            "ruleset {name} steers {} of {} keys to marks without a virtual service, e.g. {:?}",
            unserved.len(),
            whole.steer.len(),
            unserved.first()
        );
    }
    let reused = ipvs::marks_reused(&a, &b);
    println!(
        "{} service keys take a mark another key held in the other ruleset",
        reused.len()
    );
    assert!(
        reused.is_empty(),
        "marks re-pointed between A and B: {reused:?}"
    );
}

/// Kill points spread over the whole span whatever the clock seed: the first draws of seeds
/// that differ only in their low bits (as clock readings a few minutes apart do) cover [0, 1).
/// Unscrambled xorshift gave 0.18, 0.14, 0.10, 0.14 for one real seed.
#[test]
fn kill_points_spread_over_the_span() {
    let base: u64 = 1_796_305_144_339_375_360;
    let mut first: Vec<f64> = (0..64)
        .map(|i| Rng::from_seed(base + i * 1_000_003).unit())
        .collect();
    first.sort_by(f64::total_cmp);
    let (lo, hi) = (first[0], first[first.len() - 1]);
    assert!(
        lo < 0.1 && hi > 0.9,
        "first draws span only {lo:.3}..{hi:.3}"
    );
    let mut rng = Rng::from_seed(base);
    let four: Vec<f64> = (0..4).map(|_| rng.unit()).collect();
    let spread =
        four.iter().copied().fold(0.0, f64::max) - four.iter().copied().fold(1.0, f64::min);
    assert!(
        spread > 0.2,
        "one run's four kill points bunch together: {four:?}"
    );
}

/// The IPVS classifier rejects what a wrong order would leave: a virtual service deleted
/// before the rules stop steering to it (break before make), a mark re-pointed to another
/// service's destinations while the old rules steer to it, a destination of both A and B
/// removed. (The guest rounds rely on it; this needs no VM.)
#[test]
fn ipvs_classifier_rejects_break_before_make() {
    use ipvs::IpvsState;
    let state =
        |helper: &str, steer: &[(&str, u32)], services: &[(u32, &[(&str, u32)])]| IpvsState {
            helper: Some(helper.into()),
            steer: steer.iter().map(|(k, m)| (k.to_string(), *m)).collect(),
            services: services
                .iter()
                .map(|(m, d)| (*m, d.iter().map(|(a, w)| (a.to_string(), *w)).collect()))
                .collect(),
            vips: Default::default(),
        };
    let a = state(
        "A",
        &[("x", 1), ("z", 2)],
        &[(1, &[("x1", 1)]), (2, &[("z1", 1), ("z2", 1)])],
    );
    let b = state("B", &[("x", 1)], &[(1, &[("x1", 1), ("x2", 1)])]);
    // Make before break: B's destination added, rules still A's.
    let good = state(
        "A",
        &[("x", 1), ("z", 2)],
        &[(1, &[("x1", 1), ("x2", 1)]), (2, &[("z1", 1), ("z2", 1)])],
    );
    assert_eq!(
        ipvs::classify(&good, &a, &b),
        Ok("A rules, services between A and B")
    );
    // z's service deleted while A's rules still steer z to it.
    let deleted = state("A", &[("x", 1), ("z", 2)], &[(1, &[("x1", 1)])]);
    assert!(ipvs::classify(&deleted, &a, &b).is_err_and(|e| e.contains("no virtual service")));
    // z's mark given x's destinations while A's rules steer z to it.
    let repointed = state(
        "A",
        &[("x", 1), ("z", 2)],
        &[(1, &[("x1", 1)]), (2, &[("x2", 1), ("z1", 0), ("z2", 0)])],
    );
    assert!(ipvs::classify(&repointed, &a, &b).is_err_and(|e| e.contains("neither A nor B")));
    // x1, in A and B, drained.
    let lost = state(
        "B",
        &[("x", 1)],
        &[(1, &[("x1", 0), ("x2", 1)]), (2, &[("z1", 1)])],
    );
    assert!(ipvs::classify(&lost, &a, &b).is_err_and(|e| e.contains("in both A and B")));
    assert!(ipvs::classify(&state("C", &[], &[]), &a, &b).is_err());
}

/// `ipvsadm -S -n` prints a mark with `%d`: the half of our marks with the top bit set come
/// out negative and must still be read (DESIGN-NOTES 288).
#[test]
fn ipvsadm_save_marks_with_the_top_bit_are_read() {
    let saved = "-A -f -351600618 -s rr\n\
                 -a -f -351600618 -r 10.244.1.5:8080 -m -w 1\n\
                 -A -f 4096 -s rr\n";
    let services = ipvs::services(saved);
    assert_eq!(
        services
            .get(&0xeb0b_0016)
            .and_then(|d| d.get("10.244.1.5:8080")),
        Some(&1),
        "{services:x?}"
    );
    assert!(services.contains_key(&4096), "{services:x?}");
}
