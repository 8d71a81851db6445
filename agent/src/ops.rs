//! The agent's operational surface, wired to the sync loop: the health server
//! (`--healthz-bind-address`), the healthCheckNodePort servers and the metrics server
//! (`--metrics-bind-address`). `run.rs` calls three hooks: [`Ops::queued`] when a watched
//! object changes, [`Ops::before_sync`] with the new plans, [`Ops::after_sync`] with what
//! each family's dataplane did.

use crate::health::services::{listen_addresses, ServiceHealthServers};
use crate::health::ProxyHealth;
use crate::http;
use crate::metrics::{ConntrackCleanup, Metrics};
use crate::sync::SyncOutcome;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use switchyard_core::model::ObjectRef;
use switchyard_core::{HealthCheck, IpFamily, ProxyPlan};

/// How long a server waits before binding again after its address could not be bound
/// (kube-proxy retries its healthz and metrics servers every 5 s instead of exiting).
const REBIND_EVERY: Duration = Duration::from_secs(5);

/// A server's `IP:PORT`, or none (an empty flag disables the server, as in kube-proxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindAddress(pub Option<SocketAddr>);

/// Parses `IP:PORT` (`[IPv6]:PORT`), or empty.
pub fn parse_bind_address(s: &str) -> Result<BindAddress, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(BindAddress(None));
    }
    s.parse()
        .map(|a| BindAddress(Some(a)))
        .map_err(|e| format!("{s:?}: {e} (want IP:PORT, [IPv6]:PORT, or empty to disable)"))
}

/// What a sync's plans said, kept until the sync's outcome is known (the plans themselves
/// go to the dataplanes).
#[derive(Debug)]
pub struct Prepared {
    checks: BTreeMap<ObjectRef, HealthCheck>,
    addresses: Vec<IpAddr>,
}

/// The running servers and the state they report.
#[derive(Debug)]
pub struct Ops {
    pub health: Arc<ProxyHealth>,
    pub metrics: Arc<Metrics>,
    /// `None` when not serving (`--once`).
    services: Option<ServiceHealthServers>,
    families: Vec<IpFamily>,
    /// The healthz and metrics server tasks (aborted on drop).
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Ops {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Ops {
    /// Creates the health state and metrics, and — when `serve` (not for `--once`) — starts
    /// the healthz and metrics servers and, after each sync, the healthCheckNodePort servers. Health turns late after `2 × sync_period` (kube-proxy).
    pub fn start(
        mode: &'static str,
        sync_period: Duration,
        healthz: Option<SocketAddr>,
        metrics_addr: Option<SocketAddr>,
        serve: bool,
    ) -> Self {
        let metrics = Arc::new(Metrics::new(mode));
        let health = Arc::new(ProxyHealth::new(
            2 * sync_period,
            metrics.healthz_total.clone(),
            metrics.livez_total.clone(),
        ));
        let mut tasks = Vec::new();
        if serve {
            if let Some(addr) = healthz {
                tasks.push(spawn_server("healthz", addr, health.handler()));
            }
            if let Some(addr) = metrics_addr {
                tasks.push(spawn_server("metrics", addr, metrics.handler(mode)));
            }
        }
        Self {
            services: serve.then(|| ServiceHealthServers::new(health.clone())),
            health,
            metrics,
            families: Vec::new(),
            tasks,
        }
    }

    /// The families synced from now on.
    pub fn set_families(&mut self, families: Vec<IpFamily>) {
        self.health.retain_families(&families);
        self.families = families;
    }

    /// A watched object changed: a sync is queued for every family.
    pub fn queued(&self) {
        let now = Instant::now();
        for f in &self.families {
            self.health.queued(*f, now);
        }
        self.metrics.queued(&self.families, SystemTime::now());
    }

    /// Takes note of the plans about to be synced.
    pub fn before_sync(&self, plans: &[&ProxyPlan]) -> Prepared {
        self.metrics.planned(plans);
        Prepared {
            checks: switchyard_core::health_checks(plans),
            addresses: listen_addresses(plans),
        }
    }

    /// Records a sync: health per family, metrics, and — when every family synced — the
    /// healthCheckNodePort servers (kube-proxy updates them only after a successful sync).
    /// `plan_time` is the planning shared by the families; `triggers` the EndpointSlice
    /// trigger times of the changes this sync carried.
    pub async fn after_sync(
        &mut self,
        prepared: Prepared,
        outcome: &SyncOutcome,
        plan_time: Duration,
        triggers: &[(IpFamily, SystemTime)],
    ) {
        let now = Instant::now();
        let wall = SystemTime::now();
        for lane in &outcome.lanes {
            self.metrics.quarantined(lane.family, lane.quarantined);
            self.metrics.synced(
                lane.family,
                plan_time + lane.elapsed,
                lane.stats.as_ref(),
                lane.failed,
            );
            if !lane.failed {
                self.health.updated(lane.family, now, wall);
                let times: Vec<SystemTime> = triggers
                    .iter()
                    .filter(|(f, _)| *f == lane.family)
                    .map(|(_, t)| *t)
                    .collect();
                self.metrics.programmed(lane.family, &times, wall);
            }
        }
        for ct in &outcome.conntrack {
            self.metrics.record_conntrack_cleanup(
                ct.family,
                ConntrackCleanup {
                    deleted: ct.deleted as u64,
                    failed: ct.failed as u64,
                    duration: ct.elapsed,
                },
            );
        }
        if let Some(services) = &mut self.services {
            if outcome.lanes.iter().all(|l| !l.failed) {
                services.sync(&prepared.checks, &prepared.addresses).await;
            }
        }
    }
}

/// Serves `handler` on `addr`, binding again every [`REBIND_EVERY`] while the address is
/// taken or missing; never stops the agent.
fn spawn_server(
    what: &'static str,
    addr: SocketAddr,
    handler: http::Handler,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match http::bind(addr).await {
                Ok(listener) => {
                    tracing::info!(%addr, "{what} server listening");
                    let _server = http::serve(listener, handler);
                    return std::future::pending().await;
                }
                Err(e) => {
                    tracing::error!(%addr, "{what} server cannot listen: {e}; retrying in {}s", REBIND_EVERY.as_secs());
                    tokio::time::sleep(REBIND_EVERY).await;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_addresses_are_ip_port_or_empty() {
        assert_eq!(
            parse_bind_address("0.0.0.0:10256"),
            Ok(BindAddress(Some("0.0.0.0:10256".parse().expect("addr"))))
        );
        assert_eq!(
            parse_bind_address("[::1]:10249").map(|a| a.0.map(|s| s.port())),
            Ok(Some(10249))
        );
        assert_eq!(parse_bind_address(""), Ok(BindAddress(None)));
        assert!(parse_bind_address("10256").is_err());
        assert!(parse_bind_address("localhost:10256").is_err());
    }
}
