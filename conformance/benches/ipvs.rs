//! IPVS backend benchmark: `cargo bench -p switchyard-conformance --bench ipvs` (root, qemu).
//!
//! This host has no IPVS, so the binary boots Debian's 6.1 kernel under qemu (TCG) and runs
//! itself inside; TCG is slow, so every figure is a ratio against a baseline measured in the
//! same guest, interleaved and repeated:
//! - full sync of 10k services x 10 endpoints (virtual services, destinations, addresses and
//!   helper rules) against `ipvsadm -R` of the same virtual services and destinations, each
//!   into a fresh namespace, alternated, median of `ROUNDS`;
//! - one endpoint changed at 1k and 10k services: netlink operations per sync (must not grow)
//!   and the median time of the commit, the change planned by `core::Planner` as the agent's
//!   API source does (planning is not timed: it is the same for every mode); both clusters
//!   exist at once and their commits alternate;
//! - connect-to-first-byte from a pod through a ClusterIP at 100 and 10k services (the others
//!   with one endpoint each), in four pairs whose order alternates; median of the pairs'
//!   ratios.
//!
//! `SWYD_IPVS_BENCH_PARTS` (comma-separated `full`, `endpoint`, `datapath`; default all)
//! runs only some parts: under TCG on a loaded 2-core machine the full-sync part alone takes
//! about an hour (DESIGN-NOTES 260), so the parts can be run as separate boots. `RUST_LOG` is
//! passed to the guest, which then logs to its stdout.

use std::time::{Duration, Instant};
use switchyard_conformance::netns::{enter_path, require_root, timed_in, unique_prefix, Netns};
use switchyard_conformance::probe::{connect_latencies, quantile_us};
use switchyard_conformance::topology::{From, Topology};
use switchyard_conformance::vm::{Kernel, Payload, Vm};
use switchyard_core::model::TrackedState;
use switchyard_core::{Dataplane, IpFamily, Planner, ProxyConfig, ProxyPlan};
use switchyard_ipvs::{IpvsConfig, IpvsDataplane};
use switchyard_synthetic::{add_service, cluster, plan_of};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const GUEST: &str = "SWYD_IPVS_BENCH_GUEST";
const PARTS: &str = "SWYD_IPVS_BENCH_PARTS";
const ROUNDS: usize = 3;
const CHANGES: usize = 40;
const SAMPLES: usize = 600;
const WARMUP: usize = 200;
/// Datapath: (100, 10k) pairs, alternating which goes first.
const PAIRS: usize = 4;

fn main() -> anyhow::Result<()> {
    require_root()?;
    if std::env::var_os(GUEST).is_some() {
        return guest();
    }
    let vm = Vm::new(Kernel::Debian61)?;
    let started = Instant::now();
    let mut payload = Payload::new(["/payload/ipvs-bench"])
        .file(std::env::current_exe()?, "/payload/ipvs-bench")
        .env(GUEST, "1")
        .timeout(Duration::from_secs(5400));
    if let Ok(parts) = std::env::var(PARTS) {
        payload = payload.env(PARTS, &parts);
    }
    if let Ok(filter) = std::env::var("RUST_LOG") {
        payload = payload.env("RUST_LOG", &filter);
    }
    let out = vm.run(&payload)?;
    print!("{}", out.stdout);
    println!(
        "# guest {} exited {} after {:.0} s",
        vm.kernel().release,
        out.exit_code,
        started.elapsed().as_secs_f64()
    );
    anyhow::ensure!(out.exit_code == 0, "guest run failed:\n{}", out.console);
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn guest() -> anyhow::Result<()> {
    println!("# ipvs backend benchmark, in the guest (TCG: compare ratios, not times)");
    // `RUST_LOG=switchyard_ipvs=debug,switchyard_nftables=debug` prints each sync's steps
    // (`ipvs sync`, `nftables sync`), to see which of them grows with the cluster.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stdout)
            .with_ansi(false)
            .init();
    }
    let parts = std::env::var(PARTS).unwrap_or_else(|_| "full,endpoint,datapath".into());
    let wanted = |part: &str| parts.split(',').any(|p| p.trim() == part);
    if wanted("full") {
        full_sync(10_000, 10)?;
    }
    if wanted("endpoint") {
        one_endpoint()?;
    }
    if wanted("datapath") {
        datapath()?;
    }
    Ok(())
}

