//! The built-in CNN trainer: the seed's Lasagne `build_cnn(nf)` by default,
//! with every knob of the exercises as a hyperparameter (architecture,
//! optimiser, schedule, augmentation, early stopping, k-fold; see
//! [`hps_common::cnn::CnnHyper`]), trained on an MNIST-format data set
//! (Fashion-MNIST by default) on candle.
//!
//! Everything random comes from ChaCha8 streams derived from the trial
//! seed, so the same [`CnnConfig`] on the CPU gives a bit-identical curve
//! (we also observed identical curves with 1 and 2 threads).
//!
//! # Sources of run-to-run randomness
//!
//! * Initial weights: `ChaCha8(seed, stream 1)`, drawn once before epoch 1.
//! * The shuffle of epoch `e`: `ChaCha8(seed, stream 2<<32 | e)`, applied to
//!   the identity permutation of the `train_size` examples (so no state
//!   carries over from one epoch to the next).
//! * The dropout masks of epoch `e`: `ChaCha8(seed, stream 3<<32 | e)`.
//! * The augmentation of batch `b` of epoch `e`:
//!   `ChaCha8(seed, stream 4<<56 | e<<24 | b)` (only with `aug_*` on).
//! * Wall-clock time: only the timing fields (`elapsed_s`, `epoch_time_s`)
//!   and, with `time_limit_s`, where training stops.
//!
//! Because the random streams are a function of `(seed, epoch)`, an epoch
//! checkpoint (see [`train_with_checkpoints`]) needs no RNG state: the
//! weights, the optimizer's velocities and the bookkeeping are enough for a
//! resumed run to continue bit-identically on the CPU. A mid-epoch
//! checkpoint adds the position in the epoch: the next batch (the shuffle
//! is re-derived), the dropout stream's word position and the epoch's
//! running loss sum. (GPU kernels need
//! not be deterministic, so there a resumed run is merely equivalent.)
//!
//! On the CPU the conv stages use our own kernels (`cpu_ops`: im2col + one
//! gemm, fused bias+ReLU+max-pool); on other devices candle's `conv2d` and a
//! max-pool built from `max` reductions (candle 0.11's `max_pool2d` backward
//! pass returns a quarter of the true gradient). A test checks that both
//! paths give the same logits and gradients. Call [`init_cpu_threads`] at
//! start-up.

mod augment;
mod checkpoint;
mod cpu_ops;
mod data;
mod folds;
mod model;
mod optim;
mod trainer;
pub mod transfer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use hps_common::cnn::{epochs_param, CnnHyper, HyperError, Schedule, Transfer};
use hps_common::{EpochStat, Metric, Params, TrialStatus};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use augment::Augment;
pub use data::{write_idx_dir, DataError, Dataset, DEFAULT_DATA_DIR};
pub use model::{Arch, ArchError};
use model::{Cnn, Weights};
use optim::Optim;
pub use trainer::CnnTrainer;

/// At most this many examples per forward pass when evaluating.
const EVAL_CHUNK: usize = 1000;
/// Bound on the im2col buffer (f32 elements) of one evaluation chunk.
const EVAL_COLS: usize = 8 << 20;

/// Examples per evaluation forward pass: at most [`EVAL_CHUNK`], fewer for
/// wide networks so the im2col buffers stay under [`EVAL_COLS`].
fn eval_chunk(arch: &Arch) -> usize {
    let per_example = arch.cols_per_example();
    (EVAL_COLS / per_example).clamp(16, EVAL_CHUNK)
}

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

/// Fix the number of CPU threads candle uses, by setting `RAYON_NUM_THREADS`
/// unless already set, and return the count in effect. `None` means the CPUs this process may use
/// (`std::thread::available_parallelism`, which honours affinity and cgroup
/// quotas).
///
/// Call it at the very start of `main`, before any other thread exists: it
/// sets environment variables. It matters for speed, not correctness:
/// without `RAYON_NUM_THREADS`, candle 0.11 re-reads `/proc/cpuinfo` on
/// every matmul, which made CPU training about 3x slower in our tests.
///
/// `CANDLE_NUM_THREADS` (candle's element-wise pool) is set to 1 unless
/// already set: that pool spin-waits, which cost ~25% of an epoch on a
/// busy 2-core machine, and the heavy work runs on rayon (`cpu_ops`).
pub fn init_cpu_threads(threads: Option<usize>) -> usize {
    let from_env = |k: &str| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
    };
    let n = threads
        .filter(|&n| n > 0)
        .or_else(|| from_env("RAYON_NUM_THREADS"))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads.is_some() || from_env("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    if from_env("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    n
}

