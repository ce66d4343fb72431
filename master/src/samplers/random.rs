//! Random search: independent uniform draws in the unit cube.

use hps_common::{ParamSpec, Params, Study};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Observation, Proposal, Sampler};

/// Setting `c` is drawn from its own ChaCha stream (`seed`, stream `c`), so
/// it does not depend on which settings were drawn before it. Parameters
/// draw their coordinate in name order; fixed parameters draw nothing.
pub struct RandomSampler {
    space: Vec<(String, ParamSpec)>,
    seed: u64,
}

impl RandomSampler {
    pub fn new(study: &Study, seed: u64) -> Self {
        RandomSampler {
            space: study
                .space
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            seed,
        }
    }

    /// The unit-cube point behind setting `config` (searched dimensions in
    /// name order). Scenario 5's analysis uses these `x` values directly.
    pub fn unit_point(&self, config: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(config);
        self.space
            .iter()
            .filter(|(_, s)| s.is_searched())
            .map(|_| rng.random::<f64>())
            .collect()
    }
}

impl Sampler for RandomSampler {
    fn propose(&mut self, config: u64, _history: &[Observation], _pending: &[Params]) -> Proposal {
        let mut xs = self.unit_point(config).into_iter();
        let params = self
            .space
            .iter()
            .map(|(name, spec)| {
                let u = if spec.is_searched() {
                    xs.next().unwrap_or(0.0)
                } else {
                    0.0
                };
                (name.clone(), spec.from_unit(u))
            })
            .collect();
        Proposal::plain(params)
    }
}
