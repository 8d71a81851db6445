//! The sync rules, checked against a dataplane that records what it is asked to do.

use super::*;
use async_trait::async_trait;
use std::sync::{Arc, Mutex};
use switchyard_core::model::{ClusterState, ObjectMeta, Service, ServicePort};
use switchyard_core::{plan, Changes, IpFamily, Mode, ProxyConfig};

/// What the recorder saw: `None` = full sync, `Some(names)` = incremental with those ports.
type Calls = Arc<Mutex<Vec<Option<Vec<String>>>>>;

struct Recorder {
    calls: Calls,
    fail_next: Arc<Mutex<bool>>,
    /// A service port whose presence in a plan makes every apply fail, naming it, as a kernel
    /// rejection of that port's objects does.
    poison: Option<String>,
    /// The service ports of every plan committed.
    committed: Arc<Mutex<Vec<Vec<String>>>>,
    /// What the next `check` reports as changed behind our back (then forgotten).
    drift: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl Dataplane for Recorder {
    fn mode(&self) -> Mode {
        Mode::Other("recorder".into())
    }
    fn family(&self) -> IpFamily {
        IpFamily::V4
    }
    async fn probe(&mut self) -> Result<(), DataplaneError> {
        Ok(())
    }
    async fn apply(
        &mut self,
        plan: &ProxyPlan,
        changes: Option<&Changes>,
    ) -> Result<ApplyStats, DataplaneError> {
        if let Some(poison) = self
            .poison
            .as_ref()
            .filter(|p| plan.services.keys().any(|k| k.to_string() == **p))
        {
            return Err(DataplaneError::KernelRejected {
                object: "map ip switchyard cluster-endpoint-0".into(),
                service: Some(poison.clone()),
                errno: Some(17),
                message: "File exists".into(),
            });
        }
        let call = changes.map(|c| c.touched().map(ToString::to_string).collect());
        self.calls.lock().expect("lock").push(call);
        let mut fail = self.fail_next.lock().expect("lock");
        if std::mem::take(&mut *fail) {
            return Err(DataplaneError::KernelRejected {
                object: "table ip test".into(),
                service: None,
                errno: Some(22),
                message: "injected".into(),
            });
        }
        let names = plan.services.keys().map(ToString::to_string).collect();
        self.committed.lock().expect("lock").push(names);
        Ok(ApplyStats {
            full: changes.is_none(),
            ..ApplyStats::default()
        })
    }
    fn render(&self, _plan: &ProxyPlan, _changes: Option<&Changes>) -> String {
        String::new()
    }
    async fn check(&mut self) -> Result<Option<switchyard_core::Drift>, DataplaneError> {
        let findings = std::mem::take(&mut *self.drift.lock().expect("lock"));
        Ok(Some(switchyard_core::Drift { findings }))
    }
    async fn cleanup(&mut self) -> Result<(), DataplaneError> {
        Ok(())
    }
}

fn plan_with(ports: &[i32]) -> ProxyPlan {
    let mut state = ClusterState::default();
    for (i, port) in ports.iter().enumerate() {
        state.upsert_service(Service {
            meta: ObjectMeta::new("default", format!("svc{i}")),
            cluster_ips: vec![format!("10.96.0.{}", i + 1)],
            ports: vec![ServicePort {
                port: *port,
                ..ServicePort::default()
            }],
            ..Service::default()
        });
    }
    plan(&state, &ProxyConfig::new(IpFamily::V4, "n"))
}

fn syncer() -> (Syncer, Calls, Arc<Mutex<bool>>) {
    let calls = Calls::default();
    let fail = Arc::new(Mutex::new(false));
    let rec = Recorder {
        calls: calls.clone(),
        fail_next: fail.clone(),
        poison: None,
        committed: Arc::default(),
        drift: Arc::default(),
    };
    (Syncer::new(vec![Box::new(rec)]), calls, fail)
}

#[tokio::test]
async fn first_sync_full_then_incremental_then_nothing() {
    let (mut s, calls, _) = syncer();
    s.sync(vec![plan_with(&[80])]).await;
    s.sync(vec![plan_with(&[80, 81])]).await;
    s.sync(vec![plan_with(&[80, 81])]).await;
    let calls = calls.lock().expect("lock").clone();
    assert_eq!(
        calls,
        vec![None, Some(vec!["default/svc1/tcp".to_string()])]
    );
}

#[tokio::test]
async fn failure_forces_full_and_backs_off() {
    let (mut s, calls, fail) = syncer();
    s.sync(vec![plan_with(&[80])]).await;
    *fail.lock().expect("lock") = true;
    let out = s.sync(vec![plan_with(&[81])]).await;
    assert_eq!(out.errors.len(), 1);
    assert_eq!(s.retry_backoff(), Some(Duration::from_secs(1)));
    // Same plan again: after a failure it must be re-sent, and in full.
    let out = s.sync(vec![plan_with(&[81])]).await;
    assert!(out.errors.is_empty());
    assert_eq!(s.retry_backoff(), None);
    let calls = calls.lock().expect("lock").clone();
    assert_eq!(
        calls,
        vec![None, Some(vec!["default/svc0/tcp".to_string()]), None]
    );
}

#[tokio::test]
async fn force_full_resends_everything() {
    let (mut s, calls, _) = syncer();
    s.sync(vec![plan_with(&[80])]).await;
    s.force_full();
    s.sync(vec![plan_with(&[80])]).await;
    assert_eq!(calls.lock().expect("lock").clone(), vec![None, None]);
}

/// A forced full sync rewrites everything, so it checks first: tampering that lands between
/// the periodic check and the full sync is still logged and counted (DESIGN-NOTES 286).
#[tokio::test]
async fn a_forced_full_sync_counts_the_drift_it_repairs() {
    let drift: Arc<Mutex<Vec<String>>> = Arc::default();
    let calls = Calls::default();
    let mut s = Syncer::new(vec![Box::new(Recorder {
        calls: calls.clone(),
        fail_next: Arc::default(),
        poison: None,
        committed: Arc::default(),
        drift: drift.clone(),
    })]);
    s.sync(vec![plan_with(&[80])]).await;
    // A full sync with nothing changed behind our back: checked, nothing detected.
    s.force_full();
    s.sync(vec![plan_with(&[80])]).await;
    let quiet = s.repair_stats();
    assert_eq!((quiet.checks, quiet.detected, quiet.repaired), (1, 0, 0));
    // Someone deletes a chain after the period's check; the forced full sync finds it.
    *drift.lock().expect("lock") = vec!["chain nat SWYD-SERVICES: missing".into()];
    s.force_full();
    s.sync(vec![plan_with(&[80])]).await;
    let repaired = s.repair_stats();
    assert_eq!(
        (repaired.checks, repaired.detected, repaired.repaired),
        (2, 1, 1)
    );
    assert_eq!(calls.lock().expect("lock").clone(), vec![None, None, None]);
}

#[tokio::test]
async fn backoff_grows_and_caps() {
    let (mut s, _, fail) = syncer();
    let mut seen = Vec::new();
    for _ in 0..10 {
        *fail.lock().expect("lock") = true;
        s.sync(vec![plan_with(&[80])]).await;
        seen.push(s.retry_backoff().map(|d| d.as_secs()));
    }
    assert_eq!(seen[..4], [Some(1), Some(2), Some(4), Some(8)]);
    assert_eq!(seen[9], Some(128));
}

#[tokio::test]
async fn a_rejected_service_port_is_isolated_and_the_rest_applied() {
    let committed: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let mut s = Syncer::new(vec![Box::new(Recorder {
        calls: Calls::default(),
        fail_next: Arc::default(),
        poison: Some("default/svc1/tcp".into()),
        committed: committed.clone(),
        drift: Arc::default(),
    })]);
    let out = s.sync(vec![plan_with(&[80, 81, 82])]).await;
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.quarantined, 1);
    assert_eq!(out.applied.first().map(|a| a.quarantined), Some(1));
    assert_eq!(
        committed.lock().expect("lock").clone(),
        vec![vec![
            "default/svc0/tcp".to_string(),
            "default/svc2/tcp".to_string()
        ]]
    );
    assert_eq!(s.quarantined().len(), 1);
    // The same plan again changes nothing: the quarantined port is not retried every sync.
    s.sync(vec![plan_with(&[80, 81, 82])]).await;
    assert_eq!(committed.lock().expect("lock").len(), 1);
    // The periodic full resync retries it; still broken, it is isolated again.
    s.force_full();
    let out = s.sync(vec![plan_with(&[80, 81, 82])]).await;
    assert!(out.errors.is_empty());
    assert_eq!(out.quarantined, 1);
    assert_eq!(committed.lock().expect("lock").len(), 2);
    assert_eq!(s.retry_backoff(), None);
}

