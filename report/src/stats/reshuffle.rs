//! Simulated runs of random search by reshuffling one run's results
//! (Scenario 5 of the exercise: "simulate additional runs of random search
//! by reshuffling values of your actual run … plot the median").
//!
//! Random search draws its points independently, so any order of the
//! evaluated results is an equally likely run. [`reshuffle`] draws orders
//! (or enumerates all of them when there are few), follows the best value
//! seen so far along each, and summarises, at every evaluation count, the
//! distribution of that best value over the orders.

use hps_common::Direction;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Best objective after 1..=n evaluations, in the given order (NaN/inf
/// values are skipped: they never become the best; before any finite value
/// the entry is NaN).
pub fn best_so_far(values: &[f64], direction: Direction) -> Vec<f64> {
    let mut best = f64::NAN;
    values
        .iter()
        .map(|&v| {
            if v.is_finite() && (best.is_nan() || direction.better(v, best)) {
                best = v;
            }
            best
        })
        .collect()
}

/// Simulated runs and the band of the best-so-far over many of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Reshuffle {
    /// Best-so-far curves of random orders of the values, one per simulated
    /// run, each of length n (drawn independently of the band's sample).
    pub runs: Vec<Vec<f64>>,
    /// Median of the best-so-far after k = 1..=n evaluations (index k-1).
    pub median: Vec<f64>,
    /// 25 % quantile (in value order, not "better" order).
    pub q25: Vec<f64>,
    /// 75 % quantile (in value order).
    pub q75: Vec<f64>,
    /// True when the band is over all n! orders rather than a sample.
    pub exact: bool,
}

/// `runs` best-so-far curves of random permutations of `values`, and, at
/// each evaluation count k = 1..=n, the median and 25/75 % quantiles of the
/// best-so-far over `permutations` random permutations (over ALL n!
/// permutations, exact = true, when n! <= permutations). Deterministic for a
/// given seed (rand_chacha::ChaCha8Rng).
///
/// Quantiles are by linear interpolation between order statistics (numpy's
/// default, Hyndman & Fan "type 7"): with P sorted values x₀ ≤ … ≤ x_{P-1},
/// the q-quantile is x_⌊h⌋ + (h − ⌊h⌋)(x_{⌊h⌋+1} − x_⌊h⌋), h = (P − 1)q.
///
/// An order that has not met a finite value yet by evaluation k has no best
/// value: it counts as worse than every finite value (after them when
/// minimising, before them when maximising), and a quantile that would need
/// it is NaN. So the median starts once more than half of the orders have
/// seen a finite value. Permutations are of positions: equal values are
/// distinct items. Cost: O(permutations · n) time, O(n) memory besides the
/// output and the runs.
pub fn reshuffle(
    values: &[f64],
    direction: Direction,
    runs: usize,
    permutations: usize,
    seed: u64,
) -> Reshuffle {
    reshuffle_with(values, direction, runs, permutations, seed, true)
}

/// [`reshuffle`], with the exact enumeration allowed or not (the tests
/// check the sampled path on cases small enough to enumerate).
fn reshuffle_with(
    values: &[f64],
    direction: Direction,
    runs: usize,
    permutations: usize,
    seed: u64,
    allow_exact: bool,
) -> Reshuffle {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = values.len();
    let mut order: Vec<usize> = (0..n).collect();
    let mut permuted = vec![0.0; n];
    let runs = (0..runs)
        .map(|_| {
            order.shuffle(&mut rng);
            for (slot, &i) in permuted.iter_mut().zip(&order) {
                *slot = values[i];
            }
            best_so_far(&permuted, direction)
        })
        .collect();

    let ranks = Ranks::new(values);
    let mut records = Records::new(&ranks, direction);
    let exact = allow_exact && factorial_at_most(n, permutations).is_some();
    order = (0..n).collect();
    if exact {
        loop {
            records.add(&order);
            if !next_permutation(&mut order) {
                break;
            }
        }
    } else {
        for _ in 0..permutations {
            order.shuffle(&mut rng);
            records.add(&order);
        }
    }
    let (median, q25, q75) = records.band(n);
    Reshuffle {
        runs,
        median,
        q25,
        q75,
        exact,
    }
}

/// `n!` when it is at most `limit`, else None.
fn factorial_at_most(n: usize, limit: usize) -> Option<usize> {
    (1..=n)
        .try_fold(1usize, |acc, k| acc.checked_mul(k).filter(|&f| f <= limit))
        .filter(|&f| f <= limit)
}

