//! Noticing that someone else changed what IPVS mode installed (`Dataplane::check`).
//!
//! IPVS has no ruleset generation to compare, so every check reads back what Switchyard owns
//! and compares it with the committed state ([`Kernel`], which every successful operation
//! updates, draining destinations included), by the keys that state uses:
//! - our firewall-mark virtual services of this family (GET_SERVICE dump; marks in our range
//!   only), each with scheduler, flags and persistence timeout, and each one's destinations
//!   (a GET_DEST dump per service) with their weights;
//! - the dummy interface `swyd-ipvs0` and this family's addresses on it;
//! - the helper table `switchyard-ipvs`, by the nftables backend's own check
//!   (`NftablesDataplane::check_ipvs`).
//!
//! Virtual services with marks outside our range, address-based ones, other families' and
//! other interfaces are never read into the comparison, so they are never reported (and the
//! repairing full sync never touches them either). Cost: one GET_DEST dump per virtual
//! service, every `--sync-period` (kube-proxy's IPVS mode lists every service's destinations
//! at every sync).

use crate::link::{Rtnl, DUMMY};
use crate::listing;
use crate::netlink::{IpvsSocket, SocketError};
use crate::ops::ServiceSpec;
use crate::state::Kernel;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use switchyard_core::plan::IpFamily;
use switchyard_core::DataplaneError;

/// One virtual service as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundService {
    pub spec: ServiceSpec,
    /// Destination → weight.
    pub dests: BTreeMap<SocketAddr, u32>,
}

/// What the kernel holds of ours, read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// Our firewall-mark virtual services of this family, by mark.
    pub services: BTreeMap<u32, FoundService>,
    /// The dummy interface's index, `None` when it does not exist.
    pub dummy: Option<u32>,
    /// This family's addresses on the dummy interface.
    pub addresses: BTreeSet<IpAddr>,
}

/// Reads what the kernel holds of ours in `family`.
pub async fn read(
    socket: &mut IpvsSocket,
    rtnl: &Rtnl,
    family: IpFamily,
) -> Result<Found, DataplaneError> {
    let listed = listing::ours(socket, family).map_err(|e| DataplaneError::KernelRejected {
        object: "checking: listing our IPVS services".to_string(),
        service: None,
        errno: match e {
            SocketError::Refused { errno, .. } => Some(errno),
            _ => None,
        },
        message: e.to_string(),
    })?;
    let mut found = Found::default();
    for l in listed {
        let dests = l.dests.iter().map(|d| (d.addr, d.weight)).collect();
        found.services.insert(
            l.spec.fwmark,
            FoundService {
                spec: l.spec,
                dests,
            },
        );
    }
    found.dummy = rtnl.dummy_index().await?;
    if let Some(index) = found.dummy {
        found.addresses = rtnl
            .addresses(index)
            .await?
            .into_iter()
            .filter(|ip| IpFamily::of(ip) == family)
            .collect();
    }
    Ok(found)
}

/// Differences between the committed state (`kernel`, the dummy interface's index at the
/// last sync) and what the kernel holds, one finding per object: a virtual service, a
/// destination, the interface, an address.
pub fn compare(kernel: &Kernel, dummy: Option<u32>, found: &Found) -> Vec<String> {
    let mut out = Vec::new();
    let owner = |mark: &u32| {
        kernel
            .services
            .get(mark)
            .and_then(|s| s.owner.as_ref())
            .map(|o| format!(" ({o})"))
            .unwrap_or_default()
    };
    for (mark, want) in &kernel.services {
        let Some(have) = found.services.get(mark) else {
            out.push(format!("IPVS service -f {mark}{}: missing", owner(mark)));
            continue;
        };
        if have.spec != want.spec {
            out.push(format!(
                "IPVS service -f {mark}{}: {}, expected {}",
                owner(mark),
                describe(&have.spec),
                describe(&want.spec)
            ));
        }
        for (dest, d) in &want.dests {
            match have.dests.get(dest) {
                None => out.push(format!(
                    "IPVS service -f {mark}{}: destination {dest} missing",
                    owner(mark)
                )),
                Some(&w) if w != d.weight => out.push(format!(
                    "IPVS service -f {mark}{}: destination {dest} has weight {w}, expected {}",
                    owner(mark),
                    d.weight
                )),
                Some(_) => {}
            }
        }
        for dest in have.dests.keys().filter(|d| !want.dests.contains_key(d)) {
            out.push(format!(
                "IPVS service -f {mark}{}: destination {dest} not ours to have",
                owner(mark)
            ));
        }
    }
    for mark in found
        .services
        .keys()
        .filter(|m| !kernel.services.contains_key(m))
    {
        out.push(format!("IPVS service -f {mark}: not ours to have"));
    }
    let want: BTreeSet<IpAddr> = kernel
        .vips
        .keys()
        .chain(&kernel.unclaimed_vips)
        .copied()
        .collect();
    match (found.dummy, dummy) {
        (None, _) => out.push(format!("interface {DUMMY}: missing")),
        (Some(now), Some(then)) if now != then => out.push(format!(
            "interface {DUMMY}: replaced (index {then}, now {now}): its addresses were lost"
        )),
        _ => {
            for ip in want.difference(&found.addresses) {
                out.push(format!("address {ip} on {DUMMY}: missing"));
            }
            for ip in found.addresses.difference(&want) {
                out.push(format!("address {ip} on {DUMMY}: not ours to have"));
            }
        }
    }
    out
}

