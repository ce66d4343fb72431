//! Per-epoch checkpoints of a cnn training run, for
//! [`super::train`].
//!
//! # Format
//!
//! A checkpoint directory holds one pair of files:
//!
//! * `checkpoint-e{E}.safetensors`, the tensors after epoch `E` (all f32):
//!   `weights.{i}` (the weights after epoch `E`, `i` in `0..8` in the order
//!   of `Cnn::vars`; they are also the "last epoch" weights the final
//!   `last_test_error` is computed from), `velocity.{i}` (the SGD momentum
//!   buffers; absent while unset, so always absent with momentum 0) and
//!   `best.{i}` (the weights of the best epoch so far, only when that is not
//!   epoch `E`; otherwise they are `weights.*`).
//! * `checkpoint.json`, the manifest (`format_version` 2): the config
//!   fingerprint, `epoch` (= `E`, the epochs done), the tensor file's name,
//!   size and CRC-32, the curve so far and the bookkeeping (steps, training
//!   time, full-epoch time and count, best epoch, divergence message,
//!   whether the time limit stopped the run). Floats are strings in Rust's
//!   shortest round-trip notation (`"0.05"`, `"NaN"`), so they read back bit
//!   for bit; durations are integer nanoseconds.
//!
//! There is no RNG state: the random streams are functions of
//! `(seed, epoch)` (see "Sources of run-to-run randomness" in the `cnn`
//! module docs).
//!
//! # Mid-epoch checkpoints
//!
//! When training is interrupted (`should_stop`) in the middle of an epoch,
//! the progress since the epoch checkpoint above is saved *next to it*, in
//! a second pair of files that leaves the epoch checkpoint untouched (so a
//! damaged mid-epoch checkpoint falls back to the last completed epoch):
//!
//! * `checkpoint-mid-e{E}-b{B}.safetensors` (`-b{B}-eval` once all of the
//!   epoch's batches are done and only its evaluation was interrupted):
//!   `weights.{i}`, the current weights, and `velocity.{i}`, as above.
//! * `checkpoint-mid.json` (its own `format_version` 2): the fingerprint,
//!   `base_epoch` (the epochs done, i.e. the epoch checkpoint's `epoch`, 0
//!   for none) and `base_crc32` (the CRC-32 of that checkpoint's tensor
//!   file), `epoch` (`E` = `base_epoch + 1`, the epoch in progress),
//!   `batches_done` (`B`, also the index of the next batch: the epoch's
//!   shuffle is re-derived from `(seed, E)`), `training_done`, `loss_sum`
//!   (the epoch's running train-loss sum, an exact float), the position of
//!   the epoch's dropout stream (`dropout_word_pos`, ChaCha's word
//!   position as a decimal string), the epoch's training time so far
//!   (`epoch_time_ns`, not yet in the epoch checkpoint's `train_time_ns`),
//!   `steps`, and the tensor file's name, size and CRC-32.
//!
//! The best and last-epoch weights, the curve and the rest of the
//! bookkeeping come from the epoch checkpoint. A mid-epoch checkpoint whose
//! base does not match the epoch checkpoint in place (e.g. a crash after a
//! newer epoch checkpoint was committed but before the mid-epoch files were
//! removed) is ignored. Workers that predate mid-epoch checkpoints ignore
//! these files and resume from the epoch checkpoint. Writing an epoch
//! checkpoint removes the mid-epoch files (manifest first).
//!
//! # Atomic update
//!
//! Each file is written with the protocol's atomic write
//! (`hps_shared_fs::write_atomic`): a temporary file
//! `.tmp.<name>.<host hash>.<pid>.<n>` in the same directory, fsynced and
//! renamed onto its name, then the directory is fsynced. The tensor file comes first and the manifest last (the commit
//! point); older `checkpoint-e*.safetensors` files are deleted after that.
//! The same holds for the mid-epoch pair.
//! A crash at any point leaves the previous pair or the new one; the size
//! and CRC-32 in the manifest also catch a tensor file that does not belong
//! to it. A checkpoint that cannot be read, does not parse, fails those
//! checks or comes from another config is ignored (the caller logs why).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use hps_shared_fs::FsError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use hps_common::EpochStat;

use super::augment::Augment;
use super::config::CnnConfig;
use super::data::Dataset;
use super::model::{Arch, Weights};
use super::optim::Optim;
use super::outcome::TrainError;
use super::run::Run;

