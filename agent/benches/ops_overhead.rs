//! What health checks and metrics add to every sync at 10k service ports: `Ops::before_sync`
//! (health checks, Local-policy gaps, plan sizes and warnings) and `Ops::after_sync`'s
//! recording, against `core::plan` of the same state (the baseline every sync already pays),
//! interleaved, repeated. 10k LoadBalancer Services with externalTrafficPolicy Local, a
//! healthCheckNodePort each and one local and one remote endpoint. No root, no kernel: the
//! dataplane is not involved. Prints medians and the ratio; figures, not a test.

use std::time::{Duration, Instant};
use switchyard_agent::ops::Ops;
use switchyard_agent::sync::{LaneOutcome, SyncOutcome};
use switchyard_core::model::{
    ClusterState, Endpoint, EndpointConditions, EndpointPort, EndpointSlice, Node, NodeAddress,
    ObjectMeta, Service, ServicePort, LABEL_SERVICE_NAME,
};
use switchyard_core::{plan, IpFamily, ProxyConfig};

const SERVICES: u32 = 10_000;
const ROUNDS: usize = 31;

fn state() -> ClusterState {
    let mut s = ClusterState {
        node: Some(Node {
            name: "node-a".into(),
            addresses: vec![NodeAddress {
                address_type: "InternalIP".into(),
                address: "192.168.0.10".into(),
            }],
            ..Node::default()
        }),
        ..ClusterState::default()
    };
    for i in 0..SERVICES {
        let name = format!("svc-{i}");
        s.upsert_service(Service {
            meta: ObjectMeta::new("bench", &name),
            service_type: Some("LoadBalancer".into()),
            cluster_ips: vec![format!("10.96.{}.{}", i / 250, 1 + i % 250)],
            external_traffic_policy: Some("Local".into()),
            health_check_node_port: Some(20000 + (i % 10000) as i32),
            ports: vec![ServicePort {
                name: "http".into(),
                protocol: Some("TCP".into()),
                port: 80,
                node_port: Some(30000 + (i % 2700) as i32),
            }],
            ..Service::default()
        });
        let ep = |ip: String, node: &str| Endpoint {
            addresses: vec![ip],
            conditions: EndpointConditions {
                ready: Some(true),
                serving: Some(true),
                terminating: Some(false),
            },
            node_name: Some(node.into()),
            ..Endpoint::default()
        };
        let mut meta = ObjectMeta::new("bench", format!("{name}-x"));
        meta.labels.insert(LABEL_SERVICE_NAME.into(), name.clone());
        s.upsert_endpoint_slice(EndpointSlice {
            meta,
            address_type: "IPv4".into(),
            endpoints: vec![
                ep(format!("10.128.{}.{}", i / 250, 1 + i % 250), "node-a"),
                ep(format!("10.129.{}.{}", i / 250, 1 + i % 250), "node-b"),
            ],
            ports: vec![EndpointPort {
                name: Some("http".into()),
                protocol: Some("TCP".into()),
                port: Some(8080),
            }],
        });
    }
    s
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let state = state();
    let config = ProxyConfig::new(IpFamily::V4, "node-a");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // Not serving: the healthCheckNodePort servers (10k sockets) are not what is measured.
    let mut ops = Ops::start("nftables", Duration::from_secs(30), None, None, false);
    ops.set_families(vec![IpFamily::V4]);
    let plans = [plan(&state, &config)];
    let outcome = SyncOutcome {
        lanes: vec![LaneOutcome {
            family: IpFamily::V4,
            elapsed: Duration::from_millis(1),
            stats: None,
            failed: false,
            quarantined: 0,
        }],
        ..SyncOutcome::default()
    };
    let (mut planning, mut ops_time) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let p = std::hint::black_box(plan(&state, &config));
        planning.push(t.elapsed());
        drop(p);
        let t = Instant::now();
        let prepared = ops.before_sync(&plans.iter().collect::<Vec<_>>());
        runtime.block_on(ops.after_sync(prepared, &outcome, Duration::ZERO, &[]));
        ops_time.push(t.elapsed());
    }
    let (p, o) = (median(planning), median(ops_time));
    println!(
        "{SERVICES} service ports, {ROUNDS} rounds interleaved: core::plan median {:.2} ms, \
         ops before+after_sync median {:.3} ms, ratio {:.3}",
        p.as_secs_f64() * 1000.0,
        o.as_secs_f64() * 1000.0,
        o.as_secs_f64() / p.as_secs_f64()
    );
}
