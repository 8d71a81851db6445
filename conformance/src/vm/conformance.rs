//! The conformance matrix of some modes, run inside a guest kernel: the conformance binary boots
//! as the payload, runs `--mode ... --json` there, and its matrix comes back with each column
//! renamed `<backend>@<kernel>/<family>` (e.g. `nftables@debian-6.1/ipv6`).
//!
//! [`VmMatrix::run_faults`] does the same with the faults table (`--table faults`): IPVS
//! mode's tampering rows need a kernel with IPVS.
//!
//! Nothing is silently missing: when the guest cannot boot, times out, or prints no matrix,
//! every expected cell is a FAIL naming the reason, so the merged table has the same shape
//! whatever happened.

use super::{Kernel, Payload, Vm, VmError};
use crate::family::Family;
use crate::matrix::Matrix;
use crate::runner::column_name;
use crate::{backends, faults, scenarios};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// One guest run of the matrix.
#[derive(Debug, Clone)]
pub struct VmMatrix {
    pub kernel: Kernel,
    /// A `switchyard-conformance` binary (the CLI passes itself).
    pub exe: PathBuf,
    /// `--mode` values, as on the command line.
    pub modes: Vec<String>,
    pub filter: Option<String>,
    /// Address-family columns.
    pub families: Vec<Family>,
    /// `--parallel` inside the guest.
    pub parallel: usize,
    pub timeout: Duration,
}

/// The matrix and what the guest said, for reports.
#[derive(Debug)]
pub struct VmMatrixRun {
    pub matrix: Matrix,
    /// Why the run as a whole failed, if it did (every cell then says so too).
    pub error: Option<String>,
    /// The guest console (kernel messages, the guest run's stderr), when it booted.
    pub console: Option<String>,
    /// Modules the guest could not load at boot.
    pub modules_failed: Vec<String>,
    pub elapsed: Duration,
}

impl VmMatrix {
    /// Column names this run must produce, in order.
    pub fn columns(&self) -> Result<Vec<String>, anyhow::Error> {
        let mut names = Vec::new();
        for m in &self.modes {
            for b in backends::by_mode(m)? {
                names.extend(self.families.iter().map(|f| column_name(&b.name, *f)));
            }
        }
        Ok(names)
    }

    /// Scenario names this run must produce, in table order.
    pub fn scenarios(&self) -> Vec<String> {
        scenarios::all()
            .iter()
            .filter(|s| {
                self.filter
                    .as_ref()
                    .is_none_or(|f| s.name.contains(f.as_str()))
            })
            .map(|s| s.name.to_string())
            .collect()
    }

    /// The scenario table in the guest.
    pub fn run(&self) -> Result<VmMatrixRun, anyhow::Error> {
        let columns = self.columns()?;
        let rows = self.scenarios();
        let families = self
            .families
            .iter()
            .map(|f| f.name())
            .collect::<Vec<_>>()
            .join(",");
        self.run_table(&["--family".into(), families], rows, columns)
    }

    /// Fault names `run_faults` must produce: the rows for at least one of the modes'
    /// backends (whose name contains `filter`), in table order.
    pub fn faults(&self) -> Result<Vec<String>, anyhow::Error> {
        let mut list = Vec::new();
        for m in &self.modes {
            list.extend(backends::by_mode(m)?);
        }
        Ok(faults::all()
            .iter()
            .filter(|f| list.iter().any(|b| f.applies_to(&b.name)))
            .filter(|f| {
                self.filter
                    .as_ref()
                    .is_none_or(|x| f.name.contains(x.as_str()))
            })
            .map(|f| f.name.to_string())
            .collect())
    }

    /// The faults table (`crate::faults`) in the guest, one column per backend (IPv4;
    /// `families` is not used): `ipvs@debian-6.1`.
    pub fn run_faults(&self) -> Result<VmMatrixRun, anyhow::Error> {
        let mut columns = Vec::new();
        for m in &self.modes {
            columns.extend(backends::by_mode(m)?.into_iter().map(|b| b.name));
        }
        let rows = self.faults()?;
        self.run_table(&["--table".into(), "faults".into()], rows, columns)
    }

