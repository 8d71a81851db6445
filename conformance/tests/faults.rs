//! The faults table (`switchyard_conformance::faults`) for every backend in this build: each
//! tampering breaks real traffic, `Dataplane::check` notices it, a full sync repairs it.
//! Needs root (network namespaces): without it the test fails and says so.

use switchyard_conformance::{backends, faults, Options};

#[test]
fn every_tampering_is_detected_and_repaired_in_every_mode() {
    let mut list = backends::by_mode("nftables").expect("nftables backend");
    list.extend(backends::by_mode("iptables").expect("iptables backends"));
    let matrix = match faults::run(&list, &faults::all(), &Options::default()) {
        Ok(m) => m,
        Err(e) => panic!("the faults table could not run: {e:#}"),
    };
    println!("{matrix}");
    assert_eq!(matrix.failures(), 0, "faults failures:\n{matrix}");
    assert_eq!(
        matrix.passes(),
        faults::all()
            .iter()
            .map(|f| list.iter().filter(|b| f.applies_to(&b.name)).count())
            .sum::<usize>(),
        "every applicable cell passes:\n{matrix}"
    );
}
