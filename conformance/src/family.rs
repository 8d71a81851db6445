//! The address-family dimension of the matrix: every scenario runs in IPv4, in IPv6 and
//! dual-stack, from one table written once.
//!
//! Scenarios are written with IPv4 addresses, which name the hosts and services of the
//! topology. For the IPv6 column every IPv4 address in the scenario's cluster state and checks
//! is mapped to its IPv6 twin by [`v6_of`] — the same function that addresses the topology's
//! hosts, so a pod's twin address is its real IPv6 address. For the dual-stack column every
//! Service gets both cluster IPs (`ipFamilyPolicy: PreferDualStack`), both families' external
//! and load-balancer IPs and source ranges, every IPv4 EndpointSlice an IPv6 twin slice, and
//! every check runs once per family against that family's plan, on one node carrying both
//! families' rules at once.
//!
//! A new scenario needs nothing to get the dimension. One that cannot exist in a family says so
//! in [`NodeSettings::families`](crate::scenario::NodeSettings::families); one that is about
//! dual-stack itself (different endpoints per family) is written with both families' addresses
//! and [`Families::DualAsWritten`], and runs untranslated in the dual-stack column only.

use anyhow::{anyhow, bail};
use ipnet::IpNet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use switchyard_core::model::ClusterState;
use switchyard_core::IpFamily;

/// A column of the matrix: the families the node under test runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
    /// Both at once: one plan and one dataplane per family on the same node.
    Dual,
}

impl Family {
    pub const ALL: [Family; 3] = [Family::V4, Family::V6, Family::Dual];

