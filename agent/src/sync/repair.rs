//! Repairing rules someone else changed: every `--sync-period` each lane asks its dataplane to
//! compare the kernel with what it committed (`Dataplane::check`); drift is logged with what
//! differs, counted, and answered by a full sync of that lane (kube-proxy's e2e "should
//! recreate rules"). Without this, the API source's periodic resync (a diff against the
//! committed plan) would find nothing to do and tampered rules would wait for the hourly full
//! sync (DESIGN-NOTES 63).

use super::Syncer;

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
            // Only a lane whose kernel state is known: a committed plan (whole-plan syncs) or
            // an incremental planner's plan (`tracking`).
            if lane.committed.is_none() && !lane.tracking {
                continue;
            }
            let (mode, family) = (lane.dataplane.mode(), lane.dataplane.family());
            match lane.dataplane.check().await {
                Ok(None) => {}
                Ok(Some(drift)) => {
                    self.repair.checks += 1;
                    if !drift.is_empty() {
                        self.repair.detected += 1;
                        tracing::warn!(
                            %mode,
                            %family,
                            differences = drift.findings.len(),
                            "rules changed behind our back: {drift}; repairing with a full sync"
                        );
                        lane.committed = None;
                        lane.tracking = false;
                        lane.repairing = true;
                    }
                }
                Err(e) => {
                    self.repair.check_errors += 1;
                    tracing::warn!(%mode, %family, "checking the kernel's rules failed: {e}");
                }
            }
        }
    }

    /// The drift counters so far.
    pub fn repair_stats(&self) -> RepairStats {
        self.repair
    }
}