fn rng_stream(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// Stream of the initial weights.
const INIT_STREAM: u64 = 1;
/// Base of the per-epoch shuffle streams (`| epoch`).
const SHUFFLE_STREAM: u64 = 2 << 32;
/// Base of the per-epoch dropout streams (`| epoch`).
const DROPOUT_STREAM: u64 = 3 << 32;
/// Base of the per-batch augmentation streams (`| epoch << 24 | batch`).
const AUG_STREAM: u64 = 4 << 56;

/// The RNG of one batch (augmentation): no state to checkpoint.
fn batch_rng(seed: u64, kind: u64, epoch: u32, batch: usize) -> ChaCha8Rng {
    rng_stream(
        seed,
        kind | ((epoch as u64) << 24) | (batch as u64 & 0xFF_FFFF),
    )
}

/// The RNG of one kind (`SHUFFLE_STREAM`, `DROPOUT_STREAM`) for one epoch.
fn epoch_rng(seed: u64, kind: u64, epoch: u32) -> ChaCha8Rng {
    rng_stream(seed, kind | epoch as u64)
}

/// The sizes a config asks for against the dataset's (the hyperparameters
/// themselves were validated when the config was resolved).
fn check_sizes(cfg: &CnnConfig, data: &Dataset, device: &Device) -> Result<(), TrainError> {
    let bad = |m: String| Err(TrainError::InvalidCombination(m));
    let h = &cfg.hyper;
    let n = data.train_len();
    // k-fold validates inside `train_size`; `val_size` is not used.
    let val_size = if h.folds > 1 { 0 } else { h.val_size };
    if h.train_size.saturating_add(val_size) > n {
        return bad(format!(
            "train_size ({}) + val_size ({}) exceeds the {n} examples of the training file",
            h.train_size, h.val_size
        ));
    }
    if h.test_size > data.test_len() {
        return bad(format!(
            "test_size ({}) exceeds the {} examples of the test file",
            h.test_size,
            data.test_len()
        ));
    }
    if !data.device().same_device(device) {
        return bad(format!(
            "the dataset is on {:?} but training was asked to run on {:?}",
            data.device(),
            device
        ));
    }
    Ok(())
}

/// How many rows of `logits` do not pick their label in `y`.
fn misclassified(logits: &Tensor, y: &Tensor) -> candle_core::Result<f64> {
    let miss = logits.argmax(1)?.ne(y)?.to_dtype(DType::F32)?.sum_all()?;
    Ok(miss.to_scalar::<f32>()? as f64)
}

/// The mean absolute value of `t`'s entries.
fn mean_abs(t: &Tensor) -> candle_core::Result<f64> {
    Ok(t.abs()?.mean_all()?.to_scalar::<f32>()? as f64)
}

/// Mean loss and error rate of `w` on `(x, y)`, in chunks of
/// [`eval_chunk`]. NaN for an empty set.
fn evaluate(
    w: &Weights,
    x: &Tensor,
    y: &Tensor,
    should_stop: &dyn Fn() -> bool,
) -> Result<(f64, f64), TrainError> {
    let n = y.dims()[0];
    if n == 0 {
        return Ok((f64::NAN, f64::NAN));
    }
    let chunk = eval_chunk(w.arch());
    let (mut loss_sum, mut wrong) = (0.0f64, 0.0f64);
    for start in (0..n).step_by(chunk) {
        if should_stop() {
            return Err(TrainError::Interrupted);
        }
        let len = chunk.min(n - start);
        let (xs, ys) = (x.narrow(0, start, len)?, y.narrow(0, start, len)?);
        let logits = w.forward(&xs)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &ys)?.to_scalar::<f32>()?;
        loss_sum += loss as f64 * len as f64;
        wrong += misclassified(&logits, &ys)?;
    }
    Ok((loss_sum / n as f64, wrong / n as f64))
}

/// Train the seed's `build_cnn(cfg.nf)` on `data`.
///
/// Per epoch: shuffle the first `train_size` training examples, train in
/// minibatches of `batch_size` (last partial batch included), then evaluate
/// without dropout on the last `val_size` training examples and call
/// `on_epoch`. Test metrics are computed once at the end, from snapshots of
/// the weights at the best and at the last epoch, on the first `test_size`
/// test examples (0 = all).
///
/// `should_stop` is polled before every batch and every evaluation chunk;
/// when it returns true the function returns [`TrainError::Interrupted`].
///
/// A non-finite batch loss (or validation loss) stops training at once with
/// status `Diverged`; the curve keeps the epochs evaluated so far.
///
/// Time limit: elapsed *training* time (evaluation excluded) is checked
/// after every batch. When it reaches `time_limit_s` at an epoch boundary,
/// training stops after that epoch's evaluation. When it is reached in the
/// middle of an epoch, the rest of the epoch is skipped, the partial epoch
/// is evaluated and recorded as an ordinary curve entry (its train_loss is
/// the mean over the batches done) and counts in `epochs_completed`. Either
/// way `stopped_by_time_limit` is set and the status is `Complete` (a limit
/// reached just as the final epoch ends is a normal finish).
///
/// This is [`train_with_checkpoints`] without a checkpoint directory.
pub fn train(
    cfg: &CnnConfig,
    data: &Dataset,
    device: &Device,
    on_epoch: &mut dyn FnMut(&EpochStat),
    should_stop: &dyn Fn() -> bool,
) -> Result<CnnOutcome, TrainError> {
    train_with_checkpoints(cfg, data, device, None, on_epoch, should_stop)
}

