//! Applying plans to dataplanes, one lane per family, remembering what each committed.
//!
//! The rules of DESIGN §3 live here once for every mode: the first sync is full; later syncs
//! pass the diff against the last *committed* plan; a failed apply forgets the committed plan
//! so the next sync is full; an unchanged plan costs nothing.
//!
//! **One object never costs the node its rules.** When the kernel rejects a transaction and
//! the backend names the service port whose objects it refused, that port is quarantined: left
//! out, and the rest applied again at once (up to [`MAX_ISOLATED_PER_SYNC`] ports a sync).
//! Quarantined ports are logged by name, counted in `ApplyStats::quarantined`, and retried at
//! the next forced full sync (the periodic resync), where a still-broken one is isolated again.
//! A rejection that names no service port is retried with backoff as before (bisecting by
//! committing subsets would remove other Services' rules from the kernel in between).

use crate::conntrack::{Cleaner, ConntrackStats};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use switchyard_core::{
    diff, ApplyStats, Dataplane, DataplaneError, IpFamily, ProxyPlan, ServicePortName,
};

/// How many service ports one sync may isolate before it gives up and retries with backoff.
pub const MAX_ISOLATED_PER_SYNC: usize = 16;

/// One family's dataplane and what it last committed.
struct Lane {
    dataplane: Box<dyn Dataplane>,
    committed: Option<ProxyPlan>,
    /// Warnings already logged, so each is logged once, when it first appears.
    logged_warnings: BTreeSet<String>,
    /// Service ports the kernel rejected, with why; left out of every plan until the next
    /// forced full sync.
    quarantined: BTreeMap<ServicePortName, String>,
    /// Conntrack cleanup after each commit ([`Syncer::with_conntrack`]); `None` in tests that
    /// must not touch the host's conntrack table.
    conntrack: Option<Cleaner>,
    /// The kernel holds the plan of an incremental planner as of the last successful
    /// [`Syncer::sync_planned`], so the planner's changes since then are all it lacks.
    tracking: bool,
    /// Drift was detected; the next successful (full) sync counts as its repair.
    repairing: bool,
    /// A forced full sync is due ([`Syncer::force_full`]). The lane keeps what it committed
    /// until that sync starts, which first checks for drift: a full sync rewrites everything,
    /// so without the check it would repair tampering silently (DESIGN-NOTES 286).
    full_due: bool,
}

impl Lane {
    /// Logs the plan's warnings that are new since the last call, and forgets the gone ones.
    fn log_warnings(&mut self, plan: &ProxyPlan) {
        for w in &plan.warnings {
            if self.logged_warnings.insert(w.to_string()) {
                tracing::warn!(family = %plan.family, "{w}");
            }
        }
        self.logged_warnings
            .retain(|w| plan.warnings.iter().any(|p| p.to_string() == *w));
    }
}

impl Lane {
    /// Ends a repair after a successful sync: whether drift had been detected (then logged).
    fn take_repaired(&mut self) -> bool {
        let repaired = std::mem::take(&mut self.repairing);
        if repaired {
            tracing::info!(mode = %self.dataplane.mode(), family = %self.dataplane.family(), "repaired: our rules are whole again");
        }
        repaired
    }

    fn new(dataplane: Box<dyn Dataplane>) -> Self {
        Self {
            dataplane,
            committed: None,
            logged_warnings: BTreeSet::new(),
            quarantined: BTreeMap::new(),
            conntrack: None,
            tracking: false,
            repairing: false,
            full_due: false,
        }
    }
}

/// Drives one dataplane per family.
pub struct Syncer {
    lanes: Vec<Lane>,
    failures_in_a_row: u32,
    /// Lanes clean conntrack after their commits ([`Syncer::with_conntrack`]), also lanes
    /// added later.
    conntrack: bool,
    repair: RepairStats,
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
    /// Service ports newly quarantined by this sync.
    pub quarantined: usize,
    /// The conntrack cleanup of each family that ran (after its commit).
    pub conntrack: Vec<ConntrackStats>,
    /// Per lane, for health and metrics.
    pub lanes: Vec<LaneOutcome>,
}

/// What one lane did in one sync.
#[derive(Debug, Clone)]
pub struct LaneOutcome {
    pub family: IpFamily,
    /// Diff and apply (retries after isolating a service port included).
    pub elapsed: Duration,
    /// The last successful apply's stats; `None` when nothing differed or the apply failed.
    pub stats: Option<ApplyStats>,
    /// The lane's rules are not in the planned state.
    pub failed: bool,
    /// Service ports this lane leaves out (quarantined).
    pub quarantined: usize,
}

impl Syncer {
    pub fn new(dataplanes: Vec<Box<dyn Dataplane>>) -> Self {
        Self {
            lanes: dataplanes.into_iter().map(Lane::new).collect(),
            conntrack: false,
            failures_in_a_row: 0,
            repair: RepairStats::default(),
        }
    }

