//! The real `switchyard` binary's operational surface, against the in-repo fake API server,
//! in a fresh network namespace (root): `/healthz` and `/livez` (stale syncs, a Node being
//! deleted or tainted by the cluster autoscaler), the healthCheckNodePort servers (200/503
//! with local endpoints, a port already in use, closing when the Service goes), and
//! `/metrics` (kube-proxy's names and labels, `promtool check metrics`).
//!
//! Real HTTP over real sockets in the namespace; a real dataplane (iptables-nft) whose
//! restore tool is made to fail through a wrapper on `PATH`, so "the sync is late" is a real
//! failed sync, not a mock.

#[allow(dead_code)]
mod fake_apiserver;
mod ops_support;

use fake_apiserver::{FakeApi, Res};
use ops_support::{expect, failing_tools, is_root, wait_until, Agent, Netns, NODE_IP};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};

fn node(extra: Value) -> Value {
    let mut n = json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": "node-a"},
           "spec": {},
           "status": {"addresses": [{"type": "InternalIP", "address": NODE_IP}]}});
    for (k, v) in extra.as_object().into_iter().flatten() {
        for (k2, v2) in v.as_object().into_iter().flatten() {
            n[k][k2] = v2.clone();
        }
    }
    n
}

fn lb_service(name: &str, ip: &str, node_port: u16, hcnp: u16) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": "shop"},
           "spec": {"type": "LoadBalancer", "clusterIP": ip, "clusterIPs": [ip],
                    "ipFamilies": ["IPv4"], "externalTrafficPolicy": "Local",
                    "healthCheckNodePort": hcnp,
                    "ports": [{"name": "http", "protocol": "TCP", "port": 80,
                               "targetPort": 8080, "nodePort": node_port}]}})
}

/// A slice of `service` with endpoints `(address, node, ready)`, stamped with the
/// EndpointSlice controller's trigger time (now).
fn slice(name: &str, service: &str, endpoints: &[(&str, &str, bool)]) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(ip, node, ready)| {
            json!({"addresses": [ip], "nodeName": node,
                   "conditions": {"ready": ready, "serving": ready, "terminating": false}})
        })
        .collect();
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": name, "namespace": "shop",
                        "labels": {"kubernetes.io/service-name": service},
                        "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": now}},
           "addressType": "IPv4",
           "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
           "endpoints": endpoints})
}

/// kube-proxy's healthCheckNodePort body, byte for byte.
fn hc_body(name: &str, local: usize, healthy: bool) -> String {
    format!(
        "{{\n\t\"service\": {{\n\t\t\"namespace\": \"shop\",\n\t\t\"name\": \"{name}\"\n\t}},\n\t\"localEndpoints\": {local},\n\t\"serviceProxyHealthy\": {healthy}\n}}"
    )
}

