//! A [`ClusterState`] that remembers which Services and EndpointSlices changed, so a
//! [`Planner`](crate::plan::Planner) re-plans only those.
//!
//! The state's maps are reachable only through methods that record the change, so a source
//! cannot change an object without the planner hearing of it. An upsert of an object equal to
//! the stored one records nothing: a relist, or a watch event that changes only fields
//! Switchyard does not read, costs no re-plan. The Node and ServiceCIDRs are not tracked
//! here: they are few and node-wide, and the planner compares what it derives from them.

use super::{ClusterState, EndpointSlice, Node, ObjectRef, Service, ServiceCidr};
use std::collections::{BTreeMap, BTreeSet};

/// The Services and EndpointSlices added, changed or deleted since the last
/// [`TrackedState::take_touched`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    pub services: BTreeSet<ObjectRef>,
    pub endpoint_slices: BTreeSet<ObjectRef>,
}

impl Touched {
    pub fn is_empty(&self) -> bool {
        self.services.is_empty() && self.endpoint_slices.is_empty()
    }
}

/// A [`ClusterState`] with a change log. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct TrackedState {
    state: ClusterState,
    touched: Touched,
}

/// Starts tracking `state` with an empty change log.
impl From<ClusterState> for TrackedState {
    fn from(state: ClusterState) -> Self {
        Self {
            state,
            touched: Touched::default(),
        }
    }
}

impl TrackedState {
    /// The objects as they are now.
    pub fn state(&self) -> &ClusterState {
        &self.state
    }

    /// The objects, giving up the change log.
    pub fn into_state(self) -> ClusterState {
        self.state
    }

    /// What changed since the last call, and forgets it.
    pub fn take_touched(&mut self) -> Touched {
        std::mem::take(&mut self.touched)
    }

    pub fn upsert_service(&mut self, service: Service) {
        let key = service.meta.object_ref();
        if self.state.services.get(&key) != Some(&service) {
            self.state.services.insert(key.clone(), service);
            self.touched.services.insert(key);
        }
    }

    pub fn remove_service(&mut self, key: &ObjectRef) {
        if self.state.services.remove(key).is_some() {
            self.touched.services.insert(key.clone());
        }
    }

    /// Replaces every Service (the end of a relist), recording only the ones that differ.
    pub fn replace_services(&mut self, services: BTreeMap<ObjectRef, Service>) {
        replace(
            &mut self.state.services,
            services,
            &mut self.touched.services,
        );
    }

    pub fn upsert_endpoint_slice(&mut self, slice: EndpointSlice) {
        let key = slice.meta.object_ref();
        if self.state.endpoint_slices.get(&key) != Some(&slice) {
            self.state.endpoint_slices.insert(key.clone(), slice);
            self.touched.endpoint_slices.insert(key);
        }
    }

    pub fn remove_endpoint_slice(&mut self, key: &ObjectRef) {
        if self.state.endpoint_slices.remove(key).is_some() {
            self.touched.endpoint_slices.insert(key.clone());
        }
    }

    /// Replaces every EndpointSlice (the end of a relist), recording only the ones that differ.
    pub fn replace_endpoint_slices(&mut self, slices: BTreeMap<ObjectRef, EndpointSlice>) {
        replace(
            &mut self.state.endpoint_slices,
            slices,
            &mut self.touched.endpoint_slices,
        );
    }

    /// This node's Node object (`None`: unknown or deleted).
    pub fn set_node(&mut self, node: Option<Node>) {
        self.state.node = node;
    }

    pub fn upsert_service_cidr(&mut self, cidr: ServiceCidr) {
        self.state.upsert_service_cidr(cidr);
    }

    pub fn remove_service_cidr(&mut self, name: &str) {
        self.state.service_cidrs.remove(name);
    }

    pub fn replace_service_cidrs(&mut self, cidrs: BTreeMap<String, ServiceCidr>) {
        self.state.service_cidrs = cidrs;
    }
}

/// Swaps `new` into `map`, recording every key added, changed or removed.
fn replace<V: PartialEq>(
    map: &mut BTreeMap<ObjectRef, V>,
    new: BTreeMap<ObjectRef, V>,
    touched: &mut BTreeSet<ObjectRef>,
) {
    for (key, value) in map.iter() {
        if new.get(key) != Some(value) {
            touched.insert(key.clone());
        }
    }
    for key in new.keys() {
        if !map.contains_key(key) {
            touched.insert(key.clone());
        }
    }
    *map = new;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ObjectMeta;

    fn service(name: &str, port: i32) -> Service {
        Service {
            meta: ObjectMeta::new("ns", name),
            ports: vec![super::super::ServicePort {
                port,
                ..Default::default()
            }],
            ..Service::default()
        }
    }

    fn names(set: &BTreeSet<ObjectRef>) -> Vec<&str> {
        set.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn records_real_changes_only() {
        let mut t = TrackedState::default();
        t.upsert_service(service("a", 80));
        t.upsert_service(service("b", 80));
        assert_eq!(names(&t.take_touched().services), ["a", "b"]);
        t.upsert_service(service("a", 80));
        assert!(t.take_touched().is_empty(), "an equal object is no change");
        t.upsert_service(service("a", 81));
        t.remove_service(&ObjectRef::new("ns", "b"));
        t.remove_service(&ObjectRef::new("ns", "never"));
        assert_eq!(names(&t.take_touched().services), ["a", "b"]);
    }

    #[test]
    fn a_relist_records_the_difference() {
        let mut t = TrackedState::default();
        t.upsert_service(service("keep", 80));
        t.upsert_service(service("change", 80));
        t.upsert_service(service("gone", 80));
        t.take_touched();
        let relisted = [
            service("keep", 80),
            service("change", 81),
            service("new", 80),
        ]
        .into_iter()
        .map(|s| (s.meta.object_ref(), s))
        .collect();
        t.replace_services(relisted);
        assert_eq!(names(&t.take_touched().services), ["change", "gone", "new"]);
        assert_eq!(t.state().services.len(), 3);
    }
}
