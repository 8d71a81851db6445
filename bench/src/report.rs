//! The sweep: every mode x scale, control plane (one child process per cell, repeated and
//! interleaved with its baseline) then first-packet latency; then the files.

use crate::cell::CellResult;
use crate::datapath;
use crate::figures::{self, median, Metric, Row};
use crate::machine::Machine;
use crate::mode::Mode;
use crate::svg::{Chart, Series};
use std::path::Path;
use std::process::Command;
use switchyard_conformance::netns::require_root;

/// Endpoints per service in every control-plane cell.
pub const ENDPOINTS: usize = 10;

/// One-endpoint changes per cell: fewer at 100k, where one iptables-legacy change costs
/// seconds. Fixed, so medians compare across commits.
fn rounds(services: usize) -> usize {
    if services >= 100_000 {
        5
    } else {
        20
    }
}

/// Cell repeats (each: ours, then the baseline): the median is the figure. Once at 100k,
/// where one iptables-nft cell takes minutes.
fn repeats(services: usize) -> usize {
    if services >= 100_000 {
        1
    } else {
        3
    }
}

pub fn run(dir: &Path, modes: &[Mode], scales: &[usize], datapath: bool) -> anyhow::Result<()> {
    require_root()?;
    std::fs::create_dir_all(dir)?;
    let machine = Machine::describe();
    let mut rows = Vec::new();
    for (i, &mode) in modes.iter().enumerate() {
        for &n in scales {
            rows.extend(control(mode, n));
        }
        if datapath {
            rows.extend(first_packet(mode, scales));
        }
        // After every mode, so a long run interrupted later still leaves its figures.
        write(dir, &rows, &modes[..=i], scales, &machine)?;
    }
    eprintln!("report written to {}", dir.display());
    Ok(())
}

fn write(
    dir: &Path,
    rows: &[Row],
    modes: &[Mode],
    scales: &[usize],
    machine: &Machine,
) -> anyhow::Result<()> {
    let names: Vec<&'static str> = modes.iter().map(|m| m.name()).collect();
    std::fs::write(dir.join("figures.csv"), figures::csv(rows))?;
    std::fs::write(dir.join("machine.txt"), machine.text())?;
    let mut summary = format!(
        "# Switchyard benchmark report\n\nMachine: {}\n\nServices x {ENDPOINTS} endpoints \
         (first packet: x 1); `cargo run --release -p switchyard-bench -- --report DIR`.\n\n",
        machine.caption()
    );
    summary.push_str(&figures::markdown(rows, &names, scales));
    std::fs::write(dir.join("summary.md"), summary)?;
    for (file, chart) in charts(rows, modes, scales, machine) {
        std::fs::write(dir.join(file), chart.render())?;
    }
    Ok(())
}

/// The control-plane rows of one cell; a failed cell becomes rows with no value and the
/// error, so the report still shows where it broke.
fn control(mode: Mode, n: usize) -> Vec<Row> {
    let row = |metric, value, baseline, note: &str| Row {
        mode: mode.name(),
        services: n,
        endpoints: ENDPOINTS,
        metric,
        value,
        baseline,
        note: note.to_string(),
    };
    let base_name = mode.baseline_name();
    let results = match mode.not_measured() {
        Some(why) => Err(why.to_string()),
        None => (0..repeats(n))
            .map(|_| child_cell(mode, n))
            .collect::<anyhow::Result<Vec<_>>>()
            .map_err(|e| format!("failed: {e:#}")),
    };
    let results = match results {
        Ok(r) => r,
        Err(why) => {
            eprintln!(
                "control {:16} services={n:>6}  not measured: {why}",
                mode.name()
            );
            return Metric::ALL
                .into_iter()
                .filter(|m| *m != Metric::FirstPacket)
                .map(|m| {
                    let baseline = (m == Metric::FullSync).then_some((base_name, None));
                    row(m, None, baseline, &why)
                })
                .collect();
        }
    };
    let each = |f: &dyn Fn(&CellResult) -> f64| median(&results.iter().map(f).collect::<Vec<_>>());
    let full = each(&|r| r.full_ms);
    let base = each(&|r| r.baseline_ms);
    let change = each(&|r| {
        let totals: Vec<f64> = r
            .change_plan_ms
            .iter()
            .zip(&r.change_apply_ms)
            .map(|(p, a)| p + a)
            .collect();
        median(&totals)
    });
    let apply = each(&|r| median(&r.change_apply_ms));
    let peak = each(&|r| r.peak_rss_kib as f64 / 1024.0);
    let rss = each(&|r| r.rss_kib as f64 / 1024.0);
    let times = format!(
        "median of {} run(s), each ours then the baseline",
        results.len()
    );
    let changes = format!(
        "median of {} changes per run, one endpoint of a different service each",
        rounds(n)
    );
    eprintln!(
        "control {:16} services={n:>6}  full={full:.1} ms  {base_name}={base:.1} ms  change={change:.2} ms (apply {apply:.2} ms)  peak RSS={peak:.0} MiB",
        mode.name()
    );
    vec![
        row(
            Metric::FullSync,
            Some(full),
            Some((base_name, Some(base))),
            &times,
        ),
        row(Metric::ChangeSync, Some(change), None, &changes),
        row(Metric::ChangeApply, Some(apply), None, &changes),
        row(
            Metric::PeakRss,
            Some(peak),
            None,
            "state + plan + backend + full-sync transaction",
        ),
        row(Metric::Rss, Some(rss), None, "after the syncs"),
    ]
}

