//! The offline source: Kubernetes objects from multi-document YAML files or JSON dumps
//! (`kubectl get -o json`: a `v1 List`).
//!
//! Accepts `v1` Service, Endpoints, Node and List, `discovery.k8s.io/v1` EndpointSlice and
//! `networking.k8s.io/v1` ServiceCIDR. Text becomes documents in `documents.rs` (format
//! detection, YAML documents parsed on every core); each document is then read into its
//! `k8s-openapi` type and converted by `convert.rs`, the same conversion the API source uses.
//! Anything else is an error that names the file and the document, and nothing is applied:
//! a manifest that is half understood must not become half the rules.

use super::{convert, documents};
use k8s_openapi::api::core::v1 as core_v1;
use k8s_openapi::api::discovery::v1 as discovery_v1;
use k8s_openapi::api::networking::v1 as networking_v1;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use switchyard_core::model::{EndpointSlice, Node, ObjectRef, Service, ServiceCidr};
use switchyard_core::ClusterState;

/// Namespace of objects that name none, as `kubectl apply` would use.
const DEFAULT_NAMESPACE: &str = "default";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not valid YAML or JSON; the message names the format and the line.
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: document {index}: {message}")]
    Document {
        path: PathBuf,
        /// 1-based, counting non-empty documents.
        index: usize,
        message: String,
    },
    #[error("{path}: no manifest files (*.yaml, *.yml, *.json) in this directory")]
    Empty { path: PathBuf },
}

/// YAML parser limits. serde-saphyr's defaults guard against hostile input (1,024 documents,
/// 250k nodes); a manifest of a whole cluster is trusted operator input and legitimately has
/// tens of thousands of documents, so the limits are raised, not removed.
fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_documents = 1_000_000;
    budget.max_nodes = 50_000_000;
    budget.max_events = 200_000_000;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

/// Everything read from the manifests.
#[derive(Debug, Default, Clone)]
pub struct Manifests {
    pub services: Vec<Service>,
    pub endpoint_slices: Vec<EndpointSlice>,
    /// Slices mirrored from v1 Endpoints; used only for Services that have no real slice.
    pub mirrored_slices: Vec<EndpointSlice>,
    pub nodes: Vec<Node>,
    pub service_cidrs: Vec<ServiceCidr>,
}

