//! Why a worker stops before its study is finished.

use std::path::PathBuf;

use hps_common::IdError;
use hps_shared_fs::FsError;

use crate::trainers::TrainerError;

/// Why a worker stopped before the study was finished.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Id(#[from] IdError),
    #[error("--slots must be at least 1")]
    NoSlots,
    #[error("a slot thread panicked")]
    SlotPanicked,
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Trainer(Box<TrainerError>),
    #[error(
        "worker id `{id}` is in use: its heartbeat `{}` is being written by another running \
         worker ({holder}). Two workers with one id would run the same trials twice. Stop that \
         worker first, or start this one with another `--id NAME` (without `--id` every worker \
         gets its own HOST-PID-XXXX id)",
        path.display()
    )]
    IdInUse {
        id: String,
        path: PathBuf,
        holder: String,
    },
    #[error("interrupted while checking whether worker id `{id}` is in use")]
    Interrupted { id: String },
}

impl From<TrainerError> for RunnerError {
    fn from(e: TrainerError) -> RunnerError {
        RunnerError::Trainer(Box::new(e))
    }
}
