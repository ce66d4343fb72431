//! The built-in CNN trainer: the seed's Lasagne `build_cnn(nf)` by default,
//! with every knob of the exercises as a hyperparameter (architecture,
//! optimiser, schedule, augmentation, early stopping, k-fold; see
//! [`hps_common::cnn::CnnDefaults`]), trained on an MNIST-format data set
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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use hps_common::cnn::{Optimizer, Schedule, WeightDecay};
use hps_common::{CnnDefaults, EpochStat, Params, TrialStatus};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

pub use augment::Augment;
pub use data::{write_idx_dir, DataError, Dataset, DEFAULT_DATA_DIR};
pub use model::Arch;
use model::{Cnn, Weights};
use optim::Optim;

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

/// Resolved hyperparameters of one cnn trial (see
/// [`hps_common::cnn::CnnDefaults`] for what each one means).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CnnConfig {
    pub lr: f64,
    pub momentum: f64,
    pub optimizer: Optimizer,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub weight_decay_mode: WeightDecay,
    pub batch_size: usize,
    pub lr_schedule: Schedule,
    pub lr_step_epochs: u32,
    pub lr_gamma: f64,
    pub warmup_epochs: u32,
    pub arch: Arch,
    pub aug: Augment,
    /// Epochs without a lower validation loss before stopping; 0 = off.
    pub patience: u32,
    pub restore_best: bool,
    pub epochs: u32,
    /// Training examples, from the start of the training file.
    pub train_size: usize,
    /// Validation examples, from the end of the training file (0 = none).
    pub val_size: usize,
    /// Test examples, from the start of the test file; 0 = whole test file.
    pub test_size: usize,
    /// k-fold cross-validation over the training examples; 1 = off.
    pub folds: usize,
    pub seed: u64,
    pub time_limit_s: Option<f64>,
    /// Number of filters of the first conv layer (`arch.filters[0]`).
    pub nf: usize,
}

/// Hyperparameters outside the trainer's domain; the message names the
/// parameter and the bad value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidParams(pub String);

fn usize_of(name: &str, v: u64) -> Result<usize, InvalidParams> {
    usize::try_from(v).map_err(|_| InvalidParams(format!("{name} is too large, got {v}")))
}

fn u32_of(name: &str, v: u64) -> Result<u32, InvalidParams> {
    u32::try_from(v)
        .map_err(|_| InvalidParams(format!("{name} must be at most {}, got {v}", u32::MAX)))
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
        defaults: &CnnDefaults,
        epochs: u32,
        time_limit_s: Option<f64>,
        seed: u64,
    ) -> Result<CnnConfig, InvalidParams> {
        let h = defaults.with_params(params).map_err(InvalidParams)?;
        let epochs = match params.get("epochs") {
            None => epochs as u64,
            Some(_) => int_param(params, "epochs", 0)? as u64,
        };
        if epochs == 0 {
            return Err(InvalidParams(
                "epochs must be a positive integer, got 0".into(),
            ));
        }
        let epochs = u32_of("epochs", epochs)?;
        if let Some(t) = time_limit_s {
            if !(t.is_finite() && t > 0.0) {
                return Err(InvalidParams(format!(
                    "time_limit_s must be a positive number of seconds, got {t}"
                )));
            }
        }
        let arch = Arch::from_hyper(&h).map_err(InvalidParams)?;
        Ok(CnnConfig {
            lr: h.lr,
            momentum: h.momentum,
            optimizer: h.optimizer,
            beta1: h.beta1,
            beta2: h.beta2,
            eps: h.eps,
            weight_decay: h.weight_decay,
            weight_decay_mode: h.weight_decay_mode,
            batch_size: usize_of("batch_size", h.batch_size)?,
            lr_schedule: h.lr_schedule,
            lr_step_epochs: u32_of("lr_step_epochs", h.lr_step_epochs)?,
            lr_gamma: h.lr_gamma,
            warmup_epochs: u32_of("warmup_epochs", h.warmup_epochs)?,
            nf: arch.filters[0],
            arch,
            aug: Augment {
                shift: usize_of("aug_shift", h.aug_shift)?,
                flip: h.aug_flip,
                rotate_deg: h.aug_rotate,
            },
            patience: u32_of("patience", h.patience)?,
            restore_best: h.restore_best,
            epochs,
            train_size: usize_of("train_size", h.train_size)?,
            val_size: usize_of("val_size", h.val_size)?,
            test_size: usize_of("test_size", h.test_size)?,
            folds: usize_of("folds", h.folds)?,
            seed,
            time_limit_s,
        })
    }

    /// The learning rate at `step` (0-based, counted over the whole run)
    /// with `steps_per_epoch` steps per epoch: the schedule times the
    /// linear warm-up factor.
    pub fn lr_at(&self, step: u64, steps_per_epoch: usize) -> f64 {
        let spe = steps_per_epoch.max(1) as f64;
        let epoch_f = step as f64 / spe; // epochs done, fractional
        let base = match self.lr_schedule {
            Schedule::Constant => self.lr,
            Schedule::Step => {
                let k = (epoch_f / self.lr_step_epochs as f64).floor();
                self.lr * self.lr_gamma.powf(k)
            }
            Schedule::Cosine => {
                let total = self.epochs as f64 * spe;
                let t = (step as f64 / total).min(1.0);
                self.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        };
        if self.warmup_epochs > 0 {
            let w = self.warmup_epochs as f64 * spe;
            base * ((step as f64 + 1.0) / w).min(1.0)
        } else {
            base
        }
    }
}

