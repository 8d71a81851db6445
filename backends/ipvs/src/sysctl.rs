//! The sysctls IPVS mode needs, as kube-proxy sets them. Written under `/proc/sys/net`, which
//! shows the network namespace of the writing thread.

use std::path::Path;
use switchyard_core::plan::IpFamily;
use switchyard_core::DataplaneError;

/// (path under /proc/sys, value, why)
fn wanted(strict_arp: bool, kernel: (u32, u32)) -> Vec<(&'static str, &'static str)> {
    let mut v = vec![
        // Conntrack entries for IPVS connections: the masquerade rules need them.
        ("net/ipv4/vs/conntrack", "1"),
        // Drop packets of connections to a deleted destination at once, so clients
        // reconnect instead of hanging.
        ("net/ipv4/vs/expire_nodest_conn", "1"),
        // Expire persistence templates pointing at a quiesced (weight 0) destination.
        ("net/ipv4/vs/expire_quiescent_template", "1"),
        ("net/ipv4/ip_forward", "1"),
    ];
    // Before 5.9, conn_reuse_mode=1 stalls reused client ports for a second (kube-proxy
    // #81775); later kernels fixed most of it, and 0 breaks reused ports with conntrack on
    // (the VM's 6.1 showed timeouts in most scenarios with 0: DESIGN-NOTES 104).
    if kernel < (5, 9) {
        v.push(("net/ipv4/vs/conn_reuse_mode", "0"));
    }
    if strict_arp {
        v.push(("net/ipv4/conf/all/arp_ignore", "1"));
        v.push(("net/ipv4/conf/all/arp_announce", "2"));
    }
    v
}

/// The running kernel's (major, minor), from `/proc/sys/kernel/osrelease`.
fn kernel_version() -> Option<(u32, u32)> {
    let s = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let mut parts = s.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// IPv6 forwarding: needed for IPv6 service traffic to reach endpoints on other hosts, but not
/// written. The kernel has no `net.ipv6.vs` (IPVS's knobs above serve both families), and
/// kube-proxy sets no IPv6 sysctl either: turning `net.ipv6.conf.all.forwarding` on makes
/// every interface with `accept_ra=1` ignore router advertisements, which takes the default
/// route from a node that gets it by SLAAC. The node's network setup owns it; the IPv6 lane
/// only says when it is off. `strictARP` has no IPv6 counterpart to set: neighbour discovery
/// answers only for addresses of the interface asked, so the dummy's addresses stay silent.
const IPV6_FORWARDING: &str = "net/ipv6/conf/all/forwarding";

/// Warns (once per probe) when IPv6 forwarding is off; see [`IPV6_FORWARDING`].
fn check_ipv6_forwarding() {
    let path = Path::new("/proc/sys").join(IPV6_FORWARDING);
    match std::fs::read_to_string(&path) {
        Ok(v) if v.trim() == "0" => tracing::warn!(
            sysctl = "net.ipv6.conf.all.forwarding",
            "IPv6 forwarding is off: IPv6 service traffic to endpoints on other hosts will not \
             be forwarded (the node's network setup owns this sysctl; switchyard does not set it)"
        ),
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(sysctl = "net.ipv6.conf.all.forwarding", error = %e, "cannot read")
        }
    }
}

/// Sets every sysctl IPVS mode needs; the error names the one that failed. The IPVS ones are
/// shared by both families; the IPv6 lane checks IPv6 forwarding as well.
pub fn apply(strict_arp: bool, family: IpFamily) -> Result<(), DataplaneError> {
    if family == IpFamily::V6 {
        check_ipv6_forwarding();
    }
    let kernel = kernel_version().unwrap_or((0, 0));
    for (name, value) in wanted(strict_arp, kernel) {
        let path = Path::new("/proc/sys").join(name);
        let current = std::fs::read_to_string(&path).map_err(|source| DataplaneError::Io {
            step: format!("reading sysctl {}", name.replace('/', ".")),
            source,
        })?;
        if current.trim() != value {
            std::fs::write(&path, value).map_err(|source| DataplaneError::Io {
                step: format!("setting sysctl {}={value}", name.replace('/', ".")),
                source,
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::wanted;

    #[test]
    fn conn_reuse_mode_only_before_5_9_and_arp_only_when_strict() {
        let names = |s, k| wanted(s, k).into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert!(names(false, (6, 1)).contains(&"net/ipv4/vs/conntrack"));
        assert!(names(false, (5, 4)).contains(&"net/ipv4/vs/conn_reuse_mode"));
        assert!(!names(false, (6, 1)).contains(&"net/ipv4/vs/conn_reuse_mode"));
        assert!(!names(false, (6, 1)).contains(&"net/ipv4/conf/all/arp_ignore"));
        assert!(names(true, (6, 1)).contains(&"net/ipv4/conf/all/arp_announce"));
    }
}