/// Our full sync into a fresh namespace; returns its time and the `ipvsadm -R` text of the
/// same virtual services and destinations.
fn ours(plan: &ProxyPlan) -> anyhow::Result<(Duration, String)> {
    let ns = Netns::create(&format!("{}-ipvsb", unique_prefix()))?;
    let path = ns.path();
    let plan = plan.clone();
    std::thread::spawn(move || -> anyhow::Result<(Duration, String)> {
        enter_path(&path)?;
        let rt = runtime();
        let mut dp = IpvsDataplane::new(IpFamily::V4, IpvsConfig::default());
        rt.block_on(dp.probe())?;
        let restore: String = dp
            .transaction(&plan, None)
            .to_string()
            .lines()
            .filter(|l| l.starts_with("-A ") || l.starts_with("-a "))
            .map(|l| format!("{l}\n"))
            .collect();
        let t = Instant::now();
        rt.block_on(dp.apply(&plan, None))?;
        Ok((t.elapsed(), restore))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("benchmark thread panicked"))?
}

fn full_sync(n: usize, k: usize) -> anyhow::Result<()> {
    let plan = plan_of(&cluster(n, k));
    let (mut mine, mut base) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let (t, restore) = ours(&plan)?;
        mine.push(t);
        let ns = Netns::create(&format!("{}-ipvsadm", unique_prefix()))?;
        base.push(timed_in(&ns, "ipvsadm", &["-R"], &restore)?);
        if mine.len() == 1 {
            println!(
                "full sync services={n} endpoints={k}: {} virtual services, {} destinations",
                restore.lines().filter(|l| l.starts_with("-A ")).count(),
                restore.lines().filter(|l| l.starts_with("-a ")).count()
            );
        }
    }
    let each: Vec<String> = mine
        .iter()
        .zip(&base)
        .map(|(a, b)| format!("{:.0}/{:.0}", ms(*a), ms(*b)))
        .collect();
    println!(
        "full sync services={n} endpoints={k}: median {:.0} ms (ours, with addresses and helper rules) vs {:.0} ms (ipvsadm -R, same services), ratio {:.2}; rounds ours/ipvsadm ms: {}",
        ms(median(&mine)),
        ms(median(&base)),
        median(&mine).as_secs_f64() / median(&base).as_secs_f64(),
        each.join(" ")
    );
    Ok(())
}

/// One cluster of `n` services in its own namespace, synced by its own thread, which commits
/// one endpoint change each time it is asked and answers with the commit's time and
/// operation count.
struct EndpointCluster {
    n: usize,
    ask: std::sync::mpsc::Sender<usize>,
    answers: std::sync::mpsc::Receiver<anyhow::Result<(Duration, usize)>>,
    thread: std::thread::JoinHandle<()>,
}

impl EndpointCluster {
    /// Creates the namespace and syncs all `n` services (not timed); returns once ready.
    fn start(n: usize) -> anyhow::Result<(Self, Netns)> {
        let ns = Netns::create(&format!("{}-ipvse{n}", unique_prefix()))?;
        let path = ns.path();
        let (ask, rounds) = std::sync::mpsc::channel::<usize>();
        let (answer, answers) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let setup = || -> anyhow::Result<_> {
                enter_path(&path)?;
                let rt = runtime();
                let config = ProxyConfig::new(IpFamily::V4, "node-a")
                    .with_cluster_cidrs(["10.244.0.0/16".parse()?]);
                let state = TrackedState::from(cluster(n, 10));
                let planner = Planner::new(state.state(), config.clone());
                let mut dp = IpvsDataplane::new(IpFamily::V4, IpvsConfig::default());
                rt.block_on(dp.probe())?;
                rt.block_on(dp.apply(planner.plan(), None))?;
                Ok((rt, config, state, planner, dp))
            };
            let (rt, config, mut state, mut planner, mut dp) = match setup() {
                Ok(s) => {
                    let _ = answer.send(Ok((Duration::ZERO, 0)));
                    s
                }
                Err(e) => {
                    let _ = answer.send(Err(e));
                    return;
                }
            };
            for round in rounds {
                let mut change = || -> anyhow::Result<(Duration, usize)> {
                    let mut slice = state
                        .state()
                        .endpoint_slices
                        .values()
                        .nth((n / 2 + round * 7) % n)
                        .cloned()
                        .ok_or_else(|| anyhow::anyhow!("no slice"))?;
                    slice.endpoints[0].addresses = vec![format!("10.246.0.{}", round % 250 + 1)];
                    state.upsert_endpoint_slice(slice);
                    let touched = state.take_touched();
                    let update = planner.update(state.state(), &config, &touched);
                    let t = Instant::now();
                    let stats = rt.block_on(dp.apply(planner.plan(), Some(&update.changes)))?;
                    let took = t.elapsed();
                    anyhow::ensure!(!stats.full && stats.service_ports_written == 1, "{stats:?}");
                    Ok((took, stats.operations))
                };
                if answer.send(change()).is_err() {
                    return;
                }
            }
        });
        let ready = answers
            .recv()
            .map_err(|_| anyhow::anyhow!("cluster of {n} services: thread ended"))?;
        ready?;
        Ok((
            Self {
                n,
                ask,
                answers,
                thread,
            },
            ns,
        ))
    }

    fn change(&self, round: usize) -> anyhow::Result<(Duration, usize)> {
        self.ask
            .send(round)
            .map_err(|_| anyhow::anyhow!("cluster of {} services: thread ended", self.n))?;
        self.answers
            .recv()
            .map_err(|_| anyhow::anyhow!("cluster of {} services: thread ended", self.n))?
    }

    fn stop(self) -> anyhow::Result<()> {
        drop(self.ask);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("benchmark thread panicked"))
    }
}