/// `-s rr -p 300 flags 0x1`: what a finding says of a service's settings.
fn describe(spec: &ServiceSpec) -> String {
    format!(
        "-s {} flags {:#x} timeout {}",
        spec.scheduler, spec.flags, spec.timeout
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Dest, Service};
    use std::net::Ipv4Addr;

    const MARK: u32 = 0x88db_0000;

    fn spec() -> ServiceSpec {
        ServiceSpec {
            family: IpFamily::V4,
            fwmark: MARK,
            scheduler: "rr".into(),
            flags: 0,
            timeout: 0,
        }
    }

    fn dest(last: u8) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 244, 1, last)), 8080)
    }

    const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10));

    /// One service with two destinations (one draining) and one address, as committed and
    /// as the kernel lists it when nobody touched anything.
    fn intact() -> (Kernel, Found) {
        let mut kernel = Kernel::default();
        kernel.services.insert(
            MARK,
            Service {
                spec: spec(),
                owner: None,
                udp: false,
                dests: [
                    (
                        dest(11),
                        Dest {
                            weight: 1,
                            draining_since: None,
                        },
                    ),
                    (
                        dest(12),
                        Dest {
                            weight: 0,
                            draining_since: Some(std::time::Instant::now()),
                        },
                    ),
                ]
                .into(),
            },
        );
        kernel.vips.insert(VIP, BTreeSet::new());
        let found = Found {
            services: [(
                MARK,
                FoundService {
                    spec: spec(),
                    dests: [(dest(11), 1), (dest(12), 0)].into(),
                },
            )]
            .into(),
            dummy: Some(7),
            addresses: [VIP].into(),
        };
        (kernel, found)
    }

    #[test]
    fn nothing_touched_nothing_found() {
        let (kernel, found) = intact();
        assert_eq!(compare(&kernel, Some(7), &found), Vec::<String>::new());
    }

    #[test]
    fn each_tampering_is_named_precisely() {
        let (kernel, intact) = intact();
        type Tamper = fn(&mut Found);
        let cases: Vec<(Tamper, String)> = vec![
            (
                |f| {
                    f.services.clear();
                },
                format!("IPVS service -f {MARK}: missing"),
            ),
            (
                |f| {
                    f.services.values_mut().for_each(|s| {
                        s.dests.remove(&dest(11));
                    })
                },
                format!("IPVS service -f {MARK}: destination 10.244.1.11:8080 missing"),
            ),
            (
                |f| {
                    f.services.values_mut().for_each(|s| {
                        s.dests.insert(dest(11), 0);
                    })
                },
                format!(
                    "IPVS service -f {MARK}: destination 10.244.1.11:8080 has weight 0, expected 1"
                ),
            ),
            (
                |f| {
                    f.services.values_mut().for_each(|s| {
                        s.dests.insert(dest(13), 1);
                    })
                },
                format!("IPVS service -f {MARK}: destination 10.244.1.13:8080 not ours to have"),
            ),
            (
                |f| {
                    f.services
                        .values_mut()
                        .for_each(|s| s.spec.scheduler = "sh".into())
                },
                format!(
                    "IPVS service -f {MARK}: -s sh flags 0x0 timeout 0, expected -s rr flags 0x0 timeout 0"
                ),
            ),
            (
                |f| {
                    let mut other = f.services[&MARK].clone();
                    other.spec.fwmark = MARK + 0x8000;
                    f.services.insert(MARK + 0x8000, other);
                },
                format!("IPVS service -f {}: not ours to have", MARK + 0x8000),
            ),
            (
                |f| {
                    f.dummy = None;
                    f.addresses.clear();
                },
                format!("interface {DUMMY}: missing"),
            ),
            (
                |f| {
                    f.dummy = Some(8);
                    f.addresses.clear();
                },
                format!("interface {DUMMY}: replaced (index 7, now 8): its addresses were lost"),
            ),
            (
                |f| {
                    f.addresses.clear();
                },
                format!("address 10.96.0.10 on {DUMMY}: missing"),
            ),
            (
                |f| {
                    f.addresses.insert(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 99)));
                },
                format!("address 10.96.0.99 on {DUMMY}: not ours to have"),
            ),
        ];
        for (tamper, want) in cases {
            let mut found = intact.clone();
            tamper(&mut found);
            assert_eq!(compare(&kernel, Some(7), &found), vec![want]);
        }
    }
}