/// Like [`train`], but with `checkpoint_dir` (created if missing): if it
/// holds a checkpoint written by a run of the same config (a fingerprint of
/// every [`CnnConfig`] field except `time_limit_s`, plus the dataset's
/// train and test lengths), training resumes after its last epoch. A
/// checkpoint from a different config, or an unreadable or corrupt one, is
/// ignored with a `tracing::warn!` naming the file, and training starts from
/// scratch (it never fails the run).
///
/// After every completed epoch (a time-limited partial epoch and an epoch
/// whose validation loss diverged included) the full state is saved there,
/// *before* `on_epoch` is called for that epoch: when `on_epoch` sees epoch
/// `e`, the checkpoint of epoch `e` is durable. See the `checkpoint` module
/// for the format and the atomic-write protocol. A failure to write it gives
/// [`TrainError::Checkpoint`].
///
/// When `should_stop` fires in the middle of an epoch (between batches, or
/// during the epoch's validation pass), the progress since the last epoch
/// checkpoint is saved as a *mid-epoch checkpoint* before
/// [`TrainError::Interrupted`] is returned (nothing is written when there
/// is no progress since the last save, e.g. at the start of an epoch). A
/// resumed run continues with the next batch of that epoch. A mid-epoch
/// checkpoint that is unusable is ignored with a `tracing::warn!` and
/// training resumes after the last completed epoch (or from scratch).
/// Interruptions during the final test evaluation lose nothing: the last
/// epoch's checkpoint is already in place.
///
/// On the CPU a run interrupted (by `should_stop`, or killed) and resumed
/// gives the same curve (timings aside), best epoch, steps and final
/// metrics as an uninterrupted run, wherever the interruption fell. Elapsed training time carries over, so
/// `time_limit_s` bounds the total over all resumptions; a run resumed with
/// a limit already reached (the limit is not in the fingerprint) stops at
/// once, as it would have at that epoch boundary.
///
/// One writer per directory at a time is assumed: stale `.tmp.` files left
/// by a crashed writer are removed at start.
pub fn train_with_checkpoints(
    cfg: &CnnConfig,
    data: &Dataset,
    device: &Device,
    checkpoint_dir: Option<&Path>,
    on_epoch: &mut dyn FnMut(&EpochStat),
    should_stop: &dyn Fn() -> bool,
) -> Result<CnnOutcome, TrainError> {
    let mut control = |s: &EpochStat| {
        on_epoch(s);
        EpochControl::Continue
    };
    train_controlled(cfg, data, device, checkpoint_dir, &mut control, should_stop)
}

/// What the caller of [`train_controlled`] wants after an epoch.
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

/// [`train_with_checkpoints`] whose `on_epoch` decides, after every epoch,
/// whether training goes on, stops there or pauses.
pub fn train_controlled(
    cfg: &CnnConfig,
    data: &Dataset,
    device: &Device,
    checkpoint_dir: Option<&Path>,
    on_epoch: &mut dyn FnMut(&EpochStat) -> EpochControl,
    should_stop: &dyn Fn() -> bool,
) -> Result<CnnOutcome, TrainError> {
    check_sizes(cfg, data, device)?;
    if cfg.hyper.folds > 1 {
        return folds::train_folds(cfg, data, device, checkpoint_dir, on_epoch, should_stop);
    }
    let (train_size, val_size) = (cfg.hyper.train_size, cfg.hyper.val_size);
    let val_start = data.train_len() - val_size;
    let split = Split::new(
        data,
        (0..train_size as u32).collect(),
        val_start..val_start + val_size,
        0,
    )?;
    let ctx = RunCtx {
        cfg,
        data,
        device,
        split: &split,
        checkpoint_dir,
        should_stop,
    };
    train_split(&ctx, on_epoch)
}

/// Which examples one run trains and validates on.
struct Split {
    /// Indices into the training file.
    train: Vec<u32>,
    val_x: Tensor,
    val_y: Tensor,
    /// k-fold: the fold (0 without cross-validation).
    fold: usize,
}

impl Split {
    /// Train on the examples `train`, validate on the training file's
    /// examples `val`.
    fn new(
        data: &Dataset,
        train: Vec<u32>,
        val: std::ops::Range<usize>,
        fold: usize,
    ) -> candle_core::Result<Split> {
        Ok(Split {
            train,
            val_x: data.train_images.narrow(0, val.start, val.len())?,
            val_y: data.train_labels.narrow(0, val.start, val.len())?,
            fold,
        })
    }
}

/// What one run (a plain run, or one fold) trains with.
struct RunCtx<'a> {
    cfg: &'a CnnConfig,
    data: &'a Dataset,
    device: &'a Device,
    split: &'a Split,
    checkpoint_dir: Option<&'a Path>,
    should_stop: &'a dyn Fn() -> bool,
}

/// Examples of the validation set whose activations are measured.
const PROBE_EXAMPLES: usize = 256;

