//! nftables backend benchmark: `cargo bench -p switchyard-conformance --bench nftables` (root).
//!
//! Fixed scenario, so figures compare across commits:
//! - control plane: full sync of 1k and 10k services x 10 endpoints into a fresh namespace, then
//!   incremental syncs: one endpoint replaced (median of 50), then one endpoint added (the first
//!   round brings an endpoint count no service had; median of the other 49), each right after
//!   re-planning the cluster as the agent does; then the backend alone (two precomputed plans
//!   alternated, nothing between the syncs to evict the caches); baseline: `nft -f`
//!   of the identical ruleset text (our `render` output) into another fresh namespace, in the
//!   same run; peak RSS.
//! - datapath: connect-to-first-byte from a pod on the node to a pod on the other node, through
//!   a ClusterIP and straight to the pod IP, at 100 and 10k services (the others with one
//!   endpoint each), against the floor measured in the same topology after removing the rules:
//!   connection tracking and NAT hooks on, no rules; then the 10k / floor comparisons again as
//!   three back-to-back pairs (the median pair ratio is the figure).

use std::time::{Duration, Instant};
use switchyard_conformance::netns::{enter_path, require_root, unique_prefix, Netns};
use switchyard_conformance::probe::{
    connect_latencies, floor_latencies, interleaved_p50s, pairs_summary, quantile_us,
};
use switchyard_conformance::topology::{From, Topology};
use switchyard_core::{diff, Dataplane, IpFamily};
use switchyard_nftables::NftablesDataplane;
use switchyard_synthetic::{add_service, cluster, plan_of, scales};

/// The agent's allocator, so the figures are what the agent runs.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SAMPLES: usize = 4000;
const WARMUP: usize = 1500;
/// Interleaved rules-on / rules-off pairs for the 10k-service ratios against the floor.
const PAIRS: usize = 3;

fn main() -> anyhow::Result<()> {
    require_root()?;
    let only = std::env::var("SWYD_BENCH_ONLY").unwrap_or_default();
    println!("# nftables backend benchmark (2-core machine; times are wall clock)");
    if only != "datapath" {
        let mut incr = Vec::new();
        for n in scales() {
            incr.push((n, control_plane(n)?));
        }
        if let [(a, (ia, alone_a)), .., (b, (ib, alone_b))] = incr.as_slice() {
            println!(
                "control incremental (1 endpoint replaced) at {b} vs {a} services: ratio={:.2} after re-planning, {:.2} backend alone",
                ib.as_secs_f64() / ia.as_secs_f64(),
                alone_b.as_secs_f64() / alone_a.as_secs_f64()
            );
        }
        println!(
            "peak RSS of the benchmark process (plans, transactions, batches): {} MiB",
            peak_rss_kib() / 1024
        );
    }
    if only != "control" {
        datapath()?;
    }
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs a future on a throwaway runtime (setup and teardown steps, not timed).
fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    runtime().block_on(f)
}

/// Incremental syncs, each changing one endpoint of a different service.
#[derive(Debug, Default)]
struct Rounds {
    total: Vec<Duration>,
    kernel: Vec<Duration>,
    diff: Vec<Duration>,
}

impl Rounds {
    fn median(v: &[Duration]) -> Duration {
        let mut v = v.to_vec();
        v.sort();
        v.get(v.len() / 2).copied().unwrap_or_default()
    }
}

/// Incremental syncs per series: enough for a stable median of sub-millisecond times.
const ROUNDS: usize = 50;

/// Applies `change` to `ROUNDS` different services, one incremental sync each.
fn rounds(
    rt: &tokio::runtime::Runtime,
    dp: &mut NftablesDataplane,
    state: &mut switchyard_core::model::ClusterState,
    prev: &mut switchyard_core::ProxyPlan,
    n: usize,
    first_service: usize,
    change: impl Fn(&mut switchyard_core::model::EndpointSlice, usize),
) -> anyhow::Result<Rounds> {
    let mut r = Rounds::default();
    for round in 0..ROUNDS {
        let slice = state
            .endpoint_slices
            .values_mut()
            .nth((first_service + round * 7) % n)
            .ok_or_else(|| anyhow::anyhow!("no slice"))?;
        change(slice, round);
        let next = plan_of(state);
        let t = Instant::now();
        let changes = diff(prev, &next);
        r.diff.push(t.elapsed());
        let t = Instant::now();
        let stats = rt.block_on(dp.apply(&next, Some(&changes)))?;
        r.total.push(t.elapsed());
        r.kernel.push(stats.kernel_time);
        anyhow::ensure!(
            !stats.full && stats.service_ports_written == 1,
            "not a one-service incremental sync: {stats:?}"
        );
        *prev = next;
    }
    Ok(r)
}