/// The manifest's file name.
pub(super) const MANIFEST: &str = "checkpoint.json";
const FORMAT_VERSION: u32 = 2;
/// Prefix of temporary files (followed by the final name), those of the
/// protocol's atomic write.
const TMP_PREFIX: &str = hps_shared_fs::atomic::TMP_PREFIX;
const TENSORS_PREFIX: &str = "checkpoint-e";
const TENSORS_SUFFIX: &str = ".safetensors";
/// The mid-epoch manifest's file name.
pub(super) const MID_MANIFEST: &str = "checkpoint-mid.json";
const MID_FORMAT_VERSION: u32 = 2;
/// Prefix of the mid-epoch files (manifest and tensors).
const MID_PREFIX: &str = "checkpoint-mid";
const MID_TENSORS_PREFIX: &str = "checkpoint-mid-e";

fn mid_tensors_name(epoch: u32, batches_done: usize, training_done: bool) -> String {
    let eval = if training_done { "-eval" } else { "" };
    format!("{MID_TENSORS_PREFIX}{epoch}-b{batches_done}{eval}{TENSORS_SUFFIX}")
}

fn is_mid_tensors_name(name: &str) -> bool {
    name.starts_with(MID_TENSORS_PREFIX) && name.ends_with(TENSORS_SUFFIX)
}

fn tensors_name(epoch: u32) -> String {
    format!("{TENSORS_PREFIX}{epoch}{TENSORS_SUFFIX}")
}

fn is_tensors_name(name: &str) -> bool {
    name.strip_prefix(TENSORS_PREFIX)
        .and_then(|s| s.strip_suffix(TENSORS_SUFFIX))
        .is_some_and(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()))
}

/// An f64 stored as a string in Rust's shortest round-trip notation, so it
/// reads back bit for bit (NaN and infinities included). Compared by bits.
#[derive(Debug, Clone, Copy, Default)]
struct Exact(f64);

impl PartialEq for Exact {
    fn eq(&self, other: &Exact) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Serialize for Exact {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:?}", self.0))
    }
}

impl<'de> Deserialize<'de> for Exact {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Exact, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<f64>()
            .map(Exact)
            .map_err(|e| serde::de::Error::custom(format!("bad number {s:?}: {e}")))
    }
}

/// What identifies the run a checkpoint belongs to: every [`CnnConfig`]
/// field except `time_limit_s`, plus the data set's sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Fingerprint {
    /// Every hyperparameter but the time limit, as canonical JSON.
    config: String,
    /// k-fold cross-validation: which fold this run trains.
    fold: usize,
    train_len: usize,
    test_len: usize,
}

impl Fingerprint {
    pub(super) fn new(cfg: &CnnConfig, fold: usize, data: &Dataset) -> Fingerprint {
        Fingerprint {
            config: serde_json::to_string(&FingerprintConfig::new(cfg)).unwrap_or_default(),
            fold,
            train_len: data.train_len(),
            test_len: data.test_len(),
        }
    }
}

/// The config as fingerprinted since format 1: these fields in this
/// order (the layout of the config struct of that time), without the
/// time limit, which may be raised or lowered between runs of a trial.
#[derive(Serialize)]
struct FingerprintConfig<'a> {
    lr: f64,
    momentum: f64,
    optimizer: hps_common::cnn::Optimizer,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    weight_decay_mode: hps_common::cnn::WeightDecay,
    batch_size: usize,
    lr_schedule: hps_common::cnn::Schedule,
    lr_step_epochs: u64,
    lr_gamma: f64,
    warmup_epochs: u64,
    arch: &'a Arch,
    aug: Augment,
    patience: u64,
    restore_best: bool,
    epochs: u32,
    train_size: usize,
    val_size: usize,
    test_size: usize,
    folds: usize,
    seed: u64,
    time_limit_s: Option<f64>,
    nf: usize,
    /// Transfer learning: `"finetune from trial t000003 of this study"`;
    /// absent without (so older checkpoints keep matching).
    #[serde(skip_serializing_if = "Option::is_none")]
    transfer: Option<String>,
}

