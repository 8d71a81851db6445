//! The guest's root file system, as two concatenated newc archives (the kernel unpacks both):
//!
//! - the **base** image, cached per kernel: busybox with its applets, `/init`, the kernel's
//!   netfilter/bridge/veth/IPVS modules, and the host's own `ip`, `nsenter`, `nft`,
//!   `xtables-{nft,legacy}-multi` (with every `iptables*`/`ip6tables*` name the host has),
//!   `ipset`, `ipvsadm`, `conntrack` with their shared libraries found by `ldd`. Host tools,
//!   not busybox's, because the tests parse their output and the backends feed them
//!   `iptables-restore`/`ipset restore` input.
//! - the **payload** image, per run: the files to run, their libraries, and `/payload/run`.
//!
//! The base image is rebuilt when the host tools change (its key lists their paths, sizes and
//! modification times).

use super::cpio::Archive;
use super::kernel::{path_str, which, KernelImage};
use super::{exit_helper, host_command, VmError};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Marker `/init` prints on the console before the payload's exit status.
pub const EXIT_MARKER: &str = "SWITCHYARD-VM-EXIT:";
/// Marker `/init` prints with the modules that did not load.
pub const MODULES_MARKER: &str = "SWITCHYARD-VM-MODULES-FAILED:";

/// Tools the guest needs: (name, Debian package, required). Required ones missing on the host
/// stop the build with the package to install.
const TOOLS: &[(&str, &str, bool)] = &[
    ("ip", "iproute2", true),
    ("nsenter", "util-linux", true),
    ("nft", "nftables", true),
    ("xtables-nft-multi", "iptables", true),
    ("xtables-legacy-multi", "iptables", true),
    ("ipset", "ipset", true),
    ("ipvsadm", "ipvsadm", false),
    ("conntrack", "conntrack", false),
];

/// Modules loaded at boot (the rest load on demand through `/sbin/modprobe`). A name the
/// kernel builds in or lacks shows up in the "failed" line, which the harness reports.
const BOOT_MODULES: &[&str] = &[
    "nf_tables",
    "nf_conntrack",
    "nf_nat",
    "nf_conntrack_netlink",
    "nft_ct",
    "nft_nat",
    "nft_chain_nat",
    "nft_numgen",
    "nft_compat",
    "nft_reject_inet",
    "nft_reject_ipv4",
    "nft_reject_ipv6",
    "nft_masq",
    "nft_fib_ipv4",
    "nft_fib_ipv6",
    "nft_fib_inet",
    "nft_limit",
    "nft_hash",
    "nft_redir",
    "x_tables",
    "ip_tables",
    "iptable_nat",
    "iptable_filter",
    "iptable_mangle",
    "iptable_raw",
    "ip6_tables",
    "ip6table_nat",
    "ip6table_filter",
    "ip6table_mangle",
    "ip6table_raw",
    "xt_conntrack",
    "xt_comment",
    "xt_mark",
    "xt_MASQUERADE",
    "xt_nat",
    "xt_statistic",
    "xt_recent",
    "xt_set",
    "xt_addrtype",
    "xt_multiport",
    "xt_physdev",
    "xt_REDIRECT",
    "ipt_REJECT",
    "ip6t_REJECT",
    "ip_set",
    "ip_set_hash_ip",
    "ip_set_hash_ipport",
    "ip_set_hash_ipportip",
    "ip_set_hash_ipportnet",
    "ip_set_hash_net",
    "ip_set_hash_netport",
    "ip_set_bitmap_port",
    "veth",
    "bridge",
    "br_netfilter",
    "dummy",
    "sctp",
    "ip_vs",
    "ip_vs_rr",
    "ip_vs_wrr",
    "ip_vs_sh",
    "ip_vs_lc",
];

/// `/init`: mounts, modules, payload, exit status (console marker, then isa-debug-exit, then
/// poweroff as the fallback). Payload stdout goes to the second serial port, stderr to the
/// console.
fn init_script() -> String {
    format!(
        r#"#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /run/netns /var/run /var/lib
echo /sbin/modprobe > /proc/sys/kernel/modprobe
echo "switchyard-vm: kernel $(uname -r) up after $(cut -d' ' -f1 /proc/uptime)s"
failed=""
# Without the option `dummy` creates dummy0: the guest starts with loopback only.
modprobe dummy numdummies=0 2>/dev/null || failed=" dummy"
for m in {modules}; do
  modprobe "$m" 2>/dev/null || failed="$failed $m"
done
echo "{modules_marker}${{failed:- none}}"
ip link set lo up
stty -F /dev/ttyS1 raw -echo 2>/dev/null
status=127
if [ -x /payload/run ]; then
  echo "switchyard-vm: payload starts after $(cut -d' ' -f1 /proc/uptime)s"
  cd /payload
  ./run >/dev/ttyS1 </dev/null
  status=$?
  cd /
else
  echo "switchyard-vm: no /payload/run in the initramfs"
fi
echo "{exit_marker}$status"
printf "\\$(printf %03o $((status & 255)))" | /sbin/switchyard-vm-exit
poweroff -f
"#,
        modules = BOOT_MODULES.join(" "),
        modules_marker = MODULES_MARKER,
        exit_marker = EXIT_MARKER,
    )
}

