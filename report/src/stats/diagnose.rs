//! Diagnoses of training runs from their per-epoch curves, behind the
//! report's answers to the seeds' questions: how a run behaved (learned,
//! plateaued, collapsed to chance, diverged), the steps and time an epoch
//! takes, what a curve reads at an epoch or time budget, the overfitting
//! gap, and the instrument readings that point at a bug (seed 002).
//! The rules are written up in docs/report.md, "The answers section".

use std::cmp::Ordering;

use hps_common::EpochStat;

/// A run is at chance when its final validation error is within
/// `CHANCE_TOLERANCE / classes` of `1 - 1/classes` (0.85 for 10 classes,
/// the worker's own `collapsed` threshold).
pub const CHANCE_TOLERANCE: f64 = 0.5;
/// A run whose last training loss exceeds this many times `ln(classes)`
/// (the loss of a uniform guess) has exploded.
pub const EXPLODED: f64 = 2.0;
/// A run whose training loss fell by less than this fraction of its first
/// epoch's value has plateaued.
pub const PLATEAU_DROP: f64 = 0.1;
/// A mean update/weight ratio below this moves the weights too little to
/// learn (a healthy ratio is about 1e-3).
pub const TINY_UPDATE: f64 = 1e-5;
/// A final validation error this far above the study's best is "high".
pub const HIGH_ERROR_MARGIN: f64 = 0.1;

/// How a training run behaved, judged from its curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Behaviour {
    /// The training loss fell and the network predicts better than chance.
    Learns,
    /// The training loss barely moved (a learning rate far too small).
    Plateau,
    /// Finite losses, but the network ends at chance level.
    Collapsed,
    /// A loss became non-finite, or exploded.
    Diverged,
}

impl Behaviour {
    /// Every behaviour, from healthy to broken.
    pub const ALL: [Behaviour; 4] = [
        Behaviour::Learns,
        Behaviour::Plateau,
        Behaviour::Collapsed,
        Behaviour::Diverged,
    ];

    /// The label the report prints.
    pub fn label(self) -> &'static str {
        match self {
            Behaviour::Learns => "learns",
            Behaviour::Plateau => "plateau (loss barely moves)",
            Behaviour::Collapsed => "collapsed to chance",
            Behaviour::Diverged => "diverged",
        }
    }
}

/// The validation error of guessing among `classes` classes: 1 - 1/classes.
pub fn chance_error(classes: usize) -> f64 {
    1.0 - 1.0 / classes.max(1) as f64
}

/// How a run behaved. `diverged`: the worker ended it as diverged. The
/// rules, in order: diverged (flagged, a non-finite loss, or a last training
/// loss above [`EXPLODED`] · ln(classes)); collapsed (last validation error
/// within [`CHANCE_TOLERANCE`]/classes of [`chance_error`]); plateau (the
/// training loss fell by less than [`PLATEAU_DROP`] of its first value, over
/// at least two epochs); otherwise learns. None when there is nothing to
/// judge (no epoch, not diverged).
pub fn classify(curve: &[EpochStat], diverged: bool, classes: usize) -> Option<Behaviour> {
    let non_finite = curve
        .iter()
        .any(|e| !e.train_loss.is_finite() || !e.val_loss.is_finite());
    if diverged || non_finite {
        return Some(Behaviour::Diverged);
    }
    let (first, last) = (curve.first()?, curve.last()?);
    let chance_loss = (classes.max(2) as f64).ln();
    if last.train_loss > EXPLODED * chance_loss {
        return Some(Behaviour::Diverged);
    }
    if last.val_error >= chance_error(classes) - CHANCE_TOLERANCE / classes.max(1) as f64 {
        return Some(Behaviour::Collapsed);
    }
    if curve.len() > 1 && first.train_loss - last.train_loss < PLATEAU_DROP * first.train_loss {
        return Some(Behaviour::Plateau);
    }
    Some(Behaviour::Learns)
}

/// The fraction of `labels` that are diverged or collapsed (None when
/// empty): Scenario 5's "how much of the space is broken".
pub fn broken_share(labels: &[Behaviour]) -> Option<f64> {
    if labels.is_empty() {
        return None;
    }
    let broken = labels
        .iter()
        .filter(|b| matches!(b, Behaviour::Diverged | Behaviour::Collapsed))
        .count();
    Some(broken as f64 / labels.len() as f64)
}

