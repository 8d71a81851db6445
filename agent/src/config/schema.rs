//! Every field of a `kubeproxy.config.k8s.io/v1alpha1` KubeProxyConfiguration (Kubernetes
//! v1.33), and what Switchyard does with it. Fields the file reader ([`super::file`]) uses are
//! [`Field::Used`]; the rest of kube-proxy's schema is [`Field::Ignored`] with the reason; any
//! other key is unknown. Both of the latter warn by their full path.
//!
//! An ignored field warns only when it holds something other than its unset value (`null`,
//! `false`, `0`, `""`, `0s`, an empty list or map): Go cannot tell those from an absent field
//! either, and kubeadm writes every field, so a stock kubeadm file would otherwise warn about
//! two dozen fields nobody set.

use serde_json::Value;

/// What Switchyard does with a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Read and validated by the file reader.
    Used,
    /// Part of kube-proxy's schema, without effect here; the reason goes into the warning.
    Ignored(&'static str),
}

/// Paths are dotted; an entry covers its whole subtree (`logging` covers
/// `logging.options.json.infoBufferSize`).
const FIELDS: &[(&str, Field)] = &[
    ("apiVersion", Field::Used),
    ("kind", Field::Used),
    ("mode", Field::Used),
    ("clientConnection.kubeconfig", Field::Used),
    (
        "clientConnection.qps",
        Field::Ignored("the API client's rate limits are kube-rs's"),
    ),
    (
        "clientConnection.burst",
        Field::Ignored("the API client's rate limits are kube-rs's"),
    ),
    (
        "clientConnection.contentType",
        Field::Ignored("the API client speaks JSON"),
    ),
    (
        "clientConnection.acceptContentTypes",
        Field::Ignored("the API client speaks JSON"),
    ),
    ("hostnameOverride", Field::Used),
    ("bindAddress", Field::Used),
    ("healthzBindAddress", Field::Used),
    ("metricsBindAddress", Field::Used),
    (
        "bindAddressHardFail",
        Field::Ignored("a port in use is always a warning"),
    ),
    ("enableProfiling", Field::Ignored("no pprof endpoint")),
    (
        "showHiddenMetricsForVersion",
        Field::Ignored("no hidden metrics"),
    ),
    (
        "featureGates",
        Field::Ignored("kube-proxy's feature gates do not apply"),
    ),
    ("logging", Field::Ignored("log level comes from RUST_LOG")),
    ("clusterCIDR", Field::Used),
    ("nodePortAddresses", Field::Used),
    (
        "masqueradeAll",
        Field::Ignored(
            "not a v1alpha1 field: use iptables.masqueradeAll or nftables.masqueradeAll",
        ),
    ),
    // v1alpha2's spelling, accepted here too (see `file::sync_periods`).
    ("syncPeriod", Field::Used),
    ("minSyncPeriod", Field::Used),
    ("iptables.masqueradeAll", Field::Used),
    ("iptables.syncPeriod", Field::Used),
    ("iptables.minSyncPeriod", Field::Used),
    (
        "iptables.masqueradeBit",
        Field::Ignored("Switchyard's masquerade mark is fixed (0x4000, bit 14)"),
    ),
    (
        "iptables.localhostNodePorts",
        Field::Ignored("NodePorts are never served on localhost"),
    ),
    ("nftables.masqueradeAll", Field::Used),
    ("nftables.syncPeriod", Field::Used),
    ("nftables.minSyncPeriod", Field::Used),
    (
        "nftables.masqueradeBit",
        Field::Ignored("Switchyard's masquerade mark is fixed (0x4000, bit 14)"),
    ),
    ("ipvs.syncPeriod", Field::Used),
    ("ipvs.minSyncPeriod", Field::Used),
    ("ipvs.scheduler", Field::Used),
    ("ipvs.strictARP", Field::Used),
    ("ipvs.tcpTimeout", Field::Used),
    ("ipvs.tcpFinTimeout", Field::Used),
    ("ipvs.udpTimeout", Field::Used),
    ("ipvs.excludeCIDRs", Field::Used),
    (
        "ipvs.masqueradeBit",
        Field::Ignored("Switchyard's masquerade mark is fixed (0x4000, bit 14)"),
    ),
    ("winkernel", Field::Ignored("Windows only")),
    ("windowsRunAsService", Field::Ignored("Windows only")),
    ("detectLocalMode", Field::Used),
    ("detectLocal.bridgeInterface", Field::Used),
    ("detectLocal.interfaceNamePrefix", Field::Used),
    (
        "oomScoreAdj",
        Field::Ignored("set the pod's OOM score through its QoS class"),
    ),
    // Parsed and validated by the file reader, but not applied: kube-proxy tunes these
    // sysctls at start; Switchyard leaves node sysctls to the node's configuration.
    (
        "conntrack.maxPerCore",
        Field::Ignored("Switchyard does not set nf_conntrack_max"),
    ),
    (
        "conntrack.min",
        Field::Ignored("Switchyard does not set nf_conntrack_max"),
    ),
    (
        "conntrack.tcpEstablishedTimeout",
        Field::Ignored("Switchyard does not set conntrack sysctls"),
    ),
    (
        "conntrack.tcpCloseWaitTimeout",
        Field::Ignored("Switchyard does not set conntrack sysctls"),
    ),
    (
        "conntrack.tcpBeLiberal",
        Field::Ignored("Switchyard does not set conntrack sysctls"),
    ),
    (
        "conntrack.udpTimeout",
        Field::Ignored("Switchyard does not set conntrack sysctls"),
    ),
    (
        "conntrack.udpStreamTimeout",
        Field::Ignored("Switchyard does not set conntrack sysctls"),
    ),
    (
        "configSyncPeriod",
        Field::Ignored("watches do not resync on a timer"),
    ),
    (
        "portRange",
        Field::Ignored("the userspace proxy's; unused since kube-proxy 1.26 too"),
    ),
];

