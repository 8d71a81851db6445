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
//!    traffic work;
//! 2. `Dataplane::check` must report no drift (no false alarm after incremental syncs);
//! 3. tamper; the row's check must now **fail** (else the row proves nothing);
//! 4. `Dataplane::check` must report drift;
//! 5. a full sync (what the agent does on drift, `agent/src/sync/repair.rs`); then `check`
//!    is clean again and every check passes.
//!
//! A third-party backend writes rows for its own objects with `backend` set to its
//! `Backend::name` and runs `faults::run(&[mine], &my_rows, &Options::default())`.
//! The IPVS backend plugs in the same way: rows such as `ipvsadm -D -t 10.96.0.10:80`
//! (a virtual service) and `ip link del swyd-ipvs0` (the dummy interface holding the
//! service addresses), both breaking [`cluster_ip_from_pod`].

mod run;
mod table;

pub use run::{run, run_one};
pub use table::{
    all, baseline, cluster_ip_from_node, cluster_ip_from_pod, manifests, nodeport_from_client,
};

use crate::scenario::Check;

/// One fault.
#[derive(Debug, Clone)]
pub struct Fault {
    pub name: &'static str,
    /// What it does, in one line.
    pub about: &'static str,
    /// The backends it applies to: a `Backend::name`, or its prefix (`iptables` = both
    /// variants).
    pub backend: &'static str,
    /// Shell commands (`sh -c`) run in the node's namespace, in order; each must succeed.
    /// `{iptables}` becomes the backend's name (`iptables-nft`, `iptables-legacy`), which is
    /// also the name of its tool.
    pub tamper: Vec<&'static str>,
    /// The check the tampering must break and the repair must restore.
    pub breaks: Check,
}

impl Fault {
    /// Whether this row is for the backend named `name`.
    pub fn applies_to(&self, name: &str) -> bool {
        name.starts_with(self.backend)
    }

    /// The commands for backend `name`.
    pub fn commands(&self, name: &str) -> Vec<String> {
        self.tamper
            .iter()
            .map(|c| c.replace("{iptables}", name))
            .collect()
    }
}
