//! `deploy/`: every manifest deserializes into its k8s-openapi type, the DaemonSet runs the
//! agent the way the issue asks (host network, node-critical, tolerating everything, the
//! capabilities it needs and no more, probes on the health port, one node at a time), its
//! flags and its ConfigMap's config file load in the real agent without a warning, and the
//! ClusterRole grants exactly the API calls the agent makes (`source::kube::access`).

use clap::Parser as _;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use switchyard_agent::cli::Cli;
use switchyard_agent::source::kube::access::API_ACCESS;

/// Every object of every `deploy/*.yaml`, typed.
#[derive(Default)]
struct Deploy {
    daemonsets: Vec<DaemonSet>,
    config_maps: Vec<ConfigMap>,
    service_accounts: Vec<ServiceAccount>,
    roles: Vec<ClusterRole>,
    bindings: Vec<ClusterRoleBinding>,
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn typed<T: serde::de::DeserializeOwned>(doc: Value, file: &Path) -> T {
    serde_json::from_value(doc).unwrap_or_else(|e| {
        panic!(
            "{}: not a valid {}: {e}",
            file.display(),
            std::any::type_name::<T>()
        )
    })
}

fn load() -> Deploy {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .expect("deploy/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "deploy/ has its manifests: {files:?}");
    let mut d = Deploy::default();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for doc in docs {
            match doc["kind"].as_str().unwrap_or_default() {
                "DaemonSet" => d.daemonsets.push(typed(doc, &file)),
                "ConfigMap" => d.config_maps.push(typed(doc, &file)),
                "ServiceAccount" => d.service_accounts.push(typed(doc, &file)),
                "ClusterRole" => d.roles.push(typed(doc, &file)),
                "ClusterRoleBinding" => d.bindings.push(typed(doc, &file)),
                other => panic!("{}: unexpected kind {other:?}", file.display()),
            }
        }
    }
    d
}

fn one<'a, T>(items: &'a [T], what: &str) -> &'a T {
    assert_eq!(items.len(), 1, "exactly one {what}");
    &items[0]
}

fn pod_spec(ds: &DaemonSet) -> &PodSpec {
    ds.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec")
}

fn agent(spec: &PodSpec) -> &Container {
    one(&spec.containers, "container")
}

