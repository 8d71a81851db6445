//! Who owns which kernel key. Every [`ServiceKey`] of every service port is claimed here, across
//! all kinds of address at once, so no two service ports ever own one key and no key can be
//! ambiguous between a NodePort and a virtual IP. A duplicate key would otherwise make a
//! backend's whole kernel transaction fail, or let one Service capture another's traffic.
//!
//! **Precedence.** Addresses the API server allocates (cluster IPs, NodePorts) are claimed
//! first, for every Service, and always beat addresses a user or a controller writes (external
//! IPs, load-balancer ingress IPs), whatever the objects' ages. Only among equals does the older
//! object win (then namespace/name: the caller visits Services in that order). A cluster IP is
//! owned whole, every port of it: no external or load-balancer IP may equal any cluster IP.
//! This closes CVE-2020-8554 (kube-proxy lets `externalIPs` or LB status capture a cluster IP
//! or a node address), a deliberate difference from kube-proxy.

use crate::model::ObjectRef;
use crate::plan::{Protocol, ServiceKey, ServicePortName, VipKind};
use crate::warning::{ObjectKind, Skipped, Warning};
use std::collections::HashMap;
use std::net::IpAddr;

/// The owner of a key: the service port and the kind of address it claimed it as.
#[derive(Debug, Clone)]
struct Owner {
    port: ServicePortName,
    kind: VipKind,
}

/// Claimed keys, filled in two phases: [`Claims::allocated`] for every service port first,
/// then [`Claims::written`].
#[derive(Debug)]
pub(crate) struct Claims {
    keys: HashMap<ServiceKey, Owner>,
    node_ports: HashMap<(Protocol, u16), ServicePortName>,
    cluster_ips: HashMap<IpAddr, ObjectRef>,
    /// The addresses a [`ServiceKey::AnyLocal`] key covers (the node's addresses we know of):
    /// an `address:port` key on one of them would shadow that NodePort there.
    local_addresses: Vec<IpAddr>,
}

impl Claims {
    pub(crate) fn new(local_addresses: Vec<IpAddr>) -> Self {
        Self {
            keys: HashMap::new(),
            node_ports: HashMap::new(),
            cluster_ips: HashMap::new(),
            local_addresses,
        }
    }

    /// Phase 1: the API-allocated keys of one service port, its cluster IP key and its NodePort
    /// keys. Returns false (with a warning naming the owner) when any is taken; the port is then
    /// skipped whole and claims nothing.
    pub(crate) fn allocated(
        &mut self,
        name: &ServicePortName,
        index: usize,
        cluster_ip: IpAddr,
        cluster_key: ServiceKey,
        node_port: Option<(u16, &[ServiceKey])>,
        warnings: &mut Vec<Warning>,
    ) -> bool {
        let port_field = format!("spec.ports[{index}].port");
        if let Some(owner) = self
            .cluster_ips
            .get(&cluster_ip)
            .filter(|o| **o != name.service)
        {
            let problem = format!("cluster IP {cluster_ip} belongs to Service {owner}");
            warn(warnings, name, port_field, problem, Skipped::Port);
            return false;
        }
        if let Some(owner) = self.keys.get(&cluster_key) {
            let problem = taken(&cluster_key, VipKind::ClusterIp, owner);
            warn(warnings, name, port_field, problem, Skipped::Port);
            return false;
        }
        if let Some((np, keys)) = node_port {
            let field = format!("spec.ports[{index}].nodePort");
            if let Some(owner) = self.node_ports.get(&(name.protocol, np)) {
                let problem = format!("NodePort {np}/{} is already used by {owner}", name.protocol);
                warn(warnings, name, field, problem, Skipped::Port);
                return false;
            }
            if let Some((key, owner)) = keys
                .iter()
                .find_map(|k| self.keys.get(k).map(|owner| (k, owner)))
            {
                let problem = taken(key, VipKind::NodePort, owner);
                warn(warnings, name, field, problem, Skipped::Port);
                return false;
            }
            self.node_ports.insert((name.protocol, np), name.clone());
            for key in keys {
                self.own(*key, name, VipKind::NodePort);
            }
        }
        self.cluster_ips.insert(cluster_ip, name.service.clone());
        self.own(cluster_key, name, VipKind::ClusterIp);
        true
    }

    /// Phase 2: user-written addresses (external IPs or load-balancer IPs) of a service port
    /// that survived phase 1. Returns the ones it may use; each taken one is dropped with a
    /// warning naming the owner.
    pub(crate) fn written(
        &mut self,
        name: &ServicePortName,
        kind: VipKind,
        field: &str,
        ips: &[IpAddr],
        port: u16,
        warnings: &mut Vec<Warning>,
    ) -> Vec<IpAddr> {
        let protocol = name.protocol;
        let mut kept = Vec::new();
        for &ip in ips {
            let key = ServiceKey::Addr { ip, protocol, port };
            let problem = if let Some(owner) = self.keys.get(&key) {
                if owner.port == *name {
                    // The same port lists the address twice (external and LB): one key.
                    continue;
                }
                taken(&key, kind, owner)
            } else if let Some(owner) = self.cluster_ips.get(&ip) {
                format!(
                    "{key} ({kind}) is inside cluster IP {ip} of Service {owner}: cluster IPs \
                     are allocated by the API server and cannot be claimed by {kind}s"
                )
            } else if let Some(owner) = self
                .local_addresses
                .contains(&ip)
                .then(|| self.keys.get(&ServiceKey::AnyLocal { protocol, port }))
                .flatten()
            {
                format!(
                    "{key} ({kind}) is a node address, where NodePort {port}/{protocol} of {} \
                     listens (API-allocated addresses take precedence)",
                    owner.port
                )
            } else {
                self.own(key, name, kind);
                kept.push(ip);
                continue;
            };
            warn(warnings, name, field.to_string(), problem, Skipped::Address);
        }
        kept
    }

    fn own(&mut self, key: ServiceKey, port: &ServicePortName, kind: VipKind) {
        self.keys.insert(
            key,
            Owner {
                port: port.clone(),
                kind,
            },
        );
    }
}

fn taken(key: &ServiceKey, kind: VipKind, owner: &Owner) -> String {
    let why = match (is_allocated(owner.kind), is_allocated(kind)) {
        (true, false) => "API-allocated addresses take precedence",
        _ => "the older Service keeps it",
    };
    format!(
        "{key} ({kind}) is already used by {} as its {} ({why})",
        owner.port, owner.kind
    )
}

fn is_allocated(kind: VipKind) -> bool {
    matches!(kind, VipKind::ClusterIp | VipKind::NodePort)
}

fn warn(
    warnings: &mut Vec<Warning>,
    name: &ServicePortName,
    field: String,
    problem: String,
    skipped: Skipped,
) {
    warnings.push(Warning {
        kind: ObjectKind::Service,
        object: name.service.clone(),
        field,
        problem,
        skipped,
    });
}
