//! Noticing that someone else changed our chains, jumps or sets (`Dataplane::check`).
//!
//! The kernel is read with the tools an operator would use (`iptables-save -t nat|filter`,
//! `ipset list -t`) and compared, by count, with what a full sync of the committed plan
//! writes: our chains (missing or foreign ones), the rules in each, our jumps from the
//! built-in chains, and the entries of each set. Counting catches every deletion — a chain,
//! a jump, a rule, a set member — and additions to our objects.

use crate::rules::Table;
use crate::tx::{TableChanges, Transaction};
use std::collections::{BTreeMap, BTreeSet};

/// One table as `iptables-save -t TABLE` lists it, restricted to what concerns us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Saved {
    /// Our chains (declared with `:NAME`).
    pub chains: BTreeSet<String>,
    /// Rules per chain of ours, and jumps to our chains per built-in chain.
    pub rules: BTreeMap<String, usize>,
}

/// Reads `iptables-save` output: `:CHAIN POLICY [..]` declarations and `-A CHAIN ...` rules.
/// Only our chains, and built-in chains' rules jumping (`-j`/`-g`) to ours, are kept; any
/// other line, or a malformed one, is ignored.
///
/// A chain's rules are listed one after another, so they are counted as runs: the map is
/// touched (and the name copied) once per run, not once per rule, and the declarations,
/// listed sorted, are collected before the set is built. (10k services list ~100k rules;
/// every sync period reads them.)
pub fn parse_save(text: &str, owned: impl Fn(&str) -> bool) -> Saved {
    let mut out = Saved::default();
    let mut chains = Vec::new();
    let mut run: Option<(&str, usize)> = None;
    let count = |rules: &mut BTreeMap<String, usize>, run: Option<(&str, usize)>| {
        if let Some((chain, n)) = run {
            *rules.entry(chain.to_string()).or_default() += n;
        }
    };
    for line in text.lines() {
        if let Some(decl) = line.strip_prefix(':') {
            if let Some(name) = decl.split_whitespace().next().filter(|n| owned(n)) {
                chains.push(name);
            }
            continue;
        }
        let Some(rule) = line.strip_prefix("-A ") else {
            continue;
        };
        let mut words = rule.split_whitespace();
        let Some(chain) = words.next() else {
            continue;
        };
        let ours = owned(chain)
            || words
                .by_ref()
                .skip_while(|w| *w != "-j" && *w != "-g")
                .nth(1)
                .is_some_and(&owned);
        if ours {
            match &mut run {
                Some((c, n)) if *c == chain => *n += 1,
                _ => count(&mut out.rules, run.replace((chain, 1))),
            }
        }
    }
    count(&mut out.rules, run);
    out.chains = chains.into_iter().map(str::to_string).collect();
    out
}

/// Reads `ipset list -t` output: each set's `Name:` and `Number of entries:`.
pub fn parse_ipset_terse(text: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let mut name: Option<&str> = None;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("Name:") {
            name = Some(n.trim());
        } else if let Some(n) = line.strip_prefix("Number of entries:") {
            if let (Some(set), Ok(count)) = (name.take(), n.trim().parse()) {
                out.insert(set.to_string(), count);
            }
        }
    }
    out
}

/// What one table should hold after a full sync: its declared chains and the rules appended
/// or inserted (jumps) per chain.
pub fn expected_table(t: &TableChanges) -> Saved {
    let mut out = Saved {
        chains: t.declare.iter().cloned().collect(),
        ..Saved::default()
    };
    for r in t.rules.iter().chain(&t.insert) {
        *out.rules.entry(r.chain.clone()).or_default() += 1;
    }
    out
}

/// Findings for one table: `expected` vs `found`.
pub fn compare_table(table: Table, expected: &Saved, found: &Saved) -> Vec<String> {
    let t = table.name();
    let mut out = Vec::new();
    for c in expected.chains.difference(&found.chains) {
        out.push(format!("chain {t} {c}: missing"));
    }
    for c in found.chains.difference(&expected.chains) {
        out.push(format!("chain {t} {c}: not ours to have"));
    }
    let chains: BTreeSet<&String> = expected.rules.keys().chain(found.rules.keys()).collect();
    for c in chains {
        let want = expected.rules.get(c).copied().unwrap_or(0);
        let have = found.rules.get(c).copied().unwrap_or(0);
        if want != have && (found.chains.contains(c) || !expected.chains.contains(c)) {
            let what = if expected.chains.contains(c) {
                "rules"
            } else {
                "jumps to our chains"
            };
            out.push(format!("chain {t} {c}: {have} {what}, expected {want}"));
        }
    }
    out
}

