//! `IpvsDataplane`: the `Dataplane` implementation.

use crate::config::IpvsConfig;
use crate::link::Rtnl;
use crate::listing;
use crate::marks::Allocator;
use crate::netlink::{CmdAttr, IpvsCmd, IpvsMessage, IpvsSocket, SocketError};
use crate::ops::{Op, ServiceSpec};
use crate::state::{self, Dest, Kernel, Owned, Service};
use crate::tx::Transaction;
use async_trait::async_trait;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchyard_core::plan::{IpFamily, ProxyPlan, ServicePortName};
use switchyard_core::{ApplyStats, Changes, Dataplane, DataplaneError, Drift, Mode};
use switchyard_nftables::{Marks, NftablesDataplane};

mod retire;

pub use retire::Retirement;

const ENOENT: i32 = 2;
const EEXIST: i32 = 17;
const ESRCH: i32 = 3;
/// A mark outside ours (bit 14 and below), for the scheduler check at probe.
const PROBE_MARK: u32 = 0x3f5e;

/// IPVS mode for one family: firewall-mark virtual services, their destinations, the VIPs on
/// `swyd-ipvs0`, and the helper rules in table `switchyard-ipvs`.
///
/// Sockets are opened by `probe` (or the first `apply`) in the calling thread's network
/// namespace; the rtnetlink connection runs on the current tokio runtime.
#[derive(Debug)]
pub struct IpvsDataplane {
    family: IpFamily,
    config: IpvsConfig,
    socket: Option<IpvsSocket>,
    rtnl: Option<Rtnl>,
    dummy: Option<u32>,
    helpers: NftablesDataplane,
    kernel: Kernel,
    marks: Allocator,
    /// The kernel matches `kernel` (a sync succeeded since the last failure or start).
    synced: bool,
}

fn io_step(step: &str) -> impl FnOnce(SocketError) -> DataplaneError + '_ {
    move |e| match e {
        SocketError::NoFamily | SocketError::Open(_) => DataplaneError::Unsupported {
            what: "IPVS".into(),
            hint: format!("{e} ({step})"),
        },
        SocketError::Io { source, .. } => DataplaneError::Io {
            step: step.to_string(),
            source,
        },
        other => DataplaneError::KernelRejected {
            object: step.to_string(),
            service: None,
            errno: match other {
                SocketError::Refused { errno, .. } => Some(errno),
                _ => None,
            },
            message: other.to_string(),
        },
    }
}

impl IpvsDataplane {
    pub fn new(family: IpFamily, config: IpvsConfig) -> Self {
        Self {
            family,
            config,
            socket: None,
            rtnl: None,
            dummy: None,
            helpers: NftablesDataplane::ipvs_helpers(family),
            kernel: Kernel::default(),
            marks: Allocator::default(),
            synced: false,
        }
    }

    fn socket(&mut self) -> Result<&mut IpvsSocket, DataplaneError> {
        if self.socket.is_none() {
            self.socket = Some(IpvsSocket::open().map_err(io_step("opening the IPVS socket"))?);
        }
        self.socket.as_mut().ok_or_else(|| DataplaneError::Io {
            step: "IPVS socket".into(),
            source: std::io::Error::other("socket missing"),
        })
    }

    async fn link(&mut self) -> Result<u32, DataplaneError> {
        if self.rtnl.is_none() {
            self.rtnl = Some(Rtnl::open()?);
        }
        if let (Some(i), Some(_)) = (self.dummy, &self.rtnl) {
            return Ok(i);
        }
        let rtnl = self.rtnl.as_ref().ok_or_else(|| DataplaneError::Io {
            step: "rtnetlink".into(),
            source: std::io::Error::other("connection missing"),
        })?;
        let i = rtnl.ensure_dummy().await?;
        self.dummy = Some(i);
        Ok(i)
    }

