//! k-fold cross-validation: train one model per fold and report the mean
//! and the standard deviation of the metrics across folds, the statistical
//! error of a setting's score.
//!
//! The first `train_size` examples of the training file are cut into `k`
//! contiguous folds; run `i` validates on fold `i` and trains on the rest
//! (`val_size` is not used). Each fold checkpoints into `fold-<i>/` of the
//! trial's checkpoint directory, so an interrupted trial resumes in the
//! fold it was in.

use std::collections::BTreeMap;

use hps_common::{EpochStat, Metric, TrialStatus};

use super::config::Job;
use super::outcome::{CnnOutcome, EpochControl, TrainError};
use super::split::{train_split, RunCtx, Split};

/// Metrics whose spread across folds is reported as `<name>_std`.
const WITH_STD: &[Metric] = &[
    Metric::ValError,
    Metric::ValLoss,
    Metric::ValAccuracy,
    Metric::TestError,
    Metric::TestAccuracy,
    Metric::TrainLoss,
];

pub(super) fn train_folds(
    job: &Job<'_>,
    on_epoch: &mut dyn FnMut(&EpochStat) -> EpochControl,
) -> Result<CnnOutcome, TrainError> {
    let (cfg, data) = (job.cfg, job.data);
    let (n, k) = (cfg.hyper.train_size, cfg.hyper.folds);
    let mut outcomes: Vec<CnnOutcome> = Vec::with_capacity(k);
    for f in 0..k {
        let (lo, hi) = (f * n / k, (f + 1) * n / k);
        let train = (0..lo as u32).chain(hi as u32..n as u32).collect();
        let split = Split::new(data, train, lo..hi, f)?;
        let dir = job.checkpoint_dir.map(|d| d.join(format!("fold-{f}")));
        tracing::info!(fold = f + 1, of = k, "cross-validation fold");
        let ctx = RunCtx {
            cfg,
            data,
            device: job.device,
            split: &split,
            checkpoint_dir: dir.as_deref(),
            should_stop: job.should_stop,
        };
        let out = train_split(&ctx, &mut |_| EpochControl::Continue)?;
        if out.status != TrialStatus::Complete {
            let mut out = out;
            out.error = out.error.map(|e| format!("fold {} of {k}: {e}", f + 1));
            return Ok(out);
        }
        outcomes.push(out);
    }
    let combined = combine(&outcomes);
    for s in &combined.curve {
        // The trial's log and progress see the fold-mean curve; pruning
        // decisions have nothing to act on any more.
        let _ = on_epoch(s);
    }
    Ok(combined)
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// Fold-mean curve and metrics, plus `<metric>_std` (sample standard
/// deviation across folds) and `folds`.
fn combine(outs: &[CnnOutcome]) -> CnnOutcome {
    let epochs = outs.iter().map(|o| o.curve.len()).min().unwrap_or(0);
    let curve: Vec<EpochStat> = (0..epochs)
        .map(|e| {
            let m = |f: fn(&EpochStat) -> f64| {
                mean_std(&outs.iter().map(|o| f(&o.curve[e])).collect::<Vec<_>>()).0
            };
            let train_error = outs
                .iter()
                .map(|o| o.curve[e].train_error)
                .collect::<Option<Vec<f64>>>()
                .map(|v| mean_std(&v).0);
            EpochStat {
                train_error,
                epoch: e as u32 + 1,
                elapsed_s: m(|s| s.elapsed_s),
                train_loss: m(|s| s.train_loss),
                val_loss: m(|s| s.val_loss),
                val_error: m(|s| s.val_error),
                instruments: None,
            }
        })
        .collect();
    let mut metrics = BTreeMap::new();
    let keys: Vec<String> = outs[0].metrics.keys().cloned().collect();
    for key in keys {
        let vals: Vec<f64> = outs
            .iter()
            .filter_map(|o| o.metrics.get(&key).copied())
            .collect();
        if vals.len() != outs.len() {
            continue;
        }
        let (mean, std) = mean_std(&vals);
        metrics.insert(key.clone(), mean);
        if WITH_STD.iter().any(|m| m.as_str() == key) {
            metrics.insert(format!("{key}_std"), std);
        }
    }
    metrics.insert("folds".into(), outs.len() as f64);
    let best_epoch = curve
        .iter()
        .filter(|s| s.val_loss.is_finite())
        .min_by(|a, b| a.val_loss.total_cmp(&b.val_loss))
        .map(|s| s.epoch);
    CnnOutcome {
        status: TrialStatus::Complete,
        epochs_completed: curve.len() as u32,
        curve,
        best_epoch,
        metrics,
        steps: outs.iter().map(|o| o.steps).sum(),
        error: None,
        stopped_by_time_limit: outs.iter().any(|o| o.stopped_by_time_limit),
        stopped_early: outs.iter().any(|o| o.stopped_early),
        weights: outs.first().and_then(|o| o.weights.clone()),
    }
}
