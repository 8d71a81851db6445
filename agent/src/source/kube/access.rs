//! Every Kubernetes API call the agent makes, as one table: the watchers are built through
//! [`watched_api`], which refuses (in debug builds: every test) a kind missing from it, and
//! `deploy/rbac.yaml`'s ClusterRole is tested to grant exactly this (`agent/tests/deploy.rs`).
//! Adding a watch without its permission, or a permission nothing uses, fails a test.

use k8s_openapi::api::core::v1 as core_v1;
use k8s_openapi::api::discovery::v1 as discovery_v1;
use k8s_openapi::api::events::v1 as events_v1;
use k8s_openapi::api::networking::v1 as networking_v1;

/// One resource and the verbs the agent uses on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiAccess {
    /// API group (`""` for the core group).
    pub group: &'static str,
    /// Plural resource name, as RBAC spells it.
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
    /// What the agent does with it.
    pub why: &'static str,
}

/// The verbs a kube-runtime watcher uses: an initial (paged) list, then a watch.
const WATCH: &[&str] = &["list", "watch"];

const fn access<K: k8s_openapi::Resource>(
    verbs: &'static [&'static str],
    why: &'static str,
) -> ApiAccess {
    ApiAccess {
        group: K::GROUP,
        resource: K::URL_PATH_SEGMENT,
        verbs,
        why,
    }
}

/// The agent's API calls, all of them.
pub const API_ACCESS: [ApiAccess; 5] = [
    access::<core_v1::Service>(WATCH, "Services to proxy"),
    access::<discovery_v1::EndpointSlice>(WATCH, "their endpoints"),
    access::<core_v1::Node>(WATCH, "this node's addresses, zone and pod CIDRs (by name)"),
    access::<networking_v1::ServiceCIDR>(
        WATCH,
        "service ranges whose unowned addresses are dropped",
    ),
    access::<events_v1::Event>(
        &["create", "patch"],
        "the Starting event on this Node (patch: kube-runtime's recorder counts repeats)",
    ),
];

/// Whether [`API_ACCESS`] grants `verb` on `K`.
pub fn covers<K: k8s_openapi::Resource>(verb: &str) -> bool {
    API_ACCESS.iter().any(|a| {
        a.group == K::GROUP && a.resource == K::URL_PATH_SEGMENT && a.verbs.contains(&verb)
    })
}

/// The cluster-wide API of a kind the agent watches; a kind not in [`API_ACCESS`] is a bug.
pub fn watched_api<K>(client: kube::Client) -> kube::Api<K>
where
    K: k8s_openapi::Resource + kube::Resource<DynamicType = ()>,
{
    debug_assert!(
        WATCH.iter().all(|v| covers::<K>(v)),
        "{}/{} is watched but missing from API_ACCESS",
        K::GROUP,
        K::URL_PATH_SEGMENT
    );
    kube::Api::all(client)
}
