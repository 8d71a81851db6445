//! `--config` through the built binary: kubeadm's kube-proxy config drives the plan, a flag
//! given on the command line beats it, ignored fields warn by path on stderr, and an invalid
//! value stops the agent naming the field. No root needed (`--dry-run --show-plan`).

use std::path::PathBuf;
use std::process::{Command, Output};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// kubeadm's `config.conf` (from the test ConfigMap), edited by `edit`, written to a temp file.
fn config_file(tag: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let cm = std::fs::read_to_string(data("tests/data/kubeadm-v1.33-kube-proxy.yaml"))
        .expect("test data");
    let doc: serde_json::Value = serde_saphyr::from_str(&cm).expect("yaml");
    let conf = doc["data"]["config.conf"]
        .as_str()
        .expect("config.conf")
        .to_string();
    let dir = std::env::temp_dir().join(format!("switchyard-config-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("config.conf");
    std::fs::write(&path, edit(conf)).expect("write");
    path
}

fn plan_with(config: &std::path::Path, flags: &[&str]) -> Output {
    let example = data("../examples/cluster.yaml");
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["--config", config.to_str().expect("utf8")])
        .args(["--manifests", example.to_str().expect("utf8")])
        .args(["--dry-run", "--show-plan"])
        .args(flags)
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

#[test]
fn kubeadm_config_drives_the_plan_and_flags_override_it() {
    let config = config_file("plain", |c| c);
    let out = plan_with(&config, &[]);
    let (plan, log) = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        plan.contains("cluster-ip-masquerade: all but pods (sources in 10.244.0.0/16)"),
        "clusterCIDR from the file:\n{plan}"
    );
    assert!(
        !log.contains("WARN"),
        "kubeadm's file warns about nothing: {log}"
    );

    let out = plan_with(&config, &["--cluster-cidr", "10.99.0.0/16"]);
    let (plan, log) = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        plan.contains("sources in 10.99.0.0/16") && !plan.contains("10.244.0.0/16)"),
        "the flag wins:\n{plan}"
    );

    let out = plan_with(&config, &["--masquerade-all"]);
    assert!(text(&out).0.contains("cluster-ip-masquerade: all\n"));

    let bridge = config_file("bridge", |c| {
        c.replace("detectLocalMode: \"\"", "detectLocalMode: BridgeInterface")
            .replace("  bridgeInterface: \"\"", "  bridgeInterface: cni0")
    });
    let (plan, log) = text(&plan_with(&bridge, &[]));
    assert!(
        plan.contains("all but pods (input interface cni0)"),
        "{log}\n{plan}"
    );
}

#[test]
fn ignored_fields_warn_and_invalid_values_stop_the_agent() {
    let edited = config_file("edited", |c| {
        c.replace("  localhostNodePorts: null", "  localhostNodePorts: true")
    });
    let out = plan_with(&edited, &[]);
    let (_, log) = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("iptables.localhostNodePorts: not supported by Switchyard"),
        "{log}"
    );

    let bad = config_file("bad", |c| {
        c.replace("  tcpTimeout: 0s", "  tcpTimeout: 15 minutes")
    });
    let out = plan_with(&bad, &[]);
    let (plan, log) = text(&out);
    assert!(!out.status.success() && plan.is_empty(), "refused: {log}");
    assert!(log.contains("field ipvs.tcpTimeout"), "{log}");
}
