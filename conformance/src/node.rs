//! The node under test in one column: its plans (one per IP family, from the scenario's
//! manifests translated into the column's families) and its dataplanes (one per family, as the
//! agent runs them).

use crate::family::{prefixes_for, Families, Family};
use crate::runner::Backend;
use crate::scenario::NodeSettings;
use crate::topology::{CLUSTER_CIDR, NODE_NAME};
use anyhow::{anyhow, bail, Context as _};
use std::path::Path;
use switchyard_agent::conntrack::Cleaner;
use switchyard_agent::source::Manifests;
use switchyard_core::{diff, plan, Dataplane, IpFamily, NodePortAddresses, ProxyConfig, ProxyPlan};

/// The node's dataplanes in a column: one per IP family, as the agent runs them.
pub(crate) struct Stack {
    dataplanes: Vec<(IpFamily, Box<dyn Dataplane>)>,
    /// Each family's conntrack cleanup (the agent's own code), in the same order.
    conntrack: Vec<Cleaner>,
}

impl Stack {
    pub(crate) async fn new(
        backend: &Backend,
        node_path: &Path,
        family: Family,
    ) -> anyhow::Result<Self> {
        let mut dataplanes = Vec::new();
        let mut conntrack = Vec::new();
        for f in family.ip_families() {
            dataplanes.push((f, new_dataplane(backend, node_path, f).await?));
            conntrack.push(Cleaner::new(f));
        }
        Ok(Self {
            dataplanes,
            conntrack,
        })
    }

    /// Applies each family's plan (`plans` in the same order as the dataplanes).
    pub(crate) async fn apply(
        &mut self,
        plans: &[ProxyPlan],
        last: Option<&[ProxyPlan]>,
    ) -> anyhow::Result<()> {
        let lanes = self.dataplanes.iter_mut().zip(&mut self.conntrack);
        for (i, (((family, d), conntrack), plan)) in lanes.zip(plans).enumerate() {
            let old = last.and_then(|l| l.get(i));
            let all_changes = old.map(|old| diff(old, plan));
            let changes = all_changes.as_ref().filter(|c| !c.requires_full_sync());
            d.apply(plan, changes)
                .await
                .with_context(|| format!("{family}"))?;
            // The agent's conntrack cleanup, run after every apply exactly as the sync loop
            // does (a full apply reconciles every UDP/SCTP port).
            let stats = conntrack.after_commit(old, all_changes.as_ref(), plan);
            if stats.failed > 0 {
                bail!("{family}: conntrack cleanup failed: {stats:?}");
            }
        }
        Ok(())
    }

    pub(crate) async fn cleanup(&mut self) -> anyhow::Result<()> {
        for (family, d) in &mut self.dataplanes {
            d.cleanup().await.with_context(|| format!("{family}"))?;
        }
        Ok(())
    }
}

async fn new_dataplane(
    backend: &Backend,
    node_path: &Path,
    family: IpFamily,
) -> anyhow::Result<Box<dyn Dataplane>> {
    let mut d = (backend.factory)(node_path, family);
    d.probe()
        .await
        .with_context(|| format!("probing {} ({family})", backend.name))?;
    Ok(d)
}

/// The IPv4 plan for a scenario's manifests, as node-a with the suite's node settings.
/// Scenario manifests must be clean: a warning is a bug in the table.
pub fn plan_for(yaml: &str, node: NodeSettings) -> anyhow::Result<ProxyPlan> {
    plans_for(yaml, node, Family::V4)?
        .pop()
        .ok_or_else(|| anyhow!("no IPv4 plan"))
}

/// The plans (one per IP family of `column`) for a scenario's manifests, as node-a with the
/// suite's node settings, the state translated into the column's families
/// ([`crate::family::state_for`]). Each plan must give exactly the scenario's warnings.
pub fn plans_for(yaml: &str, node: NodeSettings, column: Family) -> anyhow::Result<Vec<ProxyPlan>> {
    let mut m = Manifests::default();
    m.add_text(Path::new("scenario.yaml"), yaml)?;
    let mut state = m.to_state(NODE_NAME);
    crate::family::state_for(&mut state, column, node.families)?;
    // The cluster CIDR is the suite's: both families' on a dual-stack node, however written.
    let cluster_cidrs = match node.families {
        Families::DualAsWritten => prefixes_for(CLUSTER_CIDR, Family::Dual, Families::Every)?,
        _ => prefixes_for(CLUSTER_CIDR, column, node.families)?,
    };
    let mut plans = Vec::new();
    for family in column.ip_families() {
        let mut config = ProxyConfig::new(family, NODE_NAME)
            .with_cluster_cidrs(cluster_cidrs.iter().copied())
            .with_masquerade_all(node.masquerade_all);
        if node.nodeports_on_all_addresses {
            config = config.with_node_port_addresses(NodePortAddresses::All);
        }
        if let Some(cidrs) = node.nodeport_addresses {
            config = config
                .with_node_port_addresses(NodePortAddresses::Cidrs(prefixes_for(
                    cidrs,
                    column,
                    node.families,
                )?))
                .with_local_addresses(crate::topology::node_addresses(family));
        }
        if let Some(cidr) = node.service_cidr {
            config = config.with_service_cidrs(prefixes_for(cidr, column, node.families)?);
        }
        let plan = plan(&state, &config);
        if plan.warnings.len() != node.warnings {
            bail!(
                "scenario manifests gave {} {family} warning(s), the scenario expects {}: {:?}",
                plan.warnings.len(),
                node.warnings,
                plan.warnings
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            );
        }
        plans.push(plan);
    }
    Ok(plans)
}
