//! The median stopping rule (Golovin et al., "Google Vizier", 2017), as
//! Optuna's `MedianPruner`: after `warmup_epochs`, a trial stops when its
//! best value so far is worse than the median of the values that
//! *completed* trials had at the same epoch. Nothing is pruned until
//! `startup_trials` completed trials reported that epoch.

use super::{rank_key, Curve, Shown, StopRule, Verdict};

pub struct Median {
    warmup_epochs: u32,
    startup_trials: u32,
    shown: Shown,
}

impl Median {
    pub fn new(warmup_epochs: u32, startup_trials: u32, shown: Shown) -> Self {
        Median {
            warmup_epochs: warmup_epochs.max(1),
            startup_trials: startup_trials.max(1),
            shown,
        }
    }
}

impl StopRule for Median {
    fn name(&self) -> &'static str {
        "median"
    }

    fn decide_at(&self, epochs: u32) -> Vec<u32> {
        (self.warmup_epochs..epochs).collect()
    }

    fn decide(&self, trial: &Curve, step: u32, others: &[&Curve]) -> Verdict {
        let Some(best) = trial.best_until(step) else {
            return Verdict::Continue(format!("no value up to epoch {step}"));
        };
        let mut at: Vec<f64> = others
            .iter()
            .filter(|c| c.complete)
            .filter_map(|c| c.values.get(&step).map(|v| rank_key(*v)))
            .collect();
        if at.len() < self.startup_trials as usize {
            return Verdict::Continue(format!(
                "{} completed trials reached epoch {step}; the rule starts at {}",
                at.len(),
                self.startup_trials
            ));
        }
        at.sort_by(f64::total_cmp);
        let n = at.len();
        let median = if n % 2 == 1 {
            at[n / 2]
        } else {
            (at[n / 2 - 1] + at[n / 2]) / 2.0
        };
        let what = format!(
            "best {} up to epoch {step}, median of {n} completed trials there: {}",
            self.shown.value(best),
            self.shown.value(median)
        );
        if rank_key(best) > median {
            Verdict::Stop(format!("pruned by the median rule: {what}"))
        } else {
            Verdict::Continue(what)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hps_common::Direction;

    fn curve(points: &[(u32, f64)], complete: bool) -> Curve {
        Curve {
            values: points.iter().copied().collect(),
            complete,
        }
    }

    fn rule(startup: u32) -> Median {
        Median::new(
            1,
            startup,
            Shown {
                metric: "val_loss".into(),
                direction: Direction::Minimize,
            },
        )
    }

    #[test]
    fn decides_from_warmup_to_the_last_but_one_epoch() {
        assert_eq!(Median::new(2, 1, rule(1).shown).decide_at(5), vec![2, 3, 4]);
    }

    #[test]
    fn stops_below_median_of_completed_trials_only() {
        let done: Vec<Curve> = [0.2, 0.3, 0.4]
            .iter()
            .map(|v| curve(&[(1, *v), (2, v - 0.1)], true))
            .collect();
        let pruned = curve(&[(1, 0.01), (2, 0.01)], false);
        let mut refs: Vec<&Curve> = done.iter().collect();
        refs.push(&pruned);
        let r = rule(3);
        // Median at epoch 2 is 0.2 (0.1, 0.2, 0.3); the running trial's best counts.
        assert!(matches!(
            r.decide(&curve(&[(1, 0.5), (2, 0.25)], false), 2, &refs),
            Verdict::Stop(_)
        ));
        assert!(matches!(
            r.decide(&curve(&[(1, 0.15), (2, 0.25)], false), 2, &refs),
            Verdict::Continue(_)
        ));
        // Too few completed trials: never stops.
        assert!(matches!(
            rule(4).decide(&curve(&[(1, 9.0)], false), 1, &refs),
            Verdict::Continue(_)
        ));
    }
}
