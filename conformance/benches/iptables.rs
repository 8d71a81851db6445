//! iptables backend benchmark: `cargo bench -p switchyard-conformance --bench iptables` (root).
//!
//! Fixed scenario, so figures compare across commits:
//! - control plane, per variant: full sync of 1k x 10, 10k x 10 and 10k x 2 (services x
//!   endpoints), then one endpoint changed (incremental sync); baseline: a bare
//!   `iptables-restore --noflush` of the identical text into a fresh namespace, measured in the
//!   same run. Then the stock tools on the synced ruleset: the chains in `nat`, the time of
//!   `iptables-save` (whole ruleset) and whether it succeeded, and whether
//!   `iptables-restore --test` accepts what it printed. At 1k, also the same lines in
//!   kube-proxy's order (every declaration first), which iptables-nft-restore handles
//!   quadratically (see the iptables backend's `restore_order`).
//! - datapath, per variant: connect-to-first-byte from a pod on the node to a pod on the other
//!   node, through a ClusterIP and straight to the pod IP, at 100 and 10k services (the others
//!   with one endpoint each), against the floor measured in the same topology after removing
//!   the rules: connection tracking and NAT hooks on, no rules; then the 10k pod-IP / floor
//!   comparison again as three back-to-back pairs (the median pair ratio is the figure).

use std::time::{Duration, Instant};
use switchyard_conformance::netns::{require_root, timed_in, unique_prefix, Netns};
use switchyard_conformance::probe::{
    connect_latencies, floor_latencies, interleaved_p50s, pairs_summary, quantile_us,
};
use switchyard_conformance::topology::Topology;
use switchyard_core::{diff, Dataplane};
use switchyard_iptables::{IptablesConfig, IptablesDataplane, Variant};
use switchyard_synthetic::{add_service, cluster, control_scales, plan_of};

/// The agent's allocator, so the figures are what the agent runs.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SAMPLES: usize = 4000;
const WARMUP: usize = 1500;
/// Interleaved rules-on / rules-off pairs for the non-service ratio at 10k services.
const PAIRS: usize = 3;
/// Largest scale at which the declarations-first order is also timed (it is quadratic in
/// iptables-nft: ~3 s at 1k, ~26 s at 2k).
const DECLARATIONS_FIRST_MAX: usize = 1000;

fn main() -> anyhow::Result<()> {
    require_root()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let only = std::env::var("SWYD_BENCH_ONLY").unwrap_or_default();
    println!("# iptables backend benchmark (2-core machine; times are wall clock)");
    // `SWYD_BENCH_VARIANTS=nft|legacy` limits the run to one variant (investigation only).
    let variants: Vec<Variant> = match std::env::var("SWYD_BENCH_VARIANTS").as_deref() {
        Ok("nft") => vec![Variant::Nft],
        Ok("legacy") => vec![Variant::Legacy],
        _ => vec![Variant::Legacy, Variant::Nft],
    };
    if only != "datapath" {
        for &v in &variants {
            for (n, k) in control_scales() {
                control_plane(&rt, v, n, k)?;
            }
        }
    }
    if only != "control" {
        for &v in &variants {
            datapath(&rt, v)?;
        }
    }
    Ok(())
}

fn name(v: Variant) -> &'static str {
    match v {
        Variant::Nft => "iptables-nft",
        Variant::Legacy => "iptables-legacy",
    }
}

fn dataplane(
    rt: &tokio::runtime::Runtime,
    v: Variant,
    ns: &Netns,
) -> anyhow::Result<IptablesDataplane> {
    let mut dp = IptablesConfig::new(switchyard_core::IpFamily::V4)
        .variant(v)
        .netns(ns.path())
        .build();
    rt.block_on(dp.probe())?;
    Ok(dp)
}

