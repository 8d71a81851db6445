//! `/metrics` on `--metrics-bind-address`: kube-proxy's metric names, types, buckets and
//! labels (`pkg/proxy/metrics`), so dashboards and alerts keep working, plus Switchyard's own
//! under `switchyard_`. Everything is recorded by the sync loop and the sources through the
//! methods here; the exposition is prometheus-client's text format (OpenMetrics).
//!
//! Differences from kube-proxy, on purpose: the full/partial sync histograms exist in every
//! mode (kube-proxy has them only in iptables mode; every Switchyard mode syncs both ways),
//! and a sync's duration covers planning (shared by the families) plus that family's diff
//! and apply.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, linear_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use switchyard_core::warning::Skipped;
use switchyard_core::{ApplyStats, IpFamily, ProxyPlan};

mod labels;
mod text;

pub use labels::CodeCounters;
use labels::{ByFamily, ByPolicy, BySkipped, Info};

type FamilyLabel = Family<ByFamily, Histogram, fn() -> Histogram>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// What the API source counts as objects change (kube-proxy's change trackers). Cloned into
/// the source; unregistered (and so invisible) until [`Metrics::new`] registers them.
#[derive(Debug, Clone, Default)]
pub struct SourceMetrics {
    pub service_changes_total: Counter,
    pub service_changes_pending: Gauge,
    pub endpoint_changes_total: Counter,
    pub endpoint_changes_pending: Gauge,
}

/// Conntrack cleanup counts for one family and one sync, recorded with
/// [`Metrics::record_conntrack_cleanup`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConntrackCleanup {
    /// Flows deleted.
    pub deleted: u64,
    /// Deletions the kernel refused (other than "already gone").
    pub failed: u64,
    /// How long the cleanup took.
    pub duration: Duration,
}

/// Every metric the agent exports, and the registry that prints them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub healthz_total: CodeCounters,
    pub livez_total: CodeCounters,
    pub source: SourceMetrics,
    sync_duration: FamilyLabel,
    sync_full_duration: FamilyLabel,
    sync_partial_duration: FamilyLabel,
    last_timestamp: Family<ByFamily, FloatGauge>,
    last_queued_timestamp: Family<ByFamily, FloatGauge>,
    network_programming: FamilyLabel,
    no_local_endpoints: Family<ByPolicy, Gauge>,
    /// `iptables_restore_failures_total` or `nftables_sync_failures_total`, by mode.
    mode_failures: Option<Family<ByFamily, Counter>>,
    sync_failures: Family<ByFamily, Counter>,
    kernel_duration: FamilyLabel,
    operations: Family<ByFamily, Counter>,
    service_ports_written: Family<ByFamily, Counter>,
    service_ports: Family<ByFamily, Gauge>,
    skipped: Family<BySkipped, Gauge>,
    quarantined: Family<ByFamily, Gauge>,
    conntrack_deleted: Family<ByFamily, Counter>,
    conntrack_failed: Family<ByFamily, Counter>,
    conntrack_duration: FamilyLabel,
    /// Periodic checks that found our rules changed behind our back, and the full syncs that
    /// repaired them (`Syncer::repair_stats`, cumulative).
    drift_detected: Counter,
    drift_repaired: Counter,
}

/// kube-proxy's sync buckets: 1 ms doubling, 15 buckets.
fn sync_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// kube-proxy's network programming buckets: 0.25 s, 0.5 s, 1-59 s, 60-115 s by 5, 2-5 min by 30 s.
fn programming_histogram() -> Histogram {
    Histogram::new(
        linear_buckets(0.25, 0.25, 2)
            .chain(linear_buckets(1.0, 1.0, 59))
            .chain(linear_buckets(60.0, 5.0, 12))
            .chain(linear_buckets(120.0, 30.0, 7)),
    )
}

/// Kernel time per sync: 10 µs doubling to ~5 s (an incremental nftables sync is ~0.1 ms).
fn kernel_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.00001, 2.0, 20))
}

