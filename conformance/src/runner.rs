//! Running scenarios against backends: one topology per (scenario, backend), several at once.

use crate::family::Family;
use crate::matrix::{Cell, Matrix};
use crate::netns::{require_root, Netns};
use crate::node::Stack;
pub use crate::node::{plan_for, plans_for};
use crate::probe::{pinned_udp, udp_on, Observed, Probe};
use crate::scenario::{Check, Expect, Requirement, Scenario, Step};
use crate::topology::Topology;
use anyhow::{anyhow, bail, Context as _};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_core::{explain, Dataplane, IpFamily, Protocol, ProxyPlan, Verdict};

/// Builds a dataplane that programs the node namespace at the given path. Called on a thread
/// that has already entered that namespace, so netlink sockets opened here land in it.
pub type Factory = dyn Fn(&Path, IpFamily) -> Box<dyn Dataplane> + Send + Sync;
/// Lists what a backend left behind in the node namespace (empty = clean).
pub type Leftovers = dyn Fn(&Netns) -> anyhow::Result<Vec<String>> + Send + Sync;
/// Why the running kernel cannot host this backend at all (`None`: it can). Its cells are then
/// not applicable, with the reason, instead of failing at probe.
pub type Unavailable = dyn Fn() -> Option<String> + Send + Sync;

/// A backend under test.
#[derive(Clone)]
pub struct Backend {
    pub name: String,
    pub factory: Arc<Factory>,
    pub leftovers: Arc<Leftovers>,
    pub unavailable: Arc<Unavailable>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// How to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Only scenarios whose name contains this.
    pub filter: Option<String>,
    /// Scenario × backend × family cells run at once (each has its own namespaces).
    pub parallel: usize,
    /// The address-family columns, per backend (default: IPv4, IPv6, dual-stack).
    pub families: Vec<Family>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            filter: None,
            parallel: 4,
            families: Family::ALL.to_vec(),
        }
    }
}

/// The matrix column of a backend in a family: `<backend>/<family>`.
pub fn column_name(backend: &str, family: Family) -> String {
    format!("{backend}/{family}")
}

/// Runs `scenarios` against every backend in every family of `options`. `SwitchBackend` steps
/// switch to the next backend in the list (wrapping), so a mode switch is proven between real
/// backends.
pub fn run(
    backends: &[Backend],
    scenarios: &[Scenario],
    options: &Options,
) -> anyhow::Result<Matrix> {
    require_root()?;
    if backends.is_empty() || options.families.is_empty() {
        bail!("no backend or no family to test");
    }
    let started = Instant::now();
    let selected: Vec<&Scenario> = scenarios
        .iter()
        .filter(|s| {
            options
                .filter
                .as_ref()
                .is_none_or(|f| s.name.contains(f.as_str()))
        })
        .collect();
    let families = options.families.clone();
    let columns = backends.len() * families.len();
    let mut jobs = VecDeque::new();
    for (si, s) in selected.iter().enumerate() {
        for col in 0..columns {
            jobs.push_back((si, col, (*s).clone()));
        }
    }
    let jobs = Arc::new(Mutex::new(jobs));
    let results = Arc::new(Mutex::new(BTreeMap::new()));
    let backends: Arc<Vec<Backend>> = Arc::new(backends.to_vec());
    let workers: Vec<_> = (0..options.parallel.max(1))
        .map(|_| {
            let (jobs, results, backends) = (jobs.clone(), results.clone(), backends.clone());
            let families = families.clone();
            std::thread::spawn(move || loop {
                let Some((si, col, scenario)) = jobs.lock().ok().and_then(|mut j| j.pop_front())
                else {
                    return;
                };
                let (bi, family) = (col / families.len(), families[col % families.len()]);
                let alternate = &backends[(bi + 1) % backends.len()];
                let cell = run_one(&scenario, &backends[bi], alternate, family);
                if let Ok(mut r) = results.lock() {
                    r.insert((si, col), cell);
                }
            })
        })
        .collect();
    for w in workers {
        w.join()
            .map_err(|_| anyhow!("a conformance worker panicked"))?;
    }
    let results = results
        .lock()
        .map_err(|_| anyhow!("results lock poisoned"))?;
    let rows = selected
        .iter()
        .enumerate()
        .map(|(si, s)| {
            let cells = (0..columns)
                .map(|col| {
                    results
                        .get(&(si, col))
                        .cloned()
                        .unwrap_or(Cell::Fail("did not run".into()))
                })
                .collect();
            (s.name.to_string(), cells)
        })
        .collect();
    Ok(Matrix {
        backends: backends
            .iter()
            .flat_map(|b| families.iter().map(|f| column_name(&b.name, *f)))
            .collect(),
        rows,
        wall_time: started.elapsed(),
    })
}

