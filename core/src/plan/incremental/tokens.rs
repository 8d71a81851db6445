//! Which Services can change each other's key claims.
//!
//! Every lookup [`Claims`](super::super::claims::Claims) makes is of a *token*: a cluster IP
//! (owned whole), a kernel key, or a NodePort number. A Service *writes* the tokens it claims
//! (its cluster IP, its cluster-IP, NodePort, external and load-balancer keys) and *reads* the
//! ones it only checks (a written address equal to some cluster IP; a written address on a
//! node address, against NodePorts on every local address). Two Services interact only
//! through a token that at least one of them writes. Running the claims over a set of
//! Services closed under that relation therefore gives each of them exactly the outcome the
//! full plan gives: every entry a member looks up was written by a member, in the same order.
//! Services that share only read tokens (many Services on one shared load-balancer IP, each
//! on its own port) stay independent.

use super::super::{node_port_keys, NodeInputs, ServiceKey};
use crate::model::ObjectRef;
use crate::plan::service::ValidService;
use crate::plan::Protocol;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Token {
    ClusterIp(IpAddr),
    Key(ServiceKey),
    NodePort(Protocol, u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Use {
    Reads,
    Writes,
}

/// Every token a valid Service's claims look up, each once (writing dominates reading).
/// A superset is harmless (it only widens what is re-claimed together); a missing token
/// would not be, so this mirrors `Claims::allocated` and `Claims::written` lookup by lookup.
pub(super) fn tokens_of(valid: &ValidService, node: &NodeInputs) -> Vec<(Token, Use)> {
    let mut tokens: BTreeMap<Token, Use> = BTreeMap::new();
    let mut add = |token, use_| {
        let entry = tokens.entry(token).or_insert(use_);
        *entry = (*entry).max(use_);
    };
    add(Token::ClusterIp(valid.cluster_ip), Use::Writes);
    for port in &valid.ports {
        let (protocol, number) = (port.protocol, port.port);
        add(
            Token::Key(ServiceKey::Addr {
                ip: valid.cluster_ip,
                protocol,
                port: number,
            }),
            Use::Writes,
        );
        if let Some(np) = port.node_port {
            add(Token::NodePort(protocol, np), Use::Writes);
            for key in node_port_keys(&node.node_port_addresses, protocol, np) {
                add(Token::Key(key), Use::Writes);
            }
        }
        for &ip in valid.external_ips.iter().chain(&valid.load_balancer_ips) {
            add(
                Token::Key(ServiceKey::Addr {
                    ip,
                    protocol,
                    port: number,
                }),
                Use::Writes,
            );
            add(Token::ClusterIp(ip), Use::Reads);
            if node.local_addresses.contains(&ip) {
                add(
                    Token::Key(ServiceKey::AnyLocal {
                        protocol,
                        port: number,
                    }),
                    Use::Reads,
                );
            }
        }
    }
    tokens.into_iter().collect()
}

/// Token → the Services using it.
#[derive(Debug, Default)]
pub(super) struct TokenIndex {
    users: HashMap<Token, Vec<(ObjectRef, Use)>>,
}

impl TokenIndex {
    pub(super) fn insert(&mut self, service: &ObjectRef, tokens: &[(Token, Use)]) {
        for (token, use_) in tokens {
            self.users
                .entry(*token)
                .or_default()
                .push((service.clone(), *use_));
        }
    }

    pub(super) fn remove(&mut self, service: &ObjectRef, tokens: &[(Token, Use)]) {
        for (token, _) in tokens {
            if let Some(users) = self.users.get_mut(token) {
                users.retain(|(s, _)| s != service);
                if users.is_empty() {
                    self.users.remove(token);
                }
            }
        }
    }

    /// Adds to `out` the seeds and every Service connected to them (transitively) through a
    /// token one side writes. `tokens` gives a Service's tokens (none for an invalid one).
    pub(super) fn close<'a>(
        &self,
        seeds: impl IntoIterator<Item = &'a ObjectRef>,
        tokens: impl Fn(&ObjectRef) -> Option<&'a [(Token, Use)]>,
        out: &mut BTreeSet<ObjectRef>,
    ) {
        // Seeds are explored even when `out` already holds them: a second pass over the same
        // seeds (after their tokens changed) must follow their new tokens.
        let mut queue: Vec<ObjectRef> = Vec::new();
        let mut explored = BTreeSet::new();
        for seed in seeds {
            out.insert(seed.clone());
            queue.push(seed.clone());
        }
        while let Some(service) = queue.pop() {
            if !explored.insert(service.clone()) {
                continue;
            }
            for (token, use_) in tokens(&service).unwrap_or_default() {
                for (other, other_use) in self.users.get(token).into_iter().flatten() {
                    let connected = *use_ == Use::Writes || *other_use == Use::Writes;
                    if connected && !explored.contains(other) {
                        out.insert(other.clone());
                        queue.push(other.clone());
                    }
                }
            }
        }
    }
}