impl Metrics {
    /// Registers every metric; `mode` picks kube-proxy's per-mode failure counter.
    pub fn new(mode: &str) -> Self {
        let mut r = Registry::default();
        let hist = |f: fn() -> Histogram| FamilyLabel::new_with_constructor(f);
        let m = Self {
            healthz_total: CodeCounters::default(),
            livez_total: CodeCounters::default(),
            source: SourceMetrics::default(),
            sync_duration: hist(sync_histogram),
            sync_full_duration: hist(sync_histogram),
            sync_partial_duration: hist(sync_histogram),
            last_timestamp: Family::default(),
            last_queued_timestamp: Family::default(),
            network_programming: hist(programming_histogram),
            no_local_endpoints: Family::default(),
            mode_failures: match mode {
                "iptables" | "nftables" => Some(Family::default()),
                _ => None,
            },
            sync_failures: Family::default(),
            kernel_duration: hist(kernel_histogram),
            operations: Family::default(),
            service_ports_written: Family::default(),
            service_ports: Family::default(),
            skipped: Family::default(),
            quarantined: Family::default(),
            conntrack_deleted: Family::default(),
            conntrack_failed: Family::default(),
            conntrack_duration: hist(sync_histogram),
            drift_detected: Counter::default(),
            drift_repaired: Counter::default(),
            registry: Registry::default(),
        };
        let kp = r.sub_registry_with_prefix("kubeproxy");
        kp.register(
            "sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds",
            m.sync_duration.clone(),
        );
        kp.register(
            "sync_full_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for full resyncs",
            m.sync_full_duration.clone(),
        );
        kp.register(
            "sync_partial_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for partial resyncs",
            m.sync_partial_duration.clone(),
        );
        kp.register(
            "sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced",
            m.last_timestamp.clone(),
        );
        kp.register(
            "sync_proxy_rules_last_queued_timestamp_seconds",
            "The last time a sync of proxy rules was queued",
            m.last_queued_timestamp.clone(),
        );
        kp.register(
            "network_programming_duration_seconds",
            "In Cluster Network Programming Latency in seconds",
            m.network_programming.clone(),
        );
        kp.register(
            "sync_proxy_rules_endpoint_changes_pending",
            "Pending proxy rules Endpoint changes",
            m.source.endpoint_changes_pending.clone(),
        );
        // Counters are registered without `_total`: the encoder appends it.
        kp.register(
            "sync_proxy_rules_endpoint_changes",
            "Cumulative proxy rules Endpoint changes",
            m.source.endpoint_changes_total.clone(),
        );
        kp.register(
            "sync_proxy_rules_service_changes_pending",
            "Pending proxy rules Service changes",
            m.source.service_changes_pending.clone(),
        );
        kp.register(
            "sync_proxy_rules_service_changes",
            "Cumulative proxy rules Service changes",
            m.source.service_changes_total.clone(),
        );
        // A gauge despite its name, as in kube-proxy.
        kp.register(
            "sync_proxy_rules_no_local_endpoints_total",
            "Number of services with a Local traffic policy and no endpoints",
            m.no_local_endpoints.clone(),
        );
        kp.register(
            "proxy_healthz",
            "Cumulative proxy healthz HTTP status",
            m.healthz_total.0.clone(),
        );
        kp.register(
            "proxy_livez",
            "Cumulative proxy livez HTTP status",
            m.livez_total.0.clone(),
        );
        match (mode, &m.mode_failures) {
            ("iptables", Some(f)) => kp.register(
                "sync_proxy_rules_iptables_restore_failures",
                "Cumulative proxy iptables restore failures",
                f.clone(),
            ),
            ("nftables", Some(f)) => kp.register(
                "sync_proxy_rules_nftables_sync_failures",
                "Cumulative proxy nftables sync failures",
                f.clone(),
            ),
            _ => {}
        }
        kp.register(
            "conntrack_reconciler_deleted_entries",
            "Cumulative conntrack flows deleted by conntrack reconciler",
            m.conntrack_deleted.clone(),
        );
        kp.register(
            "conntrack_reconciler_sync_duration_seconds",
            "ReconcileConntrackFlowsLatency latency in seconds",
            m.conntrack_duration.clone(),
        );

        let sy = r.sub_registry_with_prefix("switchyard");
        let info: Family<Info, Gauge> = Family::default();
        info.get_or_create(&Info {
            mode: mode.to_string(),
            version: env!("CARGO_PKG_VERSION"),
        })
        .set(1);
        sy.register(
            "build_info",
            "The running dataplane mode and version (always 1)",
            info,
        );
        sy.register(
            "sync_failures",
            "Syncs whose apply failed, in every mode",
            m.sync_failures.clone(),
        );
        sy.register(
            "sync_kernel_duration_seconds",
            "Time spent talking to the kernel per sync",
            m.kernel_duration.clone(),
        );
        sy.register(
            "sync_operations",
            "Kernel operations sent (netlink messages, restore lines, genl calls)",
            m.operations.clone(),
        );
        sy.register(
            "sync_service_ports_written",
            "Service ports whose kernel objects were written or removed",
            m.service_ports_written.clone(),
        );
        sy.register(
            "service_ports",
            "Service ports in the last plan",
            m.service_ports.clone(),
        );
        sy.register(
            "skipped_objects",
            "Malformed values left out of the last plan, by object kind and what they cost",
            m.skipped.clone(),
        );
        sy.register(
            "rules_drift_detected",
            "Periodic checks that found Switchyard's kernel rules changed by someone else",
            m.drift_detected.clone(),
        );
        sy.register(
            "rules_drift_repaired",
            "Full syncs that repaired rules changed by someone else",
            m.drift_repaired.clone(),
        );
        sy.register(
            "quarantined_service_ports",
            "Service ports left out because the kernel rejected their rules",
            m.quarantined.clone(),
        );
        sy.register(
            "conntrack_cleanup_failures",
            "Conntrack flow deletions that failed",
            m.conntrack_failed.clone(),
        );
        Self { registry: r, ..m }
    }

