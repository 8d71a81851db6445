//! The agent's own path from a state change to the kernel commit, in process, nftables mode,
//! as root in a fresh network namespace (issue 14's target: one endpoint change median
//! <= 1 ms at 10k services, flat within 1.2x from 1k to 100k; full sync of 100k x 10 <= 10 s).
//!
//! Per scale (Services x 2 endpoints, one slice each): a full sync, then rounds that each
//! change one endpoint of a different Service in the tracked state and time
//! `take_touched` + `Planner::update` + `Dataplane::apply` (the path `live.rs` runs), interleaved
//! with rounds of the previous path (`plan()` of everything + `diff` + `apply`) as the baseline
//! of the same run. Then a full sync of 100k Services x 10 endpoints.
//!
//! Output: human lines, plus one `result` line per figure for scripts (stable):
//! `result bench=incremental metric=<name> services=<n> endpoints=<k> path=<p> median=<v> p90=<v> n=<rounds> unit=ms`
//! (`metric` one of `change_to_commit`, `change_to_commit_planning` (its planning part),
//! `full_sync`; `path` `incremental` or `replan`).
//! `SWYD_BENCH_SCALES=1000,10000` limits the scales (investigation only).

use std::process::Command;
use std::time::{Duration, Instant};
use switchyard_core::model::{
    ClusterState, Endpoint, EndpointConditions, EndpointPort, EndpointSlice, ObjectMeta, Service,
    ServicePort, TrackedState, LABEL_SERVICE_NAME,
};
use switchyard_core::{diff, plan, Dataplane, IpFamily, Planner, ProxyConfig};
use switchyard_nftables::NftablesDataplane;

/// The agent's allocator (DESIGN-NOTES 39), so the figures are what the agent runs.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const IN_NETNS: &str = "SWYD_INCREMENTAL_BENCH_NETNS";

fn main() {
    if std::env::var_os(IN_NETNS).is_none() {
        return in_fresh_netns();
    }
    let scales: Vec<usize> = std::env::var("SWYD_BENCH_SCALES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1000, 10_000, 100_000]);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "# incremental bench: state change -> kernel commit, nftables, in process \
         (load average at start: {})",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut medians = Vec::new();
    for &n in &scales {
        let s = one_change(&rt, n, 2);
        println!(
            "one endpoint change at {n:>6} services x 2: incremental median {:.3} ms p90 {:.3} ms \
             (planning {:.3} ms); re-plan + diff median {:.3} ms (incremental/re-plan {:.4})",
            ms(median(&s.incremental)),
            ms(pct(&s.incremental, 0.9)),
            ms(median(&s.planning)),
            ms(median(&s.replan)),
            ms(median(&s.incremental)) / ms(median(&s.replan)),
        );
        result("change_to_commit", n, 2, "incremental", &s.incremental);
        result(
            "change_to_commit_planning",
            n,
            2,
            "incremental",
            &s.planning,
        );
        result("change_to_commit", n, 2, "replan", &s.replan);
        medians.push((n, median(&s.incremental)));
    }
    if let (Some((small, a)), Some((large, b))) = (medians.first(), medians.last()) {
        println!(
            "flatness: median at {large} / median at {small} = {:.2} (target <= 1.2); \
             median at 10k {} (target <= 1 ms)",
            ms(*b) / ms(*a),
            medians
                .iter()
                .find(|(n, _)| *n == 10_000)
                .map_or("not run".into(), |(_, d)| format!("{:.3} ms", ms(*d))),
        );
    }
    if scales.contains(&100_000) {
        full_sync(&rt, 100_000, 10);
    }
}

/// Re-runs this binary inside a new network namespace (so the nftables table is ours alone)
/// and removes the namespace afterwards.
fn in_fresh_netns() {
    let ns = format!("swyd-ibench-{}", std::process::id());
    let ok = Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ip netns add failed: this bench needs root");
    let exe = std::env::current_exe().expect("own path");
    let status = Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(IN_NETNS, "1")
        .status();
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    assert!(status.is_ok_and(|s| s.success()), "bench failed");
}

fn config() -> ProxyConfig {
    ProxyConfig::new(IpFamily::V4, "node-a")
        .with_cluster_cidrs(["10.244.0.0/16".parse().expect("literal CIDR")])
}

fn service_name(i: usize) -> String {
    format!("svc-{i:06}")
}

/// Service `i`: cluster IP 10.96.0.0/12 + i + 1, one port; its slice has `k` endpoints in
/// 10.128.0.0/9 whose addresses shift with `generation`.
fn service(i: usize) -> Service {
    let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
    let ip = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 96, 0, 0)) + n);
    Service {
        meta: ObjectMeta::new("bench", service_name(i)),
        cluster_ips: vec![ip.to_string()],
        ports: vec![ServicePort {
            name: "http".into(),
            port: 80,
            protocol: Some("TCP".into()),
            node_port: None,
        }],
        ..Service::default()
    }
}

