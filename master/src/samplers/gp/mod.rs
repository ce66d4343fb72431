//! Gaussian-process Bayesian optimisation, as Optuna's `GPSampler`.
//!
//! **Model.** A GP on the unit cube of the searched parameters (so a log
//! scale is already a log coordinate, and an int is relaxed to its
//! coordinate and rounded by `from_unit`), with a Matérn-5/2 ARD kernel
//! whose categorical dimensions are an overlap term ([`kernel`]), fitted to
//! the standardised losses by maximising the marginal likelihood with weak
//! priors ([`fit`]).
//!
//! **Trials without a loss.** Failed, diverged and pruned trials, and any
//! non-finite objective, are imputed with the worst loss of the complete
//! trials, so the GP learns to stay away from where they happened.
//!
//! **Proposal.** The maximiser of log expected improvement over the best
//! loss observed ([`acquisition`]): a Sobol sweep, then local refinement.
//! A proposal equal to a finished or pending setting (possible on discrete
//! spaces), or within 1e-5 of one in the unit cube, is skipped for the
//! next-best candidate. A coordinate on a bound is moved inside by less
//! than 1e-6 of its range, seeded by the config ([`GpSampler::off_bounds`]).
//!
//! **Parallel workers.** Pending settings are fantasised with the kriging
//! believer: they join the data with the posterior mean as their value,
//! which leaves the mean unchanged and collapses the variance, and so the
//! expected improvement, around them; a fantasy believed below the best
//! loss is the incumbent (otherwise the improvement it promises would
//! survive the collapse, and the next proposal land beside it, as
//! `bench/samplers` counted). Async proposals therefore avoid the
//! running settings, and a sync batch is a sequence of such fantasies (the
//! master passes the batch's earlier members as pending).
//!
//! **Start-up and cost.** The first `startup` settings, and any later one
//! while fewer than two trials have a loss, are the scrambled Sobol
//! sequence. The hyperparameters are fitted on at most [`FIT_CAP`]
//! observations (the best half of that, then an even spread of the rest);
//! the posterior uses every observation.
//!
//! **Determinism.** A proposal is a function of `(seed, config, history as
//! a set, pending as a set)`: the history is put in canonical order, pending
//! settings are sorted, the fit starts from fixed points and the sweep is
//! seeded by `(seed, config)`, so a resumed master proposes the same.

mod acquisition;
mod fit;
mod kernel;
mod optim;

use hps_common::{Params, Source, Study};
use nalgebra::DVector;

use super::quasi::Sobol;
use super::unit::{self, canonical, Kind, Taken, UnitSpace};
use super::{Observation, Proposal, Sampler, Startup};
use acquisition::Effort;
use fit::Posterior;

const TAG: u64 = 0x6770;
/// Largest number of observations the hyperparameters are fitted on.
pub const FIT_CAP: usize = 200;
/// Smallest distance (in the unit cube) between a proposal and a finished
/// or pending setting: the GP's noise floor leaves a little expected
/// improvement right next to the best setting, where an evaluation teaches
/// nothing.
const MIN_GAP: f64 = 1e-5;
/// The acquisition search.
const EFFORT: Effort = Effort {
    sweep: 1024,
    starts: 5,
    iters: 30,
};

pub struct GpSampler {
    space: UnitSpace,
    kinds: Vec<Kind>,
    seed: u64,
    startup: u64,
    sobol: Sobol,
    /// Whether the fit cap has been logged.
    told_cap: bool,
}

impl GpSampler {
    pub fn new(study: &Study, seed: u64, startup: u32) -> Self {
        let space = UnitSpace::new(study);
        GpSampler {
            kinds: space.kinds(),
            sobol: Sobol::new(space.dim(), true, seed),
            space,
            seed,
            startup: startup as u64,
            told_cap: false,
        }
    }

    fn startup_point(&self, config: u64) -> Proposal {
        Proposal::from(
            Source::Startup,
            self.space.params_at(&self.sobol.point(config)),
        )
    }
}

/// The observations as the GP sees them: unit points and standardised
/// losses, trials without a loss imputed as the worst.
struct Data {
    x: Vec<Vec<f64>>,
    y: Vec<f64>,
}

impl Data {
    /// `None` while fewer than two trials have a loss.
    fn new(pts: &[unit::Point]) -> Option<Self> {
        let losses: Vec<f64> = pts.iter().filter_map(|p| p.loss).collect();
        if losses.len() < 2 {
            return None;
        }
        let worst = losses.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let raw: Vec<f64> = pts.iter().map(|p| p.loss.unwrap_or(worst)).collect();
        let n = raw.len() as f64;
        let mean = raw.iter().sum::<f64>() / n;
        let sd = (raw.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        let sd = if sd > 1e-12 && sd.is_finite() {
            sd
        } else {
            1.0
        };
        Some(Data {
            x: pts.iter().map(|p| p.x.clone()).collect(),
            y: raw.iter().map(|v| (v - mean) / sd).collect(),
        })
    }

    /// Indices of the observations the hyperparameters are fitted on: all
    /// of them up to `cap`; beyond, the best `cap / 2` and an even spread of
    /// the others (in canonical order).
    fn fit_subset(&self, cap: usize) -> Vec<usize> {
        let n = self.y.len();
        if n <= cap {
            return (0..n).collect();
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| self.y[a].total_cmp(&self.y[b]).then(a.cmp(&b)));
        let mut keep = order[..cap / 2].to_vec();
        let mut rest = order[cap / 2..].to_vec();
        rest.sort_unstable();
        let take = cap - keep.len();
        keep.extend((0..take).map(|i| rest[i * rest.len() / take]));
        keep.sort_unstable();
        keep
    }
}

impl Sampler for GpSampler {
    fn startup(&self) -> Option<Startup> {
        Some(Startup {
            settings: self.startup,
            field: "sampler.startup",
            what: "the GP's start-up design (Sobol points)".into(),
            alone: "gp is then a quasi-random search",
        })
    }

