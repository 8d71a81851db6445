//! The faults table: what other agents and operators do to a node's rules, and proof with real
//! packets that the backend notices and a full sync repairs it (kube-proxy's e2e "should
//! recreate rules").
//!
//! Each row is data: shell commands that delete one kind of object a backend owns (its table,
//! a chain, a jump from a base chain, a rule, a set or map element, an ipset member), run in
//! the node's namespace, and the check they break. The runner (`run`) drives every row whose
//! [`Fault::backend`] matches a backend under test through the same steps:
//!
//! 1. apply the table's manifests (full sync), then a change (incremental sync), and see
//!    traffic work (the baseline checks and the row's own);
//! 2. `Dataplane::check` must report no drift (no false alarm after incremental syncs);
//! 3. tamper; the row's check must now **fail** (else the row proves nothing);
//! 4. `Dataplane::check` must report drift;
//! 5. a full sync (what the agent does on drift, `agent/src/sync/repair.rs`); then `check`
//!    is clean again and every check (the row's too) passes.
//!
//! A third-party backend writes rows for its own objects with `backends` naming its
//! `Backend::name` and runs `faults::run(&[mine], &my_rows, &Options::default())`.
//! IPVS mode has rows of its own (a virtual service, a destination or its weight, the dummy
//! interface `swyd-ipvs0`, an address on it, a mark-map element) and shares the nftables
//! rows, run against its helper table `switchyard-ipvs`. This kernel has no IPVS: its rows
//! run in the VM harness (`vm::conformance::VmMatrix::run_faults`).

mod run;
mod table;

pub use run::{run, run_one};
pub use table::{
    all, baseline, both_endpoints_from_pod, cluster_ip_from_node, cluster_ip_from_pod, manifests,
    nodeport_from_client,
};

use crate::scenario::Check;

/// One fault.
#[derive(Debug, Clone)]
pub struct Fault {
    pub name: &'static str,
    /// What it does, in one line.
    pub about: &'static str,
    /// The backends it applies to: each a `Backend::name`, or its prefix (`iptables` = both
    /// variants).
    pub backends: &'static [&'static str],
    /// Shell commands (`sh -c`) run in the node's namespace, in order; each must succeed.
    /// `{iptables}` becomes the backend's name (`iptables-nft`, `iptables-legacy`), which is
    /// also the name of its tool; `{table}` the backend's nftables table (`switchyard`, or
    /// `switchyard-ipvs` for IPVS mode's helper rules).
    pub tamper: Vec<&'static str>,
    /// The check the tampering must break and the repair must restore.
    pub breaks: Check,
}

impl Fault {
    /// Whether this row is for the backend named `name`.
    pub fn applies_to(&self, name: &str) -> bool {
        self.backends.iter().any(|b| name.starts_with(b))
    }

    /// The commands for backend `name`.
    pub fn commands(&self, name: &str) -> Vec<String> {
        let table = if name.starts_with("ipvs") {
            "switchyard-ipvs"
        } else {
            "switchyard"
        };
        self.tamper
            .iter()
            .map(|c| c.replace("{iptables}", name).replace("{table}", table))
            .collect()
    }
}
