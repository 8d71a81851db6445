//! The agent fed by the fake API server at scale (issues 10 and 14), as root: Services x k
//! endpoints (one slice each), `--mode nftables` in a fresh network namespace per run.
//! Per scale it prints RSS after the first sync (and the peak, `VmHWM`) and after the
//! updates, the time from the last list page served to the first commit with its stages (from
//! the agent's log: lists converted, setup done, planned, kernel committed), and for one
//! EndpointSlice update: end to end (the fake API server accepts it -> rules committed, from
//! the agent's log) and the agent's own path (event received -> committed, the agent's
//! `change_to_commit_ms`). Figures, not a test.
//!
//! Scales: `SWYD_KUBE_BENCH_SCALES=1000x2,10000x2,100000x10` (the default). The agent binary:
//! this build's, or `SWYD_KUBE_BENCH_BIN=path`. `SWYD_KUBE_BENCH_BASELINE=path` runs another
//! build too, interleaved run by run (baseline, this, baseline, ...), and prints ratios;
//! `SWYD_KUBE_BENCH_ROUNDS=n` (default 1) repeats each scale, figures are medians over the
//! rounds (update latencies: over all updates of all rounds).
//! Besides the human lines, one `result` line per figure for scripts (stable):
//! `result bench=kube_api metric=<name> services=<n> endpoints=<k> median=<v> p90=<v> n=<count> unit=<ms|MB>`
//! with `metric` one of `rss_first_sync`, `rss_peak_first_sync`, `rss_after_updates`,
//! `list_to_commit` (n = rounds), `update_to_commit` (end to end), `change_to_commit` (the
//! agent's own path); the baseline's lines carry ` build=baseline` at the end.

// The bench uses a subset of the fake's controls.
#[allow(dead_code)]
#[path = "../tests/fake_apiserver/mod.rs"]
mod fake_apiserver;

use fake_apiserver::{FakeApi, Res};
use serde_json::{json, Value};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const UPDATES: u32 = 30;

fn service(i: u32) -> Value {
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + i + 1).to_string();
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": format!("svc-{i}"), "namespace": "bench"},
           "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip], "ipFamilies": ["IPv4"],
                    "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}]}})
}

fn slice(i: u32, k: u32, generation: u32) -> Value {
    let ep = |n: u32| {
        let host = (k * i + n + generation * 7) % (1 << 23);
        let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + host).to_string();
        json!({"addresses": [ip], "nodeName": "node-b",
               "conditions": {"ready": true, "serving": true, "terminating": false}})
    };
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": format!("svc-{i}-x"), "namespace": "bench",
                        "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
           "addressType": "IPv4", "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
           "endpoints": (0..k).map(ep).collect::<Vec<_>>()})
}

/// Seconds since the Unix epoch of a tracing timestamp `2026-12-02T19:59:02.278397Z` (same day
/// as `reference`, which the bench's runs always are).
fn log_time(line: &str, reference: SystemTime) -> Option<f64> {
    let t = line.split_whitespace().next()?;
    let clock = t.split_once('T')?.1.trim_end_matches('Z');
    let mut parts = clock.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    let epoch = reference.duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
    let day = (epoch / 86400.0).floor() * 86400.0;
    Some(day + h * 3600.0 + m * 60.0 + s)
}