/// One endpoint changed at 1k and at 10k services: both clusters exist at once (each in its
/// namespace), and their commits alternate, which one goes first swapping every round, so
/// both sizes see the same machine. Prints each size's median commit time and operation
/// counts, and the ratio of the medians.
fn one_endpoint() -> anyhow::Result<()> {
    let (small, _small_ns) = EndpointCluster::start(1_000)?;
    let (large, _large_ns) = EndpointCluster::start(10_000)?;
    let mut results = [(Vec::new(), Vec::new()), (Vec::new(), Vec::new())];
    for round in 0..CHANGES {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let cluster = if i == 0 { &small } else { &large };
            let (took, ops) = cluster.change(round)?;
            results[i].0.push(took);
            results[i].1.push(ops);
        }
    }
    small.stop()?;
    large.stop()?;
    let span = |ops: &[usize]| {
        (
            ops.iter().copied().min().unwrap_or(0),
            ops.iter().copied().max().unwrap_or(0),
        )
    };
    for (n, (times, ops)) in [1_000, 10_000].iter().zip(&results) {
        let (lo, hi) = span(ops);
        println!(
            "one endpoint changed at services={n}: median {:.2} ms over {CHANGES} commits; operations per sync {lo}..{hi}",
            ms(median(times)),
        );
    }
    println!(
        "one endpoint changed: operations {} at 1k, {} at 10k; time ratio 10k/1k = {:.2} (commits alternated)",
        span(&results[0].1).1,
        span(&results[1].1).1,
        median(&results[1].0).as_secs_f64() / median(&results[0].0).as_secs_f64()
    );
    Ok(())
}

fn datapath() -> anyhow::Result<()> {
    let topo = Topology::build()?;
    let client = topo.origin(From::Pod("pod-a1"))?.0.path();
    let node = topo.node.path();
    let (tx, rx) = std::sync::mpsc::channel::<Option<ProxyPlan>>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
    let worker = std::thread::spawn(move || {
        let rt = runtime();
        let mut dp = IpvsDataplane::new(IpFamily::V4, IpvsConfig::default());
        let setup = enter_path(&node).and_then(|()| Ok(rt.block_on(dp.probe())?));
        while let Ok(Some(plan)) = rx.recv() {
            let r = match &setup {
                Ok(()) => rt
                    .block_on(dp.apply(&plan, None))
                    .map(drop)
                    .map_err(anyhow::Error::from),
                Err(e) => Err(anyhow::anyhow!("{e:#}")),
            };
            let _ = done_tx.send(r);
        }
        let _ = rt.block_on(dp.cleanup());
    });
    let mut plans = Vec::new();
    for n in [100usize, 10_000] {
        let mut state = cluster(n - 1, 1);
        add_service(&mut state, n - 1, 1, Some(&["10.244.2.10".to_string()]));
        let plan = plan_of(&state);
        let vip = plan
            .services
            .values()
            .map(|s| s.cluster_ip)
            .max()
            .ok_or_else(|| anyhow::anyhow!("empty plan"))?;
        plans.push((n, plan, vip));
    }
    // Pairs of (100, 10k) measurements, the order swapped every pair so neither size always
    // follows the other's sync; the figure is the median of the pairs' ratios.
    let mut ratios = Vec::new();
    for pair in 0..PAIRS {
        let mut p50 = [0.0f64; 2];
        let order = if pair % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let (n, plan, vip) = &plans[i];
            tx.send(Some(plan.clone()))?;
            done_rx.recv()??;
            let s = connect_latencies(
                &client,
                std::net::SocketAddr::new(*vip, 80),
                SAMPLES,
                WARMUP,
            )?;
            p50[i] = quantile_us(&s, 0.5);
            println!(
                "datapath ClusterIP at services={n}: p50 {:.1} us, p99 {:.1} us",
                p50[i],
                quantile_us(&s, 0.99)
            );
        }
        ratios.push(p50[1] / p50[0]);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "datapath first packet through a ClusterIP: 10k/100 services p50 ratio, median of {PAIRS} pairs {:.3} (pairs: {})",
        (ratios[(PAIRS - 1) / 2] + ratios[PAIRS / 2]) / 2.0,
        ratios
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    tx.send(None)?;
    let _ = worker.join();
    Ok(())
}
