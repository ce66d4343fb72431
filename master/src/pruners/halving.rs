//! Successive halving and Hyperband in sync mode (Jamieson & Talwalkar
//! 2016; Li et al., "Hyperband", 2017).
//!
//! Each sync batch is one *bracket*: `size` settings start together with
//! `until_epoch` = the first rung. A trial that reaches its `until_epoch`
//! pauses (its checkpoint stays). When no trial of the batch is pending or
//! running any more, the best `max(1, size / eta^(k+1))` of those paused at
//! rung `k` are promoted — their `until_epoch` is raised to the next rung
//! and they resume from their checkpoints — and the others are pruned.
//! Trials promoted to the last rung (`budget.epochs`) train to the end.
//!
//! Rungs are anchored at the full budget `R`: `floor(R / eta^(s-i))` for
//! `i = 0..=s`, so the last rung is always `R` even when `R / min_epochs`
//! is not a power of `eta`.

use hps_common::{Direction, Progress, PrunerSpec};

use super::{rank_key, Curve, Shown};

/// One successive-halving bracket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bracket {
    /// Settings started in the bracket (the sync batch).
    pub size: u32,
    /// Epochs at which the bracket's trials pause, ascending; the last is
    /// the full budget.
    pub rungs: Vec<u32>,
    pub eta: u32,
}

impl Bracket {
    /// Trials that go on from rung `k` (0-based) to rung `k + 1`.
    pub fn keep_after(&self, k: usize) -> usize {
        let div = (self.eta as u64).saturating_pow(k as u32 + 1);
        ((self.size as u64 / div) as usize).max(1)
    }

    /// The pause point after rung `k`: the next rung, or `None` for the
    /// last one (train to the end).
    pub fn until_after(&self, k: usize) -> Option<u32> {
        let next = *self.rungs.get(k + 1)?;
        (next < *self.rungs.last()?).then_some(next)
    }

    /// The first pause point, `None` when the bracket has one rung.
    pub fn first_until(&self) -> Option<u32> {
        (self.rungs.len() > 1).then(|| self.rungs[0])
    }
}

/// `s + 1` rungs ending at `epochs`: `floor(epochs / eta^(s-i))`, deduplicated.
fn rungs_anchored(epochs: u32, eta: u32, s: u32) -> Vec<u32> {
    let mut out: Vec<u32> = (0..=s)
        .map(|i| {
            let div = (eta as u64).saturating_pow(s - i);
            ((epochs as u64 / div) as u32).max(1)
        })
        .collect();
    out.dedup();
    out
}

/// The number of halvings that fit between `min_epochs` and `epochs`.
fn s_max(min_epochs: u32, eta: u32, epochs: u32) -> u32 {
    let mut s = 0;
    let mut r = min_epochs.max(1) as u64 * eta as u64;
    while r <= epochs as u64 {
        s += 1;
        r *= eta as u64;
    }
    s
}

/// The brackets of a pausing pruner, in the order batches cycle through
/// them: one bracket of `batch` settings for successive halving; for
/// Hyperband, `s_max + 1` brackets from the most aggressive (many
/// settings, first rung `min_epochs`) to plain full training.
pub fn brackets(spec: &PrunerSpec, batch: u32, epochs: u32) -> Vec<Bracket> {
    match *spec {
        PrunerSpec::SuccessiveHalving { min_epochs, eta } => {
            let s = s_max(min_epochs, eta, epochs);
            vec![Bracket {
                size: batch.max(1),
                rungs: rungs_anchored(epochs, eta, s),
                eta,
            }]
        }
        PrunerSpec::Hyperband { min_epochs, eta } => {
            let sm = s_max(min_epochs, eta, epochs);
            (0..=sm)
                .rev()
                .map(|s| {
                    // n = ceil((s_max + 1) / (s + 1) * eta^s)
                    let num = (sm as u64 + 1) * (eta as u64).pow(s);
                    let n = num.div_ceil(s as u64 + 1) as u32;
                    Bracket {
                        size: n,
                        rungs: rungs_anchored(epochs, eta, s),
                        eta,
                    }
                })
                .collect()
        }
        PrunerSpec::Asha { .. } | PrunerSpec::Median { .. } => Vec::new(),
    }
}