/// Train one split: resume from its checkpoint, run the epochs left, and
/// compute the final metrics.
fn train_split(
    ctx: &RunCtx<'_>,
    on_epoch: &mut dyn FnMut(&EpochStat) -> EpochControl,
) -> Result<CnnOutcome, TrainError> {
    let cfg = ctx.cfg;
    let mut t = Training::new(ctx)?;
    // Progress within the first epoch to run, from a mid-epoch checkpoint.
    let mut resume_mid = match ctx.checkpoint_dir {
        Some(dir) => t.restore(ctx, dir)?,
        None => None,
    };
    // Early stopping already due after the restored epochs.
    if resume_mid.is_none() && t.run.patience_exhausted(cfg.hyper.patience) {
        t.run.stopped_early = true;
    }
    let sets = EvalSets::new(ctx)?;

    let first_epoch = t.run.curve.len() as u32 + 1;
    let run = &t.run;
    let finished = run.error.is_some() || run.stopped_by_time_limit || run.stopped_early;
    let last_epoch = if finished { 0 } else { cfg.epochs };
    for epoch in first_epoch..=last_epoch {
        let Some(p) = t.train_epoch(ctx, epoch, resume_mid.take())? else {
            break; // diverged
        };
        let epoch_time = p.carried + p.t0.elapsed();
        let snap = t.model.snapshot()?;
        let (val_loss, val_error) = t.validate(ctx, &p, epoch_time, &snap)?;
        let stat = t.record(ctx, &sets, &p, epoch_time, snap, (val_loss, val_error))?;
        if let Some(dir) = ctx.checkpoint_dir {
            t.base_crc32 = checkpoint::save(dir, &t.fingerprint, &t.run, &t.opt)?;
        }
        let control = on_epoch(&stat);
        let run = &t.run;
        if run.error.is_some() || run.stopped_by_time_limit || run.stopped_early {
            break;
        }
        match control {
            EpochControl::Continue => {}
            EpochControl::Stop => break,
            EpochControl::Pause if epoch < cfg.epochs => return Err(TrainError::Paused(epoch)),
            EpochControl::Pause => {}
        }
    }
    let restore_best = cfg.hyper.restore_best;
    t.run
        .finish(&sets.test_x, &sets.test_y, restore_best, ctx.should_stop)
}

/// The examples evaluated besides the validation set: the activation
/// probe and the test set.
struct EvalSets {
    probe_x: Tensor,
    test_x: Tensor,
    test_y: Tensor,
}

impl EvalSets {
    fn new(ctx: &RunCtx<'_>) -> Result<EvalSets, TrainError> {
        let (data, split) = (ctx.data, ctx.split);
        let val_size = split.val_y.dims()[0];
        let probe_n = PROBE_EXAMPLES.min(val_size);
        // Activations are measured on validation examples, or on training
        // examples when there is no validation set.
        let probe_x = if probe_n > 0 {
            split.val_x.narrow(0, 0, probe_n)?
        } else {
            let n_train = split.train.len();
            data.train_images
                .narrow(0, 0, PROBE_EXAMPLES.min(n_train))?
        };
        let test_n = match ctx.cfg.hyper.test_size {
            0 => data.test_len(),
            n => n,
        };
        Ok(EvalSets {
            probe_x,
            test_x: data.test_images.narrow(0, 0, test_n)?,
            test_y: data.test_labels.narrow(0, 0, test_n)?,
        })
    }
}

/// The state of one run in progress: the model, its optimiser, the
/// bookkeeping and where its checkpoints stand.
struct Training {
    model: Cnn,
    opt: Optim,
    run: Run,
    limit: Option<Duration>,
    n_batches: usize,
    fingerprint: checkpoint::Fingerprint,
    /// CRC-32 of the epoch checkpoint's tensor file (`None`: none yet),
    /// which a mid-epoch checkpoint names as its base.
    base_crc32: Option<u32>,
}

/// The progress of the epoch being trained.
struct EpochProgress {
    epoch: u32,
    t0: Instant,
    /// Training time of this epoch before a resume.
    carried: Duration,
    dropout_rng: ChaCha8Rng,
    loss_sum: f64,
    batches_done: usize,
    grad_norm_sum: f64,
    update_ratio_sum: f64,
    /// Training examples misclassified (in training mode, before each
    /// step) and seen so far.
    train_wrong: f64,
    train_seen: usize,
    /// Sums over the steps of the first layer's mean |w| and mean |dL/dw|.
    abs_weight_sum: f64,
    abs_grad_sum: f64,
    lr: f64,
    /// A mid-epoch checkpoint already holds all of this epoch's training.
    saved_training_done: bool,
}

impl EpochProgress {
    fn mid(&self, training_done: bool, epoch_time: Duration, steps: u64) -> checkpoint::MidEpoch {
        checkpoint::MidEpoch {
            epoch: self.epoch,
            batches_done: self.batches_done,
            training_done,
            loss_sum: self.loss_sum,
            dropout_word_pos: self.dropout_rng.get_word_pos(),
            epoch_time,
            steps,
            grad_norm_sum: self.grad_norm_sum,
            update_ratio_sum: self.update_ratio_sum,
            train_wrong: self.train_wrong,
            train_seen: self.train_seen,
            abs_weight_sum: self.abs_weight_sum,
            abs_grad_sum: self.abs_grad_sum,
        }
    }
}

