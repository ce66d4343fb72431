//! What a run accumulates epoch by epoch (its curve, best and last
//! weights, steps, times, why it stopped), which a checkpoint saves and
//! the end of the run turns into an outcome.

use std::collections::BTreeMap;
use std::time::Duration;

use candle_core::Tensor;
use hps_common::{EpochStat, Metric, TrialStatus};

use super::eval::evaluate;
use super::model::Weights;
use super::outcome::{CnnOutcome, TrainError};

/// State accumulated over a run.
#[derive(Default)]
pub(super) struct Run {
    pub curve: Vec<EpochStat>,
    /// Index into `curve` and the weights of the best epoch so far.
    pub best: Option<(usize, Weights)>,
    /// Weights after the last evaluated epoch.
    pub last: Option<Weights>,
    pub steps: u64,
    pub train_time: Duration,
    pub full_epoch_time: Duration,
    pub full_epochs: u32,
    /// Projected full-epoch time from a time-limited partial epoch.
    pub partial_epoch_estimate: Option<f64>,
    pub error: Option<String>,
    pub stopped_by_time_limit: bool,
    /// Early stopping: `patience` epochs passed without a better epoch.
    pub stopped_early: bool,
}

impl Run {
    /// Whether `patience` (> 0) epochs have passed since the best one.
    pub(super) fn patience_exhausted(&self, patience: u64) -> bool {
        match (&self.best, patience) {
            (Some((i, _)), p) if p > 0 => self.curve.len() - 1 - i >= p as usize,
            _ => false,
        }
    }

    pub(super) fn finish(
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
