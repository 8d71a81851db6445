//! Synthetic clusters of fixed shape for benchmarks: `n` ClusterIP services with `k` endpoints
//! each, numbered deterministically so figures compare across commits.
//!
//! Endpoints carry the conditions the EndpointSlice controller writes for a running pod
//! (ready, serving, not terminating): the same plan as absent conditions, but a dump of the
//! cluster then looks like a real one.

use switchyard_core::model::{
    ClusterState, Endpoint, EndpointConditions, EndpointPort, EndpointSlice, ObjectMeta, Service,
    ServicePort, LABEL_SERVICE_NAME,
};
use switchyard_core::{plan, IpFamily, ProxyConfig, ProxyPlan};

/// Service `i` gets cluster IP 10.96.0.0 + i + 1 and endpoints from 10.245.0.0 on (never
/// routed: control-plane benchmarks only program rules).
pub fn cluster(services: usize, endpoints: usize) -> ClusterState {
    let mut state = ClusterState::default();
    for i in 0..services {
        add_service(&mut state, i, endpoints, None);
    }
    state
}

/// Adds service `i`. `endpoint_ips` overrides the endpoint addresses (for datapath runs whose
/// endpoints must be real pods).
pub fn add_service(
    state: &mut ClusterState,
    i: usize,
    endpoints: usize,
    endpoint_ips: Option<&[String]>,
) {
    state.upsert_service(service(i));
    state.upsert_endpoint_slice(endpoint_slice(i, endpoints, endpoint_ips));
}

/// Service `i` alone (as [`add_service`] adds it).
pub fn service(i: usize) -> Service {
    let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
    let ip = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 96, 0, 0)) + n);
    Service {
        meta: ObjectMeta::new("bench", service_name(i)),
        cluster_ips: vec![ip.to_string()],
        ports: vec![ServicePort {
            name: "http".into(),
            port: 80,
            protocol: Some("TCP".into()),
            node_port: None,
        }],
        ..Service::default()
    }
}

/// The EndpointSlice of service `i` (as [`add_service`] adds it).
pub fn endpoint_slice(
    i: usize,
    endpoints: usize,
    endpoint_ips: Option<&[String]>,
) -> EndpointSlice {
    let name = service_name(i);
    let mut meta = ObjectMeta::new("bench", format!("{name}-x"));
    meta.labels.insert(LABEL_SERVICE_NAME.into(), name);
    let addresses: Vec<String> = match endpoint_ips {
        Some(ips) => ips.to_vec(),
        None => (0..endpoints)
            .map(|e| {
                let k = u32::try_from(i * endpoints + e).unwrap_or(u32::MAX);
                std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 245, 0, 0)) + k)
                    .to_string()
            })
            .collect(),
    };
    EndpointSlice {
        meta,
        address_type: "IPv4".into(),
        endpoints: addresses
            .into_iter()
            .map(|a| Endpoint {
                addresses: vec![a],
                conditions: EndpointConditions {
                    ready: Some(true),
                    serving: Some(true),
                    terminating: Some(false),
                },
                node_name: Some("node-b".into()),
                ..Endpoint::default()
            })
            .collect(),
        ports: vec![EndpointPort {
            name: Some("http".into()),
            protocol: Some("TCP".into()),
            port: Some(8080),
        }],
    }
}

fn service_name(i: usize) -> String {
    format!("svc-{i:05}")
}

/// The plan for a synthetic cluster, as node-a.
pub fn plan_of(state: &ClusterState) -> ProxyPlan {
    plan(
        state,
        &ProxyConfig::new(IpFamily::V4, "node-a")
            .with_cluster_cidrs(["10.244.0.0/16".parse().expect("literal CIDR")]),
    )
}

/// The benchmark report's sweep (services), each with 10 endpoints per service.
pub const SWEEP: [usize; 3] = [1_000, 10_000, 100_000];

/// The benchmarks' fixed scales: 1k and 10k services. `SWYD_BENCH_SCALES=a,b` overrides them,
/// for investigation only: figures compare across commits with the defaults.
pub fn scales() -> Vec<usize> {
    std::env::var("SWYD_BENCH_SCALES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1000, 10_000])
}

/// The control-plane scales as (services, endpoints per service): 1k x 10, 10k x 10 and
/// 10k x 2 (kube-proxy's published figure is for 10k x 2). `SWYD_BENCH_SCALES=a,bxk` overrides
/// them (`a` alone means `a x 10`), for investigation only.
pub fn control_scales() -> Vec<(usize, usize)> {
    std::env::var("SWYD_BENCH_SCALES")
        .ok()
        .map(|s| {
            s.split(',')
                .filter_map(|item| {
                    let mut parts = item.trim().splitn(2, 'x');
                    let n = parts.next()?.trim().parse().ok()?;
                    let k = parts.next().map_or(Some(10), |k| k.trim().parse().ok())?;
                    Some((n, k))
                })
                .collect()
        })
        .unwrap_or_else(|| vec![(1000, 10), (10_000, 10), (10_000, 2)])
}
