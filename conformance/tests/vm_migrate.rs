//! `switchyard --cleanup-kube-proxy` on a node that ran kube-proxy in IPVS mode, in a Debian
//! 6.1 guest (this host's kernel has no IPVS): kube-proxy's address-based virtual services
//! (both families) and `kube-ipvs0` go; Switchyard's own firewall-mark services, another
//! agent's firewall-mark service and a service inside `--ipvs-exclude-cidrs` stay. Root,
//! qemu (.ci/install-deps) and the agent binary (`cargo build -p switchyard-agent`) are
//! needed: without them the test fails and says so.

mod support;

use std::time::Duration;
use support::run_agent_script;
use switchyard_conformance::netns::require_root;
use switchyard_conformance::vm::{Kernel, Vm};

/// kube-proxy's leftovers (what its IPVS mode creates: a dummy interface holding the
/// service addresses, one virtual service per address and port), Switchyard's services,
/// and two services that are nobody's to delete.
const SCRIPT: &str = "set -e
/usr/sbin/ip link add kube-ipvs0 type dummy
/usr/sbin/ip addr add 10.96.0.1/32 dev kube-ipvs0
ipvsadm -A -t 10.96.0.1:443 -s rr
ipvsadm -a -t 10.96.0.1:443 -r 10.244.1.5:6443 -m
ipvsadm -A -u 10.96.0.10:53 -s rr
ipvsadm -A -t 192.168.0.10:30080 -s rr
ipvsadm -A -t [fd00:96::1]:443 -s rr
ipvsadm -A -t 192.168.50.1:80 -s rr
ipvsadm -A -f 7 -s rr
/payload/switchyard --mode ipvs --manifests /payload/cluster.yaml --cluster-cidr 10.244.0.0/16 --once
echo BEFORE
ipvsadm -Ln
/payload/switchyard --cleanup-kube-proxy --ipvs-exclude-cidrs 192.168.50.0/24
echo AFTER
ipvsadm -Ln
/usr/sbin/ip link show kube-ipvs0 >/dev/null 2>&1 || echo no-kube-ipvs0";

#[test]
fn cleanup_kube_proxy_deletes_kube_proxys_ipvs_services_and_nothing_else() {
    require_root().expect("root");
    let vm = match Vm::new(Kernel::Debian61) {
        Ok(vm) => vm,
        Err(e) => panic!("cannot prepare the VM: {e}"),
    };
    let out = run_agent_script(&vm, SCRIPT, Duration::from_secs(300));
    println!("{}", out.stdout);
    assert_eq!(out.exit_code, 0, "{}", out.console);
    let (before, after) = out
        .stdout
        .split_once("AFTER")
        .expect("the script got to the cleanup");
    let fwm = |text: &str| text.lines().filter(|l| l.starts_with("FWM")).count();
    for gone in [
        "10.96.0.1:443",
        "10.96.0.10:53",
        "192.168.0.10:30080",
        "[fd00:96::1]:443",
    ] {
        assert!(before.contains(gone), "{gone} was created:\n{before}");
        assert!(!after.contains(gone), "{gone} is kube-proxy's:\n{after}");
    }
    assert!(
        after.contains("192.168.50.1:80"),
        "inside --ipvs-exclude-cidrs:\n{after}"
    );
    assert!(
        after
            .lines()
            .any(|l| l.split_whitespace().eq(["FWM", "7", "rr"])),
        "another agent's firewall-mark service stays:\n{after}"
    );
    assert!(fwm(before) > 1, "Switchyard synced:\n{before}");
    assert_eq!(fwm(after), fwm(before), "every firewall-mark service stays");
    assert!(after.contains("no-kube-ipvs0"), "{after}");
}
