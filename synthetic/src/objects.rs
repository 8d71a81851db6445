//! A `core::model` cluster as the Kubernetes objects the API server would serve for it.
//!
//! Every field the model holds is written where the API puts it, so the agent's sources read
//! back exactly the model they were generated from (`agent/tests/manifest_dump.rs` checks
//! that). Fields the model ignores are filled in as `kubectl get` prints them (uid,
//! resourceVersion, selectors, target ports, endpoint `targetRef`s, owner references): a
//! parser pays for every byte of a real dump, not only for the fields Switchyard reads.

use serde_json::{json, Map, Value};
use switchyard_core::model::{ClusterState, EndpointSlice, Node, ObjectMeta, Service};

/// Every object of `state`: its Node (if any), then all Services, then all EndpointSlices —
/// the order of `kubectl get nodes,services,endpointslices -A`.
pub fn all(state: &ClusterState) -> Vec<Value> {
    let mut out = Vec::with_capacity(1 + state.services.len() + state.endpoint_slices.len());
    out.extend(state.node.iter().map(node));
    out.extend(state.services.values().map(service));
    out.extend(state.endpoint_slices.values().map(endpoint_slice));
    out
}

/// A `v1 Service`.
pub fn service(s: &Service) -> Value {
    let mut spec = Map::new();
    put(&mut spec, "type", s.service_type.as_ref().map(|t| json!(t)));
    if let Some(first) = s.cluster_ips.first() {
        spec.insert("clusterIP".into(), json!(first));
        spec.insert("clusterIPs".into(), json!(s.cluster_ips));
    }
    put_list(&mut spec, "ipFamilies", &s.ip_families);
    spec.insert("ipFamilyPolicy".into(), json!("SingleStack"));
    let ports: Vec<Value> = s
        .ports
        .iter()
        .map(|p| {
            let mut port = Map::new();
            if !p.name.is_empty() {
                port.insert("name".into(), json!(p.name));
            }
            port.insert("port".into(), json!(p.port));
            put(&mut port, "protocol", p.protocol.as_ref().map(|v| json!(v)));
            put(&mut port, "nodePort", p.node_port.map(|v| json!(v)));
            port.insert("targetPort".into(), json!(p.port));
            Value::Object(port)
        })
        .collect();
    spec.insert("ports".into(), Value::Array(ports));
    spec.insert("selector".into(), json!({"app": s.meta.name}));
    put_list(&mut spec, "externalIPs", &s.external_ips);
    put_list(
        &mut spec,
        "loadBalancerSourceRanges",
        &s.load_balancer_source_ranges,
    );
    put(
        &mut spec,
        "sessionAffinity",
        s.session_affinity.as_ref().map(|v| json!(v)),
    );
    put(
        &mut spec,
        "sessionAffinityConfig",
        s.session_affinity_timeout_seconds
            .map(|t| json!({"clientIP": {"timeoutSeconds": t}})),
    );
    put(
        &mut spec,
        "externalTrafficPolicy",
        s.external_traffic_policy.as_ref().map(|v| json!(v)),
    );
    put(
        &mut spec,
        "internalTrafficPolicy",
        s.internal_traffic_policy.as_ref().map(|v| json!(v)),
    );
    put(
        &mut spec,
        "healthCheckNodePort",
        s.health_check_node_port.map(|v| json!(v)),
    );
    put(
        &mut spec,
        "trafficDistribution",
        s.traffic_distribution.as_ref().map(|v| json!(v)),
    );
    let ingress: Vec<Value> = s
        .load_balancer_ingress
        .iter()
        .map(|i| {
            let mut m = Map::new();
            put(&mut m, "ip", i.ip.as_ref().map(|v| json!(v)));
            put(&mut m, "ipMode", i.ip_mode.as_ref().map(|v| json!(v)));
            Value::Object(m)
        })
        .collect();
    let load_balancer = if ingress.is_empty() {
        json!({})
    } else {
        json!({ "ingress": ingress })
    };
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata("Service", &s.meta, None),
        "spec": spec,
        "status": {"loadBalancer": load_balancer},
    })
}

