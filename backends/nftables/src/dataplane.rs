//! `NftablesDataplane`: the `Dataplane` implementation.

use crate::build::{self, Committed};
use crate::netlink::socket::NfSocket;
use crate::objects::Op;
use crate::tx::Transaction;
use async_trait::async_trait;
use std::time::Instant;
use switchyard_core::plan::{IpFamily, ProxyPlan};
use switchyard_core::{ApplyStats, Changes, Dataplane, DataplaneError, Mode};

/// The nftables dataplane for one family: table `ip switchyard` or `ip6 switchyard`.
///
/// The netlink socket is opened by `probe` (or the first `apply`) in the calling thread's
/// network namespace and stays bound to it.
#[derive(Debug)]
pub struct NftablesDataplane {
    family: IpFamily,
    socket: Option<NfSocket>,
    committed: Option<Committed>,
    seq: u32,
}

impl NftablesDataplane {
    pub fn new(family: IpFamily) -> Self {
        Self {
            family,
            socket: None,
            committed: None,
            seq: 1,
        }
    }

    fn socket(&mut self) -> Result<&NfSocket, DataplaneError> {
        if self.socket.is_none() {
            let s = NfSocket::open().map_err(|source| DataplaneError::Io {
                step: "opening the nf_tables netlink socket".into(),
                source,
            })?;
            self.socket = Some(s);
        }
        self.socket.as_ref().ok_or_else(|| DataplaneError::Io {
            step: "nf_tables socket".into(),
            source: std::io::Error::other("socket missing"),
        })
    }

    /// The transaction `apply` would send (its `Display` is `nft -f` input).
    pub fn transaction(&self, plan: &ProxyPlan, changes: Option<&Changes>) -> Transaction {
        match (changes, &self.committed) {
            (Some(c), Some(old)) if !c.requires_full_sync() => build::partial(old, plan, c).0,
            _ => build::full(plan).0,
        }
    }

    /// `send`, timed: encoding, the kernel's processing of the batch, and its answer.
    fn timed_send(
        &mut self,
        tx: &Transaction,
    ) -> Result<(usize, std::time::Duration), DataplaneError> {
        let t = Instant::now();
        let operations = self.send(tx)?;
        Ok((operations, t.elapsed()))
    }

    /// Sends a transaction as one batch; maps a kernel error to the object and service.
    fn send(&mut self, tx: &Transaction) -> Result<usize, DataplaneError> {
        let first = self.seq;
        let encoded = tx.encode(first);
        self.seq = encoded.ack_seq.wrapping_add(2);
        let messages = encoded.seq_to_op.len();
        let errors = self
            .socket()?
            .send_batch(&encoded.bytes, encoded.ack_seq)
            .map_err(|source| DataplaneError::Io {
                step: format!("sending a batch of {} bytes", encoded.bytes.len()),
                source,
            })?;
        let Some(first_err) = errors.first() else {
            return Ok(messages);
        };
        let op = Transaction::op_for_seq(&encoded, first_err.seq).and_then(|i| tx.ops.get(i));
        let object = op
            .map(|o| o.describe(self.family))
            .unwrap_or_else(|| "the batch".into());
        let service = op.and_then(|o| tx.owner_of(o)).cloned();
        let mut text = String::new();
        if let Some(o) = op {
            o.text(self.family, &mut text);
        }
        Err(DataplaneError::KernelRejected {
            object,
            service,
            errno: Some(first_err.errno),
            message: format!(
                "{} ({} error(s) in the batch; first at: {})",
                std::io::Error::from_raw_os_error(first_err.errno),
                errors.len(),
                text.lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(300)
                    .collect::<String>()
            ),
        })
    }
}

#[async_trait]
impl Dataplane for NftablesDataplane {
    fn mode(&self) -> Mode {
        Mode::Nftables
    }

    fn family(&self) -> IpFamily {
        self.family
    }

    /// Opens the socket and sends an empty-effect batch (create our table if missing): fails
    /// precisely when the kernel lacks nf_tables or we lack CAP_NET_ADMIN.
    async fn probe(&mut self) -> Result<(), DataplaneError> {
        let tx = Transaction {
            family: self.family,
            full: false,
            ops: vec![Op::AddTable],
            owners: Default::default(),
            key_owners: Default::default(),
            service_ports: 0,
        };
        match self.send(&tx) {
            Ok(_) => Ok(()),
            Err(DataplaneError::KernelRejected {
                errno: Some(e),
                message,
                ..
            }) if e == 1 || e == 93 || e == 97 || e == 2 => Err(DataplaneError::Unsupported {
                what: "nf_tables".into(),
                hint: format!("{message}: needs a kernel with CONFIG_NF_TABLES and CAP_NET_ADMIN"),
            }),
            Err(e) => Err(e),
        }
    }

    async fn apply(
        &mut self,
        plan: &ProxyPlan,
        changes: Option<&Changes>,
    ) -> Result<ApplyStats, DataplaneError> {
        let started = Instant::now();
        // Take the committed state until this batch succeeds: after any failure it stays
        // `None`, so the next sync is full. The kernel applies a batch atomically, so the old
        // rules stay in force meanwhile.
        let (tx, operations, kernel_time) = match (changes, self.committed.take()) {
            (Some(c), Some(mut old)) if !c.requires_full_sync() => {
                let (tx, delta) = build::partial(&old, plan, c);
                let (operations, kernel_time) = self.timed_send(&tx)?;
                old.advance(plan, c, delta);
                self.committed = Some(old);
                (tx, operations, kernel_time)
            }
            _ => {
                let (tx, committed) = build::full(plan);
                let (operations, kernel_time) = self.timed_send(&tx)?;
                self.committed = Some(committed);
                (tx, operations, kernel_time)
            }
        };
        tracing::debug!(
            total_ms = started.elapsed().as_secs_f64() * 1000.0,
            kernel_ms = kernel_time.as_secs_f64() * 1000.0,
            "nftables sync"
        );
        Ok(ApplyStats {
            full: tx.full,
            service_ports_written: tx.service_ports,
            operations,
            kernel_time,
        })
    }

    fn render(&self, plan: &ProxyPlan, changes: Option<&Changes>) -> String {
        self.transaction(plan, changes).to_string()
    }

    async fn cleanup(&mut self) -> Result<(), DataplaneError> {
        self.committed = None;
        let tx = Transaction {
            family: self.family,
            full: true,
            ops: vec![Op::AddTable, Op::DeleteTable],
            owners: Default::default(),
            key_owners: Default::default(),
            service_ports: 0,
        };
        self.send(&tx).map(drop)
    }
}
