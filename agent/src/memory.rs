//! Giving back the memory a full sync freed.
//!
//! A full sync builds the whole ruleset's transaction and its encoded batch (at 10k Services
//! some 15 MB) and frees them when the kernel has answered. mimalloc, the agent's allocator
//! (`main.rs`), returns freed pages to the system only after its purge delay and on later
//! allocator activity; on a quiet node that can be never, so the node would carry the first
//! sync's transients as resident memory, which is what a DaemonSet's memory limit is set
//! against (DESIGN-NOTES 287). Full syncs are rare (start, failures, hourly with the API
//! source), so collecting right after them costs nothing that matters.

/// Asks mimalloc to collect now: free pages go back to the system at once. Harmless when
/// mimalloc is not the global allocator (the tests, the conformance library): it then only
/// tidies mimalloc's own, unused, heap.
#[allow(unsafe_code)]
pub fn release_freed() {
    // SAFETY: `mi_collect` takes no pointers and has no preconditions; mimalloc documents it
    // as callable from any thread at any time (it collects the calling thread's heap and, with
    // `force`, purges the free pages of every arena).
    unsafe { libmimalloc_sys::mi_collect(true) }
}
