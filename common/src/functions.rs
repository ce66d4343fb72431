//! Analytic test functions for the `function` trainer and the sampler
//! benchmarks. All are minimised; each knows its domain and optimum so
//! results can report simple regret.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Function {
    /// 2-D, domain x0 ∈ [-5, 10], x1 ∈ [0, 15], minimum 0.397887.
    Branin,
    /// 6-D, domain [0, 1]^6, minimum -3.32237.
    Hartmann6,
    /// Any dimension ≥ 2 (default 4), domain [-5, 10]^d, minimum 0.
    Rosenbrock,
    /// Any dimension ≥ 1 (default 4), domain [-5, 5]^d, minimum -39.16617·d.
    StyblinskiTang,
}

/// A `dim` the function cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DimensionError {
    #[error("{function} is {fixed}-dimensional, not {got}")]
    Fixed {
        function: &'static str,
        fixed: usize,
        got: usize,
    },
    #[error("{function} needs dim >= {min}")]
    TooSmall { function: &'static str, min: usize },
    #[error("dim {0} is too large (max 1000)")]
    TooLarge(usize),
}

impl Function {
    pub fn as_str(self) -> &'static str {
        match self {
            Function::Branin => "branin",
            Function::Hartmann6 => "hartmann6",
            Function::Rosenbrock => "rosenbrock",
            Function::StyblinskiTang => "styblinski_tang",
        }
    }

    /// The dimension used for `dim` (None = the function's default).
    pub fn dimension(self, dim: Option<usize>) -> Result<usize, DimensionError> {
        let wrong = |fixed| DimensionError::Fixed {
            function: self.as_str(),
            fixed,
            got: dim.unwrap_or_default(),
        };
        match (self, dim) {
            (Function::Branin, None | Some(2)) => Ok(2),
            (Function::Hartmann6, None | Some(6)) => Ok(6),
            (Function::Branin, Some(_)) => Err(wrong(2)),
            (Function::Hartmann6, Some(_)) => Err(wrong(6)),
            (Function::Rosenbrock, Some(d)) if d < 2 => Err(DimensionError::TooSmall {
                function: self.as_str(),
                min: 2,
            }),
            (Function::StyblinskiTang, Some(0)) => Err(DimensionError::TooSmall {
                function: self.as_str(),
                min: 1,
            }),
            (_, Some(d)) if d > 1000 => Err(DimensionError::TooLarge(d)),
            (_, Some(d)) => Ok(d),
            (_, None) => Ok(4),
        }
    }

    /// The usual search box, one `(low, high)` per coordinate.
    pub fn domain(self, d: usize) -> Vec<(f64, f64)> {
        match self {
            Function::Branin => vec![(-5.0, 10.0), (0.0, 15.0)],
            Function::Hartmann6 => vec![(0.0, 1.0); 6],
            Function::Rosenbrock => vec![(-5.0, 10.0); d],
            Function::StyblinskiTang => vec![(-5.0, 5.0); d],
        }
    }

    /// The global minimum value in dimension `d`.
    pub fn optimum(self, d: usize) -> f64 {
        match self {
            Function::Branin => 0.397_887_357_729_738,
            Function::Hartmann6 => -3.322_368_011_415_51,
            Function::Rosenbrock => 0.0,
            Function::StyblinskiTang => -39.166_165_703_771_41 * d as f64,
        }
    }

    pub fn evaluate(self, x: &[f64]) -> f64 {
        match self {
            Function::Branin => {
                let (x1, x2) = (x[0], x[1]);
                let pi = std::f64::consts::PI;
                let b = 5.1 / (4.0 * pi * pi);
                let c = 5.0 / pi;
                let t = 1.0 / (8.0 * pi);
                (x2 - b * x1 * x1 + c * x1 - 6.0).powi(2) + 10.0 * (1.0 - t) * x1.cos() + 10.0
            }
            Function::Hartmann6 => {
                const ALPHA: [f64; 4] = [1.0, 1.2, 3.0, 3.2];
                const A: [[f64; 6]; 4] = [
                    [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
                    [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
                    [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
                    [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
                ];
                const P: [[f64; 6]; 4] = [
                    [1312.0, 1696.0, 5569.0, 124.0, 8283.0, 5886.0],
                    [2329.0, 4135.0, 8307.0, 3736.0, 1004.0, 9991.0],
                    [2348.0, 1451.0, 3522.0, 2883.0, 3047.0, 6650.0],
                    [4047.0, 8828.0, 8732.0, 5743.0, 1091.0, 381.0],
                ];
                -(0..4)
                    .map(|i| {
                        let inner: f64 = (0..6)
                            .map(|j| A[i][j] * (x[j] - P[i][j] * 1e-4).powi(2))
                            .sum();
                        ALPHA[i] * (-inner).exp()
                    })
                    .sum::<f64>()
            }
            Function::Rosenbrock => x
                .windows(2)
                .map(|w| 100.0 * (w[1] - w[0] * w[0]).powi(2) + (1.0 - w[0]).powi(2))
                .sum(),
            Function::StyblinskiTang => {
                0.5 * x
                    .iter()
                    .map(|v| v.powi(4) - 16.0 * v * v + 5.0 * v)
                    .sum::<f64>()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optima_are_attained_at_known_minimisers() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-4;
        let b = Function::Branin;
        assert!(close(
            b.evaluate(&[-std::f64::consts::PI, 12.275]),
            b.optimum(2)
        ));
        assert!(close(b.evaluate(&[9.42478, 2.475]), b.optimum(2)));
        let h = Function::Hartmann6;
        let xs = [0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573];
        assert!(close(h.evaluate(&xs), h.optimum(6)), "{}", h.evaluate(&xs));
        assert_eq!(Function::Rosenbrock.evaluate(&[1.0; 4]), 0.0);
        let st = Function::StyblinskiTang;
        assert!(close(st.evaluate(&[-2.903534; 4]), st.optimum(4)));
    }

    #[test]
    fn dimensions() {
        assert_eq!(Function::Branin.dimension(None), Ok(2));
        assert!(Function::Branin.dimension(Some(3)).is_err());
        assert_eq!(Function::StyblinskiTang.dimension(None), Ok(4));
        assert_eq!(Function::Rosenbrock.dimension(Some(10)), Ok(10));
        assert!(Function::Rosenbrock.dimension(Some(1)).is_err());
    }
}
