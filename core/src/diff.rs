//! Which service ports changed between two plans, so backends can sync incrementally.

use crate::plan::{ProxyPlan, ServicePortName};
use serde::Serialize;
use std::collections::BTreeSet;

/// The difference between the plan last applied and the next one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Changes {
    /// Service ports that are new.
    pub added: BTreeSet<ServicePortName>,
    /// Service ports whose plan differs in any way (addresses, endpoints, policies, affinity...).
    pub updated: BTreeSet<ServicePortName>,
    /// Service ports that are gone.
    pub removed: BTreeSet<ServicePortName>,
    /// A node-level setting changed (node addresses, NodePort addresses, masquerade policy, pod
    /// or service CIDRs, family): rules shared by every service are affected, so sync everything.
    pub node_settings: bool,
}

impl Changes {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        !self.node_settings
            && self.added.is_empty()
            && self.updated.is_empty()
            && self.removed.is_empty()
    }

    /// A backend should treat this change as a full sync.
    pub fn requires_full_sync(&self) -> bool {
        self.node_settings
    }

    /// Every service port added, updated or removed.
    pub fn touched(&self) -> impl Iterator<Item = &ServicePortName> {
        self.added.iter().chain(&self.updated).chain(&self.removed)
    }
}

/// Compares two plans of the same family. Warnings are not compared: they change nothing in the
/// kernel.
pub fn diff(old: &ProxyPlan, new: &ProxyPlan) -> Changes {
    let mut changes = Changes {
        node_settings: old.family != new.family
            || old.node_ips != new.node_ips
            || old.node_port_addresses != new.node_port_addresses
            || old.cluster_masquerade != new.cluster_masquerade
            || old.pod_sources != new.pod_sources
            || old.service_cidrs != new.service_cidrs,
        ..Changes::default()
    };
    for (name, plan) in &new.services {
        match old.services.get(name) {
            None => {
                changes.added.insert(name.clone());
            }
            Some(previous) if previous != plan => {
                changes.updated.insert(name.clone());
            }
            Some(_) => {}
        }
    }
    for name in old.services.keys() {
        if !new.services.contains_key(name) {
            changes.removed.insert(name.clone());
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ClusterState, ObjectMeta, Service, ServicePort};
    use crate::plan::{plan, IpFamily};
    use crate::ProxyConfig;

    fn service(name: &str, ip: &str, port: i32) -> Service {
        Service {
            meta: ObjectMeta::new("default", name),
            cluster_ips: vec![ip.into()],
            ports: vec![ServicePort {
                port,
                ..ServicePort::default()
            }],
            ..Service::default()
        }
    }

    fn names(set: &BTreeSet<ServicePortName>) -> Vec<String> {
        set.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn reports_added_updated_removed() {
        let config = ProxyConfig::new(IpFamily::V4, "n");
        let mut state = ClusterState::default();
        state.upsert_service(service("keep", "10.96.0.1", 80));
        state.upsert_service(service("change", "10.96.0.2", 80));
        state.upsert_service(service("gone", "10.96.0.3", 80));
        let old = plan(&state, &config);

        state.services.retain(|k, _| k.name != "gone");
        state.upsert_service(service("change", "10.96.0.2", 80).tap_external_ip("198.51.100.1"));
        state.upsert_service(service("new", "10.96.0.4", 80));
        let new = plan(&state, &config);

        let changes = diff(&old, &new);
        assert_eq!(names(&changes.added), ["default/new/tcp"]);
        assert_eq!(names(&changes.updated), ["default/change/tcp"]);
        assert_eq!(names(&changes.removed), ["default/gone/tcp"]);
        assert!(!changes.requires_full_sync());
        assert_eq!(changes.touched().count(), 3);
        assert!(diff(&new, &new).is_empty());
    }

    #[test]
    fn node_setting_change_requires_full_sync() {
        let mut state = ClusterState::default();
        state.upsert_service(service("a", "10.96.0.1", 80));
        let old = plan(&state, &ProxyConfig::new(IpFamily::V4, "n"));
        let new = plan(
            &state,
            &ProxyConfig::new(IpFamily::V4, "n").with_masquerade_all(true),
        );
        let changes = diff(&old, &new);
        assert!(changes.requires_full_sync() && !changes.is_empty());
        assert!(
            changes.updated.is_empty(),
            "service plans themselves did not change"
        );
    }

    trait Tap {
        fn tap_external_ip(self, ip: &str) -> Self;
    }
    impl Tap for Service {
        fn tap_external_ip(mut self, ip: &str) -> Self {
            self.external_ips.push(ip.into());
            self
        }
    }
}
