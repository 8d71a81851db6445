//! The whole conformance matrix for every backend in this build, as part of `cargo test`.
//! Needs root (network namespaces): without it the test fails and says so.

use switchyard_conformance::{backends, run, scenarios, Options};

#[test]
fn conformance_matrix_passes_for_every_backend() {
    let mut list = backends::by_mode("nftables").expect("nftables backend");
    list.extend(backends::by_mode("iptables").expect("iptables backends"));
    // Every family (IPv4, IPv6, dual-stack): three times the cells of one. Most of a cell's
    // time is spent waiting on probe timeouts, not CPU, so 8 at once (DESIGN-NOTES 185).
    let options = Options {
        parallel: 8,
        ..Options::default()
    };
    let matrix = match run(&list, &scenarios::all(), &options) {
        Ok(m) => m,
        Err(e) => panic!("conformance could not run: {e:#}"),
    };
    println!("{matrix}");
    assert_eq!(matrix.failures(), 0, "conformance failures:\n{matrix}");
    assert!(matrix.passes() >= 400, "too few passing cells:\n{matrix}");
}
