//! An in-process fake of the Kubernetes API server: list and watch of Services,
//! EndpointSlices, Nodes and ServiceCIDRs over plain HTTP/1.1, with the real API's wire format
//! (compared with the API reference and kube-rs/client-go's expectations):
//!
//! - list: `{"kind":"ServiceList","apiVersion":"v1","metadata":{"resourceVersion":..,
//!   "continue":..},"items":[..]}` (items without kind/apiVersion, as the API serves them),
//!   `limit`/`continue` paging over a snapshot taken at the first page, `labelSelector`
//!   (`key`, `!key`, `key=value`, `key!=value`) and `fieldSelector` (`metadata.name=`,
//!   `metadata.namespace=`); a continue token older than the compaction point is
//!   `410 Gone` `{"kind":"Status","code":410,"reason":"Expired"}`.
//! - watch (`?watch=1&resourceVersion=N`): a chunked stream of JSON lines
//!   `{"type":"ADDED|MODIFIED|DELETED|BOOKMARK","object":..}` with every event after N, then
//!   live ones; `allowWatchBookmarks=true` adds a BOOKMARK each second; a resourceVersion older
//!   than the compaction point gets, as from the real API, HTTP 200 and one
//!   `{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired",..}}`.
//! - faults: [`FakeApi::set_down`] (every connection is closed at once, streams end),
//!   [`FakeApi::drop_watches`], [`FakeApi::stall_list`], [`FakeApi::stall_watches`],
//!   [`FakeApi::compact`] (forget history: the next re-watch is `410 Gone`), and ServiceCIDRs
//!   can be "not served" (404, as on an API server before v1.33).

mod http;
mod resources;

pub use resources::Res;

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// One stored event of a resource's history.
#[derive(Debug, Clone)]
struct HistoryEvent {
    rv: u64,
    res: Res,
    kind: &'static str,
    object: Value,
}

#[derive(Debug, Default)]
struct Inner {
    rv: u64,
    objects: BTreeMap<(Res, String), Value>,
    history: Vec<HistoryEvent>,
    /// Watches and continue tokens from before this resourceVersion get `410 Gone`.
    compacted: u64,
    down: bool,
    /// Bumped to end every open watch stream.
    stream_epoch: u64,
    stall_lists: BTreeSet<Res>,
    stall_watches: bool,
    service_cidrs_not_served: bool,
    /// Resources that answer 403 Forbidden (RBAC that does not cover them).
    forbidden: BTreeSet<Res>,
    /// List snapshots for paging: (resourceVersion, filtered items).
    pages: Vec<(u64, Vec<Value>)>,
    /// Every request's path and query, in order.
    requests: Vec<String>,
    /// When the last list response was written out whole.
    last_list_served: Option<std::time::SystemTime>,
}

/// The fake API server. It runs on its own thread (with its own tokio runtime), inside the
/// network namespace given to [`FakeApi::start_in_netns`], until the process ends.
#[derive(Debug, Clone)]
pub struct FakeApi {
    inner: Arc<Mutex<Inner>>,
    wake: Arc<tokio::sync::watch::Sender<u64>>,
    port: u16,
}

