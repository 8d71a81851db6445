//! `IptablesDataplane`: the `Dataplane` implementation.

use crate::build::{self, After, Committed, Existing};
use crate::check;
use crate::exec::{split_args, Runner, Variant};
use crate::names::{self, SetNames};
use crate::render::base_jumps;
use crate::rules::{Rule, Table};
use crate::tx::Transaction;
use async_trait::async_trait;
use std::path::PathBuf;
use std::time::Instant;
use switchyard_core::plan::{IpFamily, ProxyPlan};
use switchyard_core::{ApplyStats, Changes, Dataplane, DataplaneError, Drift, Mode};

/// Settings for an [`IptablesDataplane`].
#[derive(Debug, Clone)]
#[must_use]
pub struct IptablesConfig {
    family: IpFamily,
    variant: Option<Variant>,
    netns: Option<PathBuf>,
}

impl IptablesConfig {
    pub fn new(family: IpFamily) -> Self {
        Self {
            family,
            variant: None,
            netns: None,
        }
    }

    /// Force a variant instead of detecting it in `probe`.
    pub fn variant(mut self, variant: Variant) -> Self {
        self.variant = Some(variant);
        self
    }

    /// Program the network namespace at this path (e.g. `/run/netns/NAME`) instead of the host's.
    pub fn netns(mut self, path: impl Into<PathBuf>) -> Self {
        self.netns = Some(path.into());
        self
    }

    pub fn build(self) -> IptablesDataplane {
        let runner = match self.netns {
            Some(p) => Runner::in_netns(p),
            None => Runner::default(),
        };
        IptablesDataplane {
            family: self.family,
            variant: self.variant,
            runner,
            sets: SetNames::new(self.family),
            committed: None,
            other_variant_cleared: false,
        }
    }
}

/// The iptables dataplane for one family.
#[derive(Debug)]
pub struct IptablesDataplane {
    family: IpFamily,
    variant: Option<Variant>,
    runner: Runner,
    sets: SetNames,
    /// `None` after a failure or before the first sync: the next sync is full.
    committed: Option<Committed>,
    /// Whether the other variant has been cleared of our rules (once, before the first sync).
    other_variant_cleared: bool,
}

impl IptablesDataplane {
    /// The variant in use (detected by `probe` unless configured).
    pub fn variant(&self) -> Option<Variant> {
        self.variant
    }

    fn require_variant(&self) -> Result<Variant, DataplaneError> {
        self.variant.ok_or_else(|| DataplaneError::Unsupported {
            what: "iptables variant".into(),
            hint: "call probe() first or configure the variant".into(),
        })
    }

    /// Exactly the `iptables-restore` input `render` shows for this plan (benchmarks pipe it to a
    /// bare `iptables-restore` as their baseline).
    pub fn restore_input(&self, plan: &ProxyPlan, changes: Option<&Changes>) -> String {
        self.assumed_transaction(plan, changes).restore_text()
    }

    /// The transaction without asking the kernel: with memory of an earlier sync, jumps are
    /// assumed present; without, every jump is inserted and no stale chain is known (`apply`
    /// checks both in the kernel).
    fn assumed_transaction(&self, plan: &ProxyPlan, changes: Option<&Changes>) -> Transaction {
        let (missing, existing) = match &self.committed {
            Some(c) => (Vec::new(), c.existing.clone()),
            None => (base_jumps(), Existing::default()),
        };
        self.transaction(plan, changes, &existing, &missing).0
    }

    /// The transaction for `plan`, given what was committed and which jumps are missing.
    fn transaction(
        &self,
        plan: &ProxyPlan,
        changes: Option<&Changes>,
        existing: &Existing,
        missing: &[(Table, Rule)],
    ) -> (Transaction, After) {
        match (changes, &self.committed) {
            (Some(changes), Some(old)) if !changes.requires_full_sync() => {
                build::partial(old, plan, changes, &self.sets, missing)
            }
            _ => build::full(plan, &self.sets, existing, missing),
        }
    }

    /// Base-chain jumps that are missing, checked with `iptables -C` (read-only).
    async fn missing_jumps(&self, variant: Variant) -> Result<Vec<(Table, Rule)>, DataplaneError> {
        let iptables = variant.iptables(self.family);
        let mut missing = Vec::new();
        for (table, rule) in base_jumps() {
            let text = rule.to_string();
            let mut args = vec![
                "-w".to_string(),
                "-t".into(),
                table.name().into(),
                "-C".into(),
            ];
            args.extend(split_args(&text).into_iter().skip(1));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            if !self.runner.run(&iptables, &args, None).await?.success {
                missing.push((table, rule));
            }
        }
        Ok(missing)
    }

    /// Our chains present in the kernel, from `iptables-save` (only when memory is lost).
    async fn list_chains(&self, variant: Variant) -> Result<Existing, DataplaneError> {
        let save = variant.save(self.family);
        let mut existing = Existing::default();
        for (table, set) in [
            (Table::Nat, &mut existing.nat),
            (Table::Filter, &mut existing.filter),
        ] {
            let ran = self.runner.run(&save, &["-t", table.name()], None).await?;
            if !ran.success {
                return Err(DataplaneError::ToolFailed {
                    program: save,
                    line: None,
                    service: None,
                    message: ran.stderr,
                });
            }
            set.extend(
                ran.stdout
                    .lines()
                    .filter_map(|l| l.strip_prefix(':'))
                    .filter_map(|l| l.split_whitespace().next())
                    .filter(|c| names::is_owned(c))
                    .map(str::to_string),
            );
        }
        Ok(existing)
    }

