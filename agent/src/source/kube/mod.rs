//! The Kubernetes API source: watches Services, EndpointSlices, this node's Node and
//! ServiceCIDRs, and keeps one [`ClusterState`](switchyard_core::ClusterState) the sync loop
//! plans from — the same state the manifest source produces.
//!
//! Selectors are kube-proxy's (`pkg/proxy` informers): Services and EndpointSlices without
//! `service.kubernetes.io/service-proxy-name` (another proxy owns them) and without
//! `service.kubernetes.io/headless` (nothing to proxy; the EndpointSlice controller copies the
//! label onto the slices of headless Services); the Node by `metadata.name`.
//!
//! **No half-known state**: [`KubeSource::wait_listed`] returns only once every kind has
//! completed an initial list; until then the agent touches no rule. Later relists are swapped
//! in whole (see `store`). API failures are retried with backoff and never clear the state,
//! so an outage keeps the last rules.

pub mod access;
mod changes;
mod client;
mod error;
mod events;
mod store;
mod watch;

pub use error::KubeSourceError;
pub use store::{Kind, Snapshot};

use k8s_openapi::api::core::v1 as core_v1;
use k8s_openapi::api::discovery::v1 as discovery_v1;
use k8s_openapi::api::networking::v1 as networking_v1;
use kube::runtime::watcher;
use std::path::Path;
use std::sync::Arc;
use watch::Shared;

/// kube-proxy's label selector for Services and EndpointSlices.
pub const LABEL_SELECTOR: &str =
    "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless";

/// Objects per page of an initial list: client-go's pager default, so a 10k-service cluster
/// is listed in bounded chunks instead of one response the API server must hold whole.
const PAGE_SIZE: u32 = 500;

/// How often [`KubeSource::wait_listed`] hands the objects listed so far to its caller: one
/// call per arriving object would cost more in per-call overhead than the planning it does.
const MEANWHILE_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// Where to find the API and which node this is.
#[derive(Debug, Clone)]
pub struct KubeOptions<'a> {
    pub kubeconfig: Option<&'a Path>,
    pub master: Option<&'a str>,
    pub node_name: &'a str,
    /// Where object changes are counted (`SourceMetrics::default()`: nowhere).
    pub metrics: crate::metrics::SourceMetrics,
}

/// The running watchers. Dropping it stops them.
pub struct KubeSource {
    /// Kept for the Starting event (`events`).
    client: kube::Client,
    shared: Arc<Shared>,
    changes: tokio::sync::watch::Receiver<u64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for KubeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSource")
            .field("watchers", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

impl Drop for KubeSource {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl KubeSource {
    /// Builds the client and starts one watcher per kind. Fails only when the client cannot
    /// be configured; an unreachable API is retried in the background.
    pub async fn start(options: KubeOptions<'_>) -> Result<Self, KubeSourceError> {
        let client = client::client(options.kubeconfig, options.master).await?;
        let shared = Arc::new(Shared::new(store::ChangeContext {
            metrics: options.metrics.clone(),
            started: std::time::SystemTime::now(),
        }));
        let base = watcher::Config::default().page_size(PAGE_SIZE);
        let proxied = base.clone().labels(LABEL_SELECTOR);
        let node = base
            .clone()
            .fields(&format!("metadata.name={}", options.node_name));
        let tasks = vec![
            tokio::spawn(watch::run(
                access::watched_api::<core_v1::Service>(client.clone()),
                proxied.clone(),
                shared.clone(),
                false,
            )),
            tokio::spawn(watch::run(
                access::watched_api::<discovery_v1::EndpointSlice>(client.clone()),
                proxied,
                shared.clone(),
                false,
            )),
            tokio::spawn(watch::run(
                access::watched_api::<core_v1::Node>(client.clone()),
                node,
                shared.clone(),
                false,
            )),
            tokio::spawn(watch::run(
                access::watched_api::<networking_v1::ServiceCIDR>(client.clone()),
                base,
                shared.clone(),
                true,
            )),
        ];
        let changes = shared.subscribe();
        Ok(Self {
            client,
            shared,
            changes,
            tasks,
        })
    }

    /// Waits until every kind has completed its initial list. Logs, every 10 s, which kinds
    /// are still missing, so a stuck start (RBAC, an unreachable API) is visible.
    /// `meanwhile` runs on the objects that arrived so far, at most every
    /// [`MEANWHILE_EVERY`] (the agent plans them as they come, so little is left to plan when
    /// the last page arrives); nothing is synced before this returns.
    pub async fn wait_listed(&mut self, mut meanwhile: impl FnMut(&mut Self)) {
        let mut last: Option<std::time::Instant> = None;
        loop {
            // Before the check: `meanwhile` marks the changes seen, so a list completed
            // before it ran must be noticed here, not 10 s later.
            if last.is_none_or(|t| t.elapsed() >= MEANWHILE_EVERY) {
                meanwhile(self);
                last = Some(std::time::Instant::now());
            }
            let missing = self.shared.read(|s| s.unlisted());
            if missing.is_empty() {
                return;
            }
            let wait =
                tokio::time::timeout(std::time::Duration::from_secs(10), self.changes.changed());
            if let Ok(Err(_)) | Err(_) = wait.await {
                let missing: Vec<String> = missing.iter().map(Kind::to_string).collect();
                tracing::info!(
                    missing = %missing.join(","),
                    "waiting for the initial lists; rules stay as they are"
                );
            }
        }
    }

    /// Whether `kind` has completed an initial list.
    pub fn is_listed(&self, kind: Kind) -> bool {
        self.shared.read(|s| s.is_listed(kind))
    }

    /// Waits for the next change to the watched state (returns at once if one happened since
    /// the last [`snapshot`](Self::snapshot)).
    pub async fn changed(&mut self) {
        if self.changes.changed().await.is_err() {
            // Every watcher task ended (cannot happen while `self` holds `shared`); never
            // return, so the caller's other branches (resync timers, signals) keep running.
            std::future::pending::<()>().await;
        }
    }

    /// Runs `f` on the current state, and marks it seen for [`changed`](Self::changed).
    ///
    /// `f` runs under the store's lock, so planning reads the state in place: copying a
    /// 10k-Service state costs ~30 ms and doubles its memory for the duration, while watcher
    /// events simply wait for the plan (they are applied, in order, right after).
    pub fn with_snapshot<T>(&mut self, f: impl FnOnce(&Snapshot) -> T) -> T {
        self.changes.borrow_and_update();
        self.shared.read(|s| f(&s.snapshot))
    }

    /// Ends the pending-changes period (call right before planning): the EndpointSlice
    /// trigger times seen since the last call, per family, for the network programming
    /// latency once their sync succeeds.
    pub fn take_changes(&mut self) -> Vec<(switchyard_core::IpFamily, std::time::SystemTime)> {
        let metrics = &self.shared.change_context.metrics;
        self.shared.update_quiet(|s| s.pending.take(metrics))
    }

    /// Reads, live, whether this Node may receive load-balancer traffic (`/healthz`).
    pub fn node_eligibility(&self) -> crate::health::NodeEligibility {
        let shared = self.shared.clone();
        Arc::new(move || shared.read(|s| s.node_eligible))
    }

    /// [`with_snapshot`](Self::with_snapshot) with the snapshot mutable, so the caller can
    /// take its change log (`TrackedState::take_touched`) for an incremental planner.
    pub fn with_snapshot_mut<T>(&mut self, f: impl FnOnce(&mut Snapshot) -> T) -> T {
        self.changes.borrow_and_update();
        self.shared.read_mut(|s| f(&mut s.snapshot))
    }
}