/// SGD steps in one epoch of `train_size` examples in batches of `batch`
/// (the last batch may be short): ceil(train_size / batch).
pub fn steps_per_epoch(train_size: usize, batch: usize) -> usize {
    train_size.div_ceil(batch.max(1))
}

/// Mean training seconds per epoch read from a curve: the elapsed time at
/// its last epoch with a finite time, over that epoch's number.
pub fn time_per_epoch(curve: &[EpochStat]) -> Option<f64> {
    let e = curve
        .iter()
        .rev()
        .find(|e| e.elapsed_s.is_finite() && e.epoch > 0)?;
    Some(e.elapsed_s / f64::from(e.epoch))
}

/// One batch size's timing against the naive expectation that an epoch's
/// time scales with its number of steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub batch: usize,
    pub steps: usize,
    /// Measured seconds per epoch.
    pub seconds: f64,
    /// `seconds` over the largest batch's seconds.
    pub measured_ratio: f64,
    /// `steps` over the largest batch's steps: the naive ratio.
    pub naive_ratio: f64,
}

/// The timings of `(batch, steps, seconds per epoch)`, sorted by batch
/// size, each compared with the largest batch. Entries with a non-finite
/// or non-positive time are left out.
pub fn timings(items: &[(usize, usize, f64)]) -> Vec<Timing> {
    let mut items: Vec<_> = items
        .iter()
        .copied()
        .filter(|(_, _, s)| s.is_finite() && *s > 0.0)
        .collect();
    items.sort_by_key(|(b, _, _)| *b);
    let Some(&(_, ref_steps, ref_s)) = items.last() else {
        return Vec::new();
    };
    items
        .iter()
        .map(|&(batch, steps, seconds)| Timing {
            batch,
            steps,
            seconds,
            measured_ratio: seconds / ref_s,
            naive_ratio: steps as f64 / ref_steps.max(1) as f64,
        })
        .collect()
}

/// The last epoch at or before `epoch` (a budget of epochs).
pub fn at_epoch(curve: &[EpochStat], epoch: u32) -> Option<&EpochStat> {
    curve.iter().rev().find(|e| e.epoch <= epoch)
}

/// The last epoch whose training time is at most `budget_s` (a budget of
/// time, read from the curve against time); None when even the first epoch
/// took longer.
pub fn within_time(curve: &[EpochStat], budget_s: f64) -> Option<&EpochStat> {
    curve.iter().rev().find(|e| e.elapsed_s <= budget_s)
}

/// The overfitting gap of an epoch: training accuracy minus validation
/// accuracy, i.e. validation error minus training error. None when the
/// training error was not recorded (older workers) or is not finite.
pub fn overfitting_gap(e: &EpochStat) -> Option<f64> {
    let gap = e.val_error - e.train_error?;
    gap.is_finite().then_some(gap)
}

/// The key with the best value among `items` `(key, value)`, for each
/// group: e.g. the best learning rate for each momentum. `cmp` orders
/// values best first (a [`hps_common::Direction`]'s `cmp`); non-finite
/// values never win. Groups come out in the order they first appear.
pub fn best_per_group<G: PartialEq + Clone, K: Clone>(
    items: &[(G, K, f64)],
    cmp: impl Fn(f64, f64) -> Ordering,
) -> Vec<(G, K, f64)> {
    let mut out: Vec<(G, K, f64)> = Vec::new();
    for (g, k, v) in items.iter().filter(|(_, _, v)| v.is_finite()) {
        match out.iter_mut().find(|(og, _, _)| og == g) {
            Some(best) if cmp(*v, best.2) == Ordering::Less => {
                *best = (g.clone(), k.clone(), *v);
            }
            Some(_) => {}
            None => out.push((g.clone(), k.clone(), *v)),
        }
    }
    out
}

/// What the instruments say about a run (seeds 000 and 002's bugs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Flag {
    /// The learning rate still grows in the second half of training (a
    /// schedule whose factor is above 1).
    GrowingLr,
    /// The mean update/weight ratio is below [`TINY_UPDATE`]: the weights
    /// barely move (a learning rate far too small).
    TinyUpdates,
    /// The final validation error stays [`HIGH_ERROR_MARGIN`] or more above
    /// the study's best (e.g. rotated digits: invisible in the instruments).
    HighError,
}

