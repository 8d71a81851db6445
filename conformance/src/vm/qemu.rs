//! One boot: the kernel, the base image plus a per-run payload image, under
//! `qemu-system-x86_64` with TCG (no KVM here), no network device, a hard timeout, and qemu
//! killed whenever the run ends early (drop).
//!
//! Serial port 0 is the console (kernel messages, `/init`'s markers, the payload's stderr);
//! serial port 1 carries only the payload's stdout, so it needs no un-mixing from kernel
//! messages. Both go to files in a per-run directory that is removed afterwards.

use super::initramfs::{base_image, payload_image, EXIT_MARKER, MODULES_MARKER};
use super::kernel::{path_str, which, Kernel, KernelImage};
use super::{cache_root, tail, VmError};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// What to run in the guest.
#[derive(Debug, Clone)]
pub struct Payload {
    /// Host file → absolute guest path. ELF files bring their shared libraries along and go in
    /// without debug info.
    pub files: Vec<(PathBuf, String)>,
    /// The command line; the first word is a guest path or a name on the guest's `PATH`
    /// (`/usr/sbin:/usr/bin:/sbin:/bin`). Runs in `/payload`. Note that busybox `sh -c` runs
    /// busybox's own applet for a bare name (`ip`, `nsenter`, `sysctl`): in scripts, call the
    /// host tools by path (`/usr/sbin/ip`, `/usr/sbin/nft`, `/usr/sbin/iptables-nft`, ...).
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    /// For the whole boot, payload included.
    pub timeout: Duration,
}

impl Payload {
    pub fn new<S: Into<String>>(command: impl IntoIterator<Item = S>) -> Self {
        Self {
            files: Vec::new(),
            command: command.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            timeout: Duration::from_secs(300),
        }
    }

