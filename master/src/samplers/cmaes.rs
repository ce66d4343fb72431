//! CMA-ES (Hansen's (μ/μ_w, λ) evolution strategy with cumulative step-size
//! adaptation and rank-one + rank-μ covariance updates) in the unit cube,
//! with IPOP restarts.
//!
//! Settings are laid out in generations: generation 0 is configs
//! `0..λ`, generation 1 the next λ, and so on; after a restart λ doubles.
//! A proposal is a function of `(seed, config, history, pending)`: the
//! sampler replays the generations before `config` from the history —
//! re-drawing each member from its own random stream `(seed, restart,
//! generation, member)` so the update sees the exact continuous point, or
//! taking the point back from the recorded parameters when it differs —
//! and draws member `config - start` of the generation that holds `config`.
//! A resumed master therefore proposes what an uninterrupted one would.
//!
//! Sync mode: λ defaults to the batch (in settings), so one batch is one
//! generation. Async mode: when a setting is asked for beyond a generation
//! that is still running, the running members are told as the worst of
//! their generation (constant liar) once at least μ of its results are in;
//! otherwise the new setting is drawn from the current distribution.
//!
//! Bounds: a draw outside the unit cube is redrawn (up to 100 times), then
//! clipped. Ints and categoricals take the cell their coordinate falls in
//! (`ParamSpec::from_unit`), log scales are linear in the unit cube.
//! Restarts (IPOP, λ doubled, new mean drawn uniformly) when the step size
//! has collapsed or exploded, the fitness is flat, every member maps onto
//! the same setting or none produced a loss, the covariance is
//! ill-conditioned, or the best value has not improved for `10 + 30 d / λ`
//! generations.

use std::collections::{BTreeMap, HashMap};

use hps_common::{Mode, Params, Source, Study};
use rand::Rng;

use super::unit::{self, canonical, cmp_loss, UnitSpace};
use super::{Observation, Proposal, Sampler, Startup};

const TAG: u64 = 0xc3a5;
/// σ·sqrt(largest eigenvalue) below this (in the unit cube): converged.
const TOL_X: f64 = 1e-9;
/// ... above this: diverged (the cube is 1 wide).
const TOL_UP_X: f64 = 10.0;
const TOL_FUN: f64 = 1e-12;
const MAX_CONDITION: f64 = 1e14;

pub struct CmaesSampler {
    space: UnitSpace,
    seed: u64,
    sigma0: f64,
    lambda0: usize,
    ipop: bool,
}

impl CmaesSampler {
    pub fn new(study: &Study, seed: u64, sigma0: f64, popsize: Option<u32>, ipop: bool) -> Self {
        let space = UnitSpace::new(study);
        let n = space.dim().max(1);
        let default = 4 + (3.0 * (n as f64).ln()).floor() as usize;
        let repeats = study.repeats.max(1);
        let batch = match study.mode {
            Mode::Sync { batch } if batch % repeats == 0 && batch / repeats >= 2 => {
                Some((batch / repeats) as usize)
            }
            _ => None,
        };
        let lambda0 = popsize
            .map(|p| p as usize)
            .or(batch)
            .unwrap_or(default)
            .max(2);
        CmaesSampler {
            space,
            seed,
            sigma0,
            lambda0,
            ipop,
        }
    }

    /// The population of the first run.
    pub fn popsize(&self) -> usize {
        self.lambda0
    }
}

/// One member's recorded outcome: its setting and mean loss.
struct Entry {
    params: Params,
    x: Vec<f64>,
    loss: Option<f64>,
}

impl Sampler for CmaesSampler {
    fn startup(&self) -> Option<Startup> {
        Some(Startup {
            settings: self.lambda0 as u64,
            field: "sampler.popsize",
            what: "CMA-ES's first generation (`sampler.popsize`, by default the sync batch)".into(),
            alone: "CMA-ES is then a random search around the centre of the space",
        })
    }

