//! `switchyard`: the node agent. Thin: parse flags, set up logging, hand over.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

use clap::Parser as _;
use std::process::ExitCode;
use switchyard_agent::{cli, explain, run};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Some(cli::Command::Explain(args)) => explain::run(args).await,
        None => run::run(cli.run).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
