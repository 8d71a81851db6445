//! What the kernel should hold (from the plan) and what it holds (as committed), and the
//! operations between them. Decides nothing about traffic: the plan's paths say which
//! endpoint sets exist and which rules masquerade; this only lays them out as virtual services.

use crate::config::IpvsConfig;
use crate::ops::{Op, ServiceSpec};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;
use switchyard_core::plan::{
    PathPlan, ProxyPlan, ServiceKey, ServicePortName, ServicePortPlan, VipKind,
};
use switchyard_core::Protocol;
use switchyard_nftables::Marks;

/// Weight of a destination that takes new connections.
pub const ACTIVE: u32 = 1;

/// One virtual service as wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub spec: ServiceSpec,
    pub dests: BTreeSet<SocketAddr>,
}

/// The virtual services of one service port, by mark (the masquerade bit included: a path
/// whose rules masquerade some sources and not others gets both variants, with the same
/// destinations), and the addresses it needs on the dummy interface.
pub fn wanted(
    plan: &ProxyPlan,
    name: &ServicePortName,
    svc: &ServicePortPlan,
    marks: &Marks,
    config: &IpvsConfig,
) -> (BTreeMap<u32, Wanted>, BTreeSet<IpAddr>) {
    let mut out = BTreeMap::new();
    let sched_flags = config
        .scheduler_flags
        .iter()
        .fold(0, |acc, f| acc | f.bits());
    for path in svc.paths() {
        for target in path.endpoint_targets() {
            let Some(&mark) = marks.get(&(name.clone(), target)) else {
                continue;
            };
            let dests: BTreeSet<SocketAddr> = svc
                .endpoints_for(target)
                .iter()
                .map(|e| SocketAddr::new(e.ip, e.port))
                .collect();
            for rule in path.rules.iter().filter(|r| r.target == target) {
                let fwmark = if rule.masquerade {
                    mark | switchyard_nftables::MASQ_MARK
                } else {
                    mark
                };
                let persistent = svc.affinity_timeout_seconds;
                out.insert(
                    fwmark,
                    Wanted {
                        spec: ServiceSpec {
                            family: plan.family,
                            fwmark,
                            scheduler: config.scheduler.clone(),
                            flags: sched_flags
                                | persistent
                                    .map_or(0, |_| crate::netlink::service::IP_VS_SVC_F_PERSISTENT),
                            timeout: persistent.unwrap_or(0),
                        },
                        dests: dests.clone(),
                    },
                );
            }
        }
    }
    (out, vips(plan, svc))
}

/// Addresses bound to the dummy interface so that traffic to them is delivered locally,
/// where IPVS takes it: the plan's cluster, external and load-balancer keys (not node
/// addresses, which are local already).
fn vips(plan: &ProxyPlan, svc: &ServicePortPlan) -> BTreeSet<IpAddr> {
    svc.paths()
        .flat_map(|p: &PathPlan| &p.keys)
        .filter_map(|k| match (k.kind, k.key) {
            (VipKind::NodePort, _) | (_, ServiceKey::AnyLocal { .. }) => None,
            (_, ServiceKey::Addr { ip, .. }) if plan.node_ips.contains(&ip) => None,
            (_, ServiceKey::Addr { ip, .. }) => Some(ip),
        })
        .collect()
}

/// A destination in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dest {
    pub weight: u32,
    /// Set while it drains (weight 0): removed or terminating, kept until its connections end.
    pub draining_since: Option<Instant>,
}

/// A virtual service in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub spec: ServiceSpec,
    /// `None`: adopted from an earlier run, owner unknown until a full sync claims it.
    pub owner: Option<ServicePortName>,
    /// UDP destinations are deleted at once (no connection end to wait for).
    pub udp: bool,
    pub dests: BTreeMap<SocketAddr, Dest>,
}

/// What the kernel holds, as far as we own it.
#[derive(Debug, Default, Clone)]
pub struct Kernel {
    pub services: BTreeMap<u32, Service>,
    pub by_owner: BTreeMap<ServicePortName, BTreeSet<u32>>,
    /// Each bound address and the service ports that need it.
    pub vips: BTreeMap<IpAddr, BTreeSet<ServicePortName>>,
    /// `vips` the other way round (each service port's addresses), so a partial sync looks
    /// up one service port's addresses instead of scanning every address: at 10k services
    /// the scans made one endpoint change cost 10x what it cost at 1k (DESIGN-NOTES 263).
    pub vips_of: BTreeMap<ServicePortName, BTreeSet<IpAddr>>,
    /// Marks of services that have a draining destination (weight 0), for `drain`.
    pub draining: BTreeSet<u32>,
    /// Addresses found on the interface that no service port claimed yet.
    pub unclaimed_vips: BTreeSet<IpAddr>,
}

