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

/// Uses a mode this build lacks, so nothing can touch the host's rules.
#[test]
fn running_without_a_backend_fails_clearly() {
    let ex = example();
    let out = switchyard(&[
        "--manifests",
        ex.to_str().expect("utf8"),
        "--mode",
        "ipvs",
        "--once",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the ipvs backend (IPv4) is not in this build yet"),
        "{}",
        stderr(&out)
    );
}
