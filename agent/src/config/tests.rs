//! Loading real kube-proxy configs, precedence of flags over the file, refusals by field.

use super::*;
use crate::cli::{Cli, DetectLocalMode, ModeArg};
use crate::ipvs_args::IpvsScheduler;
use clap::{CommandFactory as _, FromArgMatches as _};
use k8s_openapi::api::core::v1::ConfigMap;
use std::time::Duration;
use switchyard_core::NodePortAddresses;

/// kubeadm's ConfigMap payload (`config.conf`), from the test data.
fn kubeadm_config() -> String {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/kubeadm-v1.33-kube-proxy.yaml");
    let text = std::fs::read_to_string(&path).expect("test data");
    let cm: ConfigMap = serde_saphyr::from_str(&text).expect("a ConfigMap");
    cm.data
        .and_then(|d| d.get("config.conf").cloned())
        .expect("config.conf in the ConfigMap")
}

fn load_text(text: &str) -> Result<Loaded, ConfigError> {
    parse(Path::new("test.yaml"), text)
}

/// Parses `flags` as the agent does and fills them from `text`.
fn run_args(flags: &[&str], text: &str) -> RunArgs {
    let argv = std::iter::once("switchyard").chain(flags.iter().copied());
    let matches = Cli::command().try_get_matches_from(argv).expect("flags");
    let mut cli = Cli::from_arg_matches(&matches).expect("cli");
    let loaded = load_text(text).expect("config");
    apply(&loaded.config, &matches, &mut cli.run);
    cli.run
}

fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "test data has {from:?}");
    text.replacen(from, to, 1)
}

#[test]
fn kubeadm_config_loads_without_warnings_and_sets_what_kubeadm_set() {
    let loaded = load_text(&kubeadm_config()).expect("kubeadm's file loads");
    // Every other field is at its zero value: nothing to warn about.
    assert_eq!(loaded.warnings, Vec::<String>::new());
    let c = &loaded.config;
    assert_eq!(
        c.kubeconfig.as_deref(),
        Some(Path::new("/var/lib/kube-proxy/kubeconfig.conf"))
    );
    assert_eq!(
        c.cluster_cidrs,
        Some(vec!["10.244.0.0/16".parse().expect("cidr")])
    );
    assert_eq!(
        (c.mode, c.detect_local_mode, c.bind_address),
        (None, None, None)
    );
    assert_eq!(c.iptables_sync, SyncPeriods::default());
    assert_eq!(
        c.conntrack,
        file::ConntrackFields {
            tcp_be_liberal: Some(false),
            ..Default::default()
        }
    );

    // Applied with no flags: the defaults stay, the file's values land.
    let args = run_args(&[], &kubeadm_config());
    assert_eq!(args.mode, ModeArg::Nftables);
    assert_eq!(args.sync_period, Duration::from_secs(30));
    assert_eq!(args.min_sync_period, Duration::from_secs(1));
    assert_eq!(args.node.cluster_cidr.len(), 1);
    assert_eq!(args.node.nodeport_addresses, NodePortAddresses::Primary);
    assert!(!args.node.masquerade_all);
}

/// The same ConfigMap as operators commonly edit it (IPVS for MetalLB's strict ARP, metrics
/// for Prometheus, a larger conntrack table, a feature gate, a typo).
#[test]
fn an_edited_kubeadm_config_warns_by_field_path() {
    let mut text = kubeadm_config();
    for (from, to) in [
        ("mode: \"\"", "mode: ipvs"),
        ("  strictARP: false", "  strictARP: true"),
        ("  scheduler: \"\"", "  scheduler: lc"),
        (
            "metricsBindAddress: \"\"",
            "metricsBindAddress: 0.0.0.0:10249",
        ),
        ("  maxPerCore: null", "  maxPerCore: 65536"),
        (
            "  localhostNodePorts: null",
            "  localhostNodePorts: true\n  localhostNodeport: true",
        ),
        (
            "enableProfiling: false",
            "enableProfiling: false\nfeatureGates:\n  SomeGate: true",
        ),
    ] {
        text = edit(&text, from, to);
    }
    let loaded = load_text(&text).expect("loads");
    assert_eq!(
        loaded.warnings,
        vec![
            "conntrack.maxPerCore: not supported by Switchyard (Switchyard does not set nf_conntrack_max); ignored",
            "featureGates: not supported by Switchyard (kube-proxy's feature gates do not apply); ignored",
            "iptables.localhostNodePorts: not supported by Switchyard (NodePorts are never served on localhost); ignored",
            "iptables.localhostNodeport: unknown field; ignored",
        ]
    );
    assert_eq!(loaded.config.conntrack.max_per_core, Some(65536));
    assert_eq!(
        loaded.config.metrics_bind_address,
        Some("0.0.0.0:10249".parse().expect("addr"))
    );
    let args = run_args(&[], &text);
    assert_eq!(args.mode, ModeArg::Ipvs);
    assert!(args.ipvs.strict_arp);
    assert_eq!(args.ipvs.scheduler, IpvsScheduler::Lc);
}