/// An operation and the service port it was built for.
pub type Owned = (Op, Option<ServicePortName>);

/// Operations from a diff, in the order they must run around the helper rules.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Addresses, services and destinations to add or change: before the rules mark traffic.
    pub before: Vec<Owned>,
    /// Services and addresses to delete: after the rules stopped marking traffic for them.
    pub after: Vec<Owned>,
}

/// The diff for `names` (every service port for a full sync, with `full`: then whatever
/// else the kernel holds of ours goes too).
pub fn diff<'a>(
    kernel: &Kernel,
    plan: &ProxyPlan,
    names: impl IntoIterator<Item = &'a ServicePortName>,
    marks: &Marks,
    config: &IpvsConfig,
    full: bool,
) -> Plan {
    let mut p = Plan::default();
    let mut claimed: BTreeSet<u32> = BTreeSet::new();
    let mut vip_delta: BTreeMap<IpAddr, (BTreeSet<ServicePortName>, BTreeSet<ServicePortName>)> =
        BTreeMap::new();
    for name in names {
        let (want, want_vips) = match plan.services.get(name) {
            Some(svc) => wanted(plan, name, svc, marks, config),
            None => Default::default(),
        };
        let owner = Some(name.clone());
        let udp = name.protocol == Protocol::Udp;
        for (&mark, w) in &want {
            claimed.insert(mark);
            match kernel.services.get(&mark) {
                None => {
                    p.before
                        .push((Op::AddService(w.spec.clone()), owner.clone()));
                    for d in &w.dests {
                        p.before.push((dest_op(w, *d, false), owner.clone()));
                    }
                }
                Some(k) => {
                    if k.spec != w.spec {
                        p.before
                            .push((Op::EditService(w.spec.clone()), owner.clone()));
                    }
                    for d in &w.dests {
                        match k.dests.get(d) {
                            None => p.before.push((dest_op(w, *d, false), owner.clone())),
                            Some(kd) if kd.weight != ACTIVE => {
                                p.before.push((dest_op(w, *d, true), owner.clone()))
                            }
                            Some(_) => {}
                        }
                    }
                    for (d, kd) in &k.dests {
                        if w.dests.contains(d) || kd.weight == 0 {
                            continue;
                        }
                        p.before.push((drain_op(&w.spec, *d, udp), owner.clone()));
                    }
                }
            }
        }
        for mark in kernel.by_owner.get(name).into_iter().flatten() {
            if !want.contains_key(mark) {
                p.after.push((del_service(plan, *mark), owner.clone()));
            }
        }
        // Address references of this service port: old (kernel) and new.
        for ip in kernel.vips_of.get(name).into_iter().flatten() {
            if !want_vips.contains(ip) {
                vip_delta.entry(*ip).or_default().1.insert(name.clone());
            }
        }
        for ip in want_vips {
            vip_delta.entry(ip).or_default().0.insert(name.clone());
        }
    }
    for (ip, (add, gone)) in &vip_delta {
        let before: BTreeSet<&ServicePortName> =
            kernel.vips.get(ip).into_iter().flatten().collect();
        let after: usize = before
            .iter()
            .filter(|o| !gone.contains(**o) && !add.contains(**o))
            .count()
            + add.len();
        let bound = !before.is_empty() || kernel.unclaimed_vips.contains(ip);
        if after > 0 && !bound {
            p.before
                .push((Op::AddAddress(*ip), add.iter().next().cloned()));
        } else if after == 0 && bound && !full {
            p.after
                .push((Op::DelAddress(*ip), gone.iter().next().cloned()));
        }
    }
    if full {
        for (mark, k) in &kernel.services {
            if !claimed.contains(mark) {
                p.after.push((del_service(plan, *mark), k.owner.clone()));
            }
        }
        let wanted_ips: BTreeSet<IpAddr> = vip_delta
            .iter()
            .filter(|(_, (add, _))| !add.is_empty())
            .map(|(ip, _)| *ip)
            .collect();
        let bound: BTreeSet<IpAddr> = kernel
            .vips
            .keys()
            .chain(&kernel.unclaimed_vips)
            .copied()
            .collect();
        for ip in bound.difference(&wanted_ips) {
            p.after.push((Op::DelAddress(*ip), None));
        }
    }
    p
}

fn dest_op(w: &Wanted, dest: SocketAddr, edit: bool) -> Op {
    Op::Dest {
        family: w.spec.family,
        fwmark: w.spec.fwmark,
        dest,
        weight: ACTIVE,
        edit,
    }
}