    /// Whether `changes` can be applied incrementally.
    fn partial<'a>(&self, changes: Option<&'a Changes>) -> Option<&'a Changes> {
        changes.filter(|c| self.synced && !c.requires_full_sync())
    }

    /// Decides the IPVS and address operations for `plan`: pure, from what this instance
    /// remembers. The helper rules are not rendered here: `apply` has the nftables backend
    /// render and send them in one step, and only [`Self::transaction`] needs their text.
    fn decide(
        &self,
        plan: &ProxyPlan,
        changes: Option<&Changes>,
    ) -> (state::Plan, Marks, Vec<ServicePortName>) {
        let partial = self.partial(changes);
        let names: Vec<ServicePortName> = match partial {
            Some(c) => c.touched().cloned().collect(),
            None => {
                let mut all: Vec<ServicePortName> = plan.services.keys().cloned().collect();
                all.extend(
                    self.kernel
                        .by_owner
                        .keys()
                        .filter(|n| !plan.services.contains_key(*n))
                        .cloned(),
                );
                all
            }
        };
        let marks = self.marks.marks(plan, &names);
        let diff = state::diff(
            &self.kernel,
            plan,
            &names,
            &marks,
            &self.config,
            partial.is_none(),
        );
        (diff, marks, names)
    }

    /// The transaction `apply` would perform (its `Display` is the `--dry-run` text).
    pub fn transaction(&self, plan: &ProxyPlan, changes: Option<&Changes>) -> Transaction {
        let partial = self.partial(changes);
        let (diff, marks, _) = self.decide(plan, changes);
        Transaction {
            full: partial.is_none(),
            before: diff.before,
            helpers: self.helpers.ipvs_transaction(plan, partial, &marks),
            after: diff.after,
        }
    }

    /// Performs operations in order: addresses over rtnetlink, IPVS messages pipelined. Each
    /// success is recorded; the first refusal is returned naming its service port.
    async fn perform(&mut self, ops: &[Owned]) -> Result<usize, DataplaneError> {
        let now = Instant::now();
        let mut i = 0;
        while i < ops.len() {
            match &ops[i].0 {
                Op::AddAddress(ip) | Op::DelAddress(ip) => {
                    let index = self.link().await?;
                    let rtnl = self.rtnl.as_ref().ok_or_else(|| DataplaneError::Io {
                        step: "rtnetlink".into(),
                        source: std::io::Error::other("connection missing"),
                    })?;
                    let result = if matches!(ops[i].0, Op::AddAddress(_)) {
                        rtnl.add_address(index, *ip).await
                    } else {
                        rtnl.del_address(index, *ip).await
                    };
                    result.map_err(|e| with_service(e, ops[i].1.as_ref()))?;
                    self.kernel.record(&ops[i].0, ops[i].1.as_ref(), now);
                    i += 1;
                }
                _ => {
                    let end = ops[i..]
                        .iter()
                        .position(|(op, _)| matches!(op, Op::AddAddress(_) | Op::DelAddress(_)))
                        .map_or(ops.len(), |p| i + p);
                    let run = &ops[i..end];
                    let msgs: Vec<IpvsMessage> =
                        run.iter().filter_map(|(op, _)| op.message()).collect();
                    let refused = self
                        .socket()?
                        .execute(&msgs)
                        .map_err(io_step("sending IPVS operations"))?;
                    let mut first_error = None;
                    let mut refused_at = std::collections::BTreeMap::new();
                    for r in refused {
                        refused_at.insert(r.index, r.errno);
                    }
                    for (j, (op, owner)) in run.iter().enumerate() {
                        let benign = match (refused_at.get(&j), op) {
                            (None, _) => true,
                            (Some(&e), Op::DelDest { .. } | Op::DelService { .. }) => {
                                e == ENOENT || e == ESRCH
                            }
                            (Some(&e), Op::AddService(_)) => e == EEXIST,
                            _ => false,
                        };
                        if benign {
                            self.kernel.record(op, owner.as_ref(), now);
                        } else if first_error.is_none() {
                            let errno = refused_at.get(&j).copied();
                            first_error = Some(DataplaneError::KernelRejected {
                                object: format!("IPVS operation `{op}`"),
                                service: owner.as_ref().map(ToString::to_string),
                                errno,
                                message: errno
                                    .map(|e| std::io::Error::from_raw_os_error(e).to_string())
                                    .unwrap_or_default(),
                            });
                        }
                    }
                    if let Some(e) = first_error {
                        return Err(e);
                    }
                    i = end;
                }
            }
        }
        Ok(ops.len())
    }

    /// Reads what the kernel holds of ours: firewall-mark services in our range with their
    /// destinations, and the dummy interface's addresses. Used at full syncs (start, after a
    /// failure), so a restarted agent adopts instead of replacing.
    async fn adopt(&mut self) -> Result<(), DataplaneError> {
        let family = self.family;
        let listed =
            listing::ours(self.socket()?, family).map_err(io_step("listing IPVS services"))?;
        let mut kernel = Kernel::default();
        for l in listed {
            let dests = l
                .dests
                .iter()
                .map(|d| {
                    (
                        d.addr,
                        Dest {
                            weight: d.weight,
                            draining_since: (d.weight == 0).then(Instant::now),
                        },
                    )
                })
                .collect();
            kernel.services.insert(
                l.spec.fwmark,
                Service {
                    spec: l.spec,
                    owner: None,
                    udp: false,
                    dests,
                },
            );
        }
        // Looked up again at every full sync: the other family's lane may have removed and
        // re-created the interface (its cleanup, when the node lost that family), or someone
        // deleted it (`check` reports that, and a full sync is what repairs it).
        self.dummy = None;
        let index = self.link().await?;
        if let Some(rtnl) = &self.rtnl {
            kernel.unclaimed_vips = rtnl
                .addresses(index)
                .await?
                .into_iter()
                .filter(|ip| IpFamily::of(ip) == family)
                .collect();
        }
        kernel.find_draining();
        self.kernel = kernel;
        Ok(())
    }

    /// Deletes draining destinations whose connections ended, or that drained longer than
    /// the bound. Reads connection counts only of services that have draining destinations
    /// (`Kernel::draining`: looking at only those keeps a sync's cost independent of how many
    /// services exist).
    fn drain(&mut self) -> Result<usize, DataplaneError> {
        let bound = self.config.drain_bound;
        let kernel = &mut self.kernel;
        kernel.draining.retain(|m| {
            kernel
                .services
                .get(m)
                .is_some_and(|s| s.dests.values().any(|d| d.draining_since.is_some()))
        });
        let draining: Vec<(u32, Vec<(SocketAddr, Instant)>)> = kernel
            .draining
            .iter()
            .filter_map(|m| {
                let d: Vec<(SocketAddr, Instant)> = kernel
                    .services
                    .get(m)?
                    .dests
                    .iter()
                    .filter_map(|(a, d)| d.draining_since.map(|t| (*a, t)))
                    .collect();
                Some((*m, d))
            })
            .collect();
        let family = self.family;
        let mut ops: Vec<Op> = Vec::new();
        for (mark, dests) in draining {
            let conns: std::collections::BTreeMap<SocketAddr, u32> =
                listing::dests(self.socket()?, family, mark)
                    .map_err(io_step(
                        "reading connection counts of draining destinations",
                    ))?
                    .iter()
                    .map(|d| (d.addr, d.connections()))
                    .collect();
            for (dest, since) in dests {
                if conns.get(&dest).copied().unwrap_or(0) == 0 || since.elapsed() >= bound {
                    ops.push(Op::DelDest {
                        family,
                        fwmark: mark,
                        dest,
                    });
                }
            }
        }
        if ops.is_empty() {
            return Ok(0);
        }
        let msgs: Vec<IpvsMessage> = ops.iter().filter_map(Op::message).collect();
        let refused = self
            .socket()?
            .execute(&msgs)
            .map_err(io_step("deleting drained destinations"))?;
        let now = Instant::now();
        for (j, op) in ops.iter().enumerate() {
            if refused.iter().all(|r| r.index != j || r.errno == ENOENT) {
                tracing::debug!(%op, "drained destination deleted");
                self.kernel.record(op, None, now);
            }
        }
        Ok(ops.len())
    }

    /// Checks that the kernel has the configured scheduler, by creating and deleting a
    /// virtual service with it under a mark outside ours.
    fn check_scheduler(&mut self) -> Result<(), DataplaneError> {
        let spec = ServiceSpec {
            family: self.family,
            fwmark: PROBE_MARK,
            scheduler: self.config.scheduler.clone(),
            flags: self
                .config
                .scheduler_flags
                .iter()
                .fold(0, |a, f| a | f.bits()),
            timeout: 0,
        };
        let add = Op::AddService(spec);
        let del = Op::DelService {
            family: self.family,
            fwmark: PROBE_MARK,
        };
        let msgs: Vec<IpvsMessage> = [&add, &del].iter().filter_map(|o| o.message()).collect();
        let refused = self
            .socket()?
            .execute(&msgs)
            .map_err(io_step("checking the IPVS scheduler"))?;
        match refused.iter().find(|r| r.index == 0) {
            Some(r) if r.errno == ENOENT => Err(DataplaneError::Unsupported {
                what: format!("IPVS scheduler {:?}", self.config.scheduler),
                hint: format!(
                    "the kernel has no ip_vs_{} module (load it, or choose another --ipvs-scheduler)",
                    self.config.scheduler
                ),
            }),
            // EEXIST: someone uses our probe mark; the scheduler stays unchecked.
            Some(r) if r.errno != EEXIST => Err(DataplaneError::KernelRejected {
                object: format!("IPVS scheduler check `{add}`"),
                service: None,
                errno: Some(r.errno),
                message: std::io::Error::from_raw_os_error(r.errno).to_string(),
            }),
            _ => Ok(()),
        }
    }

    fn set_timeouts(&mut self) -> Result<(), DataplaneError> {
        let secs = |d: std::time::Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
        let (tcp, fin, udp) = (
            secs(self.config.tcp_timeout),
            secs(self.config.tcp_fin_timeout),
            secs(self.config.udp_timeout),
        );
        if tcp == 0 && fin == 0 && udp == 0 {
            return Ok(());
        }
        let msg = IpvsMessage::new(
            IpvsCmd::SetConfig,
            vec![
                CmdAttr::TimeoutTcp(tcp),
                CmdAttr::TimeoutTcpFin(fin),
                CmdAttr::TimeoutUdp(udp),
            ],
        );
        self.socket()?
            .request(&msg, "setting IPVS timeouts")
            .map_err(io_step("setting IPVS timeouts"))
    }
}

