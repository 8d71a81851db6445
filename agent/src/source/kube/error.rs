//! What can go wrong in the Kubernetes API source, named after the step that failed.
//!
//! Only setting up the client is fatal: once watchers run, every list/watch failure is logged
//! and retried with backoff (an API outage must never cost the node its rules).

/// The Kubernetes API source failed to start.
#[derive(Debug, thiserror::Error)]
pub enum KubeSourceError {
    /// `--kubeconfig PATH` could not be read or parsed.
    #[error("reading kubeconfig {path}")]
    ReadKubeconfig {
        path: std::path::PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// The kubeconfig was read but names no usable cluster/user/context.
    #[error("loading kubeconfig {path}")]
    LoadKubeconfig {
        path: std::path::PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// Neither `--kubeconfig` nor `--master` was given and this is not a pod with a service
    /// account (KUBERNETES_SERVICE_HOST/PORT and the token).
    #[error("loading the in-cluster config (pass --kubeconfig or --master outside a pod)")]
    InCluster {
        #[source]
        source: kube::config::InClusterError,
    },
    /// `--master` is not a URL.
    #[error("--master {url:?} is not a URL: {message}")]
    MasterUrl { url: String, message: String },
    /// Building the HTTP client (TLS roots, client certificates) failed.
    #[error("building the Kubernetes client")]
    Client {
        #[source]
        source: kube::Error,
    },
}

pub type Result<T, E = KubeSourceError> = std::result::Result<T, E>;
