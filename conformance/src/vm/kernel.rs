//! Debian kernels for the guest: resolve the package through apt's metadata, `apt-get download`
//! it (never install: the host's kernel is not touched), extract `vmlinuz` and the modules the
//! dataplanes need, and cache the result.
//!
//! Modules are stored decompressed (Debian's 6.12 ships `.ko.xz`; busybox `modprobe` loads
//! plain `.ko` only) with a `modules.dep`/`modules.alias` from the host's `depmod -b`, so both
//! the boot script and the kernel's on-demand `request_module` (via busybox `modprobe`) find them.

use super::{host_command, VmError};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A guest kernel the harness knows how to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kernel {
    /// Debian 12's LTS kernel (`linux-image-6.1.0-NN-cloud-amd64`).
    Debian61,
    /// Debian's 6.12 for bookworm (`linux-image-6.12.NN+deb12-cloud-amd64`, bookworm-security
    /// or bookworm-backports).
    Debian612,
}

impl Kernel {
    pub const ALL: [Kernel; 2] = [Kernel::Debian61, Kernel::Debian612];

    pub fn name(self) -> &'static str {
        match self {
            Self::Debian61 => "debian-6.1",
            Self::Debian612 => "debian-6.12",
        }
    }

    /// Meta packages to ask apt about (first that resolves wins), with the release to ask in,
    /// and the prefix the real image package must have (so the backports meta, which points at
    /// whatever is newest there, is only accepted while it is still 6.12).
    fn metas(self) -> &'static [(&'static str, Option<&'static str>, &'static str)] {
        match self {
            Self::Debian61 => &[("linux-image-cloud-amd64", None, "linux-image-6.1.0-")],
            Self::Debian612 => &[
                ("linux-image-6.12-cloud-amd64", None, "linux-image-6.12."),
                (
                    "linux-image-cloud-amd64",
                    Some("bookworm-backports"),
                    "linux-image-6.12.",
                ),
            ],
        }
    }

    /// The image package apt would download now and its candidate version.
    pub fn resolve(self) -> Result<(String, String), VmError> {
        let mut tried = Vec::new();
        for (meta, release, prefix) in self.metas() {
            let mut args = vec!["depends"];
            if let Some(r) = release {
                args.extend(["-t", r]);
            }
            args.push(meta);
            let out = match host_command("resolving the kernel package", "apt-cache", &args, None) {
                Ok(o) => o,
                Err(e) => {
                    tried.push(e.to_string());
                    continue;
                }
            };
            let Some(pkg) = out
                .lines()
                .filter_map(|l| l.trim().strip_prefix("Depends:"))
                .map(str::trim)
                .find(|p| p.starts_with(prefix))
            else {
                tried.push(format!("{meta}: no dependency named {prefix}*"));
                continue;
            };
            let policy = host_command(
                "resolving the kernel version",
                "apt-cache",
                &["policy", pkg],
                None,
            )?;
            let version = policy
                .lines()
                .filter_map(|l| l.trim().strip_prefix("Candidate:"))
                .map(str::trim)
                .find(|v| *v != "(none)")
                .ok_or_else(|| VmError::Kernel {
                    kernel: self.name().into(),
                    why: format!("apt has no candidate version of {pkg}"),
                })?;
            return Ok((pkg.to_string(), version.to_string()));
        }
        Err(VmError::Kernel {
            kernel: self.name().into(),
            why: format!(
                "no package found (is bookworm-backports in apt's sources and `apt-get update` done? .ci/install-deps does both): {}",
                tried.join("; ")
            ),
        })
    }

    /// Fetches (or reuses from `cache`) this kernel.
    pub fn prepare(self, cache: &Path) -> Result<KernelImage, VmError> {
        let base = cache.join(self.name());
        let (package, version) = match self.resolve() {
            Ok(pv) => pv,
            // Offline: the newest complete cache entry still serves.
            Err(e) => match newest_cached(&base) {
                Some(dir) => {
                    eprintln!(
                        "warning: {e}; using the cached {}",
                        dir.file_name().unwrap_or_default().to_string_lossy()
                    );
                    return KernelImage::load(self, &dir);
                }
                None => return Err(e),
            },
        };
        let dir = base.join(format!("{package}_{version}"));
        if dir.join("ready").exists() {
            return KernelImage::load(self, &dir);
        }
        fetch(self, &package, &dir)?;
        KernelImage::load(self, &dir)
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kernel {
    type Err = VmError;
    fn from_str(s: &str) -> Result<Self, VmError> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| VmError::UnknownKernel(s.to_string()))
    }
}