    /// Removes our base-chain jumps and chains from `variant`'s tables (not the sets).
    async fn remove_rules(&self, variant: Variant) -> Result<(), DataplaneError> {
        let present: Vec<(Table, Rule)> = {
            let missing = self.missing_jumps(variant).await?;
            base_jumps()
                .into_iter()
                .filter(|j| !missing.contains(j))
                .collect()
        };
        let existing = self.list_chains(variant).await?;
        let mut text = String::new();
        for (table, chains) in [
            (Table::Filter, &existing.filter),
            (Table::Nat, &existing.nat),
        ] {
            let jumps: Vec<&Rule> = present
                .iter()
                .filter(|(t, _)| *t == table)
                .map(|(_, r)| r)
                .collect();
            if chains.is_empty() && jumps.is_empty() {
                continue;
            }
            text.push_str(&format!("*{}\n", table.name()));
            for c in chains {
                text.push_str(&format!(":{c} - [0:0]\n"));
            }
            for r in jumps {
                text.push_str(&r.to_string().replacen("-A ", "-D ", 1));
                text.push('\n');
            }
            for c in chains {
                text.push_str(&format!("-X {c}\n"));
            }
            text.push_str("COMMIT\n");
        }
        if text.is_empty() {
            return Ok(());
        }
        let restore = variant.restore(self.family);
        self.runner
            .restore(
                &restore,
                &["--noflush", "--wait"],
                &text,
                &Default::default(),
            )
            .await
    }

