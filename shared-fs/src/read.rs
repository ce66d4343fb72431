//! Reading the protocol's files: every read is bounded and never follows
//! a link or blocks on a FIFO, whatever the shared directory holds
//! (`docs/protocol.md` §6.1).

use std::fs;
use std::io;
use std::path::Path;

use hps_common::{parse_versioned, Versioned};
use serde::de::DeserializeOwned;

use crate::error::{Damage, FsError, Result, MAX_FILE_BYTES};
use crate::names::STUDY_FILE;

/// `root/study.json` is a regular file: [`FsError::NotAStudy`] when there
/// is nothing of that name, [`FsError::BadStudyFile`] saying what is there
/// otherwise (a link to `/dev/zero`, a FIFO, a directory), so that neither
/// a wrong "no study.json" nor a read without end follows.
pub(crate) fn check_study_file(root: &Path) -> Result<()> {
    let path = root.join(STUDY_FILE);
    let meta = match fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(FsError::NotAStudy {
                path: root.to_path_buf(),
            })
        }
        Err(e) => return Err(FsError::io("inspect", &path, e)),
    };
    if meta.is_file() {
        return Ok(());
    }
    let what = if meta.file_type().is_symlink() {
        let to = fs::read_link(&path)
            .map(|t| format!(" to `{}`", t.display()))
            .unwrap_or_default();
        let target = fs::metadata(&path)
            .map(|m| format!(", which is {}", describe(&m)))
            .unwrap_or_else(|_| ", which does not exist".to_string());
        format!("a symbolic link{to}{target} (hps reads study.json only as a regular file of the study directory)")
    } else {
        describe(&meta).to_string()
    };
    Err(FsError::BadStudyFile {
        path,
        what,
        pipe_ok: false,
    })
}

/// What a directory entry is, for messages: "a regular file", "a device" ...
fn describe(meta: &fs::Metadata) -> &'static str {
    if meta.is_file() {
        "a regular file"
    } else {
        file_kind(meta)
    }
}

/// Read a study file named on the command line (`init --study FILE`):
/// a regular file or a pipe (`--study <(jq ... base.json)`), at most
/// [`MAX_FILE_BYTES`]. A directory or a device is refused at once, saying
/// what it is; a pipe that never ends is refused at the cap.
pub fn read_study_file(path: &Path) -> Result<String> {
    use std::io::Read;
    use std::os::unix::fs::FileTypeExt;

    let meta = fs::metadata(path).map_err(|e| FsError::io("read the study file", path, e))?;
    let t = meta.file_type();
    if !(t.is_file() || t.is_fifo()) {
        return Err(FsError::BadStudyFile {
            path: path.to_path_buf(),
            what: describe(&meta).to_string(),
            pipe_ok: true,
        });
    }
    let file = fs::File::open(path).map_err(|e| FsError::io("read the study file", path, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| FsError::io("read the study file", path, e))?;
    let damaged = |damage| FsError::Damaged {
        path: path.to_path_buf(),
        damage,
    };
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(damaged(Damage::TooLarge(bytes.len() as u64)));
    }
    String::from_utf8(bytes).map_err(|e| damaged(Damage::NotUtf8(e.utf8_error().valid_up_to())))
}

/// Read and parse a versioned JSON file of the protocol.
pub fn read_json<T: DeserializeOwned + Versioned>(path: &Path) -> Result<T> {
    let text = read_text(path)?;
    Ok(parse_versioned(path, &text)?)
}

pub(crate) fn read_optional<T: DeserializeOwned + Versioned>(path: &Path) -> Result<Option<T>> {
    match read_json(path) {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Read a protocol file as text, refusing what a shared directory must not
/// make hps do: follow a symlink (possibly out of the study directory),
/// block on a FIFO, read a directory or device, read an unbounded file.
/// Such a file, a file of invalid UTF-8 and one hps may not read are
/// [`FsError::Damaged`]; other errors are I/O errors and may be transient.
pub fn read_text(path: &Path) -> Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;

    let damaged = |damage| FsError::Damaged {
        path: path.to_path_buf(),
        damage,
    };
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => damaged(Damage::Symlink),
            Some(libc::EACCES) | Some(libc::EPERM) => damaged(Damage::Unreadable(e.to_string())),
            Some(libc::ENXIO) => damaged(Damage::NotAFile("a socket or FIFO")),
            _ => FsError::io("read", path, e),
        })?;
    let meta = file.metadata().map_err(|e| FsError::io("read", path, e))?;
    if !meta.is_file() {
        return Err(damaged(Damage::NotAFile(file_kind(&meta))));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(damaged(Damage::TooLarge(meta.len())));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // A file still growing is read up to the cap, never beyond.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EISDIR) => damaged(Damage::NotAFile("a directory")),
            _ => FsError::io("read", path, e),
        })?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(damaged(Damage::TooLarge(bytes.len() as u64)));
    }
    String::from_utf8(bytes).map_err(|e| damaged(Damage::NotUtf8(e.utf8_error().valid_up_to())))
}

pub(crate) fn file_kind(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() || t.is_socket() {
        "a socket or FIFO"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

pub fn is_not_found(e: &FsError) -> bool {
    matches!(e, FsError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
}
