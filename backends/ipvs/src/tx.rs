//! One sync's transaction: the IPVS and address operations around the helper-rule batch,
//! built once, then printed (`--dry-run`) or performed (`apply`).

use crate::state::Owned;
use std::fmt;

#[derive(Debug, Clone)]
pub struct Transaction {
    pub full: bool,
    /// Addresses, virtual services and destinations added or changed first.
    pub before: Vec<Owned>,
    /// The helper rules (table `switchyard-ipvs`), one atomic nf_tables batch.
    pub helpers: switchyard_nftables::Transaction,
    /// Virtual services and addresses removed last.
    pub after: Vec<Owned>,
}

impl Transaction {
    /// IPVS messages and address operations (the helper batch counts as one).
    pub fn operations(&self) -> usize {
        self.before.len() + self.after.len() + usize::from(!self.helpers.ops.is_empty())
    }
}

impl fmt::Display for Transaction {
    /// `ipvsadm -R` lines (and `ip addr` lines), then the helper rules as `nft -f` input, then
    /// the removals, in the order `apply` performs them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "# ipvs ({} sync): virtual services and addresses",
            if self.full { "full" } else { "partial" }
        )?;
        for (op, _) in &self.before {
            writeln!(f, "{op}")?;
        }
        writeln!(f, "# ipvs helper rules (nft -f)")?;
        write!(f, "{}", self.helpers)?;
        writeln!(f, "# ipvs: removals")?;
        for (op, _) in &self.after {
            writeln!(f, "{op}")?;
        }
        Ok(())
    }
}
