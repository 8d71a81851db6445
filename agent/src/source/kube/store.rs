//! The watched objects, converted to `core`'s model, and whether each kind is fully known.
//!
//! A relist (startup, or after `410 Gone`) is buffered and swapped in whole at `InitDone`, so
//! the planner never sees a kind half-listed: objects deleted while the agent was not watching
//! disappear at that moment, and nothing else does.

use crate::source::convert;
use ipnet::IpNet;
use k8s_openapi::api::core::v1 as core_v1;
use k8s_openapi::api::discovery::v1 as discovery_v1;
use k8s_openapi::api::networking::v1 as networking_v1;
use switchyard_core::model::TrackedState;

/// Namespace given to namespaced objects that lack one (never the case on a real API).
const DEFAULT_NAMESPACE: &str = "default";

/// The kinds the source watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Service,
    EndpointSlice,
    Node,
    ServiceCidr,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::Service,
        Kind::EndpointSlice,
        Kind::Node,
        Kind::ServiceCidr,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Service => "services",
            Kind::EndpointSlice => "endpointslices",
            Kind::Node => "node",
            Kind::ServiceCidr => "servicecidrs",
        })
    }
}

/// What the planner needs from the API, beyond `ClusterState`.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The objects, with a log of which Services and slices changed (for the planner).
    pub state: TrackedState,
    /// This node's `spec.podCIDRs` (empty while it has none or is unknown).
    pub pod_cidrs: Vec<IpNet>,
    /// Whether the API serves ServiceCIDRs; when it does not, `--service-cluster-ip-range`
    /// is the only source of service CIDRs.
    pub service_cidrs_served: bool,
    /// When the oldest event not yet planned reached the agent (taken by the planner, to
    /// log the agent's own change-to-commit time).
    pub changed_at: Option<std::time::Instant>,
}

/// Everything the watchers have seen.
#[derive(Debug, Default)]
pub struct Store {
    pub snapshot: Snapshot,
    /// Per kind: has an initial list completed (ever)? The first sync waits for all four.
    listed: [bool; 4],
    /// Whether this Node may receive load-balancer traffic (`/healthz`); see
    /// [`crate::health::node_eligible`].
    pub node_eligible: bool,
    /// Changes since the last plan, for metrics.
    pub pending: super::changes::Pending,
}

impl Store {
    pub fn new() -> Self {
        Self {
            snapshot: Snapshot {
                service_cidrs_served: true,
                ..Snapshot::default()
            },
            listed: [false; 4],
            node_eligible: true,
            pending: Default::default(),
        }
    }

    pub fn mark_listed(&mut self, kind: Kind) {
        self.listed[kind.index()] = true;
    }

    /// Whether `kind` has completed an initial list (ever).
    pub fn is_listed(&self, kind: Kind) -> bool {
        self.listed[kind.index()]
    }

    /// Kinds whose initial list has not completed yet.
    pub fn unlisted(&self) -> Vec<Kind> {
        Kind::ALL
            .into_iter()
            .filter(|k| !self.listed[k.index()])
            .collect()
    }
}

/// A watched resource type and how its objects enter the [`Store`].
pub trait Watched:
    kube::Resource<DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    const KIND: Kind;
    /// Replaces every object of this kind, as the end of a relist does (tests' shorthand).
    #[cfg(test)]
    fn replace_all(store: &mut Store, objects: &[Self]) {
        let mut relist = Store::new();
        for o in objects {
            Self::upsert(&mut relist, o);
        }
        Self::take(store, &mut relist);
    }
    /// Moves this kind's objects from `from` (a relist, converted as it arrived) into `store`,
    /// replacing what `store` had.
    fn take(store: &mut Store, from: &mut Store);
    fn clear(store: &mut Store);
    fn upsert(store: &mut Store, object: &Self);
    fn remove(store: &mut Store, object: &Self);
    /// Counts a watch event (not a listed object) as a change, for metrics.
    fn note_change(_store: &mut Store, _object: &Self, _ctx: &ChangeContext) {}
}

