//! IPVS mode's helper rules, from the same builders as nftables mode.
//!
//! IPVS balances; these rules decide everything else the plan says, exactly as nftables mode
//! does: the shape chains walk each path's rules (source class → masquerade → endpoint set),
//! the filter chains reject or drop what has no endpoint, the firewall chains apply
//! `loadBalancerSourceRanges`. Where nftables mode would DNAT, IPVS mode instead sets the
//! packet's mark to the firewall mark of the IPVS virtual service that holds that endpoint set
//! (one per service port and endpoint set, so ClientIP persistence holds across all of a
//! service's addresses), read from a mark map keyed by the service key:
//!
//! ```text
//! <shape> (plan's rules) → goto <kind>-ipvs:
//!     meta mark & 0x4000 == 0  meta mark set <key> map @<kind>-fwmark       return
//!                              meta mark set <key> map @<kind>-fwmark-masq
//! ```
//! A masqueraded rule has already set the masquerade bit; its virtual service carries the
//! bit in its mark (IPVS compares the whole mark), so the bit survives to postrouting.
//! Like the data path, a service port owns no chain and no rule, only elements.
//!
//! **Session affinity is not IPVS persistence.** A persistent firewall-mark virtual service
//! keeps the packet's destination port (`ip_vs_sched_persist`: `dport = dst_port` unless it
//! equals the virtual service's port, which is 0 for a mark), so a Service whose target port
//! differs from its port would be sent to the wrong port (seen in the VM: connections
//! refused). Service ports with `sessionAffinity: ClientIP` therefore keep nftables mode's
//! chain path in this table (per-endpoint affinity sets, DNAT), which also holds affinity
//! across all of a Service's addresses and survives full syncs. They own no virtual service.

use super::{key_of, kind_of, Bundle, Kind, Need, ServiceObjects, Shape};
use crate::names as n;
use crate::objects::{Elem, ElemData, Key, KeyType, Set, SetData};
use crate::stmt::{KeySrc, Stmt};
use std::collections::BTreeMap;
use switchyard_core::plan::{
    PathPlan, ProxyPlan, ServicePortName, ServicePortPlan, Target, VipKind,
};

/// The firewall mark of each (service port, endpoint set) IPVS mode programs, without the
/// masquerade bit. Allocated by the IPVS backend, which keeps it stable across syncs.
pub type Marks = BTreeMap<(ServicePortName, Target), u32>;

/// The mark bits that carry a virtual service's identity (never the masquerade bit): every
/// IPVS-mode mark has one of them set. (The IPVS backend also repeats the identity's low byte
/// in bits 0..8, which the kernel hashes virtual services by.)
pub const FWMARK_BITS: u32 = 0xffff_8000;

/// Whether IPVS mode sends this service port through firewall-mark virtual services: all but
/// those with session affinity (see the module comment). The IPVS backend allocates marks
/// for exactly these.
pub fn steers_by_mark(svc: &ServicePortPlan) -> bool {
    svc.affinity_timeout_seconds.is_none()
}

pub fn service(name: &ServicePortName, svc: &ServicePortPlan, marks: &Marks) -> ServiceObjects {
    let mut o = ServiceObjects::default();
    for path in svc.paths().filter(|p| p.translates()) {
        let shape = Shape(path.rules.clone());
        for target in path.endpoint_targets() {
            let (Some(kind), Some(&mark)) = (kind_of(target), marks.get(&(name.clone(), target)))
            else {
                continue;
            };
            for planned in &path.keys {
                let (src, key) = key_of(&planned.key);
                o.needs.insert(Need::IpvsShape(src, shape.clone()));
                o.needs.insert(Need::IpvsMark(src, kind));
                o.own
                    .elem(&n::shape_set(src, &shape.name()), Elem::key(key));
            }
            for (map, key, with_masq) in mark_slots(path, target, kind) {
                let value = if with_masq { mark | n::MASQ_MARK } else { mark };
                o.own.elem(
                    &map,
                    Elem {
                        key,
                        data: Some(ElemData::Mark(value)),
                    },
                );
            }
            for e in svc.endpoints_for(target) {
                o.shared_elems
                    .insert((n::HAIRPIN, Key::AddrPair(e.ip, e.ip)));
            }
        }
    }
    o
}

