//! `switchyard --cleanup-kube-proxy`: removes what kube-proxy leaves on a node, and nothing
//! else, so a node can move from kube-proxy to Switchyard without a reboot.
//!
//! In order (references before what they refer to):
//! 1. kube-proxy's iptables chains (`KUBE-*` but the kubelet's, see [`iptables`]) and every
//!    jump to them, in both variants (nft, legacy) and both families, one
//!    `iptables-restore --noflush` transaction per variant and family;
//! 2. its ipsets (`KUBE-*`, IPVS mode), now that no rule refers to them;
//! 3. `table ip kube-proxy` and `table ip6 kube-proxy` (nftables mode);
//! 4. the `kube-ipvs0` dummy interface (IPVS mode), over rtnetlink: its addresses are the
//!    IPVS virtual services' addresses, so with it gone no traffic reaches them;
//! 5. kube-proxy's IPVS virtual services (every address-based one outside
//!    `--ipvs-exclude-cidrs`; firewall-mark services, Switchyard's among them, stay): see
//!    [`ipvs`].
//!
//! Every step runs even when an earlier one failed; the errors are reported together. Runs in
//! the caller's network namespace (the tests run the binary under `ip netns exec`).

pub mod iptables;
pub mod ipvs;

use anyhow::{bail, Context as _};
use futures_util::TryStreamExt as _;
use ipnet::IpNet;
use std::process::Stdio;
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

/// kube-proxy's IPVS-mode dummy interface.
const KUBE_IPVS_IF: &str = "kube-ipvs0";

/// The iptables commands of one variant and family: (save, restore).
const IPTABLES_TOOLS: [(&str, &str); 4] = [
    ("iptables-nft-save", "iptables-nft-restore"),
    ("ip6tables-nft-save", "ip6tables-nft-restore"),
    ("iptables-legacy-save", "iptables-legacy-restore"),
    ("ip6tables-legacy-save", "ip6tables-legacy-restore"),
];

/// Runs every step; fails (naming each failed step) if any did. IPVS services with an
/// address in `ipvs_exclude` are kept (`--ipvs-exclude-cidrs`).
pub async fn cleanup_kube_proxy(ipvs_exclude: &[IpNet]) -> anyhow::Result<()> {
    let mut failures = Vec::new();
    for (save, restore) in IPTABLES_TOOLS {
        if let Err(e) = iptables_chains(save, restore).await {
            failures.push(format!("{e:#}"));
        }
    }
    let steps = [
        ("ipsets", ipsets().await),
        ("nftables tables", nft_tables().await),
        ("kube-ipvs0", kube_ipvs_interface().await),
        ("IPVS services", ipvs::delete_services(ipvs_exclude)),
    ];
    for (step, result) in steps {
        if let Err(e) = result {
            failures.push(format!("{step}: {e:#}"));
        }
    }
    if !failures.is_empty() {
        bail!("removing kube-proxy's leftovers: {}", failures.join("; "));
    }
    tracing::info!("kube-proxy's leftovers removed");
    Ok(())
}

/// Runs `program args` and returns its stdout; `None` when the program is not installed.
async fn output(program: &str, args: &[&str]) -> anyhow::Result<Option<String>> {
    match Command::new(program).args(args).output().await {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("running {program}")),
        Ok(out) if out.status.success() => Ok(Some(String::from_utf8_lossy(&out.stdout).into())),
        Ok(out) => bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

/// Step 1 for one variant and family. A missing tool means that variant is not installed:
/// nothing of it can be left.
async fn iptables_chains(save: &str, restore: &str) -> anyhow::Result<()> {
    let Some(dump) = output(save, &[]).await? else {
        tracing::debug!("{save} not installed; skipped");
        return Ok(());
    };
    let Some(script) = iptables::removal_script(&dump) else {
        return Ok(());
    };
    let mut child = Command::new(restore)
        .args(["--noflush", "--wait"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {restore}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .await
            .with_context(|| format!("writing to {restore}"))?;
    }
    let out = child
        .wait_with_output()
        .await
        .with_context(|| format!("waiting for {restore}"))?;
    if !out.status.success() {
        bail!(
            "{restore} refused the removal: {}\n{script}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let chains = script.lines().filter(|l| l.starts_with("-X ")).count();
    tracing::info!(
        tool = restore,
        chains,
        "removed kube-proxy's iptables chains"
    );
    Ok(())
}

/// Step 2: kube-proxy's ipsets.
async fn ipsets() -> anyhow::Result<()> {
    let Some(names) = output("ipset", &["list", "-n"]).await? else {
        return Ok(());
    };
    for name in names
        .lines()
        .map(str::trim)
        .filter(|n| n.starts_with("KUBE-"))
    {
        output("ipset", &["destroy", name]).await?;
        tracing::info!(ipset = name, "destroyed kube-proxy's ipset");
    }
    Ok(())
}

/// Step 3: the nftables mode's tables.
async fn nft_tables() -> anyhow::Result<()> {
    let Some(tables) = output("nft", &["list", "tables"]).await? else {
        return Ok(());
    };
    for family in ["ip", "ip6"] {
        if tables
            .lines()
            .any(|l| l.trim() == format!("table {family} kube-proxy"))
        {
            output("nft", &["delete", "table", family, "kube-proxy"]).await?;
            tracing::info!("deleted nftables table {family} kube-proxy");
        }
    }
    Ok(())
}

/// `ENODEV`: the kernel's answer for an interface name it does not know.
const ENODEV: i32 = 19;

/// Step 4: the IPVS mode's dummy interface.
async fn kube_ipvs_interface() -> anyhow::Result<()> {
    let (connection, handle, _) =
        rtnetlink::new_connection().context("opening an rtnetlink socket")?;
    let task = tokio::spawn(connection);
    let found = handle
        .link()
        .get()
        .match_name(KUBE_IPVS_IF.to_string())
        .execute()
        .try_next()
        .await;
    let result = match found {
        Ok(Some(link)) => {
            let deleted = handle.link().del(link.header.index).execute().await;
            if deleted.is_ok() {
                tracing::info!("deleted kube-proxy's interface {KUBE_IPVS_IF}");
            }
            deleted.context("deleting kube-ipvs0")
        }
        Ok(None) => Ok(()),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -ENODEV => Ok(()),
        Err(e) => Err(e).context("looking up kube-ipvs0"),
    };
    task.abort();
    result
}
