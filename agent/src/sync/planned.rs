//! Syncing plans kept by incremental planners (`core::Planner`): the planner says what changed,
//! so a sync neither diffs the cluster nor keeps a copy of the plan. The rules of
//! [`Syncer::sync`] hold unchanged: the first sync and any sync after a failure or
//! [`Syncer::force_full`] is full; a rejected service port is quarantined and the rest applied
//! at once; quarantined ports stay out until the next forced full sync.

use super::{log_synced, quarantine, Lane, LaneOutcome, SyncOutcome, Syncer};
use std::borrow::Cow;
use std::time::{Duration, Instant};
use switchyard_core::{Changes, PlanUpdate, ProxyPlan};

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
            lane.start_forced_full(&mut self.repair).await;
            if update.warnings_changed || !lane.tracking {
                lane.log_warnings(plan);
            }
            let started = Instant::now();
            let mut lane_outcome = LaneOutcome {
                family: plan.family,
                elapsed: Duration::ZERO,
                stats: None,
                failed: false,
                quarantined: 0,
            };
            let was_tracking = lane.tracking;
            sync_lane(lane, plan, &update.changes, &mut outcome, &mut lane_outcome).await;
            if !lane_outcome.failed {
                clean_conntrack(lane, plan, update, was_tracking, &mut outcome);
                if lane.tracking && lane.take_repaired() {
                    self.repair.repaired += 1;
                }
            }
            lane_outcome.elapsed = started.elapsed();
            lane_outcome.quarantined = lane.quarantined.len();
            outcome.lanes.push(lane_outcome);
        }
        if outcome.errors.is_empty() {
            self.failures_in_a_row = 0;
        } else {
            self.failures_in_a_row += 1;
        }
        outcome
    }
}

/// The conntrack cleanup after a committed sync (DESIGN-NOTES 140-149): of the ports the
/// planner changed, against their previous plans, when the kernel held the planner's earlier
/// plan; of every UDP/SCTP port otherwise (first sync, after a failure). A sync with nothing
/// to commit still runs the rules an earlier cleanup carried.
fn clean_conntrack(
    lane: &mut Lane,
    plan: &ProxyPlan,
    update: &PlanUpdate,
    was_tracking: bool,
    out: &mut SyncOutcome,
) {
    let Some(ct) = lane.conntrack.as_mut() else {
        return;
    };
    if update.changes.is_empty() && was_tracking && ct.carried().is_empty() {
        return;
    }
    let previous = was_tracking.then(|| ProxyPlan {
        family: plan.family,
        node_name: plan.node_name.clone(),
        node_ips: Vec::new(),
        node_port_addresses: plan.node_port_addresses.clone(),
        cluster_masquerade: plan.cluster_masquerade.clone(),
        pod_sources: plan.pod_sources.clone(),
        service_cidrs: Vec::new(),
        services: update.previous.clone(),
        warnings: Vec::new(),
    });
    let changes = was_tracking.then_some(&update.changes);
    out.conntrack
        .push(ct.after_commit(previous.as_ref(), changes, plan));
}

async fn sync_lane(
    lane: &mut Lane,
    plan: &ProxyPlan,
    changes: &Changes,
    out: &mut SyncOutcome,
    lane_out: &mut LaneOutcome,
) {
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
                lane_out.stats = Some(log_synced(lane, &kept, stats, out));

                lane.tracking = true;
                return;
            }
            Err(e) => {
                lane.tracking = false;
                lane.committed = None;
                if !quarantine(lane, plan, &e, &mut isolated, out) {
                    tracing::error!(mode = %lane.dataplane.mode(), family = %plan.family, "sync failed: {e}; the next sync will be full");
                    out.errors.push(e);
                    lane_out.failed = true;
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
