//! Both address families through the agent: `--dry-run` and `explain` show both families'
//! plans, and a running agent follows the Node's families (an IPv6 address gained or the
//! IPv4 one lost while it runs), proven with the kernel's tables and a real IPv6 connection.
//! The running test needs root (a network namespace); the others do not.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const V4_NODE: &str = "{type: InternalIP, address: 192.168.0.10}";
const V6_NODE: &str = "{type: InternalIP, address: \"fd00:192:168::10\"}";

/// A dual-stack NodePort Service whose IPv4 and IPv6 slices name different pods, on a node
/// with these addresses.
fn manifest(node_addresses: &[&str]) -> String {
    format!(
        r#"apiVersion: v1
kind: Node
metadata: {{name: node-a}}
status:
  addresses: [{}]
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10, "fd00:10:96::10"]
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv4, IPv6]
  selector: {{app: web}}
  ports:
  - {{name: http, protocol: TCP, port: 80, targetPort: 8080, nodePort: 30080}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-4, namespace: shop, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, protocol: TCP, port: 8080}}]
endpoints:
- {{addresses: [10.244.1.10], nodeName: node-a, conditions: {{ready: true}}}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-6, namespace: shop, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv6
ports: [{{name: http, protocol: TCP, port: 8080}}]
endpoints:
- {{addresses: ["fd00:10:244:1::20"], nodeName: node-a, conditions: {{ready: true}}}}
"#,
        node_addresses.join(", ")
    )
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-ds-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn write_manifest(path: &Path, node_addresses: &[&str]) {
    // Written aside and renamed, so the agent never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, manifest(node_addresses)).expect("write manifest");
    std::fs::rename(&tmp, path).expect("rename manifest");
}

fn switchyard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run switchyard")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

const CIDRS: &str = "10.244.0.0/16,fd00:10:244::/48";

#[test]
fn dry_run_renders_both_families() {
    let path = temp_dir("dry").join("m.yaml");
    write_manifest(&path, &[V4_NODE, V6_NODE]);
    let m = path.to_str().expect("utf8");
    let (nft, err) = text(&switchyard(&[
        "--manifests",
        m,
        "--cluster-cidr",
        CIDRS,
        "--dry-run",
    ]));
    for want in [
        "add table ip switchyard",
        "10.96.0.10 . tcp . 80 : 10.244.1.10 . 8080",
        "add table ip6 switchyard",
        "fd00:10:96::10 . tcp . 80 : fd00:10:244:1::20 . 8080",
        // The NodePort on the node's IPv6 address, to the IPv6 slice only.
        "fd00:192:168::10 . tcp . 30080 : fd00:10:244:1::20 . 8080",
        "ip6 saddr fd00:10:244::/48",
    ] {
        assert!(
            nft.contains(want),
            "nftables dry-run lacks {want:?}:\n{nft}\n{err}"
        );
    }
    assert!(!nft.contains("fd00:10:96::10 . tcp . 80 : 10.244"), "{nft}");
    let (ipt, err) = text(&switchyard(&[
        "--manifests",
        m,
        "--mode",
        "iptables",
        "--iptables-variant",
        "legacy",
        "--dry-run",
    ]));
    for want in [
        "# full sync, IPv4",
        "-j DNAT --to-destination 10.244.1.10:8080",
        "# full sync, IPv6",
        "-j DNAT --to-destination [fd00:10:244:1::20]:8080",
        "add SWYD6-VIPS fd00:192:168::10,tcp:30080",
    ] {
        assert!(
            ipt.contains(want),
            "iptables dry-run lacks {want:?}:\n{ipt}\n{err}"
        );
    }

    // IPVS mode: each family's firewall-mark services (`-6` for IPv6), destinations and
    // virtual addresses, and each family's helper table.
    let (ipvs, err) = text(&switchyard(&[
        "--manifests",
        m,
        "--mode",
        "ipvs",
        "--cluster-cidr",
        CIDRS,
        "--dry-run",
    ]));
    for want in [
        "-r 10.244.1.10:8080 -m -w 1",
        "ip addr add 10.96.0.10 dev swyd-ipvs0",
        "add table ip switchyard-ipvs",
        "-6 -r [fd00:10:244:1::20]:8080 -m -w 1",
        "ip addr add fd00:10:96::10 dev swyd-ipvs0",
        "add table ip6 switchyard-ipvs",
    ] {
        assert!(
            ipvs.contains(want),
            "ipvs dry-run lacks {want:?}:\n{ipvs}\n{err}"
        );
    }
    assert!(!ipvs.contains("-6 -r 10.244"), "{ipvs}");

    // A node with only an IPv4 address plans (and renders) no IPv6.
    write_manifest(&path, &[V4_NODE]);
    let (nft, _) = text(&switchyard(&["--manifests", m, "--dry-run"]));
    assert!(
        nft.contains("add table ip switchyard") && !nft.contains("ip6"),
        "{nft}"
    );
}

