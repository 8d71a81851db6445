//! What the agent-level fault tests share: the agent binary, running it inside a namespace in
//! its own process group (so a SIGKILL takes its restore tools with it, as a container kill
//! does), synthetic manifests, and canonical dumps of what each mode programmed.

#![allow(dead_code)] // Each test file uses a different part.

use anyhow::{bail, Context as _};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use switchyard_conformance::netns::Netns;

pub mod guest;
pub mod ipvs;

/// The agent binary `cargo test --workspace` builds next to this crate's binary (inside a VM
/// guest: where [`guest::AGENT_ENV`] says the payload put it).
pub fn agent_binary() -> PathBuf {
    if let Some(path) = std::env::var_os(guest::AGENT_ENV) {
        return PathBuf::from(path);
    }
    let conformance = Path::new(env!("CARGO_BIN_EXE_switchyard-conformance"));
    let agent = conformance.with_file_name("switchyard");
    assert!(
        agent.is_file(),
        "{} is missing: run `cargo build -p switchyard-agent` (or `cargo test --workspace`, which builds it)",
        agent.display()
    );
    agent
}

/// Runs `script` under `/bin/sh` in `vm` with the agent at `/payload/switchyard` and the
/// example cluster at `/payload/cluster.yaml`, inside `timeout`.
pub fn run_agent_script(
    vm: &switchyard_conformance::vm::Vm,
    script: &str,
    timeout: std::time::Duration,
) -> switchyard_conformance::vm::VmOutput {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/cluster.yaml");
    vm.run(
        &switchyard_conformance::vm::Payload::new(["/bin/sh", "-c", script])
            .file(agent_binary(), "/payload/switchyard")
            .file(example, "/payload/cluster.yaml")
            .timeout(timeout),
    )
    .expect("boot")
}

/// A mode as the agent's flags name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Nftables,
    IptablesNft,
    IptablesLegacy,
    /// Only in a VM guest: the host kernel has no IPVS.
    Ipvs,
}

impl Mode {
    pub fn flags(self) -> Vec<&'static str> {
        match self {
            Self::Nftables => vec!["--mode", "nftables"],
            Self::IptablesNft => vec!["--mode", "iptables", "--iptables-variant", "nft"],
            Self::IptablesLegacy => vec!["--mode", "iptables", "--iptables-variant", "legacy"],
            Self::Ipvs => vec!["--mode", "ipvs"],
        }
    }

    pub fn save(self) -> &'static str {
        match self {
            Self::IptablesLegacy => "iptables-legacy-save",
            _ => "iptables-nft-save",
        }
    }
}

/// Starts the agent in `ns` (its own process group) with these extra arguments; stderr (its
/// log) goes to `log`.
pub fn spawn_agent(
    ns: &Netns,
    mode: Mode,
    manifests: &Path,
    extra: &[&str],
    log: &Path,
) -> anyhow::Result<Child> {
    let log = std::fs::File::create(log)?;
    let child = Command::new("nsenter")
        .arg(format!("--net={}", ns.path().display()))
        .arg("--")
        .arg(agent_binary())
        .args(mode.flags())
        .arg("--manifests")
        .arg(manifests)
        .args([
            "--cluster-cidr",
            "10.244.0.0/16",
            "--hostname-override",
            "node-a",
        ])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting the agent")?;
    Ok(child)
}

/// SIGKILL to the agent's whole process group (the agent and any restore tool it runs).
pub fn kill_group(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = child.wait();
}