/// Steps `order` to the next permutation in lexicographic order; false
/// (leaving it as is) when it was the last.
fn next_permutation(order: &mut [usize]) -> bool {
    let Some(i) = (1..order.len()).rev().find(|&i| order[i - 1] < order[i]) else {
        return false;
    };
    let pivot = i - 1;
    // A successor exists: order[i] > order[pivot], so `find` succeeds.
    let j = (i..order.len())
        .rev()
        .find(|&j| order[j] > order[pivot])
        .unwrap_or(i);
    order.swap(pivot, j);
    order[i..].reverse();
    true
}

/// The distinct finite values, ascending, and each input's index among them.
struct Ranks {
    levels: Vec<f64>,
    /// `NONE` for non-finite inputs.
    of: Vec<u32>,
}

const NONE: u32 = u32::MAX;

impl Ranks {
    fn new(values: &[f64]) -> Ranks {
        let mut levels: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        levels.sort_by(f64::total_cmp);
        levels.dedup();
        let of = values
            .iter()
            .map(|v| match v.is_finite() {
                true => levels
                    .binary_search_by(|l| l.total_cmp(v))
                    .map_or(NONE, |r| r as u32),
                false => NONE,
            })
            .collect();
        Ranks { levels, of }
    }
}

/// The record changes (new best) of every permutation seen, from which the
/// distribution of the best-so-far at each k is swept in one pass.
struct Records<'a> {
    ranks: &'a Ranks,
    direction: Direction,
    /// (k, previous best rank or NONE, new best rank).
    events: Vec<(u32, u32, u32)>,
    permutations: usize,
}

impl<'a> Records<'a> {
    fn new(ranks: &'a Ranks, direction: Direction) -> Records<'a> {
        Records {
            ranks,
            direction,
            events: Vec::new(),
            permutations: 0,
        }
    }

    fn add(&mut self, order: &[usize]) {
        self.permutations += 1;
        let mut best = NONE;
        for (k, &i) in order.iter().enumerate() {
            let r = self.ranks.of[i];
            let better = match self.direction {
                Direction::Minimize => r < best,
                Direction::Maximize => r != NONE && (best == NONE || r > best),
            };
            if r != NONE && better {
                self.events.push((k as u32, best, r));
                best = r;
            }
        }
    }

    /// Median, 25 % and 75 % quantiles at k = 1..=n.
    fn band(mut self, n: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        self.events.sort_unstable_by_key(|e| e.0);
        let mut counts = Fenwick::new(self.ranks.levels.len());
        let mut undefined = self.permutations;
        let mut next = 0;
        let mut out = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for k in 0..n {
            while let Some(&(at, old, new)) = self.events.get(next) {
                if at as usize != k {
                    break;
                }
                match old {
                    NONE => undefined -= 1,
                    old => counts.add(old as usize, -1),
                }
                counts.add(new as usize, 1);
                next += 1;
            }
            let dist = Distribution {
                levels: &self.ranks.levels,
                counts: &counts,
                undefined,
                total: self.permutations,
                direction: self.direction,
            };
            out.0.push(dist.quantile(0.5));
            out.1.push(dist.quantile(0.25));
            out.2.push(dist.quantile(0.75));
        }
        out
    }
}

/// The best-so-far values of all permutations at one k.
struct Distribution<'a> {
    levels: &'a [f64],
    counts: &'a Fenwick,
    undefined: usize,
    total: usize,
    direction: Direction,
}

impl Distribution<'_> {
    /// The `i`-th smallest (0-based) in value order; None for an order with
    /// no best yet.
    fn order_statistic(&self, i: usize) -> Option<f64> {
        let rank = match self.direction {
            Direction::Minimize => (i < self.total - self.undefined).then_some(i)?,
            Direction::Maximize => i.checked_sub(self.undefined)?,
        };
        self.levels.get(self.counts.select(rank)).copied()
    }

    /// Type-7 quantile; NaN when it needs an order without a best.
    fn quantile(&self, q: f64) -> f64 {
        if self.total == 0 {
            return f64::NAN;
        }
        let h = (self.total - 1) as f64 * q;
        let lo = h.floor() as usize;
        let frac = h - lo as f64;
        let Some(a) = self.order_statistic(lo) else {
            return f64::NAN;
        };
        if frac == 0.0 {
            return a;
        }
        match self.order_statistic(lo + 1) {
            Some(b) => a + frac * (b - a),
            None => f64::NAN,
        }
    }
}

