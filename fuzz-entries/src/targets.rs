//! The entry functions. Each takes the fuzzer's bytes and must not panic.

use crate::cluster::{Cluster, MAX_ADDRESSES, MAX_ENDPOINTS, MAX_OBJECTS, MAX_PORTS};
use arbitrary::{Arbitrary, Unstructured};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use switchyard_agent::source::Manifests;
use switchyard_core::{
    explain, plan as plan_state, IpFamily, NodePortAddresses, ProxyConfig, ProxyPlan,
};
use switchyard_iptables::check::{parse_ipset_terse, parse_save};
use switchyard_iptables::{restore_error, IptablesConfig};
use switchyard_nftables::wire;
use switchyard_nftables::NftablesDataplane;

/// nfnetlink's batch delimiters.
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;

/// Plans for both families, as node-a with the suite's cluster CIDRs.
fn plans(state: &switchyard_core::ClusterState, masquerade_all: bool, all: bool) -> Vec<ProxyPlan> {
    [
        (IpFamily::V4, "10.244.0.0/16"),
        (IpFamily::V6, "fd00:244::/64"),
    ]
    .into_iter()
    .map(|(family, cidr)| {
        let mut config = ProxyConfig::new(family, "node-a")
            .with_cluster_cidrs(cidr.parse::<ipnet::IpNet>().ok())
            .with_masquerade_all(masquerade_all);
        if all {
            config = config.with_node_port_addresses(NodePortAddresses::All);
        }
        plan_state(state, &config)
    })
    .collect()
}

/// The manifest parser (`--manifests`): YAML text of any shape. What parses is planned if it
/// is within the bounds of the arbitrary clusters (`cluster`'s `MAX_*`, note 231): a short
/// `List` can hold many objects, and planning them would cost the fuzzer what the parser is
/// here to be fuzzed for (the plan of many objects is the `plan` target's).
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut m = Manifests::default();
    if m.add_text(Path::new("fuzz.yaml"), text).is_ok() && bounded(&m) {
        for p in plans(&m.to_state("node-a"), false, false) {
            let _ = p.to_string();
        }
    }
}

/// Whether parsed manifests are as small as an arbitrary cluster can be.
fn bounded(m: &Manifests) -> bool {
    let slices = || m.endpoint_slices.iter().chain(&m.mirrored_slices);
    m.services.len() <= MAX_OBJECTS
        && slices().count() <= MAX_OBJECTS
        && m.nodes.len() <= MAX_ADDRESSES
        && m.service_cidrs.len() <= MAX_ADDRESSES
        && m.services.iter().all(|s| {
            s.ports.len() <= MAX_PORTS
                && s.cluster_ips.len() <= MAX_ADDRESSES
                && s.external_ips.len() <= MAX_ADDRESSES
                && s.load_balancer_ingress.len() <= MAX_ADDRESSES
                && s.load_balancer_source_ranges.len() <= MAX_ADDRESSES
        })
        && slices().all(|s| {
            s.ports.len() <= MAX_PORTS
                && s.endpoints.len() <= MAX_ENDPOINTS
                && s.endpoints
                    .iter()
                    .all(|e| e.addresses.len() <= MAX_ADDRESSES)
        })
}

/// Object conversion and `plan()` on arbitrary objects, then its text and `explain` for
/// every endpoint. Asserts the plan's own promise that no two service ports own one kernel
/// key. The backends' renderings of the same plans are the `nft_encode` and
/// `iptables_render` targets (with their own assertions): rendered here too, they cost
/// ~90% of each run (the iptables dispatch tree alone is ~600 lines a family).
pub fn plan(data: &[u8]) {
    let Ok(cluster) = Cluster::from_bytes(data) else {
        return;
    };
    for p in plans(
        &cluster.state(),
        cluster.masquerade_all,
        cluster.nodeports_on_all,
    ) {
        let _ = p.to_string();
        let mut owned = BTreeSet::new();
        for (name, svc) in &p.services {
            for path in svc.paths() {
                for key in &path.keys {
                    assert!(
                        owned.insert(format!("{:?}", key.key)),
                        "{name}: key {:?} owned twice",
                        key.key
                    );
                }
            }
        }
        let src: IpAddr = match p.family {
            IpFamily::V4 => [10, 244, 1, 10].into(),
            IpFamily::V6 => "fd00:244::a".parse().unwrap_or(IpAddr::from([0u16; 8])),
        };
        for svc in p.services.values() {
            for ep in svc.endpoints_for(switchyard_core::Target::Cluster) {
                let _ = explain(&p, src, ep.ip, ep.port, svc.protocol);
            }
        }
    }
}

