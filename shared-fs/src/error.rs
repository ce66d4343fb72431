use std::path::PathBuf;

use hps_common::SchemaError;

/// The largest protocol file hps reads. Settings, results and heartbeats
/// are kilobytes; a larger file is damage or an attack, and is refused
/// without being read (see [`Damage::TooLarge`]).
pub const MAX_FILE_BYTES: u64 = 64 << 20;

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
    #[error(
        "the filesystem of `{}` supports neither hard links (link(2)) nor an exclusive \
         rename (renameat2 RENAME_NOREPLACE). hps creates results, settings, worker ids and the \
         master lease with one of them, so that of two writers exactly one wins; a plain rename \
         would let the second overwrite the first. On sshfs, mount without \
         `-o disable_hardlink`, from an OpenSSH server (it offers hardlink@openssh.com); see \
         docs/protocol.md §6.2",
        path.display()
    )]
    NoHardLinks { path: PathBuf },
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("`{}` is not an hps study directory (no study.json); create one with `hps-master init {} --study FILE`", path.display(), path.display())]
    NotAStudy { path: PathBuf },
    #[error(
        "a migration of `{}` to the sharded layout (directory format 2) did not finish \
         (the file `migrating` is there); run `hps-master migrate {}` again to finish it",
        dir.display(), dir.display()
    )]
    MigrationUnfinished { dir: PathBuf },
    #[error(
        "`{}` holds sharded per-trial folders (settings/t000/, results/t000/) but its \
         study.recorded.json says directory format 1 (flat): an older hps replaced the record, \
         or a migration stopped before it wrote it. Run `hps-master migrate {}` with this hps \
         to move every file into its shard and record format 2",
        dir.display(), dir.display()
    )]
    MixedLayout { dir: PathBuf },
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
    #[error("`{}` is unusable: {damage}", path.display())]
    Damaged { path: PathBuf, damage: Damage },
    #[error("`{}` was replaced again by something hps does not write after being moved to quarantine/ {attempts} times; find the job that keeps re-creating it", path.display())]
    KeepsComingBack { path: PathBuf, attempts: usize },
    #[error(
        "`{}` is {what}, not a folder hps made: hps creates the study's shard folders itself \
         and never writes through a link (it could lead out of the study directory). Move it \
         out of the study (`mv {} SOMEWHERE`), put back the files it held if they belong to \
         this study, and run the same command again",
        path.display(), path.display()
    )]
    ForeignFolder { path: PathBuf, what: String },
    #[error(
        "`{}` is {what}, not a study file{}",
        path.display(),
        if *pipe_ok { "; give a regular file, or a pipe such as `<(...)`" }
        else { "; put the study's JSON there as a regular file (`study.recorded.json` beside it holds the study as recorded at init)" }
    )]
    BadStudyFile {
        path: PathBuf,
        what: String,
        /// Whether a pipe would have been accepted (`init --study`).
        pipe_ok: bool,
    },
    #[error("invalid file name `{}` in `{}`: {reason}", name, dir.display())]
    BadName {
        dir: PathBuf,
        name: String,
        reason: String,
    },
}

/// Why a protocol file cannot be used, whatever its content claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Damage {
    #[error("it is a symbolic link, which hps never follows (it could point out of the study directory)")]
    Symlink,
    #[error("it is {0}, not a regular file")]
    NotAFile(&'static str),
    #[error("it is one of {0} names (hard links) of one file, which may lie outside the study directory; hps never writes into it")]
    HardLink(u64),
    #[error("it is {0} bytes, over the {cap} MiB cap on protocol files; it was not read", cap = MAX_FILE_BYTES >> 20)]
    TooLarge(u64),
    #[error("it is not UTF-8 text (invalid byte after offset {0})")]
    NotUtf8(usize),
    #[error("it cannot be read: {0}")]
    Unreadable(String),
}

impl FsError {
    /// A file that will never become readable by trying again: it cannot
    /// be parsed, or is a [`Damage`]. Scanners move such a file to
    /// `quarantine/`, and rebuild what it held where they can; other errors
    /// (EIO, ESTALE, ...) may be transient and are retried.
    pub fn is_damaged(&self) -> bool {
        matches!(self, FsError::Schema(_) | FsError::Damaged { .. })
    }

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