impl Manifests {
    /// Reads a file, or every `*.yaml`/`*.yml`/`*.json` file of a directory in name order.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let read_err = |source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut out = Manifests::default();
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(read_err)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
                })
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(ManifestError::Empty {
                    path: path.to_path_buf(),
                });
            }
            for file in files {
                out.add_file(&file)?;
            }
        } else {
            out.add_file(path)?;
        }
        Ok(out)
    }

    fn add_file(&mut self, path: &Path) -> Result<(), ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        self.add_text(path, &text)
    }

    /// Parses YAML or JSON text; `path` names it in errors.
    pub fn add_text(&mut self, path: &Path, text: &str) -> Result<(), ManifestError> {
        let docs = documents::parse(text, yaml_options).map_err(|e| ManifestError::Syntax {
            path: path.to_path_buf(),
            message: e.0,
        })?;
        for (i, doc) in docs.into_iter().enumerate() {
            self.add_object(doc)
                .map_err(|message| ManifestError::Document {
                    path: path.to_path_buf(),
                    index: i + 1,
                    message,
                })?;
        }
        Ok(())
    }

    fn add_object(&mut self, doc: Value) -> Result<(), String> {
        let api_version = doc
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let kind = doc
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("<unnamed>")
            .to_string();
        let what = format!("{kind} {name:?}");
        let parse_err = |e: serde_json::Error| format!("{what}: {e}");
        match (api_version.as_str(), kind.as_str()) {
            ("v1", "Service") => {
                let s: core_v1::Service = serde_json::from_value(doc).map_err(parse_err)?;
                self.services.push(convert::service(&s, DEFAULT_NAMESPACE));
            }
            ("discovery.k8s.io/v1", "EndpointSlice") => {
                let s: discovery_v1::EndpointSlice = serde_json::from_value(doc).map_err(parse_err)?;
                self.endpoint_slices.push(convert::endpoint_slice(&s, DEFAULT_NAMESPACE));
            }
            ("v1", "Endpoints") => {
                let e: core_v1::Endpoints = serde_json::from_value(doc).map_err(parse_err)?;
                self.mirrored_slices.extend(convert::mirror_endpoints(&e, DEFAULT_NAMESPACE));
            }
            ("v1", "Node") => {
                let n: core_v1::Node = serde_json::from_value(doc).map_err(parse_err)?;
                self.nodes.push(convert::node(&n));
            }
            ("networking.k8s.io/v1", "ServiceCIDR") => {
                let c: networking_v1::ServiceCIDR =
                    serde_json::from_value(doc).map_err(parse_err)?;
                self.service_cidrs.push(convert::service_cidr(&c));
            }
            ("v1", "List") => {
                let items = match doc {
                    Value::Object(mut list) => match list.remove("items") {
                        Some(Value::Array(items)) => items,
                        _ => Vec::new(),
                    },
                    _ => Vec::new(),
                };
                for (j, item) in items.into_iter().enumerate() {
                    self.add_object(item).map_err(|m| format!("List item {j}: {m}"))?;
                }
            }
            ("", _) | (_, "") => return Err("missing apiVersion or kind".into()),
            _ => {
                return Err(format!(
                    "unsupported kind {kind} ({api_version}); expected v1 Service, Endpoints, Node or List, \
                     discovery.k8s.io/v1 EndpointSlice or networking.k8s.io/v1 ServiceCIDR"
                ))
            }
        }
        Ok(())
    }

    /// The node name to plan for when none was given: the only Node in the manifests, if there
    /// is exactly one.
    pub fn single_node_name(&self) -> Option<&str> {
        match self.nodes.as_slice() {
            [only] => Some(only.name.as_str()),
            _ => None,
        }
    }

    /// The cluster state as seen by node `node_name`. Mirrored Endpoints are used only for
    /// Services without any EndpointSlice, as the mirroring controller would have produced
    /// nothing for them otherwise.
    pub fn to_state(&self, node_name: &str) -> ClusterState {
        let mut state = ClusterState {
            node: self.nodes.iter().find(|n| n.name == node_name).cloned(),
            ..ClusterState::default()
        };
        for s in &self.services {
            state.upsert_service(s.clone());
        }
        for c in &self.service_cidrs {
            state.upsert_service_cidr(c.clone());
        }
        let sliced: BTreeSet<ObjectRef> = self
            .endpoint_slices
            .iter()
            .filter_map(|s| Some(ObjectRef::new(s.meta.namespace.clone(), s.service_name()?)))
            .collect();
        for s in &self.endpoint_slices {
            state.upsert_endpoint_slice(s.clone());
        }
        for s in &self.mirrored_slices {
            let owner = ObjectRef::new(
                s.meta.namespace.clone(),
                s.service_name().unwrap_or_default(),
            );
            if !sliced.contains(&owner) {
                state.upsert_endpoint_slice(s.clone());
            }
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Manifests {
        let mut m = Manifests::default();
        m.add_text(Path::new("test.yaml"), text)
            .expect("valid manifest");
        m
    }

    const ENDPOINTS: &str = "apiVersion: v1\nkind: Endpoints\nmetadata: {name: db, namespace: ns}\n\
subsets:\n- addresses: [{ip: 10.0.0.1, nodeName: n1}, {ip: 'fd00::1'}]\n  notReadyAddresses: [{ip: 10.0.0.2}]\n  ports: [{name: pg, port: 5432}]\n";

    #[test]
    fn endpoints_are_mirrored_per_family_with_ready_flags() {
        let m = load(ENDPOINTS);
        let state = m.to_state("n1");
        let slices: Vec<_> = state.endpoint_slices.values().collect();
        assert_eq!(slices.len(), 2, "{slices:#?}");
        let v4 = slices
            .iter()
            .find(|s| s.address_type == "IPv4")
            .expect("v4 slice");
        assert_eq!(v4.service_name(), Some("db"));
        let ready: Vec<_> = v4
            .endpoints
            .iter()
            .map(|e| (e.addresses[0].as_str(), e.conditions.ready))
            .collect();
        assert_eq!(ready, [("10.0.0.1", Some(true)), ("10.0.0.2", Some(false))]);
        assert_eq!(v4.ports[0].port, Some(5432));
        assert_eq!(v4.endpoints[0].node_name.as_deref(), Some("n1"));
    }

    #[test]
    fn real_slices_win_over_mirrored_endpoints() {
        let slice = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: db-1, namespace: ns, labels: {kubernetes.io/service-name: db}}\naddressType: IPv4\nendpoints: []\n";
        let m = load(&format!("{ENDPOINTS}---\n{slice}"));
        let state = m.to_state("n1");
        assert_eq!(state.endpoint_slices.len(), 1);
        assert!(state.endpoint_slices.keys().all(|k| k.name == "db-1"));
    }

    #[test]
    fn service_cidrs_reach_the_plan() {
        let m = load("apiVersion: networking.k8s.io/v1\nkind: ServiceCIDR\nmetadata: {name: kubernetes}\nspec: {cidrs: [10.96.0.0/12, 'fd00:96::/108']}\n");
        let state = m.to_state("n1");
        let config = switchyard_core::ProxyConfig::new(switchyard_core::IpFamily::V6, "n1");
        let plan = switchyard_core::plan(&state, &config);
        assert_eq!(
            plan.service_cidrs,
            vec!["fd00:96::/108".parse().expect("cidr")]
        );
    }

    #[test]
    fn lists_and_default_namespace() {
        let m = load("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: a}\n  spec: {clusterIP: 10.96.0.1}\n");
        assert_eq!(m.services.len(), 1);
        assert_eq!(m.services[0].meta.namespace, "default");
        assert_eq!(m.services[0].cluster_ips, ["10.96.0.1"]);
    }

    #[test]
    fn object_that_does_not_match_its_schema_is_an_error() {
        let mut m = Manifests::default();
        let err = m
            .add_text(Path::new("x.yaml"), "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: eighty}]}\n")
            .expect_err("port must be a number");
        let text = err.to_string();
        assert!(
            text.starts_with("x.yaml: document 1: Service \"a\":"),
            "{text}"
        );
    }
}
