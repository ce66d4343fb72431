//! Hyperparameter importance by functional ANOVA (fANOVA) on a random
//! forest: Hutter, Hoos & Leyton-Brown, "An Efficient Approach for
//! Assessing Hyperparameter Importance", ICML 2014; the same quantity as
//! Optuna's `FanovaImportanceEvaluator`, without its normalisation.
//!
//! Each tree of the forest is a piecewise-constant function on the unit
//! cube: its leaves' boxes partition [0,1]^d. For such a function the
//! marginal over all parameters but one, and its variance, are exact sums
//! over the leaves, so no sampling is needed.

use super::tree::{LeafBox, Tree, TreeParams};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use thiserror::Error;

/// Importance of one parameter over the forest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Importance {
    /// Mean over the trees of the fraction of the tree's variance explained
    /// by this parameter's main effect (in [0, 1]).
    pub mean: f64,
    /// Standard deviation of that fraction over the trees (divisor = number
    /// of trees): the bootstrap uncertainty, not a confidence interval.
    pub std: f64,
}

/// Why importance cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ImportanceError {
    /// Fewer than 4 trials with a finite objective and finite coordinates.
    #[error("importance needs at least 4 trials with finite values, got {got}")]
    TooFewPoints { got: usize },
    /// The points have no coordinate.
    #[error("importance needs at least one parameter")]
    NoParameters,
    /// A point's length differs from the first point's.
    #[error("trial {index} has {got} coordinates, expected {expected}")]
    RaggedPoint {
        index: usize,
        got: usize,
        expected: usize,
    },
    /// `x` and `y` differ in length.
    #[error("{points} points but {objectives} objective values")]
    LengthMismatch { points: usize, objectives: usize },
    /// `trees` was 0.
    #[error("importance needs at least one tree")]
    NoTrees,
}

/// The forest's trees: as Optuna's default (through scikit-learn) grows
/// them, all features are tried at every split; `min_samples_leaf` is 2
/// so that a leaf averages at least two draws.
const PARAMS: TreeParams = TreeParams {
    min_samples_leaf: 2,
    max_depth: 32,
};

/// x[i] is trial i's point in the unit cube (one coordinate per parameter,
/// already on the parameter's search scale, categoricals as index/(k-1));
/// y[i] its objective. Returns one entry per parameter: the fraction of the
/// forest's variance explained by that parameter's main effect, mean and
/// std over the trees (each tree is fitted on a bootstrap resample, so the
/// std is the bootstrap uncertainty). Errors (returns Err) when fewer than
/// 4 points or 0 parameters; constant y gives all zeros. Deterministic for
/// a seed.
///
/// Trials with a non-finite objective or coordinate are left out;
/// coordinates are clamped to [0, 1]. The fractions of one tree sum to at
/// most 1: the rest is the variance of interactions.
pub fn importance(
    x: &[Vec<f64>],
    y: &[f64],
    trees: usize,
    seed: u64,
) -> Result<Vec<Importance>, ImportanceError> {
    let (x, y) = clean(x, y)?;
    if trees == 0 {
        return Err(ImportanceError::NoTrees);
    }
    let d = x[0].len();
    let n = x.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut fractions = vec![Vec::with_capacity(trees); d];
    let mut sample = vec![0; n];
    for _ in 0..trees {
        for s in &mut sample {
            *s = rng.random_range(0..n);
        }
        let tree = Tree::fit(&x, &y, &sample, PARAMS);
        for (j, f) in main_effects(&tree.leaves(d), d).into_iter().enumerate() {
            fractions[j].push(f);
        }
    }
    Ok(fractions
        .iter()
        .map(|f| {
            let mean = f.iter().sum::<f64>() / f.len() as f64;
            let var = f.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / f.len() as f64;
            Importance {
                mean,
                std: var.sqrt(),
            }
        })
        .collect())
}

/// The trials with finite values, coordinates clamped to the unit cube.
#[allow(clippy::type_complexity)]
fn clean(x: &[Vec<f64>], y: &[f64]) -> Result<(Vec<Vec<f64>>, Vec<f64>), ImportanceError> {
    if x.len() != y.len() {
        return Err(ImportanceError::LengthMismatch {
            points: x.len(),
            objectives: y.len(),
        });
    }
    let d = x.first().map_or(0, Vec::len);
    if let Some((index, p)) = x.iter().enumerate().find(|(_, p)| p.len() != d) {
        return Err(ImportanceError::RaggedPoint {
            index,
            got: p.len(),
            expected: d,
        });
    }
    let (xs, ys): (Vec<Vec<f64>>, Vec<f64>) = x
        .iter()
        .zip(y)
        .filter(|(p, v)| v.is_finite() && p.iter().all(|c| c.is_finite()))
        .map(|(p, &v)| (p.iter().map(|c| c.clamp(0.0, 1.0)).collect(), v))
        .unzip();
    if xs.len() < 4 {
        return Err(ImportanceError::TooFewPoints { got: xs.len() });
    }
    if d == 0 {
        return Err(ImportanceError::NoParameters);
    }
    Ok((xs, ys))
}