impl FakeApi {
    /// Starts the server on 127.0.0.1 of network namespace `netns` (`/run/netns/NAME`), or of
    /// the current one when `None`.
    pub fn start_in_netns(netns: Option<&str>) -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let wake = Arc::new(tokio::sync::watch::Sender::new(0u64));
        let (tx, rx) = std::sync::mpsc::channel();
        let netns = netns.map(|n| PathBuf::from(format!("/run/netns/{n}")));
        let (i2, w2) = (inner.clone(), wake.clone());
        std::thread::spawn(move || {
            if let Some(path) = netns {
                let f = std::fs::File::open(&path).expect("open netns");
                nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                let port = listener.local_addr().expect("addr").port();
                tx.send(port).expect("report port");
                http::serve(
                    listener,
                    FakeApi {
                        inner: i2,
                        wake: w2,
                        port,
                    },
                )
                .await;
            });
        });
        let port = rx.recv().expect("fake API server started");
        Self { inner, wake, port }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn changed(&self) {
        self.wake.send_modify(|n| *n += 1);
    }

    /// Writes a kubeconfig pointing at this server (plain HTTP, no credentials).
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:{}\n\
             users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: fake}}\n\
             current-context: fake\n",
            self.port
        );
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    /// Creates or replaces an object (ADDED or MODIFIED), giving it the next resourceVersion.
    /// Returns that resourceVersion.
    pub fn apply(&self, mut object: Value) -> u64 {
        let res = Res::of(&object).expect("a kind the fake serves");
        let key = resources::key(&object);
        let mut inner = self.lock();
        inner.rv += 1;
        let rv = inner.rv;
        let meta = object
            .as_object_mut()
            .expect("an object")
            .entry("metadata")
            .or_insert_with(|| json!({}));
        meta["resourceVersion"] = json!(rv.to_string());
        if meta.get("uid").is_none() {
            meta["uid"] = json!(format!("uid-{}", key.replace('/', "-")));
        }
        if meta.get("creationTimestamp").is_none() {
            meta["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        let kind = if inner.objects.contains_key(&(res, key.clone())) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        inner.objects.insert((res, key), object.clone());
        inner.history.push(HistoryEvent {
            rv,
            res,
            kind,
            object,
        });
        drop(inner);
        self.changed();
        rv
    }

    /// Deletes an object (DELETED, carrying its last state with a new resourceVersion).
    pub fn delete(&self, res: Res, namespace: &str, name: &str) {
        let key = if res.namespaced() {
            format!("{namespace}/{name}")
        } else {
            name.to_string()
        };
        let mut inner = self.lock();
        let Some(mut object) = inner.objects.remove(&(res, key)) else {
            return;
        };
        inner.rv += 1;
        let rv = inner.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        inner.history.push(HistoryEvent {
            rv,
            res,
            kind: "DELETED",
            object,
        });
        drop(inner);
        self.changed();
    }

    /// Outage: while down, every connection is closed as soon as it is accepted and open
    /// watch streams end.
    pub fn set_down(&self, down: bool) {
        let mut inner = self.lock();
        inner.down = down;
        inner.stream_epoch += 1;
        drop(inner);
        self.changed();
    }

    /// Ends every open watch stream (clients re-watch from their last resourceVersion).
    pub fn drop_watches(&self) {
        self.lock().stream_epoch += 1;
        self.changed();
    }

    /// Forgets the history: a watch or continue token from before now gets `410 Gone`.
    pub fn compact(&self) {
        let mut inner = self.lock();
        // A bump so that even a client that saw the newest event is too old.
        inner.rv += 1;
        inner.compacted = inner.rv;
        inner.history.clear();
        inner.pages.clear();
        drop(inner);
        self.changed();
    }

    /// Holds list requests of `res` unanswered while `on`.
    pub fn stall_list(&self, res: Res, on: bool) {
        let mut inner = self.lock();
        if on {
            inner.stall_lists.insert(res);
        } else {
            inner.stall_lists.remove(&res);
        }
        drop(inner);
        self.changed();
    }

    /// Open watch streams send nothing (no events, no bookmarks) while `on`.
    pub fn stall_watches(&self, on: bool) {
        self.lock().stall_watches = on;
        self.changed();
    }

    /// ServiceCIDRs answer 404, as from an API server that does not serve them.
    pub fn set_service_cidrs_served(&self, served: bool) {
        self.lock().service_cidrs_not_served = !served;
    }

    /// When the last list response was written out whole (for the benchmark).
    #[allow(dead_code)]
    pub fn last_list_served(&self) -> Option<std::time::SystemTime> {
        self.lock().last_list_served
    }

    /// `res` answers 403 Forbidden, as when the agent's ClusterRole does not cover it.
    #[allow(dead_code)]
    pub fn forbid(&self, res: Res) {
        self.lock().forbidden.insert(res);
    }

    /// Every request so far (path and query).
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }
}
