//! Conntrack cleanup, in-process over ctnetlink: executes the stale-flow rules that
//! `switchyard_core::conntrack::stale_flows` decides after each committed sync.
//!
//! Per sync and family: one kernel-filtered dump per protocol that has rules (UDP, SCTP), the
//! entries matched here against the rules, and one acknowledged delete per stale entry, at
//! most [`MAX_DELETES_PER_SYNC`]. What is left — the budget ran out, a dump or a delete failed —
//! is carried to the next sync, where core decides those rules again against the plan of that
//! sync. Failures are logged and counted in [`ConntrackStats`], never fatal: the rules are
//! committed already, and a stale entry only costs a client its flow until the next try.
//!
//! The agent's sync loop and the conformance runner both call [`Cleaner::run`], so the
//! scenarios test this very code.

pub mod netlink;
mod socket;

use netlink_packet_core::DecodeError;
use socket::{CtSocket, ENOENT};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use switchyard_core::conntrack::Scope;
use switchyard_core::plan::ServiceKey;
use switchyard_core::{stale_flows, Changes, FlowCleanup, IpFamily, ProxyPlan};

/// Deletes one sync may issue per family. A delete costs the kernel a hash lookup and us a
/// round trip (~10-20 us), so 2000 bound a sync's extra time to tens of milliseconds even when
/// a busy DNS Service loses all its endpoints; the rest follows at the next sync.
pub const MAX_DELETES_PER_SYNC: usize = 2000;

/// What went wrong talking ctnetlink; each variant names the step.
#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    /// No ctnetlink socket (no CAP_NET_ADMIN, or no conntrack in the kernel).
    #[error("opening the ctnetlink socket: {0}")]
    Open(#[source] io::Error),
    #[error("conntrack {step}: {source}")]
    Io {
        step: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("conntrack {step}: the kernel answered: {}", io::Error::from_raw_os_error(*.errno))]
    Kernel { step: &'static str, errno: i32 },
    #[error("conntrack {step}: undecodable answer: {source}")]
    Decode {
        step: &'static str,
        #[source]
        source: DecodeError,
    },
}

/// What one cleanup did, for logs and metrics (one per family and sync).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConntrackStats {
    pub family: IpFamily,
    /// Stale-flow rules (kernel keys of UDP/SCTP service ports) this sync worked on.
    pub rules: usize,
    /// Entries the dumps returned.
    pub scanned: usize,
    /// Dumps the kernel would not filter by protocol (`CTA_FILTER`, 5.9+): the family's whole
    /// table was read instead.
    pub unfiltered_dumps: usize,
    /// Stale entries deleted.
    pub deleted: usize,
    /// Stale entries already gone when deleted (expired, or replaced since the dump).
    pub vanished: usize,
    /// Failed dumps and deletes (logged); their rules are carried.
    pub failed: usize,
    /// Rules carried to the next sync (budget exhausted, or a failure).
    pub carried: usize,
    pub elapsed: Duration,
}

/// One family's conntrack cleanup, with the rules it still owes.
#[derive(Debug)]
pub struct Cleaner {
    family: IpFamily,
    /// Opened on first use, in the network namespace of the calling thread.
    socket: Option<CtSocket>,
    carried: Vec<FlowCleanup>,
    budget: usize,
}

impl Cleaner {
    pub fn new(family: IpFamily) -> Self {
        Self::with_budget(family, MAX_DELETES_PER_SYNC)
    }

    /// A cleaner deleting at most `budget` entries per run (tests of the carry-over).
    pub fn with_budget(family: IpFamily, budget: usize) -> Self {
        Self {
            family,
            socket: None,
            carried: Vec::new(),
            budget,
        }
    }

    /// Rules an earlier run did not finish: pass them to `stale_flows` with the next plan.
    pub fn carried(&self) -> &[FlowCleanup] {
        &self.carried
    }

    /// The cleanup after `new` was committed: core decides which flows are stale — of the
    /// service ports `changes` names between `old` (the plan committed before) and `new`, or of
    /// every UDP/SCTP port when `old` or `changes` is unknown (first sync, after a failure) —
    /// plus the rules carried from earlier runs; this executes them.
    pub fn after_commit(
        &mut self,
        old: Option<&ProxyPlan>,
        changes: Option<&Changes>,
        new: &ProxyPlan,
    ) -> ConntrackStats {
        let scope = match (old, changes) {
            (Some(old), Some(changes)) => Scope::Changed { old, changes },
            _ => Scope::Everything,
        };
        let rules = stale_flows(scope, new, &self.carried);
        self.run(rules)
    }