/// Counts per rank with prefix sums and order statistics in O(log m).
struct Fenwick {
    tree: Vec<i64>,
}

impl Fenwick {
    fn new(m: usize) -> Fenwick {
        Fenwick {
            tree: vec![0; m + 1],
        }
    }

    fn add(&mut self, index: usize, delta: i64) {
        let mut i = index + 1;
        while i < self.tree.len() {
            self.tree[i] += delta;
            i += i & i.wrapping_neg();
        }
    }

    /// The smallest index whose prefix count exceeds `k` (the k-th item,
    /// 0-based); `m` when there are at most `k` items.
    fn select(&self, k: usize) -> usize {
        let m = self.tree.len() - 1;
        let mut remaining = k as i64;
        let mut pos = 0;
        let mut step = if m == 0 { 0 } else { 1 << m.ilog2() };
        while step > 0 {
            let next = pos + step;
            if next <= m && self.tree[next] <= remaining {
                pos = next;
                remaining -= self.tree[next];
            }
            step >>= 1;
        }
        pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// All orders of `values`, by recursion (independent of the code above).
    fn all_orders(values: &[f64]) -> Vec<Vec<f64>> {
        if values.is_empty() {
            return vec![vec![]];
        }
        let mut out = Vec::new();
        for i in 0..values.len() {
            let mut rest = values.to_vec();
            let first = rest.remove(i);
            for mut tail in all_orders(&rest) {
                tail.insert(0, first);
                out.push(tail);
            }
        }
        out
    }

    /// Type-7 quantile of a sample where "no best yet" is ±inf (the worst);
    /// a result that needs one of them is NaN.
    fn brute_quantile(sorted: &[f64], q: f64) -> f64 {
        let h = (sorted.len() - 1) as f64 * q;
        let lo = h.floor() as usize;
        let frac = h - lo as f64;
        let v = if frac == 0.0 {
            sorted[lo]
        } else {
            sorted[lo] + frac * (sorted[lo + 1] - sorted[lo])
        };
        if v.is_finite() {
            v
        } else {
            f64::NAN
        }
    }

    /// Per k, the sorted best-so-far over all orders (no best = the worst).
    fn brute_distributions(values: &[f64], direction: Direction) -> Vec<Vec<f64>> {
        let worst = match direction {
            Direction::Minimize => f64::INFINITY,
            Direction::Maximize => f64::NEG_INFINITY,
        };
        let mut per_k = vec![Vec::new(); values.len()];
        for order in all_orders(values) {
            let mut best = worst;
            for (k, v) in order.iter().enumerate() {
                if v.is_finite() && direction.better(*v, best) {
                    best = *v;
                }
                per_k[k].push(best);
            }
        }
        for d in &mut per_k {
            d.sort_by(f64::total_cmp);
        }
        per_k
    }

    fn same(a: f64, b: f64, tol: f64) -> bool {
        (a.is_nan() && b.is_nan()) || (a - b).abs() <= tol
    }

    #[test]
    fn best_so_far_skips_non_finite() {
        let v = [f64::NAN, 3.0, f64::INFINITY, 1.0, 2.0, f64::NEG_INFINITY];
        let min = best_so_far(&v, Direction::Minimize);
        assert!(min[0].is_nan());
        assert_eq!(&min[1..], &[3.0, 3.0, 1.0, 1.0, 1.0]);
        let max = best_so_far(&v, Direction::Maximize);
        assert_eq!(&max[1..], &[3.0, 3.0, 3.0, 3.0, 3.0]);
        assert!(best_so_far(&[], Direction::Minimize).is_empty());
    }

    #[test]
    fn exact_band_matches_brute_force() {
        for direction in [Direction::Minimize, Direction::Maximize] {
            let values = [0.3, f64::NAN, 0.1, 0.7, 0.3];
            let r = reshuffle(&values, direction, 3, 1000, 7);
            assert!(r.exact);
            let brute = brute_distributions(&values, direction);
            for (k, dist) in brute.iter().enumerate() {
                for (q, got) in [(0.5, r.median[k]), (0.25, r.q25[k]), (0.75, r.q75[k])] {
                    let want = brute_quantile(dist, q);
                    assert!(
                        same(got, want, 1e-12),
                        "{direction:?} k={k} q={q}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn sampled_band_is_within_sampling_error_of_brute_force() {
        // 6! = 720 orders, enumerated by the brute force; the code under
        // test is made to sample 20000 of them instead. The sample quantile's CDF level has std sqrt(q(1-q)/P) <= 0.0036
        // at P = 20000, so it lies between the exact quantiles at q ± 0.015
        // (more than 4 std) except with probability < 1e-4 per check.
        let values = [5.0, 1.0, 4.0, 2.0, 6.0, 3.0];
        for direction in [Direction::Minimize, Direction::Maximize] {
            let r = reshuffle_with(&values, direction, 0, 20_000, 11, false);
            assert!(!r.exact);
            let brute = brute_distributions(&values, direction);
            for (k, dist) in brute.iter().enumerate() {
                for (q, got) in [(0.5, r.median[k]), (0.25, r.q25[k]), (0.75, r.q75[k])] {
                    let lo = brute_quantile(dist, q - 0.015);
                    let hi = brute_quantile(dist, q + 0.015);
                    assert!(
                        lo <= got && got <= hi,
                        "{direction:?} k={k} q={q}: {got} not in [{lo}, {hi}]"
                    );
                }
            }
        }
    }

    #[test]
    fn runs_are_permutations_and_deterministic() {
        let values: Vec<f64> = (0..30).map(|i| ((i * 7) % 30) as f64).collect();
        let a = reshuffle(&values, Direction::Minimize, 20, 1000, 3);
        let b = reshuffle(&values, Direction::Minimize, 20, 1000, 3);
        assert_eq!(a, b);
        assert!(!a.exact);
        assert_eq!(a.runs.len(), 20);
        for run in &a.runs {
            assert_eq!(run.len(), 30);
            assert_eq!(run[29], 0.0);
            assert!(run.windows(2).all(|w| w[1] <= w[0]));
        }
        assert_eq!(a.median.len(), 30);
        assert!(a.median.windows(2).all(|w| w[1] <= w[0]));
        assert!((0..30).all(|k| a.q25[k] <= a.median[k] && a.median[k] <= a.q75[k]));
        assert_ne!(
            a.runs,
            reshuffle(&values, Direction::Minimize, 20, 1000, 4).runs
        );
    }

    #[test]
    fn maximize_band_rises() {
        let values: Vec<f64> = (0..50).map(|i| (i as f64 * 0.37).sin()).collect();
        let r = reshuffle(&values, Direction::Maximize, 1, 500, 1);
        assert!(r.median.windows(2).all(|w| w[1] >= w[0]));
        let top = values.iter().copied().fold(f64::MIN, f64::max);
        assert_eq!(r.median[49], top);
        assert_eq!(r.runs[0][49], top);
    }

    #[test]
    fn empty_and_all_nan_inputs() {
        let r = reshuffle(&[], Direction::Minimize, 2, 1000, 0);
        assert!(r.median.is_empty() && r.q25.is_empty() && r.q75.is_empty());
        assert!(r.runs.iter().all(Vec::is_empty));

        let nan = [f64::NAN; 8];
        let r = reshuffle(&nan, Direction::Minimize, 2, 100, 0);
        assert_eq!(r.median.len(), 8);
        assert!(r
            .median
            .iter()
            .chain(&r.q25)
            .chain(&r.q75)
            .all(|v| v.is_nan()));
        assert!(r.runs.iter().flatten().all(|v| v.is_nan()));

        let r = reshuffle(&[1.0, 2.0], Direction::Minimize, 0, 0, 0);
        assert!(!r.exact && r.median.iter().all(|v| v.is_nan()));
    }

    #[test]
    fn helpers() {
        assert_eq!(factorial_at_most(0, 1), Some(1));
        assert_eq!(factorial_at_most(5, 120), Some(120));
        assert_eq!(factorial_at_most(5, 119), None);
        assert_eq!(factorial_at_most(40, usize::MAX), None);
        let mut p = vec![0, 1, 2];
        let mut count = 1;
        while next_permutation(&mut p) {
            count += 1;
        }
        assert_eq!((count, p), (6, vec![2, 1, 0]));
        let mut f = Fenwick::new(4);
        f.add(1, 2);
        f.add(3, 1);
        assert_eq!(
            [f.select(0), f.select(1), f.select(2), f.select(3)],
            [1, 1, 3, 4]
        );
    }
}
