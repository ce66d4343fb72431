//! Samplers propose settings. One file per sampler, all behind [`Sampler`].
//!
//! A sampler is asked for setting number `config` (0-based) and sees every
//! finished observation. Grid and random search ignore the history and are
//! pure functions of `(seed, config)`, which makes a resumed master propose
//! exactly what an uninterrupted one would have.

use hps_common::{Params, SamplerSpec, Study, TrialStatus};

mod grid;
mod random;

pub use grid::GridSampler;
pub use random::RandomSampler;

/// A finished trial, as samplers see it.
#[derive(Debug, Clone)]
pub struct Observation {
    pub config: u64,
    pub params: Params,
    pub status: TrialStatus,
    /// The objective, already oriented so that lower is better.
    pub loss: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    #[error("study.json: field `{field}`: {message}")]
    Config { field: String, message: String },
}

pub trait Sampler: Send {
    fn name(&self) -> &'static str;

    /// The parameters of setting number `config`. Must be deterministic in
    /// `(config, history)` for a given study.
    fn propose(&mut self, config: u64, history: &[Observation]) -> Params;
}

/// Build the sampler the study asks for.
pub fn build(study: &Study) -> Result<Box<dyn Sampler>, SamplerError> {
    Ok(match &study.sampler {
        SamplerSpec::Grid { shuffle, seed } => Box::new(GridSampler::new(study, *shuffle, *seed)?),
        SamplerSpec::Random { seed } => Box::new(RandomSampler::new(study, *seed)),
    })
}

#[cfg(test)]
mod tests {
    //! The suite every sampler must pass.
    use super::*;
    use hps_common::ParamSpec;
    use proptest::prelude::*;
    use serde_json::Value;
    use std::collections::BTreeSet;

    fn study(space: &str, sampler: &str) -> Study {
        let text = format!(
            r#"{{"format_version":1,"name":"t","space":{space},
              "objective":{{"metric":"val_error","direction":"minimize"}},
              "sampler":{sampler},"budget":{{"trials":18}},"trainer":{{"kind":"cnn"}}}}"#
        );
        hps_common::parse_versioned(std::path::Path::new("study.json"), &text).unwrap()
    }

    const SPACE: &str = r#"{
        "lr": {"type":"float","low":1e-4,"high":1,"log":true,"grid":4},
        "nf": {"type":"int","low":8,"high":64,"log":true},
        "batch_size": {"type":"categorical","choices":[16,32,64]},
        "momentum": {"type":"fixed","value":0.9}
    }"#;

    fn grid_space() -> &'static str {
        r#"{
        "lr": {"type":"float","low":1e-3,"high":1e-1,"log":true,"grid":3},
        "nf": {"type":"int","low":1,"high":3},
        "batch_size": {"type":"categorical","choices":[16,32]},
        "momentum": {"type":"fixed","value":0.9}
        }"#
    }

    fn samplers(seed: u64) -> Vec<(Study, Box<dyn Sampler>)> {
        let specs = [
            (grid_space().to_string(), r#"{"kind":"grid"}"#.to_string()),
            (grid_space().to_string(), format!(r#"{{"kind":"grid","shuffle":true,"seed":{seed}}}"#)),
            (SPACE.to_string(), format!(r#"{{"kind":"random","seed":{seed}}}"#)),
        ];
        specs
            .iter()
            .map(|(space, s)| {
                let st = study(space, s);
                let sampler = build(&st).unwrap();
                (st, sampler)
            })
            .collect()
    }

    fn in_bounds(spec: &ParamSpec, v: &Value) -> bool {
        match spec {
            ParamSpec::Float { low, high, .. } => v.as_f64().is_some_and(|x| x >= *low && x <= *high),
            ParamSpec::Int { low, high, .. } => v.as_i64().is_some_and(|x| x >= *low && x <= *high),
            ParamSpec::Categorical { choices } => choices.contains(v),
            ParamSpec::Fixed { value } => value == v,
            ParamSpec::Transform { .. } => v.is_number(),
        }
    }

    proptest! {
        #[test]
        fn every_sampler_stays_in_bounds(seed in 0u64..1000) {
            for (st, mut s) in samplers(seed) {
                for c in 0..18 {
                    let p = s.propose(c, &[]);
                    prop_assert_eq!(p.len(), st.space.len());
                    for (name, spec) in &st.space {
                        prop_assert!(in_bounds(spec, &p[name]), "{} {}={}", s.name(), name, p[name]);
                    }
                }
            }
        }

        #[test]
        fn same_seed_same_sequence(seed in 0u64..1000) {
            for ((_, mut a), (_, mut b)) in samplers(seed).into_iter().zip(samplers(seed)) {
                for c in 0..18 {
                    prop_assert_eq!(a.propose(c, &[]), b.propose(c, &[]));
                }
            }
        }

        #[test]
        fn proposals_do_not_depend_on_call_order(seed in 0u64..1000) {
            // What a resumed master relies on: setting c is the same whether
            // or not settings 0..c were proposed by this process.
            for ((_, mut a), (_, mut b)) in samplers(seed).into_iter().zip(samplers(seed)) {
                let forward: Vec<Params> = (0..10).map(|c| a.propose(c, &[])).collect();
                for c in (0..10).rev() {
                    prop_assert_eq!(&b.propose(c, &[]), &forward[c as usize]);
                }
            }
        }

        #[test]
        fn random_log_scale_is_uniform_in_log_space(seed in 0u64..200) {
            // Over many draws, about half of a log-uniform [1e-4, 1] lands below 1e-2.
            let st = study(SPACE, &format!(r#"{{"kind":"random","seed":{seed}}}"#));
            let mut s = build(&st).unwrap();
            let below = (0..400).filter(|c| s.propose(*c, &[])["lr"].as_f64().unwrap() < 1e-2).count();
            prop_assert!((120..280).contains(&below), "{below} of 400 below 1e-2");
        }
    }

    #[test]
    fn grid_is_the_full_cartesian_product() {
        for shuffle in [false, true] {
            let st = study(grid_space(), &format!(r#"{{"kind":"grid","shuffle":{shuffle},"seed":3}}"#));
            let mut s = build(&st).unwrap();
            let n = st.grid_size().unwrap();
            assert_eq!(n, 3 * 3 * 2);
            let seen: BTreeSet<String> = (0..n).map(|c| serde_json::to_string(&s.propose(c, &[])).unwrap()).collect();
            assert_eq!(seen.len() as u64, n, "shuffle={shuffle}: every grid point exactly once");
        }
    }

    #[test]
    fn grid_order_is_by_name_last_fastest() {
        let st = study(grid_space(), r#"{"kind":"grid"}"#);
        let mut s = build(&st).unwrap();
        // Names sorted: batch_size, lr, momentum, nf — nf varies fastest.
        let p0 = s.propose(0, &[]);
        let p1 = s.propose(1, &[]);
        let p3 = s.propose(3, &[]);
        assert_eq!((p0["nf"].as_i64(), p1["nf"].as_i64(), p3["nf"].as_i64()), (Some(1), Some(2), Some(1)));
        assert_eq!(p0["batch_size"], p3["batch_size"]);
        assert_ne!(p0["lr"], p3["lr"]);
        assert_eq!(s.propose(9, &[])["batch_size"], Value::from(32));
    }
}
