//! The GP's hyperparameters, fitted by maximising the log marginal
//! likelihood plus weak priors, and the posterior they give.
//!
//! Parameters (all in log space): a length scale per dimension, the signal
//! variance `s` and the noise variance. The priors are Optuna's GPSampler
//! ones: on each inverse squared length scale `p`, `-(0.1 / p + 0.1 p)`
//! (a bump around `l = 1` that keeps unidentified dimensions long); on `s`
//! a Gamma(2, 1); on the noise a Gamma(1.1, 30), which favours small noise.
//! The observations are standardised, so these scales are meaningful.
//! The maximisation is [`optim::minimize`] on the negative log posterior
//! with its analytic gradient, from two fixed starts; the better end wins.

use nalgebra::{Cholesky, DMatrix, DVector, Dyn};

use super::kernel::{diff, matern52, Kernel};
use super::optim;
use crate::samplers::unit::Kind;

/// Smallest noise variance (standardised units).
const MIN_NOISE: f64 = 1e-6;
/// Guard bounds on the log parameters.
const LOG_LS: (f64, f64) = (-6.0, 4.0);
const LOG_SCALE: (f64, f64) = (-5.0, 4.0);
const LOG_NOISE: (f64, f64) = (-13.815_510_557_964_274, 0.0);
/// Iterations of each fit.
const FIT_ITERS: usize = 60;

/// Fitted hyperparameters.
#[derive(Debug, Clone)]
pub struct Hyper {
    pub kernel: Kernel,
    pub noise: f64,
}

impl Hyper {
    fn from_log(theta: &[f64], kinds: &[Kind]) -> Self {
        let d = kinds.len();
        Hyper {
            kernel: Kernel {
                inv_ls2: theta[..d].iter().map(|l| (-2.0 * l).exp()).collect(),
                scale: theta[d].exp(),
                kinds: kinds.to_vec(),
            },
            noise: theta[d + 1].exp().max(MIN_NOISE),
        }
    }
}

/// `K + (noise + jitter) I`, factorised; the jitter grows from zero until
/// the factorisation succeeds.
pub fn factor(h: &Hyper, x: &[Vec<f64>]) -> Option<Cholesky<f64, Dyn>> {
    let n = x.len();
    let k = DMatrix::from_fn(n, n, |a, b| h.kernel.k(&x[a], &x[b]));
    let mut jitter = 0.0;
    for _ in 0..8 {
        let mut m = k.clone();
        for i in 0..n {
            m[(i, i)] += h.noise + jitter;
        }
        if let Some(c) = Cholesky::new(m) {
            return Some(c);
        }
        jitter = if jitter == 0.0 { 1e-9 } else { jitter * 10.0 };
    }
    None
}

/// The negative log posterior (marginal likelihood plus priors) at log
/// parameters `theta`, and its gradient.
fn neg_log_posterior(
    theta: &[f64],
    grad: &mut [f64],
    x: &[Vec<f64>],
    y: &DVector<f64>,
    kinds: &[Kind],
) -> f64 {
    let d = kinds.len();
    let n = x.len();
    let h = Hyper::from_log(theta, kinds);
    let Some(chol) = factor(&h, x) else {
        return f64::INFINITY;
    };
    let alpha = chol.solve(y);
    let log_det: f64 = chol.l_dirty().diagonal().iter().map(|v| v.ln()).sum();
    let lml = -0.5 * y.dot(&alpha) - log_det - 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln();
    // d lml / d theta = 1/2 tr((alpha alpha^T - K^-1) dK/dtheta).
    let kinv = chol.inverse();
    grad.iter_mut().for_each(|g| *g = 0.0);
    let s = h.kernel.scale;
    for a in 0..n {
        let waa = alpha[a] * alpha[a] - kinv[(a, a)];
        grad[d] += 0.5 * waa * s;
        grad[d + 1] += 0.5 * waa * h.noise;
        // Off the diagonal, (a, b) and (b, a) at once.
        for b in 0..a {
            let w = alpha[a] * alpha[b] - kinv[(a, b)];
            let (m, dm) = matern52(h.kernel.sq_dist(&x[a], &x[b]));
            grad[d] += w * s * m;
            // dK/dlog l_j = -2 dm s p_j diff^2.
            for j in 0..d {
                let dj = diff(kinds[j], x[a][j], x[b][j]);
                grad[j] += w * (-2.0 * dm) * s * h.kernel.inv_ls2[j] * dj * dj;
            }
        }
    }
    // Priors (Optuna's), and their gradients in the log parameters.
    let mut prior = 0.0;
    for (g, &p) in grad.iter_mut().zip(&h.kernel.inv_ls2) {
        prior -= 0.1 / p + 0.1 * p;
        *g += -0.2 / p + 0.2 * p;
    }
    prior += s.ln() - s;
    grad[d] += 1.0 - s;
    prior += 0.1 * h.noise.ln() - 30.0 * h.noise;
    grad[d + 1] += 0.1 - 30.0 * h.noise;
    grad.iter_mut().for_each(|g| *g = -*g);
    -(lml + prior)
}

