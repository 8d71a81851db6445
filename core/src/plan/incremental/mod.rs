//! The incremental planner: [`plan()`](super::plan)'s result, kept up to date change by change.
//!
//! A change to one Service or EndpointSlice re-plans only the service ports it affects, and
//! says which those are, so a sync costs O(change) from the watch event to the kernel instead
//! of O(cluster). What a change can affect:
//! - an EndpointSlice: the ports of the Service it belongs to (before and after the change);
//! - a Service: its own ports, and the key claims of every Service it contends with for a
//!   key (see `tokens`): those are claimed again together, in [`plan()`]'s precedence order,
//!   so a contested key moves to exactly the Service the full plan would give it;
//! - node-wide inputs (the Node's addresses and zone, the config): everything. The Node and
//!   the config are compared by what the plan derives from them, so a Node update that
//!   changes neither (a status heartbeat) costs nothing. ServiceCIDRs change only the plan's
//!   node-level field.
//!
//! `plan()` stays the reference; a property test applies random change sequences both ways
//! and compares whole plans, warnings included (`tests/incremental.rs`).

mod tokens;

use super::claims::Claims;
use super::endpoints::{self, ValidSlice};
use super::service::{not_ours, validate_service, ValidService};
use super::{
    claim_allocated, claim_written, plan_port, precedence, service_cidrs, ClaimedPort, NodeInputs,
    ProxyPlan, ServicePortName, ServicePortPlan,
};
use crate::config::ProxyConfig;
use crate::diff::{diff, Changes};
use crate::model::{ClusterState, ObjectRef, Touched};
use crate::plan::Protocol;
use crate::warning::Warning;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tokens::{tokens_of, Token, TokenIndex, Use};

/// What one [`Planner::update`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanUpdate {
    /// The service ports added, updated and removed (what `diff` of the plans before and
    /// after would say).
    pub changes: Changes,
    /// Whether `ProxyPlan::warnings` changed.
    pub warnings_changed: bool,
    /// The plans of the updated and removed service ports before this update: what a
    /// caller needs to clean up after them (e.g. conntrack entries of endpoints that left).
    pub previous: BTreeMap<ServicePortName, ServicePortPlan>,
}

/// One family's plan, updated in place. See the module docs.
#[derive(Debug)]
pub struct Planner {
    config: ProxyConfig,
    node: NodeInputs,
    cidr_warnings: Vec<Warning>,
    plan: ProxyPlan,
    /// Services that are ours and valid in this family: what they claimed.
    services: HashMap<ObjectRef, Entry>,
    /// Warnings of Services (validation and claims), only for Services that have some.
    service_warnings: HashMap<ObjectRef, ServiceWarnings>,
    /// Slices of this family that name a Service: which one.
    slice_owner: HashMap<ObjectRef, ObjectRef>,
    /// The other way round, in slice-name order (the order `plan()` merges them in). A
    /// sorted `Vec`: a Service has a few slices, and a B-tree node per Service would cost
    /// ~0.5 KB each.
    slices_of: HashMap<ObjectRef, Vec<ObjectRef>>,
    /// Warnings of slices, in slice-name order, only for slices that have some.
    slice_warnings: BTreeMap<ObjectRef, Vec<Warning>>,
    tokens: TokenIndex,
}

#[derive(Debug, Default)]
struct Entry {
    tokens: Vec<(Token, Use)>,
    /// The ports that won their keys, with the written addresses they kept.
    ports: Vec<ClaimedPort>,
}

#[derive(Debug, PartialEq, Eq)]
struct ServiceWarnings {
    /// `creationTimestamp`, for `plan()`'s order.
    created: i64,
    /// Validation and phase-1 claims.
    allocated: Vec<Warning>,
    /// Phase-2 claims.
    written: Vec<Warning>,
}

