//! Malformed input: the bad object (or port, or address) is skipped with a warning that names
//! it, and everything else is still planned. Every row checks both halves.

use super::*;
use crate::plan::ServicePortName;
use crate::warning::{ObjectKind, Skipped};

/// A healthy Service planned beside every malformed one: it must survive each row.
fn healthy() -> (Svc, Slice) {
    (
        svc("healthy", "10.96.0.100"),
        slice("healthy-1", "healthy", 8080).ep("10.244.1.100", NODE, Cond::Ready),
    )
}

struct Row {
    name: &'static str,
    services: Vec<Svc>,
    slices: Vec<Slice>,
    /// (kind, object name, field, what was skipped) of the one warning expected.
    warning: (ObjectKind, &'static str, &'static str, Skipped),
    /// Service ports (`name:port/proto` Display form) that must still be planned besides `healthy`.
    planned: &'static [&'static str],
    /// Service ports that must not be planned.
    absent: &'static [&'static str],
}

fn rows() -> Vec<Row> {
    use ObjectKind::*;
    vec![
        Row {
            name: "unparsable cluster IP",
            services: vec![svc("bad", "10.96.0.300")],
            slices: vec![],
            warning: (Service, "bad", "spec.clusterIPs[0]", Skipped::Object),
            planned: &[],
            absent: &["default/bad/tcp"],
        },
        Row {
            name: "IPv6 cluster IP declared IPv4",
            services: vec![svc("bad", "fd00::1").cluster_ips(&["fd00::1"], &["IPv4"])],
            slices: vec![],
            warning: (Service, "bad", "spec.clusterIPs[0]", Skipped::Object),
            planned: &[],
            absent: &["default/bad/tcp"],
        },
        Row {
            name: "port 0 skips that port only",
            services: vec![
                svc("bad", "10.96.0.1").ports(&[("a", "TCP", 0, None), ("b", "TCP", 81, None)])
            ],
            slices: vec![],
            warning: (Service, "bad", "spec.ports[0].port", Skipped::Port),
            planned: &["default/bad:b/tcp"],
            absent: &["default/bad:a/tcp"],
        },
        Row {
            name: "port 70000 skips that port only",
            services: vec![
                svc("bad", "10.96.0.1").ports(&[("a", "TCP", 80, None), ("b", "TCP", 70000, None)])
            ],
            slices: vec![],
            warning: (Service, "bad", "spec.ports[1].port", Skipped::Port),
            planned: &["default/bad:a/tcp"],
            absent: &["default/bad:b/tcp"],
        },
        Row {
            name: "unknown protocol",
            services: vec![
                svc("bad", "10.96.0.1").ports(&[("a", "ICMP", 80, None), ("b", "UDP", 80, None)])
            ],
            slices: vec![],
            warning: (Service, "bad", "spec.ports[0].protocol", Skipped::Port),
            planned: &["default/bad:b/udp"],
            absent: &[],
        },
        Row {
            name: "NodePort that is no port number",
            services: vec![svc("bad", "10.96.0.1").node_port(70000)],
            slices: vec![],
            warning: (Service, "bad", "spec.ports[0].nodePort", Skipped::Port),
            planned: &[],
            absent: &["default/bad/tcp"],
        },
        Row {
            name: "duplicate NodePort: the older Service keeps it",
            services: vec![
                svc("young", "10.96.0.2").node_port(30001).created(2000),
                svc("old", "10.96.0.1").node_port(30001).created(1000),
            ],
            slices: vec![],
            warning: (Service, "young", "spec.ports[0].nodePort", Skipped::Port),
            planned: &["default/old/tcp"],
            absent: &["default/young/tcp"],
        },
        Row {
            name:
                "same NodePort number on another protocol is fine, an external IP collision is not",
            services: vec![
                svc("a", "10.96.0.1")
                    .node_port(30001)
                    .external_ip("198.51.100.1")
                    .created(1),
                svc("b", "10.96.0.2")
                    .ports(&[("", "UDP", 80, Some(30001))])
                    .external_ip("198.51.100.1")
                    .created(2),
                svc("c", "10.96.0.3").external_ip("198.51.100.1").created(3),
            ],
            slices: vec![],
            warning: (Service, "c", "spec.externalIPs", Skipped::Address),
            planned: &["default/a/tcp", "default/b/udp", "default/c/tcp"],
            absent: &[],
        },
        Row {
            name: "duplicate port name within a Service",
            services: vec![
                svc("bad", "10.96.0.1").ports(&[("x", "TCP", 80, None), ("x", "TCP", 81, None)])
            ],
            slices: vec![],
            warning: (Service, "bad", "spec.ports[1].name", Skipped::Port),
            planned: &["default/bad:x/tcp"],
            absent: &[],
        },
        Row {
            name: "unparsable external IP skips that address",
            services: vec![svc("bad", "10.96.0.1").external_ip("1.2.3")],
            slices: vec![],
            warning: (Service, "bad", "spec.externalIPs[0]", Skipped::Address),
            planned: &["default/bad/tcp"],
            absent: &[],
        },
        Row {
            name: "unparsable ingress IP skips that address",
            services: vec![svc("bad", "10.96.0.1").lb("not-an-ip", None)],
            slices: vec![],
            warning: (
                Service,
                "bad",
                "status.loadBalancer.ingress[0]",
                Skipped::Address,
            ),
            planned: &["default/bad/tcp"],
            absent: &[],
        },
        Row {
            name: "unparsable source range is left out of the allow list",
            services: vec![svc("bad", "10.96.0.1")
                .lb("198.51.100.8", None)
                .ranges(&["10.0.0.0/33"])],
            slices: vec![],
            warning: (
                Service,
                "bad",
                "spec.loadBalancerSourceRanges[0]",
                Skipped::Address,
            ),
            planned: &["default/bad/tcp"],
            absent: &[],
        },
        Row {
            name: "unknown traffic policy",
            services: vec![
                svc("bad", "10.96.0.1").with(|s| s.external_traffic_policy = Some("Nearby".into()))
            ],
            slices: vec![],
            warning: (
                Service,
                "bad",
                "spec.externalTrafficPolicy",
                Skipped::Object,
            ),
            planned: &[],
            absent: &["default/bad/tcp"],
        },
        Row {
            name: "affinity timeout out of range falls back to the default",
            services: vec![svc("bad", "10.96.0.1").affinity(Some(100000))],
            slices: vec![],
            warning: (
                Service,
                "bad",
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                Skipped::Nothing,
            ),
            planned: &["default/bad/tcp"],
            absent: &[],
        },
        Row {
            name: "empty clusterIPs",
            services: vec![svc("bad", "10.96.0.1").with(|s| s.cluster_ips.clear())],
            slices: vec![],
            warning: (Service, "bad", "spec.clusterIPs", Skipped::Object),
            planned: &[],
            absent: &["default/bad/tcp"],
        },
        Row {
            name: "unparsable endpoint address skips that endpoint",
            services: vec![svc("web", "10.96.0.1")],
            slices: vec![slice("web-1", "web", 8080)
                .ep("10.244.1.400", NODE, Cond::Ready)
                .ep("10.244.1.5", NODE, Cond::Ready)],
            warning: (
                EndpointSlice,
                "web-1",
                "endpoints[0].addresses[0]",
                Skipped::Address,
            ),
            planned: &["default/web/tcp"],
            absent: &[],
        },
        Row {
            name: "IPv6 endpoint in an IPv4 slice",
            services: vec![svc("web", "10.96.0.1")],
            slices: vec![slice("web-1", "web", 8080)
                .ep("fd00::5", NODE, Cond::Ready)
                .ep("10.244.1.5", NODE, Cond::Ready)],
            warning: (
                EndpointSlice,
                "web-1",
                "endpoints[0].addresses[0]",
                Skipped::Address,
            ),
            planned: &["default/web/tcp"],
            absent: &[],
        },
        Row {
            name: "endpoint port out of range",
            services: vec![svc("web", "10.96.0.1")],
            slices: vec![slice("web-1", "web", 70000).ep("10.244.1.5", NODE, Cond::Ready)],
            warning: (EndpointSlice, "web-1", "ports[0].port", Skipped::Port),
            planned: &["default/web/tcp"],
            absent: &[],
        },
        Row {
            name: "slice without service-name label",
            services: vec![],
            slices: vec![slice("orphan", "x", 80).with_labels_cleared()],
            warning: (
                EndpointSlice,
                "orphan",
                "metadata.labels[kubernetes.io/service-name]",
                Skipped::Object,
            ),
            planned: &[],
            absent: &[],
        },
    ]
}

