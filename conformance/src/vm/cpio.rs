//! A newc ("070701") cpio writer: the format the kernel unpacks as an initramfs.
//!
//! Written here rather than spawning `cpio` so the harness needs no extra host package and the
//! archive is reproducible (sorted paths, zero mtimes, root-owned). Entries are kept in a sorted
//! map, so a parent directory is always written before its children and a later `add_*` for the
//! same path replaces the earlier one (host tools override busybox applets of the same name).

use super::VmError;
use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// One archive member.
#[derive(Debug, Clone)]
enum Entry {
    Dir,
    /// Contents read from the host file at write time (keeps big binaries out of memory).
    HostFile {
        from: PathBuf,
        mode: u32,
    },
    Bytes {
        data: Vec<u8>,
        mode: u32,
    },
    Symlink(String),
}

/// An archive being assembled. Paths are guest paths, absolute or not (stored without the
/// leading `/`).
#[derive(Debug, Default, Clone)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

impl Archive {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a directory and its parents.
    pub fn add_dir(&mut self, path: &str) {
        let path = clean(path);
        let mut at = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(part);
            self.entries.entry(at.clone()).or_insert(Entry::Dir);
        }
    }

    /// Adds a host file under `guest`, keeping its permission bits (symlinks are followed).
    pub fn add_host_file(&mut self, host: &Path, guest: &str) -> Result<(), VmError> {
        let meta = std::fs::metadata(host)
            .map_err(|e| VmError::io(format!("reading {}", host.display()), e))?;
        use std::os::unix::fs::PermissionsExt as _;
        self.insert(
            guest,
            Entry::HostFile {
                from: host.to_path_buf(),
                mode: meta.permissions().mode() & 0o7777,
            },
        );
        Ok(())
    }

    /// Adds a file with the given contents and permission bits.
    pub fn add_bytes(&mut self, guest: &str, data: impl Into<Vec<u8>>, mode: u32) {
        self.insert(
            guest,
            Entry::Bytes {
                data: data.into(),
                mode,
            },
        );
    }

    /// Adds a symbolic link `guest` -> `target`.
    pub fn add_symlink(&mut self, guest: &str, target: &str) {
        self.insert(guest, Entry::Symlink(target.to_string()));
    }

    pub fn contains(&self, guest: &str) -> bool {
        self.entries.contains_key(&clean(guest))
    }

    fn insert(&mut self, guest: &str, entry: Entry) {
        let path = clean(guest);
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.add_dir(parent);
        }
        self.entries.insert(path, entry);
    }

    /// Writes the archive (with its trailer) to `out`.
    pub fn write_to(&self, out: &Path) -> Result<(), VmError> {
        let step = || format!("writing {}", out.display());
        let file = std::fs::File::create(out).map_err(|e| VmError::io(step(), e))?;
        let mut w = BufWriter::new(file);
        let mut ino = 1u32;
        for (path, entry) in &self.entries {
            ino += 1;
            let (mode, data): (u32, Vec<u8>) = match entry {
                Entry::Dir => (0o040755, Vec::new()),
                Entry::Symlink(t) => (0o120777, t.as_bytes().to_vec()),
                Entry::Bytes { data, mode } => (0o100000 | mode, data.clone()),
                Entry::HostFile { from, mode } => (
                    0o100000 | mode,
                    std::fs::read(from)
                        .map_err(|e| VmError::io(format!("reading {}", from.display()), e))?,
                ),
            };
            write_member(&mut w, path, ino, mode, &data).map_err(|e| VmError::io(step(), e))?;
        }
        write_member(&mut w, "TRAILER!!!", 0, 0, &[]).map_err(|e| VmError::io(step(), e))?;
        w.flush().map_err(|e| VmError::io(step(), e))
    }
}

fn clean(path: &str) -> String {
    path.trim_start_matches('/')
        .trim_end_matches('/')
        .to_string()
}

fn write_member(
    w: &mut impl Write,
    name: &str,
    ino: u32,
    mode: u32,
    data: &[u8],
) -> std::io::Result<()> {
    let size = u32::try_from(data.len()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{name}: larger than 4 GiB, which newc cannot hold"),
        )
    })?;
    let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
    let namesize = name.len() + 1;
    // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
    // rdevminor, namesize, check
    let header = format!(
        "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{:08x}{size:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
        0, 0, 0, 0, 0, 0, 0, 0
    );
    w.write_all(header.as_bytes())?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    w.write_all(&[0; 3][..pad4(110 + namesize)])?;
    w.write_all(data)?;
    w.write_all(&[0; 3][..pad4(data.len())])?;
    Ok(())
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_aligned_and_parents_come_first() {
        let mut a = Archive::new();
        a.add_bytes("/etc/x/hello", b"hi\n".to_vec(), 0o644);
        a.add_symlink("bin/sh", "busybox");
        let path = std::env::temp_dir().join(format!("cpio-test-{}", std::process::id()));
        a.write_to(&path).expect("write");
        let bytes = std::fs::read(&path).expect("read");
        let _ = std::fs::remove_file(&path);
        assert_eq!(bytes.len() % 4, 0);
        let text = String::from_utf8_lossy(&bytes);
        let order: Vec<usize> = [
            "bin\0",
            "bin/sh\0",
            "etc\0",
            "etc/x\0",
            "etc/x/hello\0",
            "TRAILER!!!\0",
        ]
        .iter()
        .map(|n| text.find(n).unwrap_or(usize::MAX))
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        assert_eq!(bytes.windows(6).filter(|w| *w == b"070701").count(), 6);
    }
}
