//! What the learning samplers share: the searched dimensions as a unit
//! cube (both ways), a canonical view of the history, seeding, and a little
//! numerics.

use std::collections::HashSet;

use hps_common::{ParamSpec, Params, Study};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Observation;

/// How a sampler may treat one searched dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Ordered: floats, ints, transforms (a unit coordinate is meaningful).
    Numeric,
    /// `n` unordered choices; choice `i` owns `[i/n, (i+1)/n)`.
    Categorical(usize),
}

/// The study's parameters in name order; the searched ones form the unit
/// cube `[0, 1]^d` in that order.
#[derive(Debug, Clone)]
pub struct UnitSpace {
    params: Vec<(String, ParamSpec)>,
    searched: Vec<usize>,
}

impl UnitSpace {
    pub fn new(study: &Study) -> Self {
        let params: Vec<(String, ParamSpec)> = study
            .space
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let searched = params
            .iter()
            .enumerate()
            .filter(|(_, (_, s))| s.is_searched())
            .map(|(i, _)| i)
            .collect();
        UnitSpace { params, searched }
    }

    /// Number of searched dimensions.
    pub fn dim(&self) -> usize {
        self.searched.len()
    }

    pub fn kinds(&self) -> Vec<Kind> {
        self.searched
            .iter()
            .map(|&i| match &self.params[i].1 {
                ParamSpec::Categorical { choices } => Kind::Categorical(choices.len()),
                _ => Kind::Numeric,
            })
            .collect()
    }

    /// The parameters at unit point `x` (one coordinate per searched
    /// dimension; fixed parameters take their value).
    pub fn params_at(&self, x: &[f64]) -> Params {
        debug_assert_eq!(x.len(), self.dim());
        let mut xs = x.iter();
        self.params
            .iter()
            .map(|(name, spec)| {
                let u = if spec.is_searched() {
                    *xs.next().unwrap_or(&0.0)
                } else {
                    0.0
                };
                (name.clone(), spec.from_unit(u))
            })
            .collect()
    }

    /// A unit point that maps back onto `params` (the centre of an int's or
    /// a categorical's cell), or `None` when a searched parameter is missing
    /// or not a value of its range (e.g. the study's space was edited).
    pub fn unit_of(&self, params: &Params) -> Option<Vec<f64>> {
        self.searched
            .iter()
            .map(|&i| {
                let (name, spec) = &self.params[i];
                spec.to_unit(params.get(name)?)
            })
            .collect()
    }
}

/// A usable observation: its unit point, and its loss (`None`: the trial
/// ended without one, e.g. failed).
#[derive(Debug, Clone)]
pub struct Point {
    /// Index of the observation in the history.
    pub index: usize,
    pub config: u64,
    pub x: Vec<f64>,
    pub loss: Option<f64>,
}

/// The history in a canonical order — by config, then loss — so that what
/// a sampler proposes does not depend on the order results arrived in.
/// Observations whose parameters are not in the space are left out.
pub fn canonical(space: &UnitSpace, history: &[Observation]) -> Vec<Point> {
    let mut pts: Vec<Point> = history
        .iter()
        .enumerate()
        .filter_map(|(index, o)| {
            Some(Point {
                index,
                config: o.config,
                x: space.unit_of(&o.params)?,
                loss: o.loss.filter(|l| l.is_finite()),
            })
        })
        .collect();
    pts.sort_by(|a, b| {
        a.config
            .cmp(&b.config)
            .then_with(|| cmp_loss(a.loss, b.loss))
            .then_with(|| key(&history[a.index].params).cmp(&key(&history[b.index].params)))
    });
    pts
}

/// Lower is better; a missing loss is worst.
pub fn cmp_loss(a: Option<f64>, b: Option<f64>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
}

/// The parameter sets already proposed (finished or pending), for
/// avoiding exact duplicates.
#[derive(Debug, Default, Clone)]
pub struct Taken(HashSet<String>);

