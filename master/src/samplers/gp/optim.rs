//! Box-constrained minimisation for the GP sampler: projected L-BFGS.
//!
//! Both of the GP's optimisation problems are small and smooth — the
//! hyperparameters (log length scales, log signal variance, log noise)
//! within guard bounds, and the acquisition within `[0, 1]^d` — so a
//! projected quasi-Newton method is enough: the L-BFGS direction (two-loop
//! recursion, a short memory) restricted to the variables that are not held
//! at a bound, a backtracking Armijo search along the projected path, and a
//! fall-back to steepest descent (memory cleared) when the quasi-Newton
//! direction does not descend. It is not the full L-BFGS-B (no Cauchy point
//! or subspace minimisation); on these problems that costs little.

/// Memory of the quasi-Newton approximation.
const MEMORY: usize = 6;

/// A problem: its value at `x`, with the gradient written into `grad`.
/// A non-finite value counts as worse than any finite one.
pub trait Objective {
    fn eval(&mut self, x: &[f64], grad: &mut [f64]) -> f64;
}

impl<F: FnMut(&[f64], &mut [f64]) -> f64> Objective for F {
    fn eval(&mut self, x: &[f64], grad: &mut [f64]) -> f64 {
        self(x, grad)
    }
}

/// The minimiser found from `x0` within `[lo, hi]` in at most `iters`
/// iterations, and its value.
pub fn minimize(
    f: &mut impl Objective,
    x0: &[f64],
    lo: &[f64],
    hi: &[f64],
    iters: usize,
) -> (Vec<f64>, f64) {
    let n = x0.len();
    let project = |x: &mut [f64]| {
        for i in 0..n {
            x[i] = x[i].clamp(lo[i], hi[i]);
        }
    };
    let mut x = x0.to_vec();
    project(&mut x);
    let mut g = vec![0.0; n];
    let mut fx = finite_or_inf(f.eval(&x, &mut g));
    if !fx.is_finite() {
        return (x, fx);
    }
    let mut mem: Vec<(Vec<f64>, Vec<f64>)> = Vec::new();
    let mut xn = vec![0.0; n];
    let mut gn = vec![0.0; n];
    for _ in 0..iters {
        // Variables held at a bound by the gradient are fixed this step.
        let free: Vec<bool> = (0..n)
            .map(|i| !((x[i] <= lo[i] && g[i] > 0.0) || (x[i] >= hi[i] && g[i] < 0.0)))
            .collect();
        let pg: Vec<f64> = (0..n).map(|i| if free[i] { g[i] } else { 0.0 }).collect();
        if pg.iter().all(|v| v.abs() < 1e-10) {
            break;
        }
        let mut d = two_loop(&pg, &mem);
        if dot(&d, &pg) >= 0.0 {
            mem.clear();
            d = pg.iter().map(|v| -v).collect();
        }
        // The first step of a steepest descent moves at most 1 per coordinate.
        let mut t = if mem.is_empty() {
            (1.0 / d.iter().fold(0.0f64, |m, v| m.max(v.abs()))).min(1.0)
        } else {
            1.0
        };
        let mut fnew = f64::INFINITY;
        for _ in 0..30 {
            for i in 0..n {
                xn[i] = x[i] + t * d[i];
            }
            project(&mut xn);
            fnew = finite_or_inf(f.eval(&xn, &mut gn));
            let decrease: f64 = (0..n).map(|i| g[i] * (xn[i] - x[i])).sum();
            if fnew <= fx + 1e-4 * decrease {
                break;
            }
            t *= 0.5;
        }
        if fnew.is_nan() || fnew > fx {
            if mem.is_empty() {
                break;
            }
            mem.clear();
            continue;
        }
        let s: Vec<f64> = (0..n).map(|i| xn[i] - x[i]).collect();
        let y: Vec<f64> = (0..n).map(|i| gn[i] - g[i]).collect();
        if dot(&s, &y) > 1e-12 {
            if mem.len() == MEMORY {
                mem.remove(0);
            }
            mem.push((s, y));
        }
        let done = (fx - fnew).abs() <= 1e-10 * (1.0 + fx.abs());
        std::mem::swap(&mut x, &mut xn);
        std::mem::swap(&mut g, &mut gn);
        fx = fnew;
        if done {
            break;
        }
    }
    (x, fx)
}

fn finite_or_inf(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        f64::INFINITY
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `-H g` for the L-BFGS inverse-Hessian approximation `H` of `mem`
/// (steps `s` and gradient changes `y`, oldest first). Components where
/// `g` is zero (fixed variables) stay zero.
fn two_loop(g: &[f64], mem: &[(Vec<f64>, Vec<f64>)]) -> Vec<f64> {
    let fixed: Vec<bool> = g.iter().map(|v| *v == 0.0).collect();
    let mask = |v: &mut Vec<f64>| {
        for (x, f) in v.iter_mut().zip(&fixed) {
            if *f {
                *x = 0.0;
            }
        }
    };
    let mut q = g.to_vec();
    let mut alphas = Vec::with_capacity(mem.len());
    for (s, y) in mem.iter().rev() {
        let rho = 1.0 / dot(y, s);
        let a = rho * dot(s, &q);
        for (qi, yi) in q.iter_mut().zip(y) {
            *qi -= a * yi;
        }
        mask(&mut q);
        alphas.push((a, rho));
    }
    if let Some((s, y)) = mem.last() {
        let gamma = dot(s, y) / dot(y, y);
        for qi in q.iter_mut() {
            *qi *= gamma;
        }
    }
    for ((s, y), (a, rho)) in mem.iter().zip(alphas.iter().rev()) {
        let b = rho * dot(y, &q);
        for (qi, si) in q.iter_mut().zip(s) {
            *qi += (a - b) * si;
        }
        mask(&mut q);
    }
    q.iter().map(|v| -v).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimises_a_rosenbrock_valley_and_respects_bounds() {
        let mut rosen = |x: &[f64], g: &mut [f64]| {
            let (a, b) = (x[0], x[1]);
            g[0] = -2.0 * (1.0 - a) - 400.0 * a * (b - a * a);
            g[1] = 200.0 * (b - a * a);
            (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2)
        };
        let (x, f) = minimize(&mut rosen, &[-1.2, 1.0], &[-2.0, -2.0], &[2.0, 2.0], 500);
        assert!(f < 1e-8 && (x[0] - 1.0).abs() < 1e-3, "{x:?} {f}");
        // The unconstrained minimum (1, 1) is outside: the answer is on
        // the bound b = 0.5, at a ≈ 0.7.
        let (x, _) = minimize(&mut rosen, &[0.0, 0.0], &[-2.0, -2.0], &[2.0, 0.5], 500);
        assert!(
            x[1] == 0.5 && (x[0] - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-2,
            "{x:?}"
        );
    }

    #[test]
    fn a_non_finite_start_is_returned_as_is() {
        let mut f = |_: &[f64], _: &mut [f64]| f64::NAN;
        let (x, v) = minimize(&mut f, &[0.5], &[0.0], &[1.0], 10);
        assert_eq!((x, v), (vec![0.5], f64::INFINITY));
    }
}