    fn propose(&mut self, config: u64, history: &[Observation], pending: &[Params]) -> Proposal {
        if self.space.dim() == 0 {
            return Proposal::from(Source::Startup, self.space.params_at(&[]));
        }
        let pts = canonical(&self.space, history);
        let data = match Data::new(&pts) {
            Some(d) if config >= self.startup => d,
            _ => return self.startup_point(config),
        };
        if data.y.len() > FIT_CAP && !self.told_cap {
            tracing::info!(
                observations = data.y.len(),
                "gp: fitting the GP's hyperparameters on {FIT_CAP} of the observations (the best half and a spread of the rest); the posterior uses all"
            );
            self.told_cap = true;
        }
        let taken = Taken::new(history.iter().map(|o| &o.params).chain(pending));
        match self.model_proposal(config, &data, pending, &taken) {
            Some(p) => Proposal::from(Source::Model, p),
            // The model could not be factorised even with jitter.
            None => self.startup_point(config),
        }
    }
}

impl GpSampler {
    /// `x` with each numeric coordinate that lies on a bound moved inside
    /// by a random amount below 1e-6 (of the range). Log EI often peaks on
    /// a bound early on; settings of one batch that the master proposed
    /// without each other as pending would otherwise coincide there.
    fn off_bounds(&self, x: &[f64], rng: &mut impl rand::Rng) -> Vec<f64> {
        x.iter()
            .zip(&self.kinds)
            .map(|(&u, k)| {
                let step = 1e-6 * rng.random::<f64>();
                match k {
                    Kind::Numeric if u <= 0.0 => step,
                    Kind::Numeric if u >= 1.0 => 1.0 - step,
                    _ => u,
                }
            })
            .collect()
    }

    /// The model's proposal: fit, fantasise the pending settings, maximise
    /// log EI, skip settings already taken.
    fn model_proposal(
        &self,
        config: u64,
        data: &Data,
        pending: &[Params],
        taken: &Taken,
    ) -> Option<Params> {
        let subset = data.fit_subset(FIT_CAP);
        let fx: Vec<Vec<f64>> = subset.iter().map(|&i| data.x[i].clone()).collect();
        let fy = DVector::from_iterator(subset.len(), subset.iter().map(|&i| data.y[i]));
        let h = fit::fit(&fx, &fy, &self.kinds);
        let y = DVector::from_vec(data.y.clone());
        let real = Posterior::new(h.clone(), data.x.clone(), &y)?;
        let (ib, best) = data
            .y
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, v)| (i, *v))?;
        let mut fantasies: Vec<Vec<f64>> = pending
            .iter()
            .filter_map(|p| self.space.unit_of(p))
            .collect();
        fantasies.sort_by(|a, b| {
            a.iter()
                .zip(b)
                .map(|(u, v)| u.total_cmp(v))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let mut seen = data.x.clone();
        seen.extend(fantasies.iter().cloned());
        // The believer believes its fantasies: they are data, and one
        // believed below the best objective is the incumbent log EI
        // improves on. Against the real best alone, a pending setting
        // believed better keeps an improvement of (best - belief) with no
        // variance left, and the next proposal lands next to it: 4
        // workers evaluating nearly the same point.
        let mut best = best;
        let model = if fantasies.is_empty() {
            real
        } else {
            let believed = real.predict(&fantasies);
            let mut x = data.x.clone();
            x.extend(fantasies);
            let mut y = data.y.clone();
            y.extend(believed.iter().map(|(m, _)| *m));
            best = y.iter().copied().fold(best, f64::min);
            Posterior::new(h, x, &DVector::from_vec(y))?
        };
        let cands = acquisition::candidates(
            &model,
            best,
            &data.x[ib],
            &self.kinds,
            unit::mix(&[TAG, self.seed, config]),
            EFFORT,
        );
        Some(self.pick(config, &cands, &seen, taken))
    }

    /// The best candidate that is neither a setting already taken nor
    /// within [`MIN_GAP`] of a finished or pending one (in the unit cube,
    /// on the same categorical choices); failing that, the best one not
    /// taken, failing that the best.
    fn pick(
        &self,
        config: u64,
        cands: &[(f64, Vec<f64>)],
        seen: &[Vec<f64>],
        taken: &Taken,
    ) -> Params {
        let mut rng = unit::rng(&[TAG, self.seed, config, 2]);
        let mut fallback: Option<Params> = None;
        let mut first: Option<Params> = None;
        for (_, x) in cands {
            let p = self.space.params_at(&self.off_bounds(x, &mut rng));
            if taken.contains(&p) {
                first.get_or_insert(p);
                continue;
            }
            let near = self
                .space
                .unit_of(&p)
                .is_some_and(|u| seen.iter().any(|s| self.close(&u, s)));
            if !near {
                return p;
            }
            fallback.get_or_insert(p);
        }
        fallback
            .or(first)
            .unwrap_or_else(|| self.space.params_at(&self.sobol.point(config)))
    }

    /// Whether `a` and `b` are on the same choices and within [`MIN_GAP`].
    fn close(&self, a: &[f64], b: &[f64]) -> bool {
        let mut d2 = 0.0;
        for ((&u, &v), k) in a.iter().zip(b).zip(&self.kinds) {
            match k {
                Kind::Numeric => d2 += (u - v) * (u - v),
                Kind::Categorical(n) => {
                    if kernel::choice(u, *n) != kernel::choice(v, *n) {
                        return false;
                    }
                }
            }
        }
        d2 < MIN_GAP * MIN_GAP
    }
}

#[cfg(test)]
mod tests;