/// A fetched kernel: what the VM boots.
#[derive(Debug, Clone)]
pub struct KernelImage {
    pub kernel: Kernel,
    /// `uname -r` in the guest.
    pub release: String,
    pub vmlinuz: PathBuf,
    /// A root holding `lib/modules/<release>/` (decompressed, with depmod's indexes).
    pub modules_root: PathBuf,
    /// The cache entry (the base initramfs is kept here too).
    pub dir: PathBuf,
}

impl KernelImage {
    fn load(kernel: Kernel, dir: &Path) -> Result<Self, VmError> {
        let release = std::fs::read_to_string(dir.join("release"))
            .map_err(|e| VmError::io(format!("reading {}/release", dir.display()), e))?
            .trim()
            .to_string();
        Ok(Self {
            kernel,
            release,
            vmlinuz: dir.join("vmlinuz"),
            modules_root: dir.join("modules"),
            dir: dir.to_path_buf(),
        })
    }

    pub fn modules_dir(&self) -> PathBuf {
        self.modules_root.join("lib/modules").join(&self.release)
    }
}

fn newest_cached(base: &Path) -> Option<PathBuf> {
    let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(base)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("ready").exists())
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, p)| p)
}

/// Module trees the dataplanes and the topology use; their `modules.dep` dependencies are added.
const MODULE_DIRS: &[&str] = &[
    "kernel/net/netfilter",
    "kernel/net/ipv4/netfilter",
    "kernel/net/ipv6/netfilter",
    "kernel/net/bridge",
    "kernel/net/sctp",
    "kernel/drivers/net/veth.ko",
    "kernel/drivers/net/dummy.ko",
];

fn fetch(kernel: Kernel, package: &str, dir: &Path) -> Result<(), VmError> {
    let step = |s: &str| format!("{kernel}: {s}");
    let work = dir.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| VmError::io(step("creating the cache"), e))?;
    host_command(
        &step("downloading the kernel package"),
        "apt-get",
        &["download", "-q", package],
        Some(&work),
    )?;
    let deb = find_file(&work, |n| n.ends_with(".deb")).ok_or_else(|| VmError::Kernel {
        kernel: kernel.name().into(),
        why: format!("apt-get download left no .deb in {}", work.display()),
    })?;
    let root = work.join("root");
    let (deb_s, root_s) = (path_str(&deb)?, path_str(&root)?);
    host_command(
        &step("extracting the package"),
        "dpkg-deb",
        &["-x", deb_s, root_s],
        None,
    )?;
    let vmlinuz =
        find_file(&root.join("boot"), |n| n.starts_with("vmlinuz-")).ok_or_else(|| {
            VmError::Kernel {
                kernel: kernel.name().into(),
                why: format!("{package} has no boot/vmlinuz-*"),
            }
        })?;
    let release = vmlinuz
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .unwrap_or_default()
        .to_string();
    let full = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|p| root.join(p).join(&release))
        .find(|p| p.is_dir())
        .ok_or_else(|| VmError::Kernel {
            kernel: kernel.name().into(),
            why: format!("{package} has no lib/modules/{release}"),
        })?;
    // Dependencies from depmod over the full (still compressed) tree: kmod reads .ko.xz/.ko.zst.
    let full_base = work.join("full");
    std::fs::create_dir_all(full_base.join("lib/modules"))
        .map_err(|e| VmError::io(step("staging modules"), e))?;
    std::fs::rename(&full, full_base.join("lib/modules").join(&release))
        .map_err(|e| VmError::io(step("staging modules"), e))?;
    let full = full_base.join("lib/modules").join(&release);
    depmod(kernel, &full_base, &release)?;
    let deps = read_deps(&full)?;
    let mut wanted: BTreeSet<String> = deps
        .keys()
        .filter(|m| {
            MODULE_DIRS
                .iter()
                .any(|d| m.starts_with(&format!("{d}/")) || strip_ko(m) == strip_ko(d))
        })
        .cloned()
        .collect();
    let seeds: Vec<String> = wanted.iter().cloned().collect();
    for m in seeds {
        wanted.extend(deps.get(&m).into_iter().flatten().cloned());
    }
    // The subset, decompressed, with its own indexes.
    let staged = work.join("modules");
    let out = staged.join("lib/modules").join(&release);
    for name in [
        "modules.order",
        "modules.builtin",
        "modules.builtin.modinfo",
    ] {
        if full.join(name).exists() {
            copy(&full.join(name), &out.join(name))?;
        }
    }
    for m in &wanted {
        let from = full.join(m);
        let to = out.join(strip_ko(m).to_string() + ".ko");
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| VmError::io(step("staging modules"), e))?;
        }
        decompress(kernel, &from, &to)?;
    }
    depmod(kernel, &staged, &release)?;
    std::fs::rename(&vmlinuz, work.join("vmlinuz"))
        .map_err(|e| VmError::io(step("keeping vmlinuz"), e))?;
    std::fs::write(work.join("release"), format!("{release}\n"))
        .map_err(|e| VmError::io(step("writing the release"), e))?;
    for junk in [root, full_base, deb] {
        let _ = std::fs::remove_dir_all(&junk).or_else(|_| std::fs::remove_file(&junk));
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&work, dir).map_err(|e| VmError::io(step("filling the cache"), e))?;
    std::fs::write(dir.join("ready"), format!("{package}\n"))
        .map_err(|e| VmError::io(step("filling the cache"), e))
}

