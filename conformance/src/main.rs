//! `switchyard-conformance`: run the scenario table against backends and print the matrix.

use clap::Parser;
use std::process::ExitCode;
use std::time::Duration;
use switchyard_conformance::vm::conformance::VmMatrix;
use switchyard_conformance::vm::Kernel;
use switchyard_conformance::{backends, faults, run, scenarios, Family, Matrix, Options};

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
    /// Only scenarios (or faults) whose name contains this.
    #[arg(long)]
    scenario: Option<String>,
    /// Which table: the conformance `scenarios`, or the `faults` table (tampering detected by
    /// `check` and repaired by a full sync; IPv4, `--family` is not used).
    #[arg(long, value_enum, default_value = "scenarios")]
    table: Table,
    /// Address-family columns, comma-separated: ipv4, ipv6, dual (dual-stack).
    #[arg(long, value_delimiter = ',', default_value = "ipv4,ipv6,dual")]
    family: Vec<Family>,
    /// Print the matrix as JSON.
    #[arg(long)]
    json: bool,
    /// Cells run at once.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Kernels, comma-separated: `host` (this machine's), `debian-6.1`, `debian-6.12`. Other
    /// kernels boot in a qemu VM (cached under /var/cache/switchyard-vm) running this binary;
    /// their columns are named `<backend>@<kernel>`.
    #[arg(long, value_delimiter = ',', default_value = "host")]
    kernel: Vec<String>,
    /// Cells run at once inside a VM kernel (most wait on probe timeouts, not CPU: 8 ran the
    /// table 1.5x faster than 4 under TCG on 2 cores, DESIGN-NOTES 45).
    #[arg(long, default_value_t = 8)]
    vm_parallel: usize,
    /// Seconds one VM kernel may take for its whole matrix (boot included).
    #[arg(long, default_value_t = 2400)]
    vm_timeout: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Table {
    Scenarios,
    Faults,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let table = scenarios::all();
    if args.list {
        match args.table {
            Table::Scenarios => {
                for s in &table {
                    println!("{:36} {}", s.name, s.about);
                }
            }
            Table::Faults => {
                for f in faults::all() {
                    println!("{:36} {} [{}]", f.name, f.about, f.backends.join(", "));
                }
            }
        }
        return ExitCode::SUCCESS;
    }
    let result = (|| -> anyhow::Result<bool> {
        let mut list = Vec::new();
        for m in &args.mode {
            list.extend(backends::by_mode(m)?);
        }
        let mut vm_kernels = Vec::new();
        let mut host = false;
        for k in &args.kernel {
            match k.as_str() {
                "host" => host = true,
                other => vm_kernels.push(other.parse::<Kernel>()?),
            }
        }
        let mut matrix: Option<Matrix> = None;
        if host {
            let options = Options {
                filter: args.scenario.clone(),
                parallel: args.parallel,
                families: args.family.clone(),
            };
            matrix = Some(match args.table {
                Table::Scenarios => run(&list, &table, &options)?,
                Table::Faults => faults::run(&list, &faults::all(), &options)?,
            });
        }
        for kernel in vm_kernels {
            let vm = VmMatrix {
                kernel,
                exe: std::env::current_exe()?,
                modes: args.mode.clone(),
                filter: args.scenario.clone(),
                families: args.family.clone(),
                parallel: args.vm_parallel,
                timeout: Duration::from_secs(args.vm_timeout),
            };
            let vm = match args.table {
                Table::Scenarios => vm.run()?,
                Table::Faults => vm.run_faults()?,
            };
            eprintln!(
                "switchyard-conformance: {kernel}: {} in {:.1}s{}",
                vm.error.as_deref().unwrap_or("ran"),
                vm.elapsed.as_secs_f64(),
                if vm.modules_failed.is_empty() {
                    String::new()
                } else {
                    format!("; modules not loaded: {}", vm.modules_failed.join(" "))
                }
            );
            if vm.error.is_some() || vm.matrix.failures() > 0 {
                if let Some(console) = &vm.console {
                    let path =
                        std::env::temp_dir().join(format!("switchyard-vm-{kernel}.console.log"));
                    if std::fs::write(&path, console).is_ok() {
                        eprintln!(
                            "switchyard-conformance: {kernel}: guest console in {}",
                            path.display()
                        );
                    }
                }
            }
            match &mut matrix {
                Some(m) => m.append_columns(&vm.matrix),
                None => matrix = Some(vm.matrix),
            }
        }
        let matrix = matrix.ok_or_else(|| anyhow::anyhow!("--kernel lists no kernel"))?;
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