/// The hyperparameters that maximise the posterior on `(x, y)`.
pub fn fit(x: &[Vec<f64>], y: &DVector<f64>, kinds: &[Kind]) -> Hyper {
    let d = kinds.len();
    let mut lo = vec![LOG_LS.0; d];
    let mut hi = vec![LOG_LS.1; d];
    lo.extend([LOG_SCALE.0, LOG_NOISE.0]);
    hi.extend([LOG_SCALE.1, LOG_NOISE.1]);
    let start = |l: f64| {
        let mut t = vec![l.ln(); d];
        t.extend([0.0, (1e-3f64).ln()]);
        t
    };
    let mut f = |t: &[f64], g: &mut [f64]| neg_log_posterior(t, g, x, y, kinds);
    let mut best: Option<(Vec<f64>, f64)> = None;
    for l in [0.5, 0.1] {
        let (t, v) = optim::minimize(&mut f, &start(l), &lo, &hi, FIT_ITERS);
        if best.as_ref().is_none_or(|(_, b)| v < *b) {
            best = Some((t, v));
        }
    }
    let theta = best.map_or_else(|| start(0.5), |(t, _)| t);
    Hyper::from_log(&theta, kinds)
}

/// The posterior of a GP with fixed hyperparameters on `(x, y)`.
pub struct Posterior {
    pub h: Hyper,
    x: Vec<Vec<f64>>,
    chol: Cholesky<f64, Dyn>,
    alpha: DVector<f64>,
}

/// Smallest predictive variance.
const MIN_VAR: f64 = 1e-12;

impl Posterior {
    pub fn new(h: Hyper, x: Vec<Vec<f64>>, y: &DVector<f64>) -> Option<Self> {
        let chol = factor(&h, &x)?;
        let alpha = chol.solve(y);
        Some(Posterior { h, x, chol, alpha })
    }

    /// Mean and variance of the latent function at each of `xs`.
    pub fn predict(&self, xs: &[Vec<f64>]) -> Vec<(f64, f64)> {
        let n = self.x.len();
        let ks = DMatrix::from_fn(n, xs.len(), |i, c| self.h.kernel.k(&self.x[i], &xs[c]));
        let mean = ks.tr_mul(&self.alpha);
        let v = self
            .chol
            .l_dirty()
            .solve_lower_triangular(&ks)
            .unwrap_or_else(|| DMatrix::zeros(n, xs.len()));
        (0..xs.len())
            .map(|c| {
                let q = v.column(c).norm_squared();
                (mean[c], (self.h.kernel.scale - q).max(MIN_VAR))
            })
            .collect()
    }

