//! Running iptables, ipset and their restore tools, optionally inside a network namespace, and
//! turning their failures into errors that name the offending line and service.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Instant;
use switchyard_core::plan::IpFamily;
use switchyard_core::DataplaneError;
use tokio::io::AsyncWriteExt as _;

/// Which iptables implementation to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// iptables-nft: the iptables API over nf_tables (Debian's default).
    Nft,
    /// iptables-legacy: the old x_tables kernel interface.
    Legacy,
}

impl Variant {
    fn suffix(self) -> &'static str {
        match self {
            Self::Nft => "nft",
            Self::Legacy => "legacy",
        }
    }

    /// `iptables-nft`, `ip6tables-legacy`, ...
    pub fn iptables(self, family: IpFamily) -> String {
        format!("{}-{}", base(family), self.suffix())
    }

    pub fn restore(self, family: IpFamily) -> String {
        format!("{}-{}-restore", base(family), self.suffix())
    }

    pub fn save(self, family: IpFamily) -> String {
        format!("{}-{}-save", base(family), self.suffix())
    }

    /// The variant this one is not.
    pub fn other(self) -> Self {
        match self {
            Self::Nft => Self::Legacy,
            Self::Legacy => Self::Nft,
        }
    }
}

fn base(family: IpFamily) -> &'static str {
    match family {
        IpFamily::V4 => "iptables",
        IpFamily::V6 => "ip6tables",
    }
}

/// Runs programs, in the host's network namespace or in a named one (`/run/netns/NAME`, via
/// `nsenter`, so no `unsafe` `setns` is needed here).
#[derive(Debug, Clone, Default)]
pub struct Runner {
    netns: Option<PathBuf>,
}

/// What a program printed.
#[derive(Debug)]
pub struct Ran {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Runner {
    pub fn in_netns(path: impl Into<PathBuf>) -> Self {
        Self {
            netns: Some(path.into()),
        }
    }

    /// Runs `program args`, feeding `stdin`. Only a failure to start is an error here.
    pub async fn run(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<Ran, DataplaneError> {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = tokio::process::Command::new("nsenter");
                c.arg(format!("--net={}", ns.display()))
                    .arg("--")
                    .arg(program);
                c
            }
            None => tokio::process::Command::new(program),
        };
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                DataplaneError::Unsupported {
                    what: program.to_string(),
                    hint: install_hint(program),
                }
            } else {
                DataplaneError::Io {
                    step: format!("starting {program}"),
                    source,
                }
            }
        })?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes())
                .await
                .map_err(|source| DataplaneError::Io {
                    step: format!("writing to {program}"),
                    source,
                })?;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|source| DataplaneError::Io {
                step: format!("waiting for {program}"),
                source,
            })?;
        tracing::debug!(
            program,
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "ran"
        );
        Ok(Ran {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Pipes `input` to a restore tool; on failure names the line it complained about, the text
    /// of that line and the service it belongs to (from its comment, or from `owners`, which
    /// maps chain names to service ports).
    pub async fn restore(
        &self,
        program: &str,
        args: &[&str],
        input: &str,
        owners: &BTreeMap<String, String>,
    ) -> Result<(), DataplaneError> {
        if input.trim().is_empty() {
            return Ok(());
        }
        let ran = self.run(program, args, Some(input)).await?;
        if ran.success {
            return Ok(());
        }
        Err(restore_error(program, input, &ran.stderr, owners))
    }
}

/// `apt-get install` advice for a missing tool.
fn install_hint(program: &str) -> String {
    let package = if program.starts_with("ipset") {
        "ipset"
    } else if program == "nsenter" {
        "util-linux"
    } else {
        "iptables"
    };
    format!(
        "{program} not found; install the Debian package `{package}` (apt-get install {package})"
    )
}

/// Builds the error for a failed restore from its stderr: iptables says `line N failed` (legacy)
/// or `line N: ...` (nft), ipset says `Error in line N: ...`.
pub fn restore_error(
    program: &str,
    input: &str,
    stderr: &str,
    owners: &BTreeMap<String, String>,
) -> DataplaneError {
    let line = find_line_number(stderr);
    let text = line
        .and_then(|n| input.lines().nth(n.checked_sub(1)?))
        .unwrap_or("");
    let from_comment = text
        .split_once("--comment \"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(c, _)| c.to_string())
        .filter(|c| c.contains('/'));
    // `-A CHAIN ...`, `-X CHAIN`, `:CHAIN - [0:0]`: the chain's owner.
    let chain = text
        .trim_start_matches(':')
        .split_whitespace()
        .find(|w| owners.contains_key(*w));
    let service = from_comment.or_else(|| chain.and_then(|c| owners.get(c).cloned()));
    let detail = stderr.trim().lines().last().unwrap_or("").trim();
    let message = if text.is_empty() {
        detail.to_string()
    } else {
        format!(
            "`{text}`{}: {detail}",
            service
                .as_ref()
                .map(|s| format!(" (for {s})"))
                .unwrap_or_default()
        )
    };
    DataplaneError::ToolFailed {
        program: program.to_string(),
        line,
        service,
        message,
    }
}

fn find_line_number(stderr: &str) -> Option<usize> {
    let lower = stderr.to_ascii_lowercase();
    let at = lower.find("line ")?;
    let digits: String = lower[at + 5..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Splits a rule's text into arguments, honouring double quotes (comments contain spaces).
pub fn split_args(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut has = false;
    for ch in text.chars() {
        match ch {
            '"' => {
                quoted = !quoted;
                has = true;
            }
            c if c.is_whitespace() && !quoted => {
                if has {
                    out.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            c => {
                cur.push(c);
                has = true;
            }
        }
    }
    if has {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_errors_name_line_and_service() {
        let input = "*nat\n:SWYD-X - [0:0]\n-A SWYD-X -m comment --comment \"shop/web:http/tcp\" -j NOPE\nCOMMIT\n";
        let e = restore_error(
            "iptables-legacy-restore",
            input,
            "iptables-restore: line 3 failed\n",
            &BTreeMap::new(),
        );
        let text = e.to_string();
        assert!(text.contains("at input line 3"), "{text}");
        assert!(text.contains("(for shop/web:http/tcp)"), "{text}");
        assert!(text.contains("-j NOPE"), "{text}");
        let e = restore_error(
            "ipset",
            "create A hash:ip\nadd A bogus\n",
            "ipset v7.17: Error in line 2: Syntax error: cannot parse bogus\n",
            &BTreeMap::new(),
        );
        assert!(
            matches!(e, DataplaneError::ToolFailed { line: Some(2), .. }),
            "{e}"
        );
        let owners =
            BTreeMap::from([("SWYD-saaaaaaaaaaa-svc".to_string(), "ns/a/tcp".to_string())]);
        let e = restore_error(
            "iptables-nft-restore",
            "*nat\n-X SWYD-saaaaaaaaaaa-svc\n",
            "iptables-nft-restore: line 2 failed\n",
            &owners,
        );
        assert!(e.to_string().contains("(for ns/a/tcp)"), "{e}");
        assert_eq!(
            e.service_port(),
            Some("ns/a/tcp"),
            "the agent isolates this port"
        );
    }

    #[test]
    fn args_split_with_quotes() {
        assert_eq!(
            split_args("-A PREROUTING -m comment --comment \"switchyard service portals\" -j SWYD-SERVICES"),
            ["-A", "PREROUTING", "-m", "comment", "--comment", "switchyard service portals", "-j", "SWYD-SERVICES"]
        );
    }
}