/// A planner over `ports` (Service `svc{i}` with port `ports[i]`), and its state.
fn planner_with(
    ports: &[i32],
) -> (
    switchyard_core::Planner,
    switchyard_core::model::TrackedState,
) {
    let mut tracked = switchyard_core::model::TrackedState::default();
    for (i, port) in ports.iter().enumerate() {
        tracked.upsert_service(service(i, *port));
    }
    tracked.take_touched();
    let planner =
        switchyard_core::Planner::new(tracked.state(), ProxyConfig::new(IpFamily::V4, "n"));
    (planner, tracked)
}

fn service(i: usize, port: i32) -> Service {
    Service {
        meta: ObjectMeta::new("default", format!("svc{i}")),
        cluster_ips: vec![format!("10.96.0.{}", i + 1)],
        ports: vec![ServicePort {
            port,
            ..ServicePort::default()
        }],
        ..Service::default()
    }
}

#[tokio::test]
async fn planned_syncs_pass_the_planners_changes_and_keep_quarantine() {
    let calls = Calls::default();
    let committed: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let mut s = Syncer::new(vec![Box::new(Recorder {
        calls: calls.clone(),
        fail_next: Arc::default(),
        poison: Some("default/svc1/tcp".into()),
        committed: committed.clone(),
        drift: Arc::default(),
    })]);
    let config = ProxyConfig::new(IpFamily::V4, "n");
    let (mut planner, mut tracked) = planner_with(&[80, 81, 82]);
    let first = switchyard_core::PlanUpdate {
        changes: Changes {
            node_settings: true,
            ..Changes::default()
        },
        ..Default::default()
    };
    let out = s.sync_planned(&[(planner.plan(), &first)]).await;
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.quarantined, 1);

    // One Service changes: only it is passed, and the plan handed over never holds the
    // quarantined port (the recorder fails any apply whose plan does).
    tracked.upsert_service(service(2, 83));
    let touched = tracked.take_touched();
    let update = planner.update(tracked.state(), &config, &touched);
    let out = s.sync_planned(&[(planner.plan(), &update)]).await;
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    // A change to the quarantined port alone costs nothing.
    tracked.upsert_service(service(1, 84));
    let touched = tracked.take_touched();
    let update = planner.update(tracked.state(), &config, &touched);
    assert_eq!(update.changes.updated.len(), 1);
    s.sync_planned(&[(planner.plan(), &update)]).await;
    // Nothing changed: nothing applied.
    let update = planner.update(tracked.state(), &config, &Default::default());
    s.sync_planned(&[(planner.plan(), &update)]).await;
    assert_eq!(
        calls.lock().expect("lock").clone(),
        vec![None, Some(vec!["default/svc2/tcp".to_string()])]
    );
    assert_eq!(committed.lock().expect("lock").len(), 2);

    // The periodic full resync retries it; still broken, it is isolated again.
    s.force_full();
    let out = s
        .sync_planned(&[(planner.plan(), &Default::default())])
        .await;
    assert!(out.errors.is_empty());
    assert_eq!(out.quarantined, 1);
    assert_eq!(calls.lock().expect("lock").last(), Some(&None));
}