/// Where `path` keeps the mark of its endpoint set `target`: (mark map, key, whether the
/// value carries the masquerade bit), one or two per key (a path may reach the same set with
/// and without masquerade). [`service`] writes these elements and [`mark_owners`] reads them
/// back, so the two cannot disagree about where a mark lives.
fn mark_slots(path: &PathPlan, target: Target, kind: Kind) -> Vec<(String, Key, bool)> {
    let plain = path
        .rules
        .iter()
        .any(|r| r.target == target && !r.masquerade);
    let masq = path
        .rules
        .iter()
        .any(|r| r.target == target && r.masquerade);
    let mut out = Vec::new();
    for planned in &path.keys {
        let (src, key) = key_of(&planned.key);
        for (used, with_masq) in [(plain, false), (masq, true)] {
            if used {
                out.push((
                    n::ipvs_mark_map(src, kind.name(), with_masq),
                    key,
                    with_masq,
                ));
            }
        }
    }
    out
}

/// For each mark-map element `plan` would write: (map, key as the kernel lists it) → the
/// (service port, endpoint set) whose mark it holds.
pub fn mark_owners(plan: &ProxyPlan) -> BTreeMap<(String, Vec<u8>), (ServicePortName, Target)> {
    let mut out = BTreeMap::new();
    for (name, svc) in plan.services.iter().filter(|(_, s)| steers_by_mark(s)) {
        for path in svc.paths().filter(|p| p.translates()) {
            for target in path.endpoint_targets() {
                let Some(kind) = kind_of(target) else {
                    continue;
                };
                for (map, key, _) in mark_slots(path, target, kind) {
                    out.insert((map, key.bytes()), (name.clone(), target));
                }
            }
        }
    }
    out
}

/// The mark maps `plan`'s elements would be in.
pub fn mark_maps(plan: &ProxyPlan) -> std::collections::BTreeSet<String> {
    mark_owners(plan).into_keys().map(|(m, _)| m).collect()
}

/// The firewall mark that mark maps as the kernel lists them (`listed`: map → (key bytes,
/// value)) give each endpoint set of `plan` they already hold; an endpoint set whose keys
/// disagree gets none. What a previous ruleset gave the same service ports.
pub fn marks_in_maps(plan: &ProxyPlan, listed: &BTreeMap<String, Vec<(Vec<u8>, u32)>>) -> Marks {
    let by_bytes = mark_owners(plan);
    let mut found: BTreeMap<(ServicePortName, Target), Option<u32>> = BTreeMap::new();
    for (map, elems) in listed {
        for (key, value) in elems {
            let Some(owner) = by_bytes.get(&(map.clone(), key.clone())) else {
                continue;
            };
            let mark = value & !n::MASQ_MARK;
            found
                .entry(owner.clone())
                .and_modify(|m| {
                    if *m != Some(mark) {
                        *m = None;
                    }
                })
                .or_insert(Some(mark));
        }
    }
    found
        .into_iter()
        .filter_map(|(k, m)| Some((k, m?)))
        .collect()
}

/// Addresses IPVS mode binds to its dummy interface besides cluster IPs: nothing else may
/// answer on them (kube-proxy #72236). Node addresses are the node's own.
pub fn bound_vips(o: &mut ServiceObjects, plan: &ProxyPlan, svc: &ServicePortPlan) {
    for planned in svc.paths().flat_map(|p| &p.keys) {
        if let (
            VipKind::ExternalIp | VipKind::LoadBalancerIp,
            switchyard_core::plan::ServiceKey::Addr { ip, .. },
        ) = (planned.kind, planned.key)
        {
            if !plan.node_ips.contains(&ip) {
                o.shared_elems.insert((n::IPVS_VIPS, Key::Addr(ip)));
            }
        }
    }
}

/// The chain that marks packets of one endpoint kind, and its two mark maps.
pub fn mark_chain(b: &mut Bundle, src: KeySrc, kind: Kind) {
    let key = match src {
        KeySrc::Vip => KeyType::AddrProtoPort,
        KeySrc::Port => KeyType::ProtoPort,
    };
    let chain = n::ipvs_chain(src, kind.name());
    for masq in [false, true] {
        b.set(Set::new(
            n::ipvs_mark_map(src, kind.name(), masq),
            key,
            SetData::Mark,
        ));
    }
    b.rule(
        &chain,
        vec![
            Stmt::MarkClear(n::MASQ_MARK),
            Stmt::MarkMap {
                src,
                map: n::ipvs_mark_map(src, kind.name(), false),
            },
            Stmt::Verdict(crate::expr::Verdict::Return),
        ],
    );
    b.rule(
        &chain,
        vec![Stmt::MarkMap {
            src,
            map: n::ipvs_mark_map(src, kind.name(), true),
        }],
    );
}

/// Where a shape's endpoint targets go in IPVS mode.
pub fn target_chain(src: KeySrc, t: Target) -> Option<String> {
    kind_of(t).map(|k| n::ipvs_chain(src, k.name()))
}
