//! The incremental [`Planner`] against the reference `plan()`: random change sequences applied
//! both ways must give equal plans (warnings included, in order), and the planner's changes
//! must be exactly `diff` of the reference plans before and after.
//!
//! The generator draws from small pools on purpose, so Services collide on cluster IPs,
//! NodePorts and written addresses (external/LB IPs equal to cluster IPs, node addresses and
//! each other), ages tie, objects are malformed, slices move between Services, and the Node
//! and the config change underneath. A seeded generator (no new dependency): a failure
//! prints its seed and step, and `INCREMENTAL_SEED=n` replays one sequence.

use crate::config::{NodePortAddresses, ProxyConfig};
use crate::diff::diff;
use crate::model::{
    Endpoint, EndpointConditions, EndpointHints, EndpointPort, EndpointSlice, LoadBalancerIngress,
    Node, NodeAddress, ObjectMeta, ObjectRef, Service, ServiceCidr, ServicePort, TrackedState,
    LABEL_HEADLESS, LABEL_SERVICE_NAME, LABEL_SERVICE_PROXY_NAME, LABEL_TOPOLOGY_ZONE,
};
use crate::plan::{plan, IpFamily, Planner, ProxyPlan};

/// splitmix64: small, seedable, good enough to shuffle test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn some<T: Clone>(&mut self, items: &[T], max: usize) -> Vec<T> {
        (0..self.below(max + 1))
            .map(|_| self.pick(items).clone())
            .collect()
    }
}

const NAMESPACES: [&str; 2] = ["a", "b"];
const NAMES: [&str; 6] = ["s0", "s1", "s2", "s3", "s4", "s5"];
const SLICES: [&str; 8] = ["e0", "e1", "e2", "e3", "e4", "e5", "e6", "e7"];
/// Cluster IPs, node addresses and garbage mixed, so written addresses hit every conflict.
const IPS: [&str; 10] = [
    "10.96.0.1",
    "10.96.0.2",
    "10.96.0.3",
    "192.168.0.10",
    "192.168.0.11",
    "198.51.100.1",
    "fd00::1",
    "fd00::10",
    "not-an-ip",
    "10.96.0.1 ",
];
const PORT_NAMES: [&str; 3] = ["", "http", "dns"];
const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];
const ZONES: [&str; 2] = ["z1", "z2"];