    /// Mean and variance at `x`, with their gradients in `x`.
    pub fn predict_grad(&self, x: &[f64]) -> (f64, f64, Vec<f64>, Vec<f64>) {
        let (n, d) = (self.x.len(), x.len());
        let mut dmean = vec![0.0; d];
        let ks = DVector::from_iterator(
            n,
            (0..n).map(|i| {
                self.h
                    .kernel
                    .k_grad(x, &self.x[i], self.alpha[i], &mut dmean)
            }),
        );
        let mean = ks.dot(&self.alpha);
        let kinv_k = self.chol.solve(&ks);
        let var = self.h.kernel.scale - ks.dot(&kinv_k);
        // d var / dx = -2 (K^-1 k)^T dk/dx.
        let mut dvar = vec![0.0; d];
        for i in 0..n {
            self.h
                .kernel
                .k_grad(x, &self.x[i], -2.0 * kinv_k[i], &mut dvar);
        }
        if var < MIN_VAR {
            return (mean, MIN_VAR, dmean, vec![0.0; d]);
        }
        (mean, var, dmean, dvar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gradient_of_the_log_posterior_matches_finite_differences() {
        let kinds = [Kind::Numeric, Kind::Categorical(2)];
        let mut rng = crate::samplers::unit::rng(&[2]);
        let x: Vec<Vec<f64>> = (0..12)
            .map(|_| (0..2).map(|_| rand::Rng::random::<f64>(&mut rng)).collect())
            .collect();
        let y = DVector::from_iterator(12, x.iter().map(|p| (6.0 * p[0]).sin() + p[1]));
        let theta = [-1.0, 0.3, 0.2, -4.0];
        let mut g = [0.0; 4];
        neg_log_posterior(&theta, &mut g, &x, &y, &kinds);
        for j in 0..4 {
            let h = 1e-6;
            let (mut a, mut b) = (theta, theta);
            a[j] += h;
            b[j] -= h;
            let mut tmp = [0.0; 4];
            let fd = (neg_log_posterior(&a, &mut tmp, &x, &y, &kinds)
                - neg_log_posterior(&b, &mut tmp, &x, &y, &kinds))
                / (2.0 * h);
            assert!(
                (fd - g[j]).abs() < 1e-4 * (1.0 + fd.abs()),
                "param {j}: {fd} vs {}",
                g[j]
            );
        }
    }

    #[test]
    fn ard_finds_the_dimension_that_matters() {
        // f varies quickly along x0 and not at all along x1: the fitted
        // length scale of x0 is short, that of x1 long.
        let kinds = [Kind::Numeric, Kind::Numeric];
        let mut rng = crate::samplers::unit::rng(&[3]);
        let x: Vec<Vec<f64>> = (0..40)
            .map(|_| (0..2).map(|_| rand::Rng::random::<f64>(&mut rng)).collect())
            .collect();
        let raw: Vec<f64> = x.iter().map(|p| (8.0 * p[0]).sin()).collect();
        let y = DVector::from_vec(raw);
        let h = fit(&x, &y, &kinds);
        let ls: Vec<f64> = h.kernel.inv_ls2.iter().map(|p| p.powf(-0.5)).collect();
        assert!(ls[0] < 0.5 && ls[1] > 2.0 * ls[0] && ls[1] > 1.0, "{ls:?}");
        assert!(h.noise < 1e-2, "{}", h.noise);
    }

    #[test]
    fn the_posterior_interpolates_and_its_gradient_is_right() {
        let kinds = [Kind::Numeric, Kind::Numeric];
        let x = vec![
            vec![0.1, 0.2],
            vec![0.8, 0.4],
            vec![0.5, 0.9],
            vec![0.3, 0.6],
        ];
        let y = DVector::from_vec(vec![1.0, -0.5, 0.3, 0.0]);
        let h = fit(&x, &y, &kinds);
        let p = Posterior::new(h, x.clone(), &y).unwrap();
        for (i, (m, v)) in p.predict(&x).into_iter().enumerate() {
            assert!((m - y[i]).abs() < 1e-2 && v < 1e-2, "{i}: {m} {v}");
        }
        let at = [0.45, 0.35];
        let (m, v, dm, dv) = p.predict_grad(&at);
        let (m2, v2) = p.predict(&[at.to_vec()])[0];
        assert!((m - m2).abs() < 1e-9 && (v - v2).abs() < 1e-9);
        for j in 0..2 {
            let e = 1e-6;
            let (mut a, mut b) = (at.to_vec(), at.to_vec());
            a[j] += e;
            b[j] -= e;
            let (pa, pb) = (p.predict(&[a])[0], p.predict(&[b])[0]);
            assert!(((pa.0 - pb.0) / (2.0 * e) - dm[j]).abs() < 1e-5);
            assert!(((pa.1 - pb.1) / (2.0 * e) - dv[j]).abs() < 1e-5);
        }
    }
}
