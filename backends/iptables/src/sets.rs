//! The ipsets that keep the datapath sub-linear: what they should contain for a plan, and the
//! `ipset restore` text that gets them there.
//!
//! Every entry comes from the plan's keys (`PathPlan::keys`): nothing here computes an address
//! or a port from a service's fields.

use crate::names::SetNames;
use std::collections::BTreeSet;
use std::fmt::{self, Display, Formatter, Write as _};
use std::net::IpAddr;
use switchyard_core::plan::{
    IpFamily, PathPlan, Protocol, ProxyPlan, ServiceKey, ServicePortPlan, Target, VipKind,
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

/// Where the nat dispatch sends one key of a service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// A key of the internal path (the cluster IP): to the `svc` chain.
    Internal,
    /// A key of the external path (NodePort, external IP, LB IP): to the `ext` chain.
    External,
    /// A load-balancer IP with source ranges: to the `fw` chain.
    Firewall,
}

/// Every key of a service port the nat dispatch handles, with where it goes: the keys of each
/// path that translates some traffic (`PathPlan::translates`). Keys of paths that never
/// translate (reject/drop only) are not dispatched at all; the filter sets handle them. With
/// source ranges, every load-balancer key goes to the firewall chain whatever the path does: it
/// must drop disallowed sources even when allowed ones would be rejected.
pub fn dispatch_entries(svc: &ServicePortPlan) -> Vec<(ServiceKey, Entry)> {
    let mut out = Vec::new();
    if svc.internal.translates() {
        out.extend(svc.internal.keys.iter().map(|k| (k.key, Entry::Internal)));
    }
    if let Some(ext) = &svc.external {
        let translates = ext.translates();
        for k in &ext.keys {
            if k.kind == VipKind::LoadBalancerIp && svc.source_ranges.is_some() {
                out.push((k.key, Entry::Firewall));
            } else if translates {
                out.push((k.key, Entry::External));
            }
        }
    }
    out
}

/// A key as a `hash:ip,port` entry; `None` for keys on any local address (those are matched by
/// `addrtype`, not by a set).
pub fn addr_key(key: &ServiceKey) -> Option<Key> {
    match *key {
        ServiceKey::Addr { ip, protocol, port } => Some((ip, protocol, port)),
        ServiceKey::AnyLocal { .. } => None,
    }
}

/// What the filter does with a path's traffic that nat left untranslated: its fallback, when
/// that is reject or drop.
pub fn refusal(path: &PathPlan) -> Option<Target> {
    match path.fallback() {
        t @ (Target::Reject | Target::Drop) => Some(t),
        Target::Cluster | Target::Local => None,
    }
}

impl SetContents {
    /// What the sets must hold for `plan`.
    pub fn for_plan(plan: &ProxyPlan) -> Self {
        let mut c = Self::default();
        for svc in plan.services.values() {
            c.add_service(svc);
        }
        c
    }

    fn add_service(&mut self, svc: &ServicePortPlan) {
        self.cluster_ips.extend(
            svc.paths()
                .flat_map(|p| &p.keys)
                .filter(|k| k.kind == VipKind::ClusterIp)
                .filter_map(|k| addr_key(&k.key))
                .map(|(ip, _, _)| ip),
        );
        self.vips.extend(
            dispatch_entries(svc)
                .iter()
                .filter_map(|(k, _)| addr_key(k)),
        );
        for path in svc.paths() {
            let set = match refusal(path) {
                Some(Target::Reject) => &mut self.reject,
                Some(Target::Drop) => &mut self.drop,
                _ => continue,
            };
            set.extend(path.keys.iter().filter_map(|k| addr_key(&k.key)));
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
