//! Syncing plans kept by incremental planners (`core::Planner`): the planner says what changed,
//! so a sync neither diffs the cluster nor keeps a copy of the plan. The rules of
//! [`Syncer::sync`] hold unchanged: the first sync and any sync after a failure or
//! [`Syncer::force_full`] is full; a rejected service port is quarantined and the rest applied
//! at once; quarantined ports stay out until the next forced full sync.

use super::{Lane, SyncOutcome, Syncer, MAX_ISOLATED_PER_SYNC};
use std::borrow::Cow;
use switchyard_core::{ApplyStats, Changes, DataplaneError, PlanUpdate, ProxyPlan};

impl Syncer {
    /// Applies each planner's plan to the lane of its family. `update` must be everything the
    /// planner changed since the previous call for that plan (its [`PlanUpdate`]): a lane whose
    /// last sync succeeded receives only those service ports.
    pub async fn sync_planned(&mut self, plans: &[(&ProxyPlan, &PlanUpdate)]) -> SyncOutcome {
        let mut outcome = SyncOutcome::default();
        for &(plan, update) in plans {
            let Some(lane) = self
                .lanes
                .iter_mut()
                .find(|l| l.dataplane.family() == plan.family)
            else {
                continue;
            };
            if update.warnings_changed || !lane.tracking {
                lane.log_warnings(plan);
            }
            sync_lane(lane, plan, &update.changes, &mut outcome).await;
        }
        if outcome.errors.is_empty() {
            self.failures_in_a_row = 0;
        } else {
            self.failures_in_a_row += 1;
        }
        outcome
    }
}

async fn sync_lane(lane: &mut Lane, plan: &ProxyPlan, changes: &Changes, out: &mut SyncOutcome) {
    let mut isolated = 0;
    loop {
        let incremental = lane.tracking && !changes.requires_full_sync();
        let changes = without_quarantined(changes, lane);
        if incremental && changes.is_empty() {
            return;
        }
        // Rare (a port the kernel rejected, until the next forced full sync): backends may
        // read the whole plan even in a partial sync (iptables' dispatch leaves and sets), so
        // they get a copy without the quarantined ports.
        let kept = if lane.quarantined.is_empty() {
            Cow::Borrowed(plan)
        } else {
            let mut kept = plan.clone();
            kept.services
                .retain(|name, _| !lane.quarantined.contains_key(name));
            Cow::Owned(kept)
        };
        let result = lane
            .dataplane
            .apply(&kept, incremental.then_some(&*changes))
            .await;
        match result {
            Ok(stats) => {
                log_synced(lane, &kept, stats, out);
                lane.tracking = true;
                return;
            }
            Err(e) => {
                lane.tracking = false;
                lane.committed = None;
                if !quarantine(lane, plan, &e, &mut isolated, out) {
                    tracing::error!(mode = %lane.dataplane.mode(), family = %plan.family, "sync failed: {e}; the next sync will be full");
                    out.errors.push(e);
                    return;
                }
            }
        }
    }
}

/// The changes less the quarantined ports: the kernel holds none of them, and their plans
/// wait for the next forced full sync.
fn without_quarantined<'a>(changes: &'a Changes, lane: &Lane) -> Cow<'a, Changes> {
    if lane.quarantined.is_empty() {
        return Cow::Borrowed(changes);
    }
    let mut kept = changes.clone();
    for set in [&mut kept.added, &mut kept.updated, &mut kept.removed] {
        set.retain(|name| !lane.quarantined.contains_key(name));
    }
    Cow::Owned(kept)
}

fn log_synced(lane: &Lane, plan: &ProxyPlan, mut stats: ApplyStats, out: &mut SyncOutcome) {
    stats.quarantined = lane.quarantined.len();
    tracing::info!(
        mode = %lane.dataplane.mode(),
        family = %plan.family,
        full = stats.full,
        service_ports = plan.services.len(),
        written = stats.service_ports_written,
        operations = stats.operations,
        kernel_ms = stats.kernel_time.as_secs_f64() * 1000.0,
        quarantined = stats.quarantined,
        "synced"
    );
    out.applied.push(stats);
}

/// Quarantines the service port the kernel named, if any and if this sync may isolate one
/// more; returns whether it did (then the rest is applied again, in full).
fn quarantine(
    lane: &mut Lane,
    plan: &ProxyPlan,
    e: &DataplaneError,
    isolated: &mut usize,
    out: &mut SyncOutcome,
) -> bool {
    let culprit = e
        .service_port()
        .and_then(|s| plan.services.keys().find(|k| k.to_string() == s))
        .filter(|name| !lane.quarantined.contains_key(*name))
        .cloned();
    match culprit {
        Some(name) if *isolated < MAX_ISOLATED_PER_SYNC => {
            *isolated += 1;
            tracing::error!(
                mode = %lane.dataplane.mode(),
                family = %plan.family,
                service_port = %name,
                "the kernel rejected this service port's rules: {e}; \
                 left out until the next full resync, applying the rest"
            );
            lane.quarantined.insert(name, e.to_string());
            out.quarantined += 1;
            true
        }
        _ => false,
    }
}