    /// The exposition, in Prometheus' text format 0.0.4 (what kube-proxy serves).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!("encoding metrics: {e}");
        }
        text::openmetrics_to_text(&out)
    }

    /// A sync was queued for these families (a watched object changed).
    pub fn queued(&self, families: &[IpFamily], now: SystemTime) {
        for f in families {
            self.last_queued_timestamp
                .get_or_create(&ByFamily::of(*f))
                .set(unix_seconds(now));
        }
    }

    /// One family's sync: `elapsed` covers planning and this family's apply; `stats` is
    /// `None` when nothing differed from the committed plan; `failed` when the apply failed.
    pub fn synced(
        &self,
        family: IpFamily,
        elapsed: Duration,
        stats: Option<&ApplyStats>,
        failed: bool,
    ) {
        let label = ByFamily::of(family);
        let secs = elapsed.as_secs_f64();
        self.sync_duration.get_or_create(&label).observe(secs);
        let full = stats.is_some_and(|s| s.full);
        let by_kind = if full {
            &self.sync_full_duration
        } else {
            &self.sync_partial_duration
        };
        by_kind.get_or_create(&label).observe(secs);
        if failed {
            self.sync_failures.get_or_create(&label).inc();
            if let Some(f) = &self.mode_failures {
                f.get_or_create(&label).inc();
            }
            return;
        }
        self.last_timestamp
            .get_or_create(&label)
            .set(unix_seconds(SystemTime::now()));
        if let Some(s) = stats {
            self.kernel_duration
                .get_or_create(&label)
                .observe(s.kernel_time.as_secs_f64());
            self.operations
                .get_or_create(&label)
                .inc_by(s.operations as u64);
            self.service_ports_written
                .get_or_create(&label)
                .inc_by(s.service_ports_written as u64);
        }
    }

    /// What the plans say: sizes, Local-policy gaps, skipped values.
    pub fn planned(&self, plans: &[&ProxyPlan]) {
        self.skipped.clear();
        for plan in plans {
            let label = ByFamily::of(plan.family);
            self.service_ports
                .get_or_create(&label)
                .set(plan.services.len() as i64);
            let gaps = plan.no_local_endpoints();
            for (policy, n) in [("internal", gaps.internal), ("external", gaps.external)] {
                self.no_local_endpoints
                    .get_or_create(&ByPolicy {
                        ip_family: label.ip_family.clone(),
                        traffic_policy: policy,
                    })
                    .set(n as i64);
            }
            for w in &plan.warnings {
                self.skipped
                    .get_or_create(&BySkipped {
                        ip_family: label.ip_family.clone(),
                        kind: format!("{:?}", w.kind),
                        skipped: skipped_name(w.skipped),
                    })
                    .inc();
            }
        }
    }

    /// The syncer's cumulative drift checks and repairs (`Syncer::repair_stats`).
    pub fn repairs(&self, stats: crate::sync::RepairStats) {
        self.drift_detected
            .inc_by(stats.detected.saturating_sub(self.drift_detected.get()));
        self.drift_repaired
            .inc_by(stats.repaired.saturating_sub(self.drift_repaired.get()));
    }

    /// How many service ports `family`'s lane leaves out after the kernel rejected them.
    pub fn quarantined(&self, family: IpFamily, n: usize) {
        self.quarantined
            .get_or_create(&ByFamily::of(family))
            .set(n as i64);
    }

    /// The network programming latency of changes that reached the kernel: `now` minus each
    /// EndpointSlice's `endpoints.kubernetes.io/last-change-trigger-time`.
    pub fn programmed(&self, family: IpFamily, triggers: &[SystemTime], now: SystemTime) {
        let h = self
            .network_programming
            .get_or_create(&ByFamily::of(family));
        for t in triggers {
            h.observe(now.duration_since(*t).unwrap_or_default().as_secs_f64());
        }
    }

    /// Records one conntrack cleanup of `family` (called by the conntrack cleaner after each
    /// sync that cleared flows): deleted flows feed kube-proxy's
    /// `kubeproxy_conntrack_reconciler_deleted_entries_total`, failures
    /// `switchyard_conntrack_cleanup_failures_total`, the duration
    /// `kubeproxy_conntrack_reconciler_sync_duration_seconds`.
    pub fn record_conntrack_cleanup(&self, family: IpFamily, cleanup: ConntrackCleanup) {
        let label = ByFamily::of(family);
        self.conntrack_deleted
            .get_or_create(&label)
            .inc_by(cleanup.deleted);
        self.conntrack_failed
            .get_or_create(&label)
            .inc_by(cleanup.failed);
        self.conntrack_duration
            .get_or_create(&label)
            .observe(cleanup.duration.as_secs_f64());
    }

    /// The metrics server's handler: `/metrics`, `/healthz` (a liveness ping of this server,
    /// as kube-proxy's) and `/proxyMode`.
    pub fn handler(self: &Arc<Self>, mode: &'static str) -> crate::http::Handler {
        let metrics = self.clone();
        Arc::new(move |path| match path {
            "/metrics" => crate::http::Reply {
                status: hyper::StatusCode::OK,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: metrics.encode(),
            },
            "/healthz" => crate::http::Reply::text(hyper::StatusCode::OK, "ok"),
            "/proxyMode" => crate::http::Reply::text(hyper::StatusCode::OK, mode),
            _ => crate::http::Reply::not_found(),
        })
    }
}

fn skipped_name(s: Skipped) -> &'static str {
    match s {
        Skipped::Object => "object",
        Skipped::Port => "port",
        Skipped::Address => "address",
        Skipped::Nothing => "nothing",
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

#[cfg(test)]
mod tests;
