//! The trainers: what a worker does with one claimed setting. Each one is a
//! file (or folder) here behind the [`Trainer`] trait and returns the one
//! [`Outcome`] enum; [`open`] picks the trainer of a study. Adding a
//! trainer means adding its module and one arm in [`open`].

pub mod cnn;
pub mod exec;
pub mod function;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;

use hps_common::{EpochStat, Study, TrainerSpec, TrialSetting, TrialStatus};
use hps_shared_fs::{FsError, StudyDir};

use crate::device::{DeviceError, DeviceSpec};
use crate::progress::Reporter;

/// One intermediate report line of an exec trainer's command.
pub type Report = serde_json::Map<String, serde_json::Value>;

/// What a trainer made of one trial.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The trial ran to an end (whatever its status): the parts of its
    /// result file.
    Finished(TrialEnd),
    /// Successive halving: paused after `epoch` (its `until_epoch`), with
    /// its checkpoint in place; the master promotes or prunes it.
    Paused { epoch: u32 },
    /// Preempted (`should_stop`): the trial goes back to the queue; a
    /// checkpoint, if any, stays for whoever runs it next.
    Interrupted,
}

/// The trainer's part of a trial's result.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialEnd {
    pub status: TrialStatus,
    pub metrics: BTreeMap<String, f64>,
    /// The cnn trainer's epochs.
    pub curve: Vec<EpochStat>,
    pub best_epoch: Option<u32>,
    /// The exec trainer's report lines.
    pub reports: Vec<Report>,
    pub epochs_completed: u32,
    /// Why the trial is not `complete` (or pruned, diverged, ...).
    pub error: Option<String>,
    /// The run ended at chance level (see `TrialResult::collapsed`).
    pub collapsed: bool,
}

impl TrialEnd {
    /// A trial that ended with `status` and nothing else.
    pub fn with_status(status: TrialStatus, error: Option<String>) -> TrialEnd {
        TrialEnd {
            status,
            metrics: BTreeMap::new(),
            curve: Vec::new(),
            best_epoch: None,
            reports: Vec::new(),
            epochs_completed: 0,
            error,
            collapsed: false,
        }
    }

    /// A trial whose parameters the trainer cannot use.
    pub fn invalid(why: String) -> TrialEnd {
        TrialEnd::with_status(TrialStatus::Invalid, Some(why))
    }

    /// A trial that failed with `why`.
    pub fn failed(why: String) -> TrialEnd {
        TrialEnd::with_status(TrialStatus::Failed, Some(why))
    }
}

/// What a trainer gets for one trial.
pub struct TrialContext<'a> {
    pub dir: &'a StudyDir,
    pub setting: &'a TrialSetting,
    /// The trial's log (`logs/<id>.log`), opened for appending.
    pub log: &'a mut File,
    /// Progress reports and the master's pruning verdicts.
    pub reporter: Reporter<'a>,
    /// Tells the heartbeat the epoch just finished.
    pub on_epoch: &'a dyn Fn(u32),
    /// True once the worker is asked to stop (preemption).
    pub should_stop: &'a dyn Fn() -> bool,
}

impl TrialContext<'_> {
    /// Successive halving: the epoch this run pauses after, if before the end.
    pub fn until_epoch(&self) -> Option<u32> {
        self.setting
            .until_epoch
            .filter(|u| *u < self.setting.epochs)
    }

    /// The trial's checkpoint directory (`checkpoints/<id>/`), created and
    /// made safe to write into: never a link out of the study directory
    /// (see [`StudyDir::prepare_checkpoint_dir`]).
    pub fn checkpoint_dir(&self) -> Result<std::path::PathBuf, FsError> {
        self.dir.prepare_checkpoint_dir(&self.setting.trial_id)
    }
}

/// A trainer: turns a claimed setting into an [`Outcome`]. Shared by the
/// worker's slots, so it must be `Sync`.
pub trait Trainer: Sync {
    /// Run one trial. `Err` is a failure of the worker rather than of the
    /// trial (e.g. a checkpoint cannot be written): the trial goes back to
    /// the queue and the worker stops.
    fn run(&self, trial: &mut TrialContext<'_>) -> Result<Outcome, TrainerError>;
}

/// Why a trainer could not be opened, or could not carry on.
#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Data(#[from] cnn::DataError),
    #[error(transparent)]
    Fs(#[from] FsError),
    /// The cnn trainer cannot save its state (disk full?).
    #[error("trial {trial} could not save its checkpoint, so this worker stopped and handed the trial back to the queue; free space or fix permissions and restart the worker")]
    Checkpoint {
        trial: String,
        #[source]
        source: cnn::TrainError,
    },
}

/// Where a worker's trainer runs and what it reads.
#[derive(Debug, Clone)]
pub struct TrainerOptions {
    pub device: DeviceSpec,
    /// Dataset directory; overrides the study's `trainer.data`.
    pub data: Option<PathBuf>,
}

/// The trainer of `study` (loads the cnn trainer's dataset, opens the
/// device). The one place that knows every kind of trainer.
pub fn open(study: &Study, opts: &TrainerOptions) -> Result<Box<dyn Trainer>, TrainerError> {
    Ok(match &study.trainer {
        TrainerSpec::Cnn {
            data,
            defaults,
            transfer_from,
        } => Box::new(cnn::CnnTrainer::open(
            data.as_deref(),
            defaults,
            transfer_from.as_ref(),
            opts,
        )?),
        TrainerSpec::Exec(spec) => Box::new(exec::ExecTrainer::new(spec.clone())),
        TrainerSpec::Function { name, dim, sleep_s } => {
            // The function trainer needs no device, but a GPU that was
            // asked for and is missing is still an error.
            opts.device.open()?;
            Box::new(function::FunctionTrainer {
                f: *name,
                dim: *dim,
                sleep_s: *sleep_s,
            })
        }
    })
}
