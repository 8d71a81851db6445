//! Which conntrack entries a sync leaves stale: the one place that decides it.
//!
//! A UDP or SCTP "connection" is a conntrack entry that the kernel keeps translating to the
//! endpoint it picked first, whatever the rules say later, for as long as the client keeps
//! sending (every packet refreshes the timeout). So after a plan change the entries of a
//! service port must be reconciled with its endpoints, or a client that keeps its source port
//! (DNS resolvers, statsd senders) stays on an endpoint that left, or on the untranslated
//! address it reached before the service had endpoints (kube-proxy #48370, #126130, #139628).
//!
//! The semantics are kube-proxy's conntrack reconciler (1.32+, with #139629 and #141371): for
//! every UDP/SCTP service port, an entry whose original destination is one of the port's kernel
//! keys (virtual address and port, or NodePort) and whose reply source is *not* one of the
//! endpoints the new plan can reach is stale — also when the port has no endpoints at all (its
//! entries are deleted and new packets meet the reject rule) and when the port is gone (its keys
//! no longer belong to anyone). TCP is never touched: a TCP connection to a departed endpoint
//! fails on its own, and deleting it would break graceful termination.
//!
//! This module only decides; the agent executes the returned [`FlowCleanup`]s over ctnetlink.

use crate::diff::Changes;
use crate::plan::{IpFamily, Protocol, ProxyPlan, ServiceKey, ServicePortName, ServicePortPlan};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// One kernel key of a UDP/SCTP service port and the reply sources its entries may have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowCleanup {
    pub family: IpFamily,
    /// Which original destinations: `Addr` = that address and port; `AnyLocal` = that port on
    /// any address (a NodePort on every local address; kube-proxy matches NodePorts the same
    /// way). The protocol is the key's.
    pub key: ServiceKey,
    /// Reply sources (endpoint address and port) that are current: an entry whose reply source
    /// is anything else — a departed endpoint, or the virtual address itself (untranslated) —
    /// is stale. Empty: every entry of the key is stale.
    pub keep: BTreeSet<(IpAddr, u16)>,
    /// The service port the key belongs (or, when removed, belonged) to, for logs.
    pub service: ServicePortName,
}

impl FlowCleanup {
    pub fn protocol(&self) -> Protocol {
        match self.key {
            ServiceKey::Addr { protocol, .. } | ServiceKey::AnyLocal { protocol, .. } => protocol,
        }
    }

    /// Whether an entry with this original destination and reply source is stale under this
    /// rule. The entry's protocol must already be the rule's.
    pub fn is_stale(&self, orig_dst: IpAddr, orig_dport: u16, reply_src: (IpAddr, u16)) -> bool {
        let matches = match self.key {
            ServiceKey::Addr { ip, port, .. } => ip == orig_dst && port == orig_dport,
            ServiceKey::AnyLocal { port, .. } => port == orig_dport,
        };
        matches && !self.keep.contains(&reply_src)
    }
}

/// Which service ports to reconcile.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Every UDP/SCTP service port of the new plan: the first sync after a start, a failure
    /// or a forced resync, when what the kernel holds is not known.
    Everything,
    /// The service ports `changes` names between `old` (the plan committed before) and the
    /// new plan, plus the keys of `old` that no longer belong to anyone.
    Changed {
        old: &'a ProxyPlan,
        changes: &'a Changes,
    },
}

/// The stale-flow rules after a sync to `new`, one per kernel key, in key order.
///
/// `carried` are rules an earlier sync could not finish (bounded work, or a kernel error):
/// they are decided again against `new`, so a key that changed hands since then gets the
/// current endpoints, never the old ones. A key appears once; with several sources the current
/// plan's view wins.
pub fn stale_flows(scope: Scope<'_>, new: &ProxyPlan, carried: &[FlowCleanup]) -> Vec<FlowCleanup> {
    let mut out: BTreeMap<ServiceKey, FlowCleanup> = BTreeMap::new();
    let add_port = |out: &mut BTreeMap<ServiceKey, FlowCleanup>, name: &ServicePortName| {
        if let Some(port) = new.services.get(name).filter(|p| cleans(p.protocol)) {
            for rule in rules_of(new.family, name, port) {
                out.insert(rule.key, rule);
            }
        }
    };
    match scope {
        Scope::Everything => {
            for name in new.services.keys() {
                add_port(&mut out, name);
            }
        }
        Scope::Changed { old, changes } => {
            for name in changes.touched() {
                add_port(&mut out, name);
            }
            // Keys the old plan had on touched ports that no touched port of the new plan has:
            // nobody owns them now (a key moving to another port makes that port touched too).
            for name in changes.updated.iter().chain(&changes.removed) {
                let Some(port) = old.services.get(name).filter(|p| cleans(p.protocol)) else {
                    continue;
                };
                for key in keys_of(port) {
                    out.entry(key).or_insert_with(|| FlowCleanup {
                        family: old.family,
                        key,
                        keep: BTreeSet::new(),
                        service: name.clone(),
                    });
                }
            }
        }
    }
    for rule in carried.iter().filter(|r| r.family == new.family) {
        if out.contains_key(&rule.key) {
            continue;
        }
        let current = new
            .services
            .get(&rule.service)
            .filter(|p| keys_of(p).any(|k| k == rule.key));
        let refreshed = match current {
            Some(port) => FlowCleanup {
                keep: keep_of(port),
                ..rule.clone()
            },
            None => FlowCleanup {
                keep: BTreeSet::new(),
                ..rule.clone()
            },
        };
        out.insert(rule.key, refreshed);
    }
    out.into_values().collect()
}

/// Only connectionless protocols keep a client on a departed endpoint (see the module doc).
fn cleans(protocol: Protocol) -> bool {
    matches!(protocol, Protocol::Udp | Protocol::Sctp)
}

fn keys_of(port: &ServicePortPlan) -> impl Iterator<Item = ServiceKey> + '_ {
    port.paths().flat_map(|p| p.keys.iter().map(|k| k.key))
}

/// The endpoints some path of the port can reach (`reachable_endpoints`): a flow to any other
/// reply source would not be set up by the rules now, so it is stale.
fn keep_of(port: &ServicePortPlan) -> BTreeSet<(IpAddr, u16)> {
    port.reachable_endpoints()
        .into_iter()
        .map(|e| (e.ip, e.port))
        .collect()
}

fn rules_of<'a>(
    family: IpFamily,
    name: &'a ServicePortName,
    port: &'a ServicePortPlan,
) -> impl Iterator<Item = FlowCleanup> + 'a {
    let keep = keep_of(port);
    keys_of(port).map(move |key| FlowCleanup {
        family,
        key,
        keep: keep.clone(),
        service: name.clone(),
    })
}

#[cfg(test)]
mod tests;
