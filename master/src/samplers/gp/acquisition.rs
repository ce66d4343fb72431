//! Log expected improvement, and its maximisation over the unit cube.
//!
//! For a loss (lower is better) with incumbent `f*` and posterior `N(m, v)`,
//! `EI = sigma h(z)` with `z = (f* - m) / sigma` and `h(z) = phi(z) + z Phi(z)`.
//! `ln h` is computed as in Ament et al. (2023), "Unexpected improvements
//! to expected improvement", so that it stays finite and accurate far into
//! the tail (`z` of -40 and below), where a naive EI is exactly zero and
//! gives the optimiser nothing to climb.
//!
//! Maximisation: a scrambled Sobol sweep of the cube, then projected L-BFGS
//! from the best few sweep points and from near the incumbent, over the numeric
//! coordinates (categoricals are held), then, at each refined point, every
//! other choice of each categorical in turn.

use std::f64::consts::{PI, SQRT_2};

use super::fit::Posterior;
use super::optim;
use crate::samplers::quasi::Sobol;
use crate::samplers::unit::{norm_cdf, Kind};

/// ln(2 pi) / 2 and ln(pi / 2) / 2.
const C1: f64 = 0.918_938_533_204_672_8;
const C2: f64 = 0.225_791_352_644_727_4;

/// `exp(x^2) erfc(x)` for `x >= 0`, accurate for large `x`.
pub fn erfcx(x: f64) -> f64 {
    if x < 25.0 {
        (x * x).exp() * libm::erfc(x)
    } else {
        let t = 1.0 / (x * x);
        let series = 1.0 - t * (0.5 - t * (0.75 - t * (1.875 - t * 6.5625)));
        series / (x * PI.sqrt())
    }
}

/// `ln(1 - exp(a))` for `a < 0`.
fn log1mexp(a: f64) -> f64 {
    if a > -std::f64::consts::LN_2 {
        (-a.exp_m1()).ln()
    } else {
        (-a.exp()).ln_1p()
    }
}

/// `ln h(z)`, `h(z) = phi(z) + z Phi(z)`.
pub fn log_h(z: f64) -> f64 {
    if z > -1.0 {
        let phi = (-0.5 * z * z - C1).exp();
        (phi + z * norm_cdf(z)).ln()
    } else if z > -1e8 {
        let a = (erfcx(-z / SQRT_2) * -z).ln() + C2;
        -0.5 * z * z - C1 + log1mexp(a)
    } else {
        -0.5 * z * z - C1 - 2.0 * (-z).ln()
    }
}

/// `ln Phi(z)`.
fn log_cdf(z: f64) -> f64 {
    if z > -1.0 {
        norm_cdf(z).ln()
    } else {
        -0.5 * z * z + (0.5 * erfcx(-z / SQRT_2)).ln()
    }
}

/// Log EI of a posterior `(mean, var)` against incumbent `best`.
pub fn log_ei(mean: f64, var: f64, best: f64) -> f64 {
    let sigma = var.sqrt();
    sigma.ln() + log_h((best - mean) / sigma)
}

/// Log EI at `x` and its gradient in `x`.
fn log_ei_grad(p: &Posterior, best: f64, x: &[f64], grad: &mut [f64]) -> f64 {
    let (mean, var, dmean, dvar) = p.predict_grad(x);
    let sigma = var.sqrt();
    let z = (best - mean) / sigma;
    let lh = log_h(z);
    // d ln h / dz = Phi(z) / h(z); dz/dx = -(dmean + z dsigma) / sigma.
    let ratio = (log_cdf(z) - lh).exp();
    for j in 0..x.len() {
        let dsigma = dvar[j] / (2.0 * sigma);
        grad[j] = dsigma / sigma - ratio * (dmean[j] + z * dsigma) / sigma;
    }
    sigma.ln() + lh
}

/// How hard to search.
#[derive(Debug, Clone, Copy)]
pub struct Effort {
    pub sweep: usize,
    pub starts: usize,
    pub iters: usize,
}

