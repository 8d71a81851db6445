//! The ipsets that keep the datapath sub-linear: what they should contain for a plan, and the
//! `ipset restore` text that gets them there.

use crate::names::SetNames;
use std::collections::BTreeSet;
use std::fmt::{self, Display, Formatter, Write as _};
use std::net::IpAddr;
use switchyard_core::plan::{
    IpFamily, NodePortListen, Protocol, ProxyPlan, ServicePortPlan, Target,
};

/// An `address,proto:port` entry of a `hash:ip,port` set.
pub type Key = (IpAddr, Protocol, u16);

/// The desired contents of the family's sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetContents {
    pub vips: BTreeSet<Key>,
    pub reject: BTreeSet<Key>,
    pub drop: BTreeSet<Key>,
    pub cluster_ips: BTreeSet<IpAddr>,
}

/// Where the nat dispatch sends one address:port of a service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// The cluster IP: to the `SVC` chain.
    Cluster,
    /// An external IP or a NodePort address: to the `EXT` chain.
    External,
    /// A load-balancer IP with source ranges: to the `FW` chain.
    Firewall,
}

/// Every address:port of a service port the nat dispatch handles, with where it goes. Keys whose
/// traffic is never DNATed (reject/drop targets) are not dispatched at all; the filter sets
/// handle them.
pub fn dispatch_entries(plan: &ProxyPlan, svc: &ServicePortPlan) -> Vec<(Key, Entry)> {
    let mut out = Vec::new();
    let dnat = |t: Target| matches!(t, Target::Cluster | Target::Local);
    if dnat(svc.internal.fallback()) {
        out.push(((svc.cluster_ip, svc.protocol, svc.port), Entry::Cluster));
    }
    if let Some(ext) = svc.external.as_ref().map(crate::interim_old_external) {
        let dispatch = dnat(ext.target) || ext.short_circuit;
        // With source ranges the firewall chain sees every LB connection, DNATed or not: it
        // must drop disallowed sources even when allowed ones would be rejected.
        for ip in &svc.load_balancer_ips {
            if svc.source_ranges.is_some() {
                out.push(((*ip, svc.protocol, svc.port), Entry::Firewall));
            } else if dispatch {
                out.push(((*ip, svc.protocol, svc.port), Entry::External));
            }
        }
        if dispatch {
            for ip in &svc.external_ips {
                out.push(((*ip, svc.protocol, svc.port), Entry::External));
            }
            if let (Some(np), NodePortListen::Addresses(addrs)) =
                (svc.node_port, &plan.node_port_addresses)
            {
                for ip in addrs {
                    out.push(((*ip, svc.protocol, np), Entry::External));
                }
            }
        }
    }
    out
}

/// The external keys of a service port (external IPs, LB IPs, NodePort addresses).
fn external_keys(plan: &ProxyPlan, svc: &ServicePortPlan) -> Vec<Key> {
    let mut keys: Vec<Key> = svc
        .external_vips()
        .map(|(_, ip)| (ip, svc.protocol, svc.port))
        .collect();
    if let (Some(np), NodePortListen::Addresses(addrs)) = (svc.node_port, &plan.node_port_addresses)
    {
        keys.extend(addrs.iter().map(|ip| (*ip, svc.protocol, np)));
    }
    keys
}

impl SetContents {
    /// What the sets must hold for `plan`.
    pub fn for_plan(plan: &ProxyPlan) -> Self {
        let mut c = Self::default();
        for svc in plan.services.values() {
            c.add_service(plan, svc);
        }
        c
    }

    fn add_service(&mut self, plan: &ProxyPlan, svc: &ServicePortPlan) {
        self.cluster_ips.insert(svc.cluster_ip);
        self.vips
            .extend(dispatch_entries(plan, svc).into_iter().map(|(k, _)| k));
        let cluster_key = (svc.cluster_ip, svc.protocol, svc.port);
        match svc.internal.fallback() {
            Target::Reject => {
                self.reject.insert(cluster_key);
            }
            Target::Drop => {
                self.drop.insert(cluster_key);
            }
            Target::Cluster | Target::Local => {}
        }
        if let Some(ext) = svc.external.as_ref().map(crate::interim_old_external) {
            let keys = external_keys(plan, svc);
            match ext.target {
                Target::Reject => self.reject.extend(keys),
                Target::Drop => self.drop.extend(keys),
                Target::Cluster | Target::Local => {}
            }
        }
    }
}