/// What counting changes needs: the metrics to update and when the agent started.
#[derive(Debug, Clone)]
pub struct ChangeContext {
    pub metrics: crate::metrics::SourceMetrics,
    pub started: std::time::SystemTime,
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

impl Watched for core_v1::Service {
    const KIND: Kind = Kind::Service;
    fn take(store: &mut Store, from: &mut Store) {
        let relisted = std::mem::take(&mut from.snapshot.state).into_state();
        store.snapshot.state.replace_services(relisted.services);
    }
    fn clear(store: &mut Store) {
        store.snapshot.state.replace_services(Default::default());
    }
    fn upsert(store: &mut Store, object: &Self) {
        store
            .snapshot
            .state
            .upsert_service(convert::service(object, DEFAULT_NAMESPACE));
    }
    fn remove(store: &mut Store, object: &Self) {
        let key = convert::meta(&object.metadata, DEFAULT_NAMESPACE).object_ref();
        store.snapshot.state.remove_service(&key);
    }
    fn note_change(store: &mut Store, object: &Self, ctx: &ChangeContext) {
        let key = convert::meta(&object.metadata, DEFAULT_NAMESPACE).object_ref();
        store.pending.service(key, &ctx.metrics);
    }
}

impl Watched for discovery_v1::EndpointSlice {
    const KIND: Kind = Kind::EndpointSlice;
    fn take(store: &mut Store, from: &mut Store) {
        let relisted = std::mem::take(&mut from.snapshot.state).into_state();
        store
            .snapshot
            .state
            .replace_endpoint_slices(relisted.endpoint_slices);
    }
    fn clear(store: &mut Store) {
        store
            .snapshot
            .state
            .replace_endpoint_slices(Default::default());
    }
    fn upsert(store: &mut Store, object: &Self) {
        store
            .snapshot
            .state
            .upsert_endpoint_slice(convert::endpoint_slice(object, DEFAULT_NAMESPACE));
    }
    fn remove(store: &mut Store, object: &Self) {
        let key = convert::meta(&object.metadata, DEFAULT_NAMESPACE).object_ref();
        store.snapshot.state.remove_endpoint_slice(&key);
    }
    fn note_change(store: &mut Store, object: &Self, ctx: &ChangeContext) {
        let namespace = object
            .metadata
            .namespace
            .as_deref()
            .unwrap_or(DEFAULT_NAMESPACE);
        store
            .pending
            .slice(object, namespace, ctx.started, &ctx.metrics);
    }
}

/// The Node watch has a `metadata.name` field selector, so every object is this node.
impl Watched for core_v1::Node {
    const KIND: Kind = Kind::Node;
    fn take(store: &mut Store, from: &mut Store) {
        let node = from.snapshot.state.state().node.clone();
        store.snapshot.state.set_node(node);
        store.snapshot.pod_cidrs = std::mem::take(&mut from.snapshot.pod_cidrs);
        store.node_eligible = from.node_eligible;
    }
    fn clear(store: &mut Store) {
        store.snapshot.state.set_node(None);
        store.snapshot.pod_cidrs.clear();
    }
    fn upsert(store: &mut Store, object: &Self) {
        store.snapshot.state.set_node(Some(convert::node(object)));
        store.snapshot.pod_cidrs = pod_cidrs(object);
        store.node_eligible = crate::health::node_eligible(object);
    }
    fn remove(store: &mut Store, object: &Self) {
        // A Node that is gone is not eligible, whatever its last state said (kube-proxy
        // re-reads the deleted object, which an immediate deletion leaves unmarked).
        store.node_eligible = false;
        tracing::warn!(
            node = %name_of(&object.metadata),
            "this node's Node object was deleted: planning without its addresses and zone"
        );
        Self::clear(store);
    }
}

impl Watched for networking_v1::ServiceCIDR {
    const KIND: Kind = Kind::ServiceCidr;
    fn take(store: &mut Store, from: &mut Store) {
        let relisted = std::mem::take(&mut from.snapshot.state).into_state();
        store
            .snapshot
            .state
            .replace_service_cidrs(relisted.service_cidrs);
    }
    fn clear(store: &mut Store) {
        store
            .snapshot
            .state
            .replace_service_cidrs(Default::default());
    }
    fn upsert(store: &mut Store, object: &Self) {
        store
            .snapshot
            .state
            .upsert_service_cidr(convert::service_cidr(object));
    }
    fn remove(store: &mut Store, object: &Self) {
        store
            .snapshot
            .state
            .remove_service_cidr(&name_of(&object.metadata));
    }
}

/// `spec.podCIDRs` (else the legacy `spec.podCIDR`); unparsable entries are logged and skipped.
fn pod_cidrs(node: &core_v1::Node) -> Vec<IpNet> {
    let spec = node.spec.as_ref();
    let listed = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    let raw = if listed.is_empty() {
        spec.and_then(|s| s.pod_cidr.clone()).into_iter().collect()
    } else {
        listed
    };
    raw.iter()
        .filter_map(|c| match c.parse() {
            Ok(net) => Some(net),
            Err(e) => {
                tracing::warn!(node = %name_of(&node.metadata), cidr = %c, "bad spec.podCIDRs entry: {e}");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str) -> core_v1::Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"clusterIP": "10.96.0.1"}
        }))
        .expect("service")
    }

    #[test]
    fn a_relist_replaces_the_kind_whole_and_leaves_the_others() {
        let mut store = Store::new();
        core_v1::Service::replace_all(&mut store, &[service("a"), service("b")]);
        let node: core_v1::Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n"},
            "spec": {"podCIDRs": ["10.244.1.0/24", "bogus"]}
        }))
        .expect("node");
        core_v1::Node::upsert(&mut store, &node);
        // After a 410 relist only "b" exists: "a" was deleted while nobody watched.
        core_v1::Service::replace_all(&mut store, &[service("b")]);
        let names: Vec<_> = store
            .snapshot
            .state
            .state()
            .services
            .keys()
            .map(|k| k.name.clone())
            .collect();
        assert_eq!(names, ["b"]);
        assert_eq!(
            store.snapshot.pod_cidrs,
            ["10.244.1.0/24".parse::<IpNet>().expect("cidr")]
        );
        core_v1::Node::remove(&mut store, &node);
        assert!(store.snapshot.state.state().node.is_none() && store.snapshot.pod_cidrs.is_empty());
    }

    #[test]
    fn every_kind_must_be_listed_before_the_first_sync() {
        let mut store = Store::new();
        assert_eq!(store.unlisted().len(), 4);
        for kind in [Kind::Service, Kind::EndpointSlice, Kind::Node] {
            store.mark_listed(kind);
        }
        assert_eq!(store.unlisted(), [Kind::ServiceCidr]);
        store.mark_listed(Kind::ServiceCidr);
        assert!(store.unlisted().is_empty());
    }
}
