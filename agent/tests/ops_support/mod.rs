//! What the operational-surface test needs around the agent: a network namespace with the
//! node's address, HTTP requests from inside it, the agent process, failing tools on demand.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The node's address inside the namespace (its Node's InternalIP in the test).
pub const NODE_IP: &str = "192.168.77.1";

pub struct Netns(pub String);

impl Netns {
    pub fn create(tag: &str) -> Self {
        let name = format!("swyd-ops-{}-{tag}", std::process::id());
        run("ip", &["netns", "add", &name]);
        let ns = Self(name);
        run("ip", &["-n", &ns.0, "link", "set", "lo", "up"]);
        // The node's address, on a veth (the test kernel has no dummy module).
        run(
            "ip",
            &[
                "-n", &ns.0, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
            ],
        );
        run(
            "ip",
            &[
                "-n",
                &ns.0,
                "addr",
                "add",
                &format!("{NODE_IP}/24"),
                "dev",
                "eth0",
            ],
        );
        run("ip", &["-n", &ns.0, "link", "set", "eth0", "up"]);
        run("ip", &["-n", &ns.0, "link", "set", "eth0p", "up"]);
        ns
    }

    /// Runs `f` on a thread inside the namespace.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.0);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open netns");
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("thread in netns")
    }

    /// `GET path` on `addr` inside the namespace: status and body, or the connect error.
    pub fn get(&self, addr: &str, path: &str) -> std::io::Result<(u16, String)> {
        let addr: std::net::SocketAddr = addr.parse().expect("address");
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        self.enter(move || {
            let mut conn = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
            conn.set_read_timeout(Some(Duration::from_secs(5)))?;
            conn.write_all(request.as_bytes())?;
            let mut raw = String::new();
            conn.read_to_string(&mut raw)?;
            let status = raw
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
            Ok((status, body.to_string()))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

pub fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().expect("spawn");
    assert!(status.success(), "{program} {args:?} failed");
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// The agent process; killed on drop, its log kept in a file.
pub struct Agent {
    pub child: Child,
    pub log: PathBuf,
}

impl Agent {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory on `PATH` before the real one, with an `iptables-nft-restore` and an `ipset`
/// (the iptables backend's two writers) that fail (without naming a line, so no service port
/// is blamed) while `fail` exists.
pub fn failing_tools(dir: &Path, fail: &Path) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    for tool in ["iptables-nft-restore", "ipset"] {
        let real = ["/usr/sbin", "/sbin", "/usr/bin"]
            .into_iter()
            .map(|d| format!("{d}/{tool}"))
            .find(|p| Path::new(p).exists())
            .unwrap_or_else(|| panic!("{tool} not installed"));
        let script = format!(
            "#!/bin/sh\nif [ -e '{}' ]; then cat >/dev/null; echo '{tool}: injected failure' >&2; exit 1; fi\nexec {real} \"$@\"\n",
            fail.display()
        );
        let path = bin.join(tool);
        std::fs::write(&path, script).expect("write wrapper");
        run("chmod", &["+x", path.to_str().expect("utf8")]);
    }
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Polls `check` until it holds; fails with what was last seen and the agent's log.
pub fn wait_until(what: &str, agent: &Agent, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let last = match check() {
            Ok(()) => return,
            Err(e) => e,
        };
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for: {what}\nlast: {last}\n--- agent log ---\n{}",
                agent.log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Expects `GET addr path` to answer `status` with a body containing every `want`.
pub fn expect(
    ns: &Netns,
    addr: &str,
    path: &str,
    status: u16,
    want: &[&str],
) -> Result<(), String> {
    match ns.get(addr, path) {
        Ok((s, body)) if s == status && want.iter().all(|w| body.contains(w)) => Ok(()),
        Ok((s, body)) => Err(format!("{addr}{path}: {s} {body}")),
        Err(e) => Err(format!("{addr}{path}: {e}")),
    }
}