/// The entry covering `path`, if any.
pub fn lookup(path: &str) -> Option<Field> {
    FIELDS.iter().find_map(|(p, f)| {
        let covers = path == *p
            || path
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('.'));
        covers.then_some(*f)
    })
}

/// Warnings for `doc`'s unknown fields and its ignored fields that are set, by full path,
/// sorted by path.
pub fn warnings(doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(doc, "", &mut out);
    out
}

fn walk(v: &Value, path: &str, out: &mut Vec<String>) {
    if let Value::Object(map) = v {
        if path.is_empty() || lookup(path).is_none() {
            for (k, child) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(child, &p, out);
            }
            return;
        }
    }
    match lookup(path) {
        Some(Field::Used) => {}
        Some(Field::Ignored(why)) if !is_unset(v) => out.push(format!(
            "{path}: not supported by Switchyard ({why}); ignored"
        )),
        Some(Field::Ignored(_)) => {}
        None => out.push(format!("{path}: unknown field; ignored")),
    }
}

/// Whether `v` is a Go zero value as YAML/JSON spells it (`0s` is a zero `metav1.Duration`).
pub fn is_unset(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty() || s == "0" || s == "0s",
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.values().all(is_unset),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtrees_and_unknown_paths() {
        assert_eq!(
            lookup("logging.options.json.infoBufferSize"),
            lookup("logging")
        );
        assert_eq!(lookup("ipvs.scheduler"), Some(Field::Used));
        assert_eq!(lookup("ipvsx"), None);
        assert_eq!(lookup("iptables.bogus"), None);
        let doc = serde_json::json!({
            "iptables": {"localhostNodePorts": true, "bogus": 0, "masqueradeBit": null},
            "logging": {"verbosity": 0},
            "extra": {"a": 1},
        });
        assert_eq!(
            warnings(&doc),
            vec![
                "extra.a: unknown field; ignored".to_string(),
                "iptables.bogus: unknown field; ignored".to_string(),
                "iptables.localhostNodePorts: not supported by Switchyard (NodePorts are never served on localhost); ignored".to_string(),
            ]
        );
    }
}
