//! The master library's errors. Every variant names the file or directory
//! involved; the binary adds nothing but `error: ` in front.

use std::path::PathBuf;

use hps_shared_fs::FsError;

use crate::samplers::SamplerError;

#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    /// A protocol operation failed; the error names its path.
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Schema(#[from] hps_common::SchemaError),
    #[error(transparent)]
    Sampler(#[from] SamplerError),
    #[error("failed to read the study file `{}`", file.display())]
    ReadStudy {
        file: PathBuf,
        #[source]
        source: FsError,
    },
    #[error("failed to create the study directory `{}`", dir.display())]
    Init {
        dir: PathBuf,
        #[source]
        source: FsError,
    },
    #[error("reading the master lease `{}`", file.display())]
    ReadLease {
        file: PathBuf,
        #[source]
        source: FsError,
    },
    #[error(
        "another master (host {host}, pid {pid}) is running on `{}`; stop it first \
         (its lease in master.json is being renewed)",
        dir.display()
    )]
    LeaseHeld {
        dir: PathBuf,
        host: String,
        pid: u32,
    },
    #[error(
        "`{}` cannot be read but keeps changing: something is writing it (a master of \
         another hps version?). Stop that process, or remove the file if nothing runs",
        file.display()
    )]
    LeaseDamagedButLive { file: PathBuf },
    #[error("interrupted while checking the master lease `{}`", file.display())]
    LeaseInterrupted { file: PathBuf },
    #[error(
        "another master took over `{}` ({by}), for instance while this one was stopped or \
         stalled for longer than its lease; this master stops without writing anything more \
         and leaves the study to the other one",
        dir.display()
    )]
    LeaseLost { dir: PathBuf, by: String },
    #[error(
        "`{}` keeps reappearing in a form this master cannot use (quarantined three times); \
         check what else writes into settings/",
        file.display()
    )]
    RecordInTheWay { file: PathBuf },
    #[error(
        "stopped after {count} consecutive failed trials ({trials}) in `{}`: the setup is \
         probably wrong (the command, a path, the objective metric). The first, {first}, \
         failed with:\n{first_error}\nFix the cause, then run the same command to continue \
         (the failed trials stay failed); `--max-consecutive-failures N` sets the limit, \
         0 never stops",
        dir.display()
    )]
    TooManyFailures {
        dir: PathBuf,
        count: usize,
        /// The failed trials, comma-separated, in the order they ended.
        trials: String,
        first: String,
        /// The tail of the first one's error, indented.
        first_error: String,
    },
    #[error(
        "workers are running on `{}` ({workers}): their heartbeats changed while watched. \
         Stop them (their trials go back to pending/) and run `hps-master migrate {}` again",
        dir.display(), dir.display()
    )]
    WorkersRunning { dir: PathBuf, workers: String },
    /// Writing a report to its output (standard output or a file) failed.
    #[error("failed to write the report")]
    Output(#[from] std::io::Error),
    #[error("failed to write the CSV export")]
    Csv(#[from] csv::Error),
}
