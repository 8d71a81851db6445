//! Cluster dumps as operators make them, for the offline source (`--manifests`): a
//! multi-document YAML file (one object per document) and `kubectl get -o json`'s `v1 List`.

use serde_json::{json, Value};
use switchyard_core::model::{ClusterState, Node, NodeAddress};

/// The offline benchmarks' fixed dump: 10k Services x 2 endpoints (kube-proxy's published
/// scale) plus this node, ~10 MB as YAML.
pub const DUMP_SCALE: (usize, usize) = (10_000, 2);

/// The node the synthetic clusters are planned for (`plan_of`'s node-a), with the address
/// NodePorts would listen on.
pub fn node_a() -> Node {
    Node {
        name: "node-a".into(),
        addresses: vec![NodeAddress {
            address_type: "InternalIP".into(),
            address: "192.168.50.1".into(),
        }],
        ..Node::default()
    }
}

/// `cluster(services, endpoints)` with [`node_a`] as its Node: what a dump of it holds.
pub fn cluster_with_node(services: usize, endpoints: usize) -> ClusterState {
    let mut state = crate::cluster(services, endpoints);
    state.node = Some(node_a());
    state
}

/// Multi-document YAML, `---` between documents, block style with keys in order (as
/// `kubectl get -o yaml` writes each object).
pub fn yaml_documents(objects: &[Value]) -> Result<String, serde_saphyr::SerializeError> {
    let mut out = String::new();
    for (i, object) in objects.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_saphyr::to_string(object)?);
    }
    Ok(out)
}

/// `kubectl get -o json` of several kinds: one `v1 List` holding every object, pretty-printed.
pub fn json_list(objects: &[Value]) -> String {
    let list = json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": objects,
        "metadata": {"resourceVersion": ""},
    });
    // A Value always serializes (string keys only).
    serde_json::to_string_pretty(&list).unwrap_or_default()
}