impl Training {
    fn new(ctx: &RunCtx<'_>) -> Result<Training, TrainError> {
        let cfg = ctx.cfg;
        let mut model = Cnn::new(
            &cfg.arch,
            &mut rng_stream(cfg.seed, INIT_STREAM),
            ctx.device,
        )?;
        start_from_source(cfg, &mut model)?;
        let opt = Optim::new(model.vars.len(), &cfg.hyper);
        Ok(Training {
            opt,
            model,
            run: Run::default(),
            limit: cfg.time_limit_s.map(Duration::from_secs_f64),
            n_batches: ctx.split.train.len().div_ceil(cfg.hyper.batch_size),
            fingerprint: checkpoint::Fingerprint::new(cfg, ctx.split.fold, ctx.data),
            base_crc32: None,
        })
    }

    /// Resume from the checkpoints in `dir` (created if missing): the epoch
    /// checkpoint, then a mid-epoch one on top of it, whose progress is
    /// returned. Unusable checkpoints are ignored with a warning.
    fn restore(
        &mut self,
        ctx: &RunCtx<'_>,
        dir: &Path,
    ) -> Result<Option<checkpoint::MidEpoch>, TrainError> {
        let (cfg, device) = (ctx.cfg, ctx.device);
        checkpoint::prepare_dir(dir)?;
        match checkpoint::load(dir, &self.fingerprint, cfg, device) {
            Ok(None) => {}
            Ok(Some(state)) => {
                tracing::info!(
                    "resuming from checkpoint `{}` after epoch {} of {} ({:.1}s of training done)",
                    dir.join(checkpoint::MANIFEST).display(),
                    state.run.curve.len(),
                    cfg.epochs,
                    state.run.train_time.as_secs_f64()
                );
                self.model.restore(&state.weights)?;
                self.opt.set_state(state.velocity);
                self.run = state.run;
                self.opt.set_steps(self.run.steps);
                self.base_crc32 = Some(state.crc32);
            }
            Err(why) => tracing::warn!("{why}; training from scratch"),
        }
        let run = &mut self.run;
        let done = run.curve.len() as u32;
        if done >= cfg.epochs || run.error.is_some() || run.stopped_by_time_limit {
            return Ok(None);
        }
        let (fp, n_batches) = (&self.fingerprint, self.n_batches);
        let mut resume_mid = None;
        match checkpoint::load_mid(dir, fp, cfg, device, done, self.base_crc32, n_batches) {
            Ok(None) => {}
            Ok(Some(state)) => {
                tracing::info!(
                    "resuming from mid-epoch checkpoint `{}` in epoch {} after batch {} of {n_batches}",
                    dir.join(checkpoint::MID_MANIFEST).display(),
                    state.mid.epoch,
                    state.mid.batches_done,
                );
                self.model.restore(&state.weights)?;
                self.opt.set_state(state.velocity);
                run.steps = state.mid.steps;
                self.opt.set_steps(run.steps);
                resume_mid = Some(state.mid);
            }
            Err(why) if done == 0 => tracing::warn!("{why}; training from scratch"),
            Err(why) => tracing::warn!("{why}; resuming after epoch {done}"),
        }
        // With a mid-epoch checkpoint the limit is checked in its epoch.
        if resume_mid.is_none() && self.limit.is_some_and(|l| run.train_time >= l) {
            run.stopped_by_time_limit = true;
        }
        Ok(resume_mid)
    }

    /// Save the progress of the epoch in progress as a mid-epoch checkpoint.
    fn save_mid(
        &self,
        dir: &Path,
        mid: &checkpoint::MidEpoch,
        weights: &Weights,
    ) -> Result<(), TrainError> {
        let base = self.run.curve.len() as u32;
        let (fp, crc) = (&self.fingerprint, self.base_crc32);
        checkpoint::save_mid(dir, fp, base, crc, mid, weights, &self.opt)
    }

