//! Where cluster objects come from: manifest files (offline) or the Kubernetes API (`kube`).
//! Both produce the same `switchyard_core::ClusterState`.

mod block_yaml;
mod convert;
mod documents;
pub mod kube;
mod manifest;

pub use manifest::Manifests;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A cheap fingerprint of a file or directory (each file's name, size and mtime), polled to
/// notice edits without an inotify dependency; polling also survives editors that replace files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(Vec<(PathBuf, u64, Option<SystemTime>)>);

impl Fingerprint {
    pub fn of(path: &Path) -> Self {
        let entry = |p: PathBuf| {
            let meta = std::fs::metadata(&p).ok();
            let len = meta.as_ref().map_or(0, |m| m.len());
            let modified = meta.and_then(|m| m.modified().ok());
            (p, len, modified)
        };
        let mut files = vec![entry(path.to_path_buf())];
        if path.is_dir() {
            if let Ok(dir) = std::fs::read_dir(path) {
                files.extend(dir.filter_map(|e| e.ok()).map(|e| entry(e.path())));
            }
        }
        files.sort();
        Self(files)
    }
}
