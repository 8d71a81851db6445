//! `--config FILE`: a kube-proxy `KubeProxyConfiguration` (`kubeproxy.config.k8s.io/v1alpha1`,
//! YAML or JSON), so the ConfigMap an operator already has (kubeadm's `kube-proxy` ConfigMap,
//! `config.conf`) configures Switchyard unchanged.
//!
//! - [`schema`]: every field of kube-proxy's schema and what we do with it; unknown fields and
//!   set-but-ignored fields warn by full path (`iptables.localhostNodePorts`).
//! - [`file`]: reads and validates the fields we use; an invalid value stops startup naming
//!   the field.
//! - [`apply`]: the file fills in every flag that was not given on the command line (flags
//!   override the file, as with kube-proxy).

pub mod file;
pub mod schema;
#[cfg(test)]
mod tests;
pub mod values;

use crate::cli::{ModeArg, RunArgs};
use clap::parser::ValueSource;
use clap::ArgMatches;
use file::{FileConfig, SyncPeriods};
use std::path::{Path, PathBuf};

/// Why a config file was refused. Each names the file or the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not YAML (or JSON), or not a mapping at the top.
    #[error("{path}: not a YAML or JSON KubeProxyConfiguration: {message}")]
    Syntax { path: PathBuf, message: String },
    /// A field holds a value kube-proxy (or Switchyard) refuses.
    #[error("field {field}: {message}")]
    Invalid { field: String, message: String },
}

/// A loaded file: what it sets, and the warnings for what it sets that we ignore.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: FileConfig,
    pub warnings: Vec<String>,
}

/// Parses `text` (YAML or JSON; one document).
pub fn parse(path: &Path, text: &str) -> Result<Loaded, ConfigError> {
    let doc: serde_json::Value = serde_saphyr::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if !doc.is_object() {
        return Err(ConfigError::Syntax {
            path: path.to_path_buf(),
            message: "the document is not a mapping".into(),
        });
    }
    let config = file::read(&doc)?;
    let mut warnings = schema::warnings(&doc);
    if config.bind_address.is_some() {
        warnings.push(
            "bindAddress: not supported by Switchyard (node addresses come from the Node \
             object); ignored"
                .into(),
        );
    }
    Ok(Loaded { config, warnings })
}

/// Reads and parses `path`.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Whether the flag with clap id `id` was given (command line or environment), so the file
/// must not override it.
fn given(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        matches.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// Sets `slot` from the file unless flag `id` was given.
fn fill<T>(matches: &ArgMatches, id: &str, slot: &mut T, from_file: Option<T>) {
    if let Some(v) = from_file.filter(|_| !given(matches, id)) {
        *slot = v;
    }
}

/// Fills `args` from the file where the matching flag was not given. `matches` are the
/// command line's (clap ids are the `RunArgs` field names).
///
/// Precedence for the sync periods, as kube-proxy's v1alpha1 conversion: the section of the
/// mode that runs (`nftables:` for nftables, `ipvs:` for IPVS, `iptables:` otherwise), then the
/// top level (v1alpha2's spelling, for files written for it), then our defaults; a zero value
/// (`0s`, what kubeadm writes) is unset. `masqueradeAll` comes from `nftables:` in nftables
/// mode and from `iptables:` otherwise (kube-proxy's IPVS mode reads it there too).
pub fn apply(file: &FileConfig, matches: &ArgMatches, args: &mut RunArgs) {
    fill(matches, "mode", &mut args.mode, file.mode);
    let (sync, masquerade_all) = match args.mode {
        ModeArg::Nftables => (file.nftables_sync, file.nftables_masquerade_all),
        ModeArg::Ipvs => (file.ipvs_sync, file.iptables_masquerade_all),
        ModeArg::Iptables => (file.iptables_sync, file.iptables_masquerade_all),
    };
    let sync = SyncPeriods {
        sync: sync.sync.or(file.top_sync.sync),
        min_sync: sync.min_sync.or(file.top_sync.min_sync),
    };
    fill(matches, "sync_period", &mut args.sync_period, sync.sync);
    fill(
        matches,
        "min_sync_period",
        &mut args.min_sync_period,
        sync.min_sync,
    );
    let node = &mut args.node;
    fill(
        matches,
        "kubeconfig",
        &mut node.kubeconfig,
        file.kubeconfig.clone().map(Some),
    );
    fill(
        matches,
        "hostname_override",
        &mut node.hostname_override,
        file.hostname_override.clone().map(Some),
    );
    fill(
        matches,
        "cluster_cidr",
        &mut node.cluster_cidr,
        file.cluster_cidrs.clone(),
    );
    fill(
        matches,
        "nodeport_addresses",
        &mut node.nodeport_addresses,
        file.node_port_addresses.clone(),
    );
    fill(
        matches,
        "masquerade_all",
        &mut node.masquerade_all,
        masquerade_all,
    );
    fill(
        matches,
        "detect_local_mode",
        &mut node.detect_local_mode,
        file.detect_local_mode,
    );
    fill(
        matches,
        "pod_bridge_interface",
        &mut node.pod_bridge_interface,
        file.bridge_interface.clone().map(Some),
    );
    fill(
        matches,
        "pod_interface_name_prefix",
        &mut node.pod_interface_name_prefix,
        file.interface_name_prefix.clone().map(Some),
    );
    let ipvs = &mut args.ipvs;
    fill(
        matches,
        "scheduler",
        &mut ipvs.scheduler,
        file.ipvs.scheduler,
    );
    fill(
        matches,
        "strict_arp",
        &mut ipvs.strict_arp,
        file.ipvs.strict_arp,
    );
    fill(
        matches,
        "tcp_timeout",
        &mut ipvs.tcp_timeout,
        file.ipvs.tcp_timeout,
    );
    fill(
        matches,
        "tcp_fin_timeout",
        &mut ipvs.tcp_fin_timeout,
        file.ipvs.tcp_fin_timeout,
    );
    fill(
        matches,
        "udp_timeout",
        &mut ipvs.udp_timeout,
        file.ipvs.udp_timeout,
    );
    fill(
        matches,
        "exclude_cidrs",
        &mut ipvs.exclude_cidrs,
        file.ipvs.exclude_cidrs.clone(),
    );
    // healthzBindAddress / metricsBindAddress: validated by `file::read` (kube-proxy's default
    // ports appended to a bare IP).
    fill(
        matches,
        "healthz_bind_address",
        &mut args.healthz_bind_address,
        file.healthz_bind_address
            .map(|a| crate::ops::BindAddress(Some(a))),
    );
    fill(
        matches,
        "metrics_bind_address",
        &mut args.metrics_bind_address,
        file.metrics_bind_address
            .map(|a| crate::ops::BindAddress(Some(a))),
    );
}

/// Loads `--config` (if given), logs its warnings and fills `args` from it. Startup stops on
/// an unreadable file or an invalid field.
pub fn load_into(matches: &ArgMatches, args: &mut RunArgs) -> Result<(), ConfigError> {
    let Some(path) = args.config.clone() else {
        return Ok(());
    };
    let loaded = load(&path)?;
    for w in &loaded.warnings {
        tracing::warn!(file = %path.display(), "{w}");
    }
    apply(&loaded.config, matches, args);
    Ok(())
}