/// Runs one cell in a child process of this binary.
fn child_cell(mode: Mode, n: usize) -> anyhow::Result<CellResult> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .args([
            "cell",
            "--mode",
            clap::ValueEnum::to_possible_value(&mode)
                .map(|v| v.get_name().to_string())
                .unwrap_or_default()
                .as_str(),
            "--services",
            &n.to_string(),
            "--endpoints",
            &ENDPOINTS.to_string(),
            "--rounds",
            &rounds(n).to_string(),
        ])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "cell {} x {n}: {}",
        mode.name(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    Ok(serde_json::from_str(line)?)
}

fn first_packet(mode: Mode, scales: &[usize]) -> Vec<Row> {
    let row = |n, value, base, note: String| Row {
        mode: mode.name(),
        services: n,
        endpoints: 1,
        metric: Metric::FirstPacket,
        value,
        baseline: Some(("floor (no rules)", base)),
        note,
    };
    let measured = match mode.not_measured() {
        Some(why) => Err(why.to_string()),
        None => datapath::run(mode, scales).map_err(|e| format!("failed: {e:#}")),
    };
    match measured {
        Ok(latencies) => latencies
            .iter()
            .map(|l| {
                let (on, off) = l.median_pair();
                let note = format!(
                    "the median of {} interleaved rules-on/rules-off pairs (ratio {:.3})",
                    l.pairs.len(),
                    l.ratio()
                );
                row(l.services, Some(on), Some(off), note)
            })
            .collect(),
        Err(why) => {
            eprintln!("datapath {:16} not measured: {why}", mode.name());
            scales
                .iter()
                .map(|&n| row(n, None, None, why.clone()))
                .collect()
        }
    }
}

fn color(mode: &str) -> &'static str {
    match mode {
        "nftables" => "#1f77b4",
        "iptables-nft" => "#d62728",
        "iptables-legacy" => "#ff7f0e",
        _ => "#2ca02c",
    }
}

/// The plots: full sync (with baselines), one change, RSS, first packet vs floor.
fn charts(
    rows: &[Row],
    modes: &[Mode],
    scales: &[usize],
    machine: &Machine,
) -> Vec<(&'static str, Chart)> {
    let series = |metric: Metric, baseline: bool| -> Vec<Series> {
        modes
            .iter()
            .map(|m| {
                let of_mode = rows
                    .iter()
                    .filter(|r| r.mode == m.name() && r.metric == metric);
                let points = of_mode
                    .filter_map(|r| {
                        let v = if baseline {
                            r.baseline.and_then(|b| b.1)
                        } else {
                            r.value
                        }?;
                        Some((r.services as f64, v))
                    })
                    .collect();
                Series {
                    name: if baseline {
                        m.baseline_name().to_string()
                    } else {
                        m.name().to_string()
                    },
                    color: color(m.name()),
                    dashed: baseline,
                    points,
                }
            })
            .collect()
    };
    let notes = |metric: Metric| -> Vec<String> {
        let mut out: Vec<String> = modes
            .iter()
            .filter_map(|m| {
                let missing = rows
                    .iter()
                    .find(|r| r.mode == m.name() && r.metric == metric && r.value.is_none())?;
                Some(format!("{}: not measured — {}", m.name(), missing.note))
            })
            .collect();
        out.push(format!("Measured on {}", machine.caption()));
        out
    };
    let x_ticks: Vec<f64> = scales.iter().map(|&s| s as f64).collect();
    let chart = |title: &str, y_label: &str, log_y, metric, with_baseline: bool| Chart {
        title: title.to_string(),
        y_label: y_label.to_string(),
        log_y,
        reference: None,
        x_ticks: x_ticks.clone(),
        series: {
            let mut s = series(metric, false);
            if with_baseline {
                s.extend(series(metric, true));
            }
            s
        },
        notes: notes(metric),
    };
    let mut first_packet = chart(
        "First packet through a ClusterIP vs the no-rules floor (p50 ratio)",
        "ClusterIP p50 / floor p50",
        false,
        Metric::FirstPacket,
        false,
    );
    first_packet.reference = Some((1.0, "floor (direct to the pod, no rules)".into()));
    for s in &mut first_packet.series {
        let m = s.name.clone();
        s.points = rows
            .iter()
            .filter(|r| r.mode == m && r.metric == Metric::FirstPacket)
            .filter_map(|r| Some((r.services as f64, r.ratio()?)))
            .collect();
    }
    vec![
        (
            "full-sync.svg",
            chart(
                &format!("Full sync, services x {ENDPOINTS} endpoints (dashed: stock tool, same ruleset)"),
                "ms (log)",
                true,
                Metric::FullSync,
                true,
            ),
        ),
        (
            "one-change.svg",
            chart(
                "One endpoint changed: re-plan + diff + apply (median)",
                "ms (log)",
                true,
                Metric::ChangeSync,
                false,
            ),
        ),
        (
            "rss.svg",
            chart(
                &format!("Peak RSS of the syncing process, services x {ENDPOINTS} endpoints"),
                "MiB (log)",
                true,
                Metric::PeakRss,
                false,
            ),
        ),
        ("first-packet.svg", first_packet),
    ]
}
