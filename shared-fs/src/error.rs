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
    #[error(
        "`{}` was edited after the study started: {} (compared with `{}`, the study as \
         recorded at init). Old and new trials would be mixed in one study. Undo the edit \
         (only budget.trials, name and description may change), start a new study directory, \
         or accept the edit with `hps-master run {} --accept-study-change`",
        path.display(), fields.join(", "), recorded.display(), dir.display()
    )]
    StudyEdited {
        path: PathBuf,
        recorded: PathBuf,
        dir: PathBuf,
        fields: Vec<String>,
    },
    #[error(
        "cannot read `{}`, the copy of study.json that edits are checked against: {source}. \
         To record the current study.json in its place, run `hps-master run {} --accept-study-change`",
        path.display(), dir.display()
    )]
    UnreadableRecord {
        path: PathBuf,
        dir: PathBuf,
        source: Box<FsError>,
    },
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