fn explain(path: &Path, from: &str, to: &str) -> Result<serde_json::Value, String> {
    let out = switchyard(&[
        "explain",
        "--manifests",
        path.to_str().expect("utf8"),
        "--cluster-cidr",
        CIDRS,
        "--from",
        from,
        "--to",
        to,
        "--json",
    ]);
    let (stdout, stderr) = text(&out);
    if !out.status.success() {
        return Err(stderr);
    }
    serde_json::from_str(&stdout).map_err(|e| format!("{e}: {stdout}"))
}

#[test]
fn explain_answers_in_both_families() {
    let path = temp_dir("explain").join("m.yaml");
    write_manifest(&path, &[V4_NODE, V6_NODE]);
    let v6 = explain(&path, "fd00:10:244:2::7", "[fd00:10:96::10]:80/tcp").expect("explain v6");
    let eps = &v6["verdict"]["Dnat"]["endpoints"];
    assert_eq!(eps.as_array().map(Vec::len), Some(1), "{v6}");
    assert_eq!(eps[0]["ip"], "fd00:10:244:1::20", "{v6}");
    assert_eq!(v6["verdict"]["Dnat"]["masquerade"], false, "{v6}");
    let np = explain(&path, "fd00:192:168::20", "[fd00:192:168::10]:30080/tcp").expect("np");
    assert_eq!(
        np["verdict"]["Dnat"]["endpoints"][0]["ip"], "fd00:10:244:1::20",
        "{np}"
    );
    assert_eq!(np["verdict"]["Dnat"]["masquerade"], true, "{np}");
    let v4 = explain(&path, "10.244.2.7", "10.96.0.10:80/tcp").expect("explain v4");
    assert_eq!(
        v4["verdict"]["Dnat"]["endpoints"][0]["ip"], "10.244.1.10",
        "{v4}"
    );

    // An IPv4-only node has no IPv6 plan, and says why.
    write_manifest(&path, &[V4_NODE]);
    let err = explain(&path, "fd00:10:244:2::7", "[fd00:10:96::10]:80/tcp").expect_err("no v6");
    assert!(err.contains("IPv6"), "{err}");
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

struct Netns(String);

impl Netns {
    fn create(tag: &str) -> Self {
        let name = format!("swyd-ds-{}-{tag}", std::process::id());
        run("ip", &["netns", "add", &name]);
        let ns = Self(name);
        ns.ip(&["link", "set", "lo", "up"]);
        for conf in ["all", "default"] {
            ns.exec(
                "sysctl",
                &["-qw", &format!("net.ipv6.conf.{conf}.accept_dad=0")],
            );
        }
        ns
    }

    fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.0.as_str()];
        all.extend_from_slice(args);
        run("ip", &all);
    }

    fn exec(&self, program: &str, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0, program])
            .args(args)
            .output()
            .expect("ip netns exec");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `nft list table <family> switchyard`; empty when there is none.
    fn table(&self, family: &str) -> String {
        self.exec("nft", &["list", "table", family, "switchyard"])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().expect("spawn");
    assert!(status.success(), "{program} {args:?} failed");
}