    /// Train the batches of `epoch` (from where `mid` left off). `None`:
    /// the loss diverged and the run ends.
    fn train_epoch(
        &mut self,
        ctx: &RunCtx<'_>,
        epoch: u32,
        mid: Option<checkpoint::MidEpoch>,
    ) -> Result<Option<EpochProgress>, TrainError> {
        let (cfg, n_batches) = (ctx.cfg, self.n_batches);
        let t0 = Instant::now();
        let mut perm: Vec<u32> = ctx.split.train.clone();
        perm.shuffle(&mut epoch_rng(cfg.seed, SHUFFLE_STREAM, epoch));
        let mut p = EpochProgress {
            epoch,
            t0,
            carried: Duration::ZERO,
            dropout_rng: epoch_rng(cfg.seed, DROPOUT_STREAM, epoch),
            loss_sum: 0.0,
            batches_done: 0,
            grad_norm_sum: 0.0,
            update_ratio_sum: 0.0,
            train_wrong: 0.0,
            train_seen: 0,
            abs_weight_sum: 0.0,
            abs_grad_sum: 0.0,
            lr: cfg.lr_at(self.run.steps, n_batches),
            saved_training_done: false,
        };
        // Resuming within this epoch: `carried` is its training time so far.
        if let Some(m) = &mid {
            p.dropout_rng.set_word_pos(m.dropout_word_pos);
            (p.loss_sum, p.batches_done, p.carried) = (m.loss_sum, m.batches_done, m.epoch_time);
            (p.grad_norm_sum, p.update_ratio_sum) = (m.grad_norm_sum, m.update_ratio_sum);
            (p.train_wrong, p.train_seen) = (m.train_wrong, m.train_seen);
            (p.abs_weight_sum, p.abs_grad_sum) = (m.abs_weight_sum, m.abs_grad_sum);
            p.saved_training_done = m.training_done;
        }
        // A limit reached before the interruption ends the epoch's training
        // there, as it would have without one.
        let limit = self.limit;
        let skip_training = p.saved_training_done
            || (mid.is_some() && limit.is_some_and(|l| self.run.train_time + p.carried >= l));
        let first_batch = p.batches_done;
        let batches = if skip_training { 0 } else { n_batches };
        let aug = cfg.aug();
        for (b, chunk) in perm
            .chunks(cfg.hyper.batch_size)
            .enumerate()
            .take(batches)
            .skip(first_batch)
        {
            if (ctx.should_stop)() {
                // Save the progress since the last checkpoint, if any.
                if let (Some(dir), true) = (ctx.checkpoint_dir, b > first_batch) {
                    let mid = p.mid(false, p.carried + t0.elapsed(), self.run.steps);
                    self.save_mid(dir, &mid, &self.model.snapshot()?)?;
                }
                return Err(TrainError::Interrupted);
            }
            if !self.step(ctx, &mut p, &aug, b, chunk)? {
                return Ok(None);
            }
            if let Some(limit) = limit {
                if b + 1 < n_batches && self.run.train_time + p.carried + t0.elapsed() >= limit {
                    break;
                }
            }
        }
        Ok(Some(p))
    }

    /// One optimiser step on batch `b` (the examples `chunk`); false when
    /// the loss diverged (the run's error says where).
    fn step(
        &mut self,
        ctx: &RunCtx<'_>,
        p: &mut EpochProgress,
        aug: &Augment,
        b: usize,
        chunk: &[u32],
    ) -> Result<bool, TrainError> {
        let (cfg, data, n_batches) = (ctx.cfg, ctx.data, self.n_batches);
        let run = &mut self.run;
        let idx = Tensor::from_slice(chunk, chunk.len(), ctx.device)?;
        let x = data.train_images.index_select(&idx, 0)?;
        let y = data.train_labels.index_select(&idx, 0)?;
        let x = if aug.is_on() {
            aug.apply(&x, &mut batch_rng(cfg.seed, AUG_STREAM, p.epoch, b))?
        } else {
            x
        };
        p.lr = cfg.lr_at(run.steps, n_batches);
        self.opt.set_lr(p.lr);
        let logits = self.model.forward_train(&x, &mut p.dropout_rng)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
        let l = loss.to_scalar::<f32>()? as f64;
        if !l.is_finite() {
            run.train_time += p.carried + p.t0.elapsed();
            run.error = Some(format!(
                "loss became {} at epoch {} step {} (batch {} of {n_batches}; lr {:?}, momentum {:?})",
                if l.is_nan() { "NaN" } else { "infinite" },
                p.epoch,
                run.steps + 1,
                b + 1,
                cfg.hyper.lr,
                cfg.hyper.momentum
            ));
            return Ok(false);
        }
        p.train_wrong += misclassified(&logits, &y)?;
        p.train_seen += chunk.len();
        let grads = loss.backward()?;
        let first = self.model.vars[0].as_tensor();
        p.abs_weight_sum += mean_abs(first)?;
        if let Some(g) = grads.get(first) {
            p.abs_grad_sum += mean_abs(g)?;
        }
        let st = self.opt.step(&self.model.vars, &grads)?;
        p.grad_norm_sum += st.grad_norm;
        p.update_ratio_sum += st.update_ratio;
        run.steps += 1;
        p.loss_sum += l;
        p.batches_done += 1;
        Ok(true)
    }

    /// The epoch's validation loss and error (NaN without a validation
    /// set). Interrupted, it saves the epoch's training first.
    fn validate(
        &self,
        ctx: &RunCtx<'_>,
        p: &EpochProgress,
        epoch_time: Duration,
        snap: &Weights,
    ) -> Result<(f64, f64), TrainError> {
        // The split's own validation set: a k-fold split validates on its
        // fold whatever `val_size` says.
        if ctx.split.val_y.dims()[0] == 0 {
            return Ok((f64::NAN, f64::NAN));
        }
        let (val_x, val_y) = (&ctx.split.val_x, &ctx.split.val_y);
        match evaluate(snap, val_x, val_y, ctx.should_stop) {
            Err(TrainError::Interrupted) => {
                // Keep the epoch's training, unless saved so already.
                if let (Some(dir), false) = (ctx.checkpoint_dir, p.saved_training_done) {
                    let mid = p.mid(true, epoch_time, self.run.steps);
                    self.save_mid(dir, &mid, snap)?;
                }
                Err(TrainError::Interrupted)
            }
            r => r,
        }
    }

