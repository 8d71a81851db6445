//! Structured warnings for malformed objects.

use crate::model::ObjectRef;
use serde::Serialize;
use std::fmt;

/// The kind of object a [`Warning`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ObjectKind {
    Service,
    EndpointSlice,
    Node,
    ServiceCidr,
}

/// A malformed value that the planner skipped. Names the object and the field so an operator can
/// find it with `kubectl get -o yaml`; `skipped` says what the value cost (the object, one port,
/// one address), because everything else is still planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub kind: ObjectKind,
    pub object: ObjectRef,
    /// JSON path of the field, e.g. `spec.ports[1].nodePort`.
    pub field: String,
    pub problem: String,
    pub skipped: Skipped,
}

/// What a malformed value cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Skipped {
    /// The whole object is left out of the plan.
    Object,
    /// One Service port (or one EndpointSlice port) is left out.
    Port,
    /// One address (an external IP, an ingress IP, a source range, an endpoint) is left out.
    Address,
    /// Nothing is left out; a default is used instead.
    Nothing,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cost = match self.skipped {
            Skipped::Object => "object skipped",
            Skipped::Port => "port skipped",
            Skipped::Address => "address skipped",
            Skipped::Nothing => "default used",
        };
        write!(
            f,
            "{:?} {}: {}: {} ({cost})",
            self.kind, self.object, self.field, self.problem
        )
    }
}