impl Flag {
    /// The label the report prints.
    pub fn label(self) -> &'static str {
        match self {
            Flag::GrowingLr => "learning rate grows",
            Flag::TinyUpdates => "weights barely move (update/weight ratio tiny)",
            Flag::HighError => "validation error stays high",
        }
    }
}

/// The flags of a run, from its instruments and its final validation
/// error against `best_error`, the best final validation error of the study.
pub fn flags(curve: &[EpochStat], best_error: f64) -> Vec<Flag> {
    let mut out = Vec::new();
    let lrs: Vec<f64> = curve
        .iter()
        .filter_map(|e| e.instruments.as_ref().map(|i| i.lr))
        .filter(|v| v.is_finite())
        .collect();
    if lrs.len() > 1 {
        let mid = lrs[(lrs.len() - 1) / 2];
        if lrs[lrs.len() - 1] > mid * (1.0 + 1e-6) {
            out.push(Flag::GrowingLr);
        }
    }
    let ratios: Vec<f64> = curve
        .iter()
        .filter_map(|e| e.instruments.as_ref().map(|i| i.update_ratio))
        .filter(|v| v.is_finite())
        .collect();
    if !ratios.is_empty() && ratios.iter().sum::<f64>() / (ratios.len() as f64) < TINY_UPDATE {
        out.push(Flag::TinyUpdates);
    }
    let last = curve.last().map_or(f64::NAN, |e| e.val_error);
    if !last.is_finite() || last - best_error >= HIGH_ERROR_MARGIN {
        out.push(Flag::HighError);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hps_common::Instruments;

    /// A curve of (train loss, val error) per epoch, one second an epoch.
    fn curve(points: &[(f64, f64)]) -> Vec<EpochStat> {
        points
            .iter()
            .enumerate()
            .map(|(i, &(loss, err))| EpochStat {
                epoch: i as u32 + 1,
                elapsed_s: i as f64 + 1.0,
                train_loss: loss,
                val_loss: loss,
                val_error: err,
                train_error: None,
                instruments: None,
            })
            .collect()
    }

    fn with_instruments(points: &[(f64, f64)]) -> Vec<EpochStat> {
        curve(&points.iter().map(|_| (1.0, 0.2)).collect::<Vec<_>>())
            .into_iter()
            .zip(points)
            .map(|(mut e, &(lr, ratio))| {
                e.instruments = Some(Instruments {
                    lr,
                    grad_norm: 1.0,
                    weight_norm: 10.0,
                    update_ratio: ratio,
                    first_abs_weight: None,
                    first_abs_grad: None,
                    activations: vec![],
                });
                e
            })
            .collect()
    }

    #[test]
    fn a_run_that_learns_plateaus_collapses_or_diverges() {
        let learns = curve(&[(1.2, 0.4), (0.6, 0.2), (0.3, 0.1)]);
        assert_eq!(classify(&learns, false, 10), Some(Behaviour::Learns));
        // LR 0.001: the loss moves by 3 %.
        let slow = curve(&[(2.30, 0.70), (2.26, 0.62), (2.23, 0.55)]);
        assert_eq!(classify(&slow, false, 10), Some(Behaviour::Plateau));
        // LR 2: finite losses at ln 10, validation error at 0.9.
        let chance = curve(&[(2.5, 0.9), (2.303, 0.9), (2.302, 0.897)]);
        assert_eq!(classify(&chance, false, 10), Some(Behaviour::Collapsed));
        // Just better than the tolerance (0.85 for 10 classes).
        let near = curve(&[(2.5, 0.9), (2.0, 0.84)]);
        assert_eq!(classify(&near, false, 10), Some(Behaviour::Learns));
        let nan = curve(&[(1.0, 0.5), (f64::NAN, 0.9)]);
        assert_eq!(classify(&nan, false, 10), Some(Behaviour::Diverged));
        let exploded = curve(&[(2.0, 0.8), (40.0, 0.9)]);
        assert_eq!(classify(&exploded, false, 10), Some(Behaviour::Diverged));
        assert_eq!(classify(&[], true, 10), Some(Behaviour::Diverged));
        assert_eq!(classify(&[], false, 10), None);
        // One epoch cannot plateau.
        let one = curve(&[(2.2, 0.6)]);
        assert_eq!(classify(&one, false, 10), Some(Behaviour::Learns));
        assert!((chance_error(10) - 0.9).abs() < 1e-12);
    }

    #[test]
    fn the_broken_share_counts_diverged_and_collapsed() {
        use Behaviour::*;
        assert_eq!(
            broken_share(&[Learns, Diverged, Collapsed, Plateau]),
            Some(0.5)
        );
        assert_eq!(broken_share(&[]), None);
    }

    #[test]
    fn steps_and_times_against_the_naive_ratio() {
        assert_eq!(steps_per_epoch(5000, 20), 250);
        assert_eq!(steps_per_epoch(5000, 500), 10);
        assert_eq!(steps_per_epoch(5000, 64), 79);
        assert_eq!(steps_per_epoch(10, 0), 10);
        let c = curve(&[(1.0, 0.5), (0.5, 0.4)]);
        assert_eq!(time_per_epoch(&c), Some(1.0));
        assert_eq!(time_per_epoch(&[]), None);
        let t = timings(&[
            (100, 50, 2.0),
            (500, 10, 1.0),
            (20, 250, 6.0),
            (7, 1, f64::NAN),
        ]);
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].batch, 20);
        assert!((t[0].measured_ratio - 6.0).abs() < 1e-12);
        assert!((t[0].naive_ratio - 25.0).abs() < 1e-12);
        assert!((t[1].naive_ratio - 5.0).abs() < 1e-12);
        assert!((t[2].measured_ratio - 1.0).abs() < 1e-12);
        assert!(timings(&[]).is_empty());
    }

    #[test]
    fn budgets_read_the_curve() {
        let c = curve(&[(1.0, 0.5), (0.8, 0.4), (0.7, 0.3)]);
        assert_eq!(at_epoch(&c, 2).map(|e| e.epoch), Some(2));
        assert_eq!(at_epoch(&c, 50).map(|e| e.epoch), Some(3));
        assert_eq!(at_epoch(&c, 0), None);
        assert_eq!(within_time(&c, 2.5).map(|e| e.epoch), Some(2));
        assert_eq!(within_time(&c, 0.5), None);
    }

    #[test]
    fn the_gap_needs_the_training_error() {
        let mut e = curve(&[(1.0, 0.18)]).remove(0);
        assert_eq!(overfitting_gap(&e), None);
        e.train_error = Some(0.05);
        assert!((overfitting_gap(&e).unwrap() - 0.13).abs() < 1e-12);
        e.train_error = Some(f64::NAN);
        assert_eq!(overfitting_gap(&e), None);
    }

    #[test]
    fn best_per_group_picks_within_each_group() {
        let items = [
            ("m0", 0.1, 0.3),
            ("m0", 0.01, 0.2),
            ("m9", 0.1, f64::NAN),
            ("m9", 0.001, 0.25),
            ("m0", 0.001, 0.5),
        ];
        let best = best_per_group(&items, |a, b| a.total_cmp(&b));
        assert_eq!(best, vec![("m0", 0.01, 0.2), ("m9", 0.001, 0.25)]);
        let worst = best_per_group(&items, |a, b| b.total_cmp(&a));
        assert_eq!(worst[0], ("m0", 0.001, 0.5));
    }

    #[test]
    fn instruments_flag_the_seeded_bugs() {
        // A step schedule with gamma 2: the learning rate doubles.
        let growing = with_instruments(&[(0.01, 1e-3), (0.02, 1e-3), (0.04, 1e-3), (0.08, 1e-3)]);
        assert_eq!(flags(&growing, 0.2), vec![Flag::GrowingLr]);
        // A warm-up that ends early is not flagged.
        let warm = with_instruments(&[(0.01, 1e-3), (0.1, 1e-3), (0.1, 1e-3), (0.1, 1e-3)]);
        assert!(flags(&warm, 0.2).is_empty());
        let tiny = with_instruments(&[(1e-7, 1e-8), (1e-7, 2e-8)]);
        assert_eq!(flags(&tiny, 0.2), vec![Flag::TinyUpdates]);
        // The val error (0.2 here) against a best of 0.05.
        assert_eq!(flags(&warm, 0.05), vec![Flag::HighError]);
        assert_eq!(flags(&[], 0.05), vec![Flag::HighError]);
    }
}
