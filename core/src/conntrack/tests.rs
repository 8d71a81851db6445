//! The stale-flow decision on real plans: kube-proxy's regressions as rows.

use super::*;
use crate::diff::diff;
use crate::model::{
    ClusterState, Endpoint, EndpointConditions, EndpointPort, EndpointSlice, ObjectMeta, Service,
    ServicePort, LABEL_SERVICE_NAME,
};
use crate::plan::plan;
use crate::ProxyConfig;

const VIP: &str = "10.96.0.10";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// `default/<name>`: one port 53 of `protocol`, with a NodePort when given.
fn service(name: &str, protocol: &str, node_port: Option<i32>) -> Service {
    Service {
        meta: ObjectMeta::new("default", name),
        service_type: Some(
            if node_port.is_some() {
                "NodePort"
            } else {
                "ClusterIP"
            }
            .into(),
        ),
        cluster_ips: vec![VIP.into()],
        ports: vec![ServicePort {
            protocol: Some(protocol.into()),
            port: 53,
            node_port,
            ..ServicePort::default()
        }],
        ..Service::default()
    }
}

/// The service's one slice, with these ready endpoints on target port 5353.
fn slice(name: &str, protocol: &str, endpoints: &[&str]) -> EndpointSlice {
    let mut meta = ObjectMeta::new("default", format!("{name}-1"));
    meta.labels.insert(LABEL_SERVICE_NAME.into(), name.into());
    EndpointSlice {
        meta,
        address_type: "IPv4".into(),
        endpoints: endpoints
            .iter()
            .map(|a| Endpoint {
                addresses: vec![a.to_string()],
                conditions: EndpointConditions::default(),
                node_name: Some("node-b".into()),
                ..Endpoint::default()
            })
            .collect(),
        ports: vec![EndpointPort {
            name: Some(String::new()),
            protocol: Some(protocol.into()),
            port: Some(5353),
        }],
    }
}

fn plan_of(services: &[(&Service, &EndpointSlice)]) -> ProxyPlan {
    let mut state = ClusterState::default();
    for (s, e) in services {
        state.upsert_service((*s).clone());
        state.upsert_endpoint_slice((*e).clone());
    }
    plan(&state, &ProxyConfig::new(IpFamily::V4, "node-a"))
}

fn changed(old: &ProxyPlan, new: &ProxyPlan) -> Vec<FlowCleanup> {
    let changes = diff(old, new);
    stale_flows(
        Scope::Changed {
            old,
            changes: &changes,
        },
        new,
        &[],
    )
}

fn vip_rule(rules: &[FlowCleanup]) -> &FlowCleanup {
    rules
        .iter()
        .find(|r| matches!(r.key, ServiceKey::Addr { ip: a, .. } if a == ip(VIP)))
        .expect("a rule for the cluster IP")
}

#[test]
fn replaced_endpoint_leaves_its_flows_stale() {
    // kube-proxy #126130: DNS pods replaced, A removed and B added in one update.
    let svc = service("dns", "UDP", None);
    let old = plan_of(&[(&svc, &slice("dns", "UDP", &["10.244.2.1"]))]);
    let new = plan_of(&[(&svc, &slice("dns", "UDP", &["10.244.2.2"]))]);
    let rules = changed(&old, &new);
    assert_eq!(rules.len(), 1, "{rules:?}");
    let rule = vip_rule(&rules);
    assert_eq!(rule.protocol(), Protocol::Udp);
    assert!(
        rule.is_stale(ip(VIP), 53, (ip("10.244.2.1"), 5353)),
        "A left"
    );
    assert!(
        !rule.is_stale(ip(VIP), 53, (ip("10.244.2.2"), 5353)),
        "B is current"
    );
    assert!(rule.is_stale(ip(VIP), 53, (ip(VIP), 53)), "untranslated");
    assert!(
        !rule.is_stale(ip(VIP), 54, (ip("10.244.2.1"), 5353)),
        "another port"
    );
    assert!(
        rule.is_stale(ip(VIP), 53, (ip("10.244.2.2"), 80)),
        "B, but a port it left"
    );
}