fn with_service(e: DataplaneError, owner: Option<&ServicePortName>) -> DataplaneError {
    match e {
        DataplaneError::KernelRejected {
            object,
            errno,
            message,
            ..
        } => DataplaneError::KernelRejected {
            object,
            service: owner.map(ToString::to_string),
            errno,
            message,
        },
        other => other,
    }
}

#[async_trait]
impl Dataplane for IpvsDataplane {
    fn mode(&self) -> Mode {
        Mode::Ipvs
    }

    fn family(&self) -> IpFamily {
        self.family
    }

    /// IPVS in the kernel (the generic-netlink family), the scheduler's module, the sysctls,
    /// the dummy interface, and nf_tables for the helper rules; the error names what is
    /// missing.
    async fn probe(&mut self) -> Result<(), DataplaneError> {
        self.socket()?;
        self.check_scheduler()?;
        crate::sysctl::apply(self.config.strict_arp, self.family)?;
        self.set_timeouts()?;
        self.link().await?;
        self.helpers.probe().await
    }

    async fn apply(
        &mut self,
        plan: &ProxyPlan,
        changes: Option<&Changes>,
    ) -> Result<ApplyStats, DataplaneError> {
        let started = Instant::now();
        let partial = self.partial(changes).is_some();
        if !partial {
            self.adopt().await?;
            if self.marks.is_empty() {
                // A (re)started agent: keep the marks the kernel's rules already use.
                let seeds = self.helpers.ipvs_marks_in_kernel(plan)?;
                self.marks.seed(seeds);
            }
        }
        let adopted = started.elapsed();
        let (tx, marks, names) = self.decide(plan, changes);
        let decided = started.elapsed();
        // Until this sync completes, the next one is full (and re-reads the kernel).
        self.synced = false;
        let mut operations = self.perform(&tx.before).await?;
        let before = started.elapsed();
        let nft =
            self.helpers
                .apply_ipvs(plan, self.partial_for_helpers(changes, partial), &marks)?;
        operations += nft.operations;
        let helpers = started.elapsed();
        operations += self.perform(&tx.after).await?;
        let after = started.elapsed();
        if !partial {
            self.marks.reset();
        }
        self.marks.commit(plan, &names, &marks);
        self.kernel.claim_vips(plan, &names);
        self.synced = true;
        let recorded = started.elapsed();
        operations += self.drain()?;
        // Each step's share of the sync, for finding what grows with the cluster.
        let ms = |a: Duration, b: Duration| (b.saturating_sub(a)).as_secs_f64() * 1000.0;
        let end = started.elapsed();
        tracing::debug!(
            partial,
            adopt_ms = ms(Duration::ZERO, adopted),
            decide_ms = ms(adopted, decided),
            ipvs_before_ms = ms(decided, before),
            helpers_ms = ms(before, helpers),
            ipvs_after_ms = ms(helpers, after),
            record_ms = ms(after, recorded),
            drain_ms = ms(recorded, end),
            "ipvs sync"
        );
        Ok(ApplyStats {
            full: !partial,
            service_ports_written: names.len(),
            operations,
            kernel_time: started.elapsed(),
            ..ApplyStats::default()
        })
    }