/// Findings for the sets: expected entry counts vs `ipset list -t`.
pub fn compare_sets(expected: &[(&str, usize)], found: &BTreeMap<String, usize>) -> Vec<String> {
    expected
        .iter()
        .filter_map(|(name, want)| match found.get(*name) {
            None => Some(format!("ipset {name}: missing")),
            Some(have) if have != want => {
                Some(format!("ipset {name}: {have} entries, expected {want}"))
            }
            Some(_) => None,
        })
        .collect()
}

/// The tables of a full sync's transaction, with their expected contents.
pub fn expected_tables(tx: &Transaction) -> [(Table, Saved); 2] {
    [
        (Table::Filter, expected_table(&tx.filter)),
        (Table::Nat, expected_table(&tx.nat)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::is_owned;

    const SAVE: &str = "# Generated by iptables-nft-save v1.8.9
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:SWYD-SERVICES - [0:0]
:SWYD-sabc-svc - [0:0]
:KUBE-OTHER - [0:0]
-A PREROUTING -m comment --comment \"switchyard service portals\" -j SWYD-SERVICES
-A PREROUTING -j KUBE-OTHER
-A OUTPUT -m comment --comment \"switchyard service portals\" -j SWYD-SERVICES
-A SWYD-SERVICES -m set --match-set SWYD4-VIPS dst,dst -j SWYD-T
-A SWYD-sabc-svc -p tcp -j DNAT --to-destination 10.244.1.5:80
-A SWYD-sabc-svc
-A
COMMIT
";

    #[test]
    fn save_output_counts_our_chains_rules_and_jumps_only() {
        let s = parse_save(SAVE, is_owned);
        assert_eq!(
            s.chains,
            BTreeSet::from(["SWYD-SERVICES".to_string(), "SWYD-sabc-svc".to_string()])
        );
        assert_eq!(s.rules.get("PREROUTING"), Some(&1), "only the jump to ours");
        assert_eq!(s.rules.get("OUTPUT"), Some(&1));
        assert_eq!(s.rules.get("SWYD-SERVICES"), Some(&1));
        assert_eq!(s.rules.get("SWYD-sabc-svc"), Some(&2));
        assert!(!s.rules.contains_key("KUBE-OTHER"));
        // Rules of one chain apart (as restore input lists dispatch rules) add up.
        let s = parse_save(
            ":SWYD-B - [0:0]\n:SWYD-A - [0:0]\n-A SWYD-A -j RETURN\n-A SWYD-A\n-A SWYD-B\n-A SWYD-A\n",
            is_owned,
        );
        assert_eq!(
            s.rules,
            BTreeMap::from([("SWYD-A".into(), 3), ("SWYD-B".into(), 1)])
        );
        assert_eq!(s.chains, BTreeSet::from(["SWYD-A".into(), "SWYD-B".into()]));
    }

    #[test]
    fn deleted_jumps_rules_chains_and_members_are_named() {
        let want = parse_save(SAVE, is_owned);
        let tampered = SAVE
            .replace("-A OUTPUT -m comment --comment \"switchyard service portals\" -j SWYD-SERVICES\n", "")
            .replace(":SWYD-sabc-svc - [0:0]\n", "")
            .replace("-A SWYD-sabc-svc -p tcp -j DNAT --to-destination 10.244.1.5:80\n-A SWYD-sabc-svc\n", "");
        let found = compare_table(Table::Nat, &want, &parse_save(&tampered, is_owned));
        assert_eq!(
            found,
            vec![
                "chain nat SWYD-sabc-svc: missing".to_string(),
                "chain nat OUTPUT: 0 jumps to our chains, expected 1".to_string(),
            ]
        );
        let sets = parse_ipset_terse(
            "Name: SWYD4-VIPS\nType: hash:ip,port\nNumber of entries: 3\nMembers:\n\nName: SWYD4-DROP\nNumber of entries: 0\n",
        );
        assert_eq!(
            compare_sets(
                &[("SWYD4-VIPS", 4), ("SWYD4-DROP", 0), ("SWYD4-REJECT", 0)],
                &sets
            ),
            vec![
                "ipset SWYD4-VIPS: 3 entries, expected 4".to_string(),
                "ipset SWYD4-REJECT: missing".to_string(),
            ]
        );
    }
}
