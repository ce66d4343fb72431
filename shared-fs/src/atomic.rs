//! Crash-safe writes.
//!
//! A reader of the shared directory must never see a half-written file, and
//! a crash must never leave one under a final name. Every write therefore
//! goes: temp file in the same directory (named `.tmp.*`, which scanners
//! skip) → write → `fsync` → `rename` (or `link`) onto the final name →
//! `fsync` the directory so the new name itself is durable.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{FsError, Result};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Prefix of temporary files. Anything starting with `.` is skipped by
/// every scanner in this crate.
pub const TMP_PREFIX: &str = ".tmp.";

/// The directory holding `path`: `.` for a bare file name, whose
/// `parent()` is the empty path (`export -o x.csv`).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn temp_path(target: &Path) -> PathBuf {
    let dir = parent_dir(target);
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(
        "{TMP_PREFIX}{name}.{}.{}.{n}",
        hostname_hash(),
        std::process::id()
    ))
}

/// A short tag that differs between hosts, so two hosts whose processes have
/// the same pid never pick the same temp name on a shared filesystem.
fn hostname_hash() -> u32 {
    let host = crate::host::hostname();
    host.bytes().fold(2_166_136_261u32, |h, b| {
        (h ^ b as u32).wrapping_mul(16_777_619)
    })
}

fn write_temp(target: &Path, bytes: &[u8]) -> Result<PathBuf> {
    write_temp_with(target, |w| w.write_all(bytes))
}

/// Create a temp file next to `target`, fill it with `fill`, and fsync it.
/// On error the temp file is removed and the error names `target`.
fn write_temp_with(
    target: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<PathBuf> {
    let tmp = temp_path(target);
    let res = (|| {
        let f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        let mut w = std::io::BufWriter::new(f);
        fill(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(FsError::io("write", target, e));
    }
    Ok(tmp)
}

/// fsync a directory so that a rename or link inside it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    // Some filesystems (and some FUSE mounts) refuse fsync on a directory;
    // the rename itself is still atomic there, so that is not an error.
    match File::open(dir).and_then(|d| d.sync_all()) {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EINVAL) | Some(libc::ENOTSUP) | Some(libc::EBADF)
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(FsError::io("sync directory", dir, e)),
    }
}

/// Write `bytes` to `path` atomically, replacing any existing file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = write_temp(path, bytes)?;
    rename_into_place(&tmp, path)
}

/// Like [`write_atomic`], but the content is streamed by `fill` into a
/// (buffered) writer, for files too large to hold twice in memory, such as
/// checkpoints. An error from `fill` leaves nothing behind.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let tmp = write_temp_with(path, fill)?;
    rename_into_place(&tmp, path)
}

fn rename_into_place(tmp: &Path, path: &Path) -> Result<()> {
    if let Err(e) = fs::rename(tmp, path) {
        let _ = fs::remove_file(tmp);
        return Err(FsError::io("rename into place", path, e));
    }
    sync_dir(parent_dir(path))
}

/// Write `bytes` to `path` atomically, but only if `path` does not exist.
/// Returns `Ok(false)` (and writes nothing) when it already exists.
///
/// Uses `link(2)`, which fails with `EEXIST` atomically, also on NFS. On a
/// filesystem without hard links (`EPERM`, `ENOTSUP`, `EXDEV`, `ENOSYS`)
/// it uses the other atomic no-clobber primitive, `renameat2` with
/// `RENAME_NOREPLACE`; where that is missing too (sshfs mounted with
/// `disable_hardlink`, some SMB mounts) it refuses with
/// [`FsError::NoHardLinks`]: a plain rename would let a second writer
/// overwrite the first, and break "the first result wins".
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<bool> {
    let tmp = write_temp(path, bytes)?;
    let outcome = match fs::hard_link(&tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EPERM) | Some(libc::ENOTSUP) | Some(libc::EXDEV) | Some(libc::ENOSYS)
            ) =>
        {
            // sshfs reports a lost link race (the server's EEXIST) as EPERM.
            if fs::symlink_metadata(path).is_ok() {
                Ok(false)
            } else {
                rename_noreplace(&tmp, path)
            }
        }
        Err(e) => Err(FsError::io("link into place", path, e)),
    };
    let _ = fs::remove_file(&tmp);
    let created = outcome?;
    if created {
        sync_dir(parent_dir(path))?;
    }
    Ok(created)
}

