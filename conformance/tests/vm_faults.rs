//! IPVS mode's rows of the faults table (`switchyard_conformance::faults`) in a Debian 6.1
//! guest (this host's kernel has no IPVS): someone deletes a virtual service, a destination,
//! the dummy interface, an address on it, the helper table, a chain, a jump or an element;
//! real traffic breaks, `Dataplane::check` names it, a full sync repairs it. Root and qemu
//! (.ci/install-deps) are needed: without them the test fails and says so.

use std::time::Duration;
use switchyard_conformance::matrix::Cell;
use switchyard_conformance::netns::require_root;
use switchyard_conformance::vm::conformance::VmMatrix;
use switchyard_conformance::vm::Kernel;
use switchyard_conformance::{faults, Family};

#[test]
fn every_ipvs_tampering_is_detected_and_repaired_on_debian_6_1() {
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
    assert!(rows >= 10, "ipvs has its own rows and the shared nftables ones");
    assert_eq!(run.matrix.rows.len(), rows, "{}", run.matrix);
    for (fault, cells) in &run.matrix.rows {
        for cell in cells {
            assert_eq!(cell, &Cell::Pass, "{fault}:\n{}", run.matrix);
        }
    }
}