/// One line of `ipset restore` input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetOp {
    /// `create NAME hash:ip,port|hash:ip family inet|inet6 ... -exist`
    Create {
        name: String,
        with_port: bool,
        family: IpFamily,
    },
    Add {
        name: String,
        entry: String,
    },
    Del {
        name: String,
        entry: String,
    },
    Flush(String),
    Swap(String, String),
    Destroy(String),
}

impl Display for SetOp {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Self::Create {
                name,
                with_port,
                family,
            } => {
                let kind = if *with_port {
                    "hash:ip,port"
                } else {
                    "hash:ip"
                };
                let fam = match family {
                    IpFamily::V4 => "inet",
                    IpFamily::V6 => "inet6",
                };
                write!(
                    f,
                    "create {name} {kind} family {fam} hashsize 1024 maxelem 1048576 -exist"
                )
            }
            Self::Add { name, entry } => write!(f, "add {name} {entry} -exist"),
            Self::Del { name, entry } => write!(f, "del {name} {entry} -exist"),
            Self::Flush(name) => write!(f, "flush {name}"),
            Self::Swap(a, b) => write!(f, "swap {a} {b}"),
            Self::Destroy(name) => write!(f, "destroy {name}"),
        }
    }
}

fn key_entry((ip, proto, port): &Key) -> String {
    format!("{ip},{}:{port}", proto.lower())
}

/// `create` for every set of the family.
pub fn create_all(names: &SetNames, family: IpFamily) -> Vec<SetOp> {
    names
        .all()
        .into_iter()
        .map(|name| SetOp::Create {
            name: name.to_string(),
            with_port: name != names.cluster_ips,
            family,
        })
        .collect()
}

/// Adds and deletes that turn `old` into `new`: adds first (run before the rules change), deletes
/// second (run after), so a guard never misses an address whose rules still exist.
pub fn diff_ops(
    names: &SetNames,
    old: &SetContents,
    new: &SetContents,
) -> (Vec<SetOp>, Vec<SetOp>) {
    let mut adds = Vec::new();
    let mut dels = Vec::new();
    let keyed = [
        (&names.vips, &old.vips, &new.vips),
        (&names.reject, &old.reject, &new.reject),
        (&names.drop, &old.drop, &new.drop),
    ];
    for (name, old, new) in keyed {
        for k in new.difference(old) {
            adds.push(SetOp::Add {
                name: name.clone(),
                entry: key_entry(k),
            });
        }
        for k in old.difference(new) {
            dels.push(SetOp::Del {
                name: name.clone(),
                entry: key_entry(k),
            });
        }
    }
    for ip in new.cluster_ips.difference(&old.cluster_ips) {
        adds.push(SetOp::Add {
            name: names.cluster_ips.clone(),
            entry: ip.to_string(),
        });
    }
    for ip in old.cluster_ips.difference(&new.cluster_ips) {
        dels.push(SetOp::Del {
            name: names.cluster_ips.clone(),
            entry: ip.to_string(),
        });
    }
    (adds, dels)
}

/// A full replacement: fill temporary sets and swap them in, so the live sets go from the old
/// contents to exactly the new ones in one step each, whatever they held before (after a
/// restart we do not know).
pub fn replace_ops(names: &SetNames, family: IpFamily, new: &SetContents) -> Vec<SetOp> {
    let tmp = |n: &str| format!("{n}-T");
    let mut ops = Vec::new();
    let fill: [(&String, Vec<String>); 4] = [
        (&names.vips, new.vips.iter().map(key_entry).collect()),
        (&names.reject, new.reject.iter().map(key_entry).collect()),
        (&names.drop, new.drop.iter().map(key_entry).collect()),
        (
            &names.cluster_ips,
            new.cluster_ips.iter().map(ToString::to_string).collect(),
        ),
    ];
    for (name, entries) in fill {
        let t = tmp(name);
        ops.push(SetOp::Create {
            name: t.clone(),
            with_port: *name != names.cluster_ips,
            family,
        });
        ops.push(SetOp::Flush(t.clone()));
        ops.extend(entries.into_iter().map(|entry| SetOp::Add {
            name: t.clone(),
            entry,
        }));
        ops.push(SetOp::Swap(name.clone(), t.clone()));
        ops.push(SetOp::Destroy(t));
    }
    ops
}

/// `ipset restore` input for these ops.
pub fn restore_text(ops: &[SetOp]) -> String {
    let mut s = String::new();
    for op in ops {
        let _ = writeln!(s, "{op}");
    }
    s
}
