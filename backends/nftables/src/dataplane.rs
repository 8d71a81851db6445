//! `NftablesDataplane`: the `Dataplane` implementation.

use crate::build::{self, Committed};
use crate::check::Expected;
use crate::expr::Verdict;
use crate::names;
use crate::netlink::dump::{self, TableObjects};
use crate::netlink::socket::NfSocket;
use crate::netlink::{NFPROTO_IPV4, NFPROTO_IPV6};
use crate::objects::{
    Chain, Elem, ElemData, Key, KeyType, Op, Rule, Set, SetData, IPVS_TABLE, TABLE,
};
use crate::render::{Features, Marks};
use crate::stmt::{family_word, KeySrc, Stmt};
use crate::tx::Transaction;
use async_trait::async_trait;
use std::net::IpAddr;
use std::time::Instant;
use switchyard_core::plan::{IpFamily, ProxyPlan};
use switchyard_core::{ApplyStats, Changes, Dataplane, DataplaneError, Drift, Mode};

const EINVAL: i32 = 22;

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
    /// What this kernel accepts, learned by `probe` (newest kernels' shape until then).
    features: Features,
    /// The ruleset generation right after our last commit, when no other batch slipped in
    /// around it (`check` then costs one round trip while it stays the same).
    generation: Option<u32>,
    /// `switchyard`, or `switchyard-ipvs` for IPVS mode's helper rules.
    table: &'static str,
}

impl NftablesDataplane {
    pub fn new(family: IpFamily) -> Self {
        Self {
            family,
            socket: None,
            committed: None,
            seq: 1,
            features: Features::default(),
            generation: None,
            table: TABLE,
        }
    }

    /// IPVS mode's helper rules: table `switchyard-ipvs`, rendered with the marks of the
    /// IPVS virtual services instead of DNAT ([`Self::ipvs_transaction`],
    /// [`Self::apply_ipvs`]). Its `cleanup` removes that table only.
    pub fn ipvs_helpers(family: IpFamily) -> Self {
        Self {
            table: IPVS_TABLE,
            ..Self::new(family)
        }
    }

    /// The kernel constructs in use (after `probe`, what this kernel accepts).
    pub fn features(&self) -> Features {
        self.features
    }

    /// Renders for a kernel with these features, e.g. to print an older kernel's shape.
    pub fn with_features(mut self, features: Features) -> Self {
        self.features = features;
        self
    }

