//! Applying plans to dataplanes, one lane per family, remembering what each committed.
//!
//! The rules of DESIGN §3 live here once for every mode: the first sync is full; later syncs
//! pass the diff against the last *committed* plan; a failed apply forgets the committed plan
//! so the next sync is full; an unchanged plan costs nothing.

use std::collections::BTreeSet;
use std::time::Duration;
use switchyard_core::{diff, ApplyStats, Dataplane, DataplaneError, ProxyPlan};

/// One family's dataplane and what it last committed.
struct Lane {
    dataplane: Box<dyn Dataplane>,
    committed: Option<ProxyPlan>,
    /// Warnings already logged, so each is logged once, when it first appears.
    logged_warnings: BTreeSet<String>,
}

/// Drives one dataplane per family.
pub struct Syncer {
    lanes: Vec<Lane>,
    failures_in_a_row: u32,
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lanes: Vec<String> = self
            .lanes
            .iter()
            .map(|l| format!("{}/{}", l.dataplane.mode(), l.dataplane.family()))
            .collect();
        f.debug_struct("Syncer")
            .field("lanes", &lanes)
            .field("failures_in_a_row", &self.failures_in_a_row)
            .finish()
    }
}

/// What one `sync` did.
#[derive(Debug, Default)]
pub struct SyncOutcome {
    pub applied: Vec<ApplyStats>,
    pub errors: Vec<DataplaneError>,
}

impl Syncer {
    pub fn new(dataplanes: Vec<Box<dyn Dataplane>>) -> Self {
        Self {
            lanes: dataplanes
                .into_iter()
                .map(|dataplane| Lane {
                    dataplane,
                    committed: None,
                    logged_warnings: BTreeSet::new(),
                })
                .collect(),
            failures_in_a_row: 0,
        }
    }

    /// Checks every dataplane's kernel support.
    pub async fn probe(&mut self) -> Result<(), DataplaneError> {
        for lane in &mut self.lanes {
            lane.dataplane.probe().await?;
        }
        Ok(())
    }

    /// Makes the next sync full (the periodic resync that repairs tampered rules).
    pub fn force_full(&mut self) {
        for lane in &mut self.lanes {
            lane.committed = None;
        }
    }

    /// Applies each plan to the lane of its family. Plans of families without a lane are ignored.
    pub async fn sync(&mut self, plans: Vec<ProxyPlan>) -> SyncOutcome {
        let mut outcome = SyncOutcome::default();
        for plan in plans {
            let Some(lane) = self
                .lanes
                .iter_mut()
                .find(|l| l.dataplane.family() == plan.family)
            else {
                continue;
            };
            for w in &plan.warnings {
                if lane.logged_warnings.insert(w.to_string()) {
                    tracing::warn!(family = %plan.family, "{w}");
                }
            }
            lane.logged_warnings
                .retain(|w| plan.warnings.iter().any(|p| p.to_string() == *w));

            let changes = lane.committed.as_ref().map(|old| diff(old, &plan));
            if changes.as_ref().is_some_and(|c| c.is_empty()) {
                continue;
            }
            let incremental = changes.as_ref().filter(|c| !c.requires_full_sync());
            match lane.dataplane.apply(&plan, incremental).await {
                Ok(stats) => {
                    tracing::info!(
                        mode = %lane.dataplane.mode(),
                        family = %plan.family,
                        full = stats.full,
                        service_ports = plan.services.len(),
                        written = stats.service_ports_written,
                        operations = stats.operations,
                        kernel_ms = stats.kernel_time.as_secs_f64() * 1000.0,
                        "synced"
                    );
                    lane.committed = Some(plan);
                    outcome.applied.push(stats);
                }
                Err(e) => {
                    tracing::error!(mode = %lane.dataplane.mode(), family = %plan.family, "sync failed: {e}; the next sync will be full");
                    lane.committed = None;
                    outcome.errors.push(e);
                }
            }
        }
        if outcome.errors.is_empty() {
            self.failures_in_a_row = 0;
        } else {
            self.failures_in_a_row += 1;
        }
        outcome
    }

    /// How long to wait before retrying after failures: 1 s doubling to at most 2 minutes.
    pub fn retry_backoff(&self) -> Option<Duration> {
        (self.failures_in_a_row > 0).then(|| {
            let exp = self.failures_in_a_row.saturating_sub(1).min(7);
            Duration::from_secs(1u64 << exp)
        })
    }

    /// What each lane would do for these plans (a full sync), as text.
    pub fn render(&self, plans: &[ProxyPlan]) -> String {
        let mut out = String::new();
        for plan in plans {
            if let Some(lane) = self
                .lanes
                .iter()
                .find(|l| l.dataplane.family() == plan.family)
            {
                out.push_str(&lane.dataplane.render(plan, None));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
