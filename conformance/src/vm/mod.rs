//! The VM harness: boots a Debian kernel under `qemu-system-x86_64 -accel tcg` with a busybox
//! initramfs and runs a payload inside it, so every mode's conformance table (and any other
//! binary) runs on kernels other than the host's (DESIGN §6, §8; DESIGN-NOTES 40-).
//!
//! - [`kernel`]: `debian-6.1` / `debian-6.12` → Debian package, `apt-get download`, extract,
//!   cache (vmlinuz and a decompressed, depmod-ed netfilter module tree).
//! - [`initramfs`]: the cached base image (busybox, `/init`, modules, the host's `ip`, `nft`,
//!   `iptables*`, `ipset`, ... with their libraries) and the per-run payload image.
//! - [`qemu`]: one boot: [`Vm::run`] with a [`Payload`] → [`VmOutput`] (exit code, stdout,
//!   console), under a timeout, qemu killed on drop.
//! - [`conformance`]: the conformance matrix of some modes, run in a guest, as a [`Matrix`]
//!   whose cells are FAIL with the reason when the guest could not run them.
//!
//! The guest has no network device (`-nic none`): all test traffic stays in namespaces inside it.
//!
//! [`Matrix`]: crate::Matrix

pub mod conformance;
pub mod cpio;
mod exit_helper;
pub mod initramfs;
pub mod kernel;
pub mod qemu;

pub use kernel::{Kernel, KernelImage};
pub use qemu::{Payload, Vm, VmOutput};

use std::time::Duration;

/// What went wrong, naming the step.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("{step}: {source}")]
    Io {
        step: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{step}: `{command}` failed: {detail}")]
    Command {
        step: String,
        command: String,
        detail: String,
    },
    #[error("unknown kernel {0:?} (want host, debian-6.1 or debian-6.12)")]
    UnknownKernel(String),
    #[error(
        "{what} not found on this machine: run .ci/install-deps as root (it installs {package})"
    )]
    Missing { what: String, package: String },
    #[error("{kernel}: {why}")]
    Kernel { kernel: String, why: String },
    #[error("the VM ({kernel}) did not finish within {timeout:?}; qemu was killed. Console tail:\n{tail}")]
    Timeout {
        kernel: String,
        timeout: Duration,
        tail: String,
        console: String,
    },
    #[error("the VM ({kernel}) stopped without reporting the payload's exit status ({how}). Console tail:\n{tail}")]
    NoStatus {
        kernel: String,
        how: String,
        tail: String,
        console: String,
    },
}

impl VmError {
    pub(crate) fn io(step: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            step: step.into(),
            source,
        }
    }

    /// The whole serial console of a boot that failed, when there was one.
    pub fn console(&self) -> Option<&str> {
        match self {
            Self::Timeout { console, .. } | Self::NoStatus { console, .. } => Some(console),
            _ => None,
        }
    }
}

/// Runs a host command to completion; a spawn failure or non-zero exit is an error naming `step`.
pub(crate) fn host_command(
    step: &str,
    program: &str,
    args: &[&str],
    cwd: Option<&std::path::Path>,
) -> Result<String, VmError> {
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let line = format!("{program} {}", args.join(" "));
    let out = cmd.output().map_err(|e| VmError::Command {
        step: step.into(),
        command: line.clone(),
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(VmError::Command {
            step: step.into(),
            command: line,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The last `n` lines of `text`.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Where kernels and base images are cached: `$SWITCHYARD_VM_CACHE`, else
/// `/var/cache/switchyard-vm` for root, else `$XDG_CACHE_HOME/switchyard-vm` (or
/// `~/.cache/switchyard-vm`).
pub fn cache_root() -> std::path::PathBuf {
    use std::path::PathBuf;
    if let Some(dir) = std::env::var_os("SWITCHYARD_VM_CACHE") {
        return PathBuf::from(dir);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/cache/switchyard-vm");
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("switchyard-vm")
}