/// A `discovery.k8s.io/v1 EndpointSlice`; each endpoint gets a `targetRef` to its Pod.
pub fn endpoint_slice(s: &EndpointSlice) -> Value {
    let endpoints: Vec<Value> = s
        .endpoints
        .iter()
        .enumerate()
        .map(|(j, e)| {
            let mut ep = Map::new();
            ep.insert("addresses".into(), json!(e.addresses));
            let mut conditions = Map::new();
            put(
                &mut conditions,
                "ready",
                e.conditions.ready.map(Value::Bool),
            );
            put(
                &mut conditions,
                "serving",
                e.conditions.serving.map(Value::Bool),
            );
            put(
                &mut conditions,
                "terminating",
                e.conditions.terminating.map(Value::Bool),
            );
            ep.insert("conditions".into(), Value::Object(conditions));
            put(&mut ep, "nodeName", e.node_name.as_ref().map(|v| json!(v)));
            put(&mut ep, "zone", e.zone.as_ref().map(|v| json!(v)));
            let mut hints = Map::new();
            let named = |names: &[String]| -> Value {
                names.iter().map(|n| json!({ "name": n })).collect()
            };
            if !e.hints.for_zones.is_empty() {
                hints.insert("forZones".into(), named(&e.hints.for_zones));
            }
            if !e.hints.for_nodes.is_empty() {
                hints.insert("forNodes".into(), named(&e.hints.for_nodes));
            }
            if !hints.is_empty() {
                ep.insert("hints".into(), Value::Object(hints));
            }
            let pod = format!("{}-{j}", s.meta.name);
            ep.insert(
                "targetRef".into(),
                json!({"kind": "Pod", "name": pod, "namespace": s.meta.namespace,
                       "uid": uid("Pod", &s.meta.namespace, &pod)}),
            );
            Value::Object(ep)
        })
        .collect();
    let ports: Vec<Value> = s
        .ports
        .iter()
        .map(|p| {
            let mut port = Map::new();
            put(&mut port, "name", p.name.as_ref().map(|v| json!(v)));
            put(&mut port, "port", p.port.map(|v| json!(v)));
            put(&mut port, "protocol", p.protocol.as_ref().map(|v| json!(v)));
            Value::Object(port)
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "addressType": s.address_type,
        "endpoints": endpoints,
        "metadata": metadata("EndpointSlice", &s.meta, s.service_name()),
        "ports": ports,
    })
}

/// A `v1 Node` with its labels and addresses.
pub fn node(n: &Node) -> Value {
    let meta = ObjectMeta {
        labels: n.labels.clone(),
        ..ObjectMeta::new("", n.name.clone())
    };
    let addresses: Vec<Value> = n
        .addresses
        .iter()
        .map(|a| json!({"type": a.address_type, "address": a.address}))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": metadata("Node", &meta, None),
        "status": {"addresses": addresses},
    })
}

/// `metadata` with the model's fields plus a uid and resourceVersion derived from the name
/// (deterministic, so dumps are byte-identical across runs) and, for a slice, the owner
/// reference to its Service.
fn metadata(kind: &str, m: &ObjectMeta, owner: Option<&str>) -> Value {
    let mut out = Map::new();
    put(
        &mut out,
        "creationTimestamp",
        m.creation_timestamp.map(|t| json!(rfc3339(t))),
    );
    if !m.labels.is_empty() {
        out.insert("labels".into(), json!(m.labels));
    }
    out.insert("name".into(), json!(m.name));
    if !m.namespace.is_empty() {
        out.insert("namespace".into(), json!(m.namespace));
    }
    if let Some(service) = owner {
        out.insert(
            "ownerReferences".into(),
            json!([{"apiVersion": "v1", "kind": "Service", "name": service,
                    "blockOwnerDeletion": true, "controller": true,
                    "uid": uid("Service", &m.namespace, service)}]),
        );
    }
    let h = fnv1a(&[kind, &m.namespace, &m.name]);
    out.insert(
        "resourceVersion".into(),
        json!((h % 90_000_000 + 10_000_000).to_string()),
    );
    out.insert("uid".into(), json!(uid(kind, &m.namespace, &m.name)));
    Value::Object(out)
}

fn put(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        map.insert(key.into(), v);
    }
}

fn put_list(map: &mut Map<String, Value>, key: &str, values: &[String]) {
    if !values.is_empty() {
        map.insert(key.into(), json!(values));
    }
}

/// A UUID-shaped identifier derived from the object's identity.
fn uid(kind: &str, namespace: &str, name: &str) -> String {
    let a = fnv1a(&[kind, namespace, name]);
    let b = fnv1a(&[name, namespace, kind]);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Seconds since the epoch as the API writes timestamps (`2026-01-02T03:04:05Z`).
fn rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn a_service_carries_every_model_field_where_the_api_puts_it() {
        let mut s = Service {
            meta: ObjectMeta::new("ns", "web"),
            service_type: Some("LoadBalancer".into()),
            cluster_ips: vec!["10.96.0.1".into(), "fd00::1".into()],
            session_affinity_timeout_seconds: Some(60),
            ..Service::default()
        };
        s.meta.creation_timestamp = Some(0);
        let v = service(&s);
        assert_eq!(v["spec"]["clusterIP"], "10.96.0.1");
        assert_eq!(v["spec"]["clusterIPs"][1], "fd00::1");
        assert_eq!(v["spec"]["type"], "LoadBalancer");
        assert_eq!(
            v["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
            60
        );
        assert_eq!(v["metadata"]["creationTimestamp"], "1970-01-01T00:00:00Z");
        assert_eq!(v["metadata"]["uid"].as_str().map(str::len), Some(36));
    }
}
