//! The `Dataplane` trait: what a backend implements to program a [`ProxyPlan`] into a kernel.
//!
//! # Contract for implementers
//! - One instance programs one address family ([`Dataplane::family`]); a dual-stack node runs two.
//! - [`Dataplane::render`] and [`Dataplane::apply`] must build the same operations: build a
//!   transaction object once from the plan, then either print it or send it. `render` is what
//!   `--dry-run` shows, so it must be the truth.
//! - `apply(plan, None)` is a full sync: afterwards the kernel holds exactly the plan, and
//!   nothing of an earlier state, without a window in which traffic sees no rules.
//!   `apply(plan, Some(changes))` may touch only what `changes` names; an implementation may
//!   always choose to do a full sync instead (and must when [`Changes::requires_full_sync`]).
//! - Backends remember what they committed; after any failed `apply` the next call must behave
//!   as a full sync, whatever `changes` says, and a failed apply must leave the previously
//!   committed rules in force (transactional backends) or be repaired by that next full sync.
//! - Touch only kernel objects you own; [`Dataplane::cleanup`] removes all of them and nothing else.

use crate::diff::Changes;
use crate::plan::{IpFamily, ProxyPlan};
use async_trait::async_trait;
use std::fmt;
use std::time::Duration;

/// Which kind of dataplane an implementation is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Mode {
    Iptables,
    Nftables,
    Ipvs,
    /// A third-party backend, by name.
    Other(String),
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Iptables => f.write_str("iptables"),
            Self::Nftables => f.write_str("nftables"),
            Self::Ipvs => f.write_str("ipvs"),
            Self::Other(name) => f.write_str(name),
        }
    }
}

/// What one `apply` did, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApplyStats {
    /// The sync was full (asked for, forced by an earlier failure, or chosen by the backend).
    pub full: bool,
    /// Service ports whose objects were (re)written or removed.
    pub service_ports_written: usize,
    /// Kernel operations sent (netlink messages, restore lines, genl calls).
    pub operations: usize,
    /// Wall time spent talking to the kernel.
    pub kernel_time: Duration,
    /// Service ports left out of this sync because the kernel rejected their objects (set by
    /// the caller that isolated them; backends report 0).
    pub quarantined: usize,
}

/// What [`Dataplane::check`] found: our kernel objects that differ from what the last successful
/// `apply` committed, because someone else deleted or changed them (another agent flushing
/// tables, an operator, kube-proxy's e2e "should recreate rules"). Each finding names the
/// object and how it differs, for the log line that announces the repair.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Drift {
    /// One line per differing object, e.g. `chain nat SWYD-SERVICES: missing`,
    /// `set SWYD4-VIPS: 9 entries, expected 10`.
    pub findings: Vec<String>,
}

impl Drift {
    /// Nothing differs.
    pub fn is_empty(&self) -> bool {
        self.findings.is_empty()
    }
}

impl fmt::Display for Drift {
    /// The first few findings and how many more, so one log line stays readable when a whole
    /// table was flushed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 5;
        f.write_str(
            &self
                .findings
                .iter()
                .take(SHOWN)
                .cloned()
                .collect::<Vec<_>>()
                .join("; "),
        )?;
        if self.findings.len() > SHOWN {
            write!(f, "; and {} more", self.findings.len() - SHOWN)?;
        }
        Ok(())
    }
}

/// Errors a dataplane reports. Each variant names the step that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataplaneError {
    /// The kernel or host lacks something the backend needs (module, binary, permission).
    #[error("{what} is not available: {hint}")]
    Unsupported {
        what: String,
        /// What to install or enable.
        hint: String,
    },
    /// The kernel refused an operation; names the kernel object and, when known, the service port
    /// it was built for.
    #[error("kernel rejected {object}{}: {message}", service.as_ref().map(|s| format!(" (for {s})")).unwrap_or_default())]
    KernelRejected {
        object: String,
        service: Option<String>,
        /// `errno`, when the kernel gave one.
        errno: Option<i32>,
        message: String,
    },
    /// An external tool (e.g. `iptables-restore`) failed.
    #[error("{program} failed{}: {message}", line.map(|l| format!(" at input line {l}")).unwrap_or_default())]
    ToolFailed {
        program: String,
        /// The input line it complained about, when it said.
        line: Option<usize>,
        /// The service port that line was written for, when known.
        service: Option<String>,
        message: String,
    },
    /// Talking to the kernel or a tool failed at the transport level.
    #[error("{step}")]
    Io {
        step: String,
        #[source]
        source: std::io::Error,
    },
}

impl DataplaneError {
    /// The service port (as `ServicePortName`'s text) whose objects the kernel rejected, when
    /// the backend could tell: the one to isolate so everything else can be applied.
    pub fn service_port(&self) -> Option<&str> {
        match self {
            Self::KernelRejected { service, .. } | Self::ToolFailed { service, .. } => {
                service.as_deref()
            }
            _ => None,
        }
    }

    /// Worth retrying with backoff (transient), as opposed to a missing feature that retrying
    /// cannot fix.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Unsupported { .. })
    }
}

/// A kernel dataplane. See the module docs for the contract.
#[async_trait]
pub trait Dataplane: Send {
    fn mode(&self) -> Mode;

    fn family(&self) -> IpFamily;

    /// Checks that the kernel and host support this backend; the error says precisely what is
    /// missing. Called once before the first `apply`.
    async fn probe(&mut self) -> Result<(), DataplaneError>;

    /// Programs `plan`. `changes = None` is a full sync.
    async fn apply(
        &mut self,
        plan: &ProxyPlan,
        changes: Option<&Changes>,
    ) -> Result<ApplyStats, DataplaneError>;

    /// The operations `apply` would perform, as text in the backend's native syntax (nft,
    /// iptables-restore, ipvsadm-like). Pure: reads only the backend's memory of what it committed.
    fn render(&self, plan: &ProxyPlan, changes: Option<&Changes>) -> String;

    /// Compares the kernel with what the last successful `apply` committed and reports what
    /// someone else removed or changed; read-only. The agent calls it every `--sync-period`
    /// and answers drift with a full sync, so it must be cheap when nothing changed.
    /// `Ok(None)` means "not checked": nothing committed yet, or a backend that cannot tell
    /// (the default) — such a backend is repaired only by the periodic full sync.
    async fn check(&mut self) -> Result<Option<Drift>, DataplaneError> {
        Ok(None)
    }

    /// Removes every kernel object this backend owns, and nothing else.
    async fn cleanup(&mut self) -> Result<(), DataplaneError>;
}
