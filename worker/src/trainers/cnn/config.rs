//! One trial's run of the cnn trainer, resolved: the validated
//! hyperparameters, epochs, seed, time limit and architecture, and the
//! learning rate at each step.

use std::path::Path;

use candle_core::Device;
use hps_common::cnn::{epochs_param, CnnHyper, HyperError, Schedule};
use hps_common::{EpochStat, Params};

use super::augment::Augment;
use super::data::Dataset;
use super::model::{Arch, ArchError};
use super::transfer;

/// One cnn trial's run: its validated hyperparameters (the one
/// [`CnnHyper`]), the run's own settings and the architecture they build.
#[derive(Debug, Clone, PartialEq)]
pub struct CnnConfig {
    /// The study's defaults with the trial's params on top.
    pub hyper: CnnHyper,
    pub epochs: u32,
    pub seed: u64,
    pub time_limit_s: Option<f64>,
    /// Built from `hyper` (see [`Arch::from_hyper`]).
    pub arch: Arch,
    /// With `hyper.transfer` other than `none`: the weights the network
    /// starts from (set by the trainer, see [`transfer`]).
    pub transfer: Option<std::sync::Arc<transfer::SourceWeights>>,
}

/// Hyperparameters outside the trainer's domain; the message names the
/// parameter and the bad value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidParams {
    #[error(transparent)]
    Hyper(#[from] HyperError),
    #[error("time_limit_s must be a positive number of seconds, got {0}")]
    TimeLimit(f64),
    #[error(transparent)]
    Arch(#[from] ArchError),
}

impl CnnConfig {
    /// Resolve hyperparameters: `params` (from the trial's setting file)
    /// override `defaults` (the study's `trainer.defaults`). `epochs` comes
    /// from the study budget unless params has "epochs".
    ///
    /// Integer parameters accept integral JSON floats (`64.0`), since
    /// samplers may produce them. Unknown keys, wrong JSON types and values
    /// outside the domain (lr <= 0 or not finite, momentum outside [0, 1),
    /// batch_size/nf/train_size/epochs 0, negative or fractional integers,
    /// a non-positive time limit, …) give [`InvalidParams`].
    pub fn from_params(
        params: &Params,
        defaults: &CnnHyper,
        epochs: u32,
        time_limit_s: Option<f64>,
        seed: u64,
    ) -> Result<CnnConfig, InvalidParams> {
        let hyper = defaults.with_params(params)?;
        let epochs = epochs_param(params, epochs)?;
        if let Some(t) = time_limit_s {
            if !(t.is_finite() && t > 0.0) {
                return Err(InvalidParams::TimeLimit(t));
            }
        }
        let arch = Arch::from_hyper(&hyper)?;
        Ok(CnnConfig {
            hyper,
            epochs,
            seed,
            time_limit_s,
            arch,
            transfer: None,
        })
    }

    /// The same run with other hyperparameters (the architecture rebuilt).
    #[cfg(test)]
    pub fn with_hyper(&self, f: impl FnOnce(&mut CnnHyper)) -> CnnConfig {
        let mut hyper = self.hyper.clone();
        f(&mut hyper);
        hyper.validate().expect("valid hyperparameters");
        CnnConfig {
            arch: Arch::from_hyper(&hyper).expect("a valid architecture"),
            hyper,
            ..self.clone()
        }
    }

    /// The augmentation of training batches.
    pub fn aug(&self) -> Augment {
        Augment {
            shift: self.hyper.aug_shift,
            flip: self.hyper.aug_flip,
            rotate_deg: self.hyper.aug_rotate,
        }
    }

    /// The learning rate at `step` (0-based, counted over the whole run)
    /// with `steps_per_epoch` steps per epoch: the schedule times the
    /// linear warm-up factor.
    pub fn lr_at(&self, step: u64, steps_per_epoch: usize) -> f64 {
        let h = &self.hyper;
        let spe = steps_per_epoch.max(1) as f64;
        let epoch_f = step as f64 / spe; // epochs done, fractional
        let base = match h.lr_schedule {
            Schedule::Constant => h.lr,
            Schedule::Step => {
                let k = (epoch_f / h.lr_step_epochs as f64).floor();
                h.lr * h.lr_gamma.powf(k)
            }
            Schedule::Cosine => {
                let total = self.epochs as f64 * spe;
                let t = (step as f64 / total).min(1.0);
                h.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        };
        if h.warmup_epochs > 0 {
            let w = h.warmup_epochs as f64 * spe;
            base * ((step as f64 + 1.0) / w).min(1.0)
        } else {
            base
        }
    }
}

/// Whether a run ended at chance level among `classes` classes: at its
/// last epoch the validation error is no better than guessing (at least
/// 1 - 1.5/classes) and the training loss is within 2% of ln(classes), the
/// loss of a constant uniform prediction. SGD at LR = 2 on Fashion-MNIST
/// ends so (validation error 0.89-0.91, loss 2.30, dead activations),
/// with every loss finite, so it is not `diverged`.
pub fn collapsed(curve: &[EpochStat], classes: usize) -> bool {
    let Some(last) = curve.last() else {
        return false;
    };
    let chance_loss = (classes as f64).ln();
    last.val_error >= 1.0 - 1.5 / classes as f64
        && (last.train_loss - chance_loss).abs() <= 0.02 * chance_loss
}

/// One training run's inputs (everything but the per-epoch callback): the
/// run, the data and the device, where it checkpoints, and when to stop.
#[derive(Clone, Copy)]
pub struct Job<'a> {
    pub cfg: &'a CnnConfig,
    pub data: &'a Dataset,
    pub device: &'a Device,
    /// Resume from and save to this directory (see [`train`]); `None`:
    /// no checkpoints.
    pub checkpoint_dir: Option<&'a Path>,
    /// Polled before every batch and evaluation chunk.
    pub should_stop: &'a dyn Fn() -> bool,
}

impl<'a> Job<'a> {
    /// A run without checkpoints that is never stopped from outside.
    pub fn new(cfg: &'a CnnConfig, data: &'a Dataset, device: &'a Device) -> Job<'a> {
        Job {
            cfg,
            data,
            device,
            checkpoint_dir: None,
            should_stop: &never,
        }
    }
}

fn never() -> bool {
    false
}
