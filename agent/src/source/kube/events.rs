//! The one Event the agent records: `Starting` on its Node, as kube-proxy does, so
//! `kubectl describe node` shows when (and that) the proxy on it (re)started.

use super::KubeSource;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// The `reportingController` of our events.
const CONTROLLER: &str = "switchyard";

impl KubeSource {
    /// Records `Starting` on Node `node_name` (in `default`, where events about cluster-scoped
    /// objects go). Best effort: a refusal (RBAC, an API without events.k8s.io) is a warning,
    /// never a reason not to proxy. The future owns what it needs, so the agent runs it as a
    /// task of its own: a round trip to the API has no place between the last list page and
    /// the first commit.
    pub fn announce_start(&self, node_name: &str) -> impl std::future::Future<Output = ()> + Send {
        let client = self.client.clone();
        let node_name = node_name.to_string();
        async move { record_start(client, &node_name).await }
    }
}

async fn record_start(client: kube::Client, node_name: &str) {
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: CONTROLLER.into(),
            instance: Some(node_name.to_string()),
        },
    );
    let node = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(node_name.to_string()),
        ..Default::default()
    };
    let event = Event {
        type_: EventType::Normal,
        reason: "Starting".into(),
        note: Some(format!(
            "Starting switchyard {}.",
            env!("CARGO_PKG_VERSION")
        )),
        action: "StartProxy".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &node).await {
        tracing::warn!("recording the Starting event on Node {node_name}: {e}");
    }
}
