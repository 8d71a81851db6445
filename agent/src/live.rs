//! The API source's sync: one incremental [`Planner`] per family, fed the watched state's
//! change log, so one watch event costs O(change) to plan and to apply instead of re-planning
//! and diffing the cluster (DESIGN-NOTES 150-153). The manifest source keeps planning whole:
//! it re-reads whole files anyway.

use crate::cli::RunArgs;
use crate::node::{NodeFacts, NodeSetup};
use crate::ops::Ops;
use crate::source::kube::{KubeSource, Snapshot};
use crate::sync::{SyncOutcome, Syncer};
use crate::{backends, families};
use std::time::{Instant, SystemTime};
use switchyard_core::{Changes, IpFamily, PlanUpdate, Planner, ProxyPlan};

/// The planners, built at the first sync.
#[derive(Debug, Default)]
pub struct LivePlanners {
    planners: Vec<Planner>,
}

impl LivePlanners {
    /// Brings every family's plan up to the watched state and applies what changed.
    pub async fn sync(
        &mut self,
        source: &mut KubeSource,
        setup: &NodeSetup,
        syncer: &mut Syncer,
        ops: &mut Ops,
        triggers: &[(IpFamily, SystemTime)],
        args: &RunArgs,
    ) -> SyncOutcome {
        let started = Instant::now();
        let (updates, changed_at) = source.with_snapshot_mut(|snapshot| {
            (self.update(setup, snapshot), snapshot.changed_at.take())
        });
        let families: Vec<IpFamily> = self.planners.iter().map(|p| p.plan().family).collect();
        families::follow(syncer, &families, |f| backends::dataplane(args, f)).await;
        ops.set_families(families);
        let plan_time = started.elapsed();
        let plan_ms = ms(plan_time);
        let touched: usize = updates.iter().map(|u| u.changes.touched().count()).sum();
        tracing::debug!(plan_ms, service_ports_changed = touched, "planned");
        let plans: Vec<(&ProxyPlan, &PlanUpdate)> = self
            .planners
            .iter()
            .map(Planner::plan)
            .zip(&updates)
            .collect();
        let prepared = ops.before_sync(&plans.iter().map(|(p, _)| *p).collect::<Vec<_>>());
        let outcome = syncer.sync_planned(&plans).await;
        ops.after_sync(prepared, &outcome, plan_time, triggers)
            .await;
        if let Some(at) = changed_at.filter(|_| !outcome.applied.is_empty()) {
            // The agent's own path: event received -> converted -> planned -> committed.
            tracing::debug!(
                change_to_commit_ms = ms(at.elapsed()),
                plan_ms,
                "change committed"
            );
        }
        outcome
    }

    /// Plans the objects that arrived so far without applying them (while the initial lists
    /// arrive, [`KubeSource::wait_listed`]): the first sync then plans only what came after.
    /// Its lanes sync in full whatever the planners report (nothing is tracked yet).
    pub fn prepare(&mut self, source: &mut KubeSource, setup: &NodeSetup) {
        source.with_snapshot_mut(|snapshot| {
            self.update(setup, snapshot);
        });
    }

    fn update(&mut self, setup: &NodeSetup, snapshot: &mut Snapshot) -> Vec<PlanUpdate> {
        let touched = snapshot.state.take_touched();
        let configs = setup.configs_for(snapshot.state.state().node.as_ref(), &facts(snapshot));
        let same_families = self.planners.len() == configs.len()
            && self
                .planners
                .iter()
                .zip(&configs)
                .all(|(p, c)| p.plan().family == c.family);
        if !same_families {
            // First sync, or the node gained or lost a family (rare): plan every family
            // afresh; the lanes sync in full.
            self.planners = configs
                .into_iter()
                .map(|config| Planner::new(snapshot.state.state(), config))
                .collect();
            // Everything is new: the lanes sync in full.
            let everything = PlanUpdate {
                changes: Changes {
                    node_settings: true,
                    ..Changes::default()
                },
                warnings_changed: true,
                ..PlanUpdate::default()
            };
            return vec![everything; self.planners.len()];
        }
        self.planners
            .iter_mut()
            .zip(configs)
            .map(|(planner, config)| planner.update(snapshot.state.state(), &config, &touched))
            .collect()
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// What the planner needs from the API beyond the objects.
pub fn facts(snapshot: &Snapshot) -> NodeFacts {
    NodeFacts {
        pod_cidrs: snapshot.pod_cidrs.clone(),
        service_cidr_flag: !snapshot.service_cidrs_served,
    }
}
