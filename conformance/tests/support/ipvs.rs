//! What IPVS mode holds, for the kill -9 test: the helper table (canonical), the service key →
//! firewall mark maps it steers with, each virtual service's destinations and weights
//! (`ipvsadm -S -n`), and the addresses on the dummy interface.

use super::nft_table_snapshot;
use std::collections::{BTreeMap, BTreeSet};
use switchyard_conformance::netns::Netns;

/// One moment of IPVS mode's state in a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsState {
    /// Table `switchyard-ipvs`, canonical; `None` when absent.
    pub helper: Option<String>,
    /// `<map> <service key>` → firewall mark, from the helper table's `*-fwmark*` maps.
    pub steer: BTreeMap<String, u32>,
    /// Firewall mark → destination → weight.
    pub services: BTreeMap<u32, BTreeMap<String, u32>>,
    /// Addresses on `swyd-ipvs0`.
    pub vips: BTreeSet<String>,
}

impl IpvsState {
    pub fn read(ns: &Netns) -> anyhow::Result<Self> {
        Ok(Self {
            helper: nft_table_snapshot(ns, "switchyard-ipvs")?,
            steer: steering(ns)?,
            services: services(&ns.exec("ipvsadm", &["-S", "-n"])?),
            vips: vips(ns),
        })
    }

    /// The destinations taking new connections (weight > 0) of the virtual service `key` is
    /// steered to in this state; empty when `key` is not steered.
    pub fn active(&self, key: &str) -> BTreeSet<&str> {
        self.steer
            .get(key)
            .and_then(|m| self.services.get(m))
            .into_iter()
            .flatten()
            .filter(|(_, w)| **w > 0)
            .map(|(d, _)| d.as_str())
            .collect()
    }
}

/// `<map> <service key>` → firewall mark, from the helper table's `*-fwmark*` maps as `nft -j`
/// prints them (empty when the table is absent). nft prints the marks in host order: our
/// mark maps say so in their user data (DESIGN-NOTES 289).
pub fn steering(ns: &Netns) -> anyhow::Result<BTreeMap<String, u32>> {
    let mut out = BTreeMap::new();
    let Ok(text) = ns.exec("nft", &["-j", "list", "table", "ip", "switchyard-ipvs"]) else {
        return Ok(out);
    };
    let v: serde_json::Value = serde_json::from_str(&text)?;
    for item in v["nftables"].as_array().into_iter().flatten() {
        let map = &item["map"];
        let Some(name) = map["name"].as_str().filter(|n| n.contains("fwmark")) else {
            continue;
        };
        for e in map["elem"].as_array().into_iter().flatten() {
            let (Some(key), Some(mark)) = (e.get(0), e.get(1).and_then(|m| m.as_u64())) else {
                anyhow::bail!("map {name}: element {e} has no numeric mark");
            };
            out.insert(format!("{name} {key}"), u32::try_from(mark)?);
        }
    }
    Ok(out)
}

/// Parses `ipvsadm -S -n`: `-A -f <mark> ...` and `-a -f <mark> -r <dest> -m -w <weight>`.
pub fn services(text: &str) -> BTreeMap<u32, BTreeMap<String, u32>> {
    let mut out: BTreeMap<u32, BTreeMap<String, u32>> = BTreeMap::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        let arg = |flag: &str| w.iter().position(|x| *x == flag).and_then(|i| w.get(i + 1));
        // ipvsadm prints the mark with `%d`: a mark with the top bit set comes out negative.
        let Some(mark) = arg("-f").and_then(|m| {
            m.parse::<u32>()
                .ok()
                .or_else(|| m.parse::<i32>().ok().map(|v| v as u32))
        }) else {
            continue;
        };
        match w.first() {
            Some(&"-A") => {
                out.entry(mark).or_default();
            }
            Some(&"-a") => {
                if let (Some(d), Some(weight)) = (arg("-r"), arg("-w").and_then(|x| x.parse().ok()))
                {
                    out.entry(mark).or_default().insert(d.to_string(), weight);
                }
            }
            _ => {}
        }
    }
    out
}

