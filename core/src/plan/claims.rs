//! Cross-Service collisions: two Services may not own the same NodePort or the same
//! `address:port/protocol`. The API server prevents most of these, but manifests, races and
//! bugs do not, and a duplicate key would make a backend's whole kernel transaction fail.

use super::service::{ValidPort, ValidService};
use crate::plan::{Protocol, ServicePortName};
use crate::warning::{ObjectKind, Skipped, Warning};
use std::collections::HashMap;
use std::net::IpAddr;

/// Who owns which NodePort and virtual `address:port/protocol`, first come first served.
#[derive(Debug, Default)]
pub(crate) struct Claims {
    node_ports: HashMap<(Protocol, u16), ServicePortName>,
    vips: HashMap<(IpAddr, Protocol, u16), ServicePortName>,
}

impl Claims {
    /// Claims what `port` needs. Returns the external and load-balancer IPs it may use (a taken
    /// one is dropped with a warning), or `None` when the port's cluster IP or NodePort is taken,
    /// in which case the port is skipped whole and claims nothing.
    pub(crate) fn claim(
        &mut self,
        name: &ServicePortName,
        port: &ValidPort,
        svc: &ValidService,
        warnings: &mut Vec<Warning>,
    ) -> Option<(Vec<IpAddr>, Vec<IpAddr>)> {
        let mut warn = |field: String, owner: &ServicePortName, what: String, skipped| {
            warnings.push(Warning {
                kind: ObjectKind::Service,
                object: name.service.clone(),
                field,
                problem: format!("{what} is already used by {owner}"),
                skipped,
            });
        };
        let proto = port.protocol;
        let cluster_key = (svc.cluster_ip, proto, port.port);
        if let Some(owner) = self.vips.get(&cluster_key) {
            let what = format!("{}:{}/{proto}", svc.cluster_ip, port.port);
            warn(
                format!("spec.ports[{}].port", port.index),
                owner,
                what,
                Skipped::Port,
            );
            return None;
        }
        if let Some(node_port) = port.node_port {
            if let Some(owner) = self.node_ports.get(&(proto, node_port)) {
                let what = format!("NodePort {node_port}/{proto}");
                warn(
                    format!("spec.ports[{}].nodePort", port.index),
                    owner,
                    what,
                    Skipped::Port,
                );
                return None;
            }
            self.node_ports.insert((proto, node_port), name.clone());
        }
        self.vips.insert(cluster_key, name.clone());

        let mut keep = |ips: &[IpAddr], field: &str| -> Vec<IpAddr> {
            let mut kept = Vec::new();
            for ip in ips {
                let key = (*ip, proto, port.port);
                match self.vips.get(&key) {
                    Some(owner) if owner != name => {
                        let what = format!("{ip}:{}/{proto}", port.port);
                        warn(field.to_string(), owner, what, Skipped::Address);
                    }
                    Some(_) => {} // the same port lists the address twice (e.g. external and LB)
                    None => {
                        self.vips.insert(key, name.clone());
                        kept.push(*ip);
                    }
                }
            }
            kept
        };
        let external = keep(&svc.external_ips, "spec.externalIPs");
        let load_balancer = keep(&svc.load_balancer_ips, "status.loadBalancer.ingress");
        Some((external, load_balancer))
    }
}
