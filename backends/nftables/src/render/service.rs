//! One service port's objects. Without session affinity it owns no chain and no rule, only
//! elements: its keys in a shape set, each key's endpoints in the slot maps, and hairpin pairs.

use super::ipvs::Marks;
use super::slots::stable_order;
use super::{
    chain_path, key_of, kind_of, Bundle, Features, Kind, Need, ServiceObjects, Shape, Slots,
};
use crate::expr::Verdict;
use crate::names as n;
use crate::objects::{Elem, ElemData, Key};
use crate::stmt::{KeySrc, Stmt};
use ipnet::IpNet;
use std::net::SocketAddr;
use switchyard_core::plan::{Endpoint, ProxyPlan, ServicePortName, ServicePortPlan, Target};

/// The objects of one service port. `previous`: the slot order in the kernel, to keep
/// (`None`: plan order).
pub fn service(
    plan: &ProxyPlan,
    name: &ServicePortName,
    svc: &ServicePortPlan,
    previous: Option<&Slots>,
    features: Features,
    marks: Option<&Marks>,
) -> ServiceObjects {
    let mut o = if let Some(marks) = marks.filter(|_| super::ipvs::steers_by_mark(svc)) {
        super::ipvs::service(name, svc, marks)
    } else if svc.affinity_timeout_seconds.is_some() {
        // Also in IPVS mode: see `super::ipvs` for why affinity is not IPVS persistence.
        chain_path::service(plan, name, svc)
    } else {
        data_path(svc, previous, features)
    };
    o.shared_elems
        .insert((n::CLUSTER_IPS, Key::Addr(svc.cluster_ip)));
    if marks.is_some() {
        super::ipvs::bound_vips(&mut o, plan, svc);
    }
    no_endpoint(&mut o.own, svc);
    firewall(&mut o.own, name, plan, svc);
    o
}

/// Each path that translates puts its keys into its shape's set and each key's endpoints into
/// the slot maps of every endpoint kind its rules send to.
fn data_path(
    svc: &ServicePortPlan,
    previous: Option<&Slots>,
    features: Features,
) -> ServiceObjects {
    let mut o = ServiceObjects::default();
    for path in svc.paths().filter(|p| p.translates()) {
        let shape = Shape(path.rules.clone());
        let kinds: Vec<Kind> = path
            .endpoint_targets()
            .into_iter()
            .filter_map(kind_of)
            .collect();
        for planned in &path.keys {
            let (src, key) = key_of(&planned.key);
            o.own
                .elem(&n::shape_set(src, &shape.name()), Elem::key(key));
            o.needs.insert(Need::Shape(src, shape.clone()));
            for &kind in &kinds {
                let order = o
                    .slots
                    .entry(kind)
                    .or_insert_with(|| slot_order(svc, kind, previous))
                    .clone();
                slots(&mut o, src, key, kind, &order, features);
            }
        }
    }
    o
}

/// The endpoints of `kind` in slot order: the kernel's order kept where it can be.
fn slot_order(svc: &ServicePortPlan, kind: Kind, previous: Option<&Slots>) -> Vec<SocketAddr> {
    let now: Vec<SocketAddr> = endpoints(svc, kind)
        .iter()
        .map(|e| SocketAddr::new(e.ip, e.port))
        .collect();
    match previous.and_then(|p| p.get(&kind)) {
        Some(before) => stable_order(before, &now),
        None => now,
    }
}

fn endpoints(svc: &ServicePortPlan, kind: Kind) -> &[Endpoint] {
    svc.endpoints_for(match kind {
        Kind::Cluster => Target::Cluster,
        Kind::Local => Target::Local,
    })
}

/// Slot `i` of `key` holds the i-th endpoint of `order` (and, on kernels that cannot test a
/// map's key as a set, the slot set `i` holds the key).
fn slots(
    o: &mut ServiceObjects,
    src: KeySrc,
    key: Key,
    kind: Kind,
    order: &[SocketAddr],
    features: Features,
) {
    let count = u32::try_from(order.len()).unwrap_or(u32::MAX);
    if count == 0 {
        return;
    }
    o.needs.insert(Need::Count(src, kind, count));
    for (i, e) in (0..count).zip(order) {
        o.own.elem(
            &n::endpoint_map(src, kind.name(), i),
            Elem {
                key,
                data: Some(ElemData::Endpoint(*e)),
            },
        );
        if !features.map_lookup_as_set {
            o.own
                .elem(&n::slot_set(src, kind.name(), i), Elem::key(key));
        }
        o.shared_elems
            .insert((n::HAIRPIN, Key::AddrPair(e.ip(), e.ip())));
    }
}

/// Keys whose fallback target is reject or drop: the filter chains refuse what nat left
/// untranslated.
fn no_endpoint(b: &mut Bundle, svc: &ServicePortPlan) {
    for path in svc.paths() {
        let reject = match path.fallback() {
            Target::Reject => true,
            Target::Drop => false,
            Target::Cluster | Target::Local => continue,
        };
        for planned in &path.keys {
            let (src, key) = key_of(&planned.key);
            b.elem(n::no_endpoint(src, reject), Elem::key(key));
        }
    }
}

/// `loadBalancerSourceRanges`: a per-service chain (rare, and its rules never change with
/// endpoints) that lets allowed sources through and drops the rest, before DNAT.
fn firewall(b: &mut Bundle, name: &ServicePortName, plan: &ProxyPlan, svc: &ServicePortPlan) {
    let Some(ranges) = &svc.source_ranges else {
        return;
    };
    let fw = n::ServiceChains::new(name, plan.family).fw;
    let mut allowed: Vec<IpNet> = ranges.allow.clone();
    if ranges.allow_from_load_balancer_ips {
        allowed.extend(svc.load_balancer_ips.iter().map(|ip| IpNet::from(*ip)));
    }
    b.chain(&fw);
    for net in allowed {
        b.rule(
            &fw,
            vec![
                Stmt::Saddr { net, negate: false },
                Stmt::Verdict(Verdict::Return),
            ],
        );
    }
    b.rule(&fw, vec![Stmt::Verdict(Verdict::Drop)]);
    for ip in &svc.load_balancer_ips {
        b.elem(
            n::FIREWALL_IPS,
            Elem {
                key: Key::AddrProtoPort(*ip, svc.protocol, svc.port),
                data: Some(ElemData::Goto(fw.clone())),
            },
        );
    }
}
