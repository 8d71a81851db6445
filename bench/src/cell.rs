//! One control-plane cell (a mode at a scale), run in its own child process so its RSS is its
//! own: build the synthetic cluster, full sync into a fresh network namespace, then one
//! endpoint change at a time (re-plan, diff, incremental apply — the agent's sync path), then
//! the stock tool loading the same ruleset.

use crate::mode::Mode;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use switchyard_conformance::netns::{enter_path, require_root, unique_prefix, Netns};
use switchyard_core::diff;
use switchyard_synthetic::{cluster, plan_of};

#[derive(Debug, Clone, clap::Args)]
pub struct CellArgs {
    #[arg(long, value_enum)]
    pub mode: Mode,
    #[arg(long)]
    pub services: usize,
    #[arg(long)]
    pub endpoints: usize,
    /// One-endpoint changes to time (each in a different service).
    #[arg(long)]
    pub rounds: usize,
}

/// What a cell measured, in milliseconds and KiB.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellResult {
    pub full_ms: f64,
    pub baseline_ms: f64,
    /// Per round: re-plan + diff, then the incremental apply.
    pub change_plan_ms: Vec<f64>,
    pub change_apply_ms: Vec<f64>,
    /// Peak RSS of the process (state, plan, backend, the full sync's transaction).
    pub peak_rss_kib: u64,
    /// RSS after the syncs: what stays resident between syncs.
    pub rss_kib: u64,
}

pub fn run(args: &CellArgs) -> anyhow::Result<CellResult> {
    require_root()?;
    let (n, k) = (args.services, args.endpoints);
    let ns = Netns::create(&format!("{}-cell", unique_prefix()))?;
    // Single-threaded process: the namespace applies to everything below, including the
    // tools the iptables backend spawns.
    enter_path(&ns.path())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut backend = args
        .mode
        .backend(&ns.path())
        .ok_or_else(|| anyhow::anyhow!("{}: no backend in this build", args.mode.name()))?;
    rt.block_on(backend.probe())?;

    let mut state = cluster(n, k);
    let plan = plan_of(&state);
    let t = Instant::now();
    rt.block_on(backend.apply(&plan, None))?;
    let full = t.elapsed();

    let mut prev = plan.clone();
    let (mut plan_ms, mut apply_ms) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let slice = state
            .endpoint_slices
            .values_mut()
            .nth((n / 2 + round * 7) % n)
            .ok_or_else(|| anyhow::anyhow!("no slice"))?;
        slice.endpoints[0].addresses = vec![format!("10.246.{}.{}", round / 250, 1 + round % 250)];
        let t = Instant::now();
        let next = plan_of(&state);
        let changes = diff(&prev, &next);
        let planned = t.elapsed();
        let t = Instant::now();
        let stats = rt.block_on(backend.apply(&next, Some(&changes)))?;
        apply_ms.push(ms(t.elapsed()));
        plan_ms.push(ms(planned));
        anyhow::ensure!(
            !stats.full && stats.service_ports_written == 1,
            "not a one-service incremental sync: {stats:?}"
        );
        prev = next;
    }
    let (peak_rss_kib, rss_kib) = (status_kib("VmHWM:"), status_kib("VmRSS:"));
    // Rendering the baseline's text costs memory of its own: after the RSS is read.
    let baseline = backend.baseline(&plan)?;
    Ok(CellResult {
        full_ms: ms(full),
        baseline_ms: ms(baseline),
        change_plan_ms: plan_ms,
        change_apply_ms: apply_ms,
        peak_rss_kib,
        rss_kib,
    })
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix(field)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