/// One cell: its own topology, torn down afterwards whatever happens.
pub fn run_one(
    scenario: &Scenario,
    backend: &Backend,
    alternate: &Backend,
    family: Family,
) -> Cell {
    if let Some(why) = scenario.node.families.excludes(family) {
        return Cell::NotApplicable(why);
    }
    if let Some(why) = scenario.requires.and_then(|r| missing(r, backend)) {
        return Cell::NotApplicable(why);
    }
    if let Some(why) = (backend.unavailable)() {
        return Cell::NotApplicable(why);
    }
    let topology = match Topology::build() {
        Ok(t) => t,
        Err(e) => return Cell::Fail(format!("building the topology: {e:#}")),
    };
    let topology = Arc::new(topology);
    let node_path = topology.node.path();
    let (s, b, a, t) = (
        scenario.clone(),
        backend.clone(),
        alternate.clone(),
        topology.clone(),
    );
    let outcome = std::thread::spawn(move || -> anyhow::Result<()> {
        crate::netns::enter_path(&node_path)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(steps(&s, &b, &a, &t, family))
    })
    .join();
    drop(topology);
    match outcome {
        Ok(Ok(())) => Cell::Pass,
        Ok(Err(e)) => Cell::Fail(format!("{e:#}")),
        Err(_) => Cell::Fail("the scenario thread panicked".into()),
    }
}

