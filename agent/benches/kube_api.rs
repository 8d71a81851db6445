//! The agent fed by the fake API server at scale (issue 10's performance targets), as root:
//! 10k Services x 2 endpoints (one slice each; the shared synthetic cluster of
//! `switchyard-synthetic`), `--mode nftables` in a fresh network namespace.
//! Prints: RSS after the first sync, time from the last list page served to the first commit,
//! and one EndpointSlice update -> committed (median, p90) end to end. Figures, not a test.

// The bench uses a subset of the fake's controls.
#[allow(dead_code)]
#[path = "../tests/fake_apiserver/mod.rs"]
mod fake_apiserver;

use fake_apiserver::{FakeApi, Res};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchyard_synthetic::objects;

const SERVICES: u32 = 10_000;
const UPDATES: u32 = 30;

/// Service `i` of the shared synthetic cluster, as the API serves it.
fn service(i: u32) -> Value {
    objects::service(&switchyard_synthetic::service(i as usize))
}

/// Its slice (2 endpoints); generation `g > 0` moves the first endpoint, as a rollout would.
fn slice(i: u32, generation: u32) -> Value {
    let mut s = switchyard_synthetic::endpoint_slice(i as usize, 2, None);
    if generation > 0 {
        s.endpoints[0].addresses = vec![format!(
            "10.246.{}.{}",
            generation / 250,
            1 + generation % 250
        )];
    }
    objects::endpoint_slice(&s)
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

fn synced_lines(log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" synced "))
        .map(str::to_string)
        .collect()
}

fn wait_synced(log: &std::path::Path, count: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let lines = synced_lines(log);
        if lines.len() >= count {
            return lines[count - 1].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no sync #{count}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn main() {
    let ns = format!("swyd-kbench-{}", std::process::id());
    let ok = Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ip netns add failed (run as root)");
    let _ = Command::new("ip")
        .args(["-n", &ns, "link", "set", "lo", "up"])
        .status();
    let api = FakeApi::start_in_netns(Some(&ns));
    let dir = std::env::temp_dir().join(format!("switchyard-kbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeconfig = api.kubeconfig(&dir);
    api.apply(objects::node(&switchyard_synthetic::dump::node_a()));
    for i in 0..SERVICES {
        api.apply(service(i));
        api.apply(slice(i, 0));
    }
    api.stall_list(Res::EndpointSlices, true);
    let log = dir.join("agent.log");
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            env!("CARGO_BIN_EXE_switchyard"),
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
            "info,kube=warn,switchyard_agent::run=debug,switchyard_agent::source=debug",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start switchyard");
    std::thread::sleep(Duration::from_secs(3));
    api.stall_list(Res::EndpointSlices, false);
    let first = wait_synced(&log, 1);
    let served = api.last_list_served().expect("lists served");
    let to_commit = log_time(&first, served).unwrap_or(0.0) - epoch(served);
    std::thread::sleep(Duration::from_millis(500));
    let pid = child.id();
    let rss_kb = || -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    };
    let rss_first = rss_kb();

    let mut latencies = Vec::new();
    for n in 0..UPDATES {
        let i = (n * 997) % SERVICES;
        let before = synced_lines(&log).len();
        std::thread::sleep(Duration::from_millis(300));
        let sent = SystemTime::now();
        api.apply(slice(i, n + 1));
        let line = wait_synced(&log, before + 1);
        if let Some(t) = log_time(&line, sent) {
            latencies.push((t - epoch(sent)) * 1000.0);
        }
    }
    let rss_steady = rss_kb();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };

    println!(
        "kube_api bench: {SERVICES} Services x 2 endpoints (fake API server, nftables, own netns)"
    );
    println!("  first sync: {first}");
    let mb = |kb: u64| kb as f64 / 1024.0;
    println!(
        "  RSS 0.5 s after the first sync: {:.1} MB, after {UPDATES} updates: {:.1} MB \
         (target <= 110 MB; kube-proxy 215 MB: ratio {:.2})",
        mb(rss_first),
        mb(rss_steady),
        mb(rss_first) / 215.0
    );
    println!(
        "  last list page served -> rules committed: {:.0} ms (target <= 1000 ms)",
        to_commit * 1000.0
    );
    println!("  one EndpointSlice update -> committed: median {:.2} ms, p90 {:.2} ms, n={} (target <= 5 ms; kube-proxy nftables 3050 ms: ratio {:.4})",
             pct(0.5), pct(0.9), latencies.len(), pct(0.5) / 3050.0);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    for l in text
        .lines()
        .rev()
        .take(6)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        println!("  log: {l}");
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    let _ = std::fs::remove_dir_all(&dir);
}
