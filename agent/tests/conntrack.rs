//! The real binary's conntrack cleanup (root): a UDP client that keeps its source port follows
//! its Service's endpoint when the endpoint is replaced (kube-proxy #126130), because the agent
//! deletes the stale entry after committing the new rules. Everything lives in one network
//! namespace: the endpoints are addresses of a veth interface, the client is the node itself.

use std::net::UdpSocket;
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::IpFamily;

const A: &str = "10.244.1.1";
const B: &str = "10.244.1.2";

/// A network namespace, deleted on drop (also when the test fails).
struct Netns(String);

impl Netns {
    fn create(tag: &str) -> Self {
        let name = format!("swyd-ct-{tag}-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("run ip");
        assert!(ok.success(), "ip netns add {name} (this test needs root)");
        Self(name)
    }
    fn ip(&self, args: &str) {
        let out = self.exec("ip", &args.split(' ').collect::<Vec<_>>());
        assert!(out.status.success(), "ip {args}: {out:?}");
    }
    fn exec(&self, program: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0, program])
            .args(args)
            .output()
            .expect("ip netns exec")
    }
    fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.0)
    }
    /// Runs `f` on a thread inside the namespace (sockets it opens stay there).
    fn within<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = self.path();
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("open netns");
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("thread in netns")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A UDP server on `ip:5353` in the namespace, answering every datagram with its address.
fn serve(ns: &Netns, ip: &'static str, stop: Arc<AtomicBool>) {
    let socket = ns.within(move || UdpSocket::bind((ip, 5353)).expect("bind endpoint"));
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((_, peer)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(ip.as_bytes(), peer);
            }
        }
    });
}

