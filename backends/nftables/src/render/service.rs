//! One service port's objects. Without session affinity it owns no chain and no rule, only
//! elements: its keys in a shape set, each key's endpoints in the slot maps, and hairpin pairs.

use super::slots::stable_order;
use super::{chain_path, Bundle, Kind, Need, ServiceObjects, Shape, Slots};
use crate::expr::Verdict;
use crate::names as n;
use crate::objects::{Elem, ElemData, Key};
use crate::stmt::{KeySrc, Stmt};
use ipnet::IpNet;
use std::net::SocketAddr;
use switchyard_core::plan::{
    Endpoint, NodePortListen, ProxyPlan, ServicePortName, ServicePortPlan, Target,
};

/// The keys a service port is reached by: the cluster IP, and (when it is externally
/// accessible) external IPs, load-balancer IPs and NodePorts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub cluster: Key,
    pub external: Vec<(KeySrc, Key)>,
}

impl Keys {
    pub fn of(plan: &ProxyPlan, svc: &ServicePortPlan) -> Self {
        let proto = svc.protocol;
        let mut external: Vec<(KeySrc, Key)> = svc
            .external_vips()
            .map(|(_, ip)| (KeySrc::Vip, Key::AddrProtoPort(ip, proto, svc.port)))
            .collect();
        if let Some(np) = svc.node_port.filter(|_| svc.external.is_some()) {
            match &plan.node_port_addresses {
                NodePortListen::Addresses(addrs) => external.extend(
                    addrs
                        .iter()
                        .map(|ip| (KeySrc::Vip, Key::AddrProtoPort(*ip, proto, np))),
                ),
                NodePortListen::AllLocal => {
                    external.push((KeySrc::Port, Key::ProtoPort(proto, np)))
                }
            }
        }
        Self {
            cluster: Key::AddrProtoPort(svc.cluster_ip, proto, svc.port),
            external,
        }
    }
}

fn kind_of(t: Target) -> Option<Kind> {
    match t {
        Target::Cluster => Some(Kind::Cluster),
        Target::Local => Some(Kind::Local),
        Target::Reject | Target::Drop => None,
    }
}

/// The objects of one service port. `previous`: the slot order in the kernel, to keep
/// (`None`: plan order).
pub fn service(
    plan: &ProxyPlan,
    name: &ServicePortName,
    svc: &ServicePortPlan,
    previous: Option<&Slots>,
) -> ServiceObjects {
    let keys = Keys::of(plan, svc);
    let mut o = if svc.affinity_timeout_seconds.is_some() {
        chain_path::service(plan, name, svc, &keys)
    } else {
        data_path(svc, &keys, previous)
    };
    o.shared_elems
        .insert((n::CLUSTER_IPS, Key::Addr(svc.cluster_ip)));
    no_endpoint(&mut o.own, svc, &keys);
    firewall(&mut o.own, name, plan, svc);
    o
}

fn data_path(svc: &ServicePortPlan, keys: &Keys, previous: Option<&Slots>) -> ServiceObjects {
    // Which keys take which shape, and which endpoint kinds each is balanced over.
    let mut routes: Vec<(KeySrc, Key, Shape, Vec<Kind>)> = Vec::new();
    if let Some(kind) = kind_of(svc.internal) {
        routes.push((KeySrc::Vip, keys.cluster, Shape::Internal(kind), vec![kind]));
    }
    if let Some(ext) = svc.external {
        let to = kind_of(ext.target);
        if to.is_some() || ext.short_circuit {
            let shape = Shape::External {
                masquerade: ext.masquerade,
                short_circuit: ext.short_circuit,
                to,
            };
            let mut kinds: Vec<Kind> = to.into_iter().collect();
            if ext.short_circuit && to != Some(Kind::Cluster) {
                kinds.push(Kind::Cluster);
            }
            for &(src, key) in &keys.external {
                routes.push((src, key, shape, kinds.clone()));
            }
        }
    }
    let mut o = ServiceObjects::default();
    for (src, key, shape, kinds) in routes {
        o.own
            .elem(&n::shape_set(src, &shape.name()), Elem::key(key));
        o.needs.insert(Need::Shape(src, shape));
        for kind in kinds {
            let order = o
                .slots
                .entry(kind)
                .or_insert_with(|| slot_order(svc, kind, previous))
                .clone();
            slots(&mut o, src, key, kind, &order);
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

/// Slot `i` of `key` holds the i-th endpoint of `order`.
fn slots(o: &mut ServiceObjects, src: KeySrc, key: Key, kind: Kind, order: &[SocketAddr]) {
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
        o.shared_elems
            .insert((n::HAIRPIN, Key::AddrPair(e.ip(), e.ip())));
    }
}

/// Keys whose target is reject or drop: the filter chains refuse what nat left untranslated.
fn no_endpoint(b: &mut Bundle, svc: &ServicePortPlan, keys: &Keys) {
    let set = |t: Target, src: KeySrc| match t {
        Target::Reject => Some(n::no_endpoint(src, true)),
        Target::Drop => Some(n::no_endpoint(src, false)),
        Target::Cluster | Target::Local => None,
    };
    if let Some(s) = set(svc.internal, KeySrc::Vip) {
        b.elem(s, Elem::key(keys.cluster));
    }
    if let Some(ext) = svc.external {
        for &(src, key) in &keys.external {
            if let Some(s) = set(ext.target, src) {
                b.elem(s, Elem::key(key));
            }
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
