//! The offline source at scale: `cargo bench -p switchyard-agent --bench manifests`.
//!
//! Fixed scenario (`switchyard_synthetic::dump::DUMP_SCALE`): 10k Services x 2 endpoints and
//! node-a, written as multi-document YAML (~10 MB) and as `kubectl get -o json`'s `v1 List`.
//! Prints medians of interleaved repeats:
//! - parse: `Manifests::add_text` (text in memory -> model objects), per format, against the
//!   floor of a generic parser reading the same bytes (`serde_json` into a `Value`);
//! - end to end: the `switchyard` binary from spawn to exit, `--dry-run --mode nftables` and
//!   `explain`, per format. `SWITCHYARD_BEFORE=/path/to/older/switchyard` also times an older
//!   build in the same run, interleaved, for before/after figures.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use switchyard_agent::source::Manifests;
use switchyard_synthetic::{dump, objects};

/// The agent's allocator, so the figures are what the agent runs.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const REPEATS: usize = 7;

fn main() -> anyhow::Result<()> {
    let (n, k) = dump::DUMP_SCALE;
    let dir =
        std::env::temp_dir().join(format!("switchyard-manifests-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let objects = objects::all(&dump::cluster_with_node(n, k));
    let yaml = dump::yaml_documents(&objects)?;
    let json = dump::json_list(&objects);
    let files = [
        ("yaml", dir.join("cluster.yaml"), &yaml),
        ("json", dir.join("cluster.json"), &json),
    ];
    for (_, path, text) in &files {
        std::fs::write(path, text)?;
    }
    println!(
        "# offline source: {n} Services x {k} endpoints + 1 Node; YAML {:.1} MB, JSON {:.1} MB; {} cores; median of {REPEATS}",
        yaml.len() as f64 / 1e6,
        json.len() as f64 / 1e6,
        std::thread::available_parallelism().map_or(1, usize::from)
    );

    let mut floor = Vec::new();
    let mut parse: [Vec<Duration>; 2] = Default::default();
    for _ in 0..REPEATS {
        let t = Instant::now();
        let v: serde_json::Value = serde_json::from_str(&json)?;
        floor.push(t.elapsed());
        drop(v);
        for (i, (_, path, text)) in files.iter().enumerate() {
            let mut m = Manifests::default();
            let t = Instant::now();
            m.add_text(path, text)?;
            parse[i].push(t.elapsed());
            anyhow::ensure!(
                m.services.len() == n,
                "{}: {} services",
                path.display(),
                m.services.len()
            );
        }
    }
    let floor = median(&floor);
    println!(
        "floor: serde_json -> Value of the JSON text         {:>8.1} ms",
        ms(floor)
    );
    for (i, (format, ..)) in files.iter().enumerate() {
        let p = median(&parse[i]);
        println!(
            "parse {format}: Manifests::add_text                    {:>8.1} ms  ratio to floor {:.2}",
            ms(p),
            p.as_secs_f64() / floor.as_secs_f64()
        );
    }

    let ours = PathBuf::from(env!("CARGO_BIN_EXE_switchyard"));
    let before = std::env::var_os("SWITCHYARD_BEFORE").map(PathBuf::from);
    let mut binaries = vec![("this build", ours)];
    binaries.extend(before.map(|b| ("before", b)));
    let commands: [(&str, &[&str]); 2] = [
        (
            "--dry-run --mode nftables",
            &["--dry-run", "--mode", "nftables"],
        ),
        (
            "explain",
            &[
                "explain",
                "--from",
                "10.244.1.5",
                "--to",
                "10.96.19.137:80/tcp",
            ],
        ),
    ];
    for (what, args) in commands {
        for (format, path, _) in &files {
            let mut times = vec![Vec::new(); binaries.len()];
            for _ in 0..REPEATS {
                for (i, (_, bin)) in binaries.iter().enumerate() {
                    times[i].push(run(bin, path, args)?);
                }
            }
            for (i, (label, _)) in binaries.iter().enumerate() {
                println!(
                    "end to end {format}: switchyard {what:27} {:>8.1} ms  ({label})",
                    ms(median(&times[i]))
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Wall time of one `switchyard` run on `manifests`; `explain` is a subcommand, so it goes first.
fn run(bin: &Path, manifests: &Path, args: &[&str]) -> anyhow::Result<Duration> {
    let mut cmd = Command::new(bin);
    let (sub, rest) = match args.split_first() {
        Some((&"explain", rest)) => (Some("explain"), rest),
        _ => (None, args),
    };
    cmd.args(sub)
        .arg("--manifests")
        .arg(manifests)
        .args(["--cluster-cidr", "10.244.0.0/16"])
        .args(rest)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let t = Instant::now();
    let out = cmd.output()?;
    let took = t.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "{} {args:?}: {}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(took)
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