/// Waits until the agent's log contains `marker` (polled every 2 ms) or it exits; returns
/// whether the marker appeared.
pub fn wait_for_log(child: &mut Child, log: &Path, marker: &str) -> bool {
    loop {
        if std::fs::read_to_string(log).is_ok_and(|l| l.contains(marker)) {
            return true;
        }
        if matches!(child.try_wait(), Ok(Some(_))) {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// The log line the agent writes once its objects are read and planned, before it touches the
/// kernel.
pub const PLANNED: &str = "planning";

/// `switchyard --once` to completion; returns how long it ran after planning (the part that
/// talks to the kernel). Fails with the log when it fails.
pub fn once(
    ns: &Netns,
    mode: Mode,
    manifests: &Path,
    log: &Path,
) -> anyhow::Result<std::time::Duration> {
    let mut child = spawn_agent(ns, mode, manifests, &["--once"], log)?;
    wait_for_log(&mut child, log, PLANNED);
    let planned = std::time::Instant::now();
    let status = child.wait()?;
    if !status.success() {
        bail!(
            "the agent failed: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
    Ok(planned.elapsed())
}

/// A Node (node-a, 192.168.0.10) and `n` ClusterIP Services with two endpoints each.
/// `version` 1 and 2 differ in every tenth Service's endpoints, in 1% of the Services
/// (removed in 2) and in 1% more (added in 2).
pub fn synthetic(n: usize, version: u8) -> String {
    let mut s = String::from(
        "apiVersion: v1\nkind: Node\nmetadata: {name: node-a}\nstatus: {addresses: [{type: InternalIP, address: 192.168.0.10}]}\n",
    );
    let extra = n / 100;
    for i in 0..n + extra {
        let present = match version {
            1 => i < n,
            _ => i >= extra,
        };
        if !present {
            continue;
        }
        let ip = 0x0a60_0000u32 + 1 + u32::try_from(i).unwrap_or(0);
        let ip = std::net::Ipv4Addr::from(ip);
        let shift = if version == 2 && i % 10 == 0 {
            50_000
        } else {
            0
        };
        let ep = |k: usize| {
            std::net::Ipv4Addr::from(0x0af5_0000u32 + u32::try_from(2 * i + k + shift).unwrap_or(0))
        };
        let _ = write!(
            s,
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: bench}}\nspec: {{clusterIP: {ip}, ports: [{{name: http, protocol: TCP, port: 80}}]}}\n\
             ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: s{i}-x, namespace: bench, labels: {{kubernetes.io/service-name: s{i}}}}}\naddressType: IPv4\n\
             ports: [{{name: http, protocol: TCP, port: 8080}}]\nendpoints: [{{addresses: [{}], conditions: {{ready: true}}}}, {{addresses: [{}], conditions: {{ready: true}}}}]\n",
            ep(0),
            ep(1)
        );
    }
    s
}

/// Our nftables table in a canonical form: handles dropped, set elements sorted, rules in
/// order per chain; `None` when the table does not exist.
pub fn nft_snapshot(ns: &Netns) -> anyhow::Result<Option<String>> {
    nft_table_snapshot(ns, "switchyard")
}

/// [`nft_snapshot`] of any `ip` table.
pub fn nft_table_snapshot(ns: &Netns, table: &str) -> anyhow::Result<Option<String>> {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns.name(),
            "nft",
            "-j",
            "list",
            "table",
            "ip",
            table,
        ])
        .output()?;
    if !out.status.success() {
        return Ok(None);
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let mut objects = BTreeSet::new();
    let mut rules: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for item in v["nftables"].as_array().cloned().unwrap_or_default() {
        let Some((kind, body)) = item.as_object().and_then(|o| o.iter().next()) else {
            continue;
        };
        let mut body = body.clone();
        if let Some(o) = body.as_object_mut() {
            o.remove("handle");
            if let Some(serde_json::Value::Array(elems)) = o.get_mut("elem") {
                elems.sort_by_key(|e| e.to_string());
            }
        }
        match kind.as_str() {
            "metainfo" => {}
            "rule" => rules
                .entry(body["chain"].to_string())
                .or_default()
                .push(body["expr"].to_string()),
            _ => {
                objects.insert(format!("{kind} {body}"));
            }
        }
    }
    let mut s: String = objects.into_iter().map(|o| o + "\n").collect();
    for (chain, rs) in rules {
        let _ = writeln!(s, "rules {chain}: {}", rs.join(" ; "));
    }
    Ok(Some(s))
}

/// Our iptables chains of one table, canonical: declarations sorted, rules in order per chain
/// (jumps from built-in chains included).
pub fn iptables_snapshot(ns: &Netns, mode: Mode, table: &str) -> anyhow::Result<String> {
    let text = ns.exec(mode.save(), &["-t", table])?;
    let mut decls = BTreeSet::new();
    let mut rules: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(d) = line.strip_prefix(':') {
            let name = d.split_whitespace().next().unwrap_or("");
            if name.starts_with("SWYD") {
                decls.insert(name.to_string());
            }
        } else if let Some(r) = line.strip_prefix("-A ") {
            let chain = r.split_whitespace().next().unwrap_or("");
            if chain.starts_with("SWYD") || r.contains("-j SWYD") || r.contains("-g SWYD") {
                rules
                    .entry(chain.to_string())
                    .or_default()
                    .push(r.to_string());
            }
        }
    }
    let mut s: String = decls.into_iter().map(|d| format!(":{d}\n")).collect();
    for (chain, rs) in rules {
        let _ = writeln!(s, "{chain}: {}", rs.join(" ; "));
    }
    Ok(s)
}

/// Our ipsets and their members.
pub fn ipsets(ns: &Netns) -> anyhow::Result<BTreeMap<String, BTreeSet<String>>> {
    let text = ns.exec("ipset", &["save"])?;
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        let mut w = line.split_whitespace();
        match (w.next(), w.next(), w.next()) {
            (Some("create"), Some(name), _) if name.starts_with("SWYD") => {
                out.entry(name.to_string()).or_default();
            }
            (Some("add"), Some(name), Some(entry)) if name.starts_with("SWYD") => {
                out.entry(name.to_string())
                    .or_default()
                    .insert(entry.to_string());
            }
            _ => {}
        }
    }
    Ok(out)
}

/// A small deterministic generator (xorshift), seeded from the clock; the seed is printed so a
/// failing run can be repeated (`SWYD_SEED`).
pub struct Rng(u64);

impl Rng {
    pub fn from_env_or_clock() -> Self {
        let seed = std::env::var("SWYD_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            })
            .max(1);
        println!("seed {seed} (SWYD_SEED={seed} repeats this run)");
        Self::from_seed(seed)
    }

    pub fn from_seed(seed: u64) -> Self {
        Self(splitmix64(seed).max(1))
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Scrambles a seed into xorshift's state. A clock seed differs between runs mostly in its low
/// bits, and xorshift's first outputs from such seeds barely differ (seen: four kill points in
/// a row at 0.10-0.18 of the span, the same run after run); splitmix64 spreads every bit.
fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// An environment override for a test's size, else the default.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
