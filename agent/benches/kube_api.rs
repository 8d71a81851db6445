//! The agent fed by the fake API server at scale (issues 10 and 14), as root: Services x k
//! endpoints (one slice each), `--mode nftables` in a fresh network namespace per scale.
//! Per scale it prints RSS after the first sync and after the updates, the time from the last
//! list page served to the first commit, and for one EndpointSlice update: end to end (the
//! fake API server accepts it -> rules committed, from the agent's log) and the agent's own
//! path (event received -> committed, the agent's `change_to_commit_ms`). Figures, not a test.
//!
//! Scales: `SWYD_KUBE_BENCH_SCALES=1000x2,10000x2,100000x10` (the default). The agent binary:
//! this build's, or `SWYD_KUBE_BENCH_BIN=path` (to compare with another build in one run).
//! Besides the human lines, one `result` line per figure for scripts (stable):
//! `result bench=kube_api metric=<name> services=<n> endpoints=<k> median=<v> p90=<v> n=<count> unit=<ms|MB>`
//! with `metric` one of `rss_first_sync`, `rss_after_updates`, `list_to_commit` (n=1),
//! `update_to_commit` (end to end), `change_to_commit` (the agent's own path).

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

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")
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

fn result(metric: &str, n: u32, k: u32, samples: &[f64], unit: &str) {
    println!(
        "result bench=kube_api metric={metric} services={n} endpoints={k} median={:.3} p90={:.3} n={} unit={unit}",
        pct(samples, 0.5),
        pct(samples, 0.9),
        samples.len()
    );
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
    for (n, k) in scales {
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "kube_api bench: {n} Services x {k} endpoints (fake API server, nftables, own netns; \
             agent {agent}; load average {})",
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
        run_scale(&agent, n, k);
    }
}

fn run_scale(agent: &str, services: u32, k: u32) {
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
             switchyard_agent::live=debug",
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
    let rss_first = rss_kb(pid);

    let mut end_to_end = Vec::new();
    let mut own_path = Vec::new();
    for u in 0..UPDATES {
        let i = (u * 997) % services;
        let before = lines_with(&log, " synced ").len();
        let committed_before = lines_with(&log, "change committed").len();
        std::thread::sleep(Duration::from_millis(300));
        let sent = SystemTime::now();
        api.apply(slice(i, k, u + 1));
        let line = wait_for(&log, " synced ", before + 1, Duration::from_secs(120));
        if let Some(t) = log_time(&line, sent) {
            end_to_end.push((t - epoch(sent)) * 1000.0);
        }
        // Builds without the incremental planner do not log it.
        std::thread::sleep(Duration::from_millis(20));
        let committed = lines_with(&log, "change committed");
        if committed.len() > committed_before {
            if let Some(ms) = committed
                .last()
                .and_then(|l| field(l, "change_to_commit_ms"))
            {
                own_path.push(ms);
            }
        }
    }
    let rss_steady = rss_kb(pid);

    let mb = |kb: u64| kb as f64 / 1024.0;
    println!("  first sync: {first}");
    println!(
        "  RSS 0.5 s after the first sync: {:.1} MB, after {UPDATES} updates: {:.1} MB \
         (target at 10k x 2 <= 110 MB, kube-proxy 215 MB: ratio {:.2}; at 100k x 10 <= 1024 MB)",
        mb(rss_first),
        mb(rss_steady),
        mb(rss_steady.max(rss_first)) / 215.0
    );
    println!(
        "  last list page served -> rules committed: {:.0} ms (target <= 1000 ms at 10k)",
        to_commit * 1000.0
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
    result("rss_first_sync", services, k, &[mb(rss_first)], "MB");
    result("rss_after_updates", services, k, &[mb(rss_steady)], "MB");
    result("list_to_commit", services, k, &[to_commit * 1000.0], "ms");
    result("update_to_commit", services, k, &end_to_end, "ms");
    result("change_to_commit", services, k, &own_path, "ms");
    let _ = child.kill();
    let _ = child.wait();
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    let _ = std::fs::remove_dir_all(&dir);
}