impl Planner {
    /// Plans `state` whole (as [`plan()`](super::plan) does).
    pub fn new(state: &ClusterState, config: ProxyConfig) -> Self {
        let node = NodeInputs::new(state.node.as_ref(), &config);
        let mut cidr_warnings = Vec::new();
        let cidrs = service_cidrs(state, &config, &mut cidr_warnings);
        let plan = node
            .clone()
            .into_plan(&config, cidrs, BTreeMap::new(), Vec::new());
        let mut planner = Self {
            config,
            node,
            cidr_warnings,
            plan,
            services: HashMap::new(),
            service_warnings: HashMap::new(),
            slice_owner: HashMap::new(),
            slices_of: HashMap::new(),
            slice_warnings: BTreeMap::new(),
            tokens: TokenIndex::default(),
        };
        let everything = Touched {
            services: state.services.keys().cloned().collect(),
            endpoint_slices: state.endpoint_slices.keys().cloned().collect(),
        };
        planner.replan(state, &everything, &mut PlanUpdate::default());
        planner.rebuild_warnings();
        planner
    }

    /// The current plan.
    pub fn plan(&self) -> &ProxyPlan {
        &self.plan
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// Brings the plan up to `state`, where `touched` names every Service and EndpointSlice
    /// that changed since the last update (see [`TrackedState`](crate::model::TrackedState));
    /// the Node, the ServiceCIDRs and `config` are compared whole. Returns what changed.
    pub fn update(
        &mut self,
        state: &ClusterState,
        config: &ProxyConfig,
        touched: &Touched,
    ) -> PlanUpdate {
        let node = NodeInputs::new(state.node.as_ref(), config);
        if *config != self.config || node != self.node {
            let mut old = std::mem::replace(self, Planner::new(state, config.clone()));
            let changes = diff(&old.plan, &self.plan);
            let previous = changes
                .updated
                .iter()
                .chain(&changes.removed)
                .filter_map(|name| old.plan.services.remove_entry(name))
                .collect();
            return PlanUpdate {
                changes,
                warnings_changed: old.plan.warnings != self.plan.warnings,
                previous,
            };
        }
        let mut update = PlanUpdate::default();
        let mut cidr_warnings = Vec::new();
        let cidrs = service_cidrs(state, config, &mut cidr_warnings);
        if cidrs != self.plan.service_cidrs {
            self.plan.service_cidrs = cidrs;
            update.changes.node_settings = true;
        }
        update.warnings_changed = cidr_warnings != self.cidr_warnings;
        self.cidr_warnings = cidr_warnings;
        self.replan(state, touched, &mut update);
        if update.warnings_changed {
            // A candidate (some object's warnings changed, or their order may have): exact.
            update.warnings_changed = self.rebuild_warnings();
        }
        update
    }

    /// Re-plans what `touched` affects, recording it in `update`.
    fn replan(&mut self, state: &ClusterState, touched: &Touched, update: &mut PlanUpdate) {
        let (endpoints_dirty, warnings_changed) = self.index_slices(state, touched);
        update.warnings_changed |= warnings_changed;

        // Claims: the touched Services and everything contending with them, before and
        // after the change, claimed again together.
        let mut contenders = BTreeSet::new();
        self.close(&touched.services, &mut contenders);
        for key in &touched.services {
            if let Some(entry) = self.services.get_mut(key) {
                self.tokens.remove(key, &entry.tokens);
                entry.tokens.clear();
            }
            match state.services.get(key).and_then(|s| self.validate(s)) {
                Some(valid) => {
                    let tokens = tokens_of(&valid, &self.node);
                    self.tokens.insert(key, &tokens);
                    self.services.entry(key.clone()).or_default().tokens = tokens;
                }
                None => {
                    self.services.remove(key);
                }
            }
        }
        self.close(&touched.services, &mut contenders);
        update.warnings_changed |= self.claim(state, &contenders);

        for key in contenders.iter().chain(&endpoints_dirty) {
            self.replan_service(state, key, update);
        }
    }

    /// Follows the touched slices: which Service each belongs to now, and their warnings.
    /// Returns the Services whose endpoints may have changed, and whether warnings changed.
    fn index_slices(
        &mut self,
        state: &ClusterState,
        touched: &Touched,
    ) -> (BTreeSet<ObjectRef>, bool) {
        let family = self.config.family;
        let mut dirty = BTreeSet::new();
        let mut warnings_changed = false;
        for key in &touched.endpoint_slices {
            if let Some(service) = self.slice_owner.remove(key) {
                if let Some(slices) = self.slices_of.get_mut(&service) {
                    slices.retain(|s| s != key);
                    if slices.is_empty() {
                        self.slices_of.remove(&service);
                    }
                }
                dirty.insert(service);
            }
            let mut warnings = Vec::new();
            if let Some(slice) = state.endpoint_slices.get(key) {
                if let Some(service) = endpoints::owner(slice, family, &mut warnings) {
                    endpoints::validate_slice(slice, family, &mut warnings);
                    self.slice_owner.insert(key.clone(), service.clone());
                    let slices = self.slices_of.entry(service.clone()).or_default();
                    if let Err(at) = slices.binary_search(key) {
                        slices.insert(at, key.clone());
                    }
                    dirty.insert(service);
                }
            }
            let old = self.slice_warnings.remove(key).unwrap_or_default();
            warnings_changed |= old != warnings;
            if !warnings.is_empty() {
                self.slice_warnings.insert(key.clone(), warnings);
            }
        }
        (dirty, warnings_changed)
    }

    /// Adds `seeds` and everything contending with them to `out`.
    fn close(&self, seeds: &BTreeSet<ObjectRef>, out: &mut BTreeSet<ObjectRef>) {
        let services = &self.services;
        self.tokens.close(
            seeds,
            |key| services.get(key).map(|e| e.tokens.as_slice()),
            out,
        );
    }

    fn validate(&self, svc: &crate::model::Service) -> Option<ValidService> {
        self.validate_into(svc, &mut Vec::new())
    }

    fn validate_into(
        &self,
        svc: &crate::model::Service,
        warnings: &mut Vec<Warning>,
    ) -> Option<ValidService> {
        if not_ours(svc).is_some() {
            return None;
        }
        validate_service(svc, &self.config, &self.node.node_ips, warnings)
    }

    /// Runs both claim phases over `members` (closed under contention), in `plan()`'s order,
    /// and records each one's claimed ports and warnings. Returns whether warnings changed.
    fn claim(&mut self, state: &ClusterState, members: &BTreeSet<ObjectRef>) -> bool {
        let mut ordered: Vec<_> = members
            .iter()
            .filter_map(|key| state.services.get(key))
            .collect();
        ordered.sort_by_key(|s| precedence(s));
        let mut claims = Claims::new(self.node.local_addresses.clone());
        let mut survivors = Vec::new();
        let mut warnings_changed = false;
        for svc in ordered {
            let key = svc.meta.object_ref();
            let created = precedence(svc).0;
            let mut allocated = Vec::new();
            match self.validate_into(svc, &mut allocated) {
                Some(valid) => {
                    let ports =
                        claim_allocated(&mut claims, &key, &valid, &self.node, &mut allocated);
                    survivors.push((key, created, valid, ports, allocated));
                }
                None => {
                    let warnings = ServiceWarnings {
                        created,
                        allocated,
                        written: Vec::new(),
                    };
                    warnings_changed |= self.set_warnings(&key, warnings);
                }
            }
        }
        for (key, created, valid, mut ports, allocated) in survivors {
            let mut written = Vec::new();
            claim_written(&mut claims, &valid, &mut ports, &mut written);
            if let Some(entry) = self.services.get_mut(&key) {
                entry.ports = ports;
            }
            let warnings = ServiceWarnings {
                created,
                allocated,
                written,
            };
            warnings_changed |= self.set_warnings(&key, warnings);
        }
        for key in members {
            if !state.services.contains_key(key) {
                warnings_changed |= self.service_warnings.remove(key).is_some();
            }
        }
        warnings_changed
    }

    /// Stores a Service's warnings; returns whether they differ from before.
    fn set_warnings(&mut self, key: &ObjectRef, warnings: ServiceWarnings) -> bool {
        let empty = warnings.allocated.is_empty() && warnings.written.is_empty();
        let old = if empty {
            self.service_warnings.remove(key)
        } else {
            self.service_warnings.insert(key.clone(), warnings)
        };
        match (old, self.service_warnings.get(key)) {
            (None, None) => false,
            (Some(old), Some(new)) => old != *new,
            _ => true,
        }
    }

    /// Plans one Service's ports again and records which were added, updated or removed.
    fn replan_service(&mut self, state: &ClusterState, key: &ObjectRef, update: &mut PlanUpdate) {
        let first = ServicePortName {
            service: key.clone(),
            port: String::new(),
            protocol: Protocol::Tcp,
        };
        let old_names: Vec<ServicePortName> = self
            .plan
            .services
            .range(first..)
            .take_while(|(name, _)| name.service == *key)
            .map(|(name, _)| name.clone())
            .collect();
        let mut old: BTreeMap<ServicePortName, ServicePortPlan> = old_names
            .into_iter()
            .filter_map(|name| self.plan.services.remove_entry(&name))
            .collect();
        for (name, planned) in self.plan_ports(state, key) {
            match old.remove(&name) {
                None => {
                    update.changes.added.insert(name.clone());
                }
                Some(before) if before != planned => {
                    update.changes.updated.insert(name.clone());
                    update.previous.insert(name.clone(), before);
                }
                Some(_) => {}
            }
            self.plan.services.insert(name, planned);
        }
        update.changes.removed.extend(old.keys().cloned());
        update.previous.extend(old);
    }

    /// The plans of one Service's claimed ports, from its object and its slices.
    fn plan_ports(
        &self,
        state: &ClusterState,
        key: &ObjectRef,
    ) -> Vec<(ServicePortName, ServicePortPlan)> {
        let (Some(entry), Some(svc)) = (self.services.get(key), state.services.get(key)) else {
            return Vec::new();
        };
        let Some(valid) = self.validate(svc) else {
            return Vec::new();
        };
        let family = self.config.family;
        let mut scratch = Vec::new();
        let slices: Vec<ValidSlice> = self
            .slices_of
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|k| state.endpoint_slices.get(k))
            .map(|slice| endpoints::validate_slice(slice, family, &mut scratch))
            .collect();
        entry
            .ports
            .iter()
            .map(|claimed| {
                let planned = plan_port(&self.node, &self.config, &valid, claimed, &slices);
                (claimed.name.clone(), planned)
            })
            .collect()
    }

    /// `ProxyPlan::warnings` in `plan()`'s order: the Node's, the slices', each Service's
    /// validation and phase-1 claims oldest first, then phase-2 claims, then ServiceCIDRs'.
    /// Returns whether they differ from before.
    fn rebuild_warnings(&mut self) -> bool {
        let mut warnings = self.node.warnings.clone();
        warnings.extend(self.slice_warnings.values().flatten().cloned());
        let mut by_age: Vec<_> = self.service_warnings.iter().collect();
        by_age.sort_by(|(a, wa), (b, wb)| (wa.created, *a).cmp(&(wb.created, *b)));
        for (_, w) in &by_age {
            warnings.extend(w.allocated.iter().cloned());
        }
        for (_, w) in &by_age {
            warnings.extend(w.written.iter().cloned());
        }
        warnings.extend(self.cidr_warnings.iter().cloned());
        let changed = warnings != self.plan.warnings;
        self.plan.warnings = warnings;
        changed
    }
}