/// `rename(tmp, path)` unless `path` exists, atomically: `Ok(false)` when
/// it exists; [`FsError::NoHardLinks`] where the filesystem cannot do it.
pub(crate) fn rename_noreplace(tmp: &Path, path: &Path) -> Result<bool> {
    match renameat2_noreplace(tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::ENOTSUP)
            ) =>
        {
            Err(FsError::NoHardLinks {
                path: path.to_path_buf(),
            })
        }
        Err(e) => Err(FsError::io("rename into place", path, e)),
    }
}

#[cfg(target_os = "linux")]
fn renameat2_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
    };
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: two valid NUL-terminated paths; renameat2 reads nothing else.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn renameat2_noreplace(_from: &Path, _to: &Path) -> std::io::Result<()> {
    Err(std::io::Error::from_raw_os_error(libc::ENOSYS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_file_name_is_written_in_the_current_directory() {
        assert_eq!(parent_dir(Path::new("x.csv")), Path::new("."));
        assert_eq!(parent_dir(Path::new("a/x.csv")), Path::new("a"));
        assert_eq!(parent_dir(Path::new("/x.csv")), Path::new("/"));
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn write_atomic_with_streams_and_cleans_up_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ckpt.bin");
        write_atomic_with(&p, |w| {
            w.write_all(b"head")?;
            w.write_all(b"-tail")
        })
        .unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"head-tail");
        let e = write_atomic_with(&p, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("boom"))
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("ckpt.bin") && e.contains("boom"), "{e}");
        assert_eq!(fs::read(&p).unwrap(), b"head-tail", "old content kept");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temp left");
    }

    #[test]
    fn write_new_never_clobbers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        assert!(write_new(&p, b"first").unwrap());
        assert!(!write_new(&p, b"second").unwrap());
        assert_eq!(fs::read(&p).unwrap(), b"first");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    /// A filesystem without hard links: the message names the file, link(2)
    /// and what to change on sshfs.
    #[test]
    fn no_hard_links_is_a_clear_error() {
        let msg = FsError::NoHardLinks {
            path: "/s/results/t1.json".into(),
        }
        .to_string();
        for part in [
            "/s/results/t1.json",
            "link(2)",
            "disable_hardlink",
            "protocol.md",
        ] {
            assert!(msg.contains(part), "{part}: {msg}");
        }
    }

    /// The fallback where link(2) is missing: exclusive, like link.
    #[test]
    fn rename_noreplace_never_clobbers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        let (a, b) = (dir.path().join(".a"), dir.path().join(".b"));
        fs::write(&a, "first").unwrap();
        fs::write(&b, "second").unwrap();
        assert!(rename_noreplace(&a, &p).unwrap());
        assert!(!rename_noreplace(&b, &p).unwrap());
        assert_eq!(fs::read(&p).unwrap(), b"first");
        assert!(b.exists(), "the loser's temp file is left to its caller");
    }

    #[test]
    fn concurrent_write_new_has_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        let winners: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    let p = p.clone();
                    s.spawn(move || write_new(&p, format!("{i}").as_bytes()).unwrap() as usize)
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(winners, 1);
    }

    /// ENOSPC: a clear error naming the file, and no partial file (final or
    /// temp) left behind. Uses a 64 KiB tmpfs when this test may mount one
    /// (root); otherwise it says so and checks the error mapping alone.
    #[test]
    fn enospc_is_a_clear_error_and_leaves_nothing_behind() {
        let e = FsError::io(
            "write",
            "/x/results/t1.json",
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        );
        let msg = e.to_string();
        assert!(matches!(e, FsError::NoSpace { .. }), "{msg}");
        assert!(
            msg.contains("/x/results/t1.json") && msg.contains("no space left"),
            "{msg}"
        );

        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("SKIPPED (tmpfs part): cannot mount a tmpfs here (not root?); checked the error mapping only");
            return;
        }
        struct Unmount<'a>(&'a Path);
        impl Drop for Unmount<'_> {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount").arg(self.0).status();
            }
        }
        let _guard = Unmount(dir.path());
        let p = dir.path().join("big.json");
        write_atomic(&dir.path().join("small.json"), b"{}").unwrap();
        let err = write_atomic(&p, &vec![b'x'; 1 << 20]).unwrap_err();
        assert!(matches!(err, FsError::NoSpace { .. }), "{err}");
        assert!(err.to_string().contains("big.json"), "{err}");
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("small.json")],
            "no partial or temp file"
        );
        let err = write_new(&p, &vec![b'x'; 1 << 20]).unwrap_err();
        assert!(matches!(err, FsError::NoSpace { .. }), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn error_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing-subdir").join("x.json");
        let e = write_atomic(&p, b"x").unwrap_err().to_string();
        assert!(e.contains("missing-subdir/x.json"), "{e}");
    }
}