    /// Boots the guest running this binary with `--mode`, `--parallel`, `--scenario` and
    /// `args`, and reads its JSON matrix into `rows` x `columns`.
    fn run_table(
        &self,
        args: &[String],
        rows: Vec<String>,
        columns: Vec<String>,
    ) -> Result<VmMatrixRun, anyhow::Error> {
        let started = Instant::now();
        let failed =
            |why: String, console: Option<String>, modules_failed: Vec<String>| VmMatrixRun {
                matrix: self.rename(Matrix::all_failed(&rows, &columns, &why, started.elapsed())),
                error: Some(why),
                console,
                modules_failed,
                elapsed: started.elapsed(),
            };
        let vm = match Vm::new(self.kernel) {
            Ok(vm) => vm,
            Err(e) => {
                return Ok(failed(
                    format!("could not prepare the VM: {e}"),
                    None,
                    vec![],
                ))
            }
        };
        let mut command = vec![
            "/payload/switchyard-conformance".to_string(),
            "--kernel".into(),
            "host".into(),
            "--mode".into(),
            self.modes.join(","),
            "--json".into(),
            "--parallel".into(),
            self.parallel.to_string(),
        ];
        command.extend(args.iter().cloned());
        if let Some(f) = &self.filter {
            command.extend(["--scenario".into(), f.clone()]);
        }
        let payload = Payload::new(command)
            .file(&self.exe, "/payload/switchyard-conformance")
            .env("RUST_BACKTRACE", "1")
            .timeout(self.timeout);
        let out = match vm.run(&payload) {
            Ok(out) => out,
            Err(e) => {
                let console = e.console().map(str::to_string);
                return Ok(failed(
                    format!("VM run failed: {}", first_line(&e)),
                    console,
                    vec![],
                ));
            }
        };
        let parsed = serde_json::Deserializer::from_str(
            out.stdout
                .get(out.stdout.find('{').unwrap_or(0)..)
                .unwrap_or(""),
        )
        .into_iter::<Matrix>()
        .next();
        let guest = match parsed {
            Some(Ok(m)) => m,
            other => {
                let why = match other {
                    Some(Err(e)) => format!("unreadable JSON ({e})"),
                    _ => "no JSON".into(),
                };
                return Ok(failed(
                    format!(
                        "the guest printed no matrix ({why}; exit status {}): {}",
                        out.exit_code,
                        super::tail(&out.console, 3).replace('\n', " | ")
                    ),
                    Some(out.console),
                    out.modules_failed,
                ));
            }
        };
        let mut matrix = Matrix::all_failed(
            &rows,
            &columns,
            "the guest's matrix has no cell for it",
            out.elapsed,
        );
        matrix.fill_from(&guest);
        Ok(VmMatrixRun {
            matrix: self.rename(matrix),
            error: None,
            console: Some(out.console),
            modules_failed: out.modules_failed,
            elapsed: started.elapsed(),
        })
    }

    fn rename(&self, mut m: Matrix) -> Matrix {
        for b in &mut m.backends {
            *b = match b.split_once('/') {
                Some((backend, family)) => format!("{backend}@{}/{family}", self.kernel),
                None => format!("{b}@{}", self.kernel),
            };
        }
        m
    }
}

fn first_line(e: &VmError) -> String {
    let text = e.to_string();
    let mut lines = text.lines();
    let first = lines
        .next()
        .unwrap_or_default()
        .trim_end_matches("Console tail:")
        .trim_end()
        .to_string();
    let rest = lines.rfind(|l| !l.trim().is_empty());
    match rest {
        Some(last) => format!("{first} (console ends: {})", last.trim()),
        None => format!("{first} (console empty)"),
    }
}