fn epoch(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn lines_with(log: &std::path::Path, needle: &str) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

fn wait_for(log: &std::path::Path, needle: &str, count: usize, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let lines = lines_with(log, needle);
        if lines.len() >= count {
            return lines[count - 1].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} #{count}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The value of `key=` in a log line.
fn field(line: &str, key: &str) -> Option<f64> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    line[at..].split_whitespace().next()?.parse().ok()
}

/// A `/proc/PID/status` memory field (`VmRSS:`, `VmHWM:`), in kB.
fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn pct(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

fn result(metric: &str, n: u32, k: u32, samples: &[f64], unit: &str, build: &str) {
    let tag = if build == "this" {
        String::new()
    } else {
        format!(" build={build}")
    };
    println!(
        "result bench=kube_api metric={metric} services={n} endpoints={k} median={:.3} p90={:.3} n={} unit={unit}{tag}",
        pct(samples, 0.5),
        pct(samples, 0.9),
        samples.len()
    );
}

/// The stages of the first sync, as the agent logs them: (label, log needle). The time of
/// each is that of the last matching line up to the first `synced` line; a build that does
/// not log a stage skips it.
const STAGES: [(&str, &str); 5] = [
    ("lists converted", "initial list complete"),
    ("setup done", " planning "),
    ("planned", " planned "),
    ("kernel committed", "nftables sync"),
    ("synced", " synced "),
];

/// What one run of the agent at one scale measured.
#[derive(Debug, Default)]
struct Run {
    rss_first_mb: f64,
    peak_first_mb: f64,
    rss_steady_mb: f64,
    to_commit_ms: f64,
    /// Per stage of [`STAGES`]: ms after the last list page was served.
    stages: Vec<Option<f64>>,
    plan_ms: Option<f64>,
    kernel_ms: Option<f64>,
    kernel_only_ms: Option<f64>,
    end_to_end: Vec<f64>,
    own_path: Vec<f64>,
}

/// Every run of one build at one scale.
#[derive(Debug, Default)]
struct Runs(Vec<Run>);

impl Runs {
    fn each(&self, f: impl Fn(&Run) -> Option<f64>) -> Vec<f64> {
        self.0.iter().filter_map(f).collect()
    }
    fn median(&self, f: impl Fn(&Run) -> Option<f64>) -> f64 {
        pct(&self.each(f), 0.5)
    }
    fn pooled(&self, f: impl Fn(&Run) -> &[f64]) -> Vec<f64> {
        self.0.iter().flat_map(|r| f(r).iter().copied()).collect()
    }
}

fn main() {
    let scales: Vec<(u32, u32)> = std::env::var("SWYD_KUBE_BENCH_SCALES")
        .unwrap_or_else(|_| "1000x2,10000x2,100000x10".into())
        .split(',')
        .filter_map(|s| {
            let (n, k) = s.trim().split_once('x')?;
            Some((n.parse().ok()?, k.parse().ok()?))
        })
        .collect();
    let agent = std::env::var("SWYD_KUBE_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_switchyard").to_string());
    let baseline = std::env::var("SWYD_KUBE_BENCH_BASELINE").ok();
    let rounds: u32 = std::env::var("SWYD_KUBE_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1)
        .max(1);
    let mut builds = Vec::new();
    if let Some(b) = &baseline {
        builds.push(("baseline", b.as_str()));
    }
    builds.push(("this", agent.as_str()));
    for (n, k) in scales {
        println!(
            "kube_api bench: {n} Services x {k} endpoints (fake API server, nftables, own netns; \
             {rounds} round(s); agent {agent}{}; load average {})",
            baseline
                .as_ref()
                .map(|b| format!(", baseline {b}, interleaved"))
                .unwrap_or_default(),
            load()
        );
        let mut runs: Vec<Runs> = builds.iter().map(|_| Runs::default()).collect();
        for round in 0..rounds {
            for (i, (name, bin)) in builds.iter().enumerate() {
                let run = run_scale(bin, n, k);
                println!(
                    "  round {round} {name}: RSS {:.1} MB (peak {:.1}), last page -> committed \
                     {:.0} ms, update median {:.2} ms; load average {}",
                    run.rss_first_mb,
                    run.peak_first_mb,
                    run.to_commit_ms,
                    pct(&run.end_to_end, 0.5),
                    load()
                );
                runs[i].0.push(run);
            }
        }
        for ((name, _), r) in builds.iter().zip(&runs) {
            report(name, n, k, r);
        }
        if let [base, this] = &runs[..] {
            let ratio = |f: &dyn Fn(&Runs) -> f64| f(this) / f(base);
            println!(
                "  this / baseline (medians): RSS after the first sync {:.2}, peak {:.2}, \
                 after updates {:.2}, last page -> committed {:.2}, update end to end {:.2}",
                ratio(&|r| r.median(|x| Some(x.rss_first_mb))),
                ratio(&|r| r.median(|x| Some(x.peak_first_mb))),
                ratio(&|r| r.median(|x| Some(x.rss_steady_mb))),
                ratio(&|r| r.median(|x| Some(x.to_commit_ms))),
                ratio(&|r| pct(&r.pooled(|x| &x.end_to_end), 0.5)),
            );
        }
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn report(build: &str, n: u32, k: u32, runs: &Runs) {
    let rss_first = runs.each(|r| Some(r.rss_first_mb));
    let peak = runs.each(|r| Some(r.peak_first_mb));
    let steady = runs.each(|r| Some(r.rss_steady_mb));
    let to_commit = runs.each(|r| Some(r.to_commit_ms));
    let end_to_end = runs.pooled(|r| &r.end_to_end);
    let own_path = runs.pooled(|r| &r.own_path);
    let range = |v: &[f64]| {
        let (lo, hi) = (pct(v, 0.0), pct(v, 1.0));
        format!("{lo:.1}-{hi:.1}")
    };
    println!("  [{build}] medians over {} run(s):", runs.0.len());
    println!(
        "  RSS 0.5 s after the first sync: {:.1} MB ({}; peak before it {:.1} MB), after {UPDATES} \
         updates: {:.1} MB (target at 10k x 2 <= 110 MB, kube-proxy 215 MB: ratio {:.2}; at \
         100k x 10 <= 1024 MB)",
        pct(&rss_first, 0.5),
        range(&rss_first),
        pct(&peak, 0.5),
        pct(&steady, 0.5),
        pct(&rss_first, 0.5).max(pct(&steady, 0.5)) / 215.0
    );
    println!(
        "  last list page served -> rules committed: {:.0} ms ({}; target <= 1000 ms at 10k)",
        pct(&to_commit, 0.5),
        range(&to_commit)
    );
    let stages: Vec<String> = STAGES
        .iter()
        .enumerate()
        .filter_map(|(i, (label, _))| {
            let at = runs.each(|r| r.stages.get(i).copied().flatten());
            (!at.is_empty()).then(|| format!("{label} +{:.0}", pct(&at, 0.5)))
        })
        .collect();
    println!(
        "    stages (ms after the last page, medians): {}; core planning {:.0} ms, \
         nftables render+commit {:.0} ms (the kernel's part {:.0} ms)",
        stages.join(", "),
        runs.median(|r| r.plan_ms),
        runs.median(|r| r.kernel_ms),
        runs.median(|r| r.kernel_only_ms),
    );
    println!(
        "  one EndpointSlice update, end to end (API server -> committed): median {:.2} ms, \
         p90 {:.2} ms, n={} (target <= 5 ms at 10k; kube-proxy nftables 3050 ms: ratio {:.4})",
        pct(&end_to_end, 0.5),
        pct(&end_to_end, 0.9),
        end_to_end.len(),
        pct(&end_to_end, 0.5) / 3050.0
    );
    println!(
        "  the agent's own path (event received -> committed): median {:.3} ms, p90 {:.3} ms, \
         n={} (target <= 1 ms)",
        pct(&own_path, 0.5),
        pct(&own_path, 0.9),
        own_path.len()
    );
    result("rss_first_sync", n, k, &rss_first, "MB", build);
    result("rss_peak_first_sync", n, k, &peak, "MB", build);
    result("rss_after_updates", n, k, &steady, "MB", build);
    result("list_to_commit", n, k, &to_commit, "ms", build);
    result("update_to_commit", n, k, &end_to_end, "ms", build);
    result("change_to_commit", n, k, &own_path, "ms", build);
}

fn run_scale(agent: &str, services: u32, k: u32) -> Run {
    let ns = format!("swyd-kbench-{}-{services}", std::process::id());
    let ok = Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ip netns add failed (run as root)");
    let _ = Command::new("ip")
        .args(["-n", &ns, "link", "set", "lo", "up"])
        .status();
    let api = FakeApi::start_in_netns(Some(&ns));
    let dir = std::env::temp_dir().join(format!(
        "switchyard-kbench-{}-{services}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeconfig = api.kubeconfig(&dir);
    api.apply(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"},
        "status": {"addresses": [{"type": "InternalIP", "address": "192.168.50.1"}]}}),
    );
    for i in 0..services {
        api.apply(service(i));
        api.apply(slice(i, k, 0));
    }
    api.stall_list(Res::EndpointSlices, true);
    let log = dir.join("agent.log");
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            agent,
            "--mode",
            "nftables",
            "--kubeconfig",
            kubeconfig.to_str().expect("utf8"),
            "--hostname-override",
            "node-a",
            "--min-sync-period",
            "100ms",
        ])
        .env(
            "RUST_LOG",
            "info,kube=warn,switchyard_agent::run=debug,switchyard_agent::source=debug,\
             switchyard_agent::live=debug,switchyard_nftables=debug",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start switchyard");
    std::thread::sleep(Duration::from_secs(3));
    api.stall_list(Res::EndpointSlices, false);
    let first = wait_for(&log, " synced ", 1, Duration::from_secs(600));
    let served = api.last_list_served().expect("lists served");
    let to_commit = log_time(&first, served).unwrap_or(0.0) - epoch(served);
    std::thread::sleep(Duration::from_millis(500));
    let pid = child.id();
    let mut run = Run {
        rss_first_mb: mb(status_kb(pid, "VmRSS:")),
        peak_first_mb: mb(status_kb(pid, "VmHWM:")),
        to_commit_ms: to_commit * 1000.0,
        ..Run::default()
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let until_synced: Vec<&str> = text
        .lines()
        .scan(false, |done, l| {
            let keep = !*done;
            *done |= l.contains(" synced ");
            keep.then_some(l)
        })
        .collect();
    let last = |needle: &str| until_synced.iter().rev().find(|l| l.contains(needle));
    run.stages = STAGES
        .iter()
        .map(|(_, needle)| {
            let t = log_time(last(needle)?, served)?;
            Some((t - epoch(served)) * 1000.0)
        })
        .collect();
    run.plan_ms = last(" planned ").and_then(|l| field(l, "plan_ms"));
    run.kernel_ms = last("nftables sync").and_then(|l| field(l, "total_ms"));
    run.kernel_only_ms = last(" synced ").and_then(|l| field(l, "kernel_ms"));

    for u in 0..UPDATES {
        let i = (u * 997) % services;
        let before = lines_with(&log, " synced ").len();
        let committed_before = lines_with(&log, "change committed").len();
        std::thread::sleep(Duration::from_millis(300));
        let sent = SystemTime::now();
        api.apply(slice(i, k, u + 1));
        let line = wait_for(&log, " synced ", before + 1, Duration::from_secs(120));
        if let Some(t) = log_time(&line, sent) {
            run.end_to_end.push((t - epoch(sent)) * 1000.0);
        }
        // Builds without the incremental planner do not log it.
        std::thread::sleep(Duration::from_millis(20));
        let committed = lines_with(&log, "change committed");
        if committed.len() > committed_before {
            if let Some(ms) = committed
                .last()
                .and_then(|l| field(l, "change_to_commit_ms"))
            {
                run.own_path.push(ms);
            }
        }
    }
    run.rss_steady_mb = mb(status_kb(pid, "VmRSS:"));
    let _ = child.kill();
    let _ = child.wait();
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    let _ = std::fs::remove_dir_all(&dir);
    run
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}
