use super::*;

#[test]
fn counters_are_named_as_their_samples_and_there_is_no_eof() {
    let m = Metrics::new("iptables");
    m.healthz_total.inc(200);
    m.synced(IpFamily::V4, Duration::from_millis(3), None, true);
    let text = m.encode();
    for want in [
        "# TYPE kubeproxy_proxy_healthz_total counter",
        "# HELP kubeproxy_proxy_healthz_total Cumulative proxy healthz HTTP status",
        "kubeproxy_proxy_healthz_total{code=\"200\"} 1",
        "# TYPE kubeproxy_sync_proxy_rules_iptables_restore_failures_total counter",
        "kubeproxy_sync_proxy_rules_iptables_restore_failures_total{ip_family=\"IPv4\"} 1",
        "kubeproxy_sync_partial_proxy_rules_duration_seconds_count{ip_family=\"IPv4\"} 1",
        "switchyard_build_info{mode=\"iptables\"",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(!text.contains("# EOF"));
    assert!(!text.contains("nftables_sync_failures"), "{text}");
}

#[test]
fn conntrack_cleanups_are_counted_per_family() {
    let m = Metrics::new("nftables");
    let cleanup = ConntrackCleanup {
        deleted: 3,
        failed: 1,
        duration: Duration::from_millis(2),
    };
    m.record_conntrack_cleanup(IpFamily::V6, cleanup);
    m.record_conntrack_cleanup(IpFamily::V6, cleanup);
    let text = m.encode();
    for want in [
        "kubeproxy_conntrack_reconciler_deleted_entries_total{ip_family=\"IPv6\"} 6",
        "switchyard_conntrack_cleanup_failures_total{ip_family=\"IPv6\"} 2",
        "kubeproxy_conntrack_reconciler_sync_duration_seconds_count{ip_family=\"IPv6\"} 2",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}