/// The bracket of batch `b` (batches cycle through the brackets).
pub fn bracket_of(brackets: &[Bracket], b: u64) -> &Bracket {
    &brackets[(b % brackets.len() as u64) as usize]
}

/// Which batch trial `index` belongs to, and the index the batch starts
/// at, when batches have the bracket sizes in turn.
pub fn batch_of(brackets: &[Bracket], index: u64) -> (u64, u64) {
    let cycle: u64 = brackets.iter().map(|b| b.size as u64).sum();
    let full = index / cycle;
    let mut start = full * cycle;
    let first = full * brackets.len() as u64;
    for (b, br) in (first..).zip(brackets) {
        if index < start + br.size as u64 {
            return (b, start);
        }
        start += br.size as u64;
    }
    unreachable!("index within a cycle")
}

/// A trial of a batch found in `paused/`, as the policy needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct PausedTrial {
    pub id: String,
    /// The `until_epoch` of its paused setting.
    pub until_epoch: Option<u32>,
    /// The last epoch in its progress file (0 without one).
    pub done: u32,
    /// Its loss at `done` (`+inf` when it has none there).
    pub loss: f64,
}

impl PausedTrial {
    /// Read off the paused setting's `until_epoch` and the progress file.
    pub fn new(
        id: &str,
        until_epoch: Option<u32>,
        progress: Option<&Progress>,
        direction: Direction,
    ) -> PausedTrial {
        let done = progress
            .and_then(|p| p.points.last().map(|q| q.step))
            .unwrap_or(0);
        let loss = progress
            .map(|p| Curve::from_points(&p.points, direction, false))
            .and_then(|c| c.values.get(&done).copied())
            .unwrap_or(f64::INFINITY);
        PausedTrial {
            id: id.to_string(),
            until_epoch,
            done,
            loss,
        }
    }
}

/// What the master does with a paused trial of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum BracketAction {
    /// Promoted before a crash but not yet renamed into `pending/`: rename
    /// its paused setting as it is.
    Resume { id: String },
    /// Record `until_epoch` in its setting and move it to `pending/`
    /// (`None`: train to the end). `why` says how it ranked.
    Promote {
        id: String,
        until_epoch: Option<u32>,
        why: String,
    },
    /// Write a `pruned` result with `reason` and remove its paused file and
    /// checkpoint.
    Prune { id: String, reason: String },
}