impl<'a> FingerprintConfig<'a> {
    fn new(cfg: &'a CnnConfig) -> FingerprintConfig<'a> {
        let h = &cfg.hyper;
        FingerprintConfig {
            lr: h.lr,
            momentum: h.momentum,
            optimizer: h.optimizer,
            beta1: h.beta1,
            beta2: h.beta2,
            eps: h.eps,
            weight_decay: h.weight_decay,
            weight_decay_mode: h.weight_decay_mode,
            batch_size: h.batch_size,
            lr_schedule: h.lr_schedule,
            lr_step_epochs: h.lr_step_epochs,
            lr_gamma: h.lr_gamma,
            warmup_epochs: h.warmup_epochs,
            arch: &cfg.arch,
            aug: cfg.aug(),
            patience: h.patience,
            restore_best: h.restore_best,
            epochs: cfg.epochs,
            train_size: h.train_size,
            val_size: h.val_size,
            test_size: h.test_size,
            folds: h.folds,
            seed: cfg.seed,
            time_limit_s: None,
            nf: cfg.arch.filters.first().copied().unwrap_or(0),
            transfer: (h.transfer != hps_common::cnn::Transfer::None).then(|| {
                let from = cfg.transfer.as_ref().map_or("?", |s| s.label.as_str());
                format!("{} from {from}", h.transfer.as_str())
            }),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct TensorFile {
    name: String,
    size: u64,
    crc32: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct Stat {
    epoch: u32,
    elapsed_s: Exact,
    train_loss: Exact,
    val_loss: Exact,
    val_error: Exact,
    /// Absent in checkpoints written before it was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    train_error: Option<Exact>,
    #[serde(default)]
    instruments: Option<hps_common::Instruments>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format_version: u32,
    fingerprint: Fingerprint,
    /// Epochs done (the curve's length).
    epoch: u32,
    tensors: TensorFile,
    curve: Vec<Stat>,
    /// 1-based; `None` only when epoch 1's validation loss diverged.
    best_epoch: Option<u32>,
    steps: u64,
    train_time_ns: u64,
    full_epoch_time_ns: u64,
    full_epochs: u32,
    partial_epoch_estimate_s: Option<Exact>,
    error: Option<String>,
    stopped_by_time_limit: bool,
}

/// Why a checkpoint cannot be used (the run then starts without it; the
/// caller logs this).
#[derive(Debug, thiserror::Error)]
pub(super) enum Unusable {
    #[error("cannot read {what} `{}`: {source}", path.display())]
    Read {
        /// "checkpoint" or "mid-epoch checkpoint".
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("ignoring {what} `{}`: {why}", path.display())]
    Invalid {
        what: &'static str,
        /// The manifest.
        path: PathBuf,
        why: String,
    },
}

/// A run's state read back from a checkpoint.
pub(super) struct Restored {
    pub run: Run,
    /// The weights after the last epoch (also in `run.last`).
    pub weights: Weights,
    pub velocity: Vec<Option<Tensor>>,
    /// CRC-32 of the tensor file (a mid-epoch checkpoint names it).
    pub crc32: u32,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Create `dir` if missing and remove temporary files a crashed writer
/// left there.
pub(super) fn prepare_dir(dir: &Path) -> Result<(), TrainError> {
    fs::create_dir_all(dir).map_err(|source| TrainError::Checkpoint {
        path: dir.to_path_buf(),
        source,
    })?;
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name();
            let stale = name
                .to_str()
                .and_then(|n| n.strip_prefix(TMP_PREFIX))
                .is_some_and(|n| {
                    n.starts_with(MANIFEST)
                        || n.starts_with(TENSORS_PREFIX)
                        || n.starts_with(MID_PREFIX)
                });
            if stale {
                if let Err(err) = fs::remove_file(e.path()) {
                    tracing::warn!("cannot remove stale `{}`: {err}", e.path().display());
                }
            }
        }
    }
    Ok(())
}

/// Save the state after the last epoch of `run` (see the module docs) and
/// remove any mid-epoch checkpoint. Returns the tensor file's CRC-32
/// (`None`: nothing to save, no epoch evaluated yet).
pub(super) fn save(
    dir: &Path,
    fingerprint: &Fingerprint,
    run: &Run,
    opt: &Optim,
) -> Result<Option<u32>, TrainError> {
    let Some(last) = &run.last else {
        return Ok(None);
    };
    let epoch = run.curve.len() as u32;
    let mut tensors = named_tensors(last, opt);
    let best_epoch = run.best.as_ref().map(|(i, _)| *i as u32 + 1);
    if let Some((i, w)) = &run.best {
        if *i as u32 + 1 != epoch {
            for (j, t) in w.tensors().iter().enumerate() {
                tensors.insert(format!("best.{j}"), t.clone());
            }
            for (j, t) in w.stats().iter().enumerate() {
                tensors.insert(format!("best_stat.{j}"), t.clone());
            }
        }
    }

    let name = tensors_name(epoch);
    let tensor_file = write_tensors(dir, &name, &tensors)?;
    let crc32 = tensor_file.crc32;

    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        fingerprint: fingerprint.clone(),
        epoch,
        tensors: tensor_file,
        curve: run
            .curve
            .iter()
            .map(|s| Stat {
                epoch: s.epoch,
                elapsed_s: Exact(s.elapsed_s),
                train_loss: Exact(s.train_loss),
                val_loss: Exact(s.val_loss),
                val_error: Exact(s.val_error),
                train_error: s.train_error.map(Exact),
                instruments: s.instruments.clone(),
            })
            .collect(),
        best_epoch,
        steps: run.steps,
        train_time_ns: nanos(run.train_time),
        full_epoch_time_ns: nanos(run.full_epoch_time),
        full_epochs: run.full_epochs,
        partial_epoch_estimate_s: run.partial_epoch_estimate.map(Exact),
        error: run.error.clone(),
        stopped_by_time_limit: run.stopped_by_time_limit,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| TrainError::Checkpoint {
        path: dir.join(MANIFEST),
        source: io::Error::other(e),
    })?;
    write_file(&dir.join(MANIFEST), &json)?;
    remove_old_tensors(dir, &name);
    remove_mid(dir);
    Ok(Some(crc32))
}

/// Write `tensors` to `dir/name` atomically; its size and CRC-32.
fn write_tensors(
    dir: &Path,
    name: &str,
    tensors: &HashMap<String, Tensor>,
) -> Result<TensorFile, TrainError> {
    let path = dir.join(name);
    // The bytes `candle_core::safetensors::save` writes.
    let bytes = safetensors::serialize(tensors, None).map_err(|e| TrainError::Checkpoint {
        path: path.clone(),
        source: io::Error::other(e),
    })?;
    let mut crc = flate2::Crc::new();
    crc.update(&bytes);
    write_file(&path, &bytes)?;
    Ok(TensorFile {
        name: name.to_string(),
        size: bytes.len() as u64,
        crc32: crc.sum(),
    })
}

/// Write `bytes` to `path` through the protocol's one atomic write (temp
/// file, fsync, rename, fsync of the directory).
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    hps_shared_fs::write_atomic(path, bytes).map_err(|e| TrainError::Checkpoint {
        path: path.to_path_buf(),
        source: match e {
            FsError::Io { source, .. } => source,
            FsError::NoSpace { .. } => io::Error::from_raw_os_error(libc::ENOSPC),
            other => io::Error::other(other),
        },
    })
}

/// Progress within the epoch in progress (see "Mid-epoch checkpoints").
#[derive(Debug, Clone, PartialEq)]
pub(super) struct MidEpoch {
    /// The epoch in progress (1-based).
    pub epoch: u32,
    /// Batches of the epoch done; the index of the next one.
    pub batches_done: usize,
    /// All of the epoch's training is done (a time-limited partial epoch
    /// included); only its evaluation remains.
    pub training_done: bool,
    /// Sum of the epoch's batch losses so far.
    pub loss_sum: f64,
    /// Word position of the epoch's dropout stream.
    pub dropout_word_pos: u128,
    /// Sums over the epoch's steps so far of the gradient norm and the
    /// update/weight ratio (the epoch's instruments).
    pub grad_norm_sum: f64,
    pub update_ratio_sum: f64,
    /// Training examples misclassified and seen in the epoch so far.
    pub train_wrong: f64,
    pub train_seen: usize,
    /// Sums over the epoch's steps of the first layer's mean |w| and mean
    /// |dL/dw|.
    pub abs_weight_sum: f64,
    pub abs_grad_sum: f64,
    /// The epoch's training time so far.
    pub epoch_time: Duration,
    /// Optimizer steps of the whole run so far.
    pub steps: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct MidManifest {
    format_version: u32,
    fingerprint: Fingerprint,
    base_epoch: u32,
    base_crc32: Option<u32>,
    epoch: u32,
    batches_done: usize,
    training_done: bool,
    loss_sum: Exact,
    grad_norm_sum: Exact,
    update_ratio_sum: Exact,
    // Absent (zero) in mid-epoch checkpoints written before they existed.
    #[serde(default)]
    train_wrong: Exact,
    #[serde(default)]
    train_seen: usize,
    #[serde(default)]
    abs_weight_sum: Exact,
    #[serde(default)]
    abs_grad_sum: Exact,
    dropout_word_pos: String,
    epoch_time_ns: u64,
    steps: u64,
    tensors: TensorFile,
}

/// A mid-epoch checkpoint read back.
pub(super) struct RestoredMid {
    pub mid: MidEpoch,
    /// The current weights (not those of the last completed epoch).
    pub weights: Weights,
    pub velocity: Vec<Option<Tensor>>,
}

/// Save a mid-epoch checkpoint on top of the epoch checkpoint of
/// `base_epoch` epochs (whose tensor file has CRC-32 `base_crc32`; `None`
/// when `base_epoch` is 0). `weights` are the current weights.
pub(super) fn save_mid(
    dir: &Path,
    fingerprint: &Fingerprint,
    base_epoch: u32,
    base_crc32: Option<u32>,
    mid: &MidEpoch,
    weights: &Weights,
    opt: &Optim,
) -> Result<(), TrainError> {
    let tensors = named_tensors(weights, opt);
    let name = mid_tensors_name(mid.epoch, mid.batches_done, mid.training_done);
    let tensor_file = write_tensors(dir, &name, &tensors)?;
    let manifest = MidManifest {
        format_version: MID_FORMAT_VERSION,
        fingerprint: fingerprint.clone(),
        base_epoch,
        base_crc32,
        epoch: mid.epoch,
        batches_done: mid.batches_done,
        training_done: mid.training_done,
        loss_sum: Exact(mid.loss_sum),
        grad_norm_sum: Exact(mid.grad_norm_sum),
        update_ratio_sum: Exact(mid.update_ratio_sum),
        train_wrong: Exact(mid.train_wrong),
        train_seen: mid.train_seen,
        abs_weight_sum: Exact(mid.abs_weight_sum),
        abs_grad_sum: Exact(mid.abs_grad_sum),
        dropout_word_pos: mid.dropout_word_pos.to_string(),
        epoch_time_ns: nanos(mid.epoch_time),
        steps: mid.steps,
        tensors: tensor_file,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| TrainError::Checkpoint {
        path: dir.join(MID_MANIFEST),
        source: io::Error::other(e),
    })?;
    write_file(&dir.join(MID_MANIFEST), &json)?;
    remove_files(dir, is_mid_tensors_name, &name);
    Ok(())
}

/// Remove the mid-epoch checkpoint, manifest first (best effort).
fn remove_mid(dir: &Path) {
    let path = dir.join(MID_MANIFEST);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            tracing::warn!("cannot remove old checkpoint `{}`: {e}", path.display())
        }
        _ => {}
    }
    remove_files(dir, is_mid_tensors_name, "");
}

/// Delete epoch tensor files other than `keep` (best effort).
fn remove_old_tensors(dir: &Path, keep: &str) {
    remove_files(dir, is_tensors_name, keep)
}

/// Delete the files whose name satisfies `pick`, other than `keep` (best
/// effort).
fn remove_files(dir: &Path, pick: fn(&str) -> bool, keep: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if name != keep && pick(name) {
            if let Err(err) = fs::remove_file(e.path()) {
                tracing::warn!(
                    "cannot remove old checkpoint `{}`: {err}",
                    e.path().display()
                );
            }
        }
    }
}

