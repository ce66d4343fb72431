//! The results the master writes itself, for trials no worker will finish:
//! a trial pruned while paused (successive halving / Hyperband), and a
//! trial whose workers kept dying.

use hps_common::{Metric, Progress, TrialResult, TrialSetting, TrialStatus};

/// The result of a trial pruned while paused: the partial curve from its
/// progress file, metrics at the best epoch so far.
pub(super) fn pruned_result(
    s: &TrialSetting,
    progress: Option<&Progress>,
    reason: String,
) -> TrialResult {
    let worker = progress.map_or("", |p| p.worker.as_str());
    let mut r = TrialResult::for_setting(s, worker, "");
    r.status = TrialStatus::Pruned;
    r.error = Some(reason);
    if let Some(p) = progress {
        r.curve = p.curve.clone();
        r.reports = p.reports.clone();
        r.epochs_completed = p.points.len() as u32;
    }
    let best = r
        .curve
        .iter()
        .filter(|e| e.val_loss.is_finite())
        .min_by(|a, b| a.val_loss.total_cmp(&b.val_loss));
    if let Some(e) = best {
        r.best_epoch = Some(e.epoch);
        let metric = |m: Metric| m.as_str().to_string();
        r.metrics.insert(metric(Metric::ValLoss), e.val_loss);
        r.metrics.insert(metric(Metric::ValError), e.val_error);
        r.metrics
            .insert(metric(Metric::ValAccuracy), 1.0 - e.val_error);
        if e.train_loss.is_finite() {
            r.metrics.insert(metric(Metric::TrainLoss), e.train_loss);
        }
    }
    if let Some(last) = r.curve.last() {
        r.wall_time_s = last.elapsed_s;
        if last.val_error.is_finite() {
            r.metrics.insert("last_val_error".into(), last.val_error);
        }
    }
    r
}

/// The `failed` result of a trial given up after `attempts` runs whose
/// workers all stopped heartbeating.
pub(super) fn lost_result(s: &TrialSetting, worker: &str, attempts: u32) -> TrialResult {
    let mut r = TrialResult::for_setting(s, worker, "");
    r.error = Some(format!(
        "the worker running it stopped heartbeating on all {attempts} attempts (max_attempts); last worker `{worker}`"
    ));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use hps_common::{EpochStat, ProgressPoint};

    fn setting() -> TrialSetting {
        TrialSetting {
            seed: 11,
            attempt: 2,
            batch: Some(0),
            until_epoch: Some(2),
            ..TrialSetting::new(3, Default::default(), 4, "random")
        }
    }

    fn epoch(e: u32, train: f64, val: f64, err: f64) -> EpochStat {
        EpochStat {
            train_error: None,
            epoch: e,
            elapsed_s: e as f64 * 1.5,
            train_loss: train,
            val_loss: val,
            val_error: err,
            instruments: None,
        }
    }

    #[test]
    fn a_pruned_result_keeps_the_curve_and_the_best_epochs_metrics() {
        let progress = Progress {
            format_version: 1,
            trial_id: "t000003".into(),
            worker: "w2".into(),
            attempt: 2,
            points: vec![
                ProgressPoint {
                    step: 1,
                    value: 0.5,
                },
                ProgressPoint {
                    step: 2,
                    value: 0.6,
                },
            ],
            curve: vec![epoch(1, 0.9, 0.5, 0.2), epoch(2, f64::NAN, 0.6, 0.25)],
            reports: vec![],
            updated_at_unix: 0.0,
        };
        let r = pruned_result(&setting(), Some(&progress), "pruned by x".into());
        assert_eq!(r.status, TrialStatus::Pruned);
        assert_eq!(r.error.as_deref(), Some("pruned by x"));
        assert_eq!((r.worker.as_str(), r.attempt), ("w2", 2));
        assert_eq!((r.epochs_completed, r.best_epoch), (2, Some(1)));
        assert_eq!(r.metrics["val_loss"], 0.5);
        assert_eq!(r.metrics["val_accuracy"], 0.8);
        assert_eq!(r.metrics["train_loss"], 0.9);
        assert_eq!(r.metrics["last_val_error"], 0.25);
        assert_eq!(r.wall_time_s, 3.0);
        assert!(r.objective.is_none());
    }

    #[test]
    fn a_pruned_result_without_progress_is_empty_but_valid() {
        let r = pruned_result(&setting(), None, "why".into());
        assert_eq!((r.worker.as_str(), r.epochs_completed), ("", 0));
        assert!(r.metrics.is_empty() && r.curve.is_empty());
    }

    #[test]
    fn a_lost_result_says_why_and_who() {
        let r = lost_result(&setting(), "w7", 3);
        assert_eq!(r.status, TrialStatus::Failed);
        let e = r.error.unwrap();
        assert!(e.contains("all 3 attempts") && e.contains("`w7`"), "{e}");
    }
}