/// The successive-halving decision for batch `batch` of `bracket`, once no
/// trial of the batch is pending or running. `paused` holds its paused
/// trials, in trial-id order; `unreadable` says a paused file of the batch
/// could not be read (it went to quarantine and the orphan rule
/// re-publishes it), so the batch is not complete yet.
///
/// Trials promoted before a crash are resumed first; while any is, nobody is
/// ranked. Otherwise those at the lowest rung are ranked by their loss there
/// (ties by trial id) and the best `keep_after(k)` with a finite loss are
/// promoted; the others are pruned.
pub fn decide_batch(
    bracket: &Bracket,
    batch: u64,
    paused: &[PausedTrial],
    unreadable: bool,
    shown: &Shown,
    pruner: &str,
) -> Vec<BracketAction> {
    let resumes: Vec<BracketAction> = paused
        .iter()
        .filter(|t| t.until_epoch.is_some_and(|u| t.done < u))
        .map(|t| BracketAction::Resume { id: t.id.clone() })
        .collect();
    if unreadable || !resumes.is_empty() || paused.is_empty() {
        return resumes;
    }
    let rung_of = |t: &PausedTrial| {
        bracket
            .rungs
            .iter()
            .position(|r| *r >= t.done)
            .unwrap_or(bracket.rungs.len() - 1)
    };
    let k = paused.iter().map(rung_of).min().unwrap_or(0);
    let mut cands: Vec<&PausedTrial> = paused.iter().filter(|t| rung_of(t) == k).collect();
    cands.sort_by(|a, b| {
        rank_key(a.loss)
            .total_cmp(&rank_key(b.loss))
            .then(a.id.cmp(&b.id))
    });
    let keep = bracket.keep_after(k);
    let n = cands.len();
    let rung = bracket.rungs[k];
    cands
        .into_iter()
        .enumerate()
        .map(|(rank, t)| {
            let what = format!(
                "{} at epoch {rung} ranks {} of {n} in batch {batch}; the best {keep} go on",
                shown.value(t.loss),
                rank + 1
            );
            if rank < keep && t.loss.is_finite() {
                BracketAction::Promote {
                    id: t.id.clone(),
                    until_epoch: bracket.until_after(k),
                    why: what,
                }
            } else {
                BracketAction::Prune {
                    id: t.id.clone(),
                    reason: format!("pruned by {pruner}: {what}"),
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successive_halving_bracket() {
        let spec = PrunerSpec::SuccessiveHalving {
            min_epochs: 1,
            eta: 3,
        };
        let b = &brackets(&spec, 9, 9)[0];
        assert_eq!(b.rungs, vec![1, 3, 9]);
        assert_eq!((b.keep_after(0), b.keep_after(1)), (3, 1));
        assert_eq!(b.first_until(), Some(1));
        assert_eq!(b.until_after(0), Some(3));
        assert_eq!(b.until_after(1), None);
        // Budget not a power of eta: the last rung is still the budget.
        let b = &brackets(&spec, 4, 10)[0];
        assert_eq!(b.rungs, vec![1, 3, 10]);
        assert_eq!((b.keep_after(0), b.keep_after(1)), (1, 1));
        let b = &brackets(
            &PrunerSpec::SuccessiveHalving {
                min_epochs: 1,
                eta: 2,
            },
            4,
            4,
        )[0];
        assert_eq!(b.rungs, vec![1, 2, 4]);
        assert_eq!((b.keep_after(0), b.keep_after(1)), (2, 1));
    }

    #[test]
    fn hyperband_brackets_match_the_paper() {
        // R = 81, eta = 3 (Li et al. 2017, table 1): n = 81, 34, 15, 8, 5.
        let spec = PrunerSpec::Hyperband {
            min_epochs: 1,
            eta: 3,
        };
        let bs = brackets(&spec, 2, 81);
        let sizes: Vec<u32> = bs.iter().map(|b| b.size).collect();
        assert_eq!(sizes, vec![81, 34, 15, 8, 5]);
        assert_eq!(bs[0].rungs, vec![1, 3, 9, 27, 81]);
        assert_eq!(bs[1].rungs, vec![3, 9, 27, 81]);
        assert_eq!(bs[4].rungs, vec![81]);
        assert_eq!(bs[4].first_until(), None);
        assert_eq!(bs[1].keep_after(0), 11);
    }

    #[test]
    fn batches_cycle_through_brackets() {
        let spec = PrunerSpec::Hyperband {
            min_epochs: 1,
            eta: 3,
        };
        let bs = brackets(&spec, 2, 9); // sizes 9, 5, 3
        assert_eq!(bs.iter().map(|b| b.size).collect::<Vec<_>>(), vec![9, 5, 3]);
        assert_eq!(batch_of(&bs, 0), (0, 0));
        assert_eq!(batch_of(&bs, 8), (0, 0));
        assert_eq!(batch_of(&bs, 9), (1, 9));
        assert_eq!(batch_of(&bs, 14), (2, 14));
        assert_eq!(batch_of(&bs, 17), (3, 17));
        assert_eq!(bracket_of(&bs, 3).size, 9);
    }

    fn shown() -> Shown {
        Shown {
            metric: "val_loss".into(),
            direction: Direction::Minimize,
        }
    }

    fn paused(id: &str, until: Option<u32>, done: u32, loss: f64) -> PausedTrial {
        PausedTrial {
            id: id.into(),
            until_epoch: until,
            done,
            loss,
        }
    }

    fn sh(batch: u32, epochs: u32) -> Bracket {
        let spec = PrunerSpec::SuccessiveHalving {
            min_epochs: 1,
            eta: 2,
        };
        brackets(&spec, batch, epochs).remove(0)
    }

    fn ids(actions: &[BracketAction]) -> Vec<(&'static str, &str)> {
        actions
            .iter()
            .map(|a| match a {
                BracketAction::Resume { id } => ("resume", id.as_str()),
                BracketAction::Promote { id, .. } => ("promote", id.as_str()),
                BracketAction::Prune { id, .. } => ("prune", id.as_str()),
            })
            .collect()
    }

    #[test]
    fn the_best_half_is_promoted_to_the_next_rung_and_the_rest_pruned() {
        // 4 settings, rungs 1, 2, 4: after epoch 1 the best 2 go on to 2.
        let b = sh(4, 4);
        let trials = [
            paused("t0", Some(1), 1, 0.9),
            paused("t1", Some(1), 1, 0.2),
            paused("t2", Some(1), 1, 0.5),
            paused("t3", Some(1), 1, 0.2),
        ];
        let a = decide_batch(&b, 0, &trials, false, &shown(), "successive_halving");
        assert_eq!(
            ids(&a),
            [
                ("promote", "t1"),
                ("promote", "t3"),
                ("prune", "t2"),
                ("prune", "t0")
            ],
            "ranked by loss, ties by trial id"
        );
        assert_eq!(
            a[0],
            BracketAction::Promote {
                id: "t1".into(),
                until_epoch: Some(2),
                why: "val_loss 0.200000 at epoch 1 ranks 1 of 4 in batch 0; the best 2 go on"
                    .into()
            }
        );
        assert_eq!(
            a[3],
            BracketAction::Prune {
                id: "t0".into(),
                reason: "pruned by successive_halving: val_loss 0.900000 at epoch 1 ranks 4 \
                         of 4 in batch 0; the best 2 go on"
                    .into()
            }
        );
    }

    #[test]
    fn the_last_promotion_trains_to_the_end() {
        let b = sh(4, 4);
        let trials = [paused("t1", Some(2), 2, 0.3), paused("t3", Some(2), 2, 0.1)];
        let a = decide_batch(&b, 0, &trials, false, &shown(), "successive_halving");
        assert!(matches!(
            &a[0],
            BracketAction::Promote { id, until_epoch: None, .. } if id == "t3"
        ));
        assert_eq!(ids(&a)[1], ("prune", "t1"));
    }

    #[test]
    fn a_trial_without_a_finite_loss_is_never_promoted() {
        let b = sh(4, 4);
        let trials = [
            paused("t0", Some(1), 1, f64::NAN),
            paused("t1", Some(1), 1, f64::INFINITY),
            paused("t2", Some(2), 2, 0.1),
        ];
        let a = decide_batch(&b, 0, &trials, false, &shown(), "hyperband");
        assert_eq!(
            ids(&a),
            [("prune", "t0"), ("prune", "t1")],
            "only the lowest rung is ranked; every loss is non-finite"
        );
    }

    #[test]
    fn a_promotion_interrupted_by_a_crash_is_resumed_before_any_ranking() {
        // t1 was promoted to epoch 2 (setting rewritten) but the master died
        // before renaming it into pending/: its progress is behind.
        let b = sh(4, 4);
        let trials = [
            paused("t0", Some(1), 1, 0.9),
            paused("t1", Some(2), 1, 0.2),
            paused("t2", Some(1), 1, 0.5),
        ];
        let a = decide_batch(&b, 0, &trials, false, &shown(), "successive_halving");
        assert_eq!(a, [BracketAction::Resume { id: "t1".into() }]);
    }

    #[test]
    fn an_unreadable_paused_file_holds_the_batch_back() {
        let b = sh(4, 4);
        let trials = [paused("t0", Some(1), 1, 0.9)];
        assert!(decide_batch(&b, 0, &trials, true, &shown(), "successive_halving").is_empty());
        assert!(decide_batch(&b, 0, &[], false, &shown(), "successive_halving").is_empty());
    }

    #[test]
    fn losses_come_from_the_progress_file_in_the_users_sign() {
        let progress = Progress {
            format_version: 1,
            trial_id: "t0".into(),
            worker: "w".into(),
            attempt: 1,
            points: vec![
                hps_common::ProgressPoint {
                    step: 1,
                    value: 0.7,
                },
                hps_common::ProgressPoint {
                    step: 2,
                    value: 0.8,
                },
            ],
            curve: vec![],
            reports: vec![],
            updated_at_unix: 0.0,
        };
        let t = PausedTrial::new("t0", Some(2), Some(&progress), Direction::Maximize);
        assert_eq!((t.done, t.loss), (2, -0.8));
        let t = PausedTrial::new("t0", Some(2), None, Direction::Maximize);
        assert_eq!((t.done, t.loss), (0, f64::INFINITY));
    }
}