    /// Removes our rules from the variant not in use. A node that moved between iptables-nft
    /// and iptables-legacy (an OS upgrade, `--iptables-variant`) would otherwise run both rule
    /// sets, the other one stale. The sets are shared by both variants and stay. A variant
    /// whose tools are not installed has nothing to remove.
    async fn remove_other_variant(&mut self, variant: Variant) -> Result<(), DataplaneError> {
        let other = variant.other();
        match self.remove_rules(other).await {
            Ok(()) | Err(DataplaneError::Unsupported { .. }) => {
                self.other_variant_cleared = true;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// `ipset list -t` (headers with entry counts, no members).
    async fn set_counts(
        &self,
    ) -> Result<std::collections::BTreeMap<String, usize>, DataplaneError> {
        let ran = self.runner.run("ipset", &["list", "-t"], None).await?;
        if !ran.success {
            return Err(DataplaneError::ToolFailed {
                program: "ipset list -t".into(),
                line: None,
                service: None,
                message: ran.stderr,
            });
        }
        Ok(check::parse_ipset_terse(&ran.stdout))
    }

    async fn run_transaction(
        &self,
        variant: Variant,
        tx: &Transaction,
        restore_text: &str,
    ) -> Result<(), DataplaneError> {
        let owners = &tx.owners;
        let restore = variant.restore(self.family);
        let r = &self.runner;
        r.restore("ipset", &["restore"], &tx.sets_before_text(), owners)
            .await?;
        r.restore(&restore, &["--noflush", "--wait"], restore_text, owners)
            .await?;
        r.restore("ipset", &["restore"], &tx.sets_after_text(), owners)
            .await
    }
}

#[async_trait]
impl Dataplane for IptablesDataplane {
    fn mode(&self) -> Mode {
        Mode::Iptables
    }

    fn family(&self) -> IpFamily {
        self.family
    }

    /// Checks for the tools (naming the package to install), detects the variant the way
    /// kube-proxy's iptables wrapper does (kubelet's canary chain, else whichever variant holds
    /// more rules, else nft), and checks that ipset works in this kernel.
    async fn probe(&mut self) -> Result<(), DataplaneError> {
        let variant = match self.variant {
            Some(v) => v,
            None => detect_variant(&self.runner, self.family).await?,
        };
        for tool in [
            variant.restore(self.family),
            variant.save(self.family),
            variant.iptables(self.family),
        ] {
            let ran = self.runner.run(&tool, &["--version"], None).await?;
            if !ran.success {
                return Err(DataplaneError::Unsupported {
                    what: tool,
                    hint: ran.stderr.trim().to_string(),
                });
            }
        }
        let ran = self.runner.run("ipset", &["list", "-n"], None).await?;
        if !ran.success {
            return Err(DataplaneError::Unsupported {
                what: "ipset kernel support".into(),
                hint: format!(
                    "ipset list failed: {} (the kernel needs CONFIG_IP_SET)",
                    ran.stderr.trim()
                ),
            });
        }
        self.variant = Some(variant);
        Ok(())
    }

    async fn apply(
        &mut self,
        plan: &ProxyPlan,
        changes: Option<&Changes>,
    ) -> Result<ApplyStats, DataplaneError> {
        let variant = self.require_variant()?;
        let started = Instant::now();
        let missing = self.missing_jumps(variant).await?;
        let existing = match &self.committed {
            Some(c) => c.existing.clone(),
            None => self.list_chains(variant).await?,
        };
        let (tx, after) = self.transaction(plan, changes, &existing, &missing);
        // Forget what was committed until this transaction succeeds: a failure means full next.
        let previous = self.committed.take();
        let restore_text = tx.restore_text();
        self.run_transaction(variant, &tx, &restore_text).await?;
        drop(previous);
        // Only now that our rules are in: a variant switch has no window without rules.
        if !self.other_variant_cleared {
            self.remove_other_variant(variant).await?;
        }
        self.committed = Some(Committed {
            plan: plan.clone(),
            sets: after.sets,
            existing: after.existing,
        });
        Ok(ApplyStats {
            full: tx.full,
            service_ports_written: tx.service_ports,
            operations: tx.operations(&restore_text),
            kernel_time: started.elapsed(),
            ..ApplyStats::default()
        })
    }

    /// Lists both tables with `iptables-save` and the sets with `ipset list -t`, and compares
    /// them with a full sync of the committed plan (see `crate::check`).
    async fn check(&mut self) -> Result<Option<Drift>, DataplaneError> {
        let (Some(committed), Some(variant)) = (&self.committed, self.variant) else {
            return Ok(None);
        };
        let (mut tx, _) = build::full(&committed.plan, &self.sets, &committed.existing, &[]);
        add_base_jumps(&mut tx);
        let mut findings = Vec::new();
        let save = variant.save(self.family);
        for (table, expected) in check::expected_tables(&tx) {
            let ran = self.runner.run(&save, &["-t", table.name()], None).await?;
            if !ran.success {
                return Err(DataplaneError::ToolFailed {
                    program: save,
                    line: None,
                    service: None,
                    message: ran.stderr,
                });
            }
            let found = check::parse_save(&ran.stdout, names::is_owned);
            findings.extend(check::compare_table(table, &expected, &found));
        }
        let s = &committed.sets;
        let n = &self.sets;
        let want = [
            (n.vips.as_str(), s.vips.len()),
            (n.reject.as_str(), s.reject.len()),
            (n.drop.as_str(), s.drop.len()),
            (n.cluster_ips.as_str(), s.cluster_ips.len()),
            (n.hairpin.as_str(), s.hairpin.len()),
        ];
        findings.extend(check::compare_sets(&want, &self.set_counts().await?));
        Ok(Some(Drift { findings }))
    }

    /// The transaction `apply` would run. Without memory of an earlier sync it includes every
    /// base-chain jump and no stale-chain deletions (apply checks both in the kernel).
    fn render(&self, plan: &ProxyPlan, changes: Option<&Changes>) -> String {
        self.assumed_transaction(plan, changes).to_string()
    }

    /// Removes our jumps, chains and sets (in that order), and nothing else.
    async fn cleanup(&mut self) -> Result<(), DataplaneError> {
        self.committed = None;
        let variant = match self.variant {
            Some(v) => v,
            None => detect_variant(&self.runner, self.family).await?,
        };
        self.remove_rules(variant).await?;
        let none = Default::default();
        let ran = self.runner.run("ipset", &["list", "-n"], None).await?;
        let prefix = match self.family {
            IpFamily::V4 => "SWYD4-",
            IpFamily::V6 => "SWYD6-",
        };
        let destroy: String = ran
            .stdout
            .lines()
            .filter(|n| n.starts_with(prefix))
            .map(|n| format!("destroy {n}\n"))
            .collect();
        self.runner
            .restore("ipset", &["restore"], &destroy, &none)
            .await
    }
}

/// Adds every base-chain jump to a transaction's tables, as `insert` lines (a full sync's
/// expected contents include them; `apply` inserts only the missing ones).
fn add_base_jumps(tx: &mut Transaction) {
    for (table, rule) in base_jumps() {
        match table {
            Table::Nat => tx.nat.insert.push(rule),
            Table::Filter => tx.filter.insert.push(rule),
        }
    }
}

/// kube-proxy's rule (from the iptables-wrapper): if kubelet's canary chain exists in one
/// variant, use it; otherwise whichever variant has more rules; a tie (e.g. an empty node)
/// goes to nft, Debian's default.
pub async fn detect_variant(runner: &Runner, family: IpFamily) -> Result<Variant, DataplaneError> {
    let mut counts = Vec::new();
    for v in [Variant::Nft, Variant::Legacy] {
        let ran = runner.run(&v.save(family), &[], None).await;
        let text = match ran {
            Ok(r) if r.success => r.stdout,
            Ok(_) | Err(DataplaneError::Unsupported { .. }) => String::new(),
            Err(e) => return Err(e),
        };
        if text.contains("KUBE-IPTABLES-HINT") || text.contains("KUBE-KUBELET-CANARY") {
            return Ok(v);
        }
        counts.push(text.lines().filter(|l| l.starts_with("-A ")).count());
    }
    Ok(if counts[1] > counts[0] {
        Variant::Legacy
    } else {
        Variant::Nft
    })
}
