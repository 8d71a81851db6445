//! Health checks and Local-policy gaps as the plan states them.

use super::*;
use crate::model::ObjectRef;
use crate::plan::{health_checks, HealthCheck, NoLocalEndpoints};

/// An `externalTrafficPolicy: Local` LoadBalancer Service with two ports and a
/// healthCheckNodePort, and slices built by `endpoints`.
fn lb_local(hcnp: i32, endpoints: impl FnOnce(Slice) -> Slice) -> ProxyPlan {
    let svc = svc("web", "10.96.0.10")
        .ports(&[
            ("http", "TCP", 80, Some(30080)),
            ("https", "TCP", 443, Some(30443)),
        ])
        .lb("198.51.100.8", None)
        .etp_local()
        .with(|s| s.health_check_node_port = Some(hcnp));
    let slice = endpoints(
        slice("web-1", "web", 8080)
            .ports(&[("http", "TCP", Some(8080)), ("https", "TCP", Some(8443))]),
    );
    let case = Case::new("health").svc(svc).slice(slice);
    plan(&case.state, &case.config)
}

fn web() -> ObjectRef {
    ObjectRef::new("default", "web")
}

#[test]
fn local_ready_endpoints_are_counted_by_address_over_all_ports() {
    let p = lb_local(32000, |s| {
        s.ep("10.244.1.10", NODE, Cond::Ready)
            .ep("10.244.1.11", NODE, Cond::Ready)
            .ep("10.244.2.10", "node-b", Cond::Ready)
    });
    // Two ports, two local addresses: 2, not 4; the remote endpoint does not count.
    assert_eq!(
        p.health_checks().get(&web()),
        Some(&HealthCheck {
            port: 32000,
            local_endpoints: 2
        })
    );
    assert_eq!(p.no_local_endpoints(), NoLocalEndpoints::default());
}

#[test]
fn terminating_local_endpoints_fail_the_check_though_traffic_still_reaches_them() {
    let p = lb_local(32000, |s| {
        s.ep("10.244.1.10", NODE, Cond::ServingTerminating)
            .ep("10.244.2.10", "node-b", Cond::Ready)
    });
    let sp = p.services.values().next().expect("planned");
    assert_eq!(
        sp.endpoints.local.as_ref().map(Vec::len),
        Some(1),
        "the Local path falls back to the serving-terminating endpoint"
    );
    assert_eq!(p.health_checks()[&web()].local_endpoints, 0);
}

#[test]
fn no_local_endpoint_is_zero_and_counted_as_a_drop() {
    let p = lb_local(32000, |s| s.ep("10.244.2.10", "node-b", Cond::Ready));
    assert_eq!(p.health_checks()[&web()].local_endpoints, 0);
    // Both ports drop external traffic from outside.
    assert_eq!(
        p.no_local_endpoints(),
        NoLocalEndpoints {
            internal: 0,
            external: 2
        }
    );
}

#[test]
fn a_health_check_port_without_local_external_policy_is_not_served() {
    let svc = svc("web", "10.96.0.10")
        .node_port(30080)
        .with(|s| s.health_check_node_port = Some(32000));
    let case = Case::new("cluster policy").svc(svc);
    let p = plan(&case.state, &case.config);
    assert!(p.health_checks().is_empty(), "{:?}", p.health_checks());
}

#[test]
fn families_merge_to_one_check_per_service() {
    let v4 = lb_local(32000, |s| s.ep("10.244.1.10", NODE, Cond::Ready));
    let mut v6 = lb_local(32000, |s| s.ep("10.244.2.10", "node-b", Cond::Ready));
    v6.family = IpFamily::V6;
    let merged = health_checks(&[&v6, &v4]);
    assert_eq!(
        merged.get(&web()),
        Some(&HealthCheck {
            port: 32000,
            local_endpoints: 1
        })
    );
}

#[test]
fn internal_local_without_local_endpoints_is_counted() {
    let svc = svc("web", "10.96.0.10").itp_local();
    let slice = slice("web-1", "web", 8080).ep("10.244.2.10", "node-b", Cond::Ready);
    let case = Case::new("itp").svc(svc).slice(slice);
    let p = plan(&case.state, &case.config);
    assert_eq!(
        p.no_local_endpoints(),
        NoLocalEndpoints {
            internal: 1,
            external: 0
        }
    );
}