/// A destination leaves: UDP at once; otherwise weight 0, deleted once drained.
fn drain_op(spec: &ServiceSpec, dest: SocketAddr, udp: bool) -> Op {
    if udp {
        Op::DelDest {
            family: spec.family,
            fwmark: spec.fwmark,
            dest,
        }
    } else {
        Op::Dest {
            family: spec.family,
            fwmark: spec.fwmark,
            dest,
            weight: 0,
            edit: true,
        }
    }
}

fn del_service(plan: &ProxyPlan, fwmark: u32) -> Op {
    Op::DelService {
        family: plan.family,
        fwmark,
    }
}

impl Kernel {
    /// Records a successful operation.
    pub fn record(&mut self, op: &Op, owner: Option<&ServicePortName>, now: Instant) {
        match op {
            Op::AddAddress(ip) => {
                self.unclaimed_vips.remove(ip);
                self.vips.entry(*ip).or_default();
                if let Some(o) = owner {
                    self.bind(*ip, o);
                }
            }
            Op::DelAddress(ip) => {
                for o in self.vips.remove(ip).into_iter().flatten() {
                    self.unbind(*ip, &o);
                }
                self.unclaimed_vips.remove(ip);
            }
            Op::AddService(spec) | Op::EditService(spec) => {
                let udp = owner.is_some_and(|o| o.protocol == Protocol::Udp);
                let s = self.services.entry(spec.fwmark).or_insert_with(|| Service {
                    spec: spec.clone(),
                    owner: None,
                    udp,
                    dests: BTreeMap::new(),
                });
                s.spec = spec.clone();
                s.udp = udp;
                self.claim(spec.fwmark, owner);
            }
            Op::Dest {
                fwmark,
                dest,
                weight,
                ..
            } => {
                if let Some(s) = self.services.get_mut(fwmark) {
                    s.dests.insert(
                        *dest,
                        Dest {
                            weight: *weight,
                            draining_since: (*weight == 0).then_some(now),
                        },
                    );
                    if *weight == 0 {
                        self.draining.insert(*fwmark);
                    }
                }
                self.claim(*fwmark, owner);
            }
            Op::DelDest { fwmark, dest, .. } => {
                if let Some(s) = self.services.get_mut(fwmark) {
                    s.dests.remove(dest);
                }
            }
            Op::DelService { fwmark, .. } => {
                self.draining.remove(fwmark);
                if let Some(s) = self.services.remove(fwmark) {
                    if let Some(o) = s.owner {
                        if let Some(set) = self.by_owner.get_mut(&o) {
                            set.remove(fwmark);
                            if set.is_empty() {
                                self.by_owner.remove(&o);
                            }
                        }
                    }
                }
            }
        }
    }

    fn claim(&mut self, fwmark: u32, owner: Option<&ServicePortName>) {
        let Some(o) = owner else { return };
        if let Some(s) = self.services.get_mut(&fwmark) {
            if s.owner.as_ref() != Some(o) {
                if let Some(old) = s.owner.replace(o.clone()) {
                    if let Some(set) = self.by_owner.get_mut(&old) {
                        set.remove(&fwmark);
                    }
                }
                s.udp = o.protocol == Protocol::Udp;
            }
            self.by_owner.entry(o.clone()).or_default().insert(fwmark);
        }
    }

