//! One Service → its validated, typed form for one family.

use super::endpoints::valid_port;
use crate::config::ProxyConfig;
use crate::model::{Service, LABEL_HEADLESS, LABEL_SERVICE_PROXY_NAME};
use crate::plan::{IpFamily, Protocol, SourceRanges};
use crate::warning::{ObjectKind, Skipped, Warning};
use ipnet::IpNet;
use std::net::IpAddr;

/// Kubernetes' default `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u32 = 10800;
/// Kubernetes' upper bound for that timeout (1 day).
const MAX_AFFINITY_TIMEOUT_SECONDS: i32 = 86400;

/// A Service that passed validation for one family.
#[derive(Debug)]
pub(crate) struct ValidService {
    pub cluster_ip: IpAddr,
    pub ports: Vec<ValidPort>,
    pub external_ips: Vec<IpAddr>,
    pub load_balancer_ips: Vec<IpAddr>,
    pub source_ranges: Option<SourceRanges>,
    pub affinity_timeout_seconds: Option<u32>,
    pub external_local: bool,
    pub internal_local: bool,
    pub health_check_node_port: Option<u16>,
}

#[derive(Debug, Clone)]
pub(crate) struct ValidPort {
    /// Index in `spec.ports`, for warnings.
    pub index: usize,
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
    pub node_port: Option<u16>,
}

/// Why a Service is not proxied at all, when that is by design rather than a defect.
pub(crate) fn not_ours(svc: &Service) -> Option<&'static str> {
    if svc.meta.labels.contains_key(LABEL_SERVICE_PROXY_NAME) {
        return Some("label service.kubernetes.io/service-proxy-name: another proxy owns it");
    }
    if svc.meta.labels.contains_key(LABEL_HEADLESS) {
        return Some("label service.kubernetes.io/headless");
    }
    if svc.service_type.as_deref() == Some("ExternalName") {
        return Some("type ExternalName (DNS only)");
    }
    if svc.cluster_ips.first().is_some_and(|ip| ip == "None") {
        return Some("headless (clusterIP: None)");
    }
    None
}

/// Validates `svc` for `config.family`. Returns `None` (with a warning where the object is
/// malformed) when the Service has nothing to program in this family.
pub(crate) fn validate_service(
    svc: &Service,
    config: &ProxyConfig,
    node_ips: &[IpAddr],
    warnings: &mut Vec<Warning>,
) -> Option<ValidService> {
    let mut w = Warner { svc, warnings };
    let family = config.family;

    let type_ = svc.service_type.as_deref().unwrap_or("ClusterIP");
    if !matches!(type_, "ClusterIP" | "NodePort" | "LoadBalancer") {
        w.warn(
            "spec.type",
            format!("unknown type {type_:?}"),
            Skipped::Object,
        );
        return None;
    }
    if svc.cluster_ips.is_empty() {
        w.warn(
            "spec.clusterIPs",
            "empty: no cluster IP allocated".into(),
            Skipped::Object,
        );
        return None;
    }
    let mut cluster_ip = None;
    for (i, raw) in svc.cluster_ips.iter().enumerate() {
        let field = format!("spec.clusterIPs[{i}]");
        let Ok(ip) = raw.trim().parse::<IpAddr>() else {
            w.warn(
                &field,
                format!("{raw:?} is not an IP address"),
                Skipped::Object,
            );
            return None;
        };
        if let Some(declared) = svc.ip_families.get(i) {
            if declared != IpFamily::of(&ip).api_name() {
                w.warn(
                    &field,
                    format!(
                        "{ip} is not an {declared} address, but spec.ipFamilies[{i}] is {declared}"
                    ),
                    Skipped::Object,
                );
                return None;
            }
        }
        if IpFamily::of(&ip) == family && cluster_ip.is_none() {
            cluster_ip = Some(ip);
        }
    }
    // A single-stack Service of the other family simply has nothing for this plan.
    let cluster_ip = cluster_ip?;

    let ports = validate_ports(&mut w, config);
    if ports.is_empty() {
        return None;
    }

    let external_ips = parse_ips(
        &mut w,
        "spec.externalIPs",
        svc.external_ips.iter().map(Some),
        family,
    );
    let load_balancer_ips = if type_ == "LoadBalancer" {
        let vips = svc.load_balancer_ingress.iter().map(|ing| {
            ing.ip
                .as_ref()
                .filter(|_| ing.ip_mode.as_deref() != Some("Proxy"))
        });
        parse_ips(&mut w, "status.loadBalancer.ingress", vips, family)
    } else {
        Vec::new()
    };
    let source_ranges = if load_balancer_ips.is_empty() {
        None
    } else {
        source_ranges(&mut w, family, node_ips)
    };

    let affinity_timeout_seconds = match svc.session_affinity.as_deref().unwrap_or("None") {
        "None" => None,
        "ClientIP" => Some(match svc.session_affinity_timeout_seconds {
            None => DEFAULT_AFFINITY_TIMEOUT_SECONDS,
            Some(t) if (1..=MAX_AFFINITY_TIMEOUT_SECONDS).contains(&t) => t.unsigned_abs(),
            Some(t) => {
                w.warn(
                    "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                    format!("{t} is outside 1-{MAX_AFFINITY_TIMEOUT_SECONDS}; using {DEFAULT_AFFINITY_TIMEOUT_SECONDS}"),
                    Skipped::Nothing,
                );
                DEFAULT_AFFINITY_TIMEOUT_SECONDS
            }
        }),
        other => {
            w.warn(
                "spec.sessionAffinity",
                format!("unknown value {other:?}"),
                Skipped::Object,
            );
            return None;
        }
    };

    let external_local = policy_is_local(
        &mut w,
        "spec.externalTrafficPolicy",
        &svc.external_traffic_policy,
    )?;
    let internal_local = policy_is_local(
        &mut w,
        "spec.internalTrafficPolicy",
        &svc.internal_traffic_policy,
    )?;

    let health_check_node_port = svc.health_check_node_port.and_then(|n| {
        let valid = valid_port(n);
        if valid.is_none() {
            w.warn(
                "spec.healthCheckNodePort",
                format!("{n} is not a port number (1-65535)"),
                Skipped::Nothing,
            );
        }
        valid
    });

    Some(ValidService {
        cluster_ip,
        ports,
        external_ips,
        load_balancer_ips,
        source_ranges,
        affinity_timeout_seconds,
        external_local,
        internal_local,
        health_check_node_port,
    })
}