/// The nftables encoder: a full sync's batch for an arbitrary plan must be well-formed
/// netlink: messages tile the buffer exactly, each one's attributes tile its payload, and
/// there is one batch begin and end around the operations.
pub fn nft_encode(data: &[u8]) {
    let Ok(cluster) = Cluster::from_bytes(data) else {
        return;
    };
    for p in plans(
        &cluster.state(),
        cluster.masquerade_all,
        cluster.nodeports_on_all,
    ) {
        let tx = NftablesDataplane::new(p.family).transaction(&p, None);
        let encoded = tx.encode(1);
        let messages = wire::messages(&encoded.bytes);
        let total: usize = messages.iter().map(|m| m.len().next_multiple_of(4)).sum();
        assert_eq!(total, encoded.bytes.len(), "messages tile the batch");
        for m in &messages {
            // 16-byte netlink header, 4-byte nfgenmsg, then attributes.
            let attrs = &m[20.min(m.len())..];
            let walked: usize = wire::attributes(attrs)
                .map(|(_, v)| (v.len() + 4).next_multiple_of(4))
                .sum();
            assert_eq!(walked, attrs.len(), "attributes tile a message");
        }
        let kind = |m: &[u8]| m.get(4..6).map(|k| u16::from_ne_bytes([k[0], k[1]]));
        assert_eq!(
            messages.first().and_then(|m| kind(m)),
            Some(NFNL_MSG_BATCH_BEGIN)
        );
        assert_eq!(
            messages.last().and_then(|m| kind(m)),
            Some(NFNL_MSG_BATCH_END)
        );
    }
}

/// The decoders of nf_tables dumps (`Dataplane::check`, affinity carry-over): arbitrary
/// messages, and a round trip of objects written as the kernel lists them.
pub fn nft_dump(data: &[u8]) {
    #[derive(Debug, Arbitrary)]
    struct Input {
        raw: Vec<(u16, Vec<u8>)>,
        chains: Vec<String>,
        sets: Vec<String>,
        rules: Vec<(u8, u8)>,
    }
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let _ = wire::parse_table_objects(&input.raw, "switchyard");
    let _ = wire::parse_set_elements(&input.raw);
    let _ = wire::parse_generation(&input.raw);
    // Names as the kernel accepts them: no NUL, at most 255 bytes.
    let ok = |n: &String| !n.is_empty() && !n.contains('\0') && n.len() < 256;
    let chains: Vec<&String> = input.chains.iter().filter(|n| ok(n)).collect();
    let sets: Vec<&String> = input.sets.iter().filter(|n| ok(n)).collect();
    let mut listed = Vec::new();
    for c in &chains {
        listed.push(wire::listed_chain("switchyard", c));
        listed.push(wire::listed_chain("other", c));
    }
    for s in &sets {
        listed.push(wire::listed_set("switchyard", s));
    }
    let mut want_rules = std::collections::BTreeMap::new();
    for (c, n) in &input.rules {
        if let Some(chain) = chains.get(usize::from(*c) % chains.len().max(1)) {
            for _ in 0..n % 4 {
                listed.push(wire::listed_rule("switchyard", chain));
                *want_rules.entry((*chain).clone()).or_insert(0usize) += 1;
            }
        }
    }
    let found = wire::parse_table_objects(&listed, "switchyard");
    assert_eq!(found.chains, chains.iter().map(|c| (*c).clone()).collect());
    assert_eq!(found.sets, sets.iter().map(|s| (*s).clone()).collect());
    assert_eq!(found.rules, want_rules);
}

/// The iptables renderer: an arbitrary plan's restore input, read back by the parser the
/// backend's `check` uses, declares exactly the chains it creates.
pub fn iptables_render(data: &[u8]) {
    let Ok(cluster) = Cluster::from_bytes(data) else {
        return;
    };
    for p in plans(
        &cluster.state(),
        cluster.masquerade_all,
        cluster.nodeports_on_all,
    ) {
        let text = IptablesConfig::new(p.family)
            .build()
            .restore_input(&p, None);
        let declared: BTreeSet<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix(':'))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect();
        let saved = parse_save(&text, |c| c.starts_with("SWYD-"));
        assert_eq!(
            saved.chains, declared,
            "every declared chain is ours and read back"
        );
        for chain in saved.rules.keys() {
            assert!(
                declared.contains(chain) || chain.chars().all(|c| c.is_ascii_uppercase()),
                "rules appended to an undeclared chain {chain}"
            );
        }
    }
}

/// The parsers of tool output: `iptables-save`, `ipset list -t`, and the restore error
/// mapper (which reads a line number from stderr and quotes that input line).
pub fn iptables_parsers(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (input, stderr) = text.split_once('\u{0}').unwrap_or((&text, &text));
    let _ = parse_save(input, |c| c.starts_with("SWYD"));
    let _ = parse_ipset_terse(input);
    let _ = restore_error("iptables-restore", input, stderr, &Default::default()).to_string();
}
