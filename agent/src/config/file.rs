//! Reading the fields Switchyard uses out of a KubeProxyConfiguration document, validated, each
//! error naming its field. Unset (zero) values read as `None`, as kube-proxy's defaulting
//! treats them.

use super::values;
use super::ConfigError;
use crate::cli::{DetectLocalMode, ModeArg};
use crate::ipvs_args::IpvsScheduler;
use ipnet::IpNet;
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;
use switchyard_core::NodePortAddresses;

/// `apiVersion` this reader understands.
pub const API_VERSION: &str = "kubeproxy.config.k8s.io/v1alpha1";
/// kube-proxy's default ports, appended to a bare IP in the bind addresses.
pub const HEALTHZ_PORT: u16 = 10256;
pub const METRICS_PORT: u16 = 10249;

/// `syncPeriod` and `minSyncPeriod` of one section.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncPeriods {
    pub sync: Option<Duration>,
    pub min_sync: Option<Duration>,
}

/// The `ipvs:` section's fields other than the sync periods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpvsFields {
    pub scheduler: Option<IpvsScheduler>,
    pub strict_arp: Option<bool>,
    pub tcp_timeout: Option<Duration>,
    pub tcp_fin_timeout: Option<Duration>,
    pub udp_timeout: Option<Duration>,
    pub exclude_cidrs: Option<Vec<IpNet>>,
}

/// `conntrack:`, validated as kube-proxy does (so a file kube-proxy refuses is refused here
/// too) but not applied: see the schema's reasons.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConntrackFields {
    pub max_per_core: Option<i64>,
    pub min: Option<i64>,
    pub tcp_established_timeout: Option<Duration>,
    pub tcp_close_wait_timeout: Option<Duration>,
    pub tcp_be_liberal: Option<bool>,
    pub udp_timeout: Option<Duration>,
    pub udp_stream_timeout: Option<Duration>,
}

/// What a KubeProxyConfiguration sets. `None`: unset (kube-proxy would default it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileConfig {
    pub mode: Option<ModeArg>,
    pub kubeconfig: Option<PathBuf>,
    pub hostname_override: Option<String>,
    /// `bindAddress` when it names an address (not `0.0.0.0`/`::`).
    pub bind_address: Option<IpAddr>,
    pub healthz_bind_address: Option<SocketAddr>,
    pub metrics_bind_address: Option<SocketAddr>,
    pub cluster_cidrs: Option<Vec<IpNet>>,
    pub node_port_addresses: Option<NodePortAddresses>,
    pub iptables_masquerade_all: Option<bool>,
    pub nftables_masquerade_all: Option<bool>,
    /// The top level (v1alpha2's spelling) and each mode's section.
    pub top_sync: SyncPeriods,
    pub iptables_sync: SyncPeriods,
    pub nftables_sync: SyncPeriods,
    pub ipvs_sync: SyncPeriods,
    pub detect_local_mode: Option<DetectLocalMode>,
    pub bridge_interface: Option<String>,
    pub interface_name_prefix: Option<String>,
    pub ipvs: IpvsFields,
    pub conntrack: ConntrackFields,
}

/// A field of the document by dotted path, with its errors named after it.
struct Doc<'a>(&'a Value);

impl Doc<'_> {
    fn get(&self, path: &str) -> Option<&Value> {
        let v = path
            .split('.')
            .try_fold(self.0, |v, key| v.as_object()?.get(key))?;
        (!v.is_null()).then_some(v)
    }

    fn invalid(path: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            field: path.to_string(),
            message: message.into(),
        }
    }

    /// A string field; `None` when absent, null or empty.
    fn string(&self, path: &str) -> Result<Option<&str>, ConfigError> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(Self::invalid(path, format!("want a string, got {other}"))),
        }
    }

    fn parsed<T>(
        &self,
        path: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        self.string(path)?
            .map(|s| parse(s).map_err(|e| Self::invalid(path, e)))
            .transpose()
    }

    fn bool(&self, path: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(Self::invalid(
                path,
                format!("want true or false, got {other}"),
            )),
        }
    }

    /// A Go duration; zero reads as unset.
    fn duration(&self, path: &str) -> Result<Option<Duration>, ConfigError> {
        Ok(self
            .parsed(path, values::go_duration)?
            .filter(|d| !d.is_zero()))
    }

    /// A non-negative 32-bit integer; zero reads as set (`maxPerCore: 0` means "leave it").
    fn count(&self, path: &str) -> Result<Option<i64>, ConfigError> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) if (0..=i64::from(i32::MAX)).contains(&i) => Ok(Some(i)),
                _ => Err(Self::invalid(path, format!("{n}: want 0 to {}", i32::MAX))),
            },
            Some(other) => Err(Self::invalid(path, format!("want a number, got {other}"))),
        }
    }

    /// A list of strings; `None` when absent, null or empty.
    fn strings(&self, path: &str) -> Result<Option<Vec<&str>>, ConfigError> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::Array(a)) if a.is_empty() => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str()
                        .ok_or_else(|| Self::invalid(&format!("{path}[{i}]"), "want a string"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(Self::invalid(path, format!("want a list, got {other}"))),
        }
    }

    fn sync_periods(&self, section: &str) -> Result<SyncPeriods, ConfigError> {
        let path = |f: &str| {
            if section.is_empty() {
                f.to_string()
            } else {
                format!("{section}.{f}")
            }
        };
        Ok(SyncPeriods {
            sync: self.duration(&path("syncPeriod"))?,
            min_sync: self.duration(&path("minSyncPeriod"))?,
        })
    }
}

