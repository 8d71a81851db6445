//! kube-proxy's health semantics (`pkg/proxy/healthcheck`, KEP-3836), served on
//! `--healthz-bind-address`:
//!
//! - **Healthy** while every family's dataplane is in sync: a family with a queued change
//!   (a Service or EndpointSlice event) that no successful sync has followed for longer than
//!   the timeout (2 × `--sync-period`, kube-proxy's) is unhealthy. A family that has nothing
//!   queued is healthy, also while starting up and also when its periodic resyncs fail: only a
//!   change that does not reach the kernel in time makes the proxy unhealthy.
//! - `/livez` answers that alone. `/healthz` also answers 503 while this Node is being deleted
//!   (`deletionTimestamp`) or carries the cluster autoscaler's `ToBeDeletedByClusterAutoscaler`
//!   taint, so load balancers drain the node before it goes; `/livez` must not, or the kubelet
//!   would restart a proxy that is working.
//!
//! Bodies are kube-proxy's: `{"lastUpdated": "…","currentTime": "…", "nodeEligible": true}`
//! (`/livez` without `nodeEligible`). As in kube-proxy, a healthy answer reports
//! `lastUpdated` = `currentTime`; an unhealthy one the late family's last successful sync.

pub mod services;

use crate::http::Reply;
use crate::metrics::CodeCounters;
use hyper::StatusCode;
use k8s_openapi::api::core::v1 as core_v1;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};
use switchyard_core::IpFamily;

/// The cluster autoscaler's taint on a node it is about to delete.
pub const TO_BE_DELETED_TAINT: &str = "ToBeDeletedByClusterAutoscaler";

/// Whether this node should still receive load-balancer traffic: not being deleted and not
/// tainted for deletion by the cluster autoscaler (kube-proxy's `SyncNode`).
pub fn node_eligible(node: &core_v1::Node) -> bool {
    node.metadata.deletion_timestamp.is_none()
        && !node
            .spec
            .iter()
            .flat_map(|s| s.taints.iter().flatten())
            .any(|t| t.key == TO_BE_DELETED_TAINT)
}

/// Reads whether this node is eligible, from wherever the Node is followed (the API source).
pub type NodeEligibility = Arc<dyn Fn() -> bool + Send + Sync>;

/// The proxy's health: per family, when it last synced and since when a change waits.
pub struct ProxyHealth {
    timeout: Duration,
    inner: Mutex<Times>,
    /// Unset (offline, or before the API source starts): eligible, as kube-proxy assumes
    /// until it has seen the Node.
    node: OnceLock<NodeEligibility>,
    healthz_total: CodeCounters,
    livez_total: CodeCounters,
}

impl std::fmt::Debug for ProxyHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyHealth")
            .field("timeout", &self.timeout)
            .field("times", &self.inner)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Times {
    /// Per family: the last successful sync (monotonic, and wall time for the JSON).
    last_updated: BTreeMap<IpFamily, (Instant, SystemTime)>,
    /// Per family: the oldest change not yet followed by a successful sync.
    oldest_queued: BTreeMap<IpFamily, Instant>,
}

/// The health verdict at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub healthy: bool,
    /// The newest successful sync when healthy; the late family's last one when not
    /// (`None`: never synced).
    pub last_updated: Option<SystemTime>,
}

impl ProxyHealth {
    pub fn new(timeout: Duration, healthz_total: CodeCounters, livez_total: CodeCounters) -> Self {
        Self {
            timeout,
            inner: Mutex::new(Times::default()),
            node: OnceLock::new(),
            healthz_total,
            livez_total,
        }
    }

    /// Follows this node's eligibility through `probe` from now on.
    pub fn set_node_eligibility(&self, probe: NodeEligibility) {
        if self.node.set(probe).is_err() {
            tracing::warn!("node eligibility is already followed; ignoring a second source");
        }
    }

