//! `switchyard`: the node agent. Thin: parse flags, set up logging, hand over.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

use clap::{CommandFactory as _, FromArgMatches as _};
use std::process::ExitCode;
use switchyard_agent::{cli, config, explain, run};
use tracing_subscriber::EnvFilter;

/// Every sync re-plans the cluster and frees the previous plan; glibc malloc charges that
/// to the next larger allocation (fastbin consolidation), which then lands inside the
/// dataplane sync. mimalloc frees without that deferred cost (DESIGN-NOTES 39).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // The matches are kept so `--config` can tell flags given from defaults.
    let matches = cli::Cli::command().get_matches();
    let mut cli = match cli::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // mimalloc asks for transparent huge pages on its arenas: each first touch of a 2 MiB
    // region then faults in, and zeroes, 2 MiB. At 10k Services that cost the first sync
    // 15-30 MB of RSS and a third of its CPU time in page zeroing (DESIGN-NOTES 241).
    let thp = nix::sys::prctl::set_thp_disable(true);
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: a DaemonSet's log (or a test's) is a file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(e) = thp {
        tracing::debug!("disabling transparent huge pages: {e}");
    }
    let result = match cli.command {
        Some(cli::Command::Explain(args)) => explain::run(args).await,
        None => match config::load_into(&matches, &mut cli.run) {
            Ok(()) => run::run(cli.run).await,
            Err(e) => Err(anyhow::Error::new(e).context("--config")),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