    pub fn file(mut self, host: impl Into<PathBuf>, guest: impl Into<String>) -> Self {
        self.files.push((host.into(), guest.into()));
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// What a boot produced.
#[derive(Debug, Clone)]
pub struct VmOutput {
    /// The payload's exit status as `/init` saw it (128 + n for a signal).
    pub exit_code: i32,
    pub stdout: String,
    /// The whole serial console: kernel messages, `/init`'s lines, the payload's stderr.
    pub console: String,
    /// Modules `/init` could not load (built in, or absent from this kernel).
    pub modules_failed: Vec<String>,
    /// Host wall time from starting qemu until it exited.
    pub elapsed: Duration,
}

/// A kernel ready to boot.
#[derive(Debug, Clone)]
pub struct Vm {
    image: KernelImage,
    base: PathBuf,
    qemu: PathBuf,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    pub cpus: u32,
}

impl Vm {
    /// Fetches (or reuses) `kernel` and its base image from the cache ([`cache_root`]).
    pub fn new(kernel: Kernel) -> Result<Self, VmError> {
        Self::with_cache(kernel, &cache_root())
    }

    pub fn with_cache(kernel: Kernel, cache: &Path) -> Result<Self, VmError> {
        let qemu = which("qemu-system-x86_64").ok_or_else(|| VmError::Missing {
            what: "qemu-system-x86_64".into(),
            package: "qemu-system-x86 from bookworm-backports".into(),
        })?;
        let image = kernel.prepare(cache)?;
        let base = base_image(&image)?;
        Ok(Self {
            image,
            base,
            qemu,
            memory_mib: 2048,
            cpus: 2,
        })
    }

    pub fn kernel(&self) -> &KernelImage {
        &self.image
    }

    /// Boots, runs `payload`, returns its exit code and output. A boot that ends without the
    /// payload's status (panic, timeout) is an error carrying the console.
    pub fn run(&self, payload: &Payload) -> Result<VmOutput, VmError> {
        let name = self.image.kernel.name();
        let dir = RunDir::create()?;
        let extra = dir.0.join("payload.cpio");
        payload_image(&payload.files, &payload.command, &payload.env, &extra)?;
        let initrd = dir.0.join("initrd.cpio");
        concat(&[&self.base, &extra], &initrd)?;
        let console = dir.0.join("console.log");
        let stdout = dir.0.join("stdout.log");
        let qemu_err = dir.0.join("qemu.err");
        // coreutils `timeout` as well as our own deadline: qemu must not outlive a test process
        // that is killed outright (SIGKILL runs no destructor). Our deadline fires first.
        let mut cmd = Command::new("timeout");
        cmd.arg("--kill-after=10")
            .arg(format!("{}", payload.timeout.as_secs() + 30))
            .arg(&self.qemu)
            .args(["-nodefaults", "-no-user-config", "-machine", "pc"]);
        // TCG by default: on the machines this runs on /dev/kvm may exist and still hang the
        // guest (nested virtualisation off), so KVM is opt-in.
        let accel =
            std::env::var("SWITCHYARD_VM_ACCEL").unwrap_or_else(|_| "tcg,thread=multi".into());
        cmd.args(["-accel", &accel, "-cpu", "max"])
            .args([
                "-smp",
                &self.cpus.to_string(),
                "-m",
                &self.memory_mib.to_string(),
            ])
            .args(["-kernel", path_str(&self.image.vmlinuz)?])
            .args(["-initrd", path_str(&initrd)?])
            .args([
                "-append",
                "console=ttyS0 panic=-1 quiet loglevel=4 mitigations=off",
            ])
            .args(["-display", "none", "-no-reboot", "-nic", "none"])
            .args(["-serial", &format!("file:{}", path_str(&console)?)])
            .args(["-serial", &format!("file:{}", path_str(&stdout)?)])
            .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(&qemu_err)
                    .map_err(|e| VmError::io("creating qemu's stderr file", e))?,
            );
        let started = Instant::now();
        let mut child =
            Guard(Some(cmd.spawn().map_err(|e| {
                VmError::io(format!("{name}: starting qemu"), e)
            })?));
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if started.elapsed() > payload.timeout => {
                    child.kill();
                    let console = read_lossy(&console);
                    return Err(VmError::Timeout {
                        kernel: name.into(),
                        timeout: payload.timeout,
                        tail: tail(&console, 30),
                        console,
                    });
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => return Err(VmError::io(format!("{name}: waiting for qemu"), e)),
            }
        };
        child.0 = None;
        let elapsed = started.elapsed();
        let console = read_lossy(&console);
        let exit_code = console
            .lines()
            .filter_map(|l| l.trim().strip_prefix(EXIT_MARKER))
            .filter_map(|s| s.trim().parse::<i32>().ok())
            .next_back();
        let Some(exit_code) = exit_code else {
            let err = read_lossy(&qemu_err);
            return Err(VmError::NoStatus {
                kernel: name.into(),
                how: format!(
                    "qemu {status}{}",
                    if err.trim().is_empty() {
                        String::new()
                    } else {
                        format!(": {}", err.trim())
                    }
                ),
                tail: tail(&console, 30),
                console,
            });
        };
        let modules_failed = console
            .lines()
            .filter_map(|l| l.trim().strip_prefix(MODULES_MARKER))
            .flat_map(|s| s.split_whitespace().filter(|m| *m != "none"))
            .map(str::to_string)
            .collect();
        Ok(VmOutput {
            exit_code,
            stdout: read_lossy(&stdout),
            console,
            modules_failed,
            elapsed,
        })
    }
}

/// qemu, killed and reaped on drop unless it already exited.
struct Guard(Option<Child>);

impl Guard {
    fn try_wait(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        match self.0.as_mut() {
            Some(c) => c.try_wait(),
            None => Ok(None),
        }
    }

    /// SIGTERM to `timeout`, which passes it on to qemu; SIGKILL after 5 s if that did not end
    /// it (a SIGKILL to `timeout` alone would orphan qemu).
    fn kill(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let Some(mut c) = self.0.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(c.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A per-run scratch directory, removed on drop.
struct RunDir(PathBuf);

static RUNS: AtomicU32 = AtomicU32::new(0);

impl RunDir {
    fn create() -> Result<Self, VmError> {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-vm-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| VmError::io(format!("creating {}", dir.display()), e))?;
        Ok(Self(dir))
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn concat(parts: &[&Path], out: &Path) -> Result<(), VmError> {
    let mut w = std::fs::File::create(out)
        .map_err(|e| VmError::io(format!("creating {}", out.display()), e))?;
    for p in parts {
        let mut r = std::fs::File::open(p)
            .map_err(|e| VmError::io(format!("reading {}", p.display()), e))?;
        std::io::copy(&mut r, &mut w)
            .map_err(|e| VmError::io(format!("writing {}", out.display()), e))?;
    }
    Ok(())
}

/// A serial log as text; a raw tty still turns nothing into `\r\n`, a cooked one does.
fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).replace("\r\n", "\n"))
        .unwrap_or_default()
}
