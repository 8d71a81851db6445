//! One task per watched kind: kube-runtime's watcher (paged list, bookmarks, relist on
//! `410 Gone`, re-watch from the last resourceVersion when a stream ends) with backoff, feeding
//! the shared [`Store`].

use super::store::{ChangeContext, Kind, Store, Watched};
use futures_util::StreamExt as _;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt as _;
use kube::Api;
use std::sync::{Arc, Mutex};

/// The store and a change counter the sync loop waits on.
#[derive(Debug)]
pub struct Shared {
    store: Mutex<Store>,
    changes: tokio::sync::watch::Sender<u64>,
    pub change_context: ChangeContext,
}

impl Shared {
    pub fn new(change_context: ChangeContext) -> Self {
        Self {
            store: Mutex::new(Store::new()),
            changes: tokio::sync::watch::Sender::new(0),
            change_context,
        }
    }

    /// Changes the store and wakes the sync loop.
    pub fn update(&self, f: impl FnOnce(&mut Store)) {
        let received = std::time::Instant::now();
        {
            // A panic while holding the lock cannot leave a half-applied event that matters
            // more than stopping would: keep serving the last state.
            let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut store);
            store.snapshot.changed_at.get_or_insert(received);
        }
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes the store without waking the sync loop (bookkeeping that is no change of state).
    pub fn update_quiet<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut store)
    }

    /// Reads the store.
    pub fn read<T>(&self, f: impl FnOnce(&Store) -> T) -> T {
        let store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        f(&store)
    }

    /// Changes the store without waking the sync loop: for the sync loop's own bookkeeping
    /// (taking the change log), which is no new state to sync.
    pub fn read_mut<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut store)
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

/// The HTTP status of a failed initial list, if the API answered one.
fn list_status(e: &watcher::Error) -> Option<u16> {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s)) => Some(s.code),
        _ => None,
    }
}

/// Runs the watcher for `K` until its stream ends (never, in practice: errors are retried with
/// backoff). `optional`: a 404 on the initial list means the API does not serve `K`, a 403
/// that this agent may not read it (a ClusterRole from before ServiceCIDRs); either way the
/// kind then counts as listed (empty), the flags stand in for it, and the task ends — an
/// optional kind must not keep the node from ever syncing.
pub async fn run<K: Watched>(
    api: Api<K>,
    config: watcher::Config,
    shared: Arc<Shared>,
    optional: bool,
) {
    let kind = K::KIND;
    let mut stream = std::pin::pin!(watcher::watcher(api, config).default_backoff());
    // A relist, converted as objects arrive (so the API's larger objects are never held all
    // at once) and swapped in whole at InitDone. Not the kind's first list: nothing is synced
    // before every kind has completed one (`wait_listed`), so its objects go straight into
    // the store, where the sync loop can plan them while later pages are still on the way
    // (DESIGN-NOTES 243).
    let mut relist = Store::new();
    let mut first = true;
    let mut listed = 0usize;
    while let Some(item) = stream.next().await {
        match item {
            Ok(Event::Init) => {
                tracing::debug!(%kind, "listing");
                relist = Store::new();
                listed = 0;
                first = !shared.read(|s| s.is_listed(kind));
                if first {
                    // A first list that started over (an error between its pages): what the
                    // broken one delivered goes, as the swap of a relist would drop it.
                    shared.update_quiet(|store| K::clear(store));
                }
            }
            Ok(Event::InitApply(object)) => {
                if first {
                    shared.update(|store| K::upsert(store, &object));
                } else {
                    K::upsert(&mut relist, &object);
                }
                listed += 1;
            }
            Ok(Event::InitDone) => {
                tracing::info!(%kind, objects = listed, "initial list complete");
                shared.update(|store| {
                    if !first {
                        K::take(store, &mut relist);
                    }
                    store.mark_listed(kind);
                });
                relist = Store::new();
            }
            Ok(Event::Apply(object)) => {
                tracing::debug!(%kind, "applied");
                shared.update(|store| {
                    K::upsert(store, &object);
                    K::note_change(store, &object, &shared.change_context);
                });
            }
            Ok(Event::Delete(object)) => shared.update(|store| {
                K::remove(store, &object);
                K::note_change(store, &object, &shared.change_context);
            }),
            Err(e) if optional && matches!(list_status(&e), Some(403 | 404)) => {
                if list_status(&e) == Some(403) {
                    tracing::warn!(%kind, "forbidden (403): grant get/list/watch on it; using the flags instead until restart");
                } else {
                    tracing::info!(%kind, "not served by this API server (404); using the flags instead");
                }
                shared.update(|store| {
                    if kind == Kind::ServiceCidr {
                        store.snapshot.service_cidrs_served = false;
                    }
                    K::clear(store);
                    store.mark_listed(kind);
                });
                return;
            }
            Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                tracing::info!(%kind, "resourceVersion expired (410 Gone): relisting");
            }
            Err(e) => {
                // Outages, 410 Gone (the watcher relists next), dropped streams: the rules
                // in place stay until the state is known again.
                tracing::warn!(%kind, "watch: {e}; retrying with backoff, rules unchanged");
            }
        }
    }
}
