//! Running the faults table: one topology per (fault, backend), the steps of the module docs.

use super::{table, Fault};
use crate::matrix::{Cell, Matrix};
use crate::netns::require_root;
use crate::runner::{check_as_written, plan_for, Backend, Options};
use crate::scenario::NodeSettings;
use crate::topology::Topology;
use anyhow::{anyhow, bail, Context as _};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use switchyard_core::{diff, Dataplane, IpFamily};

/// Runs every fault that applies to each backend; a fault that applies to none of them is
/// left out of the matrix, one that applies to some is "n/a" for the others.
pub fn run(backends: &[Backend], faults: &[Fault], options: &Options) -> anyhow::Result<Matrix> {
    require_root()?;
    let started = Instant::now();
    let selected: Vec<&Fault> = faults
        .iter()
        .filter(|f| backends.iter().any(|b| f.applies_to(&b.name)))
        .filter(|f| {
            options
                .filter
                .as_ref()
                .is_none_or(|x| f.name.contains(x.as_str()))
        })
        .collect();
    let mut jobs = Vec::new();
    for (fi, f) in selected.iter().enumerate() {
        for (bi, b) in backends.iter().enumerate() {
            jobs.push((fi, bi, (*f).clone(), b.clone()));
        }
    }
    let jobs = Arc::new(Mutex::new(jobs));
    let results = Arc::new(Mutex::new(BTreeMap::new()));
    let workers: Vec<_> = (0..options.parallel.max(1))
        .map(|_| {
            let (jobs, results) = (jobs.clone(), results.clone());
            std::thread::spawn(move || loop {
                let Some((fi, bi, fault, backend)) = jobs.lock().ok().and_then(|mut j| j.pop())
                else {
                    return;
                };
                let cell = if !fault.applies_to(&backend.name) {
                    Cell::NotApplicable(format!("a fault of {}", fault.backends.join(", ")))
                } else if let Some(why) = (backend.unavailable)() {
                    // IPVS mode on a kernel without IPVS (this host's): its rows run in the VM.
                    Cell::NotApplicable(why)
                } else {
                    run_one(&fault, &backend)
                };
                if let Ok(mut r) = results.lock() {
                    r.insert((fi, bi), cell);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| anyhow!("a faults worker panicked"))?;
    }
    let results = results
        .lock()
        .map_err(|_| anyhow!("results lock poisoned"))?;
    let rows = selected
        .iter()
        .enumerate()
        .map(|(fi, f)| {
            let cells = (0..backends.len())
                .map(|bi| {
                    results
                        .get(&(fi, bi))
                        .cloned()
                        .unwrap_or(Cell::Fail("did not run".into()))
                })
                .collect();
            (f.name.to_string(), cells)
        })
        .collect();
    Ok(Matrix {
        backends: backends.iter().map(|b| b.name.clone()).collect(),
        rows,
        wall_time: started.elapsed(),
    })
}

/// One cell: its own topology, torn down afterwards whatever happens.
pub fn run_one(fault: &Fault, backend: &Backend) -> Cell {
    let topology = match Topology::build() {
        Ok(t) => Arc::new(t),
        Err(e) => return Cell::Fail(format!("building the topology: {e:#}")),
    };
    let (f, b, t) = (fault.clone(), backend.clone(), topology.clone());
    let outcome = std::thread::spawn(move || -> anyhow::Result<()> {
        let node_path = t.node.path();
        crate::netns::enter_path(&node_path)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let mut dataplane = (b.factory)(&node_path, IpFamily::V4);
            dataplane.probe().await.context("probe")?;
            steps(&f, &b, &t, dataplane.as_mut()).await
        })
    })
    .join();
    drop(topology);
    match outcome {
        Ok(Ok(())) => Cell::Pass,
        Ok(Err(e)) => Cell::Fail(format!("{e:#}")),
        Err(_) => Cell::Fail("the fault's thread panicked".into()),
    }
}

async fn steps(
    fault: &Fault,
    backend: &Backend,
    topo: &Topology,
    dataplane: &mut dyn Dataplane,
) -> anyhow::Result<()> {
    let [before, after] = table::manifests();
    let old = plan_for(&before, NodeSettings::default())?;
    let plan = plan_for(&after, NodeSettings::default())?;
    dataplane.apply(&old, None).await.context("full sync")?;
    let changes = diff(&old, &plan);
    dataplane
        .apply(&plan, Some(&changes))
        .await
        .context("incremental sync")?;
    let baseline = |when: &str| -> anyhow::Result<()> {
        for c in table::baseline().iter().chain([&fault.breaks]) {
            check_as_written(topo, &plan, c)
                .with_context(|| format!("{when}: {:?} -> {}", c.from, c.to))?;
        }
        Ok(())
    };
    baseline("before tampering")?;
    let drift = dataplane
        .check()
        .await
        .context("check before tampering")?
        .ok_or_else(|| {
            anyhow!(
                "{}: check() does not compare the kernel (returns None)",
                backend.name
            )
        })?;
    if !drift.is_empty() {
        bail!("check() reports drift nobody caused: {drift}");
    }
    for cmd in fault.commands(&backend.name) {
        topo.node
            .exec("sh", &["-c", &cmd])
            .with_context(|| format!("tampering: {cmd}"))?;
    }
    if check_as_written(topo, &plan, &fault.breaks).is_ok() {
        bail!(
            "the tampering did not break {:?} -> {}: the row proves nothing",
            fault.breaks.from,
            fault.breaks.to
        );
    }
    let drift = dataplane
        .check()
        .await
        .context("check after tampering")?
        .unwrap_or_default();
    if drift.is_empty() {
        bail!("check() did not notice the tampering");
    }
    tracing::info!(fault = fault.name, backend = %backend.name, "drift found: {drift}");
    dataplane
        .apply(&plan, None)
        .await
        .context("repair (full sync)")?;
    baseline("after the repair")?;
    let drift = dataplane.check().await.context("check after the repair")?;
    if let Some(d) = drift.filter(|d| !d.is_empty()) {
        bail!("drift remains after the repair: {d}");
    }
    Ok(())
}