fn control_plane(
    rt: &tokio::runtime::Runtime,
    v: Variant,
    n: usize,
    k: usize,
) -> anyhow::Result<()> {
    let state = cluster(n, k);
    let plan = plan_of(&state);
    let ns = Netns::create(&format!("{}-bench", unique_prefix()))?;
    let mut dp = dataplane(rt, v, &ns)?;
    let text = dp.restore_input(&plan, None);
    let rules = text
        .lines()
        .filter(|l| l.starts_with("-A") || l.starts_with("-I"))
        .count();

    let t = Instant::now();
    rt.block_on(dp.apply(&plan, None))?;
    let full = t.elapsed();

    let mut changed = state.clone();
    let slice = changed
        .endpoint_slices
        .values_mut()
        .nth(n / 2)
        .ok_or_else(|| anyhow::anyhow!("no slice"))?;
    slice.endpoints[0].addresses = vec!["10.246.0.1".into()];
    let plan2 = plan_of(&changed);
    let changes = diff(&plan, &plan2);
    let t = Instant::now();
    let stats = rt.block_on(dp.apply(&plan2, Some(&changes)))?;
    let incr = t.elapsed();
    anyhow::ensure!(!stats.full, "the incremental sync was not incremental");

    let base = switchyard_conformance::baseline::iptables_restore(v, &text)?;
    println!(
        "control {:16} services={n:>6} endpoints={k:>2} rules={rules:>7}  full={:>9.1} ms  baseline(bare restore)={:>9.1} ms  ratio={:.2}  incremental(1 endpoint)={:>7.1} ms",
        name(v),
        ms(full),
        ms(base),
        full.as_secs_f64() / base.as_secs_f64(),
        ms(incr)
    );
    stock_tools(v, &ns, n, k);
    if n <= DECLARATIONS_FIRST_MAX {
        let naive =
            switchyard_conformance::baseline::iptables_restore(v, &declarations_first(&text))?;
        println!(
            "control {:16} services={n:>6} endpoints={k:>2}  same lines, declarations first (kube-proxy's order): bare restore={:>9.1} ms  ratio ours/that={:.2}",
            name(v),
            ms(naive),
            base.as_secs_f64() / naive.as_secs_f64()
        );
    }
    Ok(())
}

/// What an operator runs first on the synced ruleset: `iptables-save` (timed, whole ruleset),
/// the chains it lists in `nat`, and `iptables-restore --test` of its output. Failures are
/// printed, not fatal: they are the finding.
fn stock_tools(v: Variant, ns: &Netns, n: usize, k: usize) {
    let save = match v {
        Variant::Nft => "iptables-nft-save",
        Variant::Legacy => "iptables-legacy-save",
    };
    let restore = switchyard_conformance::baseline::restore_tool(v);
    let t = Instant::now();
    let saved = ns.exec(save, &[]);
    let took = t.elapsed();
    let saved = match saved {
        Ok(s) => s,
        Err(e) => {
            println!(
                "tools   {:16} services={n:>6} endpoints={k:>2}  iptables-save FAILED after {:.1} ms: {e:#}",
                name(v),
                ms(took)
            );
            return;
        }
    };
    let nat_chains = saved
        .lines()
        .skip_while(|l| *l != "*nat")
        .take_while(|l| *l != "COMMIT")
        .filter(|l| l.starts_with(':'))
        .count();
    let test = match timed_in(ns, restore, &["--test"], &saved) {
        Ok(d) => format!("accepted ({:.1} ms)", ms(d)),
        Err(e) => format!("REJECTED: {e:#}"),
    };
    println!(
        "tools   {:16} services={n:>6} endpoints={k:>2}  nat chains={nat_chains:>7}  iptables-save ok in {:>8.1} ms ({} lines)  restore --test of its output: {test}",
        name(v),
        ms(took),
        saved.lines().count()
    );
}

