//! The four resources the fake serves, and label/field selector matching.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Res {
    Services,
    EndpointSlices,
    Nodes,
    ServiceCidrs,
}

impl Res {
    pub fn of(object: &Value) -> Option<Res> {
        match (
            object.get("apiVersion")?.as_str()?,
            object.get("kind")?.as_str()?,
        ) {
            ("v1", "Service") => Some(Res::Services),
            ("discovery.k8s.io/v1", "EndpointSlice") => Some(Res::EndpointSlices),
            ("v1", "Node") => Some(Res::Nodes),
            ("networking.k8s.io/v1", "ServiceCIDR") => Some(Res::ServiceCidrs),
            _ => None,
        }
    }

    /// The resource of a cluster-wide collection path.
    pub fn from_path(path: &str) -> Option<Res> {
        match path {
            "/api/v1/services" => Some(Res::Services),
            "/apis/discovery.k8s.io/v1/endpointslices" => Some(Res::EndpointSlices),
            "/api/v1/nodes" => Some(Res::Nodes),
            "/apis/networking.k8s.io/v1/servicecidrs" => Some(Res::ServiceCidrs),
            _ => None,
        }
    }

    pub fn namespaced(self) -> bool {
        matches!(self, Res::Services | Res::EndpointSlices)
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Res::Services | Res::Nodes => "v1",
            Res::EndpointSlices => "discovery.k8s.io/v1",
            Res::ServiceCidrs => "networking.k8s.io/v1",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Res::Services => "Service",
            Res::EndpointSlices => "EndpointSlice",
            Res::Nodes => "Node",
            Res::ServiceCidrs => "ServiceCIDR",
        }
    }
}

/// `namespace/name`, or `name` for cluster-scoped objects.
pub fn key(object: &Value) -> String {
    let meta = &object["metadata"];
    let name = meta["name"].as_str().unwrap_or_default();
    match meta["namespace"].as_str() {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// Whether `object` matches a label selector (`a,!b,c=d,e!=f`; empty = everything).
pub fn labels_match(object: &Value, selector: &str) -> bool {
    let labels = &object["metadata"]["labels"];
    selector.split(',').filter(|s| !s.is_empty()).all(|req| {
        if let Some(key) = req.strip_prefix('!') {
            labels.get(key).is_none()
        } else if let Some((k, v)) = req.split_once("!=") {
            labels.get(k).and_then(Value::as_str) != Some(v)
        } else if let Some((k, v)) = req.split_once('=') {
            let v = v.strip_prefix('=').unwrap_or(v);
            labels.get(k).and_then(Value::as_str) == Some(v)
        } else {
            labels.get(req).is_some()
        }
    })
}

/// Whether `object` matches a field selector (`metadata.name=x,metadata.namespace=y`).
pub fn fields_match(object: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|req| {
        let (field, want, equal) = match req.split_once("!=") {
            Some((f, v)) => (f, v, false),
            None => match req.split_once('=') {
                Some((f, v)) => (f, v.strip_prefix('=').unwrap_or(v), true),
                None => return false,
            },
        };
        let pointer = format!("/{}", field.replace('.', "/"));
        let have = object
            .pointer(&pointer)
            .and_then(Value::as_str)
            .unwrap_or("");
        (have == want) == equal
    })
}