impl Taken {
    pub fn new<'a>(params: impl IntoIterator<Item = &'a Params>) -> Self {
        Taken(params.into_iter().map(key).collect())
    }

    pub fn contains(&self, p: &Params) -> bool {
        self.0.contains(&key(p))
    }
}

fn key(p: &Params) -> String {
    serde_json::to_string(p).unwrap_or_default()
}

/// SplitMix64's finaliser: mixes words into an RNG seed.
pub fn mix(words: &[u64]) -> u64 {
    let mut h: u64 = 0x243f_6a88_85a3_08d3;
    for &w in words {
        h ^= w;
        h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
    }
    h
}

/// A ChaCha stream for `words` (e.g. a sampler tag, the seed, a config).
pub fn rng(words: &[u64]) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(words))
}

/// A standard normal draw (Box–Muller).
pub fn normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Standard normal CDF.
pub fn norm_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// `ln(Φ(b) - Φ(a))` for `a < b`, accurate in both tails.
pub fn log_norm_mass(a: f64, b: f64) -> f64 {
    let m = if a > 0.0 {
        // Upper tail: Φ(b) - Φ(a) = Q(a) - Q(b).
        0.5 * (libm::erfc(a / std::f64::consts::SQRT_2) - libm::erfc(b / std::f64::consts::SQRT_2))
    } else {
        norm_cdf(b) - norm_cdf(a)
    };
    m.max(f64::MIN_POSITIVE).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_of_inverts_from_unit() {
        let specs = [
            ParamSpec::Float {
                low: 1e-4,
                high: 1.0,
                log: true,
                grid: None,
            },
            ParamSpec::Float {
                low: -5.0,
                high: 10.0,
                log: false,
                grid: None,
            },
            ParamSpec::Int {
                low: 8,
                high: 64,
                log: true,
            },
            ParamSpec::Int {
                low: 1,
                high: 3,
                log: true,
            },
            ParamSpec::Int {
                low: -3,
                high: 7,
                log: false,
            },
            ParamSpec::Categorical {
                choices: vec![16.into(), "a".into(), true.into()],
            },
            ParamSpec::Transform {
                offset: 4.0,
                scale: 4.0,
                base: Some(2.0),
                int: true,
                grid: None,
            },
            ParamSpec::Transform {
                offset: -2.0,
                scale: 1.5,
                base: Some(10.0),
                int: false,
                grid: None,
            },
            ParamSpec::Transform {
                offset: 10.0,
                scale: 90.0,
                base: None,
                int: true,
                grid: None,
            },
        ];
        for spec in &specs {
            for k in 0..200 {
                let u = (k as f64 + 0.37) / 200.0;
                let v = spec.from_unit(u);
                let back = spec.to_unit(&v).unwrap();
                let again = spec.from_unit(back);
                match (spec, v.as_f64(), again.as_f64()) {
                    // Continuous values come back up to rounding.
                    (
                        ParamSpec::Float { .. } | ParamSpec::Transform { int: false, .. },
                        Some(a),
                        Some(b),
                    ) => {
                        assert!(
                            (a - b).abs() <= 1e-12 * a.abs().max(1.0),
                            "{spec:?} u={u}: {a} vs {b}"
                        );
                        assert!((back - u).abs() < 1e-9, "{spec:?} {u} {back}");
                    }
                    _ => assert_eq!(again, v, "{spec:?} u={u} back={back}"),
                }
            }
        }
    }

    #[test]
    fn log_norm_mass_is_accurate() {
        let direct = |a: f64, b: f64| (norm_cdf(b) - norm_cdf(a)).ln();
        assert!((log_norm_mass(-1.0, 2.0) - direct(-1.0, 2.0)).abs() < 1e-12);
        assert!((log_norm_mass(0.5, 1.5) - direct(0.5, 1.5)).abs() < 1e-12);
        // Far upper tail, where 1 - Φ cancels: ln Q(30) ≈ -454.32.
        assert!((log_norm_mass(30.0, f64::INFINITY) + 454.321).abs() < 1e-2);
    }
}