    /// Record the evaluated epoch: its stat and instruments, the best
    /// epoch, and whether the run stops (divergence, time limit, patience).
    fn record(
        &mut self,
        ctx: &RunCtx<'_>,
        sets: &EvalSets,
        p: &EpochProgress,
        epoch_time: Duration,
        snap: Weights,
        (val_loss, val_error): (f64, f64),
    ) -> Result<EpochStat, TrainError> {
        let (cfg, n_batches, epoch) = (ctx.cfg, self.n_batches, p.epoch);
        let run = &mut self.run;
        run.train_time += epoch_time;
        let partial = p.batches_done < n_batches;
        if partial {
            run.partial_epoch_estimate =
                Some(epoch_time.as_secs_f64() * n_batches as f64 / p.batches_done as f64);
        } else {
            run.full_epoch_time += epoch_time;
            run.full_epochs += 1;
        }
        let steps_done = p.batches_done.max(1) as f64;
        let weight_norm = snap
            .tensors()
            .iter()
            .map(|t| t.sqr()?.sum_all()?.to_scalar::<f32>().map(|v| v as f64))
            .sum::<candle_core::Result<f64>>()?
            .sqrt();
        let first_frozen = self.model.frozen_vars() > 0;
        let stat = EpochStat {
            train_error: (p.train_seen > 0).then(|| p.train_wrong / p.train_seen as f64),
            epoch,
            elapsed_s: run.train_time.as_secs_f64(),
            train_loss: p.loss_sum / p.batches_done as f64,
            val_loss,
            val_error,
            instruments: Some(hps_common::Instruments {
                first_abs_weight: Some(p.abs_weight_sum / steps_done),
                // A frozen first layer gets no gradient.
                first_abs_grad: (!first_frozen).then(|| p.abs_grad_sum / steps_done),
                lr: p.lr,
                grad_norm: p.grad_norm_sum / steps_done,
                weight_norm,
                update_ratio: p.update_ratio_sum / steps_done,
                activations: activations(&snap, &sets.probe_x, cfg.arch.filters.len())?,
            }),
        };
        run.curve.push(stat.clone());
        run.last = Some(snap.clone());
        let val_size = ctx.split.val_y.dims()[0];
        if val_size > 0 && !val_loss.is_finite() {
            run.error = Some(format!(
                "validation loss became {val_loss} after epoch {epoch}"
            ));
        } else {
            let better = match &run.best {
                None => true,
                Some((i, _)) => val_size == 0 || val_loss < run.curve[*i].val_loss,
            };
            if better {
                run.best = Some((run.curve.len() - 1, snap));
            }
            let limit = self.limit;
            if partial || limit.is_some_and(|l| run.train_time >= l && epoch < cfg.epochs) {
                run.stopped_by_time_limit = true;
            }
            if epoch < cfg.epochs && run.patience_exhausted(cfg.hyper.patience) {
                run.stopped_early = true;
            }
        }
        Ok(stat)
    }
}

/// Mean and standard deviation of each layer's activations on `probe_x`
/// (none for an empty probe).
fn activations(
    snap: &Weights,
    probe_x: &Tensor,
    n_conv: usize,
) -> Result<Vec<hps_common::LayerStat>, TrainError> {
    if probe_x.dims()[0] == 0 {
        return Ok(Vec::new());
    }
    let (_, stats) = snap.forward_probe(probe_x)?;
    Ok(stats
        .into_iter()
        .enumerate()
        .map(|(i, (mean, std))| hps_common::LayerStat {
            layer: if i < n_conv {
                format!("conv{}", i + 1)
            } else {
                format!("dense{}", i - n_conv + 1)
            },
            mean,
            std,
        })
        .collect())
}

/// The number of epochs a run of `cfg` on `data` with this
/// `checkpoint_dir` would start from: `Some(epochs already done)` if the
/// directory holds a usable checkpoint of the same config (see
/// [`train_with_checkpoints`]), `None` otherwise (no checkpoint, another
/// config, or unreadable; nothing is logged). For the caller's logging; it
/// reads and checks the whole epoch checkpoint.
///
/// Only *completed* epochs count: a mid-epoch checkpoint is not looked at,
/// except that one in epoch 1 (with no epoch checkpoint) gives `Some(0)`.
pub fn checkpoint_epochs(checkpoint_dir: &Path, cfg: &CnnConfig, data: &Dataset) -> Option<u32> {
    if cfg.hyper.folds > 1 {
        // Each fold keeps its own checkpoint in `fold-<i>/`.
        return None;
    }
    let fingerprint = checkpoint::Fingerprint::new(cfg, 0, data);
    match checkpoint::load(checkpoint_dir, &fingerprint, cfg, &Device::Cpu) {
        Ok(Some(state)) => Some(state.run.curve.len() as u32),
        _ => {
            let n_batches = cfg.hyper.train_size.div_ceil(cfg.hyper.batch_size.max(1));
            let mid = checkpoint::load_mid(
                checkpoint_dir,
                &fingerprint,
                cfg,
                &Device::Cpu,
                0,
                None,
                n_batches,
            );
            mid.ok().flatten().map(|_| 0)
        }
    }
}

