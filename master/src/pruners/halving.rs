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

use hps_common::PrunerSpec;

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
}
