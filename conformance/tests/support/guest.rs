//! Running one of this test binary's tests inside a Debian 6.1 guest (the host kernel has no
//! IPVS): the binary and the agent go in as the payload, the guest runs the named test with
//! `--ignored --exact` (guest-only tests are `#[ignore]`d so the host never runs them), and
//! its output comes back. One VM at a time per test binary.

use std::sync::Mutex;
use std::time::{Duration, Instant};
use switchyard_conformance::netns::require_root;
use switchyard_conformance::vm::{Kernel, Payload, Vm};

/// Where the guest finds the agent binary ([`super::agent_binary`] reads it).
pub const AGENT_ENV: &str = "SWYD_AGENT";

static ONE_VM: Mutex<()> = Mutex::new(());

/// Boots the 6.1 guest, runs `test` of the current test binary there with `env` passed on,
/// and fails with the guest's output unless that test passed. Returns the guest's stdout.
pub fn run_test_in_vm(test: &str, env: &[&str], timeout: Duration) -> String {
    require_root().expect("VM tests need root (qemu, namespaces in the guest)");
    let _one = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
    let vm = Vm::new(Kernel::Debian61)
        .unwrap_or_else(|e| panic!("cannot prepare the debian-6.1 VM: {e}"));
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut payload = Payload::new([
        "/payload/tests",
        test,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .file(exe, "/payload/tests")
    .file(super::agent_binary(), "/payload/switchyard")
    .env(AGENT_ENV, "/payload/switchyard")
    .env("RUST_BACKTRACE", "1")
    .timeout(timeout);
    for key in env {
        if let Ok(v) = std::env::var(key) {
            payload = payload.env(*key, v);
        }
    }
    let started = Instant::now();
    let out = vm
        .run(&payload)
        .unwrap_or_else(|e| panic!("{test} in the debian-6.1 VM: {e}"));
    println!(
        "{test} in the debian-6.1 VM: exit {} after {:.1}s (boot included)\n{}",
        out.exit_code,
        started.elapsed().as_secs_f64(),
        out.stdout
    );
    let tail: Vec<&str> = out.console.lines().rev().take(60).collect();
    assert!(
        out.exit_code == 0 && out.stdout.contains("1 passed"),
        "{test} failed in the VM (exit {}); console tail:\n{}",
        out.exit_code,
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    out.stdout
}
