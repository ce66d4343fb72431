//! What can stop a report.

use std::path::PathBuf;

use hps_shared_fs::FsError;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{source}")]
    Open { dir: PathBuf, source: FsError },
    #[error("cannot read the study file `{}`: {source}", file.display())]
    Study { file: PathBuf, source: FsError },
    #[error(transparent)]
    Fs(FsError),
    #[error("cannot write `{}`: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot draw `{}` as PNG: {message}", path.display())]
    Png { path: PathBuf, message: String },
    #[error("--color-by `{name}` is not a parameter of the study; its parameters are {known}")]
    UnknownParam { name: String, known: String },
}
