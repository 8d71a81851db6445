//! `memory::release_freed` gives what was freed back to the system at once (DESIGN-NOTES 287):
//! with mimalloc as the global allocator, as in the agent binary.

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The resident set of this process, in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("a VmRSS line");
    kb / 1024.0
}

#[test]
fn a_full_syncs_transients_leave_the_resident_set() {
    // Like a full sync's transaction: many small blocks, 96 MiB in all, touched, then freed.
    let before = rss_mib();
    let blocks: Vec<Vec<u8>> = (0..96 * 1024).map(|i| vec![i as u8; 1024]).collect();
    let held = rss_mib();
    drop(blocks);
    let freed = rss_mib();
    switchyard_agent::memory::release_freed();
    let released = rss_mib();
    println!(
        "RSS before {before:.1} MiB, holding {held:.1}, freed {freed:.1}, released {released:.1}"
    );
    assert!(
        held - before > 80.0,
        "the blocks were not resident: {before:.1} -> {held:.1}"
    );
    assert!(
        released < before + 24.0,
        "freed memory stayed resident after release_freed: {released:.1} MiB, {before:.1} before"
    );
}
