//! The table's fixed part: base chains, the filter and masquerade chains, and the sets every
//! sync keeps. Depends only on node-level settings (a change of those is a full sync): all of
//! it but the service-CIDR rules is built once per process for each mode and NodePort
//! listen, and cloned for every full sync.

use super::{goto, jump, Bundle};
use crate::expr::Verdict;
use crate::names as n;
use crate::objects::{Hook, KeyType, Set, SetData};
use crate::stmt::{KeySrc, Stmt};
use std::sync::OnceLock;
use switchyard_core::plan::{NodePortListen, ProxyPlan};

/// `ipvs`: IPVS mode's table, where service traffic reaches the filter hooks still addressed
/// to the service (IPVS translates after them, at LOCAL_IN) but carrying its virtual
/// service's mark, and external and load-balancer IPs are local addresses.
pub fn skeleton(plan: &ProxyPlan, ipvs: bool) -> Bundle {
    /// Built skeletons without the service CIDRs: [ipvs][NodePorts on every local address].
    static CACHE: [[OnceLock<Bundle>; 2]; 2] = [
        [OnceLock::new(), OnceLock::new()],
        [OnceLock::new(), OnceLock::new()],
    ];
    let all_local = plan.node_port_addresses == NodePortListen::AllLocal;
    let mut b = CACHE[usize::from(ipvs)][usize::from(all_local)]
        .get_or_init(|| build(ipvs, all_local))
        .clone();
    // An address of a service range that no Service owns (kube-proxy's cluster-ips-check):
    // nothing may answer there, so drop rather than let the packet wander (DESIGN §7). These
    // are the last rules of the filter chain.
    for cidr in &plan.service_cidrs {
        b.rule(
            n::SERVICE_FILTER,
            vec![Stmt::Daddr(*cidr), Stmt::Verdict(Verdict::Drop)],
        );
    }
    b
}

fn build(ipvs: bool, all_local: bool) -> Bundle {
    let mut b = Bundle::default();
    for (name, kind, hook, prio) in [
        (n::NAT_PREROUTING, "nat", Hook::Prerouting, -100),
        (n::NAT_OUTPUT, "nat", Hook::Output, -100),
        (n::NAT_POSTROUTING, "nat", Hook::Postrouting, 100),
        (n::FILTER_PREROUTING, "filter", Hook::Prerouting, -110),
        (n::FILTER_OUTPUT_FIREWALL, "filter", Hook::Output, -110),
        (n::FILTER_INPUT, "filter", Hook::Input, 0),
        (n::FILTER_FORWARD, "filter", Hook::Forward, 0),
        (n::FILTER_OUTPUT, "filter", Hook::Output, 0),
    ] {
        b.hooks.insert(name.to_string(), (kind, hook, prio));
    }

    b.set(Set::new(
        n::SERVICE_IPS,
        KeyType::AddrProtoPort,
        SetData::Verdict,
    ));
    b.set(Set::new(
        n::FIREWALL_IPS,
        KeyType::AddrProtoPort,
        SetData::Verdict,
    ));
    b.set(Set::new(n::CLUSTER_IPS, KeyType::Addr, SetData::None));
    b.set(Set::new(n::HAIRPIN, KeyType::AddrPair, SetData::None));
    let sources: &[KeySrc] = if all_local {
        b.set(Set::new(
            n::SERVICE_NODEPORTS,
            KeyType::ProtoPort,
            SetData::Verdict,
        ));
        &[KeySrc::Vip, KeySrc::Port]
    } else {
        &[KeySrc::Vip]
    };

    b.rule(n::NAT_PREROUTING, vec![jump(n::SERVICES)]);
    b.rule(n::NAT_OUTPUT, vec![jump(n::SERVICES)]);
    b.rule(n::NAT_POSTROUTING, vec![jump(n::MASQUERADING)]);
    for c in [n::FILTER_PREROUTING, n::FILTER_OUTPUT_FIREWALL] {
        b.rule(c, vec![Stmt::DispatchVmap(n::FIREWALL_IPS.into())]);
    }
    for c in [n::FILTER_INPUT, n::FILTER_FORWARD, n::FILTER_OUTPUT] {
        b.rule(c, vec![Stmt::CtStateNew, jump(n::SERVICE_FILTER)]);
    }

    if ipvs {
        // Marked for an IPVS virtual service: IPVS translates it after these hooks.
        b.rule(
            n::SERVICE_FILTER,
            vec![
                Stmt::MarkAny(super::ipvs::FWMARK_BITS),
                Stmt::Verdict(Verdict::Return),
            ],
        );
    }
    // Service traffic the nat chains did not translate: its target is reject or drop.
    for &src in sources {
        for reject in [true, false] {
            let set = n::no_endpoint(src, reject);
            let key_type = match src {
                KeySrc::Vip => KeyType::AddrProtoPort,
                KeySrc::Port => KeyType::ProtoPort,
            };
            b.set(Set::new(set, key_type, SetData::None));
            let mut stmts = Vec::new();
            if src == KeySrc::Port {
                stmts.push(Stmt::FibDaddrLocal);
            }
            stmts.push(Stmt::KeyInSet {
                src,
                set: set.to_string(),
            });
            stmts.push(if reject {
                goto(n::REJECT)
            } else {
                Stmt::Verdict(Verdict::Drop)
            });
            b.rule(n::SERVICE_FILTER, stmts);
        }
    }
    b.rule(
        n::SERVICE_FILTER,
        vec![Stmt::DaddrInSet(n::CLUSTER_IPS.into()), goto(n::REJECT)],
    );
    if ipvs {
        b.set(Set::new(n::IPVS_VIPS, KeyType::Addr, SetData::None));
        b.rule(
            n::SERVICE_FILTER,
            vec![Stmt::DaddrInSet(n::IPVS_VIPS.into()), goto(n::REJECT)],
        );
    }
    b.rule(n::REJECT, vec![Stmt::Reject { tcp_reset: true }]);
    b.rule(n::REJECT, vec![Stmt::Reject { tcp_reset: false }]);

    // Masquerade: hairpin connections (an endpoint reached through a service from its own
    // address: the reply would otherwise bypass the node), then whatever was marked.
    // IPVS does not mark its translation in the conntrack status; its packets carry the
    // virtual service's mark instead.
    // (Session-affinity services are DNATed by these rules in IPVS mode too.)
    let mut translated = vec![Stmt::CtStatusDnat];
    if ipvs {
        translated.push(Stmt::MarkAny(super::ipvs::FWMARK_BITS));
    }
    for t in translated {
        b.rule(
            n::MASQUERADING,
            vec![
                t,
                Stmt::SaddrDaddrInSet(n::HAIRPIN.into()),
                jump(n::MARK_MASQ),
            ],
        );
    }
    b.rule(
        n::MASQUERADING,
        vec![
            Stmt::MarkClear(n::MASQ_MARK),
            Stmt::Verdict(Verdict::Return),
        ],
    );
    b.rule(n::MASQUERADING, vec![Stmt::MarkXor(n::MASQ_MARK)]);
    b.rule(n::MASQUERADING, vec![Stmt::Masquerade]);
    b.rule(n::MARK_MASQ, vec![Stmt::MarkOr(n::MASQ_MARK)]);
    b
}
