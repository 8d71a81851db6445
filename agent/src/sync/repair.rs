//! Repairing rules someone else changed: every `--sync-period` each lane asks its dataplane to
//! compare the kernel with what it committed (`Dataplane::check`); drift is logged with what
//! differs, counted, and answered by a full sync of that lane (kube-proxy's e2e "should
//! recreate rules"). Without this, the API source's periodic resync (a diff against the
//! committed plan) would find nothing to do and tampered rules would wait for the hourly full
//! sync (DESIGN-NOTES 63). A forced full sync (offline every period, with the API source at
//! most hourly) checks first as well: it rewrites everything, so it would otherwise repair
//! tampering without a log line or a metric (DESIGN-NOTES 286).

use super::{Lane, Syncer};

/// Counters of the drift checks, for logs and metrics (monotonic since the agent started).
/// Suggested metric names: `switchyard_drift_checks_total`, `switchyard_drift_detected_total`,
/// `switchyard_drift_repaired_total`, `switchyard_drift_check_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RepairStats {
    /// Checks that compared the kernel with the committed state (one per lane and period).
    pub checks: u64,
    /// Checks that found our objects changed behind our back.
    pub detected: u64,
    /// Full syncs that succeeded after drift was detected.
    pub repaired: u64,
    /// Checks that could not read the kernel (logged; the rules are left as they are).
    pub check_errors: u64,
}

impl Syncer {
    /// Checks every lane that has committed something; a lane with drift forgets its committed
    /// plan, so its next sync is full and rewrites everything it owns.
    pub async fn check(&mut self) {
        for lane in &mut self.lanes {
            lane.check_drift(&mut self.repair).await;
        }
    }

    /// The drift counters so far.
    pub fn repair_stats(&self) -> RepairStats {
        self.repair
    }
}

impl Lane {
    /// Compares the kernel with what this lane committed; on drift, logs it, counts it and
    /// forgets the committed state, so the next sync is full and counts as the repair.
    async fn check_drift(&mut self, stats: &mut RepairStats) {
        // Only a lane whose kernel state is known: a committed plan (whole-plan syncs) or an
        // incremental planner's plan (`tracking`).
        if self.committed.is_none() && !self.tracking {
            return;
        }
        let (mode, family) = (self.dataplane.mode(), self.dataplane.family());
        match self.dataplane.check().await {
            Ok(None) => {}
            Ok(Some(drift)) => {
                stats.checks += 1;
                if !drift.is_empty() {
                    stats.detected += 1;
                    tracing::warn!(
                        %mode,
                        %family,
                        differences = drift.findings.len(),
                        "rules changed behind our back: {drift}; repairing with a full sync"
                    );
                    self.committed = None;
                    self.tracking = false;
                    self.repairing = true;
                }
            }
            Err(e) => {
                stats.check_errors += 1;
                tracing::warn!(%mode, %family, "checking the kernel's rules failed: {e}");
            }
        }
    }

    /// Starts a forced full sync, if one is due: checks for drift first (a full sync repairs
    /// everything it finds, and a repair must be logged and counted, not silent), then forgets
    /// what was committed so the sync that follows is full.
    pub(super) async fn start_forced_full(&mut self, stats: &mut RepairStats) {
        if !std::mem::take(&mut self.full_due) {
            return;
        }
        self.check_drift(stats).await;
        self.committed = None;
        self.tracking = false;
    }
}
