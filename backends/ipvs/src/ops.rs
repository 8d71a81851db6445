//! One IPVS or address operation of a sync: printed as an `ipvsadm`-like line for `--dry-run`,
//! or turned into the netlink message that performs it.

use crate::netlink::addr::af_of;
use crate::netlink::{
    CmdAttr, DestAttr, FwdMethod, InetAddr, IpvsCmd, IpvsMessage, SvcAttr, SvcFlags, AF_INET,
    AF_INET6,
};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use switchyard_core::plan::IpFamily;

/// A firewall-mark virtual service as Switchyard programs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub family: IpFamily,
    pub fwmark: u32,
    pub scheduler: String,
    /// `IP_VS_SVC_F_*` (persistence, scheduler flags).
    pub flags: u32,
    /// Persistence timeout (seconds); 0 without persistence.
    pub timeout: u32,
}

/// The kernel's `AF_*` of a family: `IPVS_SVC_ATTR_AF` of every virtual service (a
/// firewall-mark service has a family too, so each family has its own).
pub fn af_of_family(f: IpFamily) -> u16 {
    match f {
        IpFamily::V4 => AF_INET,
        IpFamily::V6 => AF_INET6,
    }
}

impl ServiceSpec {
    /// The attributes that identify the service (`-f <mark>`).
    pub fn key_attrs(family: IpFamily, fwmark: u32) -> Vec<SvcAttr> {
        vec![SvcAttr::Af(af_of_family(family)), SvcAttr::Fwmark(fwmark)]
    }

    fn full_attrs(&self) -> Vec<SvcAttr> {
        let mut a = Self::key_attrs(self.family, self.fwmark);
        a.push(SvcAttr::SchedName(self.scheduler.clone()));
        a.push(SvcAttr::Flags(SvcFlags {
            flags: self.flags,
            mask: u32::MAX,
        }));
        a.push(SvcAttr::Timeout(self.timeout));
        a.push(SvcAttr::Netmask(match self.family {
            IpFamily::V4 => u32::MAX,
            IpFamily::V6 => 128,
        }));
        a
    }
}

/// One operation, in the order a sync performs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `ip addr add <vip> dev swyd-ipvs0`
    AddAddress(IpAddr),
    AddService(ServiceSpec),
    EditService(ServiceSpec),
    /// Add or edit (`edit`) a masqueraded destination with this weight.
    Dest {
        family: IpFamily,
        fwmark: u32,
        dest: SocketAddr,
        weight: u32,
        edit: bool,
    },
    DelDest {
        family: IpFamily,
        fwmark: u32,
        dest: SocketAddr,
    },
    DelService {
        family: IpFamily,
        fwmark: u32,
    },
    /// `ip addr del <vip> dev swyd-ipvs0`
    DelAddress(IpAddr),
}

fn dest_attrs(dest: &SocketAddr, weight: Option<u32>) -> Vec<DestAttr> {
    let mut a = vec![
        DestAttr::Addr(InetAddr::from_ip(dest.ip())),
        DestAttr::Port(dest.port()),
        DestAttr::AddrFamily(af_of(&dest.ip())),
    ];
    if let Some(w) = weight {
        a.extend([
            DestAttr::FwdMethod(FwdMethod::Masq),
            DestAttr::Weight(w),
            DestAttr::UpperThreshold(0),
            DestAttr::LowerThreshold(0),
        ]);
    }
    a
}

impl Op {
    /// The IPVS message, or `None` for an address operation (rtnetlink).
    pub fn message(&self) -> Option<IpvsMessage> {
        let svc = |f: IpFamily, m: u32| CmdAttr::Service(ServiceSpec::key_attrs(f, m));
        Some(match self {
            Self::AddAddress(_) | Self::DelAddress(_) => return None,
            Self::AddService(s) => {
                IpvsMessage::new(IpvsCmd::NewService, vec![CmdAttr::Service(s.full_attrs())])
            }
            Self::EditService(s) => {
                IpvsMessage::new(IpvsCmd::SetService, vec![CmdAttr::Service(s.full_attrs())])
            }
            Self::Dest {
                family,
                fwmark,
                dest,
                weight,
                edit,
            } => IpvsMessage::new(
                if *edit {
                    IpvsCmd::SetDest
                } else {
                    IpvsCmd::NewDest
                },
                vec![
                    svc(*family, *fwmark),
                    CmdAttr::Dest(dest_attrs(dest, Some(*weight))),
                ],
            ),
            Self::DelDest {
                family,
                fwmark,
                dest,
            } => IpvsMessage::new(
                IpvsCmd::DelDest,
                vec![svc(*family, *fwmark), CmdAttr::Dest(dest_attrs(dest, None))],
            ),
            Self::DelService { family, fwmark } => {
                IpvsMessage::new(IpvsCmd::DelService, vec![svc(*family, *fwmark)])
            }
        })
    }
}

