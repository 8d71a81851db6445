//! Runs any command in a guest kernel (root; qemu from bookworm-backports):
//!
//! ```sh
//! cargo build -p switchyard-agent
//! cargo run -p switchyard-conformance --example vm-run -- --kernel debian-6.1 \
//!     --file target/debug/switchyard:/payload/switchyard \
//!     --file examples/cluster.yaml:/payload/cluster.yaml \
//!     -- /payload/switchyard --mode nftables --manifests /payload/cluster.yaml \
//!        --cluster-cidr 10.244.0.0/16 --once
//! ```
//!
//! Prints the payload's stdout, the console on failure, and exits with the payload's status.

use clap::Parser;
use std::process::ExitCode;
use std::time::Duration;
use switchyard_conformance::vm::{Kernel, Payload, Vm};

#[derive(Debug, Parser)]
struct Args {
    /// debian-6.1 or debian-6.12.
    #[arg(long)]
    kernel: String,
    /// HOST:GUEST, repeatable.
    #[arg(long)]
    file: Vec<String>,
    /// Seconds for the whole boot.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Print the whole console.
    #[arg(long)]
    console: bool,
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = (|| -> anyhow::Result<i32> {
        let kernel: Kernel = args.kernel.parse()?;
        let mut payload =
            Payload::new(args.command.clone()).timeout(Duration::from_secs(args.timeout));
        for f in &args.file {
            let (host, guest) = f
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("--file {f:?}: want HOST:GUEST"))?;
            payload = payload.file(host, guest);
        }
        let vm = Vm::new(kernel)?;
        let out = vm.run(&payload)?;
        print!("{}", out.stdout);
        if args.console || out.exit_code != 0 {
            eprintln!("{}", out.console);
        }
        eprintln!(
            "vm-run: {kernel} ({}): exit status {} after {:.1}s",
            vm.kernel().release,
            out.exit_code,
            out.elapsed.as_secs_f64()
        );
        Ok(out.exit_code)
    })();
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(n) => ExitCode::from(u8::try_from(n).unwrap_or(1).max(1)),
        Err(e) => {
            eprintln!("vm-run: {e:#}");
            ExitCode::FAILURE
        }
    }
}
