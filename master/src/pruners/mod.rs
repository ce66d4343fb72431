//! Multi-fidelity pruners: which trials stop early, judged on their
//! intermediate values (the objective per epoch).
//!
//! Two families, both rebuilt from the study directory on every scan, so a
//! restarted master takes the same decisions:
//!
//! - **Stopping rules** ([`StopRule`]: ASHA, the median rule) look at a
//!   running trial when it reports one of its `decide_at` epochs and answer
//!   continue or stop; the master writes the answer to `decisions/<id>.json`
//!   and the worker acts on it at its next epoch boundary. The trial never
//!   leaves its worker.
//! - **Brackets** ([`halving`]: successive halving, Hyperband) work in sync
//!   mode: trials train to a rung, pause (checkpoint kept), and once the
//!   whole batch has reached the rung the best `1/eta` are promoted and
//!   resume from their checkpoints; the rest are pruned.
//!
//! Values are *losses*: the master negates maximised metrics before they
//! get here, and a non-finite value counts as the worst.

pub mod asha;
pub mod halving;
pub mod median;

use std::collections::BTreeMap;

use hps_common::{Direction, PrunerSpec};

/// The intermediate values of one trial, as losses (lower is better).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Curve {
    /// Step (epoch) → loss; non-finite values are stored as `+inf`.
    pub values: BTreeMap<u32, f64>,
    /// The trial completed (not pruned, failed or still running).
    pub complete: bool,
}

impl Curve {
    pub fn from_points(
        points: &[hps_common::ProgressPoint],
        direction: Direction,
        complete: bool,
    ) -> Self {
        let values = points
            .iter()
            .map(|p| {
                let v = direction.sort_key(p.value);
                (p.step, if v.is_finite() { v } else { f64::INFINITY })
            })
            .collect();
        Curve { values, complete }
    }

    pub fn last_step(&self) -> Option<u32> {
        self.values.keys().next_back().copied()
    }

    /// The best value at or before `step`.
    pub fn best_until(&self, step: u32) -> Option<f64> {
        self.values
            .range(..=step)
            .map(|(_, v)| *v)
            .fold(None, |acc, v| Some(acc.map_or(v, |a: f64| a.min(v))))
    }
}

/// The verdict of a stopping rule, with the reason written to the
/// decision file (and into a pruned trial's result).
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Continue(String),
    Stop(String),
}

/// How a metric value is shown in reasons: in the user's sign.
#[derive(Debug, Clone)]
pub struct Shown {
    pub metric: String,
    pub direction: Direction,
}

impl Shown {
    pub fn value(&self, loss: f64) -> String {
        // sort_key is its own inverse: the loss back in the user's sign.
        let v = self.direction.sort_key(loss);
        format!("{} {v:.6}", self.metric)
    }
}

/// A pruner that decides, trial by trial, whether a running trial goes on.
pub trait StopRule: Send {
    fn name(&self) -> &'static str;

    /// The epochs after which a trial of `epochs` epochs is judged.
    fn decide_at(&self, epochs: u32) -> Vec<u32>;

    /// Judge `trial` at `step` (it has a value there) against `others`, the
    /// curves of every other trial of the study, finished or running.
    fn decide(&self, trial: &Curve, step: u32, others: &[&Curve]) -> Verdict;
}

/// The stopping rule of a study, if its pruner is one.
pub fn stop_rule(spec: &PrunerSpec, shown: Shown) -> Option<Box<dyn StopRule>> {
    match *spec {
        PrunerSpec::Asha { min_epochs, eta } => {
            Some(Box::new(asha::Asha::new(min_epochs, eta, shown)))
        }
        PrunerSpec::Median {
            warmup_epochs,
            startup_trials,
        } => Some(Box::new(median::Median::new(
            warmup_epochs,
            startup_trials,
            shown,
        ))),
        PrunerSpec::SuccessiveHalving { .. } | PrunerSpec::Hyperband { .. } => None,
    }
}

/// The step a running trial is due to be judged at: the latest of its
/// `decide_at` epochs that its curve has reached and that is after `done`,
/// the last step already judged (0 for none).
pub fn due_step(decide_at: &[u32], curve: &Curve, done: u32) -> Option<u32> {
    let last = curve.last_step()?;
    decide_at
        .iter()
        .copied()
        .filter(|s| *s <= last && *s > done)
        .max()
}

/// Sort key for ranking losses: a total order with NaN/inf last.
pub(crate) fn rank_key(v: f64) -> f64 {
    if v.is_nan() {
        f64::INFINITY
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(steps: &[u32]) -> Curve {
        Curve {
            values: steps.iter().map(|s| (*s, 1.0)).collect(),
            complete: false,
        }
    }

    #[test]
    fn a_trial_is_judged_once_at_the_latest_due_step() {
        let at = [1, 3, 9];
        assert_eq!(due_step(&at, &curve(&[]), 0), None, "no value yet");
        assert_eq!(due_step(&at, &curve(&[1, 2]), 0), Some(1));
        assert_eq!(due_step(&at, &curve(&[1, 2]), 1), None, "already judged");
        // A master that was down while the trial passed 3 and reached 9
        // judges 9 only.
        assert_eq!(due_step(&at, &curve(&[1, 2, 3, 9]), 1), Some(9));
        assert_eq!(due_step(&[], &curve(&[1]), 0), None);
    }
}
