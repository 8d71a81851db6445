use super::*;
use crate::metrics::Metrics;

fn health(timeout_ms: u64) -> ProxyHealth {
    let m = Metrics::new("nftables");
    ProxyHealth::new(
        Duration::from_millis(timeout_ms),
        m.healthz_total.clone(),
        m.livez_total.clone(),
    )
}

#[test]
fn healthy_while_starting_and_while_nothing_is_queued() {
    let h = health(1000);
    let t0 = Instant::now();
    assert!(h.verdict(t0 + Duration::from_secs(3600)).healthy);
    h.updated(IpFamily::V4, t0, SystemTime::now());
    // No change queued: a long quiet time is still healthy.
    assert!(h.verdict(t0 + Duration::from_secs(3600)).healthy);
}

#[test]
fn a_queued_change_not_synced_within_the_timeout_is_unhealthy_until_a_sync() {
    let h = health(1000);
    let t0 = Instant::now();
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    h.updated(IpFamily::V4, t0, wall);
    h.queued(IpFamily::V4, t0 + Duration::from_millis(100));
    // A later change does not reset the oldest one.
    h.queued(IpFamily::V4, t0 + Duration::from_millis(900));
    assert!(h.verdict(t0 + Duration::from_millis(1099)).healthy);
    let late = h.verdict(t0 + Duration::from_millis(1100));
    assert_eq!(
        late,
        Verdict {
            healthy: false,
            last_updated: Some(wall)
        }
    );
    h.updated(IpFamily::V4, t0 + Duration::from_millis(1200), wall);
    assert!(h.verdict(t0 + Duration::from_millis(5000)).healthy);
}

#[test]
fn one_late_family_makes_the_proxy_unhealthy() {
    let h = health(1000);
    let t0 = Instant::now();
    h.updated(IpFamily::V4, t0, SystemTime::now());
    h.updated(IpFamily::V6, t0, SystemTime::now());
    h.queued(IpFamily::V6, t0);
    h.updated(IpFamily::V4, t0 + Duration::from_secs(2), SystemTime::now());
    assert!(!h.verdict(t0 + Duration::from_secs(2)).healthy);
}

#[test]
fn a_first_sync_that_never_succeeds_turns_unhealthy() {
    let h = health(1000);
    let t0 = Instant::now();
    h.queued(IpFamily::V4, t0);
    assert!(h.verdict(t0 + Duration::from_millis(999)).healthy);
    assert!(!h.verdict(t0 + Duration::from_millis(1000)).healthy);
}

#[test]
fn healthz_depends_on_the_node_livez_does_not() {
    let h = health(1000);
    let eligible = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let probe = eligible.clone();
    h.set_node_eligibility(Arc::new(move || {
        probe.load(std::sync::atomic::Ordering::SeqCst)
    }));
    assert_eq!(h.healthz().status, StatusCode::OK);
    eligible.store(false, std::sync::atomic::Ordering::SeqCst);
    let healthz = h.healthz();
    assert_eq!(healthz.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        healthz.body.contains(r#""nodeEligible": false"#),
        "{}",
        healthz.body
    );
    let livez = h.livez();
    assert_eq!(livez.status, StatusCode::OK);
    assert!(!livez.body.contains("nodeEligible"), "{}", livez.body);
}

#[test]
fn node_eligibility_follows_deletion_and_the_autoscaler_taint() {
    let node = |extra: serde_json::Value| -> core_v1::Node {
        let mut v = serde_json::json!({"metadata": {"name": "n"}, "spec": {}});
        merge(&mut v, extra);
        serde_json::from_value(v).expect("node")
    };
    assert!(node_eligible(&node(serde_json::json!({}))));
    assert!(node_eligible(&node(
        serde_json::json!({"spec": {"taints": [
        {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}})
    )));
    assert!(!node_eligible(&node(
        serde_json::json!({"spec": {"taints": [
        {"key": TO_BE_DELETED_TAINT, "value": "1700000000", "effect": "NoSchedule"}]}})
    )));
    assert!(!node_eligible(&node(serde_json::json!({"metadata": {
        "deletionTimestamp": "2026-01-01T00:00:00Z"}}))));
}

fn merge(base: &mut serde_json::Value, extra: serde_json::Value) {
    match (base, extra) {
        (serde_json::Value::Object(b), serde_json::Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

#[test]
fn times_print_as_go_prints_them() {
    let t = SystemTime::UNIX_EPOCH + Duration::new(1_764_726_787, 123_450_000);
    assert_eq!(go_time(Some(t)), "2025-12-03 01:53:07.12345 +0000 UTC");
    let whole = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_726_787);
    assert_eq!(go_time(Some(whole)), "2025-12-03 01:53:07 +0000 UTC");
    assert_eq!(go_time(None), "0001-01-01 00:00:00 +0000 UTC");
}
