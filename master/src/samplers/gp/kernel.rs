//! The Matérn-5/2 kernel with automatic relevance determination (one
//! length scale per dimension), on unit-cube points.
//!
//! A numeric dimension contributes `((x_j - y_j) / l_j)^2` to the squared
//! distance `r^2`; a categorical one contributes `(1 / l_j)^2` when the two
//! points are on different choices and nothing otherwise (an overlap, or
//! Hamming, term: choices are unordered, so only "same or not" counts).
//! `k(x, y) = s * (1 + r' + r'^2 / 3) * exp(-r')` with `r' = sqrt(5) r`.

use super::super::unit::Kind;

#[derive(Debug, Clone)]
pub struct Kernel {
    /// `1 / l_j^2` per dimension.
    pub inv_ls2: Vec<f64>,
    /// The signal variance `s`.
    pub scale: f64,
    pub kinds: Vec<Kind>,
}

/// The difference along one dimension: numeric, or 0/1 for a categorical.
pub fn diff(kind: Kind, a: f64, b: f64) -> f64 {
    match kind {
        Kind::Numeric => a - b,
        Kind::Categorical(n) => f64::from(choice(a, n) != choice(b, n)),
    }
}

/// The choice a categorical coordinate falls on.
pub fn choice(u: f64, n: usize) -> usize {
    ((u * n as f64).max(0.0) as usize).min(n.saturating_sub(1))
}

/// `(1 + r' + r'^2/3) exp(-r')` and `d/d(r^2)` of it, at squared distance `r2`.
pub fn matern52(r2: f64) -> (f64, f64) {
    let r = (5.0 * r2.max(0.0)).sqrt();
    let e = (-r).exp();
    ((1.0 + r + r * r / 3.0) * e, -(5.0 / 6.0) * (1.0 + r) * e)
}

impl Kernel {
    pub fn sq_dist(&self, a: &[f64], b: &[f64]) -> f64 {
        let mut r2 = 0.0;
        for j in 0..a.len() {
            let d = diff(self.kinds[j], a[j], b[j]);
            r2 += self.inv_ls2[j] * d * d;
        }
        r2
    }

    pub fn k(&self, a: &[f64], b: &[f64]) -> f64 {
        self.scale * matern52(self.sq_dist(a, b)).0
    }

    /// `k(x, y)` and its gradient in `x`, added into `grad` times `w`
    /// (categorical coordinates get none: they move in steps).
    pub fn k_grad(&self, x: &[f64], y: &[f64], w: f64, grad: &mut [f64]) -> f64 {
        let (m, dm) = matern52(self.sq_dist(x, y));
        for j in 0..x.len() {
            if self.kinds[j] == Kind::Numeric {
                grad[j] += w * self.scale * dm * 2.0 * self.inv_ls2[j] * (x[j] - y[j]);
            }
        }
        self.scale * m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::DMatrix;

    fn kernel() -> Kernel {
        Kernel {
            inv_ls2: vec![4.0, 25.0, 1.0],
            scale: 1.7,
            kinds: vec![Kind::Numeric, Kind::Numeric, Kind::Categorical(3)],
        }
    }

    fn points() -> Vec<Vec<f64>> {
        let mut rng = crate::samplers::unit::rng(&[1]);
        (0..30)
            .map(|_| (0..3).map(|_| rand::Rng::random::<f64>(&mut rng)).collect())
            .collect()
    }

    #[test]
    fn the_kernel_is_symmetric_and_positive_semidefinite() {
        let k = kernel();
        let x = points();
        let m = DMatrix::from_fn(x.len(), x.len(), |a, b| k.k(&x[a], &x[b]));
        assert_eq!(m, m.transpose());
        for a in 0..x.len() {
            assert!((m[(a, a)] - 1.7).abs() < 1e-15);
        }
        let eig = m.symmetric_eigenvalues();
        let min = eig.iter().copied().fold(f64::INFINITY, f64::min);
        assert!(min > -1e-10, "smallest eigenvalue {min}");
    }

    #[test]
    fn the_gradient_matches_finite_differences() {
        let k = kernel();
        let (x, y) = ([0.3, 0.6, 0.1], [0.5, 0.55, 0.9]);
        let mut g = [0.0; 3];
        k.k_grad(&x, &y, 1.0, &mut g);
        for j in 0..2 {
            let h = 1e-6;
            let (mut a, mut b) = (x, x);
            a[j] += h;
            b[j] -= h;
            let fd = (k.k(&a, &y) - k.k(&b, &y)) / (2.0 * h);
            assert!((fd - g[j]).abs() < 1e-6, "dim {j}: {fd} vs {}", g[j]);
        }
        assert_eq!(g[2], 0.0);
        // Categorical: only whether the choices differ counts.
        assert_eq!(k.sq_dist(&[0.5, 0.5, 0.1], &[0.5, 0.5, 0.3]), 0.0);
        assert_eq!(k.sq_dist(&[0.5, 0.5, 0.1], &[0.5, 0.5, 0.9]), 1.0);
    }
}