impl Slice {
    fn with_labels_cleared(mut self) -> Self {
        self.0.meta.labels.clear();
        self
    }
}

fn find<'a>(plan: &'a ProxyPlan, display: &str) -> Option<&'a ServicePortName> {
    plan.services.keys().find(|k| k.to_string() == display)
}

#[test]
fn malformed_input_is_skipped_and_the_rest_survives() {
    for row in rows() {
        let (h_svc, h_slice) = healthy();
        let mut case = Case::new(row.name).svc(h_svc).slice(h_slice);
        for s in row.services {
            case = case.svc(s);
        }
        for s in row.slices {
            case = case.slice(s);
        }
        let plan = plan(&case.state, &case.config);
        let (kind, object, field, skipped) = row.warning;
        assert_eq!(
            plan.warnings.len(),
            1,
            "{}: want exactly one warning, got {:#?}",
            row.name,
            plan.warnings
        );
        let w = &plan.warnings[0];
        assert_eq!(
            (
                w.kind,
                w.object.namespace.as_str(),
                w.object.name.as_str(),
                w.field.as_str(),
                w.skipped
            ),
            (kind, "default", object, field, skipped),
            "{}: {w}",
            row.name
        );
        let healthy = plan.services.get(&ServicePortName {
            service: crate::model::ObjectRef::new("default", "healthy"),
            port: String::new(),
            protocol: Protocol::Tcp,
        });
        assert!(
            healthy.is_some_and(|s| s.endpoints.cluster.as_ref().is_some_and(|e| e.len() == 1)),
            "{}: the healthy service must still be planned with its endpoint",
            row.name
        );
        for p in row.planned {
            assert!(
                find(&plan, p).is_some(),
                "{}: {p} should be planned; plan has {:?}",
                row.name,
                plan.services
                    .keys()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            );
        }
        for p in row.absent {
            assert!(
                find(&plan, p).is_none(),
                "{}: {p} should not be planned",
                row.name
            );
        }
    }
}

#[test]
fn warnings_name_object_and_field_in_text() {
    let case = Case::new("text")
        .svc(svc("bad", "10.96.0.1").node_port(99))
        .config(|c| c.with_node_port_range(Some(30000..=32767)));
    let plan = plan(&case.state, &case.config);
    let text = plan.warnings[0].to_string();
    assert_eq!(
        text,
        "Service default/bad: spec.ports[0].nodePort: 99 is outside the node port range 30000-32767 (--node-port-range) (port skipped)"
    );
}

#[test]
fn endpoint_with_bad_address_keeps_siblings() {
    let case = Case::new("siblings").svc(svc("web", "10.96.0.1")).slice(
        slice("web-1", "web", 8080)
            .ep("bogus", NODE, Cond::Ready)
            .ep("10.244.1.5", NODE, Cond::Ready),
    );
    let plan = plan(&case.state, &case.config);
    let s = plan.services.values().next().expect("planned");
    let eps: Vec<String> = s
        .endpoints_for(s.internal.fallback())
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(eps, vec!["10.244.1.5:8080"]);
}