async fn steps(
    s: &Scenario,
    backend: &Backend,
    alternate: &Backend,
    topo: &Topology,
    family: Family,
) -> anyhow::Result<()> {
    let node_path = topo.node.path();
    let mut current = backend.clone();
    let mut stack = Stack::new(&current, &node_path, family).await?;
    let mut last: Option<Vec<ProxyPlan>> = None;
    // The endpoint each sticky (source, destination) was kept on: a later sticky check of the
    // same pair must see the same one (affinity survives syncs and restarts) until cleanup.
    let mut sticky: BTreeMap<String, String> = BTreeMap::new();
    // Sockets of pinned UDP checks, kept for the whole scenario (one source port each).
    let mut pinned: BTreeMap<String, UdpSocket> = BTreeMap::new();
    for (i, step) in s.steps.iter().enumerate() {
        let at = |what: &str| format!("step {} ({what})", i + 1);
        match step {
            Step::Apply(yaml) => {
                let plans = plans_for(yaml, s.node, family).with_context(|| at("apply"))?;
                stack
                    .apply(&plans, last.as_deref())
                    .await
                    .with_context(|| at("apply"))?;
                last = Some(plans);
            }
            Step::Check(checks) => {
                let plans = last
                    .as_ref()
                    .ok_or_else(|| anyhow!("{}: nothing applied yet", at("check")))?;
                for c in checks {
                    let (written, proto) = parse_target(c.to)?;
                    for dst in crate::family::targets(written, family, s.node.families) {
                        let ip_family = IpFamily::of(&dst.ip());
                        let here = at(&format!("{:?} -> {dst}/{proto}", c.from));
                        let plan = plans
                            .iter()
                            .find(|p| p.family == ip_family)
                            .ok_or_else(|| anyhow!("{here}: this node has no {ip_family} plan"))?;
                        let observed = check(topo, plan, c, dst, proto, &mut pinned)
                            .with_context(|| here.clone())?;
                        if matches!(c.expect, Expect::Sticky { .. }) {
                            let pod = observed.iter().find_map(|o| match o {
                                Observed::Answered { pod, .. } => Some(pod.clone()),
                                _ => None,
                            });
                            let key = format!("{:?} {dst}", c.from);
                            match (sticky.get(&key), pod) {
                                (Some(before), Some(now)) if *before != now => bail!(
                                    "{here}: affinity lost: the client was kept on {before}, now {now}"
                                ),
                                (None, Some(now)) => {
                                    sticky.insert(key, now);
                                }
                                _ => {}
                            }
                        }
                    }
                }
            }
            Step::NodeCommand(cmd) => {
                topo.node
                    .exec(cmd[0], &cmd[1..])
                    .with_context(|| at("node command"))?;
            }
            Step::NodeOutput { command, contains } => {
                let out = topo
                    .node
                    .exec(command[0], &command[1..])
                    .with_context(|| at("node command"))?;
                for want in contains {
                    if !out.contains(want) {
                        bail!(
                            "{}: `{}` output lacks {want:?}:\n{out}",
                            at("node output"),
                            command.join(" ")
                        );
                    }
                }
            }
            Step::CleanupAndVerify => {
                stack.cleanup().await.with_context(|| at("cleanup"))?;
                verify_clean(&current, topo).with_context(|| at("cleanup"))?;
                last = None;
                sticky.clear();
            }
            Step::FullResync | Step::Restart => {
                let plans = last
                    .as_ref()
                    .ok_or_else(|| anyhow!("{}: nothing applied yet", at("resync")))?;
                if matches!(step, Step::Restart) {
                    stack = Stack::new(&current, &node_path, family)
                        .await
                        .with_context(|| at("restart"))?;
                }
                stack
                    .apply(plans, None)
                    .await
                    .with_context(|| at("full resync"))?;
            }
            Step::ForwardPolicyDrop => {
                for ip_family in family.ip_families() {
                    let iptables = iptables_of(&current, ip_family).ok_or_else(|| {
                        anyhow!("{}: not an iptables backend", at("forward policy"))
                    })?;
                    topo.node
                        .exec(iptables, &["-P", "FORWARD", "DROP"])
                        .with_context(|| at("forward policy"))?;
                }
            }
            Step::SwitchBackend => {
                stack
                    .cleanup()
                    .await
                    .with_context(|| at("switch: cleanup"))?;
                verify_clean(&current, topo).with_context(|| at("switch"))?;
                current = alternate.clone();
                stack = Stack::new(&current, &node_path, family)
                    .await
                    .with_context(|| at("switch"))?;
                last = None;
                sticky.clear();
            }
        }
    }
    Ok(())
}

fn verify_clean(backend: &Backend, topo: &Topology) -> anyhow::Result<()> {
    let left = (backend.leftovers)(&topo.node)?;
    if !left.is_empty() {
        bail!(
            "{} left objects behind after cleanup: {}",
            backend.name,
            left.join(", ")
        );
    }
    Ok(())
}

/// `ip:port/proto`.
pub fn parse_target(to: &str) -> anyhow::Result<(SocketAddr, Protocol)> {
    let (addr, proto) = to
        .rsplit_once('/')
        .ok_or_else(|| anyhow!("{to:?}: want ip:port/proto"))?;
    Ok((
        addr.parse()?,
        proto.parse().map_err(|e: String| anyhow!(e))?,
    ))
}

/// Checks one expectation at its target as written (IPv4), with fresh sockets: for tables run
/// outside the scenario runner (the faults table).
pub fn check_as_written(
    topo: &Topology,
    plan: &ProxyPlan,
    c: &Check,
) -> anyhow::Result<Vec<Observed>> {
    let (dst, proto) = parse_target(c.to)?;
    check(topo, plan, c, dst, proto, &mut BTreeMap::new())
}

