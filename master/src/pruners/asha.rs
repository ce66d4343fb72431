//! Asynchronous successive halving (ASHA; Li et al., "A System for
//! Massively Parallel Hyperparameter Tuning", 2020), in its stopping form
//! (as Optuna's `SuccessiveHalvingPruner` and Ray Tune's ASHA scheduler):
//! rungs sit at `min_epochs * eta^k` epochs; a trial reaching a rung goes
//! on only if its value there is among the best `max(1, n / eta)` of the
//! `n` trials that have reached that rung so far (itself included).
//! Trials are never paused, so no worker waits for a rung to fill up.

use super::{rank_key, Curve, Shown, StopRule, Verdict};

pub struct Asha {
    min_epochs: u32,
    eta: u32,
    shown: Shown,
}

impl Asha {
    pub fn new(min_epochs: u32, eta: u32, shown: Shown) -> Self {
        Asha {
            min_epochs: min_epochs.max(1),
            eta: eta.max(2),
            shown,
        }
    }
}

/// `r0, r0*eta, r0*eta^2, …` below `epochs`.
pub fn rungs(min_epochs: u32, eta: u32, epochs: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut r = min_epochs.max(1) as u64;
    while r < epochs as u64 {
        out.push(r as u32);
        r *= eta.max(2) as u64;
    }
    out
}

impl StopRule for Asha {
    fn name(&self) -> &'static str {
        "asha"
    }

    fn decide_at(&self, epochs: u32) -> Vec<u32> {
        rungs(self.min_epochs, self.eta, epochs)
    }

    fn decide(&self, trial: &Curve, step: u32, others: &[&Curve]) -> Verdict {
        let Some(&v) = trial.values.get(&step) else {
            return Verdict::Continue(format!("no value at epoch {step}"));
        };
        let v = rank_key(v);
        let rung: Vec<f64> = others
            .iter()
            .filter_map(|c| c.values.get(&step).map(|x| rank_key(*x)))
            .collect();
        let n = rung.len() + 1;
        let keep = (n / self.eta as usize).max(1);
        let better = rung.iter().filter(|x| **x < v).count();
        let rank = better + 1;
        let what = format!(
            "{} at epoch {step} ranks {rank} of {n} trials at this rung; the best {keep} (1/{}) go on",
            self.shown.value(v),
            self.eta
        );
        if v.is_finite() && better < keep {
            Verdict::Continue(what)
        } else {
            Verdict::Stop(format!("pruned by asha: {what}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hps_common::Direction;

    fn curve(points: &[(u32, f64)]) -> Curve {
        Curve {
            values: points.iter().copied().collect(),
            complete: false,
        }
    }

    fn asha() -> Asha {
        Asha::new(
            1,
            3,
            Shown {
                metric: "val_error".into(),
                direction: Direction::Minimize,
            },
        )
    }

    #[test]
    fn rungs_are_geometric_and_below_the_budget() {
        assert_eq!(rungs(1, 3, 9), vec![1, 3]);
        assert_eq!(rungs(1, 3, 10), vec![1, 3, 9]);
        assert_eq!(rungs(2, 2, 20), vec![2, 4, 8, 16]);
        assert_eq!(rungs(5, 3, 5), Vec::<u32>::new());
    }

    #[test]
    fn first_trial_at_a_rung_goes_on() {
        let t = curve(&[(1, 0.5)]);
        assert!(matches!(asha().decide(&t, 1, &[]), Verdict::Continue(_)));
    }

    #[test]
    fn keeps_the_top_third() {
        let a = asha();
        let others: Vec<Curve> = [0.1, 0.2, 0.3, 0.4, 0.5]
            .iter()
            .map(|v| curve(&[(1, *v)]))
            .collect();
        let refs: Vec<&Curve> = others.iter().collect();
        // Six trials at the rung: the best two go on.
        assert!(matches!(
            a.decide(&curve(&[(1, 0.15)]), 1, &refs),
            Verdict::Continue(_)
        ));
        match a.decide(&curve(&[(1, 0.25)]), 1, &refs) {
            Verdict::Stop(why) => assert!(why.contains("ranks 3 of 6"), "{why}"),
            v => panic!("{v:?}"),
        }
        // With fewer than eta trials only a new best goes on.
        let one = [curve(&[(1, 0.2)])];
        let one: Vec<&Curve> = one.iter().collect();
        assert!(matches!(
            a.decide(&curve(&[(1, 0.3)]), 1, &one),
            Verdict::Stop(_)
        ));
        assert!(matches!(
            a.decide(&curve(&[(1, 0.1)]), 1, &one),
            Verdict::Continue(_)
        ));
    }

    #[test]
    fn a_non_finite_value_is_always_pruned_and_others_at_other_rungs_do_not_count() {
        let a = asha();
        let others = [curve(&[(1, 0.1), (3, 0.05)])];
        let refs: Vec<&Curve> = others.iter().collect();
        assert!(matches!(
            a.decide(&curve(&[(1, f64::INFINITY)]), 1, &[]),
            Verdict::Stop(_)
        ));
        // At rung 3 only the other trial's rung-3 value competes.
        assert!(matches!(
            a.decide(&curve(&[(1, 0.2), (3, 0.04)]), 3, &refs),
            Verdict::Continue(_)
        ));
    }
}
