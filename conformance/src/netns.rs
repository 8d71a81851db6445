//! Network namespaces: created with `ip netns add`, entered per thread with `setns`, always
//! deleted on drop (also when a test panics), with run-unique names so parallel runs never meet.

use anyhow::{bail, Context as _};
use std::fs::File;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A network namespace we created. Deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A prefix unique to this process and call: `sy<pid>x<n>`.
pub fn unique_prefix() -> String {
    format!(
        "sy{}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Fails with a clear message unless running as root (network namespaces need it).
pub fn require_root() -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the conformance suite and the dataplane tests need root (they create network namespaces); run them as root");
    }
    Ok(())
}

impl Netns {
    /// Creates `name` with loopback up.
    pub fn create(name: &str) -> anyhow::Result<Self> {
        run("ip", &["netns", "add", name])?;
        let ns = Self {
            name: name.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`, for `nsenter --net=` and `setns`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// `ip -n <ns> args...`
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Runs a program inside the namespace (`ip netns exec`).
    pub fn exec(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Runs one `nft` command inside the namespace, given as its words (`add table ip x`);
    /// `nft` joins its arguments, so no shell quoting is involved.
    pub fn nft(&self, command: &str) -> anyhow::Result<String> {
        let words: Vec<&str> = command.split_whitespace().collect();
        self.exec("nft", &words)
    }

    /// Sets a sysctl inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> anyhow::Result<()> {
        self.exec("sysctl", &["-q", "-w", &format!("{key}={value}")])
            .map(drop)
    }

    /// Moves the calling thread into this namespace. Sockets the thread opens afterwards live
    /// there, and so do processes it spawns.
    pub fn enter(&self) -> anyhow::Result<()> {
        enter_path(&self.path())
    }
}

/// Moves the calling thread into the namespace at `path`.
pub fn enter_path(path: &std::path::Path) -> anyhow::Result<()> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("setns into {}", path.display()))
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run("ip", &["netns", "del", &self.name]) {
            eprintln!(
                "warning: could not delete network namespace {}: {e:#}",
                self.name
            );
        }
    }
}

/// Runs a command, returning stdout; a non-zero exit is an error carrying stderr.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Wall time of `program args` run inside `ns` with `input` on its standard input (from a file,
/// so no pipe-writing time is counted). A non-zero exit is an error. Used for benchmark
/// baselines (`iptables-restore`, `nft -f /dev/stdin`).
pub fn timed_in(
    ns: &Netns,
    program: &str,
    args: &[&str],
    input: &str,
) -> anyhow::Result<std::time::Duration> {
    let path = std::env::temp_dir().join(format!("{}-input", unique_prefix()));
    std::fs::write(&path, input)?;
    let started = std::time::Instant::now();
    let out = Command::new("nsenter")
        .arg(format!("--net={}", ns.path().display()))
        .arg("--")
        .arg(program)
        .args(args)
        .stdin(File::open(&path)?)
        .output();
    let took = started.elapsed();
    let _ = std::fs::remove_file(&path);
    let out = out.with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(took)
}
