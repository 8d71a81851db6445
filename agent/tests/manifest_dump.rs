//! Cluster dumps through the offline source: a `kubectl get -o json` List and the same objects
//! as multi-document YAML read back as exactly the synthetic cluster they were written from,
//! and the agent prints the same rules and plan for both.

use std::path::{Path, PathBuf};
use std::process::Command;
use switchyard_agent::source::Manifests;
use switchyard_synthetic::{dump, objects};

const SERVICES: usize = 300;
const ENDPOINTS: usize = 3;

fn dumps(tag: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("switchyard-dump-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let objects = objects::all(&dump::cluster_with_node(SERVICES, ENDPOINTS));
    let yaml = dir.join("cluster.yaml");
    let json = dir.join("cluster.json");
    std::fs::write(&yaml, dump::yaml_documents(&objects).expect("yaml")).expect("write");
    std::fs::write(&json, dump::json_list(&objects)).expect("write");
    (yaml, json)
}

fn switchyard(manifests: &Path, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("--manifests")
        .arg(manifests)
        .args(["--cluster-cidr", "10.244.0.0/16", "--dry-run"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run switchyard");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn json_list_and_yaml_documents_read_back_as_the_generated_cluster() {
    let (yaml, json) = dumps("state");
    let want = dump::cluster_with_node(SERVICES, ENDPOINTS);
    for path in [&yaml, &json] {
        let m = Manifests::load(path).expect("load dump");
        let got = m.to_state("node-a");
        assert_eq!(got.services, want.services, "{}", path.display());
        assert_eq!(
            got.endpoint_slices,
            want.endpoint_slices,
            "{}",
            path.display()
        );
        assert_eq!(got.node, want.node, "{}", path.display());
    }
}

#[test]
fn json_list_and_yaml_documents_give_the_same_plan_and_rules() {
    let (yaml, json) = dumps("plan");
    for extra in [
        &["--show-plan"][..],
        &["--mode", "nftables"],
        &["--mode", "iptables"],
    ] {
        let from_yaml = switchyard(&yaml, extra);
        let from_json = switchyard(&json, extra);
        // The last service's cluster IP (10.96.0.0 + 300): the whole dump was read.
        assert!(
            from_yaml.contains("10.96.1.44"),
            "{extra:?}: the last service is missing"
        );
        assert_eq!(from_yaml, from_json, "{extra:?}");
    }
}
