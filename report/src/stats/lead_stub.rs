//! TEMPORARY until h11-stats lands.
use hps_common::Direction;
pub fn best_so_far(values: &[f64], direction: Direction) -> Vec<f64> {
    let mut b = f64::NAN;
    values
        .iter()
        .map(|v| {
            if v.is_finite() && (b.is_nan() || direction.better(*v, b)) {
                b = *v
            }
            b
        })
        .collect()
}
pub struct Reshuffle {
    pub runs: Vec<Vec<f64>>,
    pub median: Vec<f64>,
    pub q25: Vec<f64>,
    pub q75: Vec<f64>,
    pub exact: bool,
}
pub fn reshuffle(
    values: &[f64],
    direction: Direction,
    _runs: usize,
    _permutations: usize,
    _seed: u64,
) -> Reshuffle {
    let b = best_so_far(values, direction);
    Reshuffle {
        runs: vec![b.clone()],
        median: b.clone(),
        q25: b.clone(),
        q75: b,
        exact: false,
    }
}
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    pub std: f64,
    pub ci95: Option<(f64, f64)>,
}
pub fn summarize(values: &[f64]) -> Option<Summary> {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    Some(Summary {
        n: v.len(),
        mean: m,
        std: 0.0,
        ci95: None,
    })
}
pub fn t_interval(_mean: f64, _std: f64, _n: usize) -> Option<(f64, f64)> {
    None
}
pub struct Importance {
    pub mean: f64,
    pub std: f64,
}
pub fn importance(
    x: &[Vec<f64>],
    _y: &[f64],
    _trees: usize,
    _seed: u64,
) -> Result<Vec<Importance>, String> {
    Ok(x.first()
        .map(|p| {
            p.iter()
                .map(|_| Importance {
                    mean: 0.5,
                    std: 0.1,
                })
                .collect()
        })
        .unwrap_or_default())
}
