//! IPVS mode's rows of the faults table (`switchyard_conformance::faults`) in a Debian 6.1
//! guest (this host's kernel has no IPVS): someone deletes a virtual service, a destination,
//! the dummy interface, an address on it, the helper table, a chain, a jump or an element;
//! real traffic breaks, `Dataplane::check` names it, a full sync repairs it. And the agent
//! binary does it on its own within a sync period, with its log line and metrics. Root and
//! qemu (.ci/install-deps) are needed, and the agent binary (`cargo build -p
//! switchyard-agent`): without them the tests fail and say so.

mod support;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use support::run_agent_script;
use switchyard_conformance::matrix::Cell;
use switchyard_conformance::netns::require_root;
use switchyard_conformance::vm::conformance::VmMatrix;
use switchyard_conformance::vm::{Kernel, Vm};
use switchyard_conformance::{faults, Family};

/// One VM at a time (each takes both cores under TCG).
static ONE_VM: Mutex<()> = Mutex::new(());

fn one_vm() -> MutexGuard<'static, ()> {
    ONE_VM.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn every_ipvs_tampering_is_detected_and_repaired_on_debian_6_1() {
    let _one = one_vm();
    require_root().expect("root");
    let vm = VmMatrix {
        kernel: Kernel::Debian61,
        exe: env!("CARGO_BIN_EXE_switchyard-conformance").into(),
        modes: vec!["ipvs".into()],
        filter: None,
        families: vec![Family::V4],
        parallel: 4,
        timeout: Duration::from_secs(1800),
    };
    let run = vm.run_faults().expect("vm faults");
    println!("{}", run.matrix);
    println!("{}: {:.1}s", vm.kernel, run.elapsed.as_secs_f64());
    if let Some(e) = &run.error {
        panic!("{e}\n{}", run.console.as_deref().unwrap_or_default());
    }
    let rows = faults::all()
        .iter()
        .filter(|f| f.applies_to("ipvs"))
        .count();
    assert!(
        rows >= 10,
        "ipvs has its own rows and the shared nftables ones"
    );
    assert_eq!(run.matrix.rows.len(), rows, "{}", run.matrix);
    for (fault, cells) in &run.matrix.rows {
        for cell in cells {
            assert_eq!(cell, &Cell::Pass, "{fault}:\n{}", run.matrix);
        }
    }
}

/// The agent in the guest with `--sync-period 1s`: a virtual service, a destination of
/// another one and the dummy interface are deleted behind its back; it logs what differs,
/// repairs within a period or two (waits bounded at 120 s), and counts it on /metrics.
const AGENT_REPAIRS: &str = r#"set -e
/usr/sbin/ip link set lo up
/payload/switchyard --mode ipvs --manifests /payload/cluster.yaml --cluster-cidr 10.244.0.0/16 \
  --sync-period 1s --metrics-bind-address 127.0.0.1:10249 --healthz-bind-address 127.0.0.1:10256 \
  >/tmp/agent.log 2>&1 &
agent=$!
wait_for() {
  i=0
  until grep -q "$1" /tmp/agent.log; do
    i=$((i + 1))
    if [ $i -gt 1200 ]; then echo "no '$1' within 120 s"; cat /tmp/agent.log; exit 1; fi
    sleep 0.1
  done
}
state() {
  ipvsadm -Ln | sed 's/  */ /g'
  /usr/sbin/ip -o addr show dev swyd-ipvs0 2>/dev/null | awk '{ print $4 }' | sort
}
wait_for synced
sleep 2
state >/tmp/before
first=$(ipvsadm -Ln | awk '$1 == "FWM" { v = $2; if (v < 0) v += 4294967296; printf "%.0f", v; exit }')
with_dest=$(ipvsadm -Ln | awk '$1 == "FWM" { n++; v = $2; if (v < 0) v += 4294967296; m = v } $1 == "->" && n >= 2 { printf "%.0f %s", m, $2; exit }')
ipvsadm -D -f "$first"
ipvsadm -d -f ${with_dest% *} -r ${with_dest#* }
/usr/sbin/ip link del swyd-ipvs0
echo "TAMPERED -f $first; -d -f $with_dest; swyd-ipvs0"
wait_for repaired
# The three deletions may straddle a check (one period is 1 s), so the repair can take two
# syncs: wait (bounded) until the state is back, and print every drift line.
i=0
until state >/tmp/after && diff -q /tmp/before /tmp/after >/dev/null; do
  i=$((i + 1))
  if [ $i -gt 240 ]; then echo "state not restored within 120 s"; diff /tmp/before /tmp/after || true; break; fi
  sleep 0.5
done
diff /tmp/before /tmp/after && echo SAME-STATE
grep -o 'rules changed behind our back.*' /tmp/agent.log
wget -qO- http://127.0.0.1:10249/metrics | grep '^switchyard_rules_drift'
kill $agent
"#;

#[test]
fn the_agent_repairs_ipvs_drift_on_debian_6_1() {
    let _one = one_vm();
    require_root().expect("root");
    let vm = match Vm::new(Kernel::Debian61) {
        Ok(vm) => vm,
        Err(e) => panic!("cannot prepare the VM: {e}"),
    };
    let out = run_agent_script(&vm, AGENT_REPAIRS, Duration::from_secs(400));
    println!("{}", out.stdout);
    assert_eq!(out.exit_code, 0, "{}\n{}", out.stdout, out.console);
    assert!(
        out.stdout.contains("SAME-STATE"),
        "the repair restores every service, destination and address:\n{}",
        out.stdout
    );
    // Every deletion is named by a drift line (one line, or two when the deletions straddled
    // a check).
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("rules changed behind our back"))
        .collect();
    for named in [
        "IPVS service -f",
        "destination",
        "interface swyd-ipvs0: missing",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(named)),
            "no drift line names {named:?}: {lines:#?}"
        );
    }
    let metric = |name: &str| -> u64 {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0)
    };
    assert!(
        metric("switchyard_rules_drift_detected_total") >= 1,
        "{}",
        out.stdout
    );
    assert!(
        metric("switchyard_rules_drift_repaired_total") >= 1,
        "{}",
        out.stdout
    );
}
