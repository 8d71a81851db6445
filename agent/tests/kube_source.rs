//! The real `switchyard` binary against the in-repo fake API server, in a fresh network
//! namespace (so it programs only that namespace's nftables), checked with
//! `nft list table ip switchyard` and with real TCP connections through a cluster IP to a
//! "pod" namespace behind a veth. Needs root (the dry-run tests do not).
//!
//! One test walks the agent's whole life, because each step starts from the state the previous
//! one left (as on a node): nothing before every initial list, then create/update/delete of
//! Services and slices, readiness flips, a node address change, dropped streams, an outage
//! with `410 Gone` on return, and a restart that must leave the old rules untouched until the
//! lists complete again.

mod fake_apiserver;

use fake_apiserver::{FakeApi, Res};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Netns(String);

impl Netns {
    fn create(tag: &str) -> Self {
        let name = format!("swyd-kube-{}-{tag}", std::process::id());
        run("ip", &["netns", "add", &name]);
        run("ip", &["-n", &name, "link", "set", "lo", "up"]);
        Self(name)
    }

    /// `nft list table ip switchyard` inside the namespace; empty when there is no table.
    fn table(&self) -> String {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.0,
                "nft",
                "list",
                "table",
                "ip",
                "switchyard",
            ])
            .output()
            .expect("run nft");
        String::from_utf8_lossy(&out.stdout).into_owned()
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

