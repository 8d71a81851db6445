//! `switchyard-conformance`: run the scenario table against backends and print the matrix.

use clap::Parser;
use std::process::ExitCode;
use switchyard_conformance::{backends, run, scenarios, Options};

#[derive(Debug, Parser)]
#[command(
    name = "switchyard-conformance",
    about = "Real-packet conformance matrix for Switchyard dataplanes"
)]
struct Args {
    /// Backends, comma-separated: nftables, iptables (= iptables-nft,iptables-legacy),
    /// iptables-nft, iptables-legacy.
    #[arg(long, value_delimiter = ',', default_value = "nftables,iptables")]
    mode: Vec<String>,
    /// Only scenarios whose name contains this.
    #[arg(long)]
    scenario: Option<String>,
    /// Print the matrix as JSON.
    #[arg(long)]
    json: bool,
    /// Cells run at once.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let table = scenarios::all();
    if args.list {
        for s in &table {
            println!("{:36} {}", s.name, s.about);
        }
        return ExitCode::SUCCESS;
    }
    let result = (|| -> anyhow::Result<bool> {
        let mut list = Vec::new();
        for m in &args.mode {
            list.extend(backends::by_mode(m)?);
        }
        let matrix = run(
            &list,
            &table,
            &Options {
                filter: args.scenario.clone(),
                parallel: args.parallel,
            },
        )?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&matrix)?);
        } else {
            println!("{matrix}");
        }
        Ok(matrix.failures() == 0)
    })();
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("switchyard-conformance: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