/// A clap value name (`nftables`, `NodeCIDR`, `rr`) of `T`.
fn enum_value<T: clap::ValueEnum>(s: &str) -> Result<T, String> {
    T::from_str(s, false).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_string()))
            .collect();
        format!("{s:?}: want one of {}", names.join(", "))
    })
}

/// kube-proxy's `nodePortAddresses`: `primary`, `all`, CIDRs. `localhost` is refused (NodePorts
/// are never served on loopback here), and `primary` cannot be mixed with CIDRs (Switchyard's
/// `--nodeport-addresses` takes one or the other).
fn node_port_addresses(list: &[&str]) -> Result<NodePortAddresses, String> {
    match list {
        ["primary"] => return Ok(NodePortAddresses::Primary),
        ["all"] => return Ok(NodePortAddresses::All),
        _ => {}
    }
    let mut cidrs = Vec::new();
    for item in list {
        match *item {
            "all" => cidrs.extend(values::cidr_list("0.0.0.0/0,::/0")?),
            "primary" => return Err("'primary' cannot be combined with other entries".into()),
            "localhost" => return Err("'localhost': NodePorts are never served on loopback".into()),
            cidr => cidrs.extend(values::cidr_list(cidr)?),
        }
    }
    Ok(NodePortAddresses::Cidrs(cidrs))
}

/// Reads and validates every field Switchyard uses (and `conntrack.*`).
pub fn read(doc: &Value) -> Result<FileConfig, ConfigError> {
    let d = Doc(doc);
    match d.string("apiVersion")? {
        Some(API_VERSION) => {}
        other => {
            return Err(Doc::invalid(
                "apiVersion",
                format!("{other:?}: want {API_VERSION:?}"),
            ))
        }
    }
    match d.string("kind")? {
        Some("KubeProxyConfiguration") => {}
        other => {
            return Err(Doc::invalid(
                "kind",
                format!("{other:?}: want \"KubeProxyConfiguration\""),
            ))
        }
    }
    let bind_address = d
        .parsed("bindAddress", |s| {
            s.parse::<IpAddr>().map_err(|e| format!("{s:?}: {e}"))
        })?
        .filter(|ip| !ip.is_unspecified());
    Ok(FileConfig {
        mode: d.parsed("mode", enum_value::<ModeArg>)?,
        kubeconfig: d.string("clientConnection.kubeconfig")?.map(PathBuf::from),
        hostname_override: d.string("hostnameOverride")?.map(str::to_string),
        bind_address,
        healthz_bind_address: d
            .parsed("healthzBindAddress", |s| {
                values::bind_address(s, HEALTHZ_PORT)
            })?
            .flatten(),
        metrics_bind_address: d
            .parsed("metricsBindAddress", |s| {
                values::bind_address(s, METRICS_PORT)
            })?
            .flatten(),
        cluster_cidrs: d.parsed("clusterCIDR", values::cidr_list)?,
        node_port_addresses: d
            .strings("nodePortAddresses")?
            .map(|l| node_port_addresses(&l))
            .transpose()
            .map_err(|e| Doc::invalid("nodePortAddresses", e))?,
        iptables_masquerade_all: d.bool("iptables.masqueradeAll")?,
        nftables_masquerade_all: d.bool("nftables.masqueradeAll")?,
        top_sync: d.sync_periods("")?,
        iptables_sync: d.sync_periods("iptables")?,
        nftables_sync: d.sync_periods("nftables")?,
        ipvs_sync: d.sync_periods("ipvs")?,
        detect_local_mode: d.parsed("detectLocalMode", enum_value::<DetectLocalMode>)?,
        bridge_interface: d.parsed("detectLocal.bridgeInterface", values::interface_name)?,
        interface_name_prefix: d
            .parsed("detectLocal.interfaceNamePrefix", values::interface_name)?,
        ipvs: IpvsFields {
            scheduler: d.parsed("ipvs.scheduler", enum_value::<IpvsScheduler>)?,
            strict_arp: d.bool("ipvs.strictARP")?,
            tcp_timeout: d.duration("ipvs.tcpTimeout")?,
            tcp_fin_timeout: d.duration("ipvs.tcpFinTimeout")?,
            udp_timeout: d.duration("ipvs.udpTimeout")?,
            exclude_cidrs: d
                .strings("ipvs.excludeCIDRs")?
                .map(|l| values::cidr_list(&l.join(",")))
                .transpose()
                .map_err(|e| Doc::invalid("ipvs.excludeCIDRs", e))?,
        },
        conntrack: ConntrackFields {
            max_per_core: d.count("conntrack.maxPerCore")?,
            min: d.count("conntrack.min")?,
            tcp_established_timeout: d.duration("conntrack.tcpEstablishedTimeout")?,
            tcp_close_wait_timeout: d.duration("conntrack.tcpCloseWaitTimeout")?,
            tcp_be_liberal: d.bool("conntrack.tcpBeLiberal")?,
            udp_timeout: d.duration("conntrack.udpTimeout")?,
            udp_stream_timeout: d.duration("conntrack.udpStreamTimeout")?,
        },
    })
}
