//! The API calls the agent really makes, observed at the in-repo fake API server during a dry
//! run, are all in the agent's table of API calls (`source::kube::access::API_ACCESS`, which
//! `deploy/rbac.yaml` must grant exactly, see `deploy.rs`), and every listed kind and the
//! Starting event were really asked for. No root needed.

#[allow(dead_code)] // The fake's fault injection is for kube_source.rs.
mod fake_apiserver;

use fake_apiserver::FakeApi;
use serde_json::json;
use std::collections::BTreeSet;
use std::process::Command;
use switchyard_agent::source::kube::access::API_ACCESS;

/// (group, resource, verb) of a request target. The fake records targets, not methods; the
/// agent's only non-GET call is the event's create (a POST to the events collection).
fn call(target: &str) -> (String, String, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => panic!("not an API path: {target}"),
    };
    let resource = match rest {
        [r] | ["namespaces", _, r] => *r,
        _ => panic!("not a collection: {target}"),
    };
    let watch = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match (resource, watch) {
        ("events", _) => "create",
        (_, true) => "watch",
        (_, false) => "list",
    };
    (group.into(), resource.into(), verb.into())
}

#[test]
fn every_call_the_agent_makes_is_in_its_table() {
    let api = FakeApi::start_in_netns(None);
    api.apply(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"},
                     "status": {"addresses": [{"type": "InternalIP", "address": "192.168.60.1"}]}}),
    );
    let dir = std::env::temp_dir().join(format!("switchyard-api-calls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeconfig = api.kubeconfig(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["--kubeconfig", kubeconfig.to_str().expect("utf8")])
        .args(["--hostname-override", "node-a", "--dry-run"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run switchyard");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let table: BTreeSet<(String, String, String)> = API_ACCESS
        .iter()
        .flat_map(|a| {
            a.verbs
                .iter()
                .map(|v| (a.group.to_string(), a.resource.to_string(), v.to_string()))
        })
        .collect();
    let observed: BTreeSet<_> = api.requests().iter().map(|t| call(t)).collect();
    let outside: Vec<_> = observed.difference(&table).collect();
    assert!(
        outside.is_empty(),
        "calls missing from API_ACCESS: {outside:?}"
    );
    // Every kind in the table was listed, and the event was created (watches start after
    // the lists, and a dry run may exit first).
    for (group, resource, verb) in &table {
        if verb == "list" || verb == "create" {
            assert!(
                observed.contains(&(group.clone(), resource.clone(), verb.clone())),
                "{group}/{resource} {verb} in the table but never called: {observed:?}"
            );
        }
    }
}