/// A pod namespace behind a veth from `node` with fd00:10:244:1::20/64 (the node is ::1),
/// answering TCP on 8080 with the peer address it saw.
fn start_pod(node: &Netns) -> Netns {
    let pod = Netns::create("pod");
    node.ip(&[
        "link", "add", "vh", "type", "veth", "peer", "name", "vp", "netns", &pod.0,
    ]);
    node.ip(&[
        "-6",
        "addr",
        "add",
        "fd00:10:244:1::1/64",
        "dev",
        "vh",
        "nodad",
    ]);
    node.ip(&["link", "set", "vh", "up"]);
    pod.ip(&[
        "-6",
        "addr",
        "add",
        "fd00:10:244:1::20/64",
        "dev",
        "vp",
        "nodad",
    ]);
    pod.ip(&["link", "set", "vp", "up"]);
    pod.ip(&["-6", "route", "add", "default", "via", "fd00:10:244:1::1"]);
    // Cluster IPs route towards the pod link (any route will do: the DNAT happens first).
    node.ip(&["-6", "route", "add", "default", "via", "fd00:10:244:1::20"]);
    let path = format!("/run/netns/{}", pod.0);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).expect("open pod netns");
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns pod");
        let listener = std::net::TcpListener::bind("[::]:8080").expect("bind 8080");
        tx.send(()).expect("ready");
        for mut conn in listener.incoming().flatten() {
            use std::io::Write as _;
            let _ = writeln!(conn, "pod");
        }
    });
    rx.recv().expect("pod server ready");
    pod
}

/// A TCP connection from inside `netns` to `to`: the first line the server sent, or `None`.
fn connect_from(netns: &Netns, to: &str) -> Option<String> {
    let path = format!("/run/netns/{}", netns.0);
    let to: std::net::SocketAddr = to.parse().expect("address");
    std::thread::spawn(move || {
        use std::io::Read as _;
        let f = std::fs::File::open(&path).ok()?;
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
        let mut conn = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(2)).ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut text = String::new();
        conn.read_to_string(&mut text).ok()?;
        Some(text.trim().to_string())
    })
    .join()
    .ok()
    .flatten()
}

/// The agent process; killed on drop, its log kept in a file.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls the node's tables until `check(ip, ip6)` holds, or fails with both and the log.
fn wait_for(what: &str, node: &Netns, agent: &Agent, check: impl Fn(&str, &str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let (v4, v6) = (node.table("ip"), node.table("ip6"));
        if check(&v4, &v6) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for: {what}\n--- ip ---\n{v4}\n--- ip6 ---\n{v6}\n--- agent log ---\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn agent_follows_the_nodes_families_without_a_restart() {
    assert!(
        is_root(),
        "this test creates network namespaces: run it as root"
    );
    let node = Netns::create("node");
    let _pod = start_pod(&node);
    let dir = temp_dir("live");
    let path = dir.join("m.yaml");
    write_manifest(&path, &[V4_NODE]);
    let log = dir.join("agent.log");
    let child = Command::new("ip")
        .args(["netns", "exec", &node.0, env!("CARGO_BIN_EXE_switchyard")])
        .args([
            "--mode",
            "nftables",
            "--manifests",
            path.to_str().expect("utf8"),
        ])
        .args([
            "--cluster-cidr",
            CIDRS,
            "--min-sync-period",
            "100ms",
            "--sync-period",
            "2s",
        ])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start switchyard");
    let agent = Agent { child, log };

    // 1. IPv4 only: no IPv6 table, so the IPv6 cluster IP is not served.
    wait_for("the IPv4 plan", &node, &agent, |v4, v6| {
        v4.contains("10.96.0.10") && v6.is_empty()
    });
    assert_eq!(connect_from(&node, "[fd00:10:96::10]:80"), None);

    // 2. The Node gains an IPv6 address: IPv6 is planned, and a real connection through the
    //    IPv6 cluster IP and NodePort reaches the IPv6 endpoint; IPv4 stays.
    write_manifest(&path, &[V4_NODE, V6_NODE]);
    wait_for("the IPv6 family gained", &node, &agent, |v4, v6| {
        v4.contains("10.96.0.10") && v6.contains("fd00:10:96::10")
    });
    assert_eq!(
        connect_from(&node, "[fd00:10:96::10]:80").as_deref(),
        Some("pod"),
        "{}",
        node.table("ip6")
    );

    // 3. The Node loses its IPv4 address: the IPv4 table goes, IPv6 keeps working.
    write_manifest(&path, &[V6_NODE]);
    wait_for("the IPv4 family lost", &node, &agent, |v4, v6| {
        v4.is_empty() && v6.contains("fd00:10:96::10")
    });
    assert_eq!(
        connect_from(&node, "[fd00:10:96::10]:80").as_deref(),
        Some("pod")
    );
    let log = agent.log();
    assert!(log.contains("the node has this family now"), "{log}");
    assert!(log.contains("the node no longer has this family"), "{log}");
}
