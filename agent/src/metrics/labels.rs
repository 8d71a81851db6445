//! Label sets of the exported metrics (names and values as kube-proxy spells them).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use switchyard_core::IpFamily;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByFamily {
    pub ip_family: String,
}

impl ByFamily {
    pub fn of(family: IpFamily) -> Self {
        Self {
            ip_family: family.to_string(),
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByPolicy {
    pub ip_family: String,
    pub traffic_policy: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByCode {
    pub code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BySkipped {
    pub ip_family: String,
    pub kind: String,
    pub skipped: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Info {
    pub mode: String,
    pub version: &'static str,
}

/// Counters of HTTP answers by status code (`kubeproxy_proxy_healthz_total{code}`).
#[derive(Debug, Clone, Default)]
pub struct CodeCounters(pub(super) Family<ByCode, Counter>);

impl CodeCounters {
    pub fn inc(&self, code: u16) {
        self.0
            .get_or_create(&ByCode {
                code: code.to_string(),
            })
            .inc();
    }
}
