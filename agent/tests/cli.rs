//! The agent as a user runs it: the built binary on the bundled example and on broken input.

use std::path::PathBuf;
use std::process::{Command, Output};

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster.yaml")
}

fn switchyard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run switchyard")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn temp_manifest(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("m.yaml");
    std::fs::write(&path, text).expect("write manifest");
    path
}

#[test]
fn dry_run_on_the_example_prints_every_service_port() {
    let ex = example();
    let out = switchyard(&[
        "--manifests",
        ex.to_str().expect("utf8"),
        "--cluster-cidr",
        "10.244.0.0/16",
        "--dry-run",
        "--show-plan",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for want in [
        "# ProxyPlan IPv4 for node \"node-a\"",
        "service-ports: 8",
        "shop/web:http/tcp\n  cluster-ip: 10.96.0.10:80/tcp\n  cluster-endpoints: [10.244.1.10:8080, 10.244.2.10:8080]",
        "shop/api/tcp",
        "  external: [192.168.0.10:30123/tcp] -> from pods: cluster-endpoints; from host: cluster-endpoints, masquerade; from any: local-endpoints",
        "shop/batch/tcp",
        "  internal: [10.96.0.50:8000/tcp] -> from any: reject (no endpoints)",
        "shop/legacy-db:pg/tcp",
        "  cluster-endpoints: [10.244.2.40:5432]",
        "  affinity: ClientIP 600s",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(
        !text.contains("payments"),
        "ExternalName must not be planned"
    );
    assert!(!text.contains("IPv6"), "node-a is IPv4-only: no IPv6 plan");
}

fn explain(from: &str, to: &str) -> serde_json::Value {
    let ex = example();
    let out = switchyard(&[
        "explain",
        "--manifests",
        ex.to_str().expect("utf8"),
        "--cluster-cidr",
        "10.244.0.0/16",
        "--from",
        from,
        "--to",
        to,
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("json")
}

#[test]
fn explain_answers_from_the_plan() {
    let v = explain("203.0.113.7", "192.168.0.10:30123/tcp");
    let dnat = &v["verdict"]["Dnat"];
    assert_eq!(dnat["masquerade"], false, "{v}");
    assert_eq!(dnat["endpoints"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(dnat["endpoints"][0]["ip"], "10.244.1.20");

    assert_eq!(
        explain("192.0.2.1", "198.51.100.30:80/tcp")["verdict"],
        "Drop"
    );
    assert_eq!(
        explain("10.244.1.99", "10.96.0.50:8000/tcp")["verdict"],
        "Reject"
    );
    assert_eq!(
        explain("10.244.1.99", "10.96.0.99:80/tcp")["verdict"],
        "Accept"
    );
    let dns = explain("10.244.1.99", "198.51.100.53:53/udp");
    assert_eq!(dns["matched"][1], "ExternalIp");
    assert_eq!(dns["verdict"]["Dnat"]["endpoints"][0]["port"], 5353);
}

#[test]
fn explain_text_is_readable() {
    let ex = example();
    let out = switchyard(&[
        "explain",
        "--manifests",
        ex.to_str().expect("utf8"),
        "--from",
        "10.244.1.99",
        "--to",
        "10.96.0.30:80/tcp",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("matched:  shop/frontend/tcp (cluster IP)"),
        "{text}"
    );
    assert!(text.contains("affinity: ClientIP, 600s"), "{text}");
}

#[test]
fn bad_yaml_names_the_file_and_fails() {
    let path = temp_manifest(
        "yaml",
        "apiVersion: v1\nkind: Service\nmetadata: [unclosed\n",
    );
    let out = switchyard(&["--manifests", path.to_str().expect("utf8"), "--dry-run"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("m.yaml") && err.contains("not valid YAML"),
        "{err}"
    );
    assert!(stdout(&out).is_empty(), "nothing may be printed as planned");
}

#[test]
fn unknown_kind_names_the_document_and_fails() {
    let path = temp_manifest(
        "kind",
        "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n",
    );
    let out = switchyard(&["--manifests", path.to_str().expect("utf8"), "--dry-run"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("document 2") && err.contains("unsupported kind Deployment"),
        "{err}"
    );
}

#[test]
fn malformed_service_is_skipped_with_a_warning_and_others_survive() {
    let path = temp_manifest(
        "bad-svc",
        "apiVersion: v1\nkind: Service\nmetadata: {name: bad}\nspec: {clusterIP: 10.96.0.300, ports: [{port: 80}]}\n\
---\napiVersion: v1\nkind: Service\nmetadata: {name: good}\nspec: {clusterIP: 10.96.0.2, ports: [{port: 70000}, {name: b, port: 81}]}\n",
    );
    let out = switchyard(&[
        "--manifests",
        path.to_str().expect("utf8"),
        "--hostname-override",
        "n1",
        "--dry-run",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Default mode nftables: the rules name the surviving port, nothing of the bad Service.
    let text = stdout(&out);
    // (It has no endpoints, so it is rejected: an element of the no-endpoint set.)
    assert!(
        text.contains("add element ip switchyard no-endpoint-reject { 10.96.0.2 . tcp . 81 }"),
        "{text}"
    );
    assert!(!text.contains("default/bad/"), "{text}");
    let log = stderr(&out);
    assert!(
        log.contains("Service default/bad: spec.clusterIPs[0]: \"10.96.0.300\" is not an IP address (object skipped)"),
        "{log}"
    );
    assert!(
        log.contains("Service default/good: spec.ports[0].port: 70000"),
        "{log}"
    );
}

#[test]
fn dry_run_prints_each_backends_own_syntax() {
    let ex = example();
    let ex = ex.to_str().expect("utf8");
    let nft = switchyard(&[
        "--manifests",
        ex,
        "--cluster-cidr",
        "10.244.0.0/16",
        "--dry-run",
    ]);
    assert!(nft.status.success(), "{}", stderr(&nft));
    let text = stdout(&nft);
    for want in [
        "add table ip switchyard",
        "add map ip switchyard cluster-endpoint-0 { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service ; }",
        "ip daddr . meta l4proto . th dport @pod-cluster.masq-cluster-services goto pod-cluster.masq-cluster",
        "10.96.0.10 . tcp . 80 : 10.244.1.10 . 8080",
        "dnat ip to ip daddr . meta l4proto . th dport map @cluster-endpoint-0",
        // shop/frontend has session affinity: per-service chains.
        "ip daddr . meta l4proto . th dport vmap @service-ips",
        "10.96.0.30 . tcp . 80 : goto svc-",
        "meta l4proto tcp dnat to 10.244.1.30:8080",
    ] {
        assert!(text.contains(want), "nftables dry-run lacks {want:?}:\n{text}");
    }
    let ipt = switchyard(&[
        "--manifests",
        ex,
        "--mode",
        "iptables",
        "--iptables-variant",
        "legacy",
        "--dry-run",
    ]);
    assert!(ipt.status.success(), "{}", stderr(&ipt));
    let text = stdout(&ipt);
    for want in [
        "*nat",
        "-A SWYD-SERVICES -m set --match-set SWYD4-VIPS dst,dst",
        "COMMIT",
        "-j DNAT --to-destination 10.244.1.10:8080",
    ] {
        assert!(
            text.contains(want),
            "iptables dry-run lacks {want:?}:\n{text}"
        );
    }
}

/// IPVS mode in a namespace of its own: on a kernel with IPVS it syncs; on one without (this
/// host's), it fails saying precisely what is missing, before touching anything.
#[test]
fn ipvs_mode_syncs_or_names_what_the_kernel_lacks() {
    let ex = example();
    let ns = TestNetns::new("ipvs");
    let out = ns.run(
        env!("CARGO_BIN_EXE_switchyard"),
        &[
            "--manifests",
            ex.to_str().expect("utf8"),
            "--mode",
            "ipvs",
            "--once",
        ],
    );
    if std::path::Path::new("/sys/module/ip_vs").exists() {
        assert!(out.status.success(), "{}", stderr(&out));
    } else {
        assert!(!out.status.success());
        assert!(
            stderr(&out)
                .contains("IPVS is not available: the kernel has no IPVS generic netlink family"),
            "{}",
            stderr(&out)
        );
    }
}

/// `--dry-run --mode ipvs` prints the virtual services (ipvsadm syntax) and the helper rules of
/// the same transaction, without a kernel.
#[test]
fn ipvs_dry_run_prints_virtual_services_and_helper_rules() {
    let ex = example();
    let out = switchyard(&[
        "--manifests",
        ex.to_str().expect("utf8"),
        "--mode",
        "ipvs",
        "--dry-run",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for want in [
        "-A -f ",
        " -s rr",
        " -m -w 1",
        "ip addr add ",
        "add table ip switchyard-ipvs",
        "meta mark set ip daddr . meta l4proto . th dport map @cluster-fwmark",
    ] {
        assert!(text.contains(want), "ipvs dry-run lacks {want:?}:\n{text}");
    }
}

/// A network namespace for one test, deleted on drop (also when the test fails).
struct TestNetns(String);

impl TestNetns {
    fn new(tag: &str) -> Self {
        let name = format!("swyd-cli-{tag}-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("run ip");
        assert!(ok.success(), "ip netns add {name} (this test needs root)");
        Self(name)
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0, program])
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .expect("ip netns exec")
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Objects that try to take what belongs to the example's Services: the node address on
/// api's NodePort, web's cluster IP (external IP), api's cluster IP (LB ingress). All older.
const HOSTILE: &str = "
---
apiVersion: v1
kind: Service
metadata: {name: grab-nodeport, namespace: evil, creationTimestamp: '2001-01-01T00:00:00Z'}
spec:
  clusterIP: 10.96.0.90
  externalIPs: [192.168.0.10]
  ports: [{port: 30123, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: grab-clusterip, namespace: evil, creationTimestamp: '2001-01-01T00:00:00Z'}
spec:
  clusterIP: 10.96.0.91
  externalIPs: [10.96.0.10]
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: grab-lb, namespace: evil, creationTimestamp: '2001-01-01T00:00:00Z'}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.92
  ports: [{port: 443, targetPort: 8443, nodePort: 31999}]
status: {loadBalancer: {ingress: [{ip: 10.96.0.20}]}}
";

#[test]
fn hostile_objects_cost_only_themselves_in_the_kernel() {
    let example = std::fs::read_to_string(example()).expect("example");
    let path = temp_manifest("hostile", &format!("{example}{HOSTILE}"));
    let ns = TestNetns::new("hostile");
    let out = ns.run(
        env!("CARGO_BIN_EXE_switchyard"),
        &[
            "--mode",
            "nftables",
            "--manifests",
            path.to_str().expect("utf8"),
            "--cluster-cidr",
            "10.244.0.0/16",
            "--once",
        ],
    );
    let log = stderr(&out);
    assert!(
        out.status.success(),
        "every valid Service is programmed: {log}"
    );
    // One warning per losing claim, naming the object, the field and the owner.
    for (object, field, owner) in [
        ("evil/grab-nodeport", "spec.externalIPs", "shop/api/tcp"),
        ("evil/grab-clusterip", "spec.externalIPs", "shop/web"),
        ("evil/grab-lb", "status.loadBalancer.ingress", "shop/api"),
    ] {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(object)).collect();
        assert_eq!(lines.len(), 1, "one warning for {object}: {log}");
        assert!(
            lines[0].contains(field) && lines[0].contains(owner),
            "{}",
            lines[0]
        );
    }
    let table = stdout(&ns.run("nft", &["list", "table", "ip", "switchyard"]));
    // The victims keep their keys; the hostile addresses own none.
    assert!(table.contains("192.168.0.10 . tcp . 30123"), "{table}");
    assert!(table.contains("10.96.0.10 . tcp . 80"), "{table}");
    assert!(
        table.contains("10.96.0.20 . tcp . 443 : 10.244.1.20 . 8443"),
        "api's cluster IP still goes to api's endpoint: {table}"
    );
    let rejected = table
        .split("set no-endpoint-reject {")
        .nth(1)
        .and_then(|rest| rest.split("\n\t}").next())
        .unwrap_or_default();
    assert!(
        !rejected.contains("10.96.0.20"),
        "the endpoint-less hostile LB must not make api's cluster IP reject: {rejected}"
    );
    // The hostile Services themselves still work on their own cluster IPs.
    assert!(table.contains("10.96.0.91 . tcp . 80"), "{table}");
}