    fn propose(&mut self, config: u64, history: &[Observation], pending: &[Params]) -> Proposal {
        let n = self.space.dim();
        if n == 0 {
            return Proposal::from(Source::Startup, self.space.params_at(&[]));
        }
        // Per config: its setting and mean loss over repeats (None if no
        // repeat produced one).
        let mut sums: BTreeMap<u64, (f64, usize)> = BTreeMap::new();
        let mut entries: BTreeMap<u64, Entry> = BTreeMap::new();
        for p in canonical(&self.space, history) {
            let s = sums.entry(p.config).or_insert((0.0, 0));
            if let Some(l) = p.loss {
                s.0 += l;
                s.1 += 1;
            }
            let params = history[p.index].params.clone();
            entries.entry(p.config).or_insert(Entry {
                params,
                x: p.x,
                loss: None,
            });
        }
        for (c, e) in entries.iter_mut() {
            let (sum, k) = sums[c];
            e.loss = (k > 0).then(|| sum / k as f64);
        }
        // Settings already proposed, for avoiding exact duplicates: a
        // finished one counts for members after it, a pending one always.
        let mut taken: HashMap<String, u64> = HashMap::new();
        for (c, e) in &entries {
            taken.entry(key(&e.params)).or_insert(*c);
        }
        for p in pending {
            taken.insert(key(p), 0);
        }

        let mut run = Run::new(n, self.lambda0, self.sigma0, vec![0.5; n], 0);
        let mut start: u64 = 0;
        let mut gen: u64 = 0;
        loop {
            let lam = run.lambda as u64;
            if config < start + lam {
                let (_, p) = self.draw(&run, gen, config - start, |c| taken.contains_key(&key(c)));
                // Nothing learned yet in this run: its first distribution.
                let source = if run.gen == 0 {
                    Source::Startup
                } else {
                    Source::Model
                };
                return Proposal::from(source, p);
            }
            // Replay the generation [start, start + λ), all before `config`.
            let mut xs = Vec::with_capacity(run.lambda);
            let mut losses = Vec::with_capacity(run.lambda);
            let mut seen = 0;
            let mut settings = Vec::with_capacity(run.lambda);
            for j in 0..lam {
                let c = start + j;
                let (x, p) = self.draw(&run, gen, j, |q| {
                    taken.get(&key(q)).is_some_and(|&tc| tc < c)
                });
                match entries.get(&c) {
                    Some(e) => {
                        seen += 1;
                        if p == e.params {
                            xs.push(x);
                        } else {
                            xs.push(e.x.clone());
                        }
                        losses.push(e.loss);
                        settings.push(key(&e.params));
                    }
                    None => {
                        // Pending (or lost): the liar, worst of its generation.
                        xs.push(x);
                        losses.push(None);
                        settings.push(key(&p));
                    }
                }
            }
            let complete = seen == run.lambda;
            let informative = losses.iter().any(|l| l.is_some());
            if informative && (complete || seen >= run.mu) {
                run.tell(&xs, &losses);
            }
            start += lam;
            gen += 1;
            // A generation that failed entirely teaches nothing: start over.
            if complete && self.ipop && (!informative || run.should_restart(&losses, &settings)) {
                let restart = run.restart + 1;
                let mut rng = unit::rng(&[TAG, self.seed, u64::MAX, restart as u64]);
                let mean = (0..n).map(|_| rng.random::<f64>()).collect();
                run = Run::new(n, run.lambda * 2, self.sigma0, mean, restart);
                gen = 0;
            }
        }
    }
}

impl CmaesSampler {
    /// Member `j` of generation `gen` of `run`: its unit point and setting.
    /// Redraws from the same stream while the point leaves the cube or its
    /// setting is `taken`.
    fn draw(
        &self,
        run: &Run,
        gen: u64,
        j: u64,
        taken: impl Fn(&Params) -> bool,
    ) -> (Vec<f64>, Params) {
        let mut rng = unit::rng(&[TAG, self.seed, run.restart as u64, gen, j]);
        let mut first = None;
        for _ in 0..32 {
            let x = run.sample(&mut rng);
            let p = self.space.params_at(&x);
            if !taken(&p) {
                return (x, p);
            }
            first.get_or_insert((x, p));
        }
        first.expect("drew at least once")
    }
}

fn key(p: &Params) -> String {
    serde_json::to_string(p).unwrap_or_default()
}