/// The same lines with every table's chain declarations moved to its top.
fn declarations_first(text: &str) -> String {
    let mut out = String::new();
    let mut body = String::new();
    for line in text.lines() {
        if line.starts_with('*') || line.starts_with(':') {
            out.push_str(line);
            out.push('\n');
        } else if line == "COMMIT" {
            out.push_str(&body);
            body.clear();
            out.push_str("COMMIT\n");
        } else {
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

fn datapath(rt: &tokio::runtime::Runtime, v: Variant) -> anyhow::Result<()> {
    let topo = Topology::build()?;
    let client = topo
        .origin(switchyard_conformance::topology::From::Pod("pod-a1"))?
        .0
        .path();
    let pod: std::net::SocketAddr = "10.244.2.10:8080".parse()?;
    let floor = floor_latencies(&topo.node, &client, pod, SAMPLES, WARMUP)?;
    report(v, "floor (fresh topology)", "pod IP", &floor, None);
    let mut dp = dataplane(rt, v, &topo.node)?;
    let mut svc100 = None;
    let mut direct100: Option<Vec<Duration>> = None;
    let mut direct10k = None;
    let mut plan10k = None;
    for n in [100usize, 10_000] {
        // n-1 synthetic services plus the target, numbered last (highest address).
        // One endpoint per other service: they are never walked by the measured connection.
        let mut state = cluster(n - 1, 1);
        add_service(&mut state, n - 1, 1, Some(&["10.244.2.10".to_string()]));
        let plan = plan_of(&state);
        rt.block_on(dp.apply(&plan, None))?;
        let vip_ip = plan
            .services
            .values()
            .map(|s| s.cluster_ip)
            .max()
            .ok_or_else(|| anyhow::anyhow!("empty plan"))?;
        let vip = std::net::SocketAddr::new(vip_ip, 80);
        let svc = connect_latencies(&client, vip, SAMPLES, WARMUP)?;
        let direct = connect_latencies(&client, pod, SAMPLES, WARMUP)?;
        report(
            v,
            &format!("{n} services"),
            "ClusterIP",
            &svc,
            svc100.as_deref().map(|s| ("vs 100 services", s)),
        );
        report(v, &format!("{n} services"), "pod IP", &direct, None);
        if n == 100 {
            svc100 = Some(svc);
            direct100 = Some(direct);
        } else if let Some(d100) = &direct100 {
            report(
                v,
                &format!("{n} services"),
                "pod IP",
                &direct,
                Some(("vs 100 services", d100)),
            );
            direct10k = Some(direct);
            plan10k = Some(plan);
        }
    }
    // The floor again, after removing every rule: the reference for every ratio. A fresh
    // topology has a slow phase (direct connections ~65 us p50 instead of ~26 us, for seconds;
    // DESIGN-NOTES 36), so only a floor taken after the measurements, with the same history,
    // compares fairly; the first floor is printed for information.
    rt.block_on(dp.cleanup())?;
    let after = floor_latencies(&topo.node, &client, pod, SAMPLES, WARMUP)?;
    report(v, "floor (after cleanup)", "pod IP", &after, None);
    if let Some(d) = &direct10k {
        report(
            v,
            "10000 services",
            "pod IP",
            d,
            Some(("vs floor after", &after)),
        );
    }
    // The same comparison in back-to-back pairs (rules on, rules off), so drift cancels.
    if let Some(plan) = &plan10k {
        let dp = std::cell::RefCell::new(dp);
        let pairs = interleaved_p50s(
            PAIRS,
            || {
                rt.block_on(dp.borrow_mut().apply(plan, None))?;
                connect_latencies(&client, pod, SAMPLES, WARMUP)
            },
            || {
                rt.block_on(dp.borrow_mut().cleanup())?;
                floor_latencies(&topo.node, &client, pod, SAMPLES, WARMUP)
            },
        )?;
        println!(
            "datapath {:16}   10000 services pod IP    vs floor, {}",
            name(v),
            pairs_summary(&pairs)
        );
    }
    Ok(())
}

fn report(
    v: Variant,
    scale: &str,
    path: &str,
    samples: &[Duration],
    against: Option<(&str, &[Duration])>,
) {
    let (p50, p99) = (quantile_us(samples, 0.5), quantile_us(samples, 0.99));
    let ratio = against
        .map(|(label, base)| format!("  p50 ratio {label} = {:.3}", p50 / quantile_us(base, 0.5)))
        .unwrap_or_default();
    println!(
        "datapath {:16} {scale:>16} {path:9}  p50={p50:>7.1} us  p99={p99:>7.1} us{ratio}",
        name(v)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
