//! `switchyard-bench`: the benchmark report (root).
//!
//! ```sh
//! cargo run --release -p switchyard-bench -- --report bench/report
//! ```
//!
//! Sweeps every mode x 1k/10k/100k services (x 10 endpoints, the fixed scenarios of
//! `switchyard-synthetic`): full sync against the stock tool loading the same ruleset, one
//! endpoint change end to end, RSS, and first-packet latency against the no-rules floor; writes
//! `figures.csv`, one SVG plot per figure, `summary.md` and `machine.txt` into the directory.
//! Each control-plane cell runs in its own child process (`cell`), so its RSS is its own.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod cell;
mod datapath;
mod figures;
mod machine;
mod mode;
mod report;
mod svg;

use clap::{Parser, Subcommand};
use mode::Mode;
use std::path::PathBuf;

/// The agent's allocator, so memory and time figures are what the agent runs.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(about = "Switchyard benchmark report (run as root)")]
struct Cli {
    /// Write the report (figures.csv, *.svg, summary.md, machine.txt) into this directory.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// Modes to sweep (default: all; a mode without a backend in this build is reported as
    /// not measured, with the reason).
    #[arg(long, value_delimiter = ',', value_enum)]
    modes: Vec<Mode>,
    /// Services per scale (default 1000,10000,100000). For investigation only: the committed
    /// report uses the defaults, so figures compare across commits.
    #[arg(long, value_delimiter = ',')]
    scales: Vec<usize>,
    /// Skip the first-packet latency part (control plane only).
    #[arg(long)]
    no_datapath: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One control-plane cell in this process (the report runs it as a child).
    #[command(hide = true)]
    Cell(cell::CellArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Cell(args)) = cli.command {
        let result = cell::run(&args)?;
        println!("{}", serde_json::to_string(&result)?);
        return Ok(());
    }
    let Some(dir) = cli.report else {
        anyhow::bail!("nothing to do: pass --report DIR");
    };
    let modes = if cli.modes.is_empty() {
        Mode::ALL.to_vec()
    } else {
        cli.modes
    };
    let scales = if cli.scales.is_empty() {
        switchyard_synthetic::SWEEP.to_vec()
    } else {
        cli.scales
    };
    report::run(&dir, &modes, &scales, !cli.no_datapath)
}