/// Checks one expectation, sent to `dst` (the check's target in one family): first that it
/// agrees with `explain` on that family's plan, then with real packets. Returns what the probes
/// observed.
fn check(
    topo: &Topology,
    plan: &ProxyPlan,
    c: &Check,
    dst: SocketAddr,
    proto: Protocol,
    pinned: &mut BTreeMap<String, UdpSocket>,
) -> anyhow::Result<Vec<Observed>> {
    let family = IpFamily::of(&dst.ip());
    let (ns, src) = topo.origin_in(c.from, family)?;
    let answer = explain(plan, src, dst.ip(), dst.port(), proto);
    let ports = agree_with_explain(topo, &c.expect, &answer.verdict, src)
        .with_context(|| format!("the scenario disagrees with explain ({})", answer.reason))?;
    let timeout = Duration::from_millis(1000);
    let observed = if c.pinned {
        if proto != Protocol::Udp {
            bail!("only UDP checks can keep their source port");
        }
        let socket = match pinned.entry(format!("{:?} {dst}", c.from)) {
            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => v.insert(pinned_udp(&ns.path(), dst)?),
        };
        (0..c.count).map(|_| udp_on(socket, timeout)).collect()
    } else {
        Probe {
            netns: ns.path(),
            dst,
            proto,
            count: c.count,
            timeout,
        }
        .run()?
    };
    judge(topo, &c.expect, &observed, src, &ports)?;
    Ok(observed)
}

/// Returns the endpoint port explain expects for each pod address.
fn agree_with_explain(
    topo: &Topology,
    expect: &Expect,
    verdict: &Verdict,
    src: IpAddr,
) -> anyhow::Result<BTreeMap<IpAddr, BTreeSet<u16>>> {
    match (expect, verdict) {
        (
            Expect::Pods { pods, masq }
            | Expect::Spread { pods, masq }
            | Expect::Sticky { pods, masq },
            Verdict::Dnat {
                endpoints,
                masquerade,
                ..
            },
        ) => {
            let want: Vec<IpAddr> = pods
                .iter()
                .map(|p| {
                    topo.origin_in(crate::topology::From::Pod(p), IpFamily::of(&src))
                        .map(|(_, ip)| ip)
                })
                .collect::<anyhow::Result<_>>()?;
            // A pod may be several endpoints (one per port).
            let mut got: Vec<IpAddr> = endpoints.iter().map(|e| e.ip).collect();
            let mut want_sorted = want.clone();
            got.sort();
            got.dedup();
            want_sorted.sort();
            if got != want_sorted {
                bail!("explain's endpoints are {got:?}, the scenario expects {want_sorted:?}");
            }
            let hairpin_only = endpoints.iter().all(|e| e.ip == src);
            if (*masquerade || hairpin_only) != *masq {
                bail!("explain says masquerade={masquerade} (hairpin={hairpin_only}), the scenario expects {masq}");
            }
            let mut ports: BTreeMap<IpAddr, BTreeSet<u16>> = BTreeMap::new();
            for e in endpoints {
                ports.entry(e.ip).or_default().insert(e.port);
            }
            Ok(ports)
        }
        (Expect::Reject, Verdict::Reject)
        | (Expect::Drop, Verdict::Drop)
        | (Expect::NotProxied | Expect::Direct(_), Verdict::Accept) => Ok(BTreeMap::new()),
        (e, v) => bail!("explain says {v:?}, the scenario expects {e:?}"),
    }
}

