//! First-packet latency: connect-to-first-byte of new TCP connections from a pod on the node
//! through a ClusterIP to a pod on the other node, with `n` services programmed (the others
//! one endpoint each), against the floor — a direct connection to the same pod with no proxy
//! rules (conntrack and NAT hooks on). Rules on / rules off are measured back to back in
//! pairs and the median pair ratio is the figure (a virtual machine drifts by tens of percent
//! within seconds; DESIGN-NOTES 36).

use crate::mode::{Backend, Mode};
use std::net::SocketAddr;
use std::sync::mpsc;
use switchyard_conformance::netns::enter_path;
use switchyard_conformance::probe::{connect_latencies, floor_latencies, quantile_us};
use switchyard_conformance::topology::{From, Topology};
use switchyard_core::ProxyPlan;
use switchyard_synthetic::{add_service, cluster, plan_of};

const SAMPLES: usize = 3000;
const WARMUP: usize = 1000;
/// Rules-on / rules-off pairs per scale.
pub const PAIRS: usize = 3;
/// The pod every measured connection ends at.
const POD: &str = "10.244.2.10:8080";

/// One scale's result: per pair, (ClusterIP p50, floor p50) in microseconds.
#[derive(Debug, Clone)]
pub struct Latency {
    pub services: usize,
    pub pairs: Vec<(f64, f64)>,
}

impl Latency {
    /// The median of the pairs' ratios.
    pub fn ratio(&self) -> f64 {
        let mut r: Vec<f64> = self.pairs.iter().map(|(on, off)| on / off).collect();
        r.sort_by(f64::total_cmp);
        r.get(r.len() / 2).copied().unwrap_or(f64::NAN)
    }

    /// The pair whose ratio is the median (its two p50s are the figures shown).
    pub fn median_pair(&self) -> (f64, f64) {
        let ratio = self.ratio();
        self.pairs
            .iter()
            .copied()
            .find(|(on, off)| on / off == ratio)
            .unwrap_or((f64::NAN, f64::NAN))
    }
}

enum Cmd {
    Apply(Box<ProxyPlan>),
    Cleanup,
}

/// Measures `mode` at every scale in one topology.
pub fn run(mode: Mode, scales: &[usize]) -> anyhow::Result<Vec<Latency>> {
    let topo = Topology::build()?;
    let client = topo.origin(From::Pod("pod-a1"))?.0.path();
    let pod: SocketAddr = POD.parse()?;
    let node = topo.node.path();
    // The backend lives on a thread inside the node's namespace (a netlink socket stays in
    // the namespace it was created in).
    let (tx, rx) = mpsc::channel::<Option<Cmd>>();
    let (done_tx, done_rx) = mpsc::channel::<anyhow::Result<()>>();
    let worker = std::thread::spawn(move || {
        let setup = (|| -> anyhow::Result<(tokio::runtime::Runtime, Backend)> {
            enter_path(&node)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let mut backend = mode
                .backend(&node)
                .ok_or_else(|| anyhow::anyhow!("{}: no backend", mode.name()))?;
            rt.block_on(backend.probe())?;
            Ok((rt, backend))
        })();
        let mut setup = setup.map_err(|e| format!("{e:#}"));
        while let Ok(Some(cmd)) = rx.recv() {
            let r = match (&mut setup, cmd) {
                (Ok((rt, b)), Cmd::Apply(plan)) => rt
                    .block_on(b.apply(&plan, None))
                    .map(drop)
                    .map_err(anyhow::Error::from),
                (Ok((rt, b)), Cmd::Cleanup) => {
                    rt.block_on(b.cleanup()).map_err(anyhow::Error::from)
                }
                (Err(e), _) => Err(anyhow::anyhow!("{e}")),
            };
            let _ = done_tx.send(r);
        }
    });
    let send = |cmd: Cmd| -> anyhow::Result<()> {
        tx.send(Some(cmd))?;
        done_rx.recv()?
    };
    let mut out = Vec::new();
    for &n in scales {
        let mut state = cluster(n.saturating_sub(1), 1);
        add_service(
            &mut state,
            n.saturating_sub(1),
            1,
            Some(&[pod.ip().to_string()]),
        );
        let plan = plan_of(&state);
        let vip = plan
            .services
            .values()
            .map(|s| s.cluster_ip)
            .max()
            .ok_or_else(|| anyhow::anyhow!("empty plan"))?;
        let vip = SocketAddr::new(vip, 80);
        let mut pairs = Vec::new();
        for _ in 0..PAIRS {
            send(Cmd::Apply(Box::new(plan.clone())))?;
            let on = quantile_us(&connect_latencies(&client, vip, SAMPLES, WARMUP)?, 0.5);
            send(Cmd::Cleanup)?;
            let off = quantile_us(
                &floor_latencies(&topo.node, &client, pod, SAMPLES, WARMUP)?,
                0.5,
            );
            pairs.push((on, off));
        }
        eprintln!(
            "datapath {:16} services={n:>6}  ClusterIP/floor p50 pairs (us): {:?}",
            mode.name(),
            pairs
        );
        out.push(Latency { services: n, pairs });
    }
    tx.send(None)?;
    let _ = worker.join();
    Ok(out)
}
