//! The transaction: everything one sync does, built once, then printed (`render`) or run (`apply`).

use crate::restore_order::{ordered, Line};
use crate::rules::{Rule, Table};
use crate::sets::{restore_text, SetOp};
use crate::skeleton::NatSkeleton;
use std::collections::BTreeMap;
use std::fmt::{self, Display, Formatter, Write as _};
use std::sync::Arc;
use switchyard_core::plan::IpFamily;

/// Changes to one table, in `iptables-restore --noflush` terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableChanges {
    pub table: Table,
    /// Chains to create or flush (`:NAME - [0:0]`), including those about to be deleted.
    pub declare: Vec<String>,
    /// `-I <built-in> 1 ...` jumps found missing.
    pub insert: Vec<Rule>,
    /// Rules appended to the declared chains.
    pub rules: Vec<Rule>,
    /// Chains to delete (`-X`), after the rules that referenced them are gone.
    pub delete: Vec<String>,
    /// A full sync's nat table starts with the shared skeleton: then `declare` and `rules`
    /// begin with its chains and rules (see [`TableChanges::with_skeleton`]), whose restore
    /// lines are printed from the skeleton's text instead of being rendered again.
    pub skeleton: Option<Arc<NatSkeleton>>,
}

impl TableChanges {
    pub fn new(table: Table) -> Self {
        Self {
            table,
            declare: Vec::new(),
            insert: Vec::new(),
            rules: Vec::new(),
            delete: Vec::new(),
            skeleton: None,
        }
    }

    /// A table that starts with `skeleton`'s chains and rules. Whatever is added after them
    /// goes behind them (`restore_order` relies on the prefix).
    pub fn with_skeleton(table: Table, skeleton: Arc<NatSkeleton>) -> Self {
        Self {
            declare: skeleton.declare.clone(),
            rules: skeleton.rules.clone(),
            skeleton: Some(skeleton),
            ..Self::new(table)
        }
    }

    fn is_empty(&self) -> bool {
        self.declare.is_empty()
            && self.insert.is_empty()
            && self.rules.is_empty()
            && self.delete.is_empty()
    }
}

/// One sync for one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub family: IpFamily,
    pub full: bool,
    /// `ipset restore` input run before the rules change: creates sets and adds entries.
    pub sets_before: Vec<SetOp>,
    pub filter: TableChanges,
    pub nat: TableChanges,
    /// `ipset restore` input run after the rules changed: deletes entries and swaps in full sets.
    pub sets_after: Vec<SetOp>,
    /// Service ports written, for stats.
    pub service_ports: usize,
    /// Which service port each per-service chain belongs to, to name it in errors.
    pub owners: BTreeMap<String, String>,
}

impl Transaction {
    /// Exactly the input piped to `iptables-restore --noflush` (or `ip6tables-restore`). Filter
    /// comes first: its rules only reference sets, so a nat failure leaves it consistent. Within
    /// a table, lines follow `restore_order`.
    pub fn restore_text(&self) -> String {
        let mut s = String::new();
        for t in [&self.filter, &self.nat] {
            if t.is_empty() {
                continue;
            }
            let _ = writeln!(s, "*{}", t.table.name());
            for line in ordered(t) {
                let _ = match line {
                    Line::Text(text) => s.write_str(text),
                    Line::Declare(c) => writeln!(s, ":{c} - [0:0]"),
                    // `-I chain 1`: our jumps go first so other rules cannot pre-empt service
                    // traffic.
                    Line::Insert(r) => writeln!(
                        s,
                        "{}",
                        r.to_string().replacen(
                            &format!("-A {} ", r.chain),
                            &format!("-I {} 1 ", r.chain),
                            1
                        )
                    ),
                    Line::Append(r) => writeln!(s, "{r}"),
                    Line::Delete(c) => writeln!(s, "-X {c}"),
                };
            }
            let _ = writeln!(s, "COMMIT");
        }
        s
    }

    pub fn sets_before_text(&self) -> String {
        restore_text(&self.sets_before)
    }

    pub fn sets_after_text(&self) -> String {
        restore_text(&self.sets_after)
    }

    /// Operations sent: set lines plus the lines of `restore_text` (pass it, it is not cheap
    /// to render twice at scale).
    pub fn operations(&self, restore_text: &str) -> usize {
        self.sets_before.len() + self.sets_after.len() + restore_text.lines().count()
    }
}

impl Display for Transaction {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let restore = match self.family {
            IpFamily::V4 => "iptables-restore",
            IpFamily::V6 => "ip6tables-restore",
        };
        let kind = if self.full { "full" } else { "partial" };
        writeln!(f, "# {kind} sync, {}", self.family)?;
        writeln!(f, "# --- ipset restore (before the rules) ---")?;
        f.write_str(&self.sets_before_text())?;
        writeln!(f, "# --- {restore} --noflush ---")?;
        f.write_str(&self.restore_text())?;
        writeln!(f, "# --- ipset restore (after the rules) ---")?;
        f.write_str(&self.sets_after_text())
    }
}
