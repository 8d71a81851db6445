//! Step 5 of `--cleanup-kube-proxy`: kube-proxy's IPVS virtual services, over the IPVS
//! backend's generic-netlink layer.
//!
//! kube-proxy's own cleanup (`CleanupLeftovers` in `pkg/proxy/ipvs`) flushes IPVS whole.
//! We delete what that flush would remove of kube-proxy's, and keep what it would wrongly
//! take: every **address-based** virtual service (kube-proxy creates one per cluster IP,
//! external IP, load-balancer IP and node address + NodePort, in both families) goes,
//! except those whose address is in `--ipvs-exclude-cidrs` (another agent's, the
//! operator's promise kube-proxy's syncs honour too); **firewall-mark** services stay,
//! whoever owns them: kube-proxy never creates one, and Switchyard's IPVS mode uses only
//! those, so a node already running Switchyard keeps serving while it is cleaned.

use anyhow::Context as _;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use switchyard_ipvs::netlink::{CmdAttr, IpvsCmd, IpvsMessage, IpvsSocket, SocketError, SvcAttr};

/// `IPPROTO_*` numbers as IPVS carries them, for the log line.
fn protocol_name(p: u16) -> String {
    match p {
        6 => "TCP".into(),
        17 => "UDP".into(),
        132 => "SCTP".into(),
        other => format!("protocol {other}"),
    }
}

/// An address-based virtual service from a dump: its address and port, protocol, and the
/// attributes that identify it in a delete (as the kernel sent them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrService {
    pub addr: SocketAddr,
    pub protocol: u16,
    key: Vec<SvcAttr>,
}

impl AddrService {
    /// `None` for a firewall-mark service (or one whose key is incomplete).
    pub fn of(attrs: &[SvcAttr]) -> Option<Self> {
        let (mut af, mut protocol, mut addr, mut port) = (None, None, None, None);
        for a in attrs {
            match a {
                SvcAttr::Af(v) => af = Some(*v),
                SvcAttr::Protocol(v) => protocol = Some(*v),
                SvcAttr::Addr(v) => addr = Some(*v),
                SvcAttr::Port(v) => port = Some(*v),
                SvcAttr::Fwmark(m) if *m != 0 => return None,
                _ => {}
            }
        }
        let (af, protocol, addr, port) = (af?, protocol?, addr?, port?);
        Some(Self {
            addr: SocketAddr::new(addr.to_ip(af)?, port),
            protocol,
            key: vec![
                SvcAttr::Af(af),
                SvcAttr::Protocol(protocol),
                SvcAttr::Addr(addr),
                SvcAttr::Port(port),
            ],
        })
    }

    fn excluded(&self, exclude: &[IpNet]) -> bool {
        let ip: IpAddr = self.addr.ip();
        exclude.iter().any(|n| n.contains(&ip))
    }
}

/// The address-based services of a dump that kube-proxy's cleanup removes and we may
/// remove: not in `exclude`.
pub fn to_delete(dump: &[IpvsMessage], exclude: &[IpNet]) -> Vec<AddrService> {
    dump.iter()
        .filter_map(|m| AddrService::of(m.service()?))
        .filter(|s| !s.excluded(exclude))
        .collect()
}

/// Deletes kube-proxy's virtual services (see the module docs). A kernel without IPVS
/// has none.
pub fn delete_services(exclude: &[IpNet]) -> anyhow::Result<()> {
    let mut socket = match IpvsSocket::open() {
        Ok(s) => s,
        Err(SocketError::NoFamily) => return Ok(()),
        Err(e) => return Err(e).context("opening the IPVS socket"),
    };
    let dump = socket
        .dump(
            &IpvsMessage::new(IpvsCmd::GetService, vec![]),
            "listing IPVS services",
        )
        .context("listing IPVS services")?;
    let doomed = to_delete(&dump, exclude);
    if doomed.is_empty() {
        return Ok(());
    }
    let msgs: Vec<IpvsMessage> = doomed
        .iter()
        .map(|s| IpvsMessage::new(IpvsCmd::DelService, vec![CmdAttr::Service(s.key.clone())]))
        .collect();
    let refused = socket
        .execute(&msgs)
        .context("deleting kube-proxy's IPVS services")?;
    let mut failures = Vec::new();
    for (i, s) in doomed.iter().enumerate() {
        let what = format!("{} {}", protocol_name(s.protocol), s.addr);
        // ESRCH / ENOENT: gone meanwhile.
        match refused.iter().find(|r| r.index == i) {
            Some(r) if r.errno != 3 && r.errno != 2 => failures.push(format!(
                "{what}: {}",
                std::io::Error::from_raw_os_error(r.errno)
            )),
            _ => tracing::info!(service = %what, "deleted kube-proxy's IPVS virtual service"),
        }
    }
    if !failures.is_empty() {
        anyhow::bail!(
            "deleting kube-proxy's IPVS services: {}",
            failures.join("; ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_ipvs::netlink::InetAddr;

    fn addr_service(ip: &str, port: u16) -> IpvsMessage {
        let ip: IpAddr = ip.parse().expect("ip");
        IpvsMessage::new(
            IpvsCmd::NewService,
            vec![CmdAttr::Service(vec![
                SvcAttr::Af(if ip.is_ipv4() { 2 } else { 10 }),
                SvcAttr::Protocol(6),
                SvcAttr::Addr(InetAddr::from_ip(ip)),
                SvcAttr::Port(port),
                SvcAttr::SchedName("rr".into()),
            ])],
        )
    }

    fn fwmark_service(mark: u32) -> IpvsMessage {
        IpvsMessage::new(
            IpvsCmd::NewService,
            vec![CmdAttr::Service(vec![
                SvcAttr::Af(2),
                SvcAttr::Fwmark(mark),
                SvcAttr::SchedName("rr".into()),
            ])],
        )
    }

    #[test]
    fn address_services_go_fwmark_and_excluded_ones_stay() {
        let dump = vec![
            addr_service("10.96.0.1", 443),
            addr_service("fd00:96::a", 53),
            fwmark_service(0x88db_0000),
            fwmark_service(7),
            addr_service("192.168.50.1", 80),
        ];
        let exclude: Vec<IpNet> = vec!["192.168.50.0/24".parse().expect("cidr")];
        let gone: Vec<String> = to_delete(&dump, &exclude)
            .iter()
            .map(|s| s.addr.to_string())
            .collect();
        assert_eq!(gone, ["10.96.0.1:443", "[fd00:96::a]:53"]);
        let key = to_delete(&dump, &exclude)[0].key.clone();
        assert_eq!(key.len(), 4, "af, protocol, address, port: {key:?}");
    }
}
