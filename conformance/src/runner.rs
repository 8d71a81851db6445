//! Running scenarios against backends: one topology per (scenario, backend), several at once.

use crate::matrix::{Cell, Matrix};
use crate::netns::{require_root, Netns};
use crate::probe::{Observed, Probe};
use crate::scenario::{Check, Expect, NodeSettings, Requirement, Scenario, Step};
use crate::topology::{Topology, CLUSTER_CIDR, NODE_NAME};
use anyhow::{anyhow, bail, Context as _};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_agent::source::Manifests;
use switchyard_core::{
    diff, explain, plan, Dataplane, IpFamily, NodePortAddresses, Protocol, ProxyConfig, ProxyPlan,
    Verdict,
};

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
    /// Scenario × backend cells run at once (each has its own namespaces).
    pub parallel: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            filter: None,
            parallel: 4,
        }
    }
}

/// Runs `scenarios` against every backend. `SwitchBackend` steps switch to the next backend in
/// the list (wrapping), so a mode switch is proven between real backends.
pub fn run(
    backends: &[Backend],
    scenarios: &[Scenario],
    options: &Options,
) -> anyhow::Result<Matrix> {
    require_root()?;
    if backends.is_empty() {
        bail!("no backend to test");
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
    let mut jobs = VecDeque::new();
    for (si, s) in selected.iter().enumerate() {
        for (bi, _) in backends.iter().enumerate() {
            jobs.push_back((si, bi, (*s).clone()));
        }
    }
    let jobs = Arc::new(Mutex::new(jobs));
    let results = Arc::new(Mutex::new(BTreeMap::new()));
    let backends: Arc<Vec<Backend>> = Arc::new(backends.to_vec());
    let workers: Vec<_> = (0..options.parallel.max(1))
        .map(|_| {
            let (jobs, results, backends) = (jobs.clone(), results.clone(), backends.clone());
            std::thread::spawn(move || loop {
                let Some((si, bi, scenario)) = jobs.lock().ok().and_then(|mut j| j.pop_front())
                else {
                    return;
                };
                let alternate = &backends[(bi + 1) % backends.len()];
                let cell = run_one(&scenario, &backends[bi], alternate);
                if let Ok(mut r) = results.lock() {
                    r.insert((si, bi), cell);
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
            let cells = (0..backends.len())
                .map(|bi| {
                    results
                        .get(&(si, bi))
                        .cloned()
                        .unwrap_or(Cell::Fail("did not run".into()))
                })
                .collect();
            (s.name.to_string(), cells)
        })
        .collect();
    Ok(Matrix {
        backends: backends.iter().map(|b| b.name.clone()).collect(),
        rows,
        wall_time: started.elapsed(),
    })
}

/// One cell: its own topology, torn down afterwards whatever happens.
pub fn run_one(scenario: &Scenario, backend: &Backend, alternate: &Backend) -> Cell {
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
        rt.block_on(steps(&s, &b, &a, &t))
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
) -> anyhow::Result<()> {
    let node_path = topo.node.path();
    let mut current = backend.clone();
    let mut dataplane = new_dataplane(&current, &node_path).await?;
    let mut last: Option<ProxyPlan> = None;
    // The endpoint each sticky (source, destination) was kept on: a later sticky check of the
    // same pair must see the same one (affinity survives syncs and restarts) until cleanup.
    let mut sticky: BTreeMap<String, String> = BTreeMap::new();
    for (i, step) in s.steps.iter().enumerate() {
        let at = |what: &str| format!("step {} ({what})", i + 1);
        match step {
            Step::Apply(yaml) => {
                let plan = plan_for(yaml, s.node).with_context(|| at("apply"))?;
                let changes = last
                    .as_ref()
                    .map(|old| diff(old, &plan))
                    .filter(|c| !c.requires_full_sync());
                dataplane
                    .apply(&plan, changes.as_ref())
                    .await
                    .with_context(|| at("apply"))?;
                last = Some(plan);
            }
            Step::Check(checks) => {
                let plan = last
                    .as_ref()
                    .ok_or_else(|| anyhow!("{}: nothing applied yet", at("check")))?;
                for c in checks {
                    let here = at(&format!("{:?} -> {}", c.from, c.to));
                    let observed = check(topo, plan, c).with_context(|| here.clone())?;
                    if matches!(c.expect, Expect::Sticky { .. }) {
                        let pod = observed.iter().find_map(|o| match o {
                            Observed::Answered { pod, .. } => Some(pod.clone()),
                            _ => None,
                        });
                        let key = format!("{:?} {}", c.from, c.to);
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
                dataplane.cleanup().await.with_context(|| at("cleanup"))?;
                verify_clean(&current, topo).with_context(|| at("cleanup"))?;
                last = None;
                sticky.clear();
            }
            Step::FullResync | Step::Restart => {
                let plan = last
                    .as_ref()
                    .ok_or_else(|| anyhow!("{}: nothing applied yet", at("resync")))?;
                if matches!(step, Step::Restart) {
                    dataplane = new_dataplane(&current, &node_path)
                        .await
                        .with_context(|| at("restart"))?;
                }
                dataplane
                    .apply(plan, None)
                    .await
                    .with_context(|| at("full resync"))?;
            }
            Step::ForwardPolicyDrop => {
                let iptables = iptables_of(&current)
                    .ok_or_else(|| anyhow!("{}: not an iptables backend", at("forward policy")))?;
                topo.node
                    .exec(iptables, &["-P", "FORWARD", "DROP"])
                    .with_context(|| at("forward policy"))?;
            }
            Step::SwitchBackend => {
                dataplane
                    .cleanup()
                    .await
                    .with_context(|| at("switch: cleanup"))?;
                verify_clean(&current, topo).with_context(|| at("switch"))?;
                current = alternate.clone();
                dataplane = new_dataplane(&current, &node_path)
                    .await
                    .with_context(|| at("switch"))?;
                last = None;
                sticky.clear();
            }
        }
    }
    Ok(())
}

async fn new_dataplane(backend: &Backend, node_path: &Path) -> anyhow::Result<Box<dyn Dataplane>> {
    let mut d = (backend.factory)(node_path, IpFamily::V4);
    d.probe()
        .await
        .with_context(|| format!("probing {}", backend.name))?;
    Ok(d)
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

/// The plan for a scenario's manifests, as node-a with the suite's node settings. Scenario
/// manifests must be clean: a warning is a bug in the table.
pub fn plan_for(yaml: &str, node: NodeSettings) -> anyhow::Result<ProxyPlan> {
    let mut m = Manifests::default();
    m.add_text(Path::new("scenario.yaml"), yaml)?;
    let state = m.to_state(NODE_NAME);
    let mut config = ProxyConfig::new(IpFamily::V4, NODE_NAME)
        .with_cluster_cidrs([CLUSTER_CIDR.parse()?])
        .with_masquerade_all(node.masquerade_all);
    if node.nodeports_on_all_addresses {
        config = config.with_node_port_addresses(NodePortAddresses::All);
    }
    if let Some(cidr) = node.service_cidr {
        config = config.with_service_cidrs([cidr.parse()?]);
    }
    let plan = plan(&state, &config);
    if plan.warnings.len() != node.warnings {
        bail!(
            "scenario manifests gave {} warning(s), the scenario expects {}: {:?}",
            plan.warnings.len(),
            node.warnings,
            plan.warnings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        );
    }
    Ok(plan)
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

/// Checks one expectation: first that it agrees with `explain`, then with real packets.
/// Returns what the probes observed.
fn check(topo: &Topology, plan: &ProxyPlan, c: &Check) -> anyhow::Result<Vec<Observed>> {
    let (ns, src) = topo.origin(c.from)?;
    let (dst, proto) = parse_target(c.to)?;
    let answer = explain(plan, src, dst.ip(), dst.port(), proto);
    let ports = agree_with_explain(topo, &c.expect, &answer.verdict, src)
        .with_context(|| format!("the scenario disagrees with explain ({})", answer.reason))?;
    let observed = Probe {
        netns: ns.path(),
        dst,
        proto,
        count: c.count,
        timeout: Duration::from_millis(1000),
    }
    .run()?;
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
                .map(|p| topo.origin(crate::topology::From::Pod(p)).map(|(_, ip)| ip))
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
                let pod_ip = topo.pods.iter().find(|p| p.name == pod).map(|p| p.ip);
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

/// The `iptables` binary of an iptables backend (by its conformance name).
fn iptables_of(backend: &Backend) -> Option<&'static str> {
    match backend.name.as_str() {
        "iptables-nft" => Some("iptables-nft"),
        "iptables-legacy" => Some("iptables-legacy"),
        _ => None,
    }
}

/// Why a requirement is not met here, if it is not.
fn missing(r: Requirement, backend: &Backend) -> Option<String> {
    match r {
        Requirement::IptablesForward => iptables_of(backend).is_none().then(|| {
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