fn validate_ports(w: &mut Warner<'_>, config: &ProxyConfig) -> Vec<ValidPort> {
    let mut ports: Vec<ValidPort> = Vec::new();
    for (index, port) in w.svc.ports.iter().enumerate() {
        let protocol = match port.protocol.as_deref().map(str::parse::<Protocol>) {
            None => Protocol::Tcp,
            Some(Ok(p)) => p,
            Some(Err(problem)) => {
                w.warn(
                    &format!("spec.ports[{index}].protocol"),
                    problem,
                    Skipped::Port,
                );
                continue;
            }
        };
        let Some(number) = valid_port(port.port) else {
            w.warn(
                &format!("spec.ports[{index}].port"),
                format!("{} is not a port number (1-65535)", port.port),
                Skipped::Port,
            );
            continue;
        };
        let node_port = match port.node_port {
            None | Some(0) => None,
            Some(n) => {
                let in_range = |p: &u16| {
                    config
                        .node_port_range
                        .as_ref()
                        .is_none_or(|r| r.contains(p))
                };
                match valid_port(n).filter(in_range) {
                    Some(p) => Some(p),
                    None => {
                        let problem = match &config.node_port_range {
                            Some(r) if valid_port(n).is_some() => format!(
                                "{n} is outside the node port range {}-{} (--node-port-range)",
                                r.start(),
                                r.end()
                            ),
                            _ => format!("{n} is not a port number (1-65535)"),
                        };
                        w.warn(
                            &format!("spec.ports[{index}].nodePort"),
                            problem,
                            Skipped::Port,
                        );
                        continue;
                    }
                }
            }
        };
        if ports
            .iter()
            .any(|p| p.name == port.name && p.protocol == protocol)
        {
            w.warn(
                &format!("spec.ports[{index}].name"),
                format!("port name {:?}/{protocol} is used twice", port.name),
                Skipped::Port,
            );
            continue;
        }
        ports.push(ValidPort {
            index,
            name: port.name.clone(),
            protocol,
            port: number,
            node_port,
        });
    }
    ports
}

/// Parses a list of addresses, keeping this family's, warning about unparsable ones. `None`
/// entries (an ingress with only a hostname, or `ipMode: Proxy`) are passed over silently.
fn parse_ips<'a>(
    w: &mut Warner<'_>,
    field: &str,
    raw: impl Iterator<Item = Option<&'a String>>,
    family: IpFamily,
) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for (i, raw) in raw.enumerate() {
        let Some(raw) = raw else { continue };
        match raw.trim().parse::<IpAddr>() {
            Ok(ip) if IpFamily::of(&ip) == family => {
                if !out.contains(&ip) {
                    out.push(ip);
                }
            }
            Ok(_) => {}
            Err(_) => w.warn(
                &format!("{field}[{i}]"),
                format!("{raw:?} is not an IP address"),
                Skipped::Address,
            ),
        }
    }
    out
}

/// `loadBalancerSourceRanges` for this family, or `None` when the Service sets none.
fn source_ranges(
    w: &mut Warner<'_>,
    family: IpFamily,
    node_ips: &[IpAddr],
) -> Option<SourceRanges> {
    if w.svc.load_balancer_source_ranges.is_empty() {
        return None;
    }
    let mut allow = Vec::new();
    for (i, raw) in w.svc.load_balancer_source_ranges.iter().enumerate() {
        match raw.trim().parse::<IpNet>() {
            Ok(net) if IpFamily::of(&net.addr()) == family => allow.push(net.trunc()),
            Ok(_) => {}
            Err(_) => w.warn(
                &format!("spec.loadBalancerSourceRanges[{i}]"),
                format!("{raw:?} is not a CIDR"),
                Skipped::Address,
            ),
        }
    }
    let allow_from_load_balancer_ips = node_ips
        .iter()
        .any(|ip| allow.iter().any(|net| net.contains(ip)));
    Some(SourceRanges {
        allow,
        allow_from_load_balancer_ips,
    })
}

fn policy_is_local(w: &mut Warner<'_>, field: &str, value: &Option<String>) -> Option<bool> {
    match value.as_deref().unwrap_or("Cluster") {
        "Cluster" => Some(false),
        "Local" => Some(true),
        other => {
            w.warn(
                field,
                format!("unknown policy {other:?} (want Cluster or Local)"),
                Skipped::Object,
            );
            None
        }
    }
}

struct Warner<'a> {
    svc: &'a Service,
    warnings: &'a mut Vec<Warning>,
}

impl Warner<'_> {
    fn warn(&mut self, field: &str, problem: String, skipped: Skipped) {
        self.warnings.push(Warning {
            kind: ObjectKind::Service,
            object: self.svc.meta.object_ref(),
            field: field.to_string(),
            problem,
            skipped,
        });
    }
}