    /// After a sync of `names`: every service port claims the addresses it needs, the others
    /// release theirs.
    pub fn claim_vips<'a>(
        &mut self,
        plan: &ProxyPlan,
        names: impl IntoIterator<Item = &'a ServicePortName>,
    ) {
        // Addresses a port keeps, or another port of this sync takes over, stay bound: the
        // released entries are emptied first and dropped only if still empty at the end.
        let mut released: Vec<IpAddr> = Vec::new();
        for name in names {
            let want = plan
                .services
                .get(name)
                .map(|svc| vips(plan, svc))
                .unwrap_or_default();
            for ip in self.vips_of.remove(name).unwrap_or_default() {
                if let Some(owners) = self.vips.get_mut(&ip) {
                    owners.remove(name);
                }
                released.push(ip);
            }
            for ip in want {
                if self.vips.contains_key(&ip) || self.unclaimed_vips.remove(&ip) {
                    self.bind(ip, name);
                }
            }
        }
        for ip in released {
            if self.vips.get(&ip).is_some_and(BTreeSet::is_empty) {
                self.vips.remove(&ip);
            }
        }
    }

    /// Records that service port `name` needs the bound address `ip`.
    fn bind(&mut self, ip: IpAddr, name: &ServicePortName) {
        self.vips.entry(ip).or_default().insert(name.clone());
        self.vips_of.entry(name.clone()).or_default().insert(ip);
    }

    fn unbind(&mut self, ip: IpAddr, name: &ServicePortName) {
        if let Some(ips) = self.vips_of.get_mut(name) {
            ips.remove(&ip);
            if ips.is_empty() {
                self.vips_of.remove(name);
            }
        }
    }

    /// Marks the services that have draining destinations again from scratch (after adopting
    /// what the kernel holds).
    pub fn find_draining(&mut self) {
        self.draining = self
            .services
            .iter()
            .filter(|(_, s)| s.dests.values().any(|d| d.draining_since.is_some()))
            .map(|(m, _)| *m)
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::model::ObjectRef;
    use switchyard_core::plan::IpFamily;

    fn name(n: &str) -> ServicePortName {
        ServicePortName {
            service: ObjectRef::new("default", n),
            port: String::new(),
            protocol: Protocol::Tcp,
        }
    }

    /// The indexes a partial sync reads instead of scanning (note 263) follow every
    /// recorded operation: each address's owners and each owner's addresses agree, and a
    /// mark is listed as draining exactly while one of its destinations has weight 0.
    #[test]
    fn reverse_indexes_follow_recorded_operations() {
        let (a, b) = (name("a"), name("b"));
        let vip: IpAddr = "10.96.0.10".parse().expect("test address");
        let now = Instant::now();
        let mut k = Kernel::default();
        k.record(&Op::AddAddress(vip), Some(&a), now);
        k.record(&Op::AddAddress(vip), Some(&b), now);
        assert_eq!(k.vips_of.get(&a), Some(&BTreeSet::from([vip])));
        assert_eq!(k.vips.get(&vip).map(BTreeSet::len), Some(2));
        k.record(&Op::DelAddress(vip), None, now);
        assert!(k.vips.is_empty() && k.vips_of.is_empty(), "{k:?}");

        let spec = ServiceSpec {
            family: IpFamily::V4,
            fwmark: 0x8000,
            scheduler: "rr".into(),
            flags: 0,
            timeout: 0,
        };
        let dest: SocketAddr = "10.244.1.10:8080".parse().expect("test address");
        let weight = |weight| Op::Dest {
            family: IpFamily::V4,
            fwmark: 0x8000,
            dest,
            weight,
            edit: true,
        };
        k.record(&Op::AddService(spec), Some(&a), now);
        k.record(&weight(1), Some(&a), now);
        assert!(k.draining.is_empty());
        k.record(&weight(0), Some(&a), now);
        assert_eq!(k.draining, BTreeSet::from([0x8000]));
        let deleted = Op::DelService {
            family: IpFamily::V4,
            fwmark: 0x8000,
        };
        k.record(&deleted, Some(&a), now);
        assert!(k.draining.is_empty() && k.services.is_empty());
    }

    fn plan_with(services: &[(&str, &str)]) -> ProxyPlan {
        use switchyard_core::model::{ClusterState, ObjectMeta, Service, ServicePort};
        let mut state = ClusterState::default();
        for (n, ip) in services {
            let svc = Service {
                meta: ObjectMeta::new("default", *n),
                cluster_ips: vec![(*ip).to_string()],
                ports: vec![ServicePort {
                    name: String::new(),
                    port: 80,
                    protocol: Some("TCP".into()),
                    node_port: None,
                }],
                ..Service::default()
            };
            state.services.insert(ObjectRef::new("default", *n), svc);
        }
        switchyard_core::plan(
            &state,
            &switchyard_core::ProxyConfig::new(IpFamily::V4, "node-a"),
        )
    }

    /// A partial sync of a port that keeps its address leaves it bound; a port that goes
    /// releases it (and `vips_of` agrees with `vips` throughout).
    #[test]
    fn claimed_addresses_survive_partial_syncs_of_their_port() {
        let a = name("a");
        let vip: IpAddr = "10.96.0.10".parse().expect("test address");
        let now = Instant::now();
        let mut k = Kernel::default();
        k.record(&Op::AddAddress(vip), Some(&a), now);
        let with_a = plan_with(&[("a", "10.96.0.10"), ("b", "10.96.0.11")]);
        k.claim_vips(&with_a, [&a]);
        k.claim_vips(&with_a, [&a]);
        assert_eq!(k.vips.get(&vip), Some(&BTreeSet::from([a.clone()])));
        assert_eq!(k.vips_of.get(&a), Some(&BTreeSet::from([vip])));
        let without_a = plan_with(&[("b", "10.96.0.11")]);
        k.claim_vips(&without_a, [&a]);
        assert!(k.vips.is_empty() && k.vips_of.is_empty(), "{k:?}");
    }
}