/// Transfer learning: copy the source's weights into the fresh `model`
/// and, with `freeze_conv`, freeze its conv blocks. A source that does not
/// fit makes the trial invalid.
fn start_from_source(cfg: &CnnConfig, model: &mut Cnn) -> Result<(), TrainError> {
    if cfg.hyper.transfer == Transfer::None {
        return Ok(());
    }
    let Some(src) = &cfg.transfer else {
        return Err(TrainError::InvalidCombination(format!(
            "transfer `{}` needs the source's weights (`trainer.transfer_from`)",
            cfg.hyper.transfer.as_str()
        )));
    };
    src.apply(model)
        .map_err(|e| TrainError::InvalidCombination(e.to_string()))?;
    if cfg.hyper.transfer == Transfer::FreezeConv {
        model.freeze_conv();
    }
    Ok(())
}

/// State accumulated over a run.
#[derive(Default)]
struct Run {
    curve: Vec<EpochStat>,
    /// Index into `curve` and the weights of the best epoch so far.
    best: Option<(usize, Weights)>,
    /// Weights after the last evaluated epoch.
    last: Option<Weights>,
    steps: u64,
    train_time: Duration,
    full_epoch_time: Duration,
    full_epochs: u32,
    /// Projected full-epoch time from a time-limited partial epoch.
    partial_epoch_estimate: Option<f64>,
    error: Option<String>,
    stopped_by_time_limit: bool,
    /// Early stopping: `patience` epochs passed without a better epoch.
    stopped_early: bool,
}

impl Run {
    /// Whether `patience` (> 0) epochs have passed since the best one.
    fn patience_exhausted(&self, patience: u64) -> bool {
        match (&self.best, patience) {
            (Some((i, _)), p) if p > 0 => self.curve.len() - 1 - i >= p as usize,
            _ => false,
        }
    }

    fn finish(
        self,
        test_x: &Tensor,
        test_y: &Tensor,
        restore_best: bool,
        should_stop: &dyn Fn() -> bool,
    ) -> Result<CnnOutcome, TrainError> {
        let mut metrics = BTreeMap::new();
        let mut put = |k: &str, v: f64| {
            if v.is_finite() {
                metrics.insert(k.to_string(), v);
            }
        };
        // The epoch whose metrics are reported: the best (restore_best) or
        // the last.
        let reported = if restore_best {
            self.best.clone()
        } else {
            self.last.clone().map(|w| (self.curve.len() - 1, w))
        };
        if let Some((i, w)) = &reported {
            let s = &self.curve[*i];
            let (test_loss, test_error) = evaluate(w, test_x, test_y, should_stop)?;
            put(Metric::ValLoss.as_str(), s.val_loss);
            put(Metric::ValError.as_str(), s.val_error);
            put(Metric::ValAccuracy.as_str(), 1.0 - s.val_error);
            put(Metric::TrainLoss.as_str(), s.train_loss);
            put(Metric::TestLoss.as_str(), test_loss);
            put(Metric::TestError.as_str(), test_error);
            put(Metric::TestAccuracy.as_str(), 1.0 - test_error);
            let last_i = self.curve.len() - 1;
            let last_test_error = if *i == last_i {
                test_error
            } else if let Some(last) = &self.last {
                evaluate(last, test_x, test_y, should_stop)?.1
            } else {
                f64::NAN
            };
            let l = &self.curve[last_i];
            put("last_val_loss", l.val_loss);
            put("last_val_error", l.val_error);
            put("last_train_loss", l.train_loss);
            put("last_test_error", last_test_error);
        }
        let epoch_time = if self.full_epochs > 0 {
            self.full_epoch_time.as_secs_f64() / self.full_epochs as f64
        } else {
            self.partial_epoch_estimate.unwrap_or(f64::NAN)
        };
        put("epoch_time_s", epoch_time);
        put("steps", self.steps as f64);
        Ok(CnnOutcome {
            status: if self.error.is_some() {
                TrialStatus::Diverged
            } else {
                TrialStatus::Complete
            },
            best_epoch: self.best.as_ref().map(|(i, _)| self.curve[*i].epoch),
            epochs_completed: self.curve.len() as u32,
            curve: self.curve,
            metrics,
            steps: self.steps,
            error: self.error,
            stopped_by_time_limit: self.stopped_by_time_limit,
            stopped_early: self.stopped_early,
            weights: reported.map(|(_, w)| w),
        })
    }
}

#[cfg(test)]
mod tests;