/// One CMA-ES run (between restarts).
struct Run {
    n: usize,
    lambda: usize,
    mu: usize,
    weights: Vec<f64>,
    mueff: f64,
    cs: f64,
    ds: f64,
    cc: f64,
    c1: f64,
    cmu: f64,
    chi_n: f64,
    mean: Vec<f64>,
    sigma: f64,
    /// Covariance, and its eigendecomposition C = B diag(d²) Bᵀ.
    c: Vec<Vec<f64>>,
    b: Vec<Vec<f64>>,
    d: Vec<f64>,
    pc: Vec<f64>,
    ps: Vec<f64>,
    gen: u64,
    restart: u32,
    /// Best loss of each generation (for the stall criteria).
    best: Vec<f64>,
}

impl Run {
    fn new(n: usize, lambda: usize, sigma: f64, mean: Vec<f64>, restart: u32) -> Run {
        // Hansen (2016), "The CMA evolution strategy: a tutorial": positive
        // recombination weights for the best μ, negative (active CMA) ones
        // for the rest, scaled so that C stays positive definite.
        let mu = lambda / 2;
        let nf = n as f64;
        let raw: Vec<f64> = (1..=lambda)
            .map(|i| ((lambda as f64 + 1.0) / 2.0).ln() - (i as f64).ln())
            .collect();
        let (pos, neg) = raw.split_at(mu);
        let sum_pos: f64 = pos.iter().sum();
        let sum_neg: f64 = neg.iter().filter(|w| **w < 0.0).map(|w| -w).sum();
        let mueff = sum_pos * sum_pos / pos.iter().map(|w| w * w).sum::<f64>();
        let neg_sq: f64 = neg.iter().filter(|w| **w < 0.0).map(|w| w * w).sum();
        let mueff_neg = if neg_sq > 0.0 {
            sum_neg * sum_neg / neg_sq
        } else {
            0.0
        };
        let cs = (mueff + 2.0) / (nf + mueff + 5.0);
        let ds = 1.0 + 2.0 * (((mueff - 1.0) / (nf + 1.0)).sqrt() - 1.0).max(0.0) + cs;
        let cc = (4.0 + mueff / nf) / (nf + 4.0 + 2.0 * mueff / nf);
        let c1 = 2.0 / ((nf + 1.3).powi(2) + mueff);
        let cmu = (1.0 - c1).min(2.0 * (mueff - 2.0 + 1.0 / mueff) / ((nf + 2.0).powi(2) + mueff));
        let neg_scale = if cmu > 0.0 && sum_neg > 0.0 {
            let alpha_mu = 1.0 + c1 / cmu;
            let alpha_mueff = 1.0 + 2.0 * mueff_neg / (mueff + 2.0);
            let alpha_posdef = (1.0 - c1 - cmu) / (nf * cmu);
            alpha_mu.min(alpha_mueff).min(alpha_posdef) / sum_neg
        } else {
            0.0
        };
        let weights: Vec<f64> = raw
            .iter()
            .map(|&w| if w >= 0.0 { w / sum_pos } else { w * neg_scale })
            .collect();
        let chi_n = nf.sqrt() * (1.0 - 1.0 / (4.0 * nf) + 1.0 / (21.0 * nf * nf));
        let eye = |i: usize, j: usize| if i == j { 1.0 } else { 0.0 };
        Run {
            n,
            lambda,
            mu,
            weights,
            mueff,
            cs,
            ds,
            cc,
            c1,
            cmu,
            chi_n,
            mean,
            sigma,
            c: (0..n)
                .map(|i| (0..n).map(|j| eye(i, j)).collect())
                .collect(),
            b: (0..n)
                .map(|i| (0..n).map(|j| eye(i, j)).collect())
                .collect(),
            d: vec![1.0; n],
            pc: vec![0.0; n],
            ps: vec![0.0; n],
            gen: 0,
            restart,
            best: Vec::new(),
        }
    }

    /// m + σ B D z, redrawn while outside the cube, then clipped.
    fn sample(&self, rng: &mut impl Rng) -> Vec<f64> {
        let mut x = vec![0.0; self.n];
        for _ in 0..100 {
            let z: Vec<f64> = (0..self.n).map(|i| self.d[i] * unit::normal(rng)).collect();
            for (i, xi) in x.iter_mut().enumerate() {
                *xi = self.mean[i]
                    + self.sigma * (0..self.n).map(|k| self.b[i][k] * z[k]).sum::<f64>();
            }
            if x.iter().all(|v| (0.0..=1.0).contains(v)) {
                return x;
            }
        }
        x.iter().map(|v| v.clamp(0.0, 1.0)).collect()
    }