fn hc_is(ns: &Netns, port: u16, status: u16, body: &str) -> Result<(), String> {
    match ns.get(&format!("{NODE_IP}:{port}"), "/anything") {
        Ok((s, b)) if s == status && b == body => Ok(()),
        Ok((s, b)) => Err(format!("{s} {b:?}")),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn health_metrics_and_health_check_node_ports() {
    assert!(
        is_root(),
        "this test creates network namespaces: run it as root"
    );
    let ns = Netns::create("life");
    let api = FakeApi::start_in_netns(Some(&ns.0));
    let dir = std::env::temp_dir().join(format!("switchyard-ops-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeconfig = api.kubeconfig(&dir);
    let fail = dir.join("fail-restore");
    let path = failing_tools(&dir, &fail);

    api.apply(node(json!({})));
    api.apply(lb_service("lb", "10.96.0.50", 30050, 32100));
    api.apply(slice("lb-1", "lb", &[("10.244.1.5", "node-a", true)]));
    // Its healthCheckNodePort is taken by someone else on the node address.
    api.apply(lb_service("taken", "10.96.0.51", 30051, 32101));
    api.apply(slice("taken-1", "taken", &[("10.244.1.6", "node-a", true)]));
    // A malformed external IP: skipped (one address), and counted.
    let mut odd = lb_service("odd", "10.96.0.53", 30053, 32103);
    odd["spec"]["externalIPs"] = json!(["not-an-ip"]);
    odd["spec"]["externalTrafficPolicy"] = json!("Cluster");
    api.apply(odd);
    let squatter = ns.enter(|| std::net::TcpListener::bind((NODE_IP, 32101)).expect("bind 32101"));

    let log = dir.join("agent.log");
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.0, env!("CARGO_BIN_EXE_switchyard")])
        .args(["--mode", "iptables", "--iptables-variant", "nft"])
        .args(["--kubeconfig", kubeconfig.to_str().expect("utf8")])
        .args(["--hostname-override", "node-a"])
        // Health turns late after 2 x --sync-period = 2 s.
        .args(["--min-sync-period", "100ms", "--sync-period", "1s"])
        .env("PATH", &path)
        .env("RUST_LOG", "info,kube=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start switchyard");
    let agent = Agent { child, log };

    // 1. /healthz and /livez on the default address (0.0.0.0:10256), kube-proxy's bodies.
    wait_until("a healthy /healthz", &agent, || {
        expect(
            &ns,
            "127.0.0.1:10256",
            "/healthz",
            200,
            &[r#""nodeEligible": true}"#, r#"{"lastUpdated": ""#],
        )
    });
    let (_, body) = ns
        .get(&format!("{NODE_IP}:10256"), "/livez")
        .expect("livez on the node address");
    assert!(
        body.starts_with(r#"{"lastUpdated": ""#) && !body.contains("nodeEligible"),
        "{body}"
    );

    // 2. The healthCheckNodePort answers on the node address (NodePorts' addresses,
    //    --nodeport-addresses primary), not on every address.
    wait_until("hc 200 with one local endpoint", &agent, || {
        hc_is(&ns, 32100, 200, &hc_body("lb", 1, true))
    });
    // "odd" has a healthCheckNodePort but externalTrafficPolicy Cluster: nothing to check.
    assert!(
        ns.get(&format!("{NODE_IP}:32103"), "/").is_err(),
        "a health check served for a Cluster-policy Service"
    );
    assert!(
        ns.get("127.0.0.1:32100", "/").is_err(),
        "the health check listens beyond the node address"
    );

    // 3. A port in use: a warning naming the Service and port, and the agent goes on.
    wait_until("the port-in-use warning", &agent, || {
        let log = agent.log();
        log.lines()
            .any(|l| {
                l.contains("WARN")
                    && l.contains("failed to start healthcheck")
                    && l.contains("shop/taken")
                    && l.contains("32101")
            })
            .then_some(())
            .ok_or_else(|| "no warning yet".to_string())
    });

    // 4. Local endpoints come and go: 200 <-> 503.
    api.apply(slice("lb-1", "lb", &[("10.244.1.5", "node-a", false)]));
    wait_until("hc 503 with the local endpoint unready", &agent, || {
        hc_is(&ns, 32100, 503, &hc_body("lb", 0, true))
    });
    api.apply(slice("lb-1", "lb", &[("10.244.2.5", "node-b", true)]));
    wait_until("hc 503 with the endpoint on another node", &agent, || {
        hc_is(&ns, 32100, 503, &hc_body("lb", 0, true))
    });
    api.apply(slice(
        "lb-1",
        "lb",
        &[
            ("10.244.1.5", "node-a", true),
            ("10.244.1.7", "node-a", true),
        ],
    ));
    wait_until("hc 200 with two local endpoints", &agent, || {
        hc_is(&ns, 32100, 200, &hc_body("lb", 2, true))
    });

    // The port is free again: the next sync opens it.
    drop(squatter);
    wait_until("the freed port served", &agent, || {
        hc_is(&ns, 32101, 200, &hc_body("taken", 1, true))
    });

    // 5. The Node: tainted by the cluster autoscaler, then being deleted: /healthz 503,
    //    /livez 200.
    for (what, extra) in [
        (
            "the autoscaler's taint",
            json!({"spec": {"taints": [{"key": "ToBeDeletedByClusterAutoscaler", "value": "1700000000", "effect": "NoSchedule"}]}}),
        ),
        (
            "a deletionTimestamp",
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["example.com/hold"]}}),
        ),
    ] {
        api.apply(node(extra));
        wait_until(what, &agent, || {
            expect(
                &ns,
                "127.0.0.1:10256",
                "/healthz",
                503,
                &[r#""nodeEligible": false}"#],
            )
        });
        expect(&ns, "127.0.0.1:10256", "/livez", 200, &[])
            .unwrap_or_else(|e| panic!("/livez with {what}: {e}"));
        api.apply(node(json!({})));
        wait_until("an eligible node again", &agent, || {
            expect(
                &ns,
                "127.0.0.1:10256",
                "/healthz",
                200,
                &[r#""nodeEligible": true}"#],
            )
        });
    }

    // ... and deleted: not eligible either. Without a node address the health checks listen
    // on every address, and on the node address alone again when the Node is back.
    api.delete(Res::Nodes, "", "node-a");
    wait_until("a deleted Node", &agent, || {
        expect(
            &ns,
            "127.0.0.1:10256",
            "/healthz",
            503,
            &[r#""nodeEligible": false}"#],
        )
    });
    wait_until("hc on every address", &agent, || {
        expect(
            &ns,
            "127.0.0.1:32100",
            "/",
            200,
            &[r#""localEndpoints": 2"#],
        )
    });
    api.apply(node(json!({})));
    wait_until("the Node back", &agent, || {
        expect(
            &ns,
            "127.0.0.1:10256",
            "/healthz",
            200,
            &[r#""nodeEligible": true}"#],
        )
    });
    wait_until("hc on the node address only", &agent, || {
        match ns.get("127.0.0.1:32100", "/") {
            Err(_) => hc_is(&ns, 32100, 200, &hc_body("lb", 2, true)),
            Ok(answer) => Err(format!("still on 127.0.0.1: {answer:?}")),
        }
    });

    // 6. A change that does not reach the kernel within 2 x --sync-period: both 503, and the
    //    health checks say the proxy is unhealthy; healthy again once a sync succeeds.
    std::fs::write(&fail, "").expect("arm the failure");
    api.apply(lb_service("late", "10.96.0.52", 30052, 32102));
    wait_until("/livez 503 after a late sync", &agent, || {
        expect(&ns, "127.0.0.1:10256", "/livez", 503, &[])
    });
    expect(
        &ns,
        "127.0.0.1:10256",
        "/healthz",
        503,
        &[r#""nodeEligible": true}"#],
    )
    .expect("/healthz 503 too");
    hc_is(&ns, 32100, 503, &hc_body("lb", 2, false)).expect("hc says the proxy is unhealthy");
    std::fs::remove_file(&fail).expect("disarm");
    wait_until("healthy after a good sync", &agent, || {
        expect(&ns, "127.0.0.1:10256", "/livez", 200, &[])
    });
    wait_until("hc 200 again", &agent, || {
        hc_is(&ns, 32100, 200, &hc_body("lb", 2, true))
    });

    // 7. /metrics (127.0.0.1:10249 by default): kube-proxy's series, and promtool agrees.
    let (status, metrics) = ns.get("127.0.0.1:10249", "/metrics").expect("/metrics");
    assert_eq!(status, 200, "{metrics}");
    check_metrics(&metrics);
    promtool(&metrics, &dir);
    if std::env::var_os("SWITCHYARD_PRINT_METRICS").is_some() {
        println!("{metrics}");
    }
    expect(&ns, "127.0.0.1:10249", "/healthz", 200, &["ok"])
        .expect("/healthz on the metrics address");
    expect(&ns, "127.0.0.1:10249", "/proxyMode", 200, &["iptables"]).expect("/proxyMode");
    assert!(
        ns.get(&format!("{NODE_IP}:10249"), "/metrics").is_err(),
        "metrics beyond loopback"
    );

    // 8. The Service goes: its port closes.
    api.delete(Res::Services, "shop", "lb");
    wait_until("the health check port closed", &agent, || {
        match ns.get(&format!("{NODE_IP}:32100"), "/") {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    assert!(
        agent.child.id() > 0 && ns.get("127.0.0.1:10256", "/livez").is_ok(),
        "the agent stopped serving"
    );
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The series an operator's dashboards read, with the values this test's history implies.
fn check_metrics(text: &str) {
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
    };
    let v4 = r#"{ip_family="IPv4"}"#;
    for counted in [
        "kubeproxy_sync_proxy_rules_duration_seconds_count",
        "kubeproxy_sync_full_proxy_rules_duration_seconds_count",
        "kubeproxy_sync_partial_proxy_rules_duration_seconds_count",
        "kubeproxy_network_programming_duration_seconds_count",
        "kubeproxy_sync_proxy_rules_iptables_restore_failures_total",
        "switchyard_sync_failures_total",
        "switchyard_sync_kernel_duration_seconds_count",
        "switchyard_sync_operations_total",
    ] {
        assert!(
            value(&format!("{counted}{v4}")) >= 1.0,
            "{counted} never counted:\n{text}"
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    for stamp in [
        "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
        "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
    ] {
        let t = value(&format!("{stamp}{v4}"));
        assert!((now - t).abs() < 300.0, "{stamp} = {t}, now {now}");
    }
    // The three updates of lb-1's slice after the start (the listed objects are the state,
    // not changes); all synced, so none pending.
    assert_eq!(
        value("kubeproxy_sync_proxy_rules_endpoint_changes_total"),
        3.0
    );
    // "late" created.
    assert_eq!(
        value("kubeproxy_sync_proxy_rules_service_changes_total"),
        1.0
    );
    assert_eq!(
        value("kubeproxy_sync_proxy_rules_endpoint_changes_pending"),
        0.0
    );
    assert!(value(r#"kubeproxy_proxy_healthz_total{code="503"}"#) >= 3.0);
    assert!(value(r#"kubeproxy_proxy_livez_total{code="200"}"#) >= 2.0);
    // "late" has no endpoints anywhere: rejected, not a Local-policy gap.
    assert_eq!(
        value(
            r#"kubeproxy_sync_proxy_rules_no_local_endpoints_total{ip_family="IPv4",traffic_policy="external"}"#
        ),
        0.0
    );
    assert_eq!(value(r#"switchyard_service_ports{ip_family="IPv4"}"#), 4.0);
    assert_eq!(
        value(r#"switchyard_skipped_objects{ip_family="IPv4",kind="Service",skipped="address"}"#),
        1.0
    );
    assert!(text.contains("# TYPE kubeproxy_sync_proxy_rules_duration_seconds histogram"));
    assert!(
        text.contains(
            r#"kubeproxy_sync_proxy_rules_duration_seconds_bucket{le="0.001",ip_family="IPv4"}"#
        ) || text.contains(
            r#"kubeproxy_sync_proxy_rules_duration_seconds_bucket{ip_family="IPv4",le="0.001"}"#
        ),
        "kube-proxy's first bucket (1 ms) missing:\n{text}"
    );
}

/// `promtool check metrics` must accept the exposition. Its only complaint may be
/// kube-proxy's own gauge named `_total` (kept: dashboards use that name).
fn promtool(text: &str, dir: &Path) {
    let file = dir.join("metrics.txt");
    std::fs::write(&file, text).expect("write metrics");
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).expect("open"))
        .output()
        .expect("promtool (Debian package prometheus; .ci/install-deps installs it)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let complaints: Vec<&str> = said
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| {
            *l != r#"kubeproxy_sync_proxy_rules_no_local_endpoints_total non-counter metrics should not have "_total" suffix"#
        })
        .collect();
    // 0: clean; 3: lint findings only (the one allowed above). 1 is a parse error.
    let code = out.status.code();
    assert!(
        complaints.is_empty() && matches!(code, Some(0) | Some(3)),
        "promtool check metrics (exit {code:?}):\n{said}\n--- exposition ---\n{text}"
    );
}

/// Offline (`--manifests`), with both bind flags changed: the health server on the address
/// asked for, the metrics server disabled by an empty address, and a healthCheckNodePort that
/// follows edits of the manifest file.
#[test]
fn offline_manifests_and_bind_flags() {
    assert!(
        is_root(),
        "this test creates network namespaces: run it as root"
    );
    let ns = Netns::create("offline");
    let dir = std::env::temp_dir().join(format!("switchyard-ops-off-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let manifests = dir.join("cluster.yaml");
    let write = |ready: bool| {
        let docs: Vec<String> = [
            node(json!({})),
            lb_service("lb", "10.96.0.50", 30050, 32100),
            slice("lb-1", "lb", &[("10.244.1.5", "node-a", ready)]),
        ]
        .iter()
        .map(|v| serde_json::to_string(v).expect("json"))
        .collect();
        // JSON is YAML; an atomic rename so the agent never reads half a file.
        let tmp = dir.join("cluster.tmp");
        std::fs::write(&tmp, docs.join("\n---\n")).expect("write manifests");
        std::fs::rename(&tmp, &manifests).expect("rename manifests");
    };
    write(true);
    let log = dir.join("agent.log");
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.0, env!("CARGO_BIN_EXE_switchyard")])
        .args(["--mode", "nftables", "--manifests"])
        .arg(&manifests)
        .args(["--healthz-bind-address", "127.0.0.1:20256"])
        .args(["--metrics-bind-address", ""])
        .args(["--min-sync-period", "100ms"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start switchyard");
    let agent = Agent { child, log };
    wait_until("hc 200 offline", &agent, || {
        hc_is(&ns, 32100, 200, &hc_body("lb", 1, true))
    });
    expect(&ns, "127.0.0.1:20256", "/livez", 200, &[]).expect("livez on the flag's address");
    assert!(
        ns.get("127.0.0.1:10256", "/livez").is_err(),
        "health server on the default address"
    );
    assert!(
        ns.get("127.0.0.1:10249", "/metrics").is_err(),
        "metrics served though disabled"
    );
    write(false);
    wait_until("hc 503 after the edit", &agent, || {
        hc_is(&ns, 32100, 503, &hc_body("lb", 0, true))
    });
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}
