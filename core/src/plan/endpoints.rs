//! EndpointSlices → per-service endpoint candidates, validated and deduplicated.

use crate::model::{ClusterState, EndpointSlice, ObjectRef};
use crate::plan::{Endpoint, IpFamily, Protocol};
use crate::semantics::Candidate;
use crate::warning::{ObjectKind, Skipped, Warning};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// One slice after validation: its usable ports and endpoints.
#[derive(Debug, Default)]
pub(crate) struct ValidSlice {
    ports: Vec<(String, Protocol, u16)>,
    endpoints: Vec<SliceEndpoint>,
}

#[derive(Debug)]
struct SliceEndpoint {
    ip: IpAddr,
    node_name: Option<String>,
    zone: Option<String>,
    ready: bool,
    serving: bool,
    terminating: bool,
    zone_hints: Vec<String>,
    node_hints: Vec<String>,
}

/// Valid slices of `family`, grouped by the Service they belong to, each group in slice-name
/// order (the map's order), so deduplication is deterministic.
pub(crate) fn slices_by_service(
    state: &ClusterState,
    family: IpFamily,
    warnings: &mut Vec<Warning>,
) -> BTreeMap<ObjectRef, Vec<ValidSlice>> {
    let mut out: BTreeMap<ObjectRef, Vec<ValidSlice>> = BTreeMap::new();
    for slice in state.endpoint_slices.values() {
        if let Some(service) = owner(slice, family, warnings) {
            let valid = validate_slice(slice, family, warnings);
            out.entry(service).or_default().push(valid);
        }
    }
    out
}

/// The Service a slice of `family` belongs to. `None` for the other family's (and FQDN)
/// slices, which are not ours to proxy, and, with a warning, for a slice naming no Service.
pub(crate) fn owner(
    slice: &EndpointSlice,
    family: IpFamily,
    warnings: &mut Vec<Warning>,
) -> Option<ObjectRef> {
    if slice.address_type != family.api_name() {
        return None;
    }
    let Some(service) = slice.service_name() else {
        warnings.push(warn(
            slice,
            "metadata.labels[kubernetes.io/service-name]",
            "missing: the slice belongs to no Service",
            Skipped::Object,
        ));
        return None;
    };
    Some(ObjectRef::new(slice.meta.namespace.clone(), service))
}

/// A slice's usable ports and endpoints; each unusable one is left out with a warning.
pub(crate) fn validate_slice(
    slice: &EndpointSlice,
    family: IpFamily,
    warnings: &mut Vec<Warning>,
) -> ValidSlice {
    let mut valid = ValidSlice::default();
    for (i, port) in slice.ports.iter().enumerate() {
        let protocol = match port.protocol.as_deref().map(str::parse::<Protocol>) {
            None => Protocol::Tcp,
            Some(Ok(p)) => p,
            Some(Err(problem)) => {
                warnings.push(warn(
                    slice,
                    &format!("ports[{i}].protocol"),
                    &problem,
                    Skipped::Port,
                ));
                continue;
            }
        };
        // A port without a number means the Service's named target port matched nothing in the
        // pod: no endpoint for it, not an error.
        let Some(number) = port.port else { continue };
        let Some(number) = valid_port(number) else {
            warnings.push(warn(
                slice,
                &format!("ports[{i}].port"),
                &format!("{number} is not a port number (1-65535)"),
                Skipped::Port,
            ));
            continue;
        };
        valid
            .ports
            .push((port.name.clone().unwrap_or_default(), protocol, number));
    }
    for (i, endpoint) in slice.endpoints.iter().enumerate() {
        let field = format!("endpoints[{i}].addresses[0]");
        let Some(address) = endpoint.addresses.first() else {
            warnings.push(warn(slice, &field, "no address", Skipped::Address));
            continue;
        };
        let ip = match address.trim().parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => {
                warnings.push(warn(
                    slice,
                    &field,
                    &format!("{address:?} is not an IP address"),
                    Skipped::Address,
                ));
                continue;
            }
        };
        if IpFamily::of(&ip) != family {
            warnings.push(warn(
                slice,
                &field,
                &format!("{ip} is not an {family} address but addressType is {family}"),
                Skipped::Address,
            ));
            continue;
        }
        // API defaults: ready absent = true; serving absent = "defer to ready"; terminating
        // absent = false. (The v1 Endpoints mirror sets only `ready`.)
        let c = endpoint.conditions;
        let ready = c.ready.unwrap_or(true);
        valid.endpoints.push(SliceEndpoint {
            ip,
            node_name: endpoint.node_name.clone(),
            zone: endpoint.zone.clone(),
            ready,
            serving: c.serving.unwrap_or(ready),
            terminating: c.terminating.unwrap_or(false),
            zone_hints: endpoint.hints.for_zones.clone(),
            node_hints: endpoint.hints.for_nodes.clone(),
        });
    }
    valid
}

/// The candidates for one service port: every slice port with the same name and protocol, merged
/// across slices and deduplicated by address and port. The first occurrence wins, except that a
/// local one replaces a non-local one (kube-proxy's rule: locality should never differ between
/// duplicates, but if it does, trusting "local" keeps Local-policy traffic working).
pub(crate) fn candidates_for(
    slices: &[ValidSlice],
    port_name: &str,
    protocol: Protocol,
    node_name: &str,
) -> Vec<Candidate> {
    let mut by_key: BTreeMap<(IpAddr, u16), Candidate> = BTreeMap::new();
    for slice in slices {
        let ports = slice
            .ports
            .iter()
            .filter(|(name, proto, _)| name == port_name && *proto == protocol);
        for (_, _, port) in ports {
            for e in &slice.endpoints {
                let is_local = !node_name.is_empty() && e.node_name.as_deref() == Some(node_name);
                let candidate = Candidate {
                    endpoint: Endpoint {
                        ip: e.ip,
                        port: *port,
                        node_name: e.node_name.clone(),
                        zone: e.zone.clone(),
                        is_local,
                        ready: e.ready,
                        serving: e.serving,
                        terminating: e.terminating,
                    },
                    zone_hints: e.zone_hints.clone(),
                    node_hints: e.node_hints.clone(),
                };
                let key = (e.ip, *port);
                let replace = by_key
                    .get(&key)
                    .is_none_or(|old| is_local && !old.endpoint.is_local);
                if replace {
                    by_key.insert(key, candidate);
                }
            }
        }
    }
    by_key.into_values().collect()
}

pub(crate) fn valid_port(n: i32) -> Option<u16> {
    u16::try_from(n).ok().filter(|p| *p != 0)
}

fn warn(slice: &EndpointSlice, field: &str, problem: &str, skipped: Skipped) -> Warning {
    Warning {
        kind: ObjectKind::EndpointSlice,
        object: slice.meta.object_ref(),
        field: field.to_string(),
        problem: problem.to_string(),
        skipped,
    }
}