fn fam_flag(f: IpFamily) -> &'static str {
    match f {
        IpFamily::V4 => "",
        IpFamily::V6 => " -6",
    }
}

fn sock(s: &SocketAddr) -> String {
    match s {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

impl fmt::Display for Op {
    /// `ipvsadm -R` syntax for IPVS operations (`-A/-E/-D` services, `-a/-e/-d` destinations,
    /// `-f` firewall mark, `-m` masquerading), `ip addr` syntax for addresses.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AddAddress(ip) => write!(f, "ip addr add {ip} dev {}", crate::link::DUMMY),
            Self::DelAddress(ip) => write!(f, "ip addr del {ip} dev {}", crate::link::DUMMY),
            Self::AddService(s) | Self::EditService(s) => {
                let verb = if matches!(self, Self::AddService(_)) {
                    "-A"
                } else {
                    "-E"
                };
                write!(
                    f,
                    "{verb} -f {}{} -s {}",
                    s.fwmark,
                    fam_flag(s.family),
                    s.scheduler
                )?;
                if s.flags & crate::netlink::service::IP_VS_SVC_F_PERSISTENT != 0 {
                    write!(f, " -p {}", s.timeout)?;
                }
                let sched = s.flags
                    & (crate::netlink::service::IP_VS_SVC_F_SCHED1
                        | crate::netlink::service::IP_VS_SVC_F_SCHED2);
                if sched != 0 {
                    write!(f, " -b sched-flags={sched:#x}")?;
                }
                Ok(())
            }
            Self::Dest {
                family,
                fwmark,
                dest,
                weight,
                edit,
            } => write!(
                f,
                "{} -f {fwmark}{} -r {} -m -w {weight}",
                if *edit { "-e" } else { "-a" },
                fam_flag(*family),
                sock(dest)
            ),
            Self::DelDest {
                family,
                fwmark,
                dest,
            } => write!(f, "-d -f {fwmark}{} -r {}", fam_flag(*family), sock(dest)),
            Self::DelService { family, fwmark } => {
                write!(f, "-D -f {fwmark}{}", fam_flag(*family))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::CmdAttr;

    fn v6_dest() -> SocketAddr {
        "[fd00:10:244:1::10]:8080".parse().expect("test address")
    }

    /// The IPv6 lane's operations: `-6` and bracketed destinations in the `--dry-run` lines
    /// (`ipvsadm -R` syntax), `AF_INET6` in the messages, `/128` persistence granularity.
    #[test]
    fn ipv6_operations_print_and_encode_for_af_inet6() {
        let spec = ServiceSpec {
            family: IpFamily::V6,
            fwmark: 0x8000,
            scheduler: "rr".into(),
            flags: 0,
            timeout: 0,
        };
        let dest = Op::Dest {
            family: IpFamily::V6,
            fwmark: 0x8000,
            dest: v6_dest(),
            weight: 1,
            edit: false,
        };
        assert_eq!(
            Op::AddService(spec.clone()).to_string(),
            "-A -f 32768 -6 -s rr"
        );
        assert_eq!(
            dest.to_string(),
            "-a -f 32768 -6 -r [fd00:10:244:1::10]:8080 -m -w 1"
        );
        let ip: IpAddr = "fd00:10:96::a".parse().expect("test address");
        assert_eq!(
            Op::AddAddress(ip).to_string(),
            "ip addr add fd00:10:96::a dev swyd-ipvs0"
        );

        let msg = Op::AddService(spec).message().expect("an IPVS message");
        let svc = msg.service().expect("service attributes");
        assert!(svc.contains(&SvcAttr::Af(AF_INET6)));
        assert!(svc.contains(&SvcAttr::Netmask(128)));
        let msg = dest.message().expect("an IPVS message");
        assert!(matches!(&msg.attrs[0], CmdAttr::Service(s) if s.contains(&SvcAttr::Af(AF_INET6))));
        let d = msg.dest().expect("dest attributes");
        assert!(d.contains(&DestAttr::AddrFamily(AF_INET6)));
        assert!(d.contains(&DestAttr::Addr(InetAddr::from_ip(v6_dest().ip()))));
        assert!(d.contains(&DestAttr::Port(8080)));
    }

    /// The same firewall mark is two virtual services, one per family: the key carries
    /// the family.
    #[test]
    fn a_mark_has_one_service_per_family() {
        let v4 = ServiceSpec::key_attrs(IpFamily::V4, 0x8000);
        let v6 = ServiceSpec::key_attrs(IpFamily::V6, 0x8000);
        assert_eq!(v4, [SvcAttr::Af(AF_INET), SvcAttr::Fwmark(0x8000)]);
        assert_eq!(v6, [SvcAttr::Af(AF_INET6), SvcAttr::Fwmark(0x8000)]);
    }
}