#[test]
fn scaled_to_zero_leaves_every_flow_stale_and_back_keeps_the_new_one() {
    // kube-proxy #139628: the reconciler must not skip a port without endpoints.
    let svc = service("statsd", "UDP", Some(30053));
    let one = plan_of(&[(&svc, &slice("statsd", "UDP", &["10.244.2.1"]))]);
    let zero = plan_of(&[(&svc, &slice("statsd", "UDP", &[]))]);
    let rules = changed(&one, &zero);
    assert_eq!(rules.len(), 2, "cluster IP and NodePort: {rules:?}");
    for r in &rules {
        assert!(r.keep.is_empty(), "{r:?}");
    }
    let nodeport = rules
        .iter()
        .find(|r| matches!(r.key, ServiceKey::AnyLocal { port: 30053, .. }))
        .expect("the NodePort on every local address (no node address known)");
    assert!(nodeport.is_stale(ip("192.0.2.7"), 30053, (ip("10.244.2.1"), 5353)));

    // Zero to some: the flows that met the reject rule, or were never translated, go.
    let back = plan_of(&[(&svc, &slice("statsd", "UDP", &["10.244.2.9"]))]);
    let rule = vip_rule(&changed(&zero, &back)).clone();
    assert!(rule.is_stale(ip(VIP), 53, (ip(VIP), 53)));
    assert!(!rule.is_stale(ip(VIP), 53, (ip("10.244.2.9"), 5353)));
}

#[test]
fn tcp_is_never_touched_and_unchanged_ports_are_not_rescanned() {
    let tcp = service("web", "TCP", None);
    let old = plan_of(&[(&tcp, &slice("web", "TCP", &["10.244.2.1"]))]);
    let new = plan_of(&[(&tcp, &slice("web", "TCP", &["10.244.2.2"]))]);
    assert!(changed(&old, &new).is_empty());
    assert!(stale_flows(Scope::Everything, &new, &[]).is_empty());

    let udp = service("dns", "UDP", None);
    let p = plan_of(&[(&udp, &slice("dns", "UDP", &["10.244.2.1"]))]);
    assert!(
        changed(&p, &p).is_empty(),
        "nothing changed, nothing to scan"
    );
    let all = stale_flows(Scope::Everything, &p, &[]);
    assert_eq!(all.len(), 1, "after a restart every UDP key is reconciled");
    assert_eq!(
        all[0].keep,
        BTreeSet::from([(ip("10.244.2.1"), 5353)]),
        "and its current endpoints kept"
    );
}

#[test]
fn a_removed_service_leaves_all_its_flows_stale() {
    // kube-proxy #141371: the keys of a deleted UDP Service belong to nobody.
    let svc = service("gone", "SCTP", Some(30054));
    let old = plan_of(&[(&svc, &slice("gone", "SCTP", &["10.244.2.1"]))]);
    let new = plan_of(&[]);
    let rules = changed(&old, &new);
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert!(rules
        .iter()
        .all(|r| r.keep.is_empty() && r.protocol() == Protocol::Sctp));
    assert_eq!(rules[0].service.to_string(), "default/gone/sctp");
}

#[test]
fn carried_rules_are_decided_again_against_the_new_plan() {
    let svc = service("dns", "UDP", None);
    let a = plan_of(&[(&svc, &slice("dns", "UDP", &["10.244.2.1"]))]);
    let b = plan_of(&[(&svc, &slice("dns", "UDP", &["10.244.2.1", "10.244.2.2"]))]);
    // A rule left over from when only .1 was current...
    let carried = stale_flows(Scope::Everything, &a, &[]);
    // ...must not delete .2's flows once .2 is an endpoint too.
    let rules = stale_flows(
        Scope::Changed {
            old: &b,
            changes: &diff(&b, &b),
        },
        &b,
        &carried,
    );
    assert_eq!(rules.len(), 1);
    assert!(!rules[0].is_stale(ip(VIP), 53, (ip("10.244.2.2"), 5353)));
    // And once the Service is gone, the carried key keeps nothing.
    let empty = plan_of(&[]);
    let rules = stale_flows(Scope::Everything, &empty, &carried);
    assert_eq!(rules.len(), 1);
    assert!(rules[0].keep.is_empty());
}