/// The tensors every checkpoint holds, by their names in the tensor file:
/// `weights.i`, `stat.i` (batch-norm running statistics) and `velocity.i`
/// (the optimiser's state, where it has one).
fn named_tensors(weights: &Weights, opt: &Optim) -> HashMap<String, Tensor> {
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (i, t) in weights.tensors().iter().enumerate() {
        tensors.insert(format!("weights.{i}"), t.clone());
    }
    for (i, t) in weights.stats().iter().enumerate() {
        tensors.insert(format!("stat.{i}"), t.clone());
    }
    for (i, v) in opt.state().iter().enumerate() {
        if let Some(v) = v {
            tensors.insert(format!("velocity.{i}"), v.clone());
        }
    }
    tensors
}

/// Read the manifest at `path` and check its version and fingerprint.
/// `Ok(None)`: there is none. `Err`: why it cannot be used, naming the file.
fn read_manifest<M: serde::de::DeserializeOwned>(
    path: &Path,
    what: &'static str,
    version: u32,
    fingerprint: &Fingerprint,
    fingerprint_of: impl Fn(&M) -> &Fingerprint,
) -> Result<Option<M>, Unusable> {
    let text = match fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Unusable::Read {
                what,
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let bad = |why: String| Unusable::Invalid {
        what,
        path: path.to_path_buf(),
        why,
    };
    let value: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    match value.get("format_version").and_then(|v| v.as_u64()) {
        Some(v) if v == version as u64 => {}
        v => {
            return Err(bad(format!(
                "format_version {v:?}, this worker reads {version}"
            )))
        }
    }
    let m: M =
        serde_json::from_value(value).map_err(|e| bad(format!("malformed manifest: {e}")))?;
    if fingerprint_of(&m) != fingerprint {
        return Err(bad(format!(
            "written by a different configuration ({:?}; this run is {:?})",
            fingerprint_of(&m),
            fingerprint
        )));
    }
    Ok(Some(m))
}

/// Read the checkpoint in `dir` onto `device`. `Ok(None)`: there is none.
/// `Err`: why it cannot be used (naming the file), for a warning.
pub(super) fn load(
    dir: &Path,
    fingerprint: &Fingerprint,
    cfg: &CnnConfig,
    device: &Device,
) -> Result<Option<Restored>, Unusable> {
    let what = "checkpoint";
    let path = dir.join(MANIFEST);
    let Some(m) =
        read_manifest::<Manifest>(&path, what, FORMAT_VERSION, fingerprint, |m| &m.fingerprint)?
    else {
        return Ok(None);
    };
    let bad = |why: String| Unusable::Invalid {
        what,
        path: path.clone(),
        why,
    };
    let epoch = m.epoch;
    if epoch == 0 || epoch > cfg.epochs {
        return Err(bad(format!("epoch {epoch} outside 1..={}", cfg.epochs)));
    }
    if m.curve.len() != epoch as usize || m.curve.iter().zip(1..).any(|(s, e)| s.epoch != e) {
        return Err(bad(format!("the curve does not hold epochs 1..={epoch}")));
    }
    if m.best_epoch.is_some_and(|b| b == 0 || b > epoch) {
        return Err(bad(format!(
            "best_epoch {:?} outside 1..={epoch}",
            m.best_epoch
        )));
    }
    if m.tensors.name != tensors_name(epoch) {
        return Err(bad(format!(
            "tensor file {:?} does not match epoch {epoch}",
            m.tensors.name
        )));
    }

    let mut tensors = TensorMap::read(&path, dir, &m.tensors, &cfg.arch, device)?;
    let weights = Weights::from_tensors(&cfg.arch, tensors.all("weights")?, tensors.stats("stat")?);
    let best = match m.best_epoch {
        None => None,
        Some(b) if b == epoch => Some((b as usize - 1, weights.clone())),
        Some(b) => Some((
            b as usize - 1,
            Weights::from_tensors(&cfg.arch, tensors.all("best")?, tensors.stats("best_stat")?),
        )),
    };
    let velocity = tensors.velocities()?;

    let run = Run {
        curve: m
            .curve
            .iter()
            .map(|s| EpochStat {
                epoch: s.epoch,
                elapsed_s: s.elapsed_s.0,
                train_loss: s.train_loss.0,
                val_loss: s.val_loss.0,
                train_error: s.train_error.map(|e| e.0),
                val_error: s.val_error.0,
                instruments: s.instruments.clone(),
            })
            .collect(),
        best,
        last: Some(weights.clone()),
        steps: m.steps,
        train_time: Duration::from_nanos(m.train_time_ns),
        full_epoch_time: Duration::from_nanos(m.full_epoch_time_ns),
        full_epochs: m.full_epochs,
        partial_epoch_estimate: m.partial_epoch_estimate_s.map(|x| x.0),
        error: m.error,
        stopped_by_time_limit: m.stopped_by_time_limit,
        stopped_early: false,
    };
    Ok(Some(Restored {
        run,
        weights,
        velocity,
        crc32: m.tensors.crc32,
    }))
}

/// The tensors of a checkpoint's tensor file, checked against its manifest.
struct TensorMap {
    map: HashMap<String, Tensor>,
    shapes: Vec<Vec<usize>>,
    stat_shapes: Vec<Vec<usize>>,
    /// The manifest and the tensor file, for errors.
    manifest: PathBuf,
    file: PathBuf,
}

impl TensorMap {
    /// Read `dir/tf.name` (the tensor file named by `manifest`) onto
    /// `device`, checking its size and CRC-32.
    fn read(
        manifest: &Path,
        dir: &Path,
        tf: &TensorFile,
        arch: &Arch,
        device: &Device,
    ) -> Result<TensorMap, Unusable> {
        let tpath = dir.join(&tf.name);
        let bad = |why: String| TensorMap::unusable(manifest, &tpath, why);
        let bytes = fs::read(&tpath).map_err(|e| bad(format!("cannot be read: {e}")))?;
        let mut crc = flate2::Crc::new();
        crc.update(&bytes);
        if bytes.len() as u64 != tf.size || crc.sum() != tf.crc32 {
            return Err(bad(format!(
                "does not match the manifest ({} bytes, CRC-32 {:08x}; expected {} bytes, {:08x})",
                bytes.len(),
                crc.sum(),
                tf.size,
                tf.crc32
            )));
        }
        let map = candle_core::safetensors::load_buffer(&bytes, device)
            .map_err(|e| bad(format!("is corrupt: {e}")))?;
        Ok(TensorMap {
            map,
            shapes: arch.var_shapes(),
            stat_shapes: arch.stat_shapes(),
            manifest: manifest.to_path_buf(),
            file: tpath,
        })
    }

    /// "ignoring checkpoint `manifest`: its tensor file `file` {why}"
    fn unusable(manifest: &Path, file: &Path, why: String) -> Unusable {
        Unusable::Invalid {
            what: "checkpoint",
            path: manifest.to_path_buf(),
            why: format!("its tensor file `{}` {why}", file.display()),
        }
    }

    fn bad(&self, why: String) -> Unusable {
        TensorMap::unusable(&self.manifest, &self.file, why)
    }

    /// `{prefix}.{i}`, checked to be f32 of the shape of var `i`.
    fn take(&mut self, prefix: &str, i: usize) -> Result<Option<Tensor>, Unusable> {
        let shape = self.shapes[i % self.shapes.len()].clone();
        self.take_shaped(prefix, i, &shape)
    }

    fn take_shaped(
        &mut self,
        prefix: &str,
        i: usize,
        shape: &[usize],
    ) -> Result<Option<Tensor>, Unusable> {
        let key = format!("{prefix}.{i}");
        match self.map.remove(&key) {
            None => Ok(None),
            Some(t) if t.dtype() == DType::F32 && t.dims() == shape => Ok(Some(t)),
            Some(t) => Err(self.bad(format!(
                "holds `{key}` as {:?} {:?}, expected f32 {:?}",
                t.dtype(),
                t.dims(),
                shape
            ))),
        }
    }

    /// The batch-norm statistics `{prefix}.{i}`, all required.
    fn stats(&mut self, prefix: &str) -> Result<Vec<Tensor>, Unusable> {
        let shapes = self.stat_shapes.clone();
        shapes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                self.take_shaped(prefix, i, s)?
                    .ok_or_else(|| self.bad(format!("lacks `{prefix}.{i}`")))
            })
            .collect()
    }

    /// `{prefix}.{i}` for every var, all required.
    fn all(&mut self, prefix: &str) -> Result<Vec<Tensor>, Unusable> {
        (0..self.shapes.len())
            .map(|i| {
                self.take(prefix, i)?
                    .ok_or_else(|| self.bad(format!("lacks `{prefix}.{i}`")))
            })
            .collect()
    }

    /// The optimiser's optional `velocity.{i}`, two slots per var (see
    /// `Optim::state`).
    fn velocities(&mut self) -> Result<Vec<Option<Tensor>>, Unusable> {
        (0..2 * self.shapes.len())
            .map(|i| self.take("velocity", i))
            .collect()
    }
}

