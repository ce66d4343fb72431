//! The places hps writes into never lead out of the study directory, and
//! never hold something else than what hps writes there: the per-trial
//! `logs/<id>.log` and `checkpoints/<id>/`, and the files it replaces or
//! removes (`master.json`, `finished.json`, claims).
//!
//! A shared directory is writable by many people and jobs, so any of these
//! names may have been replaced by a symbolic link to somewhere else, a
//! second name (hard link) of someone's file, or something that is not a
//! file at all. Following it would append to, write into or delete files
//! outside the study. Such an entry is moved to `quarantine/` (renaming a
//! link moves the link, never its target) with one message naming it, and a
//! real file or directory is created in its place, so the trial still runs.
//!
//! The log is opened with `O_NOFOLLOW`, which closes the race with a link
//! planted between the check and the open. A directory cannot be opened
//! that way and still be handed to a trainer (or a user's command) as a
//! path, so the checkpoint directory is checked with `lstat` just before
//! the trial starts; a link swapped in while the trial runs is not caught.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use crate::dir::StudyDir;
use crate::error::{Damage, FsError, Result};
use crate::read::{file_kind, is_not_found};

/// How many times a foreign entry is moved away before giving up: only
/// someone re-planting it as fast as it is moved gets that far.
const ATTEMPTS: usize = 3;

/// How deep inside a checkpoint directory links are looked for: the
/// trainer's own files and the cnn trainer's `fold-<k>/` directories.
const SWEEP_DEPTH: usize = 3;

/// What an entry must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// A regular file with no other name (written in place: a log).
    File,
    /// A regular file, whatever its other names (replaced by `rename`, so
    /// they are never written through: `master.json`, `finished.json`).
    Replaced,
    Dir,
}

impl StudyDir {
    /// Open `logs/<id>.log` for appending, creating it if missing. A
    /// symlink, a directory, a FIFO or a file with a second name found
    /// there is moved to `quarantine/` (one warning names it) and a new log
    /// is started, so no line is ever written outside the study.
    pub fn open_log(&self, id: &str) -> Result<File> {
        let path = self.log_path_ready(id)?;
        for _ in 0..ATTEMPTS {
            if let Some(damage) = foreign(&path, Want::File)? {
                self.move_aside(&path, &damage, "log")?;
                continue;
            }
            let opened = OpenOptions::new()
                .create(true)
                .append(true)
                // Never through a link; never block on a FIFO.
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
                .open(&path);
            match opened {
                Ok(f) => match f.metadata() {
                    Ok(m) if entry_damage(&m, Want::File).is_none() => return Ok(f),
                    // Replaced between the check and the open: check again.
                    Ok(_) => continue,
                    Err(e) => return Err(FsError::io("open", &path, e)),
                },
                Err(e) if is_foreign_open_error(&e) => continue,
                Err(e) => return Err(FsError::io("open", &path, e)),
            }
        }
        Err(FsError::KeepsComingBack {
            path,
            attempts: ATTEMPTS,
        })
    }

    /// `checkpoints/<id>/`, made ready for a trial: a real directory of
    /// this study. A symlink or a file found under that name is moved to
    /// `quarantine/` and a new directory created; inside it, links that
    /// lead out of it (`fold-0 -> /home/someone`) are moved away too, so
    /// neither hps nor the user's command writes, deletes or resumes from
    /// anything outside through them. Links that stay inside (a script's
    /// `last.pt -> epoch-3.pt`) are kept.
    pub fn prepare_checkpoint_dir(&self, id: &str) -> Result<PathBuf> {
        let path = self.checkpoint_dir(id)?;
        for _ in 0..ATTEMPTS {
            if let Some(damage) = foreign(&path, Want::Dir)? {
                self.move_aside(&path, &damage, "checkpoint directory")?;
                continue;
            }
            match fs::create_dir(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(FsError::io("create directory", &path, e)),
            }
            if foreign(&path, Want::Dir)?.is_none() {
                let inside =
                    fs::canonicalize(&path).map_err(|e| FsError::io("resolve", &path, e))?;
                self.sweep_links(&path, &inside, SWEEP_DEPTH)?;
                return Ok(path);
            }
        }
        Err(FsError::KeepsComingBack {
            path,
            attempts: ATTEMPTS,
        })
    }