fn manifest(endpoint: &str) -> String {
    format!(
        "apiVersion: v1
kind: Node
metadata: {{name: node-a}}
status: {{addresses: [{{type: InternalIP, address: 192.168.0.10}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: dns, namespace: kube-system}}
spec:
  clusterIP: 10.96.0.53
  ports: [{{protocol: UDP, port: 53, targetPort: 5353}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: dns-1
  namespace: kube-system
  labels: {{kubernetes.io/service-name: dns}}
addressType: IPv4
ports: [{{protocol: UDP, port: 5353}}]
endpoints: [{{addresses: [{endpoint}], nodeName: node-a}}]
"
    )
}

/// Replaces the file in one rename, so the agent never reads half of it.
fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write manifest");
    std::fs::rename(&tmp, path).expect("rename manifest");
}

struct Agent(Child, PathBuf);

impl Agent {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls the namespace's nftables table until `check` holds (bounded; fails with the log).
fn wait_for_table(ns: &Netns, agent: &Agent, what: &str, check: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let table = String::from_utf8_lossy(
            &ns.exec("nft", &["list", "table", "ip", "switchyard"])
                .stdout,
        )
        .into_owned();
        if check(&table) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{table}\n--- agent log ---\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One request over the pinned client; the answering endpoint, or why none answered.
fn ask(client: &UdpSocket) -> String {
    let mut buf = [0u8; 64];
    match client.send(b"q").and_then(|_| client.recv(&mut buf)) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn replaced_endpoint_takes_over_a_pinned_udp_client() {
    let ns = Netns::create("agent");
    ns.ip("link set lo up");
    ns.ip("link add veth0 type veth peer name veth1");
    ns.ip("link set veth1 up");
    for addr in ["192.168.0.10/24", "10.244.1.1/32", "10.244.1.2/32"] {
        ns.ip(&format!("addr add {addr} dev veth0"));
    }
    ns.ip("link set veth0 up");
    ns.ip("route add 10.96.0.0/12 dev veth0");
    let stop = Arc::new(AtomicBool::new(false));
    serve(&ns, A, stop.clone());
    serve(&ns, B, stop.clone());

    let dir = std::env::temp_dir().join(format!("swyd-ct-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let manifests = dir.join("cluster.yaml");
    write(&manifests, &manifest(A));
    let log = dir.join("agent.log");
    let agent = Agent(
        Command::new("ip")
            .args(["netns", "exec", &ns.0, env!("CARGO_BIN_EXE_switchyard")])
            .args(["--mode", "nftables", "--manifests"])
            .arg(&manifests)
            .args(["--min-sync-period", "100ms"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start switchyard"),
        log,
    );
    wait_for_table(&ns, &agent, "endpoint A programmed", |t| t.contains(A));

    // The client binds once and keeps its source port for the whole test.
    let client = ns.within(|| {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind client");
        s.connect("10.96.0.53:53").expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        s
    });
    for _ in 0..3 {
        assert_eq!(ask(&client), A, "log:\n{}", agent.log());
    }

    write(&manifests, &manifest(B));
    wait_for_table(&ns, &agent, "endpoint B replacing A", |t| {
        t.contains(B) && !t.contains(A)
    });
    // The cleanup runs right after the commit. A client the cleanup missed stays on A for as
    // long as it keeps sending (each request refreshes the entry), so 50 tries fail on the bug.
    let mut answers = Vec::new();
    for _ in 0..50 {
        let answer = ask(&client);
        if answer == B {
            break;
        }
        answers.push(answer);
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let log = agent.log();
    assert!(
        answers.len() < 50,
        "the pinned client never reached B: {answers:?}\n--- agent log ---\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("conntrack cleanup") && l.contains("deleted=1")),
        "the agent logs the deleted entry:\n{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The Cleaner against real kernel entries: the kernel filters the dump by protocol, the budget
/// bounds one run, the rest is carried and finished by the next run, and a TCP entry to the same
/// address and port is never touched.
#[test]
fn cleanup_is_bounded_and_carries_the_rest() {
    bounded_cleanup(IpFamily::V4);
}

/// The same in IPv6 (`AF_INET6` dumps, 16-byte addresses in the delete's tuple).
#[test]
fn cleanup_is_bounded_and_carries_the_rest_v6() {
    bounded_cleanup(IpFamily::V6);
}

fn bounded_cleanup(family: IpFamily) {
    use switchyard_agent::conntrack::Cleaner;
    use switchyard_core::model::ObjectRef;
    use switchyard_core::plan::ServiceKey;
    use switchyard_core::{FlowCleanup, Protocol, ServicePortName};

    let (tag, node, routed, vip, endpoint, any) = match family {
        IpFamily::V4 => (
            "v4",
            "192.168.0.10/24",
            "10.96.0.0/12",
            "10.96.0.53",
            "10.244.1.1",
            "0.0.0.0:0",
        ),
        IpFamily::V6 => (
            "v6",
            "fd00::10/64 nodad",
            "fd00:96::/64",
            "fd00:96::53",
            "fd00:244::1",
            "[::]:0",
        ),
    };
    let ns = Netns::create(tag);
    ns.ip("link set lo up");
    ns.ip("link add veth0 type veth peer name veth1");
    ns.ip("link set veth1 up");
    ns.ip(&format!("addr add {node} dev veth0"));
    ns.ip("link set veth0 up");
    ns.ip(&format!("route add {routed} dev veth0"));
    // Any conntrack expression switches connection tracking on in the namespace.
    let out = ns.exec(
        "nft",
        &["add table inet t; add chain inet t out { type filter hook output priority 0; }; add rule inet t out ct state new counter"],
    );
    assert!(out.status.success(), "nft: {out:?}");

    let vip: std::net::IpAddr = vip.parse().expect("address");
    let endpoint: std::net::IpAddr = endpoint.parse().expect("address");
    let (stats, carried, stats2, left) = ns.within(move || {
        // Three UDP entries to the key (unanswered, untranslated: reply source = the address
        // itself) and one TCP attempt to the same address and port.
        let mut clients = Vec::new();
        for _ in 0..3 {
            let s = UdpSocket::bind(any).expect("bind");
            s.send_to(b"q", (vip, 53)).expect("send");
            clients.push(s);
        }
        let _ = std::net::TcpStream::connect_timeout(&(vip, 53).into(), Duration::from_millis(200));
        let rule = FlowCleanup {
            family,
            key: ServiceKey::Addr {
                ip: vip,
                protocol: Protocol::Udp,
                port: 53,
            },
            keep: [(endpoint, 5353)].into(),
            service: ServicePortName {
                service: ObjectRef::new("kube-system", "dns"),
                port: String::new(),
                protocol: Protocol::Udp,
            },
        };
        let mut cleaner = Cleaner::with_budget(family, 2);
        let stats = cleaner.run(vec![rule]);
        let carried = cleaner.carried().to_vec();
        let stats2 = cleaner.run(carried.clone());
        let left =
            std::fs::read_to_string("/proc/thread-self/net/nf_conntrack").unwrap_or_default();
        (stats, carried.len(), stats2, left)
    });
    assert_eq!(
        stats.unfiltered_dumps, 0,
        "the kernel filters by protocol: {stats:?}"
    );
    assert_eq!(
        stats.scanned, 3,
        "only the UDP entries are dumped: {stats:?}"
    );
    assert_eq!(
        (stats.deleted, stats.failed, stats.carried),
        (2, 0, 1),
        "{stats:?}"
    );
    assert_eq!(carried, 1);
    assert_eq!(
        (stats2.scanned, stats2.deleted, stats2.carried),
        (1, 1, 0),
        "{stats2:?}"
    );
    let udp_left = left.lines().filter(|l| l.contains(" udp ")).count();
    assert_eq!(udp_left, 0, "{left}");
    assert!(
        left.lines().any(|l| l.contains(" tcp ")),
        "TCP untouched: {left}"
    );
}
