//! Building the API client the way kube-proxy does: `--kubeconfig` if given, else the
//! in-cluster service account; `--master` overrides the server URL of either (or stands alone,
//! for an unauthenticated local API such as the tests' fake server).

use super::error::{KubeSourceError, Result};
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use std::path::Path;

/// A client for `kubeconfig` / `master`, or the in-cluster config when neither is given.
pub async fn client(kubeconfig: Option<&Path>, master: Option<&str>) -> Result<kube::Client> {
    let mut config = match (kubeconfig, master) {
        (Some(path), _) => {
            let file =
                Kubeconfig::read_from(path).map_err(|source| KubeSourceError::ReadKubeconfig {
                    path: path.to_path_buf(),
                    source,
                })?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|source| KubeSourceError::LoadKubeconfig {
                    path: path.to_path_buf(),
                    source,
                })?
        }
        (None, Some(url)) => Config::new(parse_url(url)?),
        (None, None) => {
            Config::incluster().map_err(|source| KubeSourceError::InCluster { source })?
        }
    };
    if let Some(url) = master {
        config.cluster_url = parse_url(url)?;
    }
    tracing::info!(server = %config.cluster_url, "Kubernetes API client");
    kube::Client::try_from(config).map_err(|source| KubeSourceError::Client { source })
}

fn parse_url<T: std::str::FromStr>(url: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    url.parse().map_err(|e: T::Err| KubeSourceError::MasterUrl {
        url: url.to_string(),
        message: e.to_string(),
    })
}
