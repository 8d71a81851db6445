//! healthCheckNodePort servers (kube-proxy's `ServiceHealthServer`): for each Service whose
//! plan carries a health check, an HTTP server on its port answering any path with 200 while
//! this node has a ready local endpoint and the proxy is healthy, 503 otherwise, so an
//! `externalTrafficPolicy: Local` load balancer sends traffic only to nodes that can serve it.
//!
//! Servers are opened and closed as the plans change. A port that cannot be bound (in use) is
//! logged and retried at the next sync; it never stops the agent or other Services' servers.
//!
//! **Where they listen** follows `--nodeport-addresses`, as kube-proxy's: the node addresses
//! NodePorts listen on (the plan's `node_port_addresses`), or every address (`[::]`,
//! dual-stack) when NodePorts listen on every local address or no node address is known yet.

use super::ProxyHealth;
use crate::http::{self, Reply, Server};
use hyper::StatusCode;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use switchyard_core::model::ObjectRef;
use switchyard_core::plan::NodePortListen;
use switchyard_core::{HealthCheck, ProxyPlan};

/// The open servers, by Service.
#[derive(Debug)]
pub struct ServiceHealthServers {
    health: Arc<ProxyHealth>,
    open: BTreeMap<ObjectRef, Instance>,
    /// Ports that failed to open, so the warning is logged once per Service and port.
    failed: BTreeMap<ObjectRef, u16>,
}

#[derive(Debug)]
struct Instance {
    port: u16,
    addresses: Vec<IpAddr>,
    local_endpoints: Arc<AtomicUsize>,
    /// Dropping these closes the port.
    _servers: Vec<Server>,
}

impl ServiceHealthServers {
    pub fn new(health: Arc<ProxyHealth>) -> Self {
        Self {
            health,
            open: BTreeMap::new(),
            failed: BTreeMap::new(),
        }
    }

    /// Makes the servers match `checks` (from [`switchyard_core::health_checks`]), listening
    /// on `addresses` (from [`listen_addresses`]): closes those of Services gone (or whose
    /// port or addresses changed), opens new ones, and updates every local endpoint count.
    pub async fn sync(&mut self, checks: &BTreeMap<ObjectRef, HealthCheck>, addresses: &[IpAddr]) {
        let addresses = addresses.to_vec();
        self.open.retain(|svc, inst| {
            let keep = checks
                .get(svc)
                .is_some_and(|c| c.port == inst.port && inst.addresses == addresses);
            if !keep {
                tracing::info!(service = %svc, port = inst.port, "closing healthcheck");
            }
            keep
        });
        self.failed
            .retain(|svc, port| checks.get(svc).is_some_and(|c| c.port == *port));
        for (svc, check) in checks {
            if let Some(inst) = self.open.get(svc) {
                inst.local_endpoints
                    .store(check.local_endpoints, Ordering::Relaxed);
                continue;
            }
            match self.open_one(svc, check, &addresses).await {
                Ok(inst) => {
                    tracing::info!(service = %svc, port = check.port, "opened healthcheck");
                    self.failed.remove(svc);
                    self.open.insert(svc.clone(), inst);
                }
                Err(e) => {
                    if self.failed.insert(svc.clone(), check.port) != Some(check.port) {
                        tracing::warn!(service = %svc, port = check.port,
                            "failed to start healthcheck: {e}; retrying at every sync");
                    } else {
                        tracing::debug!(service = %svc, port = check.port, "healthcheck still not started: {e}");
                    }
                }
            }
        }
    }

    /// Binds every address (all or nothing, as kube-proxy: a half-open check would answer
    /// on some addresses only) and starts serving.
    async fn open_one(
        &self,
        svc: &ObjectRef,
        check: &HealthCheck,
        addresses: &[IpAddr],
    ) -> std::io::Result<Instance> {
        let local_endpoints = Arc::new(AtomicUsize::new(check.local_endpoints));
        let mut listeners = Vec::new();
        for ip in addresses {
            let addr = SocketAddr::new(*ip, check.port);
            let listener = http::bind(addr)
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("listening on {addr}: {e}")))?;
            listeners.push(listener);
        }
        let handler = handler(svc.clone(), local_endpoints.clone(), self.health.clone());
        let servers = listeners
            .into_iter()
            .map(|l| http::serve(l, handler.clone()))
            .collect();
        Ok(Instance {
            port: check.port,
            addresses: addresses.to_vec(),
            local_endpoints,
            _servers: servers,
        })
    }
}

/// kube-proxy's answer, byte for byte (its body is an indented template).
fn handler(
    svc: ObjectRef,
    local_endpoints: Arc<AtomicUsize>,
    health: Arc<ProxyHealth>,
) -> http::Handler {
    Arc::new(move |_path| {
        let count = local_endpoints.load(Ordering::Relaxed);
        let healthy = health.verdict(std::time::Instant::now()).healthy;
        let status = if count != 0 && healthy {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        Reply::json(
            status,
            format!(
                "{{\n\t\"service\": {{\n\t\t\"namespace\": {},\n\t\t\"name\": {}\n\t}},\n\t\"localEndpoints\": {count},\n\t\"serviceProxyHealthy\": {healthy}\n}}",
                quote(&svc.namespace),
                quote(&svc.name)
            ),
        )
    })
}

/// The addresses to listen on: the node addresses of every family's NodePorts, or one
/// wildcard when NodePorts listen everywhere or no address is known.
pub fn listen_addresses(plans: &[&ProxyPlan]) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for plan in plans {
        match &plan.node_port_addresses {
            NodePortListen::AllLocal => return vec![Ipv4Addr::UNSPECIFIED.into()],
            NodePortListen::Addresses(ips) => out.extend(ips.iter().copied()),
        }
    }
    out.sort();
    out.dedup();
    if out.is_empty() {
        vec![Ipv4Addr::UNSPECIFIED.into()]
    } else {
        out
    }
}