    /// Whether the kernel accepts `<key> @map` as a set test. Tried in a batch that adds a
    /// map, a chain and a rule to our table and removes them again, so nothing stays.
    fn probe_map_lookup_as_set(&mut self) -> Result<bool, DataplaneError> {
        const MAP: &str = "probe-map";
        const CHAIN: &str = "probe-chain";
        let tx = Transaction {
            family: self.family,
            table: self.table,
            full: false,
            ops: vec![
                Op::AddTable,
                Op::AddSet(Set::new(MAP, KeyType::AddrProtoPort, SetData::Endpoint)),
                Op::AddChain(Chain {
                    name: CHAIN.into(),
                    base: None,
                }),
                Op::AddRule(Rule {
                    chain: CHAIN.into(),
                    stmts: vec![
                        Stmt::KeyInSet {
                            src: KeySrc::Vip,
                            set: MAP.into(),
                        },
                        Stmt::Verdict(Verdict::Return),
                    ],
                }),
                Op::FlushChain(CHAIN.into()),
                Op::DeleteChain(CHAIN.into()),
                Op::DeleteSet(MAP.into()),
            ],
            owners: Default::default(),
            key_owners: Default::default(),
            service_ports: 0,
        };
        match self.send(&tx) {
            Ok(_) => Ok(true),
            Err(DataplaneError::KernelRejected {
                errno: Some(EINVAL),
                ..
            }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Affinity entries the kernel holds for the timeout sets `tx` re-creates, as elements
    /// with their remaining lifetime, so a full sync (which replaces the table) keeps them.
    /// Reads only our own table's sets; a set that does not exist yet has nothing to keep.
    fn learned_affinity(&mut self, tx: &Transaction) -> Result<Vec<Op>, DataplaneError> {
        let sets: Vec<(String, u32)> = tx
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::AddSet(s) => s.timeout_seconds.map(|t| (s.name.clone(), t)),
                _ => None,
            })
            .collect();
        let family = match self.family {
            IpFamily::V4 => NFPROTO_IPV4,
            IpFamily::V6 => NFPROTO_IPV6,
        };
        let mut ops = Vec::new();
        for (set, timeout) in sets {
            let seq = self.seq;
            self.seq = self.seq.wrapping_add(1);
            let table = self.table;
            let dumped =
                dump::set_elements(self.socket()?, family, table, &set, seq).map_err(|source| {
                    DataplaneError::Io {
                        step: format!("reading the affinity entries of set {set}"),
                        source,
                    }
                })?;
            let elems: Vec<Elem> = dumped
                .unwrap_or_default()
                .into_iter()
                .filter_map(|e| {
                    let ip = match e.key.len() {
                        4 => IpAddr::from(<[u8; 4]>::try_from(e.key.as_slice()).ok()?),
                        16 => IpAddr::from(<[u8; 16]>::try_from(e.key.as_slice()).ok()?),
                        _ => return None,
                    };
                    // A shortened timeout applies to old entries too.
                    let left = e.expires_ms?.min(u64::from(timeout) * 1000);
                    Some(Elem {
                        key: Key::Addr(ip),
                        data: Some(ElemData::Expires(left)),
                    })
                })
                .collect();
            if !elems.is_empty() {
                ops.push(Op::AddElems { set, elems });
            }
        }
        Ok(ops)
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
        self.transaction_with(plan, changes, None)
    }

    /// IPVS mode: the helper-rule transaction `apply_ipvs` would send with these marks.
    pub fn ipvs_transaction(
        &self,
        plan: &ProxyPlan,
        changes: Option<&Changes>,
        marks: &Marks,
    ) -> Transaction {
        self.transaction_with(plan, changes, Some(marks))
    }

    fn transaction_with(
        &self,
        plan: &ProxyPlan,
        changes: Option<&Changes>,
        marks: Option<&Marks>,
    ) -> Transaction {
        match (changes, &self.committed) {
            (Some(c), Some(old)) if !c.requires_full_sync() => {
                build::partial(old, plan, c, self.features, marks).0
            }
            _ => build::full(plan, self.features, marks).0,
        }
    }

    /// `send`, timed: encoding, the kernel's processing of the batch, and its answer. Records
    /// the generation our batch created when it is exactly one past the one before it (else
    /// someone else committed around it and the next `check` compares objects).
    fn timed_send(
        &mut self,
        tx: &Transaction,
    ) -> Result<(usize, std::time::Duration), DataplaneError> {
        self.generation = None;
        let before = self.current_generation()?;
        let t = Instant::now();
        let operations = self.send(tx)?;
        let elapsed = t.elapsed();
        let after = self.current_generation()?;
        self.generation = (after == before.wrapping_add(1)).then_some(after);
        Ok((operations, elapsed))
    }

    fn next_seq(&mut self) -> u32 {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        seq
    }

    fn nfproto(&self) -> u8 {
        match self.family {
            IpFamily::V4 => NFPROTO_IPV4,
            IpFamily::V6 => NFPROTO_IPV6,
        }
    }

    fn current_generation(&mut self) -> Result<u32, DataplaneError> {
        let seq = self.next_seq();
        dump::generation(self.socket()?, seq).map_err(|source| DataplaneError::Io {
            step: "reading the nf_tables ruleset generation".into(),
            source,
        })
    }

    /// Our table's chains, rules (counted per chain) and sets; empty when it does not exist.
    fn table_objects(&mut self) -> Result<TableObjects, DataplaneError> {
        let (family, seq, table) = (self.nfproto(), self.next_seq(), self.table);
        dump::table_objects(self.socket()?, family, table, seq).map_err(|source| {
            DataplaneError::Io {
                step: format!("listing table {table}'s chains, rules and sets"),
                source,
            }
        })
    }

    /// IPVS mode: the firewall mark the helper table in the kernel gives each endpoint set of
    /// `plan` that it already steers, read from its mark maps (an endpoint set whose keys
    /// disagree gets none). A restarted agent seeds its mark allocator with these, so a
    /// service port keeps the mark, and so the virtual service, it had before the restart
    /// (DESIGN-NOTES 268).
    pub fn ipvs_marks_in_kernel(&mut self, plan: &ProxyPlan) -> Result<Marks, DataplaneError> {
        let mut listed = std::collections::BTreeMap::new();
        for map in crate::render::ipvs::mark_maps(plan) {
            let (family, seq, table) = (self.nfproto(), self.next_seq(), self.table);
            let elems = dump::set_elements(self.socket()?, family, table, &map, seq)
                .map_err(|source| DataplaneError::Io {
                    step: format!("listing the elements of map {map}"),
                    source,
                })?
                .unwrap_or_default();
            let values = elems
                .into_iter()
                .filter_map(|e| {
                    let value = <[u8; 4]>::try_from(e.data?.as_slice()).ok()?;
                    Some((e.key, u32::from_ne_bytes(value)))
                })
                .collect();
            listed.insert(map, values);
        }
        Ok(crate::render::ipvs::marks_in_maps(plan, &listed))
    }

    /// Lists our table and compares it with what a full sync of `plan` creates (with IPVS
    /// mode's `marks` for its helper table).
    fn compare_table(
        &mut self,
        plan: &ProxyPlan,
        marks: Option<&Marks>,
    ) -> Result<Drift, DataplaneError> {
        let expected = Expected::of(&build::full(plan, self.features, marks).0);
        let found = self.table_objects()?;
        let (family, table) = (self.nfproto(), self.table);
        let mut findings = expected.compare_objects(family_word(self.family), table, &found);
        for set in found.sets.intersection(&expected.objects.sets) {
            if !expected.elems.contains_key(set) {
                continue;
            }
            let seq = self.next_seq();
            let elems = dump::set_elements(self.socket()?, family, table, set, seq)
                .map_err(|source| DataplaneError::Io {
                    step: format!("listing the elements of set {set}"),
                    source,
                })?
                .unwrap_or_default();
            findings.extend(expected.compare_elems(set, elems.len()));
        }
        Ok(Drift { findings })
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
            .map(|o| o.describe(self.family, self.table))
            .unwrap_or_else(|| "the batch".into());
        let service = op.and_then(|o| tx.owner_of(o)).cloned();
        let mut text = String::new();
        if let Some(o) = op {
            o.text(self.family, self.table, &mut text);
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
            table: self.table,
            full: false,
            ops: vec![Op::AddTable],
            owners: Default::default(),
            key_owners: Default::default(),
            service_ports: 0,
        };
        match self.send(&tx) {
            Ok(_) => {
                self.features.map_lookup_as_set = self.probe_map_lookup_as_set()?;
                if !self.features.map_lookup_as_set {
                    tracing::info!(
                        "this kernel cannot test a map's key as a set member; \
                         the endpoint count search uses plain slot sets"
                    );
                }
                Ok(())
            }
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
        self.apply_with(plan, changes, None)
    }

    /// The generation first; our table's objects only when it moved (see `crate::check`).
    /// IPVS mode's helper table is checked by the IPVS backend, through
    /// [`NftablesDataplane::check_ipvs`] with its marks.
    async fn check(&mut self) -> Result<Option<Drift>, DataplaneError> {
        if self.table != TABLE {
            return Ok(None);
        }
        self.check_with(|_| None)
    }

    fn render(&self, plan: &ProxyPlan, changes: Option<&Changes>) -> String {
        self.transaction(plan, changes).to_string()
    }

    /// Deletes our table in two batches: first the rules of its filter base chains, then the
    /// table. Removing the table in one batch let a packet meet the table's filter after its
    /// nat chains had stopped translating: a mode switch to IPVS saw about one new connection
    /// in 3,000 rejected as "cluster IP, not translated" while the table went (DESIGN-NOTES
    /// 267). With the filters emptied first, what the table still does until the second batch
    /// is translate, which the rules of the mode taking over agree with.
    async fn cleanup(&mut self) -> Result<(), DataplaneError> {
        self.committed = None;
        self.generation = None;
        let found = self.table_objects()?;
        let filters: Vec<Op> = names::FILTER_BASE_CHAINS
            .iter()
            .filter(|c| found.rules.get(**c).is_some_and(|n| *n > 0))
            .map(|c| Op::FlushChain((*c).to_string()))
            .collect();
        for ops in [filters, vec![Op::AddTable, Op::DeleteTable]] {
            if ops.is_empty() {
                continue;
            }
            let tx = Transaction {
                family: self.family,
                table: self.table,
                full: true,
                ops,
                owners: Default::default(),
                key_owners: Default::default(),
                service_ports: 0,
            };
            self.send(&tx)?;
        }
        Ok(())
    }
}

impl NftablesDataplane {
    /// IPVS mode: `check` of the helper table. What a full sync creates there depends on the
    /// firewall marks, which the IPVS backend allocates: `marks` gives them for the
    /// committed plan, and is called only when the table has to be listed (the generation
    /// moved). `Ok(None)`: nothing committed yet.
    pub fn check_ipvs(
        &mut self,
        marks: impl FnOnce(&ProxyPlan) -> Marks,
    ) -> Result<Option<Drift>, DataplaneError> {
        self.check_with(|plan| Some(marks(plan)))
    }

    /// The two stages of `crate::check` for this instance's table.
    fn check_with(
        &mut self,
        marks: impl FnOnce(&ProxyPlan) -> Option<Marks>,
    ) -> Result<Option<Drift>, DataplaneError> {
        if self.committed.is_none() {
            return Ok(None);
        }
        let now = self.current_generation()?;
        if self.generation == Some(now) {
            return Ok(Some(Drift::default()));
        }
        let Some(plan) = self.committed.as_ref().map(|c| c.plan.clone()) else {
            return Ok(None);
        };
        let marks = marks(&plan);
        let drift = self.compare_table(&plan, marks.as_ref())?;
        if drift.is_empty() {
            // Someone else's batch; ours is intact as of this generation.
            let again = self.current_generation()?;
            self.generation = (again == now).then_some(now);
        }
        Ok(Some(drift))
    }

    /// IPVS mode: programs the helper rules with these marks (see [`Self::ipvs_helpers`]).
    pub fn apply_ipvs(
        &mut self,
        plan: &ProxyPlan,
        changes: Option<&Changes>,
        marks: &Marks,
    ) -> Result<ApplyStats, DataplaneError> {
        self.apply_with(plan, changes, Some(marks))
    }

    fn apply_with(
        &mut self,
        plan: &ProxyPlan,
        changes: Option<&Changes>,
        marks: Option<&Marks>,
    ) -> Result<ApplyStats, DataplaneError> {
        let started = Instant::now();
        // Take the committed state until this batch succeeds: after any failure it stays
        // `None`, so the next sync is full. The kernel applies a batch atomically, so the old
        // rules stay in force meanwhile.
        let (tx, operations, kernel_time) = match (changes, self.committed.take()) {
            (Some(c), Some(mut old)) if !c.requires_full_sync() => {
                let (tx, delta) = build::partial(&old, plan, c, self.features, marks);
                let (operations, kernel_time) = self.timed_send(&tx)?;
                old.advance(plan, c, delta);
                self.committed = Some(old);
                (tx, operations, kernel_time)
            }
            _ => {
                let (mut tx, committed) = build::full(plan, self.features, marks);
                // The table is replaced whole; carry the affinity the kernel learned over.
                let learned = self.learned_affinity(&tx)?;
                tx.ops.extend(learned);
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
            ..ApplyStats::default()
        })
    }
}
