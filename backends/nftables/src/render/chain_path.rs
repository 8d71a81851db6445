//! Service ports with `sessionAffinity: ClientIP`: per-service and per-endpoint chains, as
//! kube-proxy renders them, reached through the `service-ips` / `service-nodeports` verdict maps.
//!
//! ```text
//! svc-*  the internal path's rules (plan): masquerade decision, goto clu-*/loc-*
//! ext-*  the external path's rules: masquerade or short-circuit, goto clu-*/loc-*
//! clu-*/loc-*  `ip saddr @aff-<endpoint> goto sep-<endpoint>` for each endpoint, then
//!              `numgen random mod (n-i) == 0 goto sep-i`, last unconditional
//! sep-*  hairpin masquerade, `update @aff-<endpoint> { ip saddr }`, dnat
//! ```
//! Affinity is per endpoint, so a client keeps its endpoint whichever of the service's
//! addresses it uses; that needs the endpoint's own set and chain. Changes to these services
//! add rules, which makes the kernel validate the table's jump graph: the cost grows with the
//! number of affinity services, not with the rest (DESIGN-NOTES 38).

use super::{goto, jump, key_of, path_rules, Need, ServiceObjects};
use crate::names::{self as n, ServiceChains};
use crate::objects::{Elem, ElemData, KeyType, Set, SetData};
use crate::stmt::{KeySrc, Stmt};
use ipnet::IpNet;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use switchyard_core::plan::{PathPlan, ProxyPlan, ServicePortName, ServicePortPlan, Target};

pub fn service(plan: &ProxyPlan, name: &ServicePortName, svc: &ServicePortPlan) -> ServiceObjects {
    let c = ServiceChains::new(name, plan.family);
    let mut o = ServiceObjects::default();
    let b = &mut o.own;
    let policy_chain = |t: Target| match t {
        Target::Cluster => Some(c.cluster.clone()),
        Target::Local => Some(c.local.clone()),
        Target::Reject | Target::Drop => None,
    };

    // Each path that translates: its chain walks the plan's rules; its keys dispatch to it.
    for (path, chain) in [
        (Some(&svc.internal), &c.svc),
        (svc.external.as_ref(), &c.ext),
    ] {
        let Some(path) = path.filter(|p| p.translates()) else {
            continue;
        };
        path_rules(b, plan, chain, &path.rules, policy_chain);
        for planned in &path.keys {
            let (src, key) = key_of(&planned.key);
            let map = match src {
                KeySrc::Vip => n::SERVICE_IPS,
                KeySrc::Port => n::SERVICE_NODEPORTS,
            };
            o.needs.insert(Need::ChainDispatch(src));
            b.elem(
                map,
                Elem {
                    key,
                    data: Some(ElemData::Goto(chain.clone())),
                },
            );
        }
    }

    // Endpoint sets some path sends to, each once, and their endpoint chains.
    let mut used: Vec<Target> = svc.paths().flat_map(PathPlan::endpoint_targets).collect();
    used.sort();
    used.dedup();
    let mut done = BTreeSet::new();
    for target in used {
        let (set_chain, set) = match target {
            Target::Cluster => (&c.cluster, &svc.endpoints.cluster),
            Target::Local => (&c.local, &svc.endpoints.local),
            Target::Reject | Target::Drop => continue,
        };
        let Some(set) = set.as_ref().filter(|s| !s.is_empty()) else {
            continue;
        };
        let seps: Vec<String> = set.iter().map(|e| n::endpoint_chain(name, e)).collect();
        if let Some(timeout) = svc.affinity_timeout_seconds {
            for (e, sep) in set.iter().zip(&seps) {
                let aff = n::affinity_set(name, e);
                b.rule(set_chain, vec![Stmt::SaddrInSet(aff.clone()), goto(sep)]);
                b.set(Set {
                    timeout_seconds: Some(timeout),
                    ..Set::new(aff, KeyType::Addr, SetData::None)
                });
            }
        }
        let count = seps.len();
        for (i, sep) in seps.iter().enumerate() {
            let mut stmts = Vec::new();
            if i + 1 < count {
                stmts.push(Stmt::OneIn(u32::try_from(count - i).unwrap_or(u32::MAX)));
            }
            stmts.push(goto(sep));
            b.rule(set_chain, stmts);
        }
        for (e, sep) in set.iter().zip(seps) {
            if !done.insert(sep.clone()) {
                continue;
            }
            b.rule(
                &sep,
                vec![
                    Stmt::Saddr {
                        net: IpNet::from(e.ip),
                        negate: false,
                    },
                    jump(n::MARK_MASQ),
                ],
            );
            if svc.affinity_timeout_seconds.is_some() {
                b.rule(&sep, vec![Stmt::UpdateSaddr(n::affinity_set(name, e))]);
            }
            b.rule(
                &sep,
                vec![
                    Stmt::L4Proto(svc.protocol),
                    Stmt::Dnat(SocketAddr::new(e.ip, e.port)),
                ],
            );
        }
    }
    o
}