#[test]
fn the_daemonset_runs_the_agent_like_kube_proxy() {
    let d = load();
    let ds = one(&d.daemonsets, "DaemonSet");
    let spec = pod_spec(ds);
    assert_eq!(spec.host_network, Some(true));
    assert_eq!(
        spec.priority_class_name.as_deref(),
        Some("system-node-critical")
    );
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    assert!(
        tolerations
            .iter()
            .any(|t| t.operator.as_deref() == Some("Exists")
                && t.key.is_none()
                && t.effect.is_none()),
        "tolerates every taint: {tolerations:?}"
    );
    let rolling = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.max_unavailable.as_ref());
    assert_eq!(
        rolling,
        Some(&k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );

    let c = agent(spec);
    let security = c.security_context.as_ref().expect("securityContext");
    assert_ne!(
        security.privileged,
        Some(true),
        "capabilities, not full privilege"
    );
    let caps = security.capabilities.as_ref().expect("capabilities");
    let added: BTreeSet<&str> = caps.add.iter().flatten().map(String::as_str).collect();
    assert_eq!(added, BTreeSet::from(["NET_ADMIN", "NET_RAW"]));
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));

    for (probe, path) in [
        (&c.liveness_probe, "/livez"),
        (&c.readiness_probe, "/healthz"),
    ] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .unwrap_or_else(|| panic!("an HTTP probe on {path}"));
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(
            get.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(10256)
        );
    }

    // Mounts: the xtables lock from the host, /lib/modules read-only, the config.
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    let host_path = |mount: &str| {
        let m = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == mount)
            .unwrap_or_else(|| panic!("{mount} mounted"));
        let v = volumes
            .iter()
            .find(|v| v.name == m.name)
            .expect("its volume");
        (m.read_only, v.host_path.as_ref().map(|h| h.path.clone()))
    };
    assert_eq!(
        host_path("/run/xtables.lock").1.as_deref(),
        Some("/run/xtables.lock")
    );
    assert_eq!(
        host_path("/lib/modules"),
        (Some(true), Some("/lib/modules".into()))
    );

    // NODE_NAME from the downward API, passed as --hostname-override.
    let node_name = c
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "NODE_NAME")
        .and_then(|e| e.value_from.as_ref())
        .and_then(|v| v.field_ref.as_ref())
        .map(|f| f.field_path.as_str());
    assert_eq!(node_name, Some("spec.nodeName"));

    // The command parses as the agent's flags, its --config is the ConfigMap's file, and
    // that file loads without a single warning.
    let argv: Vec<String> = c
        .command
        .iter()
        .flatten()
        .chain(c.args.iter().flatten())
        .map(|a| a.replace("$(NODE_NAME)", "node-1"))
        .collect();
    let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert_eq!(cli.run.node.hostname_override.as_deref(), Some("node-1"));
    let config = cli.run.config.expect("--config");
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| config.starts_with(&m.mount_path))
        .expect("--config is on a mounted volume");
    let volume = volumes
        .iter()
        .find(|v| v.name == mount.name)
        .expect("volume");
    let cm_name = volume
        .config_map
        .as_ref()
        .map(|c| c.name.clone())
        .expect("a ConfigMap volume");
    let cm = d
        .config_maps
        .iter()
        .find(|m| m.metadata.name.as_deref() == Some(&cm_name))
        .expect("the ConfigMap is in deploy/");
    let key = config
        .strip_prefix(&mount.mount_path)
        .expect("under the mount")
        .to_string_lossy()
        .to_string();
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get(&key))
        .unwrap_or_else(|| panic!("ConfigMap {cm_name} has key {key}"));
    let loaded = switchyard_agent::config::parse(&config, text).expect("the config loads");
    assert_eq!(loaded.warnings, Vec::<String>::new());

    // The kubeconfig it names is the ConfigMap's other key, authenticating with the pod's
    // service account token (the API server is reached directly, not through a cluster IP).
    let kubeconfig = loaded
        .config
        .kubeconfig
        .expect("clientConnection.kubeconfig");
    let key = kubeconfig
        .strip_prefix(&mount.mount_path)
        .expect("the kubeconfig is in the same ConfigMap")
        .to_string_lossy()
        .to_string();
    let kc_text = cm
        .data
        .as_ref()
        .and_then(|d| d.get(&key))
        .expect("kubeconfig key");
    let kc = kube::config::Kubeconfig::from_yaml(kc_text).expect("a kubeconfig");
    let user = kc.auth_infos[0].auth_info.as_ref().expect("user");
    assert_eq!(
        user.token_file.as_deref(),
        Some("/var/run/secrets/kubernetes.io/serviceaccount/token")
    );

    // The service account it runs as is in deploy/, in the DaemonSet's namespace.
    let sa = one(&d.service_accounts, "ServiceAccount");
    assert_eq!(spec.service_account_name, sa.metadata.name);
    assert_eq!(sa.metadata.namespace, ds.metadata.namespace);
}

/// (group, resource, verb) triples.
type Grants = BTreeSet<(String, String, String)>;

#[test]
fn rbac_grants_exactly_the_api_calls_the_agent_makes() {
    let d = load();
    let role = one(&d.roles, "ClusterRole");
    let mut granted = Grants::new();
    for rule in role.rules.iter().flatten() {
        assert!(
            rule.resource_names.is_none() && rule.non_resource_urls.is_none(),
            "plain resource rules only: {rule:?}"
        );
        for g in rule.api_groups.iter().flatten() {
            for r in rule.resources.iter().flatten() {
                for v in &rule.verbs {
                    assert_ne!(v, "*", "no wildcard verbs");
                    assert!(
                        granted.insert((g.clone(), r.clone(), v.clone())),
                        "{g}/{r} {v} twice"
                    );
                }
            }
        }
    }
    let used: Grants = API_ACCESS
        .iter()
        .flat_map(|a| {
            a.verbs
                .iter()
                .map(|v| (a.group.to_string(), a.resource.to_string(), v.to_string()))
        })
        .collect();
    let extra: Vec<_> = granted.difference(&used).collect();
    let missing: Vec<_> = used.difference(&granted).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "granted but unused: {extra:?}; used but not granted: {missing:?}"
    );

    // Bound to the DaemonSet's service account, nothing else.
    let binding = one(&d.bindings, "ClusterRoleBinding");
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
    let sa = one(&d.service_accounts, "ServiceAccount");
    let subjects = binding.subjects.as_deref().unwrap_or_default();
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(Some(&subjects[0].name), sa.metadata.name.as_ref());
    assert_eq!(subjects[0].namespace, sa.metadata.namespace);
}
