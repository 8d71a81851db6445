//! Following the node's address families at run time: a family the Node gains (an IPv6
//! address or pod CIDR added) gets a dataplane lane before the sync that first plans it; a
//! family it loses has its lane removed and its rules cleaned up. No restart.
//!
//! Which families the node has is decided once, in `node::node_families`, and shows here only
//! as the families of the plans: a lane per plan, no lane without one.

use crate::sync::Syncer;
use switchyard_core::{Dataplane, IpFamily};

/// Makes `syncer`'s lanes the families `want` (those of the plans about to be synced): adds the missing ones (built by `make` and
/// probed), removes (and cleans up) the others. A lane that cannot be added or removed is
/// logged and tried again at the next sync; the other families' syncs go on regardless.
pub async fn follow(
    syncer: &mut Syncer,
    want: &[IpFamily],
    make: impl Fn(IpFamily) -> anyhow::Result<Box<dyn Dataplane>>,
) {
    let have = syncer.families();
    for family in have.iter().filter(|f| !want.contains(f)) {
        match syncer.remove_lane(*family).await {
            Ok(()) => {
                tracing::info!(%family, "the node no longer has this family: its rules are removed")
            }
            Err(e) => {
                tracing::error!(%family, "removing the rules of a family the node lost: {e}; retrying at the next sync")
            }
        }
    }
    for family in want.iter().filter(|f| !have.contains(f)) {
        let added = match make(*family) {
            Ok(d) => syncer.add_lane(d).await.map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        match added {
            Ok(()) => tracing::info!(%family, "the node has this family now: planning it"),
            Err(e) => {
                tracing::error!(%family, "starting a dataplane for a family the node gained: {e:#}; retrying at the next sync")
            }
        }
    }
}

/// Removes what an earlier run left for families the node does not have now (the Node lost
/// one while the agent was down). Nothing there is a success; a failure is logged, not fatal:
/// the planned families' rules matter more.
pub async fn retire_unplanned(
    planned: &[IpFamily],
    make: impl Fn(IpFamily) -> anyhow::Result<Box<dyn Dataplane>>,
) {
    for family in [IpFamily::V4, IpFamily::V6] {
        if planned.contains(&family) {
            continue;
        }
        let cleaned = match make(family) {
            Ok(mut d) => d.cleanup().await.map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        if let Err(e) = cleaned {
            tracing::warn!(%family, "removing leftovers of a family this node does not have: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::sync::{Arc, Mutex};
    use switchyard_core::ProxyPlan;
    use switchyard_core::{ApplyStats, Changes, DataplaneError, Mode, ProxyConfig};

    /// Records what happened to each family's dataplane.
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<String>>>);

    impl Log {
        fn push(&self, s: String) {
            self.0.lock().expect("log").push(s);
        }
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.0.lock().expect("log"))
        }
    }

    struct Fake {
        family: IpFamily,
        log: Log,
    }

    #[async_trait]
    impl Dataplane for Fake {
        fn mode(&self) -> Mode {
            Mode::Other("fake".into())
        }
        fn family(&self) -> IpFamily {
            self.family
        }
        async fn probe(&mut self) -> Result<(), DataplaneError> {
            self.log.push(format!("probe {}", self.family));
            Ok(())
        }
        async fn apply(
            &mut self,
            plan: &ProxyPlan,
            changes: Option<&Changes>,
        ) -> Result<ApplyStats, DataplaneError> {
            let kind = if changes.is_some() {
                "incremental"
            } else {
                "full"
            };
            self.log.push(format!("apply {} {kind}", plan.family));
            Ok(ApplyStats::default())
        }
        fn render(&self, _: &ProxyPlan, _: Option<&Changes>) -> String {
            String::new()
        }
        async fn cleanup(&mut self) -> Result<(), DataplaneError> {
            self.log.push(format!("cleanup {}", self.family));
            Ok(())
        }
    }

    fn plans(families: &[IpFamily]) -> Vec<ProxyPlan> {
        families
            .iter()
            .map(|f| switchyard_core::plan(&Default::default(), &ProxyConfig::new(*f, "n")))
            .collect()
    }

    fn families_of(plans: &[ProxyPlan]) -> Vec<IpFamily> {
        plans.iter().map(|p| p.family).collect()
    }

    #[tokio::test]
    async fn lanes_follow_the_planned_families() {
        let log = Log::default();
        let make = |family| -> anyhow::Result<Box<dyn Dataplane>> {
            Ok(Box::new(Fake {
                family,
                log: log.clone(),
            }))
        };
        let mut syncer = Syncer::new(vec![make(IpFamily::V4).expect("fake")]);
        let v4 = plans(&[IpFamily::V4]);
        follow(&mut syncer, &families_of(&v4), make).await;
        syncer.sync(v4).await;
        assert_eq!(log.take(), ["apply IPv4 full"]);

        // IPv6 gained: probed, then synced in full; IPv4 goes on untouched.
        let both = plans(&[IpFamily::V4, IpFamily::V6]);
        follow(&mut syncer, &families_of(&both), make).await;
        syncer.sync(both).await;
        assert_eq!(log.take(), ["probe IPv6", "apply IPv6 full"]);
        assert_eq!(syncer.families(), [IpFamily::V4, IpFamily::V6]);

        // IPv4 lost: its rules removed, IPv6 stays.
        let v6 = plans(&[IpFamily::V6]);
        follow(&mut syncer, &families_of(&v6), make).await;
        syncer.sync(v6).await;
        assert_eq!(log.take(), ["cleanup IPv4"]);
        assert_eq!(syncer.families(), [IpFamily::V6]);

        // Leftovers of the family not planned at start are removed.
        retire_unplanned(&[IpFamily::V6], make).await;
        assert_eq!(log.take(), ["cleanup IPv4"]);
    }
}
