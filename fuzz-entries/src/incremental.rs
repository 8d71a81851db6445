//! Incremental planning against full planning: `core::Planner` fed an arbitrary sequence of
//! changes must hold, after every sync, exactly the plan `plan()` makes of the objects as
//! they are then, and report exactly the changes `diff` of the two full plans finds.
//!
//! Core's property test (`plan/tests/incremental.rs`) checks the same with a seeded random
//! generator; here the fuzzer picks the sequences, guided by coverage of the planner.

use crate::cluster::{few, service_key, slice_key, NodeInput, Slice, Svc, Word};
use arbitrary::{Arbitrary, Unstructured};
use switchyard_core::model::{ServiceCidr, TrackedState};
use switchyard_core::{diff, plan, IpFamily, NodePortAddresses, Planner, ProxyConfig};

/// Syncs in one input, and changes between two syncs: the agent coalesces a few changes
/// per sync; the interesting sequences (a key moving between owners, a slice changing
/// Service) take two or three steps.
const MAX_SYNCS: usize = 8;
const MAX_CHANGES: usize = 4;

/// One change, as a watch event or a relist delivers it.
#[derive(Debug, Arbitrary)]
enum Change {
    UpsertService(Box<Svc>),
    RemoveService(Word),
    UpsertSlice(Slice),
    RemoveSlice(Word, u8),
    SetNode(Option<NodeInput>),
    /// A ServiceCIDR (`sc-<n % 2>`) set to these ranges, or removed when empty.
    ServiceCidr {
        n: u8,
        #[arbitrary(with = few::<CidrPick, 2>)]
        cidrs: Vec<CidrPick>,
    },
    /// A relist that dropped the Services whose bit is clear.
    Relist(u8),
    /// The proxy config changed: masquerade-all, NodePorts on every local address.
    Config(bool, bool),
}

#[derive(Debug, Arbitrary)]
enum CidrPick {
    V4,
    V6,
    Text(String),
}

#[derive(Debug, Arbitrary)]
struct Input {
    v6: bool,
    masquerade_all: bool,
    nodeports_on_all: bool,
    #[arbitrary(with = few::<Change, MAX_CHANGES>)]
    initial: Vec<Change>,
    #[arbitrary(with = syncs)]
    syncs: Vec<Vec<Change>>,
}

fn syncs(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<Vec<Change>>> {
    let n = u.int_in_range(1..=MAX_SYNCS)?;
    (0..n).map(|_| few::<Change, MAX_CHANGES>(u)).collect()
}

fn config(family: IpFamily, masquerade_all: bool, all: bool) -> ProxyConfig {
    let cidr = match family {
        IpFamily::V4 => "10.244.0.0/16",
        IpFamily::V6 => "fd00:244::/64",
    };
    let config = ProxyConfig::new(family, "node-a")
        .with_cluster_cidrs(cidr.parse::<ipnet::IpNet>().ok())
        .with_masquerade_all(masquerade_all);
    if all {
        config.with_node_port_addresses(NodePortAddresses::All)
    } else {
        config
    }
}

fn apply(change: &Change, tracked: &mut TrackedState, config: &mut ProxyConfig) {
    match change {
        Change::UpsertService(s) => tracked.upsert_service(s.service()),
        Change::RemoveService(name) => tracked.remove_service(&service_key(name)),
        Change::UpsertSlice(s) => tracked.upsert_endpoint_slice(s.slice()),
        Change::RemoveSlice(service, suffix) => {
            tracked.remove_endpoint_slice(&slice_key(service, *suffix))
        }
        Change::SetNode(node) => tracked.set_node(node.as_ref().map(NodeInput::node)),
        Change::ServiceCidr { n, cidrs: picks } => {
            let name = format!("sc-{}", n % 2);
            let cidrs: Vec<String> = picks
                .iter()
                .map(|p| match p {
                    CidrPick::V4 => "10.96.0.0/24".to_string(),
                    CidrPick::V6 => "fd00:96::/120".to_string(),
                    CidrPick::Text(t) => t.clone(),
                })
                .collect();
            if cidrs.is_empty() {
                tracked.remove_service_cidr(&name);
            } else {
                tracked.upsert_service_cidr(ServiceCidr { name, cidrs });
            }
        }
        Change::Relist(keep) => {
            let services = tracked
                .state()
                .services
                .iter()
                .enumerate()
                .filter(|(i, _)| keep & (1 << (i % 8)) != 0)
                .map(|(_, (k, v))| (k.clone(), v.clone()))
                .collect();
            tracked.replace_services(services);
        }
        Change::Config(masquerade_all, all) => {
            *config = self::config(config.family, *masquerade_all, *all)
        }
    }
}

/// The target. Panics when the incremental plan, its reported changes or its
/// warnings-changed flag differ from what full planning says.
pub fn plan_incremental(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let family = if input.v6 { IpFamily::V6 } else { IpFamily::V4 };
    let mut config = config(family, input.masquerade_all, input.nodeports_on_all);
    let mut tracked = TrackedState::default();
    for change in &input.initial {
        apply(change, &mut tracked, &mut config);
    }
    tracked.take_touched();
    let mut planner = Planner::new(tracked.state(), config.clone());
    let mut reference = plan(tracked.state(), &config);
    assert!(*planner.plan() == reference, "initial plans differ");
    for (step, changes) in input.syncs.iter().enumerate() {
        for change in changes {
            apply(change, &mut tracked, &mut config);
        }
        let touched = tracked.take_touched();
        let update = planner.update(tracked.state(), &config, &touched);
        let next = plan(tracked.state(), &config);
        assert!(
            *planner.plan() == next,
            "sync {step}: incremental plan differs from plan()\nincremental: {:#?}\nfull: {next:#?}",
            planner.plan()
        );
        assert_eq!(
            update.changes,
            diff(&reference, &next),
            "sync {step}: reported changes differ from diff"
        );
        assert_eq!(
            update.warnings_changed,
            reference.warnings != next.warnings,
            "sync {step}: warnings_changed"
        );
        reference = next;
    }
}
