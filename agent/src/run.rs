//! The agent's main job: read objects, plan, and keep the dataplane in sync.
//!
//! Both sources (manifest files, the Kubernetes API) feed the same loop, kube-proxy's
//! bounded-frequency runner: changes are coalesced by `--min-sync-period`; every
//! `--sync-period` a resync; a full sync on start, after a failure (with the Syncer's backoff)
//! and every [`Source::full_every`] otherwise.

use crate::backends;
use crate::cli::RunArgs;
use crate::families;
use crate::live::LivePlanners;
use crate::node::NodeSetup;
use crate::ops::Ops;
use crate::source::kube::{Kind, KubeOptions, KubeSource};
use crate::source::{Fingerprint, Manifests};
use crate::sync::{SyncOutcome, Syncer};
use anyhow::Context as _;
use std::path::PathBuf;
use std::time::Duration;
use switchyard_core::{IpFamily, ProxyPlan};
use tokio::time::Instant;

/// How often the manifest files are checked for edits.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// With the API source, the longest time between two full syncs (kube-proxy's bound): the
/// periodic resync in between re-plans and applies what differs from the committed plan.
const API_FULL_SYNC_EVERY: Duration = Duration::from_secs(3600);

/// Where the objects come from.
enum Source {
    /// `--manifests PATH`, polled for edits.
    Manifests {
        path: PathBuf,
        fingerprint: Fingerprint,
    },
    /// The Kubernetes API (watchers), planned incrementally.
    Kube(Box<KubeSource>, LivePlanners),
}

impl Source {
    /// Returns when the objects may have changed. Cancel-safe: dropping the future loses no
    /// change (manifests: the fingerprint is updated only on return; API: the change counter
    /// is marked seen only by [`Source::plans`]).
    async fn changed(&mut self) {
        match self {
            Source::Manifests { path, fingerprint } => loop {
                tokio::time::sleep(POLL_INTERVAL).await;
                let current = Fingerprint::of(path);
                if current != *fingerprint {
                    *fingerprint = current;
                    return;
                }
            },
            Source::Kube(source, _) => source.changed().await,
        }
    }

    /// The plans for the current objects; `None` keeps the rules as they are (manifests that
    /// no longer parse).
    fn plans(&mut self, setup: &NodeSetup) -> Option<Vec<ProxyPlan>> {
        match self {
            Source::Manifests { path, .. } => match Manifests::load(path) {
                Ok(m) => Some(setup.plans(&m)),
                Err(e) => {
                    tracing::error!("{e:#}; keeping the rules of the last good manifests");
                    None
                }
            },
            Source::Kube(source, _) => Some(source.with_snapshot(|snapshot| {
                setup.plan_state(snapshot.state.state(), &crate::live::facts(snapshot))
            })),
        }
    }

    /// The families the node has now (a lane each).
    fn families(&mut self, setup: &NodeSetup, plans: &[ProxyPlan]) -> Vec<IpFamily> {
        match self {
            Source::Manifests { .. } => plans.iter().map(|p| p.family).collect(),
            Source::Kube(source, _) => source.with_snapshot(|s| {
                setup
                    .configs_for(s.state.state().node.as_ref(), &crate::live::facts(s))
                    .iter()
                    .map(|c| c.family)
                    .collect()
            }),
        }
    }

    /// Plans and applies the current objects — the API source incrementally (only what
    /// changed since the last sync), manifests whole (`planned`: plans made just before, or
    /// empty to plan now) — after making the syncer's lanes the node's families
    /// ([`families::follow`]), with the health and metrics hooks around the commit.
    async fn sync(
        &mut self,
        args: &RunArgs,
        setup: &NodeSetup,
        syncer: &mut Syncer,
        ops: &mut Ops,
        planned: Vec<ProxyPlan>,
    ) -> Option<SyncOutcome> {
        let triggers = self.take_changes();
        let make = |f| backends::dataplane(args, f);
        let outcome = match self {
            Source::Kube(source, planners) => {
                planners
                    .sync(source, setup, syncer, ops, &triggers, args)
                    .await
            }
            Source::Manifests { .. } => {
                let planning = std::time::Instant::now();
                let plans = if planned.is_empty() {
                    self.plans(setup)?
                } else {
                    planned
                };
                let want: Vec<IpFamily> = plans.iter().map(|p| p.family).collect();
                families::follow(syncer, &want, make).await;
                ops.set_families(want);
                let prepared = ops.before_sync(&plans.iter().collect::<Vec<_>>());
                let plan_time = planning.elapsed();
                let outcome = syncer.sync(plans).await;
                ops.after_sync(prepared, &outcome, plan_time, &triggers)
                    .await;
                outcome
            }
        };
        if outcome.applied.iter().any(|stats| stats.full) {
            let started = std::time::Instant::now();
            crate::memory::release_freed();
            tracing::debug!(
                ms = started.elapsed().as_secs_f64() * 1000.0,
                "returned the full sync's freed memory to the system"
            );
        }
        Some(outcome)
    }