/// Read the mid-epoch checkpoint in `dir` onto `device`, for a run whose
/// epoch checkpoint holds `base_epoch` epochs (0: none) in a tensor file
/// with CRC-32 `base_crc32`, with `n_batches` batches per epoch.
/// `Ok(None)`: there is none. `Err`: why it cannot be used (naming the
/// file), for a warning.
pub(super) fn load_mid(
    dir: &Path,
    fingerprint: &Fingerprint,
    cfg: &CnnConfig,
    device: &Device,
    base_epoch: u32,
    base_crc32: Option<u32>,
    n_batches: usize,
) -> Result<Option<RestoredMid>, Unusable> {
    let what = "mid-epoch checkpoint";
    let path = dir.join(MID_MANIFEST);
    let Some(m) =
        read_manifest::<MidManifest>(&path, what, MID_FORMAT_VERSION, fingerprint, |m| {
            &m.fingerprint
        })?
    else {
        return Ok(None);
    };
    let bad = |why: String| Unusable::Invalid {
        what,
        path: path.clone(),
        why,
    };
    if m.base_epoch != base_epoch || m.base_crc32 != base_crc32 {
        return Err(bad(format!(
            "it continues the checkpoint of epoch {} (CRC-32 {:?}), but the one in place is of epoch {base_epoch} ({base_crc32:?})",
            m.base_epoch, m.base_crc32
        )));
    }
    if m.epoch != base_epoch + 1 || m.epoch > cfg.epochs {
        return Err(bad(format!(
            "epoch {} is not the one after epoch {base_epoch} within 1..={}",
            m.epoch, cfg.epochs
        )));
    }
    let max = if m.training_done {
        n_batches
    } else {
        n_batches.saturating_sub(1)
    };
    if m.batches_done == 0 || m.batches_done > max {
        return Err(bad(format!(
            "batches_done {} outside 1..={max}",
            m.batches_done
        )));
    }
    let dropout_word_pos = m.dropout_word_pos.parse::<u128>().map_err(|e| {
        bad(format!(
            "bad dropout_word_pos {:?}: {e}",
            m.dropout_word_pos
        ))
    })?;
    if m.tensors.name != mid_tensors_name(m.epoch, m.batches_done, m.training_done) {
        return Err(bad(format!(
            "tensor file {:?} does not match epoch {} batch {}",
            m.tensors.name, m.epoch, m.batches_done
        )));
    }
    let mut tensors = TensorMap::read(&path, dir, &m.tensors, &cfg.arch, device)?;
    let weights = Weights::from_tensors(&cfg.arch, tensors.all("weights")?, tensors.stats("stat")?);
    let velocity = tensors.velocities()?;
    Ok(Some(RestoredMid {
        mid: MidEpoch {
            epoch: m.epoch,
            batches_done: m.batches_done,
            training_done: m.training_done,
            loss_sum: m.loss_sum.0,
            grad_norm_sum: m.grad_norm_sum.0,
            update_ratio_sum: m.update_ratio_sum.0,
            train_wrong: m.train_wrong.0,
            train_seen: m.train_seen,
            abs_weight_sum: m.abs_weight_sum.0,
            abs_grad_sum: m.abs_grad_sum.0,
            dropout_word_pos,
            epoch_time: Duration::from_nanos(m.epoch_time_ns),
            steps: m.steps,
        },
        weights,
        velocity,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_floats_round_trip_bit_for_bit() {
        let values = [
            0.1 + 0.2,
            1e-300,
            f64::MIN_POSITIVE / 3.0,
            -0.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            std::f64::consts::PI,
            2.3025850929940455,
        ];
        for v in values {
            let s = serde_json::to_string(&Exact(v)).unwrap();
            let back: Exact = serde_json::from_str(&s).unwrap();
            assert_eq!(back.0.to_bits(), v.to_bits(), "{v:?} -> {s}");
        }
        assert_eq!(serde_json::to_string(&Exact(0.05)).unwrap(), "\"0.05\"");
        assert!(serde_json::from_str::<Exact>("\"zero\"").is_err());
    }

    #[test]
    fn tensor_bytes_are_those_candle_saves() {
        let dir = tempfile::tempdir().unwrap();
        let mut tensors = HashMap::new();
        for (i, n) in [3usize, 1, 4].into_iter().enumerate() {
            let t = Tensor::arange(0f32, n as f32, &Device::Cpu).unwrap();
            tensors.insert(format!("weights.{i}"), t);
        }
        let tf = write_tensors(dir.path(), "a.safetensors", &tensors).unwrap();
        candle_core::safetensors::save(&tensors, dir.path().join("b.safetensors")).unwrap();
        let a = fs::read(dir.path().join("a.safetensors")).unwrap();
        assert_eq!(a, fs::read(dir.path().join("b.safetensors")).unwrap());
        assert_eq!(tf.size, a.len() as u64);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 2, "no temporary file left");
    }

    #[test]
    fn tensor_file_names() {
        assert_eq!(tensors_name(12), "checkpoint-e12.safetensors");
        assert!(is_tensors_name("checkpoint-e3.safetensors"));
        for n in [
            "checkpoint-e.safetensors",
            "checkpoint-e3.json",
            "x-e3.safetensors",
            ".tmp.checkpoint-e3.safetensors.1.2",
        ] {
            assert!(!is_tensors_name(n), "{n}");
        }
    }
}
