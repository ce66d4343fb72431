//! Mean, spread and a confidence interval of the mean over repeated runs.

use statrs::distribution::{ContinuousCDF, StudentsT};

/// Summary statistics of the finite values of a sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Number of finite values.
    pub n: usize,
    /// Their mean.
    pub mean: f64,
    /// Sample standard deviation (divisor n - 1; 0 when n = 1).
    pub std: f64,
    /// Two-sided 95 % Student-t confidence interval of the mean,
    /// mean ± t₀.₉₇₅,ₙ₋₁ · std / √n; None when n < 2.
    pub ci95: Option<(f64, f64)>,
}

impl Summary {
    /// The summary of `n` values given by their mean and sample standard
    /// deviation (a k-fold trial's folds, say), with its t interval.
    pub fn from_parts(mean: f64, std: f64, n: usize) -> Summary {
        Summary {
            n,
            mean,
            std,
            ci95: t_interval(mean, std, n),
        }
    }
}

/// Over the finite values: sample std (n-1; 0 for n = 1), Student-t 95 %
/// confidence interval of the mean (None when n < 2). None when no finite
/// value.
pub fn summarize(values: &[f64]) -> Option<Summary> {
    // Welford's update: no overflow of a running sum, no cancellation.
    let (mut n, mut mean, mut m2) = (0usize, 0.0f64, 0.0f64);
    for &v in values.iter().filter(|v| v.is_finite()) {
        n += 1;
        let delta = v - mean;
        mean += delta / n as f64;
        m2 += delta * (v - mean);
    }
    if n == 0 {
        return None;
    }
    let std = if n > 1 {
        (m2 / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    Some(Summary::from_parts(mean, std, n))
}

/// The Student-t 95 % confidence interval of a mean of `n` values with
/// sample standard deviation `std` (for summaries computed elsewhere, such
/// as a k-fold trial's); None when n < 2 or a number is not finite.
pub fn t_interval(mean: f64, std: f64, n: usize) -> Option<(f64, f64)> {
    if n < 2 || !mean.is_finite() || !std.is_finite() {
        return None;
    }
    let t = StudentsT::new(0.0, 1.0, (n - 1) as f64).ok()?;
    let half = t.inverse_cdf(0.975) * std / (n as f64).sqrt();
    Some((mean - half, mean + half))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b}");
    }

    #[test]
    fn one_to_five() {
        // Reference (scipy): t.ppf(0.975, 4) = 2.7764451051977987;
        // 3 ± 2.7764451 * sqrt(2.5) / sqrt(5) = (1.0367568, 4.9632432).
        let s = summarize(&[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        assert_eq!(s.n, 5);
        close(s.mean, 3.0, 1e-12);
        close(s.std, 2.5f64.sqrt(), 1e-12);
        let (lo, hi) = s.ci95.unwrap();
        close(lo, 1.036_756_8, 1e-6);
        close(hi, 4.963_243_2, 1e-6);
    }

    #[test]
    fn two_values_use_the_wide_t() {
        // t.ppf(0.975, 1) = 12.706204736174698; std = sqrt(2), se = 1.
        let (lo, hi) = summarize(&[0.0, 2.0]).unwrap().ci95.unwrap();
        close(lo, 1.0 - 12.706_204_736, 1e-6);
        close(hi, 1.0 + 12.706_204_736, 1e-6);
    }

    #[test]
    fn t_interval_of_a_given_summary() {
        // Five folds with mean 3 and std 1.5811: the one_to_five interval.
        let (lo, hi) = t_interval(3.0, 1.581_138_830_084_19, 5).unwrap();
        close(lo, 1.036_757, 1e-5);
        close(hi, 4.963_243, 1e-5);
        assert!(t_interval(3.0, 1.0, 1).is_none());
        assert!(t_interval(f64::NAN, 1.0, 5).is_none());
    }

    #[test]
    fn single_value() {
        let s = summarize(&[4.5]).unwrap();
        assert_eq!((s.n, s.mean, s.std, s.ci95), (1, 4.5, 0.0, None));
    }

    #[test]
    fn non_finite_values_are_ignored() {
        let s = summarize(&[f64::NAN, 1.0, f64::INFINITY, 3.0, f64::NEG_INFINITY]).unwrap();
        assert_eq!(s.n, 2);
        close(s.mean, 2.0, 1e-12);
        close(s.std, 2f64.sqrt(), 1e-12);
        assert!(summarize(&[f64::NAN]).is_none());
        assert!(summarize(&[]).is_none());
    }

    #[test]
    fn constant_values_have_a_point_interval() {
        let s = summarize(&[0.1; 4]).unwrap();
        close(s.std, 0.0, 1e-15);
        let (lo, hi) = s.ci95.unwrap();
        close(lo, 0.1, 1e-15);
        close(hi, 0.1, 1e-15);
    }
}
