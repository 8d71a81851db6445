//! Key claims and precedence: no two service ports own one kernel key, and addresses the API
//! server allocates (cluster IPs, NodePorts) always beat written ones (external IPs, LB IPs).

use super::*;
use crate::config::NodePortAddresses;
use crate::plan::{ServiceKey, VipKind};
use crate::warning::Skipped;
use std::collections::HashMap;

/// The (first) port of Service `default/<name>`, if planned.
fn port<'a>(p: &'a ProxyPlan, name: &str) -> Option<&'a crate::plan::ServicePortPlan> {
    p.services
        .iter()
        .find(|(k, _)| k.service.name == name)
        .map(|(_, s)| s)
}

fn planned(p: &ProxyPlan, name: &str) -> bool {
    port(p, name).is_some()
}

fn ext_ips(p: &ProxyPlan, name: &str) -> Vec<IpAddr> {
    port(p, name)
        .map(|s| s.external_ips.clone())
        .unwrap_or_default()
}

fn lb_ips(p: &ProxyPlan, name: &str) -> Vec<IpAddr> {
    port(p, name)
        .map(|s| s.load_balancer_ips.clone())
        .unwrap_or_default()
}

/// Every key of the plan has exactly one owner.
fn assert_keys_unique(p: &ProxyPlan) {
    let mut seen: HashMap<ServiceKey, String> = HashMap::new();
    for (name, s) in &p.services {
        for k in s.paths().flat_map(|p| &p.keys) {
            if let Some(other) = seen.insert(k.key, name.to_string()) {
                panic!("{} owned by {other} and {name}", k.key);
            }
        }
    }
}

/// The one warning about `object`, with its field and cost.
fn warned(p: &ProxyPlan, object: &str) -> (String, Skipped, String) {
    let ws: Vec<_> = p
        .warnings
        .iter()
        .filter(|w| w.object.name == object)
        .collect();
    assert_eq!(
        ws.len(),
        1,
        "want one warning for {object}: {:#?}",
        p.warnings
    );
    (ws[0].field.clone(), ws[0].skipped, ws[0].problem.clone())
}

#[test]
fn external_ip_on_a_node_address_loses_to_an_older_or_younger_node_port() {
    // The hostile object is the *older* one: age must not matter against an allocated key.
    for listen in [NodePortAddresses::Primary, NodePortAddresses::All] {
        let case = Case::new("np vs external ip")
            .svc(
                svc("hostile", "10.96.0.9")
                    .external_ip(NODE_IP)
                    .created(1)
                    .with(|s| {
                        s.ports[0].port = 30080;
                    }),
            )
            .svc(svc("victim", "10.96.0.1").node_port(30080).created(2))
            .config(|c| {
                c.with_node_port_addresses(listen.clone())
                    .with_local_addresses([ip(NODE_IP)])
            });
        let p = plan(&case.state, &case.config);
        assert!(planned(&p, "victim"), "{listen:?}");
        assert!(planned(&p, "hostile"), "{listen:?}: keeps its cluster IP");
        assert!(ext_ips(&p, "hostile").is_empty(), "{listen:?}");
        let (field, skipped, problem) = warned(&p, "hostile");
        assert_eq!(
            (field.as_str(), skipped),
            ("spec.externalIPs", Skipped::Address)
        );
        assert!(problem.contains("default/victim/tcp"), "{problem}");
        assert_keys_unique(&p);
    }
}

#[test]
fn written_addresses_never_take_a_cluster_ip_on_any_port() {
    let case = Case::new("cluster ip hijack")
        .svc(svc("victim", "10.96.0.1").created(5))
        .svc(
            svc("by-ext", "10.96.0.2")
                .external_ip("10.96.0.1")
                .created(1),
        )
        .svc(
            svc("by-lb", "10.96.0.3")
                .lb("10.96.0.1", None)
                .created(1)
                .with(|s| s.ports[0].port = 8080),
        );
    let p = plan(&case.state, &case.config);
    assert!(ext_ips(&p, "by-ext").is_empty());
    assert!(
        lb_ips(&p, "by-lb").is_empty(),
        "another port of the cluster IP"
    );
    for name in ["by-ext", "by-lb"] {
        let (_, skipped, problem) = warned(&p, name);
        assert_eq!(skipped, Skipped::Address);
        assert!(problem.contains("default/victim"), "{problem}");
    }
    // The victim's traffic still reaches it, from everywhere.
    let victim = port(&p, "victim").map(|s| s.internal.keys.clone());
    assert_eq!(
        victim.map(|k| k[0].kind),
        Some(VipKind::ClusterIp),
        "victim keeps its key"
    );
    assert_keys_unique(&p);
}

#[test]
fn among_written_addresses_the_older_service_wins() {
    let case = Case::new("equals")
        .svc(
            svc("young", "10.96.0.2")
                .external_ip("198.51.100.7")
                .created(9),
        )
        .svc(svc("old", "10.96.0.1").lb("198.51.100.7", None).created(1));
    let p = plan(&case.state, &case.config);
    assert_eq!(lb_ips(&p, "old"), vec![ip("198.51.100.7")]);
    assert!(ext_ips(&p, "young").is_empty());
    let (_, _, problem) = warned(&p, "young");
    assert!(problem.contains("older Service"), "{problem}");
}

#[test]
fn node_ports_are_trusted_unless_a_range_is_given() {
    let case = Case::new("range").svc(svc("np", "10.96.0.1").node_port(8080));
    let p = plan(&case.state, &case.config);
    assert!(planned(&p, "np"), "no --node-port-range: trust the API");
    assert!(p.warnings.is_empty());
    let p = plan(
        &case.state,
        &case
            .config
            .clone()
            .with_node_port_range(Some(30000..=32767)),
    );
    assert!(!planned(&p, "np"));
    assert_eq!(warned(&p, "np").1, Skipped::Port);
}

#[test]
fn node_port_addresses_of_the_other_family_only_listen_everywhere() {
    let case = Case::new("v6 cidrs on a v4 plan")
        .svc(svc("np", "10.96.0.1").node_port(30080))
        .config(|c| {
            c.with_node_port_addresses(NodePortAddresses::Cidrs(vec!["fd00::/64"
                .parse()
                .expect("cidr")]))
        });
    let p = plan(&case.state, &case.config);
    assert_eq!(p.node_port_addresses, crate::plan::NodePortListen::AllLocal);
    let keys: Vec<ServiceKey> = p
        .services
        .values()
        .flat_map(|s| s.external.iter().flat_map(|e| &e.keys))
        .map(|k| k.key)
        .collect();
    assert_eq!(
        keys,
        vec![ServiceKey::AnyLocal {
            protocol: Protocol::Tcp,
            port: 30080
        }]
    );
}
