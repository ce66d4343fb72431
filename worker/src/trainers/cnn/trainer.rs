//! The cnn trainer behind the worker's [`Trainer`] trait: resolves a
//! trial's hyperparameters, resumes from its checkpoint, logs and reports
//! every epoch, and acts on successive halving's pauses and the pruner's
//! verdicts.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use std::sync::Arc;

use hps_common::cnn::{Transfer, TransferFrom};
use hps_common::{CnnDefaults, EpochStat, TrialStatus};
use hps_shared_fs::StudyDir;
use tracing::{error, info, warn};

use super::transfer::{self, SourceWeights, TransferError};

use super::config::Job;
use super::config::{collapsed, CnnConfig};
use super::data::{Dataset, DEFAULT_DATA_DIR};
use super::model::CLASSES;
use super::outcome::{CnnOutcome, EpochControl, TrainError};
use super::split::checkpoint_epochs;
use super::train::train;
use crate::trainers::{Outcome, Trainer, TrainerError, TrainerOptions, TrialContext, TrialEnd};

/// The cnn trainer of a study: its dataset, loaded once and shared by the
/// worker's slots, on its device.
pub struct CnnTrainer {
    data: Dataset,
    device: Device,
    defaults: CnnDefaults,
    /// The study's `trainer.transfer_from`.
    transfer_from: Option<TransferFrom>,
}