/// A non-negative integer parameter (integral floats accepted).
fn int_param(params: &Params, name: &str, default: u64) -> Result<usize, InvalidParams> {
    let bad = |v: &Value| InvalidParams(format!("{name} must be a non-negative integer, got {v}"));
    let n = match params.get(name) {
        None => default,
        Some(v) => match v.as_u64() {
            Some(n) => n,
            None => match v.as_f64() {
                Some(f) if f >= 0.0 && f.fract() == 0.0 && f < u64::MAX as f64 => f as u64,
                _ => return Err(bad(v)),
            },
        },
    };
    usize::try_from(n).map_err(|_| InvalidParams(format!("{name} is too large, got {n}")))
}

/// What one training run produced.
#[derive(Debug, Clone, PartialEq)]
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

fn check_sizes(cfg: &CnnConfig, data: &Dataset, device: &Device) -> Result<(), TrainError> {
    let bad = |m: String| Err(TrainError::InvalidCombination(m));
    let n = data.train_len();
    if cfg.train_size == 0 || cfg.batch_size == 0 || cfg.nf == 0 {
        return bad(format!(
            "train_size, batch_size and nf must be positive, got {}, {}, {}",
            cfg.train_size, cfg.batch_size, cfg.nf
        ));
    }
    if cfg.train_size.saturating_add(cfg.val_size) > n {
        return bad(format!(
            "train_size ({}) + val_size ({}) exceeds the {n} examples of the training file",
            cfg.train_size, cfg.val_size
        ));
    }
    if cfg.test_size > data.test_len() {
        return bad(format!(
            "test_size ({}) exceeds the {} examples of the test file",
            cfg.test_size,
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
        let miss = logits.argmax(1)?.ne(&ys)?.to_dtype(DType::F32)?.sum_all()?;
        wrong += miss.to_scalar::<f32>()? as f64;
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
    if cfg.folds > 1 {
        return folds::train_folds(cfg, data, device, checkpoint_dir, on_epoch, should_stop);
    }
    let val_start = data.train_len() - cfg.val_size;
    let split = Split::new(
        data,
        (0..cfg.train_size as u32).collect(),
        val_start..val_start + cfg.val_size,
        0,
    )?;
    train_split(
        cfg,
        data,
        device,
        &split,
        checkpoint_dir,
        on_epoch,
        should_stop,
    )
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

/// Examples of the validation set whose activations are measured.
const PROBE_EXAMPLES: usize = 256;

#[allow(clippy::too_many_arguments)]
fn train_split(
    cfg: &CnnConfig,
    data: &Dataset,
    device: &Device,
    split: &Split,
    checkpoint_dir: Option<&Path>,
    on_epoch: &mut dyn FnMut(&EpochStat) -> EpochControl,
    should_stop: &dyn Fn() -> bool,
) -> Result<CnnOutcome, TrainError> {
    let model = Cnn::new(&cfg.arch, &mut rng_stream(cfg.seed, INIT_STREAM), device)?;
    let mut opt = Optim::new(model.vars.len(), cfg);
    let limit = cfg.time_limit_s.map(Duration::from_secs_f64);

    let n_train = split.train.len();
    let n_batches = n_train.div_ceil(cfg.batch_size);
    let mut run = Run::default();
    let fingerprint = checkpoint::Fingerprint::new(cfg, split.fold, data);
    // CRC-32 of the epoch checkpoint's tensor file (`None`: none yet), which
    // a mid-epoch checkpoint names as its base.
    let mut base_crc32 = None;
    // Progress within the first epoch to run, from a mid-epoch checkpoint.
    let mut resume_mid: Option<checkpoint::MidEpoch> = None;
    if let Some(dir) = checkpoint_dir {
        checkpoint::prepare_dir(dir)?;
        match checkpoint::load(dir, &fingerprint, cfg, device) {
            Ok(None) => {}
            Ok(Some(state)) => {
                tracing::info!(
                    "resuming from checkpoint `{}` after epoch {} of {} ({:.1}s of training done)",
                    dir.join(checkpoint::MANIFEST).display(),
                    state.run.curve.len(),
                    cfg.epochs,
                    state.run.train_time.as_secs_f64()
                );
                model.restore(&state.weights)?;
                opt.set_state(state.velocity);
                run = state.run;
                opt.set_steps(run.steps);
                base_crc32 = Some(state.crc32);
            }
            Err(why) => tracing::warn!("{why}; training from scratch"),
        }
        let done = run.curve.len() as u32;
        if done < cfg.epochs && run.error.is_none() && !run.stopped_by_time_limit {
            let base =
                checkpoint::load_mid(dir, &fingerprint, cfg, device, done, base_crc32, n_batches);
            match base {
                Ok(None) => {}
                Ok(Some(state)) => {
                    tracing::info!(
                        "resuming from mid-epoch checkpoint `{}` in epoch {} after batch {} of {n_batches}",
                        dir.join(checkpoint::MID_MANIFEST).display(),
                        state.mid.epoch,
                        state.mid.batches_done,
                    );
                    model.restore(&state.weights)?;
                    opt.set_state(state.velocity);
                    run.steps = state.mid.steps;
                    opt.set_steps(run.steps);
                    resume_mid = Some(state.mid);
                }
                Err(why) if done == 0 => tracing::warn!("{why}; training from scratch"),
                Err(why) => tracing::warn!("{why}; resuming after epoch {done}"),
            }
            // With a mid-epoch checkpoint the limit is checked in its epoch.
            if resume_mid.is_none() && limit.is_some_and(|l| run.train_time >= l) {
                run.stopped_by_time_limit = true;
            }
        }
    }
    // Early stopping already due after the restored epochs.
    if resume_mid.is_none() && run.patience_exhausted(cfg.patience) {
        run.stopped_early = true;
    }

    let (train_x, train_y) = (&data.train_images, &data.train_labels);
    let (val_x, val_y) = (&split.val_x, &split.val_y);
    let val_size = val_y.dims()[0];
    let probe_n = PROBE_EXAMPLES.min(val_size);
    // Activations are measured on validation examples, or on training
    // examples when there is no validation set.
    let probe_x = if probe_n > 0 {
        val_x.narrow(0, 0, probe_n)?
    } else {
        train_x.narrow(0, 0, PROBE_EXAMPLES.min(n_train))?
    };
    let test_n = if cfg.test_size == 0 {
        data.test_len()
    } else {
        cfg.test_size
    };
    let test_x = data.test_images.narrow(0, 0, test_n)?;
    let test_y = data.test_labels.narrow(0, 0, test_n)?;

    let first_epoch = run.curve.len() as u32 + 1;
    let finished = run.error.is_some() || run.stopped_by_time_limit || run.stopped_early;
    let last_epoch = if finished { 0 } else { cfg.epochs };
    'epochs: for epoch in first_epoch..=last_epoch {
        let t0 = Instant::now();
        let mut perm: Vec<u32> = split.train.clone();
        perm.shuffle(&mut epoch_rng(cfg.seed, SHUFFLE_STREAM, epoch));
        let mut dropout_rng = epoch_rng(cfg.seed, DROPOUT_STREAM, epoch);
        // Resuming within this epoch: `carried` is its training time so far.
        let mid = resume_mid.take();
        let (mut loss_sum, mut batches_done, carried) = match &mid {
            Some(m) => {
                dropout_rng.set_word_pos(m.dropout_word_pos);
                (m.loss_sum, m.batches_done, m.epoch_time)
            }
            None => (0.0f64, 0usize, Duration::ZERO),
        };
        let (mut grad_norm_sum, mut update_ratio_sum) = match &mid {
            Some(m) => (m.grad_norm_sum, m.update_ratio_sum),
            None => (0.0f64, 0.0f64),
        };
        let mut lr = cfg.lr_at(run.steps, n_batches);
        let saved_training_done = mid.as_ref().is_some_and(|m| m.training_done);
        // A limit reached before the interruption ends the epoch's training
        // there, as it would have without one.
        let skip_training = saved_training_done
            || (mid.is_some() && limit.is_some_and(|l| run.train_time + carried >= l));
        let first_batch = batches_done;
        let batches = if skip_training { 0 } else { n_batches };
        for (b, chunk) in perm
            .chunks(cfg.batch_size)
            .enumerate()
            .take(batches)
            .skip(first_batch)
        {
            if should_stop() {
                // Save the progress since the last checkpoint, if any.
                if let (Some(dir), true) = (checkpoint_dir, b > first_batch) {
                    let mid = checkpoint::MidEpoch {
                        epoch,
                        batches_done,
                        training_done: false,
                        loss_sum,
                        dropout_word_pos: dropout_rng.get_word_pos(),
                        epoch_time: carried + t0.elapsed(),
                        steps: run.steps,
                        grad_norm_sum,
                        update_ratio_sum,
                    };
                    let base = run.curve.len() as u32;
                    let w = model.snapshot()?;
                    checkpoint::save_mid(dir, &fingerprint, base, base_crc32, &mid, &w, &opt)?;
                }
                return Err(TrainError::Interrupted);
            }
            let idx = Tensor::from_slice(chunk, chunk.len(), device)?;
            let x = train_x.index_select(&idx, 0)?;
            let y = train_y.index_select(&idx, 0)?;
            let x = if cfg.aug.is_on() {
                cfg.aug
                    .apply(&x, &mut batch_rng(cfg.seed, AUG_STREAM, epoch, b))?
            } else {
                x
            };
            lr = cfg.lr_at(run.steps, n_batches);
            opt.set_lr(lr);
            let logits = model.forward_train(&x, &mut dropout_rng)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
            let l = loss.to_scalar::<f32>()? as f64;
            if !l.is_finite() {
                run.train_time += carried + t0.elapsed();
                run.error = Some(format!(
                    "loss became {} at epoch {epoch} step {} (batch {} of {n_batches}; lr {:?}, momentum {:?})",
                    if l.is_nan() { "NaN" } else { "infinite" },
                    run.steps + 1,
                    b + 1,
                    cfg.lr,
                    cfg.momentum
                ));
                break 'epochs;
            }
            let grads = loss.backward()?;
            let st = opt.step(&model.vars, &grads)?;
            grad_norm_sum += st.grad_norm;
            update_ratio_sum += st.update_ratio;
            run.steps += 1;
            loss_sum += l;
            batches_done += 1;
            if let Some(limit) = limit {
                if b + 1 < n_batches && run.train_time + carried + t0.elapsed() >= limit {
                    break;
                }
            }
        }
        let epoch_time = carried + t0.elapsed();
        let snap = model.snapshot()?;
        let (val_loss, val_error) = if cfg.val_size > 0 {
            match evaluate(&snap, val_x, val_y, should_stop) {
                Err(TrainError::Interrupted) => {
                    // Keep the epoch's training, unless saved so already.
                    if let (Some(dir), false) = (checkpoint_dir, saved_training_done) {
                        let mid = checkpoint::MidEpoch {
                            epoch,
                            batches_done,
                            training_done: true,
                            loss_sum,
                            dropout_word_pos: dropout_rng.get_word_pos(),
                            epoch_time,
                            steps: run.steps,
                            grad_norm_sum,
                            update_ratio_sum,
                        };
                        let base = run.curve.len() as u32;
                        checkpoint::save_mid(
                            dir,
                            &fingerprint,
                            base,
                            base_crc32,
                            &mid,
                            &snap,
                            &opt,
                        )?;
                    }
                    return Err(TrainError::Interrupted);
                }
                r => r?,
            }
        } else {
            (f64::NAN, f64::NAN)
        };
        run.train_time += epoch_time;
        let partial = batches_done < n_batches;
        if partial {
            run.partial_epoch_estimate =
                Some(epoch_time.as_secs_f64() * n_batches as f64 / batches_done as f64);
        } else {
            run.full_epoch_time += epoch_time;
            run.full_epochs += 1;
        }
        let steps_done = batches_done.max(1) as f64;
        let weight_norm = snap
            .tensors()
            .iter()
            .map(|t| t.sqr()?.sum_all()?.to_scalar::<f32>().map(|v| v as f64))
            .sum::<candle_core::Result<f64>>()?
            .sqrt();
        let activations = if probe_x.dims()[0] > 0 {
            let (_, stats) = snap.forward_probe(&probe_x)?;
            let n_conv = cfg.arch.filters.len();
            stats
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
                .collect()
        } else {
            Vec::new()
        };
        let stat = EpochStat {
            epoch,
            elapsed_s: run.train_time.as_secs_f64(),
            train_loss: loss_sum / batches_done as f64,
            val_loss,
            val_error,
            instruments: Some(hps_common::Instruments {
                lr,
                grad_norm: grad_norm_sum / steps_done,
                weight_norm,
                update_ratio: update_ratio_sum / steps_done,
                activations,
            }),
        };
        run.curve.push(stat.clone());
        run.last = Some(snap.clone());
        if cfg.val_size > 0 && !val_loss.is_finite() {
            run.error = Some(format!(
                "validation loss became {val_loss} after epoch {epoch}"
            ));
        } else {
            let better = match &run.best {
                None => true,
                Some((i, _)) => cfg.val_size == 0 || val_loss < run.curve[*i].val_loss,
            };
            if better {
                run.best = Some((run.curve.len() - 1, snap));
            }
            if partial || limit.is_some_and(|l| run.train_time >= l && epoch < cfg.epochs) {
                run.stopped_by_time_limit = true;
            }
            if epoch < cfg.epochs && run.patience_exhausted(cfg.patience) {
                run.stopped_early = true;
            }
        }
        if let Some(dir) = checkpoint_dir {
            base_crc32 = checkpoint::save(dir, &fingerprint, &run, &opt)?;
        }
        let control = on_epoch(&stat);
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
    run.finish(&test_x, &test_y, cfg.restore_best, should_stop)
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
    if cfg.folds > 1 {
        // Each fold keeps its own checkpoint in `fold-<i>/`.
        return None;
    }
    let fingerprint = checkpoint::Fingerprint::new(cfg, 0, data);
    match checkpoint::load(checkpoint_dir, &fingerprint, cfg, &Device::Cpu) {
        Ok(Some(state)) => Some(state.run.curve.len() as u32),
        _ => {
            let n_batches = cfg.train_size.div_ceil(cfg.batch_size.max(1));
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
    fn patience_exhausted(&self, patience: u32) -> bool {
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
            put("val_loss", s.val_loss);
            put("val_error", s.val_error);
            put("val_accuracy", 1.0 - s.val_error);
            put("train_loss", s.train_loss);
            put("test_loss", test_loss);
            put("test_error", test_error);
            put("test_accuracy", 1.0 - test_error);
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
        })
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// The default config (the seed's net), for unit tests.
    pub fn config() -> CnnConfig {
        CnnConfig::from_params(&Params::new(), &CnnDefaults::default(), 1, None, 0).unwrap()
    }
}

#[cfg(test)]
mod tests;