    /// Remove trial `id`'s checkpoint directory (its trial has a result,
    /// or was pruned): nothing to do when there is none. A link there is
    /// removed as a link, never followed.
    pub fn remove_checkpoint(&self, id: &str) -> Result<()> {
        let path = self.checkpoint_dir(id)?;
        match fs::remove_dir_all(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(FsError::io("remove the checkpoint directory", &path, e)),
        }
    }

    /// Make `path` ready to be replaced by `rename`: whatever is there
    /// that is not a regular file (a directory would make every later
    /// write of the file fail) is moved to `quarantine/`.
    pub(crate) fn clear_non_file(&self, path: &Path) -> Result<()> {
        if let Some(damage) = foreign(path, Want::Replaced)? {
            self.move_aside(path, &damage, "file")?;
        }
        Ok(())
    }

    /// Remove the file at `path`; a directory or other non-file there,
    /// which `unlink` cannot remove, is moved to `quarantine/` instead.
    pub(crate) fn remove_entry(&self, path: &Path, action: &'static str) -> Result<()> {
        match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => match foreign(path, Want::Replaced)? {
                Some(damage) => self.move_aside(path, &damage, "file"),
                None => Err(FsError::io(action, path, e)),
            },
        }
    }

    /// Move the links under `dir` that lead out of `inside` (the canonical
    /// checkpoint directory) to `quarantine/`, `depth` levels down.
    fn sweep_links(&self, dir: &Path, inside: &Path, depth: usize) -> Result<()> {
        let entries = fs::read_dir(dir).map_err(|e| FsError::io("list", dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| FsError::io("list", dir, e))?;
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if kind.is_symlink() && !stays_inside(&path, inside) {
                self.move_aside(&path, &Damage::Symlink, "entry")?;
            } else if kind.is_dir() && depth > 1 {
                self.sweep_links(&path, inside, depth - 1)?;
            }
        }
        Ok(())
    }

    /// Quarantine the foreign `path` and say so once. Someone else (another
    /// worker cleaning up) moving it first is fine.
    fn move_aside(&self, path: &Path, damage: &Damage, what: &str) -> Result<()> {
        match self.quarantine(path) {
            Ok(to) => {
                tracing::warn!(
                    "`{}` is unusable: {damage}; it was not followed, it was moved to `{}`, and a new {what} is used in its place",
                    path.display(),
                    to.display()
                );
                Ok(())
            }
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Why the entry at `path` (not followed) is not what hps writes there;
/// `None` when it is right or missing.
fn foreign(path: &Path, want: Want) -> Result<Option<Damage>> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(entry_damage(&m, want)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FsError::io("inspect", path, e)),
    }
}

fn entry_damage(m: &fs::Metadata, want: Want) -> Option<Damage> {
    let t = m.file_type();
    if t.is_symlink() {
        return Some(Damage::Symlink);
    }
    match want {
        Want::File if !t.is_file() => Some(Damage::NotAFile(file_kind(m))),
        Want::File if m.nlink() > 1 => Some(Damage::HardLink(m.nlink())),
        Want::Replaced if !t.is_file() => Some(Damage::NotAFile(file_kind(m))),
        Want::Dir if !t.is_dir() => Some(Damage::NotAFile(file_kind(m))),
        _ => None,
    }
}

/// An open refused because of what sits under the name (re-checked and
/// moved away on the next attempt), not because of the filesystem.
fn is_foreign_open_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ELOOP) | Some(libc::EISDIR) | Some(libc::ENXIO) | Some(libc::ENOTDIR)
    )
}

