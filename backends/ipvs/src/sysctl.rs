//! The sysctls IPVS mode needs, as kube-proxy sets them. Written under `/proc/sys/net`, which
//! shows the network namespace of the writing thread.

use std::path::Path;
use switchyard_core::DataplaneError;

/// (path under /proc/sys, value, why)
fn wanted(strict_arp: bool) -> Vec<(&'static str, &'static str)> {
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
    // conn_reuse_mode=1 drops the first SYN of a client port that an IPVS connection in
    // TIME_WAIT still holds when conntrack is on (the client retries after 1 s): kube-proxy
    // #81775, fixed for kernels from 5.9 only where conntrack sees a reopened connection. The
    // VM's 6.1 still showed it (1-2 of 300 connections from one pod timed out at 1 s), so 0
    // on every kernel: a reused port goes to its previous destination, as its conntrack entry
    // would in the other modes; destinations deleted meanwhile are expired by
    // expire_nodest_conn.
    v.push(("net/ipv4/vs/conn_reuse_mode", "0"));
    if strict_arp {
        v.push(("net/ipv4/conf/all/arp_ignore", "1"));
        v.push(("net/ipv4/conf/all/arp_announce", "2"));
    }
    v
}

/// Sets every sysctl IPVS mode needs; the error names the one that failed.
pub fn apply(strict_arp: bool) -> Result<(), DataplaneError> {
    for (name, value) in wanted(strict_arp) {
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
    fn conntrack_and_reuse_always_arp_only_when_strict() {
        let names = |s| wanted(s).into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert!(names(false).contains(&"net/ipv4/vs/conntrack"));
        assert!(names(false).contains(&"net/ipv4/vs/conn_reuse_mode"));
        assert!(!names(false).contains(&"net/ipv4/conf/all/arp_ignore"));
        assert!(names(true).contains(&"net/ipv4/conf/all/arp_announce"));
    }
}
