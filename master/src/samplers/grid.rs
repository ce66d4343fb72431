//! Exhaustive grid search in a fixed, documented order.

use hps_common::{FieldError, Params, Study};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use super::{Observation, Proposal, Sampler};

/// Largest grid that may be shuffled (the permutation is held in memory).
const MAX_SHUFFLED: u64 = 10_000_000;

/// Parameters are taken in name order and the last one varies fastest, like
/// nested for-loops. With `shuffle`, a seeded permutation of that order.
/// `budget.trials` may not exceed the grid (study validation), so the
/// modulo below only guards against misuse.
pub struct GridSampler {
    axes: Vec<(String, Vec<Value>)>,
    size: u64,
    order: Option<Vec<u64>>,
}

impl GridSampler {
    /// Errors name the field of the study file at fault.
    pub fn new(study: &Study, shuffle: bool, seed: u64) -> Result<Self, FieldError> {
        let mut axes = Vec::new();
        for (name, spec) in &study.space {
            let values = spec
                .grid_values()
                .map_err(|message| FieldError::new(format!("space.{name}"), message.to_string()))?;
            axes.push((name.clone(), values));
        }
        let size = axes
            .iter()
            .map(|(_, v)| v.len() as u64)
            .product::<u64>()
            .max(1);
        let order = if shuffle {
            if size > MAX_SHUFFLED {
                return Err(FieldError::new(
                    "sampler.shuffle",
                    format!("a grid of {size} points is too large to shuffle (max {MAX_SHUFFLED})"),
                ));
            }
            let mut order: Vec<u64> = (0..size).collect();
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
            Some(order)
        } else {
            None
        };
        Ok(GridSampler { axes, size, order })
    }

    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Sampler for GridSampler {
    fn propose(&mut self, config: u64, _history: &[Observation], _pending: &[Params]) -> Proposal {
        let pos = config % self.size;
        let mut k = match &self.order {
            Some(o) => o[pos as usize],
            None => pos,
        };
        let mut params = Params::new();
        for (name, values) in self.axes.iter().rev() {
            let n = values.len() as u64;
            params.insert(name.clone(), values[(k % n) as usize].clone());
            k /= n;
        }
        Proposal::plain(params)
    }
}