/// Whether the link at `link` resolves to somewhere inside `inside`. A
/// dangling link counts by its text: relative, without `..`.
fn stays_inside(link: &Path, inside: &Path) -> bool {
    match fs::canonicalize(link) {
        Ok(target) => target.starts_with(inside),
        Err(_) => fs::read_link(link).is_ok_and(|t| {
            t.components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::symlink;

    /// With the shard of the logs planted below in place.
    fn study_dir(root: &Path) -> StudyDir {
        let dir = crate::testing::branin_study_dir(root, 5);
        dir.make_shard(crate::Sub::Logs, "t000001").unwrap();
        dir
    }

    fn quarantined(dir: &StudyDir) -> Vec<PathBuf> {
        fs::read_dir(dir.sub(crate::Sub::Quarantine))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    #[test]
    fn a_log_that_is_a_symlink_is_quarantined_and_the_target_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = study_dir(&tmp.path().join("study"));
        let outside = tmp.path().join("outside.txt");
        fs::write(&outside, "keep me\n").unwrap();
        symlink(&outside, dir.log_path("t000001").unwrap()).unwrap();

        let mut log = dir.open_log("t000001").unwrap();
        writeln!(log, "a line").unwrap();

        assert_eq!(fs::read_to_string(&outside).unwrap(), "keep me\n");
        let log_path = dir.log_path("t000001").unwrap();
        assert!(fs::symlink_metadata(&log_path).unwrap().is_file());
        assert_eq!(fs::read_to_string(&log_path).unwrap(), "a line\n");
        let q = quarantined(&dir);
        assert_eq!(q.len(), 1, "{q:?}");
        assert_eq!(
            fs::read_link(&q[0]).unwrap(),
            outside,
            "the link itself moved"
        );
    }

    #[test]
    fn a_log_that_is_a_directory_or_a_second_name_is_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = study_dir(&tmp.path().join("study"));
        fs::create_dir(dir.log_path("t000001").unwrap()).unwrap();
        let outside = tmp.path().join("victim.txt");
        fs::write(&outside, "keep me\n").unwrap();
        fs::hard_link(&outside, dir.log_path("t000002").unwrap()).unwrap();

        for id in ["t000001", "t000002"] {
            writeln!(dir.open_log(id).unwrap(), "x").unwrap();
            assert_eq!(
                fs::read_to_string(dir.log_path(id).unwrap()).unwrap(),
                "x\n"
            );
        }
        assert_eq!(fs::read_to_string(&outside).unwrap(), "keep me\n");
        assert_eq!(quarantined(&dir).len(), 2);
        // A log of our own is appended to, not replaced.
        writeln!(dir.open_log("t000001").unwrap(), "y").unwrap();
        let text = fs::read_to_string(dir.log_path("t000001").unwrap()).unwrap();
        assert_eq!(text, "x\ny\n");
        assert_eq!(quarantined(&dir).len(), 2);
    }

    #[test]
    fn a_checkpoint_dir_that_is_a_symlink_is_quarantined_and_recreated() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = study_dir(&tmp.path().join("study"));
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("result.json"), "{}").unwrap();
        symlink(&outside, dir.checkpoint_dir("t000001").unwrap()).unwrap();

        let ckpt = dir.prepare_checkpoint_dir("t000001").unwrap();
        assert!(fs::symlink_metadata(&ckpt).unwrap().is_dir());
        assert_eq!(fs::read_dir(&ckpt).unwrap().count(), 0);
        assert_eq!(
            fs::read_to_string(outside.join("result.json")).unwrap(),
            "{}"
        );
        assert_eq!(quarantined(&dir).len(), 1);
        // Ready the second time round: nothing more is moved.
        dir.prepare_checkpoint_dir("t000001").unwrap();
        assert_eq!(quarantined(&dir).len(), 1);
    }

    #[test]
    fn links_out_of_a_checkpoint_dir_are_moved_and_links_inside_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = study_dir(&tmp.path().join("study"));
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let ckpt = dir.checkpoint_dir("t000001").unwrap();
        fs::create_dir_all(ckpt.join("fold-1")).unwrap();
        fs::write(ckpt.join("epoch-3.pt"), "w").unwrap();
        symlink("epoch-3.pt", ckpt.join("last.pt")).unwrap();
        symlink(&outside, ckpt.join("fold-0")).unwrap();
        symlink("../../../../outside/x", ckpt.join("fold-1/dangling")).unwrap();
        symlink("/etc/passwd", ckpt.join("result.json")).unwrap();

        dir.prepare_checkpoint_dir("t000001").unwrap();
        assert!(ckpt.join("last.pt").is_symlink(), "a link inside stays");
        for gone in ["fold-0", "fold-1/dangling", "result.json"] {
            assert!(
                !ckpt.join(gone).exists() && !ckpt.join(gone).is_symlink(),
                "{gone}"
            );
        }
        assert_eq!(quarantined(&dir).len(), 3);
    }
}