/// The cached base image for `kernel`, built when missing or stale.
pub fn base_image(kernel: &KernelImage) -> Result<PathBuf, VmError> {
    let out = kernel.dir.join("base.cpio");
    let key_path = kernel.dir.join("base.key");
    let (archive, key) = base_archive(kernel)?;
    if out.exists() && std::fs::read_to_string(&key_path).ok().as_deref() == Some(key.as_str()) {
        return Ok(out);
    }
    let tmp = kernel
        .dir
        .join(format!("base.cpio.tmp{}", std::process::id()));
    archive.write_to(&tmp)?;
    std::fs::rename(&tmp, &out).map_err(|e| VmError::io("keeping the base image", e))?;
    std::fs::write(&key_path, key).map_err(|e| VmError::io("keeping the base image key", e))?;
    Ok(out)
}

/// The base archive and its freshness key (host files it copies, with sizes and mtimes).
fn base_archive(kernel: &KernelImage) -> Result<(Archive, String), VmError> {
    let mut a = Archive::new();
    let mut copied: BTreeSet<PathBuf> = BTreeSet::new();
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "run", "etc", "var",
        "root", "payload",
    ] {
        a.add_dir(d);
    }
    // busybox and its applets.
    let busybox = Path::new("/bin/busybox");
    // Static: `ldd` refuses it ("not a dynamic executable").
    let static_ok = busybox.is_file()
        && std::process::Command::new("ldd")
            .arg(busybox)
            .output()
            .is_ok_and(|o| !o.status.success());
    if !static_ok {
        return Err(VmError::Missing {
            what: "a static /bin/busybox".into(),
            package: "busybox-static".into(),
        });
    }
    a.add_host_file(busybox, "bin/busybox")?;
    copied.insert(busybox.into());
    let list = host_command(
        "listing busybox applets",
        "/bin/busybox",
        &["--list-full"],
        None,
    )?;
    for applet in list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.ends_with("/busybox"))
    {
        let depth = applet.matches('/').count();
        a.add_symlink(applet, &format!("{}bin/busybox", "../".repeat(depth)));
    }
    a.add_bytes("init", init_script(), 0o755);
    a.add_bytes("sbin/switchyard-vm-exit", exit_helper::elf(), 0o755);
    a.add_bytes("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644);
    a.add_bytes("etc/group", "root:x:0:\n", 0o644);
    for f in ["/etc/protocols", "/etc/services", "/etc/ethertypes"] {
        if Path::new(f).is_file() {
            a.add_host_file(Path::new(f), f)?;
            copied.insert(f.into());
        }
    }
    // Modules.
    add_tree(
        &mut a,
        &kernel.modules_dir(),
        &format!("lib/modules/{}", kernel.release),
    )?;
    // Host tools; names that are symlinks to the two xtables binaries keep pointing at them.
    let mut binaries = Vec::new();
    for (tool, package, required) in TOOLS {
        match which(tool) {
            Some(p) => {
                a.add_host_file(&p, &format!("usr/sbin/{tool}"))?;
                binaries.push(p);
            }
            None if *required => {
                return Err(VmError::Missing {
                    what: (*tool).into(),
                    package: (*package).into(),
                })
            }
            None => {}
        }
    }
    add_xtables_names(&mut a)?;
    let xtables = Path::new("/usr/lib/x86_64-linux-gnu/xtables");
    if xtables.is_dir() {
        for e in read_dir(xtables)? {
            if e.extension().is_some_and(|x| x == "so") {
                a.add_host_file(&e, path_str(&e)?)?;
                binaries.push(e);
            }
        }
    }
    if Path::new("/etc/xtables").is_dir() {
        add_tree(&mut a, Path::new("/etc/xtables"), "etc/xtables")?;
    }
    for lib in shared_libraries(&binaries)? {
        a.add_host_file(&lib, path_str(&lib)?)?;
        copied.insert(lib);
    }
    copied.extend(binaries);
    let mut key = format!("kernel {}\n{}", kernel.release, init_script());
    for p in &copied {
        let m =
            std::fs::metadata(p).map_err(|e| VmError::io(format!("reading {}", p.display()), e))?;
        let mtime = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        key.push_str(&format!("{} {} {mtime}\n", p.display(), m.len()));
    }
    Ok((a, key))
}