    /// Deletes the entries these rules call stale (rules of other families are ignored).
    /// Replaces the carried rules with those this run did not finish.
    pub fn run(&mut self, rules: Vec<FlowCleanup>) -> ConntrackStats {
        let started = Instant::now();
        let mut stats = ConntrackStats {
            family: self.family,
            rules: 0,
            scanned: 0,
            unfiltered_dumps: 0,
            deleted: 0,
            vanished: 0,
            failed: 0,
            carried: 0,
            elapsed: Duration::ZERO,
        };
        self.carried.clear();
        let mut by_protocol: BTreeMap<u8, Vec<FlowCleanup>> = BTreeMap::new();
        for r in rules.into_iter().filter(|r| r.family == self.family) {
            by_protocol
                .entry(r.protocol().number())
                .or_default()
                .push(r);
        }
        stats.rules = by_protocol.values().map(Vec::len).sum();
        for (protocol, group) in by_protocol {
            if stats.deleted + stats.vanished >= self.budget {
                self.carried.extend(group);
                continue;
            }
            let unfinished = match self.clean_protocol(protocol, &group, &mut stats) {
                Ok(unfinished) => unfinished,
                Err(e) => {
                    stats.failed += 1;
                    // A timed-out or overrun dump leaves the socket mid-answer: start afresh.
                    self.socket = None;
                    tracing::warn!(family = %self.family, protocol, "conntrack cleanup: {e}; retrying at the next sync");
                    (0..group.len()).collect()
                }
            };
            self.carried.extend(
                group
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| unfinished.contains(i))
                    .map(|(_, r)| r),
            );
        }
        stats.carried = self.carried.len();
        stats.elapsed = started.elapsed();
        if stats.deleted + stats.failed + stats.carried > 0 {
            tracing::info!(
                family = %self.family,
                rules = stats.rules,
                scanned = stats.scanned,
                deleted = stats.deleted,
                vanished = stats.vanished,
                failed = stats.failed,
                carried = stats.carried,
                ms = stats.elapsed.as_secs_f64() * 1000.0,
                "conntrack cleanup"
            );
        }
        stats
    }

    /// One protocol's dump and deletes. Returns the indexes of the rules left unfinished.
    fn clean_protocol(
        &mut self,
        protocol: u8,
        rules: &[FlowCleanup],
        stats: &mut ConntrackStats,
    ) -> Result<BTreeSet<usize>, ConntrackError> {
        let socket = match &mut self.socket {
            Some(s) => s,
            None => self.socket.insert(CtSocket::open()?),
        };
        let (flows, filtered) = socket.dump(self.family, protocol)?;
        stats.scanned += flows.len();
        stats.unfiltered_dumps += usize::from(!filtered);
        let index = RuleIndex::new(rules);
        let mut unfinished = BTreeSet::new();
        let mut first_error = None;
        for flow in flows {
            let Some(i) = index.stale(&flow) else {
                continue;
            };
            if stats.deleted + stats.vanished >= self.budget {
                unfinished.insert(i);
                continue;
            }
            match socket.delete(self.family, &flow) {
                Ok(()) => stats.deleted += 1,
                Err(ConntrackError::Kernel { errno: ENOENT, .. }) => stats.vanished += 1,
                Err(e) => {
                    stats.failed += 1;
                    unfinished.insert(i);
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            tracing::warn!(family = %self.family, protocol, "conntrack cleanup: {e} (first of {} failures); retrying at the next sync", stats.failed);
        }
        Ok(unfinished)
    }
}

/// The rules of one protocol by what they match on: an exact destination first, then a port
/// on any address.
struct RuleIndex<'a> {
    rules: &'a [FlowCleanup],
    by_addr: HashMap<(IpAddr, u16), usize>,
    by_port: HashMap<u16, usize>,
}

impl<'a> RuleIndex<'a> {
    fn new(rules: &'a [FlowCleanup]) -> Self {
        let mut by_addr = HashMap::new();
        let mut by_port = HashMap::new();
        for (i, r) in rules.iter().enumerate() {
            match r.key {
                ServiceKey::Addr { ip, port, .. } => {
                    by_addr.insert((ip, port), i);
                }
                ServiceKey::AnyLocal { port, .. } => {
                    by_port.insert(port, i);
                }
            }
        }
        Self {
            rules,
            by_addr,
            by_port,
        }
    }

    /// The rule that calls this entry stale, if any.
    fn stale(&self, flow: &netlink::Flow) -> Option<usize> {
        let (dst, dport) = (flow.orig.dst, flow.orig.dst_port);
        let i = self
            .by_addr
            .get(&(dst, dport))
            .or_else(|| self.by_port.get(&dport))?;
        self.rules[*i]
            .is_stale(dst, dport, (flow.reply.src, flow.reply.src_port))
            .then_some(*i)
    }
}