    /// The (μ/μ_w, λ) update from one generation; a missing loss ranks last.
    fn tell(&mut self, xs: &[Vec<f64>], losses: &[Option<f64>]) {
        let n = self.n;
        let mut order: Vec<usize> = (0..xs.len()).collect();
        order.sort_by(|&a, &b| cmp_loss(losses[a], losses[b]).then(a.cmp(&b)));
        if let Some(best) = losses[order[0]] {
            self.best.push(best);
        }
        let old = self.mean.clone();
        let ys: Vec<Vec<f64>> = order
            .iter()
            .map(|&i| (0..n).map(|k| (xs[i][k] - old[k]) / self.sigma).collect())
            .collect();
        let yw: Vec<f64> = (0..n)
            .map(|k| {
                ys[..self.mu]
                    .iter()
                    .zip(&self.weights)
                    .map(|(y, w)| w * y[k])
                    .sum()
            })
            .collect();
        for k in 0..n {
            self.mean[k] = old[k] + self.sigma * yw[k];
        }
        let inv_sqrt_y = self.inv_sqrt(&yw);
        let a = (self.cs * (2.0 - self.cs) * self.mueff).sqrt();
        for (p, v) in self.ps.iter_mut().zip(&inv_sqrt_y) {
            *p = (1.0 - self.cs) * *p + a * v;
        }
        self.gen += 1;
        let ps_norm = self.ps.iter().map(|v| v * v).sum::<f64>().sqrt();
        let hsig = ps_norm
            / (1.0 - (1.0 - self.cs).powi(2 * self.gen.min(1 << 20) as i32)).sqrt()
            / self.chi_n
            < 1.4 + 2.0 / (n as f64 + 1.0);
        let hs = if hsig { 1.0 } else { 0.0 };
        let ac = (self.cc * (2.0 - self.cc) * self.mueff).sqrt();
        for (p, v) in self.pc.iter_mut().zip(&yw) {
            *p = (1.0 - self.cc) * *p + hs * ac * v;
        }
        // Negative weights act on y rescaled to Mahalanobis length √n.
        let wo: Vec<f64> = ys
            .iter()
            .zip(&self.weights)
            .map(|(y, &w)| {
                if w >= 0.0 {
                    w
                } else {
                    let m2: f64 = self.inv_sqrt(y).iter().map(|v| v * v).sum();
                    w * n as f64 / m2.max(1e-300)
                }
            })
            .collect();
        let sum_w: f64 = self.weights.iter().sum();
        let keep =
            1.0 - self.c1 - self.cmu * sum_w + (1.0 - hs) * self.c1 * self.cc * (2.0 - self.cc);
        for i in 0..n {
            for j in 0..=i {
                let rank_mu: f64 = ys.iter().zip(&wo).map(|(y, w)| w * y[i] * y[j]).sum();
                let v =
                    keep * self.c[i][j] + self.c1 * self.pc[i] * self.pc[j] + self.cmu * rank_mu;
                self.c[i][j] = v;
                self.c[j][i] = v;
            }
        }
        self.sigma *= ((self.cs / self.ds) * (ps_norm / self.chi_n - 1.0))
            .min(1.0)
            .exp();
        let (vals, vecs) = jacobi_eigen(&self.c);
        self.d = vals.iter().map(|v| v.max(1e-300).sqrt()).collect();
        self.b = vecs;
    }

    /// C^(-1/2) y = B D⁻¹ Bᵀ y.
    fn inv_sqrt(&self, y: &[f64]) -> Vec<f64> {
        let n = self.n;
        let bty: Vec<f64> = (0..n)
            .map(|k| (0..n).map(|i| self.b[i][k] * y[i]).sum::<f64>() / self.d[k])
            .collect();
        (0..n)
            .map(|i| (0..n).map(|k| self.b[i][k] * bty[k]).sum())
            .collect()
    }

