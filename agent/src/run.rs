//! The agent's main job: read objects, plan, and keep the dataplane in sync.

use crate::backends;
use crate::cli::RunArgs;
use crate::node::NodeSetup;
use crate::source::{Fingerprint, Manifests};
use crate::sync::Syncer;
use anyhow::Context as _;
use std::path::Path;
use std::time::Duration;
use switchyard_core::ProxyPlan;
use tokio::time::Instant;

/// How often the manifest files are checked for edits.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.cleanup {
        return backends::cleanup_modes(None).await;
    }
    if args.node.kubeconfig.is_some() || args.node.manifests.is_none() {
        anyhow::bail!(
            "the Kubernetes API source is not in this build yet: pass --manifests PATH \
             (see examples/ and the README)"
        );
    }
    let path = args.node.manifests.clone().context("--manifests")?;
    let manifests = Manifests::load(&path)?;
    let setup = NodeSetup::resolve(&args.node, Some(&manifests)).await?;
    tracing::info!(node = %setup.node_name, mode = backends::mode_name(args.mode), "planning");
    let plans = setup.plans(&manifests);

    if args.dry_run {
        print!("{}", dry_run_text(&args, &plans));
        return Ok(());
    }
    let dataplanes = plans
        .iter()
        .map(|p| backends::dataplane(&args, p.family))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut syncer = Syncer::new(dataplanes);
    syncer.probe().await.context("probing kernel support")?;
    backends::cleanup_modes(Some(args.mode))
        .await
        .context("removing other modes' rules")?;
    let outcome = syncer.sync(plans).await;
    if args.once {
        return match outcome.errors.into_iter().next() {
            Some(e) => Err(e).context("sync failed"),
            None => Ok(()),
        };
    }
    keep_in_sync(&args, &path, &setup, syncer).await
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

/// Re-syncs when the manifests change (coalesced by --min-sync-period), every --sync-period
/// in full, and after failures with backoff, until SIGINT/SIGTERM. Rules stay in place on exit,
/// as with kube-proxy: traffic keeps flowing while the agent restarts.
async fn keep_in_sync(
    args: &RunArgs,
    path: &Path,
    setup: &NodeSetup,
    mut syncer: Syncer,
) -> anyhow::Result<()> {
    let mut fingerprint = Fingerprint::of(path);
    let mut last_sync = Instant::now();
    let mut last_full = Instant::now();
    let mut retry_at = syncer.retry_backoff().map(|d| Instant::now() + d);
    let mut pending = false;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
        }
        let now = Instant::now();
        let current = Fingerprint::of(path);
        if current != fingerprint {
            fingerprint = current;
            pending = true;
        }
        if now.duration_since(last_full) >= args.sync_period {
            syncer.force_full();
            last_full = now;
            pending = true;
        }
        if retry_at.is_some_and(|at| now >= at) {
            pending = true;
        }
        if !pending || now.duration_since(last_sync) < args.min_sync_period {
            continue;
        }
        pending = false;
        last_sync = now;
        let manifests = match Manifests::load(path) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!("{e:#}; keeping the rules of the last good manifests");
                continue;
            }
        };
        syncer.sync(setup.plans(&manifests)).await;
        retry_at = syncer.retry_backoff().map(|d| {
            tracing::warn!(retry_in_ms = d.as_millis() as u64, "retrying with backoff");
            now + d
        });
    }
    tracing::info!("stopping; installed rules stay in place");
    Ok(())
}