fn vips(ns: &Netns) -> BTreeSet<String> {
    ns.exec("ip", &["-o", "-4", "addr", "show", "dev", "swyd-ipvs0"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let i = w.iter().position(|x| *x == "inet")?;
            w.get(i + 1).map(|a| a.to_string())
        })
        .collect()
}

/// Whether `now` is A, B, or a state the IPVS design allows between them (DESIGN-NOTES 250):
/// the helper table exactly A's or B's; every service key it steers goes to a virtual service
/// that exists, whose active destinations lie between the key's A∩B and A∪B (and are not
/// empty where the table's own state has destinations); addresses between A∩B and A∪B.
pub fn classify(now: &IpvsState, a: &IpvsState, b: &IpvsState) -> Result<&'static str, String> {
    if now == a {
        return Ok("A");
    }
    if now == b {
        return Ok("B");
    }
    let (rules, which) = if now.helper == a.helper {
        (a, "A rules, services between A and B")
    } else if now.helper == b.helper {
        (b, "B rules, services between A and B")
    } else {
        return Err("table switchyard-ipvs is neither A's nor B's".into());
    };
    let unserved = unserved(now);
    if let Some(&key) = unserved.first() {
        let mark = now.steer[key];
        let in_a = a.steer.get(key).map(|m| (m, a.services.contains_key(m)));
        let in_b = b.steer.get(key).map(|m| (m, b.services.contains_key(m)));
        return Err(format!(
            "{which}: {key} is steered to mark {mark:#x}, which has no virtual service \
             ({} of {} keys are; the key in A: {in_a:x?}, in B: {in_b:x?}, \
             as (mark, has a virtual service))",
            unserved.len(),
            now.steer.len()
        ));
    }
    for (key, mark) in &now.steer {
        let active = now.active(key);
        let (in_a, in_b) = (a.active(key), b.active(key));
        if let Some(x) = active
            .iter()
            .find(|d| !in_a.contains(*d) && !in_b.contains(*d))
        {
            return Err(format!(
                "{key} (mark {mark:#x}) sends to {x}, an endpoint of neither A nor B"
            ));
        }
        if let Some(x) = in_a.intersection(&in_b).find(|d| !active.contains(*d)) {
            return Err(format!(
                "{key} (mark {mark:#x}) lacks {x}, an endpoint in both A and B"
            ));
        }
        if active.is_empty() && !rules.active(key).is_empty() {
            return Err(format!("{key} (mark {mark:#x}) has no active destination"));
        }
    }
    if let Some(x) = now
        .vips
        .iter()
        .find(|v| !a.vips.contains(*v) && !b.vips.contains(*v))
    {
        return Err(format!("address {x} is in neither A nor B"));
    }
    if let Some(x) = a
        .vips
        .intersection(&b.vips)
        .find(|v| !now.vips.contains(*v))
    {
        return Err(format!("address {x} of A and B is missing"));
    }
    Ok(which)
}

/// The service keys the helper table steers to a mark no virtual service has. Empty in every
/// whole ruleset: the kill -9 test checks A and B with it, which also guards this module's
/// reading of `nft -j` and `ipvsadm -S -n` (DESIGN-NOTES 288).
pub fn unserved(state: &IpvsState) -> Vec<&String> {
    state
        .steer
        .iter()
        .filter(|(_, m)| !state.services.contains_key(*m))
        .map(|(k, _)| k)
        .collect()
}

/// Service keys steered in both A and B whose mark in B held another key's service in A:
/// a sync from A to B re-points such a mark before the rules switch.
pub fn marks_reused(a: &IpvsState, b: &IpvsState) -> Vec<String> {
    let owner: BTreeMap<u32, &String> = a.steer.iter().map(|(k, m)| (*m, k)).collect();
    b.steer
        .iter()
        .filter_map(|(k, m)| match owner.get(m) {
            Some(old) if *old != k => Some(format!("{k} takes {m:#x} from {old}")),
            _ => None,
        })
        .collect()
}
