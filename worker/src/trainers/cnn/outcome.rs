//! What a training run gives back: its outcome, the reasons it can stop
//! early, and what the caller may ask after each epoch.

use std::collections::BTreeMap;
use std::path::PathBuf;

use hps_common::{EpochStat, TrialStatus};

use super::model::Weights;

/// What one training run produced.
#[derive(Debug, Clone)]
pub struct CnnOutcome {
    /// `Complete` (including a stop by the time limit) or `Diverged`.
    pub status: TrialStatus,
    /// One stat per finished epoch (a time-limited partial epoch included).
    pub curve: Vec<EpochStat>,
    /// Epoch (1-based) with the lowest finite val_loss; the last epoch when
    /// there is no validation set.
    pub best_epoch: Option<u32>,
    /// Finite values only. At the best epoch: `val_loss`, `val_error`,
    /// `val_accuracy`, `train_loss`, `test_loss`, `test_error`,
    /// `test_accuracy`; at the last epoch: `last_val_loss`,
    /// `last_val_error`, `last_train_loss`, `last_test_error`; plus
    /// `epoch_time_s` (mean training seconds per full epoch) and `steps`.
    pub metrics: BTreeMap<String, f64>,
    /// Entries in `curve`.
    pub epochs_completed: u32,
    /// Optimizer steps done.
    pub steps: u64,
    /// Why the run diverged, e.g. "loss became NaN at epoch 3 step 12 ...".
    pub error: Option<String>,
    pub stopped_by_time_limit: bool,
    /// Early stopping ended the run (`patience`).
    pub stopped_early: bool,
    /// The weights the metrics are reported at (k-fold: fold 1's).
    pub weights: Option<Weights>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// The config does not fit the data set (e.g. train_size + val_size
    /// larger than the training file); the message names the values.
    #[error("{0}")]
    InvalidCombination(String),
    /// `should_stop` returned true.
    #[error("training interrupted")]
    Interrupted,
    /// `on_epoch` asked to pause; that epoch's checkpoint is in place.
    #[error("training paused after epoch {0}")]
    Paused(u32),
    /// A checkpoint could not be written (e.g. the disk is full, or the
    /// checkpoint directory is not a directory); `path` is the file or
    /// directory that failed.
    #[error("cannot write checkpoint `{}`: {source}", path.display())]
    Checkpoint {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the caller of [`super::train`] wants after an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochControl {
    Continue,
    /// End training after this epoch, as a time limit would: the outcome
    /// has the curve so far and metrics (test ones included) at the best
    /// epoch so far. Pruners use it.
    Stop,
    /// Return [`TrainError::Paused`]; the epoch's checkpoint is already
    /// saved, so a later run with the same checkpoint directory goes on
    /// from the next epoch (successive halving's promotion).
    Pause,
}