    /// Cleans stale UDP/SCTP conntrack entries after every commit (DESIGN-NOTES 140-149), in
    /// the network namespace of the thread that syncs. Blocking, but bounded per sync
    /// (`conntrack::MAX_DELETES_PER_SYNC`).
    #[must_use]
    pub fn with_conntrack(mut self) -> Self {
        for lane in &mut self.lanes {
            lane.conntrack = Some(Cleaner::new(lane.dataplane.family()));
        }
        self.conntrack = true;
        self
    }

    /// The families this syncer has a lane for.
    pub fn families(&self) -> Vec<IpFamily> {
        self.lanes.iter().map(|l| l.dataplane.family()).collect()
    }

    /// Adds the lane of a family the node gained: its dataplane is probed first, and its first
    /// sync is full.
    pub async fn add_lane(
        &mut self,
        mut dataplane: Box<dyn Dataplane>,
    ) -> Result<(), DataplaneError> {
        dataplane.probe().await?;
        let mut lane = Lane::new(dataplane);
        if self.conntrack {
            lane.conntrack = Some(Cleaner::new(lane.dataplane.family()));
        }
        self.lanes.push(lane);
        Ok(())
    }

    /// Removes the lane of a family the node lost, and its rules. On failure the lane stays,
    /// so the removal is tried again.
    pub async fn remove_lane(&mut self, family: IpFamily) -> Result<(), DataplaneError> {
        if let Some(i) = self
            .lanes
            .iter()
            .position(|l| l.dataplane.family() == family)
        {
            self.lanes[i].dataplane.cleanup().await?;
            self.lanes.remove(i);
        }
        Ok(())
    }

    /// Checks every dataplane's kernel support.
    pub async fn probe(&mut self) -> Result<(), DataplaneError> {
        for lane in &mut self.lanes {
            lane.dataplane.probe().await?;
        }
        Ok(())
    }

    /// Makes the next sync full (the periodic resync that repairs tampered rules), and gives
    /// quarantined service ports another chance. That sync checks each lane for drift before
    /// it rewrites the lane's rules, so what it repairs is logged and counted.
    pub fn force_full(&mut self) {
        for lane in &mut self.lanes {
            lane.full_due = true;
            lane.quarantined.clear();
        }
    }

    /// The service ports currently left out because the kernel rejected them.
    pub fn quarantined(&self) -> Vec<ServicePortName> {
        self.lanes
            .iter()
            .flat_map(|l| l.quarantined.keys().cloned())
            .collect()
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
            lane.log_warnings(&plan);
            lane.start_forced_full(&mut self.repair).await;

            let mut plan = plan;
            let mut isolated = 0;
            let started = Instant::now();
            let mut lane_outcome = LaneOutcome {
                family: plan.family,
                elapsed: Duration::ZERO,
                stats: None,
                failed: false,
                quarantined: 0,
            };
            loop {
                plan.services
                    .retain(|name, _| !lane.quarantined.contains_key(name));
                let changes = lane.committed.as_ref().map(|old| diff(old, &plan));
                if changes.as_ref().is_some_and(|c| c.is_empty()) {
                    // Nothing to commit, but rules an earlier cleanup could not finish.
                    if let Some(ct) = lane.conntrack.as_mut().filter(|c| !c.carried().is_empty()) {
                        outcome.conntrack.push(ct.after_commit(
                            lane.committed.as_ref(),
                            changes.as_ref(),
                            &plan,
                        ));
                    }
                    break;
                }
                let incremental = changes.as_ref().filter(|c| !c.requires_full_sync());
                match lane.dataplane.apply(&plan, incremental).await {
                    Ok(stats) => {
                        let stats = log_synced(lane, &plan, stats, &mut outcome);
                        if let Some(ct) = &mut lane.conntrack {
                            outcome.conntrack.push(ct.after_commit(
                                lane.committed.as_ref(),
                                changes.as_ref(),
                                &plan,
                            ));
                        }
                        if lane.take_repaired() {
                            self.repair.repaired += 1;
                        }
                        lane.committed = Some(plan);
                        lane_outcome.stats = Some(stats);
                        break;
                    }
                    Err(e) => {
                        lane.committed = None;
                        if !quarantine(lane, &plan, &e, &mut isolated, &mut outcome) {
                            tracing::error!(mode = %lane.dataplane.mode(), family = %plan.family, "sync failed: {e}; the next sync will be full");
                            outcome.errors.push(e);
                            lane_outcome.failed = true;
                            break;
                        }
                    }
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

/// Logs a successful apply and records its stats (both sync paths).
fn log_synced(
    lane: &Lane,
    plan: &ProxyPlan,
    mut stats: ApplyStats,
    out: &mut SyncOutcome,
) -> ApplyStats {
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
    stats
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

mod planned;
mod repair;
pub use repair::RepairStats;

#[cfg(test)]
mod tests;