    /// The IP families the node runs in this column, each with its own plan and dataplane.
    pub fn ip_families(self) -> Vec<IpFamily> {
        match self {
            Family::V4 => vec![IpFamily::V4],
            Family::V6 => vec![IpFamily::V6],
            Family::Dual => vec![IpFamily::V4, IpFamily::V6],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
            Family::Dual => "dual",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Family {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Family::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| format!("unknown family {s:?} (want ipv4, ipv6, dual)"))
    }
}

/// Which columns a scenario runs in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Families {
    /// IPv4 as written; IPv6 and dual-stack by translation.
    #[default]
    Every,
    /// IPv4 only, for this reason (shown in the n/a cells).
    V4Only(&'static str),
    /// The scenario's manifests and checks carry both families' addresses already: it runs in
    /// the dual-stack column only, untranslated, each check against its own family's plan.
    DualAsWritten,
}

impl Families {
    /// Why the scenario has no cell in `column`, if it has none.
    pub fn excludes(self, column: Family) -> Option<String> {
        match (self, column) {
            (Families::V4Only(why), Family::V6 | Family::Dual) => Some(format!("IPv4 only: {why}")),
            (Families::DualAsWritten, Family::V4 | Family::V6) => {
                Some("written dual-stack: runs in the dual-stack column".into())
            }
            _ => None,
        }
    }
}

/// The IPv6 twin of an IPv4 address in the test network: `a.b.c.d` → `fd00:a:b:c::d`, each
/// decimal byte read as hex digits (`10.244.1.12` → `fd00:10:244:1::12`), so the twin reads
/// like the original. ULA space, used only inside the test namespaces. A prefix of 0, 8, 16, 24
/// or 32 bits maps to one of 0, 32, 48, 64 or 128 ([`v6_prefix_len`]).
pub fn v6_of(v4: Ipv4Addr) -> Ipv6Addr {
    let g = |b: u8| u16::from_str_radix(&b.to_string(), 16).unwrap_or_default();
    let [a, b, c, d] = v4.octets();
    Ipv6Addr::new(0xfd00, g(a), g(b), g(c), 0, 0, 0, g(d))
}

/// The prefix length of an IPv4 prefix's twin: byte-aligned prefixes only (the twin of
/// `a.b.c.0/24` is `fd00:a:b:c::/64`, which holds exactly the twins of `a.b.c.*`).
pub fn v6_prefix_len(len: u8) -> anyhow::Result<u8> {
    Ok(match len {
        0 => 0,
        8 => 32,
        16 => 48,
        24 => 64,
        32 => 128,
        other => {
            bail!("an IPv4 prefix /{other} has no IPv6 twin: scenarios use /0, /8, /16, /24 or /32")
        }
    })
}

/// The twin of an address, a prefix or any other string (returned as is: `None`, IPv6).
pub fn twin(text: &str) -> anyhow::Result<String> {
    if let Ok(ip) = text.parse::<Ipv4Addr>() {
        return Ok(v6_of(ip).to_string());
    }
    if let Ok(IpNet::V4(net)) = text.parse::<IpNet>() {
        let len = v6_prefix_len(net.prefix_len())?;
        return Ok(format!("{}/{len}", v6_of(net.addr())));
    }
    Ok(text.to_string())
}

fn is_v4(text: &str) -> bool {
    text.parse::<Ipv4Addr>().is_ok() || matches!(text.parse::<IpNet>(), Ok(IpNet::V4(_)))
}

/// Every IPv4 address in `list` replaced by its twin.
fn to_v6(list: &mut [String]) -> anyhow::Result<()> {
    for s in list {
        *s = twin(s)?;
    }
    Ok(())
}

/// The IPv6 twins of the IPv4 entries of `list`, appended.
fn add_twins(list: &mut Vec<String>) -> anyhow::Result<()> {
    let twins = list
        .iter()
        .filter(|s| is_v4(s))
        .map(|s| twin(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    list.extend(twins);
    Ok(())
}

/// The scenario's cluster state as the column's node sees it (see the module doc).
pub fn state_for(
    state: &mut ClusterState,
    column: Family,
    families: Families,
) -> anyhow::Result<()> {
    if families == Families::DualAsWritten {
        return Ok(());
    }
    match column {
        Family::V4 => Ok(()),
        Family::V6 => state_to_v6(state),
        Family::Dual => state_to_dual(state),
    }
}

fn state_to_v6(state: &mut ClusterState) -> anyhow::Result<()> {
    for svc in state.services.values_mut() {
        to_v6(&mut svc.cluster_ips)?;
        to_v6(&mut svc.external_ips)?;
        to_v6(&mut svc.load_balancer_source_ranges)?;
        for f in &mut svc.ip_families {
            if f == "IPv4" {
                *f = "IPv6".into();
            }
        }
        for ing in &mut svc.load_balancer_ingress {
            if let Some(ip) = &mut ing.ip {
                *ip = twin(ip)?;
            }
        }
    }
    for slice in state.endpoint_slices.values_mut() {
        if slice.address_type == "IPv4" {
            slice.address_type = "IPv6".into();
        }
        for e in &mut slice.endpoints {
            to_v6(&mut e.addresses)?;
        }
    }
    if let Some(node) = &mut state.node {
        for a in &mut node.addresses {
            a.address = twin(&a.address)?;
        }
    }
    for cidr in state.service_cidrs.values_mut() {
        to_v6(&mut cidr.cidrs)?;
    }
    Ok(())
}

fn state_to_dual(state: &mut ClusterState) -> anyhow::Result<()> {
    for svc in state.services.values_mut() {
        if svc.cluster_ips.len() == 1 && is_v4(&svc.cluster_ips[0]) {
            add_twins(&mut svc.cluster_ips)?;
            svc.ip_families = vec!["IPv4".into(), "IPv6".into()];
        }
        add_twins(&mut svc.external_ips)?;
        add_twins(&mut svc.load_balancer_source_ranges)?;
        let twins = svc
            .load_balancer_ingress
            .iter()
            .filter(|i| i.ip.as_deref().is_some_and(is_v4))
            .map(|i| {
                let mut t = i.clone();
                t.ip = Some(twin(i.ip.as_deref().unwrap_or_default())?);
                Ok(t)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        svc.load_balancer_ingress.extend(twins);
    }
    let mut twins = Vec::new();
    for slice in state.endpoint_slices.values() {
        if slice.address_type != "IPv4" {
            continue;
        }
        let mut t = slice.clone();
        t.meta.name = format!("{}-ipv6", t.meta.name);
        t.address_type = "IPv6".into();
        for e in &mut t.endpoints {
            to_v6(&mut e.addresses)?;
        }
        twins.push(t);
    }
    for t in twins {
        state.upsert_endpoint_slice(t);
    }
    if let Some(node) = &mut state.node {
        let extra = node
            .addresses
            .iter()
            .filter(|a| is_v4(&a.address))
            .map(|a| {
                let mut t = a.clone();
                t.address = twin(&a.address)?;
                Ok(t)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        node.addresses.extend(extra);
    }
    for cidr in state.service_cidrs.values_mut() {
        add_twins(&mut cidr.cidrs)?;
    }
    Ok(())
}

/// The prefixes a node flag names (`--cluster-cidr`, `--service-cluster-ip-range`,
/// `--nodeport-addresses`; a comma-separated list) in this column: as written, the twins, or
/// both; a scenario written dual-stack gets exactly what it wrote. A core `ProxyConfig` keeps
/// its own family's.
pub fn prefixes_for(
    written: &str,
    column: Family,
    families: Families,
) -> anyhow::Result<Vec<IpNet>> {
    let mut out = Vec::new();
    for item in written.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let net: IpNet = item
            .parse()
            .map_err(|e| anyhow!("{item:?}: not a prefix ({e})"))?;
        let twin = || -> anyhow::Result<IpNet> { Ok(twin(item)?.parse()?) };
        match (families, column) {
            (Families::DualAsWritten, _) | (_, Family::V4) => out.push(net),
            (_, Family::V6) => out.push(twin()?),
            (_, Family::Dual) => out.extend([net, twin()?]),
        }
    }
    Ok(out)
}

/// The destinations a check sends to in this column, each with the family whose plan must
/// agree: the written IPv4 one, its twin, or both.
pub fn targets(written: SocketAddr, column: Family, families: Families) -> Vec<SocketAddr> {
    let twin = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v6_of(*v4.ip())), v4.port()),
        v6 => v6,
    };
    if families == Families::DualAsWritten {
        return vec![written];
    }
    match column {
        Family::V4 => vec![written],
        Family::V6 => vec![twin(written)],
        Family::Dual => vec![written, twin(written)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twins_read_like_the_original_and_keep_prefix_membership() {
        assert_eq!(
            v6_of("10.244.1.12".parse().expect("ip")).to_string(),
            "fd00:10:244:1::12"
        );
        assert_eq!(
            v6_of("192.168.0.20".parse().expect("ip")).to_string(),
            "fd00:192:168::20"
        );
        assert_eq!(twin("10.244.0.0/16").expect("twin"), "fd00:10:244::/48");
        assert_eq!(twin("None").expect("twin"), "None");
        assert!(twin("198.18.0.0/15").is_err());
        // Every twin of a.b.c.* lies in the twin of a.b.c.0/24, and of no other /24's twin.
        let net: IpNet = twin("10.244.1.0/24").expect("twin").parse().expect("net");
        let other: IpNet = twin("10.244.2.0/24").expect("twin").parse().expect("net");
        for d in [0u8, 1, 9, 10, 99, 100, 255] {
            let ip = IpAddr::V6(v6_of(Ipv4Addr::new(10, 244, 1, d)));
            assert!(net.contains(&ip) && !other.contains(&ip), "{ip}");
        }
    }

    #[test]
    fn restricted_scenarios_have_na_cells_with_the_reason() {
        let v4 = Families::V4Only("plants IPv4 conntrack entries");
        assert_eq!(v4.excludes(Family::V4), None);
        for column in [Family::V6, Family::Dual] {
            assert!(v4
                .excludes(column)
                .is_some_and(|why| why.contains("conntrack")));
        }
        assert!(Families::DualAsWritten.excludes(Family::V6).is_some());
        assert_eq!(Families::DualAsWritten.excludes(Family::Dual), None);
        assert!(Family::ALL
            .iter()
            .all(|c| Families::Every.excludes(*c).is_none()));
        let dst: SocketAddr = "10.96.0.10:80".parse().expect("addr");
        assert_eq!(targets(dst, Family::Dual, Families::Every).len(), 2);
        assert_eq!(
            targets(dst, Family::V6, Families::Every)[0].to_string(),
            "[fd00:10:96::10]:80"
        );
        assert_eq!(targets(dst, Family::Dual, Families::DualAsWritten), [dst]);
    }

    #[test]
    fn dual_state_has_both_families_and_the_plans_their_own_endpoints() {
        use crate::scenarios::{http_slice, manifest, ready, svc};
        let yaml = manifest(&[
            svc("web", "10.96.0.10")
                .http()
                .spec("externalIPs: [198.51.100.7]")
                .yaml(),
            http_slice("web", &ready(&["pod-a2"])),
        ]);
        let mut m = switchyard_agent::source::Manifests::default();
        m.add_text(std::path::Path::new("t.yaml"), &yaml)
            .expect("parse");
        let mut state = m.to_state(crate::topology::NODE_NAME);
        state_for(&mut state, Family::Dual, Families::Every).expect("dual");
        let web = state.services.values().next().expect("web");
        assert_eq!(web.cluster_ips, ["10.96.0.10", "fd00:10:96::10"]);
        assert_eq!(web.external_ips, ["198.51.100.7", "fd00:198:51:100::7"]);
        let twin_slice = state
            .endpoint_slices
            .values()
            .find(|s| s.address_type == "IPv6")
            .expect("an IPv6 slice");
        assert_eq!(twin_slice.endpoints[0].addresses, ["fd00:10:244:1::11"]);
        let node = state.node.as_ref().expect("node");
        assert_eq!(node.addresses.len(), 2);
        for family in [IpFamily::V4, IpFamily::V6] {
            let plan = switchyard_core::plan(
                &state,
                &switchyard_core::ProxyConfig::new(family, crate::topology::NODE_NAME),
            );
            assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
            let port = plan.services.values().next().expect("web:80");
            let eps = port.endpoints_for(switchyard_core::Target::Cluster);
            assert!(
                !eps.is_empty() && eps.iter().all(|e| IpFamily::of(&e.ip) == family),
                "{family}: {eps:?}"
            );
        }
    }
}