/// Full and incremental sync at `n` services; returns the median incremental times after
/// re-planning (as the agent syncs) and of the backend alone.
fn control_plane(n: usize) -> anyhow::Result<(Duration, Duration)> {
    let state = cluster(n, 10);
    let plan = plan_of(&state);
    let ns = Netns::create(&format!("{}-nftb", unique_prefix()))?;
    let path = ns.path();
    let plan2 = plan.clone();
    let (full, replaced, added, alone, text) = std::thread::spawn(move || -> anyhow::Result<_> {
        enter_path(&path)?;
        // One runtime for the whole run, as in the agent.
        let rt = runtime();
        let mut dp = NftablesDataplane::new(IpFamily::V4);
        rt.block_on(dp.probe())?;
        if n == scales()[0] {
            println!("kernel shape after probe(): {:?}", dp.features());
        }
        let text = dp.render(&plan2, None);
        let t = Instant::now();
        rt.block_on(dp.apply(&plan2, None))?;
        let full = t.elapsed();
        let mut state = state;
        let mut prev = plan2;
        // One endpoint replaced by another (same count: elements only).
        let replaced = rounds(&rt, &mut dp, &mut state, &mut prev, n, n / 2, |s, round| {
            s.endpoints[0].addresses = vec![format!("10.246.0.{}", round + 1)];
        })?;
        // One endpoint added (10 -> 11: the first round brings a count no service had).
        let added = rounds(&rt, &mut dp, &mut state, &mut prev, n, n / 3, |s, round| {
            let mut e = s.endpoints[0].clone();
            e.addresses = vec![format!("10.247.0.{}", round + 1)];
            s.endpoints.push(e);
        })?;
        // The backend alone: two precomputed plans (one endpoint apart) applied alternately,
        // so no re-planning of the whole cluster runs between syncs and evicts the caches.
        let mut other = state.clone();
        let slice = other
            .endpoint_slices
            .values_mut()
            .nth(n / 5)
            .ok_or_else(|| anyhow::anyhow!("no slice"))?;
        slice.endpoints[0].addresses = vec!["10.248.0.1".into()];
        let (a, b) = (prev.clone(), plan_of(&other));
        let (ab, ba) = (diff(&a, &b), diff(&b, &a));
        let mut alone = Vec::new();
        for i in 0..ROUNDS {
            let (p, c) = if i % 2 == 0 { (&b, &ab) } else { (&a, &ba) };
            let t = Instant::now();
            rt.block_on(dp.apply(p, Some(c)))?;
            alone.push(t.elapsed());
        }
        Ok((full, replaced, added, alone, text))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("benchmark thread panicked"))??;

    let base = switchyard_conformance::baseline::nft_file(&text)?;
    drop(ns);
    println!(
        "control nftables services={n:>6} endpoints=10 ops={:>7}  full={:>8.1} ms  baseline(nft -f same ruleset)={:>8.1} ms  ratio={:.2}",
        text.lines().count(),
        ms(full),
        ms(base),
        full.as_secs_f64() / base.as_secs_f64(),
    );
    println!(
        "control nftables services={n:>6} incremental, 1 endpoint replaced (median of {ROUNDS})={:>6.2} ms (kernel {:.2} ms; + plan diff {:.2} ms)",
        ms(Rounds::median(&replaced.total)),
        ms(Rounds::median(&replaced.kernel)),
        ms(Rounds::median(&replaced.diff)),
    );
    println!(
        "control nftables services={n:>6} incremental, 1 endpoint added: first (new count cluster-wide)={:>6.2} ms (kernel {:.2} ms), then median of {}={:>6.2} ms (kernel {:.2} ms)",
        ms(added.total[0]),
        ms(added.kernel[0]),
        ROUNDS - 1,
        ms(Rounds::median(&added.total[1..])),
        ms(Rounds::median(&added.kernel[1..])),
    );
    println!(
        "control nftables services={n:>6} incremental, backend alone (2 precomputed plans alternated, no re-planning between; median of {ROUNDS})={:>6.3} ms",
        ms(Rounds::median(&alone)),
    );
    Ok((Rounds::median(&replaced.total), Rounds::median(&alone)))
}

fn datapath() -> anyhow::Result<()> {
    let topo = Topology::build()?;
    let client = topo.origin(From::Pod("pod-a1"))?.0.path();
    let pod: std::net::SocketAddr = "10.244.2.10:8080".parse()?;
    let floor = floor_latencies(&topo.node, &client, pod, SAMPLES, WARMUP)?;
    report("floor (fresh topology)", "pod IP", &floor, None);
    let node = topo.node.path();
    let (tx, rx) = std::sync::mpsc::channel::<Option<Option<switchyard_core::ProxyPlan>>>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
    // The dataplane lives on a thread inside the node namespace (its socket is bound there).
    // Messages: Some(Some(plan)) applies, Some(None) cleans up, None stops.
    let worker = std::thread::spawn(move || {
        let mut dp = NftablesDataplane::new(IpFamily::V4);
        let setup = enter_path(&node).and_then(|()| Ok(block(dp.probe())?));
        while let Ok(Some(msg)) = rx.recv() {
            let r = match (&setup, msg) {
                (Ok(()), Some(plan)) => block(dp.apply(&plan, None))
                    .map(drop)
                    .map_err(anyhow::Error::from),
                (Ok(()), None) => block(dp.cleanup()).map_err(anyhow::Error::from),
                (Err(e), _) => Err(anyhow::anyhow!("{e:#}")),
            };
            let _ = done_tx.send(r);
        }
    });
    let mut results = Vec::new();
    let mut plan10k = None;
    for n in [100usize, 10_000] {
        // One endpoint per other service, as in the iptables benchmark (never walked by the
        // measured connection).
        let mut state = cluster(n - 1, 1);
        add_service(&mut state, n - 1, 1, Some(&["10.244.2.10".to_string()]));
        let plan = plan_of(&state);
        let vip_ip = plan
            .services
            .values()
            .map(|s| s.cluster_ip)
            .max()
            .ok_or_else(|| anyhow::anyhow!("empty plan"))?;
        tx.send(Some(Some(plan.clone())))?;
        done_rx.recv()??;
        if n == 10_000 {
            plan10k = Some((plan, vip_ip));
        }
        let svc = connect_latencies(
            &client,
            std::net::SocketAddr::new(vip_ip, 80),
            SAMPLES,
            WARMUP,
        )?;
        report(&format!("{n} services"), "ClusterIP", &svc, None);
        let direct = connect_latencies(&client, pod, SAMPLES, WARMUP)?;
        report(&format!("{n} services"), "pod IP", &direct, None);
        results.push((svc, direct));
    }
    if let [(s100, d100), (s10k, d10k)] = results.as_slice() {
        report(
            "10000 services",
            "ClusterIP",
            s10k,
            Some(("vs 100 services", s100)),
        );
        report(
            "10000 services",
            "pod IP",
            d10k,
            Some(("vs 100 services", d100)),
        );
    }
    // The floor again, after removing every rule: the reference for every ratio. A fresh
    // topology has a slow phase (direct connections ~65 us p50 instead of ~26 us, for seconds;
    // DESIGN-NOTES 36), so only a floor taken after the measurements, with the same history,
    // compares fairly; the first floor is printed for information.
    tx.send(Some(None))?;
    done_rx.recv()??;
    let after = floor_latencies(&topo.node, &client, pod, SAMPLES, WARMUP)?;
    report("floor (after cleanup)", "pod IP", &after, None);
    if let Some((s10k, d10k)) = results.last() {
        report(
            "10000 services",
            "ClusterIP",
            s10k,
            Some(("vs floor after", &after)),
        );
        report(
            "10000 services",
            "pod IP",
            d10k,
            Some(("vs floor after", &after)),
        );
    }
    // The same comparisons in back-to-back pairs (rules on, rules off), so drift cancels.
    if let Some((plan, vip_ip)) = plan10k {
        for (path, dst) in [
            ("ClusterIP", std::net::SocketAddr::new(vip_ip, 80)),
            ("pod IP", pod),
        ] {
            let pairs = interleaved_p50s(
                PAIRS,
                || {
                    tx.send(Some(Some(plan.clone())))?;
                    done_rx.recv()??;
                    connect_latencies(&client, dst, SAMPLES, WARMUP)
                },
                || {
                    tx.send(Some(None))?;
                    done_rx.recv()??;
                    floor_latencies(&topo.node, &client, pod, SAMPLES, WARMUP)
                },
            )?;
            println!(
                "datapath nftables   10000 services {path:9} vs floor, {}",
                pairs_summary(&pairs)
            );
        }
    }
    tx.send(None)?;
    let _ = worker.join();
    Ok(())
}

fn report(scale: &str, path: &str, samples: &[Duration], against: Option<(&str, &[Duration])>) {
    let (p50, p99) = (quantile_us(samples, 0.5), quantile_us(samples, 0.99));
    let extra = against
        .map(|(label, base)| {
            let b = quantile_us(base, 0.5);
            format!("  p50 {label}: +{:.1} us, ratio {:.3}", p50 - b, p50 / b)
        })
        .unwrap_or_default();
    println!("datapath nftables {scale:>16} {path:9}  p50={p50:>7.1} us  p99={p99:>7.1} us{extra}");
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
