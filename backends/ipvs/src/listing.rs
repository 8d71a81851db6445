//! Reading back what IPVS holds of ours: the firewall-mark virtual services of one family in
//! our mark range, and their destinations with weights and connection counts. One reader for
//! every caller — adopting at a full sync, draining, the drift check, retiring the mode — so
//! "which services are ours" is decided in one place ([`spec_of`]).

use crate::marks::is_ours;
use crate::netlink::{CmdAttr, DestAttr, IpvsCmd, IpvsMessage, IpvsSocket, SocketError, SvcAttr};
use crate::ops::{af_of_family, ServiceSpec};
use std::net::SocketAddr;
use switchyard_core::plan::IpFamily;

/// A destination as the kernel lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListedDest {
    pub addr: SocketAddr,
    pub weight: u32,
    /// Established TCP connections (IPVS's `ActiveConn`).
    pub active: u32,
    /// Every other connection entry: TCP in other states, UDP, SCTP (`InActConn`).
    pub inactive: u32,
}

impl ListedDest {
    pub fn connections(&self) -> u32 {
        self.active.saturating_add(self.inactive)
    }
}

/// One of our virtual services with its destinations.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    pub spec: ServiceSpec,
    pub dests: Vec<ListedDest>,
}

/// Our virtual services of `family` (one GET_SERVICE dump), without destinations.
pub(crate) fn services(
    socket: &mut IpvsSocket,
    family: IpFamily,
) -> Result<Vec<ServiceSpec>, SocketError> {
    let af = af_of_family(family);
    Ok(socket
        .dump(
            &IpvsMessage::new(IpvsCmd::GetService, vec![]),
            "listing IPVS services",
        )?
        .iter()
        .filter_map(|m| spec_of(m.service()?, family, af))
        .collect())
}

/// The destinations of our service `fwmark` (one GET_DEST dump).
pub(crate) fn dests(
    socket: &mut IpvsSocket,
    family: IpFamily,
    fwmark: u32,
) -> Result<Vec<ListedDest>, SocketError> {
    let af = af_of_family(family);
    Ok(socket
        .dump(
            &IpvsMessage::new(
                IpvsCmd::GetDest,
                vec![CmdAttr::Service(ServiceSpec::key_attrs(family, fwmark))],
            ),
            "listing IPVS destinations",
        )?
        .iter()
        .filter_map(|d| dest_of(d.dest()?, af))
        .collect())
}

/// Our virtual services of `family` with their destinations: one GET_SERVICE dump and one
/// GET_DEST dump per service (IPVS lists destinations per service only).
pub(crate) fn ours(socket: &mut IpvsSocket, family: IpFamily) -> Result<Vec<Listed>, SocketError> {
    services(socket, family)?
        .into_iter()
        .map(|spec| {
            let dests = dests(socket, family, spec.fwmark)?;
            Ok(Listed { spec, dests })
        })
        .collect()
}

/// A dumped service, as a spec, when it is ours (a firewall mark in our range) and of this
/// family.
pub(crate) fn spec_of(attrs: &[SvcAttr], family: IpFamily, af: u16) -> Option<ServiceSpec> {
    let mut fwmark = None;
    let mut fam = None;
    let mut scheduler = String::new();
    let mut flags = 0;
    let mut timeout = 0;
    for a in attrs {
        match a {
            SvcAttr::Fwmark(m) => fwmark = Some(*m),
            SvcAttr::Af(f) => fam = Some(*f),
            SvcAttr::SchedName(s) => scheduler = s.clone(),
            SvcAttr::Flags(f) => flags = f.flags & !crate::netlink::service::IP_VS_SVC_F_HASHED,
            SvcAttr::Timeout(t) => timeout = *t,
            _ => {}
        }
    }
    let fwmark = fwmark.filter(|m| is_ours(*m))?;
    (fam == Some(af)).then_some(ServiceSpec {
        family,
        fwmark,
        scheduler,
        flags,
        timeout,
    })
}

/// A dumped destination of a service of family `service_af`. A destination without
/// `IPVS_DEST_ATTR_ADDR_FAMILY` (kernels before mixed-family destinations) has the service's
/// family: reading it as IPv4 would turn an IPv6 destination into its first four bytes.
pub(crate) fn dest_of(attrs: &[DestAttr], service_af: u16) -> Option<ListedDest> {
    let mut addr = None;
    let mut port = None;
    let mut af = service_af;
    let (mut weight, mut active, mut inactive) = (0, 0, 0);
    for a in attrs {
        match a {
            DestAttr::Addr(x) => addr = Some(*x),
            DestAttr::Port(p) => port = Some(*p),
            DestAttr::AddrFamily(f) => af = *f,
            DestAttr::Weight(w) => weight = *w,
            DestAttr::ActiveConns(c) => active = *c,
            DestAttr::InactiveConns(c) => inactive = *c,
            _ => {}
        }
    }
    Some(ListedDest {
        addr: SocketAddr::new(addr?.to_ip(af)?, port?),
        weight,
        active,
        inactive,
    })
}