impl CnnTrainer {
    /// Open the device and load the dataset: the worker's `--data`, else
    /// the study's `trainer.data`, else [`DEFAULT_DATA_DIR`].
    pub fn open(
        data: Option<&str>,
        defaults: &CnnDefaults,
        transfer_from: Option<&TransferFrom>,
        opts: &TrainerOptions,
    ) -> Result<CnnTrainer, TrainerError> {
        let device = opts.device.open()?;
        let path = opts
            .data
            .clone()
            .or_else(|| data.map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let t = Instant::now();
        let data = Dataset::load(&path, &device)?;
        info!(data = %path.display(), train = data.train_len(), test = data.test_len(), "dataset loaded in {:.1}s", t.elapsed().as_secs_f64());
        Ok(CnnTrainer {
            data,
            device,
            defaults: defaults.clone(),
            transfer_from: transfer_from.cloned(),
        })
    }
}

impl CnnTrainer {
    /// The weights named by `transfer_from`, or why they cannot be had.
    fn source(&self, dir: &StudyDir) -> Result<SourceWeights, TransferError> {
        let Some(from) = &self.transfer_from else {
            return Err(TransferError::NoSource);
        };
        let (path, label) = transfer::resolve(dir, from)?;
        SourceWeights::read(&path, label)
    }
}

impl Trainer for CnnTrainer {
    fn run(&self, trial: &mut TrialContext<'_>) -> Result<Outcome, TrainerError> {
        let s = trial.setting;
        let mut cfg = match CnnConfig::from_params(
            &s.params,
            &self.defaults,
            s.epochs,
            s.time_limit_s,
            s.seed,
        ) {
            Ok(cfg) => cfg,
            Err(e) => return Ok(Outcome::Finished(TrialEnd::invalid(e.to_string()))),
        };
        if cfg.hyper.transfer != Transfer::None {
            match self.source(trial.dir) {
                Ok(src) => {
                    info!("starting from the weights of {}", src.label);
                    crate::logln!(trial.log, "# starting from the weights of {}", src.label);
                    cfg.transfer = Some(Arc::new(src));
                }
                Err(why) => return Ok(Outcome::Finished(TrialEnd::invalid(why.to_string()))),
            }
        }
        crate::logln!(trial.log, "# epoch elapsed_s train_loss val_loss val_error");
        let ckpt = trial.checkpoint_dir()?;
        let until = trial.until_epoch();
        if let Some(done) = checkpoint_epochs(&ckpt, &cfg, &self.data) {
            info!(epochs_done = done, "resuming from checkpoint");
            crate::logln!(
                trial.log,
                "# resuming from the checkpoint after epoch {done}"
            );
            if until.is_some_and(|u| done >= u) {
                // Published again (orphan rule) after it had paused.
                return Ok(Outcome::Paused { epoch: done });
            }
        }
        let mut stop_reason: Option<String> = None;
        let should_stop = trial.should_stop;
        let mut on_epoch = |stat: &EpochStat| epoch_done(trial, stat, until, &mut stop_reason);
        let job = Job {
            checkpoint_dir: Some(&ckpt),
            should_stop,
            ..Job::new(&cfg, &self.data, &self.device)
        };
        let trained = train(&job, &mut on_epoch);
        Ok(match trained {
            Ok(out) => {
                if let (Some(w), TrialStatus::Complete) = (&out.weights, out.status) {
                    // Kept before the result is published, so a source
                    // with a result has its weights.
                    match transfer::keep(trial.dir, &s.trial_id, w) {
                        Ok(path) => info!("weights kept in `{}`", path.display()),
                        Err(e) => warn!("cannot keep the trial's weights: {e}"),
                    }
                }
                Outcome::Finished(finished(out, stop_reason))
            }
            Err(TrainError::Paused(epoch)) => Outcome::Paused { epoch },
            // Preempted: the last epoch's checkpoint stays for whoever runs it next.
            Err(TrainError::Interrupted) => Outcome::Interrupted,
            // Cannot save state (disk full?): hand the trial back rather
            // than fail it, and stop with a clear error.
            Err(e @ TrainError::Checkpoint { .. }) => {
                return Err(TrainerError::Checkpoint {
                    trial: s.trial_id.clone(),
                    source: e,
                })
            }
            Err(TrainError::InvalidCombination(m)) => Outcome::Finished(TrialEnd::invalid(m)),
            Err(e) => {
                error!("training failed: {e}");
                Outcome::Finished(TrialEnd::failed(e.to_string()))
            }
        })
    }
}

/// After each epoch: log it, tell the heartbeat and the progress file,
/// then decide whether training goes on (successive halving's pause, the
/// pruner's stop).
fn epoch_done(
    trial: &mut TrialContext<'_>,
    s: &EpochStat,
    until: Option<u32>,
    stop_reason: &mut Option<String>,
) -> EpochControl {
    crate::logln!(
        trial.log,
        "{} {:.3} {:.6} {:.6} {:.6}",
        s.epoch,
        s.elapsed_s,
        s.train_loss,
        s.val_loss,
        s.val_error
    );
    info!(
        epoch = s.epoch,
        elapsed_s = format!("{:.1}", s.elapsed_s),
        train_loss = s.train_loss,
        val_loss = s.val_loss,
        val_error = s.val_error,
        "epoch"
    );
    (trial.on_epoch)(s.epoch);
    trial.reporter.epoch(s);
    if until.is_some_and(|u| s.epoch >= u) {
        return EpochControl::Pause;
    }
    if trial.setting.decide_at.contains(&s.epoch) {
        trial.reporter.wait_decision(s.epoch, trial.should_stop);
    }
    match trial.reporter.stop_requested(s.epoch) {
        Some(why) => {
            *stop_reason = Some(why);
            EpochControl::Stop
        }
        None => EpochControl::Continue,
    }
}

/// The result parts of a finished run; a run the pruner stopped is `pruned`.
fn finished(out: CnnOutcome, stop_reason: Option<String>) -> TrialEnd {
    let collapsed = out.status == TrialStatus::Complete && collapsed(&out.curve, CLASSES);
    let mut f = TrialEnd {
        status: out.status,
        metrics: out.metrics,
        curve: out.curve,
        best_epoch: out.best_epoch,
        reports: Vec::new(),
        epochs_completed: out.epochs_completed,
        collapsed,
        error: out.error,
    };
    if f.collapsed {
        info!("the run collapsed to chance level: its network predicts no better than guessing");
    }
    if let (Some(why), TrialStatus::Complete) = (stop_reason, f.status) {
        info!("{why}");
        f.status = TrialStatus::Pruned;
        f.error = Some(why);
    }
    f
}
