//! The training loop of one split (a plain run, or one fold): epochs of
//! shuffled minibatches, evaluation, the instruments, checkpoints and
//! their resumption, the time limit and early stopping.

use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use hps_common::cnn::Transfer;
use hps_common::EpochStat;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::augment::Augment;
use super::checkpoint;
use super::config::CnnConfig;
use super::config::Job;
use super::data::Dataset;
use super::eval::{evaluate, mean_abs, misclassified};
use super::model::{Cnn, Weights};
use super::optim::Optim;
use super::outcome::{CnnOutcome, EpochControl, TrainError};
use super::rng::{
    batch_rng, epoch_rng, rng_stream, AUG_STREAM, DROPOUT_STREAM, INIT_STREAM, SHUFFLE_STREAM,
};
use super::run::Run;

/// A run without folds: train on the first `train_size` examples of the
/// training file, validate on its last `val_size`.
pub(super) fn train_plain(
    job: &Job<'_>,
    on_epoch: &mut dyn FnMut(&EpochStat) -> EpochControl,
) -> Result<CnnOutcome, TrainError> {
    let (cfg, data) = (job.cfg, job.data);
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
        device: job.device,
        split: &split,
        checkpoint_dir: job.checkpoint_dir,
        should_stop: job.should_stop,
    };
    train_split(&ctx, on_epoch)
}

/// The sizes a config asks for against the dataset's (the hyperparameters
/// themselves were validated when the config was resolved).
pub(super) fn check_sizes(
    cfg: &CnnConfig,
    data: &Dataset,
    device: &Device,
) -> Result<(), TrainError> {
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

/// Which examples one run trains and validates on.
pub(super) struct Split {
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
    pub(super) fn new(
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
pub(super) struct RunCtx<'a> {
    pub cfg: &'a CnnConfig,
    pub data: &'a Dataset,
    pub device: &'a Device,
    pub split: &'a Split,
    pub checkpoint_dir: Option<&'a Path>,
    pub should_stop: &'a dyn Fn() -> bool,
}

/// Examples of the validation set whose activations are measured.
pub(super) const PROBE_EXAMPLES: usize = 256;

/// Train one split: resume from its checkpoint, run the epochs left, and
/// compute the final metrics.
pub(super) fn train_split(
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
pub(super) struct EvalSets {
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
pub(super) struct Training {
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
pub(super) struct EpochProgress {
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
pub(super) fn activations(
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
/// [`super::train`]), `None` otherwise (no checkpoint, another
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
pub(super) fn start_from_source(cfg: &CnnConfig, model: &mut Cnn) -> Result<(), TrainError> {
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