fn slice(i: usize, k: usize, generation: usize) -> EndpointSlice {
    let mut meta = ObjectMeta::new("bench", format!("{}-x", service_name(i)));
    meta.labels
        .insert(LABEL_SERVICE_NAME.into(), service_name(i));
    let base = u32::from(std::net::Ipv4Addr::new(10, 128, 0, 0));
    EndpointSlice {
        meta,
        address_type: "IPv4".into(),
        endpoints: (0..k)
            .map(|e| {
                let host = (i * k + e + generation * 7) % (1 << 23);
                let addr = std::net::Ipv4Addr::from(base + u32::try_from(host).unwrap_or(0));
                Endpoint {
                    addresses: vec![addr.to_string()],
                    conditions: EndpointConditions::default(),
                    node_name: Some("node-b".into()),
                    ..Endpoint::default()
                }
            })
            .collect(),
        ports: vec![EndpointPort {
            name: Some("http".into()),
            protocol: Some("TCP".into()),
            port: Some(8080),
        }],
    }
}

fn cluster(n: usize, k: usize) -> TrackedState {
    let mut state = ClusterState::default();
    for i in 0..n {
        state.upsert_service(service(i));
        state.upsert_endpoint_slice(slice(i, k, 0));
    }
    TrackedState::from(state)
}

/// Rounds per path at `n` services: enough for a stable median, bounded in time at 100k
/// (where a re-plan round costs ~0.2 s).
fn rounds_at(n: usize) -> usize {
    if n >= 100_000 {
        40
    } else {
        100
    }
}

/// One endpoint change to commit at `n` services: the incremental path (and its planning
/// part alone), and the re-plan path.
#[derive(Debug, Default)]
struct Samples {
    incremental: Vec<Duration>,
    planning: Vec<Duration>,
    replan: Vec<Duration>,
}

/// Rounds run in blocks of this many per path, alternating: interleaved against load drift,
/// while a re-plan (which rewrites the whole plan's memory) disturbs only the first
/// incremental round after it, as it would in an agent that never re-plans.
const BLOCK: usize = 10;

/// Times one endpoint change to commit at `n` services, both paths in alternating blocks.
fn one_change(rt: &tokio::runtime::Runtime, n: usize, k: usize) -> Samples {
    let config = config();
    let mut tracked = cluster(n, k);
    let mut planner = Planner::new(tracked.state(), config.clone());
    let mut dp = NftablesDataplane::new(IpFamily::V4);
    rt.block_on(dp.probe()).expect("probe nftables");
    rt.block_on(dp.apply(planner.plan(), None))
        .expect("full sync");
    let mut samples = Samples::default();
    for round in 0..2 * rounds_at(n) {
        let i = (round * 7919) % n;
        tracked.upsert_endpoint_slice(slice(i, k, round + 1));
        if (round / BLOCK).is_multiple_of(2) {
            let t = Instant::now();
            let touched = tracked.take_touched();
            let update = planner.update(tracked.state(), &config, &touched);
            let planned = t.elapsed();
            let stats = rt
                .block_on(dp.apply(planner.plan(), Some(&update.changes)))
                .expect("incremental sync");
            samples.incremental.push(t.elapsed());
            samples.planning.push(planned);
            assert!(!stats.full && stats.service_ports_written == 1, "{stats:?}");
        } else {
            // The previous path: the committed plan (kept by the sync loop) against a fresh one.
            let committed = planner.plan().clone();
            let t = Instant::now();
            let next = plan(tracked.state(), &config);
            let changes = diff(&committed, &next);
            let stats = rt
                .block_on(dp.apply(&next, Some(&changes)))
                .expect("re-plan sync");
            samples.replan.push(t.elapsed());
            assert!(!stats.full && stats.service_ports_written == 1, "{stats:?}");
            // Keep the planner on the state the kernel now holds (untimed).
            let touched = tracked.take_touched();
            planner.update(tracked.state(), &config, &touched);
        }
    }
    rt.block_on(dp.cleanup()).expect("cleanup");
    samples
}

/// A full sync of `n` x `k` from the objects: planning and the kernel commit, three times.
fn full_sync(rt: &tokio::runtime::Runtime, n: usize, k: usize) {
    let config = config();
    let tracked = cluster(n, k);
    let mut dp = NftablesDataplane::new(IpFamily::V4);
    rt.block_on(dp.probe()).expect("probe nftables");
    let mut totals = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let planner = Planner::new(tracked.state(), config.clone());
        let planned = t.elapsed();
        let stats = rt
            .block_on(dp.apply(planner.plan(), None))
            .expect("full sync");
        let total = t.elapsed();
        println!(
            "full sync {n} services x {k}: plan {:.0} ms, apply {:.0} ms (kernel {:.0} ms), \
             total {:.0} ms (target <= 10000 ms)",
            ms(planned),
            ms(total - planned),
            ms(stats.kernel_time),
            ms(total)
        );
        totals.push(total);
        drop(planner);
    }
    result("full_sync", n, k, "incremental", &totals);
    rt.block_on(dp.cleanup()).expect("cleanup");
}

fn result(metric: &str, n: usize, k: usize, path: &str, samples: &[Duration]) {
    println!(
        "result bench=incremental metric={metric} services={n} endpoints={k} path={path} \
         median={:.4} p90={:.4} n={} unit=ms",
        ms(median(samples)),
        ms(pct(samples, 0.9)),
        samples.len()
    );
}

fn median(v: &[Duration]) -> Duration {
    pct(v, 0.5)
}

fn pct(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    let i = (v.len().saturating_sub(1) as f64 * p).round() as usize;
    v.get(i).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