/// Candidate points, best log EI first: refined points, then the rest of
/// the sweep. `incumbent` is the best observed point; the sweep and the
/// step away from the incumbent are seeded by `sobol_seed`.
pub fn candidates(
    p: &Posterior,
    best: f64,
    incumbent: &[f64],
    kinds: &[Kind],
    sobol_seed: u64,
    effort: Effort,
) -> Vec<(f64, Vec<f64>)> {
    let d = kinds.len();
    let sobol = Sobol::new(d, true, sobol_seed);
    let sweep: Vec<Vec<f64>> = (0..effort.sweep as u64).map(|i| sobol.point(i)).collect();
    let mut scored: Vec<(f64, Vec<f64>)> = p
        .predict(&sweep)
        .into_iter()
        .zip(sweep)
        .map(|((m, v), x)| (log_ei(m, v, best), x))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    // Near the incumbent, a small step seeded like the sweep: a proposal
    // refined from the incumbent itself would not depend on the config, and
    // settings of one batch proposed without each other as pending would
    // coincide.
    let mut rng = crate::samplers::unit::rng(&[sobol_seed, 1]);
    let near: Vec<f64> = incumbent
        .iter()
        .zip(kinds)
        .map(|(&u, k)| match k {
            Kind::Numeric => (u + 0.01 * crate::samplers::unit::normal(&mut rng)).clamp(0.0, 1.0),
            Kind::Categorical(_) => u,
        })
        .collect();
    let starts: Vec<Vec<f64>> = std::iter::once(near)
        .chain(scored.iter().take(effort.starts).map(|(_, x)| x.clone()))
        .collect();
    let mut refined: Vec<(f64, Vec<f64>)> = starts
        .iter()
        .map(|x0| refine(p, best, x0, kinds, effort.iters))
        .collect();
    refined.sort_by(|a, b| b.0.total_cmp(&a.0));
    refined.extend(scored);
    refined
}

/// Local maximisation of log EI from `x0`: the numeric coordinates by
/// projected L-BFGS in `[0, 1]`, then each categorical's other choices.
fn refine(p: &Posterior, best: f64, x0: &[f64], kinds: &[Kind], iters: usize) -> (f64, Vec<f64>) {
    let (lo, hi): (Vec<f64>, Vec<f64>) = kinds
        .iter()
        .zip(x0)
        .map(|(k, &x)| match k {
            Kind::Numeric => (0.0, 1.0),
            Kind::Categorical(_) => (x, x),
        })
        .unzip();
    let mut f = |x: &[f64], g: &mut [f64]| {
        let v = log_ei_grad(p, best, x, g);
        g.iter_mut().for_each(|v| *v = -*v);
        -v
    };
    let (mut x, v) = optim::minimize(&mut f, x0, &lo, &hi, iters);
    let mut value = -v;
    for (j, kind) in kinds.iter().enumerate() {
        let Kind::Categorical(n) = *kind else {
            continue;
        };
        let tries: Vec<Vec<f64>> = (0..n)
            .map(|c| {
                let mut t = x.clone();
                t[j] = (c as f64 + 0.5) / n as f64;
                t
            })
            .collect();
        for (t, (m, var)) in tries.iter().zip(p.predict(&tries)) {
            let e = log_ei(m, var, best);
            if e > value {
                value = e;
                x = t.clone();
            }
        }
    }
    if !value.is_finite() {
        value = f64::NEG_INFINITY;
    }
    (value, x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_h(z: f64) -> f64 {
        (-0.5 * z * z).exp() / (2.0 * PI).sqrt() + z * norm_cdf(z)
    }

    #[test]
    fn log_h_matches_the_naive_formula_where_that_is_accurate() {
        for i in 0..=200 {
            let z = -8.0 + 0.07 * i as f64;
            let (a, b) = (log_h(z), naive_h(z).ln());
            assert!((a - b).abs() < 1e-8 * b.abs().max(1.0), "z={z}: {a} vs {b}");
        }
        // Both branches agree at the seam.
        assert!((log_h(-1.0 - 1e-12) - log_h(-1.0 + 1e-12)).abs() < 1e-9);
    }

    #[test]
    fn log_h_stays_finite_and_monotone_far_in_the_tail() {
        let mut prev = f64::INFINITY;
        for z in [-30.0, -40.0, -100.0, -1e3, -1e5, -1e7, -1e9, -1e12] {
            let v = log_h(z);
            assert!(v.is_finite() && v < prev, "z={z}: {v}");
            // h(z) ~ phi(z) / z^2 as z -> -inf.
            let asym = -0.5 * z * z - C1 - 2.0 * (-z).ln();
            assert!(
                (v - asym).abs() < 3.0 / (z * z) + 1e-9 * asym.abs(),
                "z={z}: {v} vs {asym}"
            );
            prev = v;
        }
        assert_eq!(naive_h(-40.0), 0.0, "where the naive EI gives nothing");
        assert!(log_ei(0.0, 1e-12, -1.0).is_finite());
    }

    #[test]
    fn erfcx_is_continuous_where_it_changes_method() {
        let (a, b) = (erfcx(25.0 - 1e-9), erfcx(25.0));
        assert!((a - b).abs() < 1e-10 * a, "{a} {b}");
    }
}