    fn should_restart(&self, losses: &[Option<f64>], settings: &[String]) -> bool {
        let max_d = self.d.iter().copied().fold(0.0, f64::max);
        let min_d = self.d.iter().copied().fold(f64::INFINITY, f64::min);
        if self.sigma * max_d < TOL_X || self.sigma * max_d > TOL_UP_X {
            return true;
        }
        if (max_d / min_d).powi(2) > MAX_CONDITION {
            return true;
        }
        if settings.iter().all(|s| *s == settings[0]) {
            return true;
        }
        let finite: Vec<f64> = losses.iter().flatten().copied().collect();
        if finite.len() == losses.len() {
            let (lo, hi) = finite
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v), b.max(v))
                });
            if hi - lo <= TOL_FUN * lo.abs().max(1.0) {
                return true;
            }
        }
        let window = 10 + (30.0 * self.n as f64 / self.lambda as f64).ceil() as usize;
        if self.best.len() > window {
            let recent = &self.best[self.best.len() - window..];
            let before = self.best[..self.best.len() - window]
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min);
            let now = recent.iter().copied().fold(f64::INFINITY, f64::min);
            if now >= before {
                return true;
            }
        }
        false
    }
}

/// Eigenvalues and eigenvectors (as columns) of a symmetric matrix, by
/// cyclic Jacobi rotations.
///
/// Kept our own rather than `nalgebra::SymmetricEigen`: nalgebra
/// tridiagonalises and runs implicit QR, which returns the eigenpairs in
/// another order, with other signs and other rounding. Every CMA-ES sample
/// is `mean + sigma * B * D * z`, so any of those changes every proposal
/// after the first generation and breaks the rule that the same study and
/// seed give bit-identical settings (a CMA-ES study continued with a new
/// binary would propose other settings than the old one would have). The matrices are tiny (one
/// row per searched parameter) and this is 40 lines, tested below.
fn jacobi_eigen(m: &[Vec<f64>]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n = m.len();
    let mut a: Vec<Vec<f64>> = m.to_vec();
    let mut v: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
        .collect();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum();
        let diag: f64 = (0..n).map(|i| a[i][i] * a[i][i]).sum();
        if off <= 1e-30 * diag || off == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if a[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                // The smaller root of t² + 2θt - 1 = 0 (t = 1 at θ = 0).
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for row in a.iter_mut() {
                    let (akp, akq) = (row[p], row[q]);
                    row[p] = c * akp - s * akq;
                    row[q] = s * akp + c * akq;
                }
                let (rp, rq) = (a[p].clone(), a[q].clone());
                for (k, (apk, aqk)) in rp.into_iter().zip(rq).enumerate() {
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
                for row in v.iter_mut() {
                    let (vkp, vkq) = (row[p], row[q]);
                    row[p] = c * vkp - s * vkq;
                    row[q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i][i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_reconstructs_the_matrix() {
        let m = vec![
            vec![4.0, 1.0, 0.5],
            vec![1.0, 3.0, 0.2],
            vec![0.5, 0.2, 1.0],
        ];
        let (vals, vecs) = jacobi_eigen(&m);
        for i in 0..3 {
            for j in 0..3 {
                let r: f64 = (0..3).map(|k| vecs[i][k] * vals[k] * vecs[j][k]).sum();
                assert!((r - m[i][j]).abs() < 1e-12, "{i},{j}: {r} vs {}", m[i][j]);
            }
        }
    }

    #[test]
    fn converges_on_a_sphere() {
        // Plain CMA-ES on (x - 0.3)² in 5-D: the mean reaches the optimum.
        let n = 5;
        let mut run = Run::new(n, 8, 0.3, vec![0.5; n], 0);
        let mut rng = unit::rng(&[1]);
        for _ in 0..150 {
            let xs: Vec<Vec<f64>> = (0..8).map(|_| run.sample(&mut rng)).collect();
            let ls: Vec<Option<f64>> = xs
                .iter()
                .map(|x| Some(x.iter().map(|v| (v - 0.3).powi(2)).sum()))
                .collect();
            run.tell(&xs, &ls);
        }
        let err: f64 = run
            .mean
            .iter()
            .map(|v| (v - 0.3).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(err < 1e-6, "{err}");
    }
}