    /// How often a sync is forced full. Offline: every `--sync-period`, as before the API
    /// source existed (a full sync of a hand-written manifest is cheap). API: hourly at most,
    /// as kube-proxy (a full sync of a 10k-service cluster costs ~0.6 s).
    fn full_every(&self, sync_period: Duration) -> Duration {
        match self {
            Source::Manifests { .. } => sync_period,
            Source::Kube(..) => API_FULL_SYNC_EVERY.max(sync_period),
        }
    }

    /// Ends the pending-changes period (right before planning): the EndpointSlice trigger
    /// times of the changes the coming sync carries (none offline).
    fn take_changes(&mut self) -> Vec<(switchyard_core::IpFamily, std::time::SystemTime)> {
        match self {
            Source::Manifests { .. } => Vec::new(),
            Source::Kube(source, _) => source.take_changes(),
        }
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.cleanup {
        return backends::cleanup_modes(None).await.map(drop);
    }
    if args.cleanup_kube_proxy {
        return crate::migrate::cleanup_kube_proxy(&args.ipvs.exclude_cidrs).await;
    }
    // Health and metrics serve from the start (while the API lists, /livez answers).
    let mut ops = Ops::start(
        backends::mode_name(args.mode),
        args.sync_period,
        args.healthz_bind_address.0,
        args.metrics_bind_address.0,
        !args.dry_run && !args.once,
    );
    let (mut source, setup, plans) = match &args.node.manifests {
        Some(path) => {
            let manifests = Manifests::load(path)?;
            let setup = NodeSetup::resolve(&args.node, Some(&manifests)).await?;
            let plans = setup.plans(&manifests);
            let source = Source::Manifests {
                path: path.clone(),
                fingerprint: Fingerprint::of(path),
            };
            (source, setup, plans)
        }
        None => {
            let node_name = match &args.node.hostname_override {
                Some(name) => name.clone(),
                None => crate::host::hostname()?,
            };
            let mut kube = KubeSource::start(KubeOptions {
                kubeconfig: args.node.kubeconfig.as_deref(),
                master: args.node.master.as_deref(),
                node_name: &node_name,
                metrics: ops.metrics.source.clone(),
            })
            .await
            .context("starting the Kubernetes API source")?;
            let setup = NodeSetup::for_node(&args.node, node_name.clone()).await?;
            // No half-known state: nothing is cleaned up or synced before every kind is listed.
            // Once this Node (its families) is known, what has arrived is planned meanwhile,
            // so the first sync plans only the last objects (DESIGN-NOTES 243).
            let mut planners = LivePlanners::default();
            kube.wait_listed(|kube| {
                if !args.dry_run && kube.is_listed(Kind::Node) {
                    planners.prepare(kube, &setup);
                }
            })
            .await;
            let announce = tokio::spawn(kube.announce_start(&node_name));
            if args.dry_run || args.once {
                // Short runs end before a task would: record it now.
                let _ = announce.await;
            }
            if kube.with_snapshot(|s| s.state.state().node.is_none()) {
                tracing::warn!(node = %node_name, "no Node object of this name: planning both families, without node addresses");
            }
            ops.health.set_node_eligibility(kube.node_eligibility());
            let mut source = Source::Kube(Box::new(kube), planners);
            source.take_changes();
            // Only --dry-run prints a plan made here; a real run plans at its first sync.
            let plans = if args.dry_run {
                source.plans(&setup).unwrap_or_default()
            } else {
                Vec::new()
            };
            (source, setup, plans)
        }
    };
    tracing::info!(node = %setup.node_name, mode = backends::mode_name(args.mode), "planning");

    if args.dry_run {
        print!("{}", dry_run_text(&args, &plans));
        return Ok(());
    }
    let planned = source.families(&setup, &plans);
    let dataplanes = planned
        .iter()
        .map(|family| backends::dataplane(&args, *family))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut syncer = Syncer::new(dataplanes).with_conntrack();
    syncer.probe().await.context("probing kernel support")?;
    families::retire_unplanned(&planned, |f| backends::dataplane(&args, f)).await;
    // The new mode's rules go in before the other modes' come out, so a mode switch has no
    // window without rules: both carry the same plan, and of two nat chains the first to
    // translate a connection wins (DESIGN-NOTES 196). Until a sync succeeds the old mode's
    // rules keep serving.
    let outcome = source
        .sync(&args, &setup, &mut syncer, &mut ops, plans)
        .await
        .unwrap_or_default();
    let others_removed = outcome.errors.is_empty();
    let retiring = if others_removed {
        remove_other_modes(&args).await?
    } else {
        None
    };
    if args.once {
        return match outcome.errors.into_iter().next() {
            Some(e) => Err(e).context("sync failed"),
            None => Ok(()),
        };
    }
    let removal = OtherModes {
        removed: others_removed,
        retiring,
    };
    keep_in_sync(&args, &mut source, &setup, syncer, &mut ops, removal).await
}

/// Where removing the other modes' rules stands.
struct OtherModes {
    /// Removed (or retiring); false until a sync succeeded.
    removed: bool,
    /// IPVS mode's virtual services still draining their connections.
    retiring: Option<backends::IpvsRetirement>,
}

async fn remove_other_modes(args: &RunArgs) -> anyhow::Result<Option<backends::IpvsRetirement>> {
    backends::cleanup_modes(Some(args.mode))
        .await
        .context("removing other modes' rules")
}

/// What `--dry-run` prints: the backend's own rendering, or the plan itself (`--show-plan`, or
/// while the chosen mode has no backend in this build) under a heading that says so. Warnings
/// go to the log either way.
fn dry_run_text(args: &RunArgs, plans: &[ProxyPlan]) -> String {
    for plan in plans {
        for w in &plan.warnings {
            tracing::warn!(family = %plan.family, "{w}");
        }
    }
    let dataplanes: anyhow::Result<Vec<_>> = plans
        .iter()
        .map(|p| backends::dataplane(args, p.family))
        .collect();
    match dataplanes {
        Ok(dataplanes) if !args.show_plan => Syncer::new(dataplanes).render(plans),
        _ => {
            let name = backends::mode_name(args.mode);
            let why = if args.show_plan {
                "as asked (--show-plan)".to_string()
            } else {
                format!("because the {name} backend is not in this build yet")
            };
            let mut out = format!(
                "# --dry-run --mode {name}: the ProxyPlan, {why}\n\
                 # (one per address family).\n\n"
            );
            for plan in plans {
                out.push_str(&plan.to_string());
                out.push('\n');
            }
            out
        }
    }
}

/// Re-syncs when the objects change (coalesced by --min-sync-period), every --sync-period, in
/// full every [`Source::full_every`], and after failures with backoff, until SIGINT/SIGTERM.
/// Rules stay in place on exit, as with kube-proxy: traffic keeps flowing while the agent
/// restarts.
async fn keep_in_sync(
    args: &RunArgs,
    source: &mut Source,
    setup: &NodeSetup,
    mut syncer: Syncer,
    ops: &mut Ops,
    mut others: OtherModes,
) -> anyhow::Result<()> {
    let full_every = source.full_every(args.sync_period);
    let start = Instant::now();
    let (mut last_sync, mut last_periodic, mut last_full) = (start, start, start);
    let mut retry_at = syncer.retry_backoff().map(|d| start + d);
    let mut pending = false;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    loop {
        let mut wake = (last_periodic + args.sync_period).min(last_full + full_every);
        if pending {
            wake = wake.min(last_sync + args.min_sync_period);
        }
        if let Some(at) = retry_at {
            wake = wake.min(at);
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            // Once a change is pending the next sync reads the newest state anyway.
            _ = source.changed(), if !pending => {
                pending = true;
                ops.queued();
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
        let now = Instant::now();
        let full_due = now >= last_full + full_every;
        if now >= last_periodic + args.sync_period {
            last_periodic = now;
            // Rules someone else removed make the next sync full (sync/repair.rs). A forced
            // full sync checks right before it applies, so it needs no check here.
            if !full_due {
                syncer.check().await;
                ops.metrics.repairs(syncer.repair_stats());
            }
            pending = true;
            if let Some(r) = others.retiring.as_mut() {
                if r.step().await {
                    others.retiring = None;
                }
            }
        }
        if full_due {
            syncer.force_full();
            last_full = now;
            pending = true;
        }
        if retry_at.is_some_and(|at| now >= at) {
            // Due: the retry is now an ordinary pending sync (re-armed after it runs), so a
            // --min-sync-period longer than the backoff does not spin the loop.
            retry_at = None;
            pending = true;
        }
        if !pending || now < last_sync + args.min_sync_period {
            continue;
        }
        pending = false;
        last_sync = now;
        let Some(outcome) = source.sync(args, setup, &mut syncer, ops, Vec::new()).await else {
            continue;
        };
        ops.metrics.repairs(syncer.repair_stats());
        if !others.removed && outcome.errors.is_empty() {
            others.retiring = remove_other_modes(args).await?;
            others.removed = true;
        }
        retry_at = syncer.retry_backoff().map(|d| {
            tracing::warn!(retry_in_ms = d.as_millis() as u64, "retrying with backoff");
            now + d
        });
    }
    tracing::info!("stopping; installed rules stay in place");
    Ok(())
}
