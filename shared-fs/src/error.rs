use std::path::PathBuf;

use hps_common::SchemaError;

/// Errors from the file protocol. Every variant names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("failed to {action} `{}`: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no space left on the device while writing `{}`; nothing was written. Free some space and run the same command again", path.display())]
    NoSpace { path: PathBuf },
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("`{}` is not an hps study directory (no study.json); create one with `hps-master init {} --study FILE`", path.display(), path.display())]
    NotAStudy { path: PathBuf },
    #[error("`{}` already holds a study; use `hps-master run {}` to continue it, or choose another directory", path.display(), path.display())]
    AlreadyInitialized { path: PathBuf },
    #[error("invalid file name `{}` in `{}`: {reason}", name, dir.display())]
    BadName {
        dir: PathBuf,
        name: String,
        reason: String,
    },
}

impl FsError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        let path = path.into();
        if source.raw_os_error() == Some(libc::ENOSPC) {
            return FsError::NoSpace { path };
        }
        FsError::Io {
            action,
            path,
            source,
        }
    }
}

pub type Result<T, E = FsError> = std::result::Result<T, E>;
