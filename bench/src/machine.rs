//! The machine a report was measured on, written next to the figures: times are only
//! comparable on the same kind of machine, and the README says which one produced its plots.

use std::fmt::Write as _;

#[derive(Debug, Clone)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub os: String,
    pub commit: String,
    pub started: String,
    pub load_before: String,
}

impl Machine {
    /// Reads /proc and the git checkout (best effort: "unknown" where unreadable).
    pub fn describe() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let memory_kib: f64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| {
                l.strip_prefix("MemTotal:")?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0);
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            memory_gib: memory_kib / 1024.0 / 1024.0,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            os,
            commit: command("git", &["rev-parse", "--short", "HEAD"]),
            started: command("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            load_before: load(),
        }
    }

    /// `machine.txt`, with the load average now (the end of the run) next to the start's.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "cpu: {} x {}", self.cores, self.cpu);
        let _ = writeln!(out, "memory: {:.1} GiB", self.memory_gib);
        let _ = writeln!(out, "os: {}, kernel {}", self.os, self.kernel);
        let _ = writeln!(out, "commit: {}", self.commit);
        let _ = writeln!(out, "run started: {}", self.started);
        let _ = writeln!(out, "load average at start: {}", self.load_before);
        let _ = writeln!(out, "load average at end: {}", load());
        out
    }

    /// One line for plot captions.
    pub fn caption(&self) -> String {
        format!(
            "{} x {}, {:.0} GiB, kernel {}, commit {}, {}",
            self.cores, self.cpu, self.memory_gib, self.kernel, self.commit, self.started
        )
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn command(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}