#[test]
fn flags_given_override_the_file_and_defaults_do_not() {
    let text = r#"{
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "hostnameOverride": "from-file",
        "clusterCIDR": "10.244.0.0/16,fd00:244::/56",
        "nodePortAddresses": ["10.0.0.0/8"],
        "syncPeriod": "5m",
        "minSyncPeriod": "3s",
        "iptables": {"syncPeriod": "1m0s", "minSyncPeriod": "0s", "masqueradeAll": true},
        "nftables": {"syncPeriod": "2m0s", "minSyncPeriod": "2s", "masqueradeAll": false},
        "ipvs": {"syncPeriod": "45s", "tcpTimeout": "15m", "excludeCIDRs": ["10.1.0.0/16"]},
        "detectLocalMode": "InterfaceNamePrefix",
        "detectLocal": {"interfaceNamePrefix": "cali"}
    }"#;
    // No flags: all from the file. iptables' section wins for its mode; its zero
    // minSyncPeriod is unset, so the top level (v1alpha2's spelling) supplies it.
    let a = run_args(&[], text);
    assert_eq!(a.mode, ModeArg::Iptables);
    assert_eq!(a.sync_period, Duration::from_secs(60));
    assert_eq!(a.min_sync_period, Duration::from_secs(3));
    assert!(a.node.masquerade_all);
    assert_eq!(a.node.hostname_override.as_deref(), Some("from-file"));
    assert_eq!(a.node.cluster_cidr.len(), 2);
    assert!(matches!(&a.node.nodeport_addresses, NodePortAddresses::Cidrs(c) if c.len() == 1));
    assert_eq!(
        a.node.detect_local_mode,
        DetectLocalMode::InterfaceNamePrefix
    );
    assert_eq!(a.node.pod_interface_name_prefix.as_deref(), Some("cali"));
    assert_eq!(a.ipvs.tcp_timeout, Duration::from_secs(900));
    assert_eq!(a.ipvs.exclude_cidrs.len(), 1);

    // --mode nftables given: the nftables section's periods and masqueradeAll apply.
    let a = run_args(&["--mode", "nftables", "--hostname-override", "flag"], text);
    assert_eq!(a.mode, ModeArg::Nftables);
    assert_eq!(a.sync_period, Duration::from_secs(120));
    assert_eq!(a.min_sync_period, Duration::from_secs(2));
    assert!(!a.node.masquerade_all);
    assert_eq!(a.node.hostname_override.as_deref(), Some("flag"));

    // IPVS takes its own section's periods, and masqueradeAll from iptables' (as kube-proxy).
    let a = run_args(&["--mode", "ipvs"], text);
    assert_eq!(a.sync_period, Duration::from_secs(45));
    assert!(a.node.masquerade_all);

    // A flag equal to its default still counts as given.
    let a = run_args(
        &[
            "--sync-period",
            "30s",
            "--detect-local-mode",
            "ClusterCIDR",
            "--ipvs-tcp-timeout",
            "0s",
        ],
        text,
    );
    assert_eq!(a.sync_period, Duration::from_secs(30));
    assert_eq!(a.node.detect_local_mode, DetectLocalMode::ClusterCidr);
    assert_eq!(a.ipvs.tcp_timeout, Duration::ZERO);
}

#[test]
fn invalid_values_stop_startup_naming_the_field() {
    let base = kubeadm_config();
    for (from, to, field) in [
        ("mode: \"\"", "mode: userspace", "mode"),
        (
            "clusterCIDR: 10.244.0.0/16",
            "clusterCIDR: 10.244.0.0/33",
            "clusterCIDR",
        ),
        (
            "  syncPeriod: 0s\nipvs",
            "  syncPeriod: 30\nipvs",
            "iptables.syncPeriod",
        ),
        ("  tcpTimeout: 0s", "  tcpTimeout: -5s", "ipvs.tcpTimeout"),
        (
            "  scheduler: \"\"",
            "  scheduler: fastest",
            "ipvs.scheduler",
        ),
        (
            "  strictARP: false",
            "  strictARP: \"yes\"",
            "ipvs.strictARP",
        ),
        (
            "  maxPerCore: null",
            "  maxPerCore: -1",
            "conntrack.maxPerCore",
        ),
        (
            "  udpTimeout: 0s\ndetectLocal",
            "  udpTimeout: 1d\ndetectLocal",
            "conntrack.udpTimeout",
        ),
        (
            "detectLocalMode: \"\"",
            "detectLocalMode: Magic",
            "detectLocalMode",
        ),
        (
            "  bridgeInterface: \"\"",
            "  bridgeInterface: cni0+",
            "detectLocal.bridgeInterface",
        ),
        (
            "healthzBindAddress: \"\"",
            "healthzBindAddress: example:1",
            "healthzBindAddress",
        ),
        (
            "nodePortAddresses: null",
            "nodePortAddresses: [localhost]",
            "nodePortAddresses",
        ),
        (
            "  excludeCIDRs: null",
            "  excludeCIDRs: [bogus]",
            "ipvs.excludeCIDRs",
        ),
        (
            "apiVersion: kubeproxy.config.k8s.io/v1alpha1",
            "apiVersion: kubeproxy.config.k8s.io/v1alpha2",
            "apiVersion",
        ),
        (
            "kind: KubeProxyConfiguration",
            "kind: KubeletConfiguration",
            "kind",
        ),
    ] {
        let text = edit(&base, from, to);
        match load_text(&text) {
            Err(ConfigError::Invalid { field: f, message }) => {
                assert_eq!(f, field, "{to}: {message}")
            }
            other => panic!("{to}: want an error naming {field}, got {other:?}"),
        }
    }
    assert!(matches!(
        load_text("- a list"),
        Err(ConfigError::Syntax { .. })
    ));
}

#[test]
fn bind_address_naming_an_address_warns() {
    let text = edit(
        &kubeadm_config(),
        "bindAddress: 0.0.0.0",
        "bindAddress: 192.168.56.11",
    );
    let loaded = load_text(&text).expect("loads");
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(loaded.warnings[0].starts_with("bindAddress: "));
}
