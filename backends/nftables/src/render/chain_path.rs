//! Service ports with `sessionAffinity: ClientIP`: per-service and per-endpoint chains, as
//! kube-proxy renders them, reached through the `service-ips` / `service-nodeports` verdict maps.
//!
//! ```text
//! svc-*  masquerade decision, goto clu-*/loc-*
//! ext-*  masquerade or short-circuit, goto the external target
//! clu-*/loc-*  `ip saddr @aff-<endpoint> goto sep-<endpoint>` for each endpoint, then
//!              `numgen random mod (n-i) == 0 goto sep-i`, last unconditional
//! sep-*  hairpin masquerade, `update @aff-<endpoint> { ip saddr }`, dnat
//! ```
//! Affinity is per endpoint, so a client keeps its endpoint whichever of the service's
//! addresses it uses; that needs the endpoint's own set and chain. Changes to these services
//! add rules, which makes the kernel validate the table's jump graph: the cost grows with the
//! number of affinity services, not with the rest (DESIGN-NOTES 38).

use super::service::Keys;
use super::{goto, jump, Bundle, Need, ServiceObjects};
use crate::names::{self as n, ServiceChains};
use crate::objects::{Elem, ElemData, Key, KeyType, Set, SetData};
use crate::stmt::{KeySrc, Stmt};
use ipnet::IpNet;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use switchyard_core::plan::{
    ClusterMasquerade, ProxyPlan, ServicePortName, ServicePortPlan, Target,
};

pub fn service(
    plan: &ProxyPlan,
    name: &ServicePortName,
    svc: &ServicePortPlan,
    keys: &Keys,
) -> ServiceObjects {
    let c = ServiceChains::new(name, plan.family);
    let mut o = ServiceObjects::default();
    let b = &mut o.own;
    let policy_chain = |t: Target| match t {
        Target::Cluster => Some(c.cluster.clone()),
        Target::Local => Some(c.local.clone()),
        Target::Reject | Target::Drop => None,
    };
    let dispatch = |b: &mut Bundle, needs: &mut BTreeSet<Need>, src: KeySrc, key: Key, to: &str| {
        let map = match src {
            KeySrc::Vip => n::SERVICE_IPS,
            KeySrc::Port => n::SERVICE_NODEPORTS,
        };
        needs.insert(Need::ChainDispatch(src));
        b.elem(
            map,
            Elem {
                key,
                data: Some(ElemData::Goto(to.to_string())),
            },
        );
    };

    // Cluster IP.
    if let Some(to) = policy_chain(svc.internal) {
        match &plan.cluster_masquerade {
            ClusterMasquerade::All => b.rule(&c.svc, vec![jump(n::MARK_MASQ)]),
            ClusterMasquerade::FromOutside(_) => b.rule(&c.svc, vec![jump(n::MASQ_OUTSIDE)]),
            ClusterMasquerade::HairpinOnly => {}
        }
        b.rule(&c.svc, vec![goto(&to)]);
        dispatch(b, &mut o.needs, KeySrc::Vip, keys.cluster, &c.svc);
    }

    // External addresses.
    if let Some(ext) = svc.external {
        let to = policy_chain(ext.target);
        if to.is_some() || ext.short_circuit {
            b.chain(&c.ext);
            if ext.masquerade {
                b.rule(&c.ext, vec![jump(n::MARK_MASQ)]);
            }
            if ext.short_circuit {
                for cidr in &plan.pod_cidrs {
                    b.rule(
                        &c.ext,
                        vec![
                            Stmt::Saddr {
                                net: *cidr,
                                negate: false,
                            },
                            goto(&c.cluster),
                        ],
                    );
                }
                b.rule(&c.ext, vec![Stmt::FibSaddrLocal, jump(n::MARK_MASQ)]);
                b.rule(&c.ext, vec![Stmt::FibSaddrLocal, goto(&c.cluster)]);
            }
            if let Some(to) = &to {
                b.rule(&c.ext, vec![goto(to)]);
            }
            for &(src, key) in &keys.external {
                dispatch(b, &mut o.needs, src, key, &c.ext);
            }
        }
    }

    // Endpoint sets, each once, and their endpoint chains.
    let mut done = BTreeSet::new();
    for (set_chain, set) in [
        (&c.cluster, &svc.endpoints.cluster),
        (&c.local, &svc.endpoints.local),
    ] {
        let Some(set) = set.as_ref().filter(|s| !s.is_empty()) else {
            continue;
        };
        let target = goto(set_chain);
        let used = b
            .chains
            .values()
            .any(|rules| rules.iter().any(|r| r.last() == Some(&target)));
        if !used {
            continue;
        }
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