fn depmod(kernel: Kernel, base: &Path, release: &str) -> Result<(), VmError> {
    if which("depmod").is_none() {
        return Err(VmError::Missing {
            what: "depmod".into(),
            package: "kmod".into(),
        });
    }
    host_command(
        &format!("{kernel}: indexing modules"),
        "depmod",
        &["-b", path_str(base)?, release],
        None,
    )
    .map(drop)
}

/// `modules.dep`: module path (relative to the release dir) → its dependencies.
fn read_deps(dir: &Path) -> Result<HashMap<String, Vec<String>>, VmError> {
    let text = std::fs::read_to_string(dir.join("modules.dep"))
        .map_err(|e| VmError::io("reading modules.dep", e))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, deps)| {
            (
                m.trim().to_string(),
                deps.split_whitespace().map(str::to_string).collect(),
            )
        })
        .collect())
}

fn strip_ko(name: &str) -> &str {
    let name = name
        .strip_suffix(".xz")
        .or_else(|| name.strip_suffix(".zst"))
        .or_else(|| name.strip_suffix(".gz"))
        .unwrap_or(name);
    name.strip_suffix(".ko").unwrap_or(name)
}

fn decompress(kernel: Kernel, from: &Path, to: &Path) -> Result<(), VmError> {
    let name = from.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        Some(("xz", "xz-utils"))
    } else if name.ends_with(".zst") {
        Some(("zstd", "zstd"))
    } else if name.ends_with(".gz") {
        Some(("gzip", "gzip"))
    } else {
        None
    };
    let Some((tool, package)) = tool else {
        return copy(from, to);
    };
    if which(tool).is_none() {
        return Err(VmError::Missing {
            what: tool.into(),
            package: package.into(),
        });
    }
    let out = std::process::Command::new(tool)
        .args(["-d", "-c", "-q"])
        .arg(from)
        .output()
        .map_err(|e| VmError::io(format!("{kernel}: running {tool}"), e))?;
    if !out.status.success() {
        return Err(VmError::Command {
            step: format!("{kernel}: decompressing a module"),
            command: format!("{tool} -d -c {name}"),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    std::fs::write(to, out.stdout).map_err(|e| VmError::io(format!("writing {}", to.display()), e))
}

fn copy(from: &Path, to: &Path) -> Result<(), VmError> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| VmError::io(format!("creating {}", parent.display()), e))?;
    }
    std::fs::copy(from, to)
        .map(drop)
        .map_err(|e| VmError::io(format!("copying {}", from.display()), e))
}

fn find_file(dir: &Path, want: impl Fn(&str) -> bool) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(&want))
}

pub(crate) fn path_str(p: &Path) -> Result<&str, VmError> {
    p.to_str().ok_or_else(|| VmError::Kernel {
        kernel: "path".into(),
        why: format!("{} is not UTF-8", p.display()),
    })
}

/// `program` on `$PATH` (plus the sbin directories, which a non-root PATH may lack).
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file());
    found
}