/// The agent process; killed (SIGKILL) on drop, its log kept in a file.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn start(netns: &Netns, kubeconfig: &std::path::Path, extra: &[&str], log: PathBuf) -> Self {
        let file = std::fs::File::create(&log).expect("log file");
        let mut args = vec![
            "netns",
            "exec",
            &netns.0,
            env!("CARGO_BIN_EXE_switchyard"),
            "--mode",
            "nftables",
            "--kubeconfig",
            kubeconfig.to_str().expect("utf8"),
            "--hostname-override",
            "node-a",
            "--min-sync-period",
            "100ms",
            "--sync-period",
            "2s",
        ];
        args.extend_from_slice(extra);
        let child = Command::new("ip")
            .args(&args)
            .env("RUST_LOG", "info,kube=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start switchyard");
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as a DaemonSet rollout does; waits for the exit.
    fn stop(mut self) {
        run("kill", &["-TERM", &self.child.id().to_string()]);
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` on the table until it holds, or fails with the table and the agent's log.
fn wait_for(what: &str, netns: &Netns, agent: &Agent, check: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let table = netns.table();
        if check(&table) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for: {what}\n--- table ---\n{table}\n--- agent log ---\n{}",
                agent.log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn node(address: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": "node-a", "labels": {"topology.kubernetes.io/zone": "zone-a"}},
           "spec": {"podCIDRs": ["10.244.1.0/24"]},
           "status": {"addresses": [{"type": "InternalIP", "address": address},
                                    {"type": "Hostname", "address": "node-a"}]}})
}

fn service(name: &str, ip: &str, node_port: Option<u16>) -> Value {
    let mut port = json!({"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080});
    if let Some(np) = node_port {
        port["nodePort"] = json!(np);
    }
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": "shop"},
           "spec": {"type": if node_port.is_some() { "NodePort" } else { "ClusterIP" },
                    "clusterIP": ip, "clusterIPs": [ip], "ipFamilies": ["IPv4"],
                    "ports": [port], "externalTrafficPolicy": "Cluster"}})
}

fn slice(name: &str, service: &str, endpoints: &[(&str, bool)]) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(ip, ready)| {
            json!({"addresses": [ip], "nodeName": "node-a", "zone": "zone-a",
            "conditions": {"ready": ready, "serving": ready, "terminating": false}})
        })
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": name, "namespace": "shop",
                        "labels": {"kubernetes.io/service-name": service,
                                   "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
                        "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": "2026-01-01T00:00:00Z"}},
           "addressType": "IPv4",
           "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
           "endpoints": endpoints})
}

fn service_cidr(cidr: &str) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR",
           "metadata": {"name": "kubernetes"}, "spec": {"cidrs": [cidr]}})
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// A "pod" namespace behind a veth from `node`, holding `addresses` (/24 each, gateway .1 of
/// the first), answering every TCP connection on port 8080 with the address it was reached
/// at. The node gets 10.244.1.1 and a default route to the pod, so that cluster IPs route.
fn start_pod(node: &Netns, addresses: &[&str]) -> Netns {
    let pod = Netns::create("pod");
    run(
        "ip",
        &[
            "-n", &node.0, "link", "add", "vh", "type", "veth", "peer", "name", "vp", "netns",
            &pod.0,
        ],
    );
    run(
        "ip",
        &["-n", &node.0, "addr", "add", "10.244.1.1/24", "dev", "vh"],
    );
    run("ip", &["-n", &node.0, "link", "set", "vh", "up"]);
    for a in addresses {
        run(
            "ip",
            &["-n", &pod.0, "addr", "add", &format!("{a}/24"), "dev", "vp"],
        );
    }
    run("ip", &["-n", &pod.0, "link", "set", "vp", "up"]);
    run(
        "ip",
        &["-n", &pod.0, "route", "add", "default", "via", "10.244.1.1"],
    );
    run(
        "ip",
        &[
            "-n",
            &node.0,
            "route",
            "add",
            "default",
            "via",
            addresses[0],
        ],
    );
    let path = format!("/run/netns/{}", pod.0);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).expect("open pod netns");
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns pod");
        let listener = std::net::TcpListener::bind("0.0.0.0:8080").expect("bind 8080");
        tx.send(()).expect("ready");
        for mut conn in listener.incoming().flatten() {
            use std::io::Write as _;
            let local = conn
                .local_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_default();
            let _ = writeln!(conn, "{local}");
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

#[test]
fn agent_follows_the_api() {
    assert!(
        is_root(),
        "this test creates network namespaces: run it as root"
    );
    let netns = Netns::create("life");
    let pod = start_pod(&netns, &["10.244.1.5", "10.244.1.6", "10.244.1.7"]);
    let api = FakeApi::start_in_netns(Some(&netns.0));
    let dir = std::env::temp_dir().join(format!("switchyard-kube-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeconfig = api.kubeconfig(&dir);

    api.apply(node("192.168.50.1"));
    api.apply(service_cidr("10.96.0.0/16"));
    api.apply(service("web", "10.96.0.10", Some(30080)));
    api.apply(slice("web-1", "web", &[("10.244.1.5", true)]));
    // Owned by another proxy, and headless: kube-proxy's selectors leave both out.
    let mut other = service("other", "10.96.0.99", None);
    other["metadata"]["labels"] = json!({"service.kubernetes.io/service-proxy-name": "elsewhere"});
    api.apply(other);
    let mut headless = service("headless", "10.96.0.98", None);
    headless["metadata"]["labels"] = json!({"service.kubernetes.io/headless": ""});
    api.apply(headless);
    // More objects than one page of the agent's paged list (500), so `continue` is exercised.
    for i in 0..600u32 {
        let ip = format!("10.96.{}.{}", 100 + i / 250, 1 + i % 250);
        api.apply(service(&format!("bulk-{i}"), &ip, None));
    }

    // 1. Nothing is programmed before every initial list has completed.
    api.stall_list(Res::EndpointSlices, true);
    let agent = Agent::start(&netns, &kubeconfig, &[], dir.join("agent-1.log"));
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        netns.table().is_empty(),
        "rules programmed before the EndpointSlice list completed:\n{}\n{}",
        netns.table(),
        agent.log()
    );
    api.stall_list(Res::EndpointSlices, false);
    wait_for("the initial state", &netns, &agent, |t| {
        t.contains("10.96.0.10") && t.contains("10.244.1.5") && t.contains("10.96.102.100")
    });
    // Real packets: the cluster IP reaches the pod.
    assert_eq!(
        connect_from(&netns, "10.96.0.10:80").as_deref(),
        Some("10.244.1.5"),
        "no answer through the cluster IP:\n{}",
        netns.table()
    );
    let table = netns.table();
    assert!(
        !table.contains("10.96.0.99"),
        "service-proxy-name Service programmed"
    );
    assert!(!table.contains("10.96.0.98"), "headless Service programmed");
    assert!(
        table.contains("10.96.0.0/16"),
        "ServiceCIDR missing:\n{table}"
    );
    assert!(
        table.contains("192.168.50.1"),
        "NodePort address missing:\n{table}"
    );
    let requests = api.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("/api/v1/services?") && r.contains("continue=")),
        "no paged list: {requests:#?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.contains("watch=true") && r.contains("allowWatchBookmarks=true")),
        "no bookmarks asked: {requests:#?}"
    );
    assert!(
        requests.iter().any(|r| r.starts_with("/api/v1/nodes?")
            && r.contains("fieldSelector=metadata.name%3Dnode-a")),
        "no node field selector: {requests:#?}"
    );

    // 2. Service and slice create / update / delete.
    api.apply(service("db", "10.96.0.20", None));
    api.apply(slice("db-1", "db", &[("10.244.2.7", true)]));
    wait_for("a new Service and slice", &netns, &agent, |t| {
        t.contains("10.96.0.20") && t.contains("10.244.2.7")
    });
    api.apply(slice("db-1", "db", &[("10.244.2.8", true)]));
    wait_for("a slice update", &netns, &agent, |t| {
        t.contains("10.244.2.8") && !t.contains("10.244.2.7")
    });
    // ... as a partial sync of that one service port.
    let log = agent.log();
    let last_sync = log
        .lines()
        .rfind(|l| l.contains(" synced "))
        .unwrap_or_default();
    assert!(
        last_sync.contains("full=false") && last_sync.contains("written=1 "),
        "a slice update was not a partial sync of one service port: {last_sync}"
    );
    api.apply(service("db", "10.96.0.21", None));
    wait_for("a Service update", &netns, &agent, |t| {
        t.contains("10.96.0.21") && !t.contains("10.96.0.20")
    });
    api.delete(Res::EndpointSlices, "shop", "db-1");
    wait_for("a slice deletion", &netns, &agent, |t| {
        !t.contains("10.244.2.8")
    });
    api.delete(Res::Services, "shop", "db");
    wait_for("a Service deletion", &netns, &agent, |t| {
        !t.contains("10.96.0.21")
    });

    // 3. Readiness flips.
    api.apply(slice(
        "web-1",
        "web",
        &[("10.244.1.5", false), ("10.244.1.6", true)],
    ));
    wait_for("an endpoint turning unready", &netns, &agent, |t| {
        !t.contains("10.244.1.5") && t.contains("10.244.1.6")
    });
    api.apply(slice(
        "web-1",
        "web",
        &[("10.244.1.5", true), ("10.244.1.6", true)],
    ));
    wait_for("an endpoint turning ready", &netns, &agent, |t| {
        t.contains("10.244.1.5") && t.contains("10.244.1.6")
    });

    // 4. The node's address changes: NodePorts follow it.
    api.apply(node("192.168.50.2"));
    wait_for("a node address change", &netns, &agent, |t| {
        t.contains("192.168.50.2") && !t.contains("192.168.50.1")
    });

    // ... and its deletion: no node address left for NodePorts, until it is back.
    api.delete(Res::Nodes, "", "node-a");
    wait_for("the Node's deletion", &netns, &agent, |t| {
        !t.contains("192.168.50.2") && t.contains("10.96.0.10")
    });
    api.apply(node("192.168.50.2"));
    wait_for("the Node's return", &netns, &agent, |t| {
        t.contains("192.168.50.2")
    });

    // Changes every 50 ms for a second are coalesced by --min-sync-period (100 ms here):
    // at most one sync per period, not one per change.
    let syncs = |agent: &Agent| agent.log().matches(" synced ").count();
    let before = syncs(&agent);
    let burst_started = Instant::now();
    for i in 0..20 {
        api.apply(service(
            &format!("burst-{i}"),
            &format!("10.96.3.{i}"),
            None,
        ));
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_for("a burst of Services", &netns, &agent, |t| {
        t.contains("10.96.3.19")
    });
    let burst_syncs = syncs(&agent) - before;
    // One sync per 100 ms of the burst, plus the first and a last one: a loaded machine that
    // stretches the burst allows more, an agent that syncs per change exceeds it (20).
    let allowed = (burst_started.elapsed().as_millis() / 100) as usize + 2;
    assert!(
        burst_syncs <= allowed,
        "20 changes took {burst_syncs} syncs (allowed {allowed})"
    );

    // 5. Dropped watch streams: the agent re-watches and sees later changes.
    api.drop_watches();
    std::thread::sleep(Duration::from_millis(500));
    api.apply(service("cache", "10.96.0.40", None));
    wait_for("a change after dropped streams", &netns, &agent, |t| {
        t.contains("10.96.0.40")
    });

    // A stalled stream delays changes but loses none.
    api.stall_watches(true);
    let three = [
        ("10.244.1.5", true),
        ("10.244.1.6", true),
        ("10.244.1.7", true),
    ];
    api.apply(slice("web-1", "web", &three));
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !netns.table().contains("10.244.1.7"),
        "the stall did not stall"
    );
    api.stall_watches(false);
    wait_for("a change after a stalled stream", &netns, &agent, |t| {
        t.contains("10.244.1.7")
    });

    // 6. Outage: rules stay through periodic resyncs; changes made meanwhile, with the
    //    history compacted (the re-watch gets 410 Gone and relists), converge on return.
    let before = netns.table();
    api.set_down(true);
    api.apply(service("late", "10.96.0.30", None));
    api.delete(Res::Services, "shop", "cache");
    api.compact();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        netns.table(),
        before,
        "rules changed during the outage:\n{}",
        agent.log()
    );
    let answer = connect_from(&netns, "10.96.0.10:80");
    assert!(
        answer
            .as_deref()
            .is_some_and(|a| a.starts_with("10.244.1.")),
        "traffic stopped during the outage: {answer:?}"
    );
    let lists_before = api
        .requests()
        .iter()
        .filter(|r| is_list(r, "/api/v1/services"))
        .count();
    api.set_down(false);
    wait_for("convergence after the outage", &netns, &agent, |t| {
        t.contains("10.96.0.30") && !t.contains("10.96.0.40")
    });
    let lists_after = api
        .requests()
        .iter()
        .filter(|r| is_list(r, "/api/v1/services"))
        .count();
    assert!(lists_after > lists_before, "no relist after 410 Gone");
    assert!(
        agent.log().contains("410"),
        "no 410 in the log:\n{}",
        agent.log()
    );

    // 7. Restart: the old rules stay untouched until every list completes again; a
    //    ServiceCIDR-less API falls back to --service-cluster-ip-range.
    agent.stop();
    assert!(
        netns.table().contains("10.96.0.30"),
        "rules removed on exit"
    );
    api.delete(Res::Services, "shop", "late");
    api.set_service_cidrs_served(false);
    api.stall_list(Res::Services, true);
    let agent = Agent::start(
        &netns,
        &kubeconfig,
        &["--service-cluster-ip-range", "10.100.0.0/16"],
        dir.join("agent-2.log"),
    );
    std::thread::sleep(Duration::from_secs(3));
    let table = netns.table();
    assert!(
        table.contains("10.96.0.30") && table.contains("10.96.0.0/16"),
        "old rules touched before the lists completed:\n{table}\n{}",
        agent.log()
    );
    api.stall_list(Res::Services, false);
    wait_for("convergence after a restart", &netns, &agent, |t| {
        !t.contains("10.96.0.30") && t.contains("10.100.0.0/16") && !t.contains("10.96.0.0/16")
    });
    drop(agent);
    drop(pod);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A list (not a watch) request of `path`.
fn is_list(request: &str, path: &str) -> bool {
    request.starts_with(&format!("{path}?")) && !request.contains("watch=")
}

/// `--dry-run` against the API (no root, nothing touched): the plan is made from
/// the listed objects, and an API without ServiceCIDRs (404) falls back to the flag.
#[test]
fn dry_run_plans_from_the_api() {
    dry_run_with_flag_service_cidrs(|api| api.set_service_cidrs_served(false));
}

/// ServiceCIDRs forbidden (a ClusterRole from before them) fall back to the flag too, instead
/// of keeping the node from ever syncing.
#[test]
fn forbidden_service_cidrs_fall_back_to_the_flag() {
    dry_run_with_flag_service_cidrs(|api| api.forbid(Res::ServiceCidrs));
}

fn dry_run_with_flag_service_cidrs(setup: impl FnOnce(&FakeApi)) {
    let api = FakeApi::start_in_netns(None);
    setup(&api);
    api.apply(node("192.168.60.1"));
    api.apply(service("web", "10.96.0.10", Some(30080)));
    api.apply(slice("web-1", "web", &[("10.244.1.5", true)]));
    let dir = std::env::temp_dir().join(format!("switchyard-kube-dry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeconfig = api.kubeconfig(&dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["--kubeconfig", kubeconfig.to_str().expect("utf8")])
        .args(["--hostname-override", "node-a", "--dry-run"])
        .args(["--service-cluster-ip-range", "10.100.0.0/16"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run switchyard");
    // The dry run waits for every initial list: a kind that never lists would hang it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "the dry run never finished:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "table ip switchyard",
        "10.96.0.10",
        "10.244.1.5",
        "192.168.60.1",
        "10.100.0.0/16",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    // Only IPv4: the Node has only an IPv4 address.
    assert!(!text.contains("table ip6 switchyard"), "{text}");
}

/// Outside a pod, without --kubeconfig or --master, the error says what to pass.
#[test]
fn outside_a_pod_the_agent_asks_for_a_kubeconfig() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["--dry-run"])
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .expect("run switchyard");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("pass --kubeconfig or --master outside a pod"),
        "{err}"
    );
}