    fn times(&self) -> std::sync::MutexGuard<'_, Times> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A change for `family` is waiting for a sync (kube-proxy's `QueuedUpdate`): the oldest
    /// such moment is kept until [`updated`](Self::updated).
    pub fn queued(&self, family: IpFamily, now: Instant) {
        self.times().oldest_queued.entry(family).or_insert(now);
    }

    /// `family`'s dataplane holds the current state (kube-proxy's `Updated`).
    pub fn updated(&self, family: IpFamily, now: Instant, wall: SystemTime) {
        let mut t = self.times();
        t.oldest_queued.remove(&family);
        t.last_updated.insert(family, (now, wall));
    }

    /// Forgets families the node no longer has (their lanes are gone: nothing will sync them,
    /// and a change queued for them must not make the proxy look stuck).
    pub fn retain_families(&self, families: &[IpFamily]) {
        let mut t = self.times();
        t.last_updated.retain(|f, _| families.contains(f));
        t.oldest_queued.retain(|f, _| families.contains(f));
    }

    /// The verdict at `now` (kube-proxy's `isHealthy`).
    pub fn verdict(&self, now: Instant) -> Verdict {
        let t = self.times();
        let mut last_updated = None;
        for (family, (_, wall)) in &t.last_updated {
            last_updated = last_updated.max(Some(*wall));
            if let Some(queued) = t.oldest_queued.get(family) {
                if now.saturating_duration_since(*queued) >= self.timeout {
                    return Verdict {
                        healthy: false,
                        last_updated: Some(*wall),
                    };
                }
            }
        }
        // A family that never synced but has a change waiting too long is late as well
        // (kube-proxy only looks at families that synced once; a first sync that keeps
        // failing must not look healthy forever).
        for (family, queued) in &t.oldest_queued {
            if !t.last_updated.contains_key(family)
                && now.saturating_duration_since(*queued) >= self.timeout
            {
                return Verdict {
                    healthy: false,
                    last_updated: None,
                };
            }
        }
        Verdict {
            healthy: true,
            last_updated,
        }
    }

    pub fn node_eligible(&self) -> bool {
        self.node.get().is_none_or(|probe| probe())
    }

    /// `/healthz`: in sync and this node eligible.
    pub fn healthz(&self) -> Reply {
        let eligible = self.node_eligible();
        let verdict = self.verdict(Instant::now());
        let now = SystemTime::now();
        let healthy = verdict.healthy && eligible;
        let status = self.count(&self.healthz_total, healthy);
        let last = if healthy {
            Some(now)
        } else {
            verdict.last_updated
        };
        Reply::json(
            status,
            format!(
                r#"{{"lastUpdated": "{}","currentTime": "{}", "nodeEligible": {eligible}}}"#,
                go_time(last),
                go_time(Some(now))
            ),
        )
    }

    /// `/livez`: in sync; the node's eligibility does not matter.
    pub fn livez(&self) -> Reply {
        let verdict = self.verdict(Instant::now());
        let now = SystemTime::now();
        let status = self.count(&self.livez_total, verdict.healthy);
        let last = if verdict.healthy {
            Some(now)
        } else {
            verdict.last_updated
        };
        Reply::json(
            status,
            format!(
                r#"{{"lastUpdated": "{}","currentTime": "{}"}}"#,
                go_time(last),
                go_time(Some(now))
            ),
        )
    }

    fn count(&self, counters: &CodeCounters, healthy: bool) -> StatusCode {
        let status = if healthy {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        counters.inc(status.as_u16());
        status
    }

    /// The health server's handler: `/healthz` and `/livez`, 404 elsewhere.
    pub fn handler(self: &Arc<Self>) -> crate::http::Handler {
        let health = self.clone();
        Arc::new(move |path| match path {
            "/healthz" => health.healthz(),
            "/livez" => health.livez(),
            _ => Reply::not_found(),
        })
    }
}

/// A time as Go's `time.Time.String()` prints it in UTC (what kube-proxy's `%q` writes), without
/// the monotonic-clock suffix: `2026-12-03 01:53:07.123456789 +0000 UTC`; `None` is Go's zero
/// time.
pub fn go_time(t: Option<SystemTime>) -> String {
    let Some(t) = t else {
        return "0001-01-01 00:00:00 +0000 UTC".into();
    };
    let Ok(ts) = k8s_openapi::jiff::Timestamp::try_from(t) else {
        return "0001-01-01 00:00:00 +0000 UTC".into();
    };
    let mut out = ts.strftime("%Y-%m-%d %H:%M:%S").to_string();
    let nanos = ts.subsec_nanosecond();
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push_str(" +0000 UTC");
    out
}

#[cfg(test)]
mod tests;