/// Every `/usr/sbin` name that resolves to one of the xtables multi-binaries (including the
/// `iptables` alternatives), as a symlink to it: the binary picks its mode from `argv[0]`.
fn add_xtables_names(a: &mut Archive) -> Result<(), VmError> {
    for entry in read_dir(Path::new("/usr/sbin"))? {
        let Some(name) = entry.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !(name.starts_with("iptables")
            || name.starts_with("ip6tables")
            || name.starts_with("arptables")
            || name.starts_with("ebtables"))
        {
            continue;
        }
        let Ok(target) = std::fs::canonicalize(&entry) else {
            continue;
        };
        if let Some(multi) = target.file_name().and_then(|n| n.to_str()) {
            if multi.starts_with("xtables-") && multi.ends_with("-multi") {
                a.add_symlink(&format!("usr/sbin/{name}"), multi);
            }
        }
    }
    Ok(())
}

/// The shared libraries (and the dynamic loader) the given ELF files need, from `ldd`.
pub fn shared_libraries(files: &[PathBuf]) -> Result<BTreeSet<PathBuf>, VmError> {
    let mut libs = BTreeSet::new();
    for f in files {
        let out = std::process::Command::new("ldd")
            .arg(f)
            .output()
            .map_err(|e| VmError::io(format!("running ldd {}", f.display()), e))?;
        // Static binaries and scripts: ldd fails, nothing to add.
        if !out.status.success() {
            continue;
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            if let Some(p) = path.filter(|p| p.starts_with('/')) {
                libs.insert(PathBuf::from(p));
            }
            if line.contains("not found") {
                return Err(VmError::Kernel {
                    kernel: "host".into(),
                    why: format!(
                        "{}: a shared library is missing: {}",
                        f.display(),
                        line.trim()
                    ),
                });
            }
        }
    }
    Ok(libs)
}

/// Adds a host directory tree under `guest`.
fn add_tree(a: &mut Archive, host: &Path, guest: &str) -> Result<(), VmError> {
    a.add_dir(guest);
    for e in read_dir(host)? {
        let name = e
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let g = format!("{guest}/{name}");
        if e.is_dir() {
            add_tree(a, &e, &g)?;
        } else {
            a.add_host_file(&e, &g)?;
        }
    }
    Ok(())
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, VmError> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| VmError::io(format!("listing {}", dir.display()), e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    v.sort();
    Ok(v)
}

/// `host` without debug info when it is an ELF file `strip` can handle (a debug build of the
/// suite or the agent is ~120 MB, ~20 MB stripped, and every byte of the initramfs sits in
/// guest RAM), else `host` itself.
fn stripped(host: &Path, copy: &Path) -> PathBuf {
    let elf = std::fs::File::open(host)
        .and_then(|mut f| {
            let mut magic = [0u8; 4];
            std::io::Read::read_exact(&mut f, &mut magic).map(|()| magic)
        })
        .is_ok_and(|m| m == *b"\x7fELF");
    let ok = elf
        && std::process::Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(copy)
            .arg(host)
            .status()
            .is_ok_and(|s| s.success());
    if ok {
        copy.to_path_buf()
    } else {
        host.to_path_buf()
    }
}

/// Quotes a word for `sh`.
pub fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The per-run image: `files` (host path → guest path; ELF files without debug info) with their
/// libraries, and `/payload/run` running `command` with `env`. Scratch files go next to `out`.
pub fn payload_image(
    files: &[(PathBuf, String)],
    command: &[String],
    env: &[(String, String)],
    out: &Path,
) -> Result<(), VmError> {
    let mut a = Archive::new();
    let mut hosts = Vec::new();
    let scratch = out.parent().unwrap_or(Path::new("."));
    for (i, (host, guest)) in files.iter().enumerate() {
        let file = stripped(host, &scratch.join(format!("stripped-{i}")));
        a.add_host_file(&file, guest)?;
        hosts.push(host.clone());
    }
    for lib in shared_libraries(&hosts)? {
        a.add_host_file(&lib, path_str(&lib)?)?;
    }
    let mut script = String::from("#!/bin/sh\n");
    for (k, v) in env {
        script.push_str(&format!("export {k}={}\n", sh_quote(v)));
    }
    // busybox sh runs its own applet for a bare name (it is built with "standalone shell"), so
    // a bare program name is looked up on PATH here: the host's `ip` must win over busybox's.
    let program = command.first().map(String::as_str).unwrap_or("true");
    script.push_str(&format!("p={}\n", sh_quote(program)));
    script.push_str(
        "case $p in */*) ;; *) for d in /usr/sbin /usr/bin /sbin /bin; do \
         if [ -x \"$d/$p\" ]; then p=\"$d/$p\"; break; fi; done ;; esac\n",
    );
    script.push_str("exec \"$p\"");
    for w in command.iter().skip(1) {
        script.push(' ');
        script.push_str(&sh_quote(w));
    }
    script.push('\n');
    a.add_bytes("payload/run", script, 0o755);
    a.write_to(out)
}