/// Compares what the probes saw with the expectation.
fn judge(
    topo: &Topology,
    expect: &Expect,
    observed: &[Observed],
    src: IpAddr,
    ports: &BTreeMap<IpAddr, BTreeSet<u16>>,
) -> anyhow::Result<()> {
    let summary = || {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for o in observed {
            *counts.entry(o.to_string()).or_default() += 1;
        }
        counts
            .iter()
            .map(|(k, v)| format!("{v}x {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match expect {
        Expect::Pods { pods, masq }
        | Expect::Spread { pods, masq }
        | Expect::Sticky { pods, masq } => {
            let mut hits: BTreeMap<&str, usize> = pods.iter().map(|p| (*p, 0)).collect();
            for o in observed {
                let Observed::Answered { pod, port, peer } = o else {
                    bail!("expected answers from {pods:?}, observed {}", summary());
                };
                let Some(count) = hits.get_mut(pod.as_str()) else {
                    bail!("expected answers from {pods:?}, observed {}", summary());
                };
                *count += 1;
                let pod_ip = topo
                    .pods
                    .iter()
                    .find(|p| p.name == pod)
                    .map(|p| p.address(IpFamily::of(&src)));
                if let Some(want) = pod_ip.and_then(|ip| ports.get(&ip)) {
                    if !want.contains(port) {
                        bail!("{pod} answered on port {port}, the plan says {want:?}");
                    }
                }
                let masqueraded = *peer != src;
                if masqueraded != *masq {
                    bail!(
                        "expected masquerade={masq}, {pod} saw peer {peer} for source {src} ({})",
                        summary()
                    );
                }
            }
            match expect {
                Expect::Spread { .. } => {
                    spread_ok(&hits, observed.len()).map_err(|e| anyhow!("{e} ({})", summary()))
                }
                Expect::Sticky { .. } if hits.values().filter(|n| **n > 0).count() != 1 => {
                    bail!("expected one sticky endpoint, observed {}", summary())
                }
                _ => Ok(()),
            }
        }
        Expect::Direct(want) => {
            let ok = observed
                .iter()
                .all(|o| matches!(o, Observed::Answered { pod, peer, .. } if pod == want && *peer == src));
            if ok {
                Ok(())
            } else {
                bail!(
                    "expected {want} to answer directly, seeing {src}; observed {}",
                    summary()
                )
            }
        }
        Expect::Reject if observed.iter().all(|o| *o == Observed::Refused) => Ok(()),
        Expect::Drop if observed.iter().all(|o| *o == Observed::TimedOut) => Ok(()),
        // Untouched: routed away to the sink, or refused by the node's own stack. A timeout
        // is not accepted: every untranslated packet has somewhere to be answered.
        Expect::NotProxied
            if observed.iter().all(|o| {
                *o == Observed::Refused
                    || matches!(o, Observed::Answered { pod, .. } if pod == crate::topology::SINK)
            }) =>
        {
            Ok(())
        }
        _ => bail!("expected {expect:?}, observed {}", summary()),
    }
}

/// Every endpoint hit, and Pearson's chi-square below the p = 0.001 critical value.
fn spread_ok(hits: &BTreeMap<&str, usize>, total: usize) -> Result<(), String> {
    if let Some((pod, _)) = hits.iter().find(|(_, n)| **n == 0) {
        return Err(format!("{pod} never answered"));
    }
    let k = hits.len();
    let expected = total as f64 / k as f64;
    let chi2: f64 = hits
        .values()
        .map(|n| (*n as f64 - expected).powi(2) / expected)
        .sum();
    // Critical values of the chi-square distribution at p = 0.001 for 1..=5 degrees of freedom.
    let critical = [10.83, 13.82, 16.27, 18.47, 20.52];
    let limit = critical.get(k.saturating_sub(2)).copied().unwrap_or(20.52);
    if chi2 > limit {
        return Err(format!(
            "uneven spread: chi-square {chi2:.1} > {limit} for {k} endpoints"
        ));
    }
    Ok(())
}

/// The `iptables` binary of an iptables backend (by its conformance name) for `family`.
fn iptables_of(backend: &Backend, family: IpFamily) -> Option<&'static str> {
    match (backend.name.as_str(), family) {
        ("iptables-nft", IpFamily::V4) => Some("iptables-nft"),
        ("iptables-legacy", IpFamily::V4) => Some("iptables-legacy"),
        ("iptables-nft", IpFamily::V6) => Some("ip6tables-nft"),
        ("iptables-legacy", IpFamily::V6) => Some("ip6tables-legacy"),
        _ => None,
    }
}

/// Why a requirement is not met here, if it is not.
fn missing(r: Requirement, backend: &Backend) -> Option<String> {
    match r {
        Requirement::IptablesForward => iptables_of(backend, IpFamily::V4).is_none().then(|| {
            format!(
                "{} does not filter in iptables' FORWARD chain: a drop policy there is final for \
                 traffic another table accepts (netfilter base-chain semantics)",
                backend.name
            )
        }),
        Requirement::Sctp => {
            let protocols = std::fs::read_to_string("/proc/net/protocols").unwrap_or_default();
            (!protocols.lines().any(|l| l.starts_with("SCTP"))).then(|| {
                "this kernel has no SCTP (CONFIG_IP_SCTP unset: /proc/net/protocols lists no SCTP)".to_string()
            })
        }
    }
}