/// For a piecewise-constant function given by boxes partitioning [0,1]^d,
/// the fraction of its variance (over the uniform distribution) that each
/// coordinate's main effect explains; zeros when the function is constant.
fn main_effects(leaves: &[LeafBox], d: usize) -> Vec<f64> {
    let volume = |l: &LeafBox| -> f64 { l.lo.iter().zip(&l.hi).map(|(a, b)| b - a).product() };
    let first = leaves.first().map_or(0.0, |l| l.value);
    if leaves.iter().all(|l| l.value == first) {
        return vec![0.0; d];
    }
    let mean: f64 = leaves.iter().map(|l| volume(l) * l.value).sum();
    let total: f64 = leaves
        .iter()
        .map(|l| volume(l) * (l.value - mean).powi(2))
        .sum();
    if total.is_nan() || total <= 0.0 {
        return vec![0.0; d];
    }
    (0..d)
        .map(|j| (main_effect_variance(leaves, j, mean) / total).clamp(0.0, 1.0))
        .collect()
}

/// Variance over x_j ~ U[0,1] of the marginal a_j(x_j) = Σ over the leaves
/// whose box contains x_j of value · (volume of the box in the other
/// coordinates). a_j is constant between consecutive cut points of
/// coordinate j; each leaf adds its share to the run of intervals it spans
/// (through a difference array, so O(L log L) for L leaves).
fn main_effect_variance(leaves: &[LeafBox], j: usize, mean: f64) -> f64 {
    let mut cuts: Vec<f64> = leaves.iter().flat_map(|l| [l.lo[j], l.hi[j]]).collect();
    cuts.sort_by(f64::total_cmp);
    cuts.dedup();
    let index = |v: f64| cuts.partition_point(|c| *c < v);
    let mut diff = vec![0.0; cuts.len()];
    for l in leaves {
        let other: f64 = (0..l.lo.len())
            .filter(|&i| i != j)
            .map(|i| l.hi[i] - l.lo[i])
            .product();
        diff[index(l.lo[j])] += l.value * other;
        diff[index(l.hi[j])] -= l.value * other;
    }
    let mut level = 0.0;
    let mut variance = 0.0;
    for (k, w) in cuts.windows(2).enumerate() {
        level += diff[k];
        variance += (w[1] - w[0]) * (level - mean).powi(2);
    }
    variance
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_points(n: usize, d: usize, seed: u64) -> Vec<Vec<f64>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| (0..d).map(|_| rng.random::<f64>()).collect())
            .collect()
    }

    fn leaf(lo: [f64; 2], hi: [f64; 2], value: f64) -> LeafBox {
        LeafBox {
            lo: lo.to_vec(),
            hi: hi.to_vec(),
            value,
        }
    }

    #[test]
    fn main_effects_of_hand_built_partitions() {
        // f = 1 on x0 > 0.5: all variance is x0's.
        let step = [
            leaf([0.0, 0.0], [0.5, 1.0], 0.0),
            leaf([0.5, 0.0], [1.0, 1.0], 1.0),
        ];
        assert_eq!(main_effects(&step, 2), vec![1.0, 0.0]);
        // XOR of the halves: pure interaction, no main effect.
        let xor = [
            leaf([0.0, 0.0], [0.5, 0.5], 0.0),
            leaf([0.0, 0.5], [0.5, 1.0], 1.0),
            leaf([0.5, 0.0], [1.0, 0.5], 1.0),
            leaf([0.5, 0.5], [1.0, 1.0], 0.0),
        ];
        assert_eq!(main_effects(&xor, 2), vec![0.0, 0.0]);
        // f = a + 2b with a, b in {0, 1} on halves of unequal width 0.25 /
        // 0.75: var(a) = 3/16, var(2b) = 4 * 3/16, so 0.2 and 0.8.
        let quarters = [
            leaf([0.0, 0.0], [0.25, 0.25], 0.0),
            leaf([0.0, 0.25], [0.25, 1.0], 2.0),
            leaf([0.25, 0.0], [1.0, 0.25], 1.0),
            leaf([0.25, 0.25], [1.0, 1.0], 3.0),
        ];
        let f = main_effects(&quarters, 2);
        assert!(
            (f[0] - 0.2).abs() < 1e-12 && (f[1] - 0.8).abs() < 1e-12,
            "{f:?}"
        );
    }

    #[test]
    fn one_active_parameter_dominates() {
        let x = random_points(200, 3, 1);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let y: Vec<f64> = x
            .iter()
            .map(|p| (6.0 * p[0]).sin() + 1e-3 * (rng.random::<f64>() - 0.5))
            .collect();
        let imp = importance(&x, &y, 32, 0).unwrap();
        assert!(imp[0].mean > 0.8, "{imp:?}");
        assert!(imp[1].mean < 0.1 && imp[2].mean < 0.1, "{imp:?}");
        assert!(imp.iter().all(|i| i.std >= 0.0 && i.std < 0.2));
    }

    #[test]
    fn ranks_follow_the_coefficients() {
        let x = random_points(200, 3, 5);
        let y: Vec<f64> = x.iter().map(|p| p[0] + 0.3 * p[1]).collect();
        let imp = importance(&x, &y, 32, 0).unwrap();
        assert!(
            imp[0].mean > imp[1].mean && imp[1].mean > imp[2].mean,
            "{imp:?}"
        );
    }

    #[test]
    fn additive_grid_matches_analytic_fractions() {
        // y = x0 + 2 x1 on a 30 x 30 grid of cell centres: var(x0) = 1/12,
        // var(2 x1) = 4/12, so the main effects explain 0.2 and 0.8. A tree
        // is a step approximation fitted to a bootstrap resample (about 63 %
        // distinct points), which blurs the fractions by a few hundredths.
        let x: Vec<Vec<f64>> = (0..900)
            .map(|i| {
                vec![
                    ((i % 30) as f64 + 0.5) / 30.0,
                    ((i / 30) as f64 + 0.5) / 30.0,
                ]
            })
            .collect();
        let y: Vec<f64> = x.iter().map(|p| p[0] + 2.0 * p[1]).collect();
        let imp = importance(&x, &y, 32, 3).unwrap();
        assert!((imp[0].mean - 0.2).abs() < 0.03, "{imp:?}");
        assert!((imp[1].mean - 0.8).abs() < 0.03, "{imp:?}");
    }

    #[test]
    fn constant_objective_is_all_zeros() {
        let x = random_points(20, 3, 9);
        let imp = importance(&x, &[1.5; 20], 8, 0).unwrap();
        assert_eq!(
            imp,
            vec![
                Importance {
                    mean: 0.0,
                    std: 0.0
                };
                3
            ]
        );
    }

    #[test]
    fn deterministic_for_a_seed() {
        let x = random_points(60, 2, 4);
        let y: Vec<f64> = x.iter().map(|p| p[0] * p[1]).collect();
        assert_eq!(importance(&x, &y, 8, 1), importance(&x, &y, 8, 1));
        assert_ne!(importance(&x, &y, 8, 1), importance(&x, &y, 8, 2));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let x = random_points(3, 2, 0);
        assert_eq!(
            importance(&x, &[1.0, 2.0, 3.0], 8, 0),
            Err(ImportanceError::TooFewPoints { got: 3 })
        );
        let x = random_points(5, 2, 0);
        let y = [1.0, f64::NAN, 2.0, 3.0, f64::INFINITY];
        assert_eq!(
            importance(&x, &y, 8, 0),
            Err(ImportanceError::TooFewPoints { got: 3 })
        );
        assert_eq!(
            importance(&x, &[1.0; 4], 8, 0),
            Err(ImportanceError::LengthMismatch {
                points: 5,
                objectives: 4
            })
        );
        assert_eq!(
            importance(&x, &[1.0; 5], 0, 0),
            Err(ImportanceError::NoTrees)
        );
        assert_eq!(
            importance(&vec![vec![]; 5], &[1.0; 5], 8, 0),
            Err(ImportanceError::NoParameters)
        );
        let mut ragged = x.clone();
        ragged[2].push(0.5);
        assert_eq!(
            importance(&ragged, &[1.0; 5], 8, 0),
            Err(ImportanceError::RaggedPoint {
                index: 2,
                got: 3,
                expected: 2
            })
        );
        assert_eq!(
            importance(&[], &[], 8, 0),
            Err(ImportanceError::TooFewPoints { got: 0 })
        );
    }

    #[test]
    fn out_of_cube_coordinates_are_clamped() {
        let mut x = random_points(40, 2, 8);
        x[0][0] = -3.0;
        x[1][1] = 7.0;
        let y: Vec<f64> = x.iter().map(|p| p[0].clamp(0.0, 1.0)).collect();
        let imp = importance(&x, &y, 8, 0).unwrap();
        assert!(imp[0].mean > 0.9, "{imp:?}");
    }
}
