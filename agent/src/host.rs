//! Facts about this host that `core` needs but cannot read itself.

use anyhow::Context as _;
use futures_util::TryStreamExt as _;
use netlink_packet_route::address::AddressAttribute;
use std::net::IpAddr;

/// Every address configured on this host's interfaces, via an rtnetlink dump.
pub async fn local_addresses() -> anyhow::Result<Vec<IpAddr>> {
    let (connection, handle, _) =
        rtnetlink::new_connection().context("opening an rtnetlink socket")?;
    let task = tokio::spawn(connection);
    let mut dump = handle.address().get().execute();
    let mut out = Vec::new();
    while let Some(msg) = dump
        .try_next()
        .await
        .context("listing interface addresses")?
    {
        for attr in msg.attributes {
            if let AddressAttribute::Address(ip) = attr {
                out.push(ip);
            }
        }
    }
    task.abort();
    out.sort();
    out.dedup();
    Ok(out)
}

/// The kernel's host name, kube-proxy's default node name.
pub fn hostname() -> anyhow::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("reading /proc/sys/kernel/hostname")?;
    Ok(name.trim().to_lowercase())
}