    fn render(&self, plan: &ProxyPlan, changes: Option<&Changes>) -> String {
        self.transaction(plan, changes).to_string()
    }

    /// Our virtual services, their destinations, `swyd-ipvs0` and its addresses against
    /// what the last syncs committed, and the helper table by the nftables backend's check
    /// (see `crate::check`). `Ok(None)` until a sync succeeded.
    async fn check(&mut self) -> Result<Option<Drift>, DataplaneError> {
        if !self.synced {
            return Ok(None);
        }
        let marks = &self.marks;
        let Some(helpers) = self
            .helpers
            .check_ipvs(|plan| marks.marks(plan, plan.services.keys()))?
        else {
            return Ok(None);
        };
        self.socket()?;
        if self.rtnl.is_none() {
            self.rtnl = Some(Rtnl::open()?);
        }
        let (Some(socket), Some(rtnl)) = (self.socket.as_mut(), self.rtnl.as_ref()) else {
            return Ok(None);
        };
        let found = crate::check::read(socket, rtnl, self.family).await?;
        let mut findings = crate::check::compare(&self.kernel, self.dummy, &found);
        findings.extend(helpers.findings);
        Ok(Some(Drift { findings }))
    }

    /// Deletes this family's table `switchyard-ipvs`, our virtual services of this family
    /// (firewall marks in our range; never anyone else's) and this family's addresses on the
    /// dummy interface (the interface too once no other family's are left), at once: what
    /// `--cleanup` does. A node leaving IPVS mode uses [`IpvsDataplane::retire`] instead,
    /// which keeps the services while they carry connections.
    async fn cleanup(&mut self) -> Result<(), DataplaneError> {
        self.remove(false).await.map(drop)
    }
}

impl IpvsDataplane {
    /// Changes for the helper rules: the same partial set, or a full sync.
    fn partial_for_helpers<'a>(
        &self,
        changes: Option<&'a Changes>,
        partial: bool,
    ) -> Option<&'a Changes> {
        changes.filter(|_| partial)
    }
}