fn opt<T: Clone>(rng: &mut Rng, items: &[T]) -> Option<T> {
    rng.chance(50).then(|| rng.pick(items).clone())
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn meta(rng: &mut Rng, name: &str) -> ObjectMeta {
    let mut meta = ObjectMeta::new(*rng.pick(&NAMESPACES), name);
    meta.creation_timestamp = opt(rng, &[1, 2, 3]);
    meta
}

fn service(rng: &mut Rng) -> Service {
    let name = *rng.pick(&NAMES);
    let mut meta = meta(rng, name);
    if rng.chance(5) {
        meta.labels
            .insert(LABEL_SERVICE_PROXY_NAME.into(), "other".into());
    }
    if rng.chance(5) {
        meta.labels.insert(LABEL_HEADLESS.into(), String::new());
    }
    let service_type = opt(
        rng,
        &strings(&["ClusterIP", "NodePort", "LoadBalancer", "NodePort", "Bogus"]),
    );
    let mut cluster_ips = rng.some(&strings(&IPS[..3]), 1);
    if rng.chance(20) {
        cluster_ips.push(rng.pick(&strings(&IPS)).clone());
    }
    let ports = (0..1 + rng.below(3))
        .map(|_| ServicePort {
            name: rng.pick(&PORT_NAMES).to_string(),
            protocol: opt(rng, &strings(&["TCP", "UDP", "bogus"])),
            port: *rng.pick(&[80, 80, 443, 53, 0, 30000]),
            node_port: opt(rng, &[30000, 30001, 30002, 70000]),
        })
        .collect();
    Service {
        meta,
        service_type,
        cluster_ips,
        ip_families: if rng.chance(10) {
            strings(&["IPv6"])
        } else {
            Vec::new()
        },
        ports,
        external_ips: rng.some(&strings(&IPS), 2),
        load_balancer_ingress: (0..rng.below(3))
            .map(|_| LoadBalancerIngress {
                ip: opt(rng, &strings(&IPS)),
                ip_mode: opt(rng, &strings(&["VIP", "Proxy"])),
            })
            .collect(),
        load_balancer_source_ranges: rng.some(
            &strings(&["203.0.113.0/24", "192.168.0.0/16", "bad", "fd00::/64"]),
            2,
        ),
        session_affinity: opt(rng, &strings(&["None", "ClientIP", "Sticky"])),
        session_affinity_timeout_seconds: opt(rng, &[0, 60, 100_000]),
        external_traffic_policy: opt(rng, &strings(&["Cluster", "Local", "Bogus"])),
        internal_traffic_policy: opt(rng, &strings(&["Cluster", "Local"])),
        health_check_node_port: opt(rng, &[31000, 0]),
        traffic_distribution: opt(rng, &strings(&["PreferClose", "PreferSameNode"])),
    }
}

fn slice(rng: &mut Rng) -> EndpointSlice {
    let name = *rng.pick(&SLICES);
    let mut meta = meta(rng, name);
    if !rng.chance(10) {
        meta.labels
            .insert(LABEL_SERVICE_NAME.into(), rng.pick(&NAMES).to_string());
    }
    let endpoints = (0..rng.below(4))
        .map(|i| Endpoint {
            addresses: rng.some(
                &strings(&[&format!("10.244.0.{i}"), "10.244.1.1", "fd00::a", "garbage"]),
                1,
            ),
            conditions: EndpointConditions {
                ready: opt(rng, &[true, false]),
                serving: opt(rng, &[true, false]),
                terminating: opt(rng, &[true, false]),
            },
            node_name: opt(rng, &strings(&NODES)),
            zone: opt(rng, &strings(&ZONES)),
            hints: EndpointHints {
                for_zones: rng.some(&strings(&ZONES), 1),
                for_nodes: rng.some(&strings(&NODES), 1),
            },
        })
        .collect();
    EndpointSlice {
        meta,
        address_type: rng.pick(&["IPv4", "IPv4", "IPv6", "FQDN"]).to_string(),
        endpoints,
        ports: (0..rng.below(3))
            .map(|_| EndpointPort {
                name: opt(rng, &strings(&PORT_NAMES)),
                protocol: opt(rng, &strings(&["TCP", "UDP", "bogus"])),
                port: opt(rng, &[8080, 53, 0]),
            })
            .collect(),
    }
}

fn node(rng: &mut Rng) -> Option<Node> {
    rng.chance(85).then(|| Node {
        name: "node-a".into(),
        labels: opt(rng, &strings(&ZONES))
            .map(|z| [(LABEL_TOPOLOGY_ZONE.to_string(), z)].into())
            .unwrap_or_default(),
        addresses: (0..rng.below(3))
            .map(|_| NodeAddress {
                address_type: rng
                    .pick(&["InternalIP", "ExternalIP", "Hostname"])
                    .to_string(),
                address: rng
                    .pick(&["192.168.0.10", "192.168.0.11", "fd00::10", "nope"])
                    .to_string(),
            })
            .collect(),
    })
}

fn config(rng: &mut Rng, family: IpFamily) -> ProxyConfig {
    let cidr = |s: &str| s.parse().expect("cidr");
    let node_port_addresses = rng
        .pick(&[
            NodePortAddresses::Primary,
            NodePortAddresses::All,
            NodePortAddresses::Cidrs(vec![cidr("192.168.0.0/24"), cidr("fd00::/64")]),
        ])
        .clone();
    ProxyConfig::new(family, "node-a")
        .with_cluster_cidrs(rng.some(&[cidr("10.244.0.0/16"), cidr("fd00::/48")], 1))
        .with_masquerade_all(rng.chance(20))
        .with_node_port_range(rng.chance(20).then_some(30000..=30001))
        .with_service_cidrs(rng.some(&[cidr("10.96.0.0/16"), cidr("fd00::/112")], 1))
        .with_node_port_addresses(node_port_addresses)
        .with_local_addresses(
            rng.some(&strings(&["192.168.0.11", "192.168.0.12", "fd00::11"]), 2)
                .iter()
                .map(|a| a.parse().expect("address")),
        )
}

/// One random change to the tracked state (or, rarely, to the config).
fn change(rng: &mut Rng, tracked: &mut TrackedState, config: &mut ProxyConfig) {
    let r = |rng: &mut Rng| ObjectRef::new(*rng.pick(&NAMESPACES), *rng.pick(&NAMES));
    let s = |rng: &mut Rng| ObjectRef::new(*rng.pick(&NAMESPACES), *rng.pick(&SLICES));
    match rng.below(100) {
        0..=29 => tracked.upsert_service(service(rng)),
        30..=39 => tracked.remove_service(&r(rng)),
        40..=74 => tracked.upsert_endpoint_slice(slice(rng)),
        75..=84 => tracked.remove_endpoint_slice(&s(rng)),
        85..=90 => tracked.set_node(node(rng)),
        91..=94 => {
            let cidrs = rng.some(&strings(&["10.96.0.0/24", "fd00::/120", "bad"]), 2);
            let name = rng.pick(&["sc1", "sc2"]).to_string();
            if cidrs.is_empty() {
                tracked.remove_service_cidr(&name);
            } else {
                tracked.upsert_service_cidr(ServiceCidr { name, cidrs });
            }
        }
        95..=96 => *config = self::config(rng, config.family),
        _ => {
            // A relist: the same objects, some dropped.
            let services = tracked
                .state()
                .services
                .iter()
                .filter(|_| !rng.chance(20))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            tracked.replace_services(services);
        }
    }
}

fn run(seed: u64, steps: usize) {
    let mut rng = Rng(seed);
    let family = if rng.chance(70) {
        IpFamily::V4
    } else {
        IpFamily::V6
    };
    let mut config = config(&mut rng, family);
    let mut tracked = TrackedState::default();
    for _ in 0..rng.below(12) {
        change(&mut rng, &mut tracked, &mut config);
    }
    tracked.take_touched();
    let mut planner = Planner::new(tracked.state(), config.clone());
    let mut reference = plan(tracked.state(), &config);
    assert_eq!(*planner.plan(), reference, "seed {seed}: initial plan");
    for step in 0..steps {
        // Several changes between two syncs, as the agent coalesces them.
        for _ in 0..1 + rng.below(3) {
            change(&mut rng, &mut tracked, &mut config);
        }
        let touched = tracked.take_touched();
        let update = planner.update(tracked.state(), &config, &touched);
        let next = plan(tracked.state(), &config);
        assert!(
            *planner.plan() == next,
            "seed {seed} step {step}: plans differ\n{}\nstate: {:#?}",
            difference(planner.plan(), &next),
            tracked.state()
        );
        assert_eq!(
            update.changes,
            diff(&reference, &next),
            "seed {seed} step {step}: changes differ from diff"
        );
        let before: Vec<_> = update
            .changes
            .updated
            .iter()
            .chain(&update.changes.removed)
            .map(|n| (n, reference.services.get(n)))
            .collect();
        let previous: Vec<_> = update.previous.iter().map(|(n, p)| (n, Some(p))).collect();
        let mut before = before;
        before.sort_by(|a, b| a.0.cmp(b.0));
        assert_eq!(previous, before, "seed {seed} step {step}: previous plans");
        assert_eq!(
            update.warnings_changed,
            reference.warnings != next.warnings,
            "seed {seed} step {step}"
        );
        reference = next;
    }
}

/// Where two plans differ, briefly.
fn difference(incremental: &ProxyPlan, full: &ProxyPlan) -> String {
    let mut out = String::new();
    for (name, p) in &incremental.services {
        match full.services.get(name) {
            None => out += &format!("only incremental: {name}\n"),
            Some(f) if f != p => {
                out += &format!("differs: {name}\n  incremental {p:?}\n  full {f:?}\n")
            }
            Some(_) => {}
        }
    }
    for name in full.services.keys() {
        if !incremental.services.contains_key(name) {
            out += &format!("only full: {name}\n");
        }
    }
    if incremental.warnings != full.warnings {
        out += "warnings differ:\n";
        for w in &incremental.warnings {
            out += &format!("  incremental: {w}\n");
        }
        for w in &full.warnings {
            out += &format!("  full: {w}\n");
        }
    }
    let (mut a, mut b) = (incremental.clone(), full.clone());
    a.services.clear();
    b.services.clear();
    a.warnings.clear();
    b.warnings.clear();
    if a != b {
        out += &format!("node-level fields differ:\n  {a:?}\n  {b:?}\n");
    }
    out
}

#[test]
fn random_change_sequences_match_the_full_plan() {
    if let Some(seed) = std::env::var("INCREMENTAL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return run(seed, 60);
    }
    for seed in 0..400 {
        run(seed, 40);
    }
}

#[test]
fn the_generator_produces_collisions_and_warnings() {
    // Guards the property test against a generator that stopped producing the hard cases.
    let (mut contested, mut warned, mut planned) = (0, 0, 0);
    for seed in 0..100 {
        let mut rng = Rng(seed);
        let mut config = config(&mut rng, IpFamily::V4);
        let mut tracked = TrackedState::default();
        for _ in 0..30 {
            change(&mut rng, &mut tracked, &mut config);
        }
        let p = plan(tracked.state(), &config);
        planned += p.services.len();
        warned += p.warnings.len();
        contested += p
            .warnings
            .iter()
            .filter(|w| w.problem.contains("already used by") || w.problem.contains("belongs to"))
            .count();
    }
    assert!(
        planned > 100 && warned > 100 && contested > 20,
        "planned {planned}, warnings {warned}, contested {contested}"
    );
}

#[test]
fn a_contested_key_moves_to_the_next_claimant_when_its_owner_goes() {
    let svc = |name: &str, age: i64, ip: &str, external: &str| {
        let mut meta = ObjectMeta::new("a", name);
        meta.creation_timestamp = Some(age);
        Service {
            meta,
            cluster_ips: vec![ip.into()],
            ports: vec![ServicePort {
                port: 80,
                ..ServicePort::default()
            }],
            external_ips: vec![external.into()],
            ..Service::default()
        }
    };
    let config = ProxyConfig::new(IpFamily::V4, "node-a");
    let mut tracked = TrackedState::default();
    tracked.upsert_service(svc("old", 1, "10.96.0.1", "198.51.100.1"));
    tracked.upsert_service(svc("new", 2, "10.96.0.2", "198.51.100.1"));
    tracked.take_touched();
    let mut planner = Planner::new(tracked.state(), config.clone());
    let owner = |p: &Planner| {
        p.plan()
            .services
            .iter()
            .find(|(_, s)| !s.external_ips.is_empty())
            .map(|(n, _)| n.service.name.clone())
    };
    assert_eq!(owner(&planner).as_deref(), Some("old"));
    tracked.remove_service(&ObjectRef::new("a", "old"));
    let touched = tracked.take_touched();
    let update = planner.update(tracked.state(), &config, &touched);
    assert_eq!(owner(&planner).as_deref(), Some("new"));
    assert_eq!(update.changes.updated.len(), 1, "the heir's port changed");
    assert_eq!(update.changes.removed.len(), 1);
    assert_eq!(*planner.plan(), plan(tracked.state(), &config));
}

#[test]
fn a_node_heartbeat_changes_nothing() {
    let config = ProxyConfig::new(IpFamily::V4, "node-a");
    let mut tracked = TrackedState::default();
    let mut rng = Rng(7);
    for _ in 0..20 {
        tracked.upsert_service(service(&mut rng));
    }
    let node = Node {
        name: "node-a".into(),
        labels: Default::default(),
        addresses: vec![NodeAddress {
            address_type: "InternalIP".into(),
            address: "192.168.0.10".into(),
        }],
    };
    tracked.set_node(Some(node.clone()));
    tracked.take_touched();
    let mut planner = Planner::new(tracked.state(), config.clone());
    let mut beat = node;
    beat.addresses.push(NodeAddress {
        address_type: "Hostname".into(),
        address: "node-a".into(),
    });
    tracked.set_node(Some(beat));
    let touched = tracked.take_touched();
    let update = planner.update(tracked.state(), &config, &touched);
    assert!(update.changes.is_empty() && !update.warnings_changed);
}

#[test]
fn a_nodeport_on_every_local_address_takes_precedence_over_a_written_node_address() {
    // Connected only through a token one side reads: the external IP's Service must be
    // claimed again when the NodePort appears, though nothing else links the two.
    let mut external = Service {
        meta: ObjectMeta::new("a", "external"),
        cluster_ips: vec!["10.96.0.1".into()],
        ports: vec![ServicePort {
            port: 30000,
            ..ServicePort::default()
        }],
        external_ips: vec!["192.168.0.11".into()],
        ..Service::default()
    };
    external.meta.creation_timestamp = Some(1);
    let node_port = Service {
        meta: ObjectMeta::new("b", "nodeport"),
        service_type: Some("NodePort".into()),
        cluster_ips: vec!["10.96.0.2".into()],
        ports: vec![ServicePort {
            port: 80,
            node_port: Some(30000),
            ..ServicePort::default()
        }],
        ..Service::default()
    };
    let config = ProxyConfig::new(IpFamily::V4, "node-a")
        .with_node_port_addresses(NodePortAddresses::All)
        .with_local_addresses(["192.168.0.11".parse().expect("address")]);
    let mut tracked = TrackedState::default();
    tracked.upsert_service(external);
    tracked.take_touched();
    let mut planner = Planner::new(tracked.state(), config.clone());
    let kept = |p: &Planner| {
        p.plan()
            .services
            .values()
            .map(|s| s.external_ips.len())
            .sum::<usize>()
    };
    assert_eq!(kept(&planner), 1);
    tracked.upsert_service(node_port);
    let touched = tracked.take_touched();
    let update = planner.update(tracked.state(), &config, &touched);
    assert_eq!(
        kept(&planner),
        0,
        "the NodePort owns 30000 on every local address"
    );
    assert_eq!(update.changes.updated.len(), 1);
    assert_eq!(*planner.plan(), plan(tracked.state(), &config));
}
