//! Object changes seen by the watchers since the last plan (kube-proxy's change trackers),
//! for `kubeproxy_sync_proxy_rules_{service,endpoint}_changes_{total,pending}` and the
//! network programming latency.
//!
//! Counted: watch events after the initial lists (adds, updates, deletes). Not counted: the
//! objects of an initial list or a relist, which are the state rather than a change of it.

use crate::metrics::SourceMetrics;
use k8s_openapi::api::discovery::v1 as discovery_v1;
use std::collections::BTreeSet;
use std::time::SystemTime;
use switchyard_core::model::{ObjectRef, LABEL_SERVICE_NAME};
use switchyard_core::IpFamily;

/// The EndpointSlice controller's stamp of when the change behind a slice update happened.
pub const LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// Changes not yet planned.
#[derive(Debug, Default)]
pub struct Pending {
    services: BTreeSet<ObjectRef>,
    /// By Service (kube-proxy counts pending endpoint changes per Service).
    endpoints: BTreeSet<ObjectRef>,
    /// Trigger times of slice changes, per family, no older than the agent's start.
    triggers: Vec<(IpFamily, SystemTime)>,
}

impl Pending {
    pub fn service(&mut self, svc: ObjectRef, metrics: &SourceMetrics) {
        self.services.insert(svc);
        metrics.service_changes_total.inc();
        metrics
            .service_changes_pending
            .set(self.services.len() as i64);
    }

    pub fn slice(
        &mut self,
        slice: &discovery_v1::EndpointSlice,
        namespace: &str,
        started: SystemTime,
        metrics: &SourceMetrics,
    ) {
        let labels = slice.metadata.labels.as_ref();
        let Some(service) = labels.and_then(|l| l.get(LABEL_SERVICE_NAME)) else {
            return;
        };
        self.endpoints
            .insert(ObjectRef::new(namespace, service.clone()));
        metrics.endpoint_changes_total.inc();
        metrics
            .endpoint_changes_pending
            .set(self.endpoints.len() as i64);
        let family = match slice.address_type.as_str() {
            "IPv4" => IpFamily::V4,
            "IPv6" => IpFamily::V6,
            _ => return,
        };
        if let Some(t) = trigger_time(slice) {
            // As kube-proxy: a change from before this agent started says nothing about how
            // fast this agent programs.
            if t >= started {
                self.triggers.push((family, t));
            }
        }
    }

    /// Ends the pending period (a plan is being made): returns the trigger times and zeroes
    /// the pending gauges.
    pub fn take(&mut self, metrics: &SourceMetrics) -> Vec<(IpFamily, SystemTime)> {
        self.services.clear();
        self.endpoints.clear();
        metrics.service_changes_pending.set(0);
        metrics.endpoint_changes_pending.set(0);
        std::mem::take(&mut self.triggers)
    }
}

/// The slice's trigger-time annotation, when present and well-formed (RFC 3339).
fn trigger_time(slice: &discovery_v1::EndpointSlice) -> Option<SystemTime> {
    let raw = slice
        .metadata
        .annotations
        .as_ref()?
        .get(LAST_CHANGE_TRIGGER_TIME)?;
    match raw.parse::<k8s_openapi::jiff::Timestamp>() {
        Ok(ts) => Some(SystemTime::from(ts)),
        Err(e) => {
            tracing::debug!(annotation = %raw, "unparsable {LAST_CHANGE_TRIGGER_TIME}: {e}");
            None
        }
    }
}
