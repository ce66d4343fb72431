//! Samplers propose settings. One file per sampler, all behind [`Sampler`].
//!
//! A sampler is asked for setting number `config` (0-based). It sees every
//! finished observation and the parameters of every setting still pending
//! (proposed, no result yet). Every sampler is a function of
//! `(study, config, history, pending)` — grid and random search ignore the
//! last two; quasi-random ignores them too; TPE and CMA-ES learn from the
//! history and treat pending settings as constant liars, the GP as kriging
//! believers (at its posterior mean) — and none depends
//! on the order results arrived in. A resumed master, which passes the
//! history rebuilt from `results/`, therefore proposes exactly what an
//! uninterrupted one would have.
//!
//! Learning samplers work in the unit cube of the searched parameters (in
//! name order) and map points with [`hps_common::ParamSpec::from_unit`], so
//! ints, log scales and categoricals need no special cases (TPE models
//! categoricals as such).
//!
//! Samplers with a start-up design and a model (TPE, CMA-ES, GP) say which of
//! the two produced each proposal ([`Proposal::source`], recorded in the
//! setting) and how many settings their start-up design takes
//! ([`Sampler::startup`]), so that a budget the design swallows is
//! reported ([`startup_warning`]).

use std::path::Path;

use hps_common::{Params, SamplerSpec, Source, Study, TrialStatus};

mod auto;
mod cmaes;
mod gp;
mod grid;
mod quasi;
mod random;
mod tpe;
mod unit;

pub use auto::AutoSampler;
pub use cmaes::CmaesSampler;
pub use gp::GpSampler;
pub use grid::GridSampler;
pub use quasi::QuasiRandomSampler;
pub use random::RandomSampler;
pub use tpe::TpeSampler;

/// A finished trial, as samplers see it.
#[derive(Debug, Clone)]
pub struct Observation {
    pub config: u64,
    pub params: Params,
    pub status: TrialStatus,
    /// The objective, already oriented so that lower is better.
    pub loss: Option<f64>,
    /// The objective at the furthest step the trial reported, if any: what
    /// TPE ranks a pruned trial by.
    pub last_intermediate: Option<Intermediate>,
}

/// One intermediate value of the objective, oriented so that lower is
/// better; a non-finite value is `+inf`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Intermediate {
    pub step: u32,
    pub loss: f64,
}

/// What a sampler proposes.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub params: Params,
    /// For samplers with a start-up design and a model: which of the two
    /// produced `params`. `None` for the others.
    pub source: Option<Source>,
}

impl Proposal {
    /// A proposal of a sampler without a model (grid, random, quasi-random).
    pub fn plain(params: Params) -> Self {
        Proposal {
            params,
            source: None,
        }
    }

    pub fn from(source: Source, params: Params) -> Self {
        Proposal {
            params,
            source: Some(source),
        }
    }
}

/// The start-up design of a sampler with a model: the first `settings`
/// settings never come from the model. `field` is the study field that
/// sets it, `what` names the design in messages and `alone` says what
/// the sampler is when the design is all it proposes.
#[derive(Debug, Clone, PartialEq)]
pub struct Startup {
    pub settings: u64,
    pub field: &'static str,
    pub what: String,
    pub alone: &'static str,
}

/// The study's space or sampler settings do not suit the sampler; the
/// schema error names the study file and the field.
#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    #[error(transparent)]
    Config(#[from] hps_common::SchemaError),
}

/// A sampler; its name is the study's `sampler.kind` ([`SamplerSpec::name`]).
pub trait Sampler: Send {
    /// The parameters of setting number `config`.
    ///
    /// `history` holds every finished trial (repeats of a setting are
    /// separate observations), in any order; `pending` the parameters of
    /// the settings proposed but not finished. Must be deterministic in
    /// `(config, history as a set, pending)` for a given study.
    fn propose(&mut self, config: u64, history: &[Observation], pending: &[Params]) -> Proposal;

    /// The start-up design, for samplers that have one.
    fn startup(&self) -> Option<Startup> {
        None
    }
}

/// A warning when the sampler's start-up design is the whole budget, or
/// more than half of it: the model then proposes few settings or none.
/// Counted in settings (`budget.trials` divided by `repeats`).
pub fn startup_warning(study: &Study, sampler: &dyn Sampler) -> Option<String> {
    let startup = sampler.startup()?;
    let trials = study.total_trials().ok()?;
    let settings = trials.div_ceil(study.repeats.max(1) as u64);
    let from_model = settings.saturating_sub(startup.settings);
    let field = startup.field;
    if from_model == 0 {
        Some(format!(
            "{} takes {} settings, the whole budget of {settings}: no setting will come from the model ({}); lower `{field}` below {settings} or raise `budget.trials`",
            startup.what, startup.settings, startup.alone
        ))
    } else if startup.settings > from_model {
        Some(format!(
            "{} takes {} of the budget's {settings} settings: only {from_model} will come from the model; lower `{field}` or raise `budget.trials`",
            startup.what, startup.settings
        ))
    } else {
        None
    }
}

/// Build the sampler the study asks for; `file` is where the study was
/// read from, for errors.
pub fn build(study: &Study, file: &Path) -> Result<Box<dyn Sampler>, SamplerError> {
    Ok(match &study.sampler {
        SamplerSpec::Grid { shuffle, seed } => {
            Box::new(GridSampler::new(study, *shuffle, *seed).map_err(|e| e.in_file(file))?)
        }
        SamplerSpec::Random { seed } => Box::new(RandomSampler::new(study, *seed)),
        SamplerSpec::QuasiRandom { seed, scramble } => {
            Box::new(QuasiRandomSampler::new(study, *seed, *scramble))
        }
        SamplerSpec::Tpe {
            seed,
            n_startup,
            n_ei_candidates,
        } => Box::new(TpeSampler::new(study, *seed, *n_startup, *n_ei_candidates)),
        SamplerSpec::Cmaes {
            seed,
            sigma0,
            popsize,
            ipop,
        } => Box::new(CmaesSampler::new(study, *seed, *sigma0, *popsize, *ipop)),
        SamplerSpec::Gp { seed, startup } => Box::new(GpSampler::new(study, *seed, *startup)),
        SamplerSpec::Auto { seed, startup } => Box::new(AutoSampler::new(study, *seed, *startup)),
    })
}

#[cfg(test)]
mod tests {
    //! The suite every sampler must pass.
    use super::*;
    use hps_common::functions::Function;
    use hps_common::ParamSpec;
    use proptest::prelude::*;
    use serde_json::Value;
    use std::collections::BTreeSet;

    pub(super) fn study(space: &str, sampler: &str) -> Study {
        study_with(space, sampler, r#""budget":{"trials":18}"#)
    }

    /// A study with `extra` top-level fields (the budget at least).
    fn study_with(space: &str, sampler: &str, extra: &str) -> Study {
        let text = format!(
            r#"{{"format_version":1,"name":"t","space":{space},
              "objective":{{"metric":"val_error","direction":"minimize"}},
              "sampler":{sampler},{extra},"trainer":{{"kind":"cnn"}}}}"#
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

    /// Every sampler kind, as (space, sampler spec). TPE and the GP start
    /// learning after 4 settings so that short tests exercise the model.
    fn specs(seed: u64) -> Vec<(String, String)> {
        vec![
            (grid_space().to_string(), r#"{"kind":"grid"}"#.to_string()),
            (
                grid_space().to_string(),
                format!(r#"{{"kind":"grid","shuffle":true,"seed":{seed}}}"#),
            ),
            (
                SPACE.to_string(),
                format!(r#"{{"kind":"random","seed":{seed}}}"#),
            ),
            (
                SPACE.to_string(),
                format!(r#"{{"kind":"quasi_random","seed":{seed}}}"#),
            ),
            (
                SPACE.to_string(),
                format!(r#"{{"kind":"quasi_random","seed":{seed},"scramble":false}}"#),
            ),
            (
                SPACE.to_string(),
                format!(r#"{{"kind":"tpe","seed":{seed},"n_startup":4}}"#),
            ),
            (
                SPACE.to_string(),
                format!(r#"{{"kind":"cmaes","seed":{seed}}}"#),
            ),
            (
                SPACE.to_string(),
                format!(r#"{{"kind":"cmaes","seed":{seed},"sigma0":0.5,"popsize":3}}"#),
            ),
            (
                SPACE.to_string(),
                format!(r#"{{"kind":"gp","seed":{seed},"startup":4}}"#),
            ),
            (
                SPACE.to_string(),
                format!(r#"{{"kind":"auto","seed":{seed},"startup":4}}"#),
            ),
        ]
    }

    fn samplers(seed: u64) -> Vec<(Study, Box<dyn Sampler>)> {
        specs(seed)
            .iter()
            .map(|(space, s)| {
                let st = study(space, s);
                let sampler = build(&st, Path::new("study.json")).unwrap();
                (st, sampler)
            })
            .collect()
    }

    fn in_bounds(spec: &ParamSpec, v: &Value) -> bool {
        match spec {
            ParamSpec::Float { low, high, .. } => {
                v.as_f64().is_some_and(|x| x >= *low && x <= *high)
            }
            ParamSpec::Int { low, high, .. } => v.as_i64().is_some_and(|x| x >= *low && x <= *high),
            ParamSpec::Categorical { choices } => choices.contains(v),
            ParamSpec::Fixed { value } => value == v,
            ParamSpec::Transform { .. } => v.is_number(),
        }
    }

    /// A toy objective on either space: best near lr = 10^-2.5, nf = 24,
    /// batch_size = 32; lr above 0.3 "diverges" (no loss).
    fn observe(config: u64, params: &Params) -> Observation {
        let lr = params["lr"].as_f64().unwrap();
        let nf = params["nf"].as_i64().unwrap() as f64;
        let b = if params["batch_size"] == 32 { 0.0 } else { 0.3 };
        let loss = (lr.log10() + 2.5).powi(2) + (nf.ln() - 24f64.ln()).powi(2) + b;
        let diverged = lr > 0.3;
        Observation {
            config,
            params: params.clone(),
            status: if diverged {
                TrialStatus::Diverged
            } else {
                TrialStatus::Complete
            },
            loss: (!diverged).then_some(loss),
            last_intermediate: None,
        }
    }

    /// One proposal as the master made it: what the sampler was shown, and
    /// what it proposed.
    struct Call {
        config: u64,
        history: Vec<Observation>,
        pending: Vec<Params>,
        proposed: Params,
    }

    /// Drive a sampler like the master does, in `batch`es (sync: propose
    /// `batch`, then all their results come in) or with `queue` settings
    /// in flight (async: the result of setting c arrives once c + queue has
    /// been proposed). Pending grows within a batch, as in `run.rs`.
    fn drive(s: &mut dyn Sampler, n: u64, sync: bool, k: u64) -> Vec<Call> {
        let mut calls: Vec<Call> = Vec::new();
        let mut history: Vec<Observation> = Vec::new();
        for c in 0..n {
            if sync && c % k == 0 {
                for call in &calls[history.len()..] {
                    history.push(observe(call.config, &call.proposed));
                }
            }
            if !sync && c >= k {
                // Results arrive out of order: newest done first.
                let done = (c - k) as usize;
                history.insert(0, observe(done as u64, &calls[done].proposed));
            }
            let done: BTreeSet<u64> = history.iter().map(|o| o.config).collect();
            let pending: Vec<Params> = calls
                .iter()
                .filter(|x| !done.contains(&x.config))
                .map(|x| x.proposed.clone())
                .collect();
            let proposed = s.propose(c, &history, &pending).params;
            calls.push(Call {
                config: c,
                history: history.clone(),
                pending,
                proposed,
            });
        }
        calls
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn every_sampler_stays_in_bounds(seed in 0u64..1000) {
            for (st, mut s) in samplers(seed) {
                for call in drive(s.as_mut(), 18, false, 2) {
                    let p = &call.proposed;
                    prop_assert_eq!(p.len(), st.space.len());
                    for (name, spec) in &st.space {
                        prop_assert!(in_bounds(spec, &p[name]), "{} {}={}", st.sampler.name(), name, p[name]);
                    }
                }
            }
        }

        #[test]
        fn same_seed_same_sequence(seed in 0u64..1000) {
            for ((st, mut a), (_, mut b)) in samplers(seed).into_iter().zip(samplers(seed)) {
                let (x, y) = (drive(a.as_mut(), 18, true, 3), drive(b.as_mut(), 18, true, 3));
                for (x, y) in x.iter().zip(&y) {
                    prop_assert_eq!(&x.proposed, &y.proposed, "{}", st.sampler.name());
                }
            }
        }

        #[test]
        fn proposals_do_not_depend_on_call_order(seed in 0u64..1000) {
            // What a resumed master relies on: setting c is the same whether
            // or not settings 0..c were proposed by this process.
            for ((_, mut a), (_, mut b)) in samplers(seed).into_iter().zip(samplers(seed)) {
                let forward: Vec<Proposal> = (0..10).map(|c| a.propose(c, &[], &[])).collect();
                for c in (0..10).rev() {
                    prop_assert_eq!(&b.propose(c, &[], &[]), &forward[c as usize]);
                }
            }
        }

        #[test]
        fn resume_gives_the_same_proposals(seed in 0u64..1000, sync in any::<bool>(), k in 1u64..5) {
            // Sampler A runs the whole study; a fresh sampler B, given at
            // config c what A was given, proposes what A did.
            for (i, (st, mut a)) in samplers(seed).into_iter().enumerate() {
                let calls = drive(a.as_mut(), 24, sync, k);
                let (_, mut b) = samplers(seed).into_iter().nth(i).unwrap();
                for call in calls.iter().rev() {
                    // As a resumed master sees it: parameters read back from
                    // JSON files, results in another order.
                    let mut history = call.history.clone();
                    history.reverse();
                    for o in &mut history {
                        o.params = serde_json::from_str(&serde_json::to_string(&o.params).unwrap()).unwrap();
                    }
                    prop_assert_eq!(
                        &b.propose(call.config, &history, &call.pending).params,
                        &call.proposed,
                        "{} config {}", st.sampler.name(), call.config
                    );
                }
            }
        }

        #[test]
        fn no_duplicates_within_a_batch(seed in 0u64..1000, k in 2u64..7) {
            for (st, mut s) in samplers(seed) {
                let calls = drive(s.as_mut(), 18, true, 6);
                let history: Vec<Observation> = calls[..12].iter().map(|c| observe(c.config, &c.proposed)).collect();
                // Sync: K settings with the same history, pending growing
                // within the batch (as the master does) or not at all.
                for grow in [true, false] {
                    let mut pending: Vec<Params> = Vec::new();
                    let mut seen = BTreeSet::new();
                    for c in 12..12 + k {
                        let p = s.propose(c, &history, &pending).params;
                        prop_assert!(seen.insert(serde_json::to_string(&p).unwrap()), "{}: {:?} twice", st.sampler.name(), p);
                        if grow {
                            pending.push(p);
                        }
                    }
                }
                // Async: successive proposals while the earlier ones run.
                let mut seen = BTreeSet::new();
                for call in drive(s.as_mut(), 18, false, k) {
                    prop_assert!(seen.insert(serde_json::to_string(&call.proposed).unwrap()), "{}: {:?} twice", st.sampler.name(), call.proposed);
                }
            }
        }

        #[test]
        fn log_scale_is_uniform_in_log_space(seed in 0u64..200) {
            // Before any result, about half of a log-uniform [1e-4, 1] lands
            // below 1e-2 (CMA-ES: its first distribution is centred there).
            for kind in ["random", "quasi_random", "tpe", "cmaes", "gp"] {
                let st = study(SPACE, &format!(r#"{{"kind":"{kind}","seed":{seed}}}"#));
                let mut s = build(&st, Path::new("study.json")).unwrap();
                let below = (0..200).filter(|c| s.propose(*c, &[], &[]).params["lr"].as_f64().unwrap() < 1e-2).count();
                prop_assert!((60..140).contains(&below), "{kind}: {below} of 200 below 1e-2");
            }
        }
    }

    #[test]
    fn learners_find_the_log_scale_optimum() {
        // The toy optimum lr = 10^-2.5 sits off-centre on a log scale; after
        // 60 settings TPE, CMA-ES and the GP have been close to it.
        for kind in ["tpe", "cmaes", "gp"] {
            let st = study(SPACE, &format!(r#"{{"kind":"{kind}","seed":3}}"#));
            let mut s = build(&st, Path::new("study.json")).unwrap();
            let calls = drive(s.as_mut(), 60, true, 4);
            let best = calls
                .iter()
                .map(|c| observe(c.config, &c.proposed))
                .filter_map(|o| Some((o.loss?, o.params)))
                .min_by(|a, b| a.0.total_cmp(&b.0))
                .unwrap();
            let lr = best.1["lr"].as_f64().unwrap().log10();
            assert!(
                (lr + 2.5).abs() < 0.5 && best.0 < 0.2,
                "{kind}: best {best:?}"
            );
        }
    }

    fn function_study(f: Function, dim: usize, sampler: &str, mode: &str) -> Study {
        let space: Vec<String> = f
            .domain(dim)
            .iter()
            .enumerate()
            .map(|(i, (lo, hi))| format!(r#""x{i}":{{"type":"float","low":{lo},"high":{hi}}}"#))
            .collect();
        let text = format!(
            r#"{{"format_version":1,"name":"f","space":{{{}}},
              "objective":{{"metric":"value","direction":"minimize"}},"mode":{mode},
              "sampler":{sampler},"budget":{{"trials":100}},
              "trainer":{{"kind":"function","name":"{}","dim":{dim}}}}}"#,
            space.join(","),
            f.as_str()
        );
        hps_common::parse_versioned(std::path::Path::new("study.json"), &text).unwrap()
    }

    /// Simple regret after `n` sequential evaluations.
    fn regret(f: Function, dim: usize, sampler: &str, n: u64) -> f64 {
        let st = function_study(f, dim, sampler, r#"{"kind":"sync","batch":1}"#);
        let mut s = build(&st, Path::new("study.json")).unwrap();
        let mut history = Vec::new();
        let mut best = f64::INFINITY;
        for c in 0..n {
            let p = s.propose(c, &history, &[]).params;
            let x: Vec<f64> = (0..dim)
                .map(|i| p[&format!("x{i}")].as_f64().unwrap())
                .collect();
            let y = f.evaluate(&x);
            best = best.min(y);
            history.push(Observation {
                config: c,
                params: p,
                status: TrialStatus::Complete,
                loss: Some(y),
                last_intermediate: None,
            });
        }
        best - f.optimum(dim)
    }

    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    #[test]
    fn tpe_and_cmaes_beat_random_on_branin() {
        let med = |kind: &str| {
            median(
                (0..5)
                    .map(|seed| {
                        regret(
                            Function::Branin,
                            2,
                            &format!(r#"{{"kind":"{kind}","seed":{seed}}}"#),
                            100,
                        )
                    })
                    .collect(),
            )
        };
        let random = med("random");
        let (tpe, cmaes) = (med("tpe"), med("cmaes"));
        assert!(tpe < random / 4.0, "tpe {tpe} vs random {random}");
        assert!(cmaes < random / 4.0, "cmaes {cmaes} vs random {random}");
    }

    #[test]
    fn cmaes_population_follows_the_sync_batch() {
        let pop = |sampler: &str, mode: &str| {
            CmaesSampler::new(
                &function_study(Function::Hartmann6, 6, sampler, mode),
                0,
                0.25,
                match &function_study(Function::Hartmann6, 6, sampler, mode).sampler {
                    SamplerSpec::Cmaes { popsize, .. } => *popsize,
                    _ => unreachable!(),
                },
                true,
            )
            .popsize()
        };
        let s = r#"{"kind":"cmaes","seed":0}"#;
        assert_eq!(pop(s, r#"{"kind":"sync","batch":6}"#), 6);
        assert_eq!(
            pop(s, r#"{"kind":"sync","batch":1}"#),
            9,
            "4 + floor(3 ln 6)"
        );
        assert_eq!(pop(s, r#"{"kind":"async","queue":6}"#), 9);
        assert_eq!(
            pop(
                r#"{"kind":"cmaes","seed":0,"popsize":12}"#,
                r#"{"kind":"sync","batch":6}"#
            ),
            12
        );
    }

    #[test]
    fn sampler_specs_parse_with_defaults_and_are_checked() {
        let st = study(SPACE, r#"{"kind":"tpe","seed":1}"#);
        assert_eq!(
            st.sampler,
            SamplerSpec::Tpe {
                seed: 1,
                n_startup: 10,
                n_ei_candidates: 24
            }
        );
        let st = study(
            SPACE,
            r#"{"kind":"cmaes","seed":1,"sigma0":0.3,"popsize":null}"#,
        );
        assert_eq!(
            st.sampler,
            SamplerSpec::Cmaes {
                seed: 1,
                sigma0: 0.3,
                popsize: None,
                ipop: true
            }
        );
        let st = study(SPACE, r#"{"kind":"gp","seed":1}"#);
        assert_eq!(
            st.sampler,
            SamplerSpec::Gp {
                seed: 1,
                startup: 10
            }
        );
        let st = study(SPACE, r#"{"kind":"quasi_random","seed":1}"#);
        assert_eq!(
            st.sampler,
            SamplerSpec::QuasiRandom {
                seed: 1,
                scramble: true
            }
        );
        assert_eq!(st.sampler.name(), "quasi_random");
        let parse = |sampler: &str| {
            let text = format!(
                r#"{{"format_version":1,"name":"t","space":{SPACE},
                  "objective":{{"metric":"val_error","direction":"minimize"}},
                  "sampler":{sampler},"budget":{{"trials":18}},"trainer":{{"kind":"cnn"}}}}"#
            );
            hps_common::parse_versioned::<Study>(std::path::Path::new("study.json"), &text)
                .unwrap_err()
        };
        // Serde reports errors inside a tagged enum at `sampler`; the
        // message names the field.
        for (bad, what) in [
            (
                r#"{"kind":"tpe","seed":1,"n_startups":3}"#,
                "unknown field `n_startups`",
            ),
            (
                r#"{"kind":"tpe","seed":1,"n_ei_candidates":0}"#,
                "`n_ei_candidates` must be at least 1",
            ),
            (
                r#"{"kind":"cmaes","seed":1,"sigma0":0}"#,
                "`sigma0` must be in (0, 1]",
            ),
            (
                r#"{"kind":"cmaes","seed":1,"sigma0":1.5}"#,
                "`sigma0` must be in (0, 1]",
            ),
            (
                r#"{"kind":"cmaes","seed":1,"popsize":1}"#,
                "`popsize` must be at least 2",
            ),
            (
                r#"{"kind":"quasi_random","seed":1,"scrambled":true}"#,
                "unknown field `scrambled`",
            ),
            (r#"{"kind":"quasi_random"}"#, "missing field `seed`"),
            (
                r#"{"kind":"gp","seed":1,"n_startup":3}"#,
                "unknown field `n_startup`",
            ),
            (r#"{"kind":"gp","startup":3}"#, "missing field `seed`"),
        ] {
            let e = parse(bad);
            assert!(
                e.field() == "sampler" && e.to_string().contains(what),
                "{bad}: {e} (field {})",
                e.field()
            );
        }
    }

    #[test]
    fn grid_is_the_full_cartesian_product() {
        for shuffle in [false, true] {
            let st = study(
                grid_space(),
                &format!(r#"{{"kind":"grid","shuffle":{shuffle},"seed":3}}"#),
            );
            let mut s = build(&st, Path::new("study.json")).unwrap();
            let n = st.grid_size().unwrap();
            assert_eq!(n, 3 * 3 * 2);
            let seen: BTreeSet<String> = (0..n)
                .map(|c| serde_json::to_string(&s.propose(c, &[], &[]).params).unwrap())
                .collect();
            assert_eq!(
                seen.len() as u64,
                n,
                "shuffle={shuffle}: every grid point exactly once"
            );
        }
    }

    #[test]
    fn grid_order_is_by_name_last_fastest() {
        let st = study(grid_space(), r#"{"kind":"grid"}"#);
        let mut s = build(&st, Path::new("study.json")).unwrap();
        // Names sorted: batch_size, lr, momentum, nf — nf varies fastest.
        let p0 = s.propose(0, &[], &[]).params;
        let p1 = s.propose(1, &[], &[]).params;
        let p3 = s.propose(3, &[], &[]).params;
        assert_eq!(
            (p0["nf"].as_i64(), p1["nf"].as_i64(), p3["nf"].as_i64()),
            (Some(1), Some(2), Some(1))
        );
        assert_eq!(p0["batch_size"], p3["batch_size"]);
        assert_ne!(p0["lr"], p3["lr"]);
        assert_eq!(s.propose(9, &[], &[]).params["batch_size"], Value::from(32));
    }

    /// FNV-1a over the JSON of every proposal.
    fn digest(proposals: &[Params]) -> String {
        let mut h: u64 = 0xcbf29ce484222325;
        for p in proposals {
            for b in serde_json::to_string(p).unwrap().bytes() {
                h = (h ^ b as u64).wrapping_mul(0x100000001b3);
            }
        }
        format!("{h:016x}")
    }

    /// Using pruned trials must not change a study without a pruner: these
    /// digests of 40 TPE proposals (complete and diverged results, sync and
    /// async with pending settings) were computed with the TPE before
    /// pruned trials were used (commit 0135c45).
    #[test]
    fn tpe_without_pruned_trials_proposes_as_before() {
        let expected = [
            (true, 3, 0, "4659e0bad698d377"),
            (true, 3, 7, "811fe783d5c068b6"),
            (false, 2, 0, "94b2dcb125f18095"),
            (false, 2, 7, "4b16dad2b3d01a23"),
            (false, 5, 0, "b1da5cdf24dce52c"),
            (false, 5, 7, "3ef05ee9d69d04ae"),
        ];
        for (sync, k, seed, want) in expected {
            let st = study(
                SPACE,
                &format!(r#"{{"kind":"tpe","seed":{seed},"n_startup":4}}"#),
            );
            let mut s = build(&st, Path::new("study.json")).unwrap();
            let ps: Vec<Params> = drive(s.as_mut(), 40, sync, k)
                .into_iter()
                .map(|c| c.proposed)
                .collect();
            assert_eq!(digest(&ps), want, "sync {sync} k {k} seed {seed}");
        }
    }

    #[test]
    fn learning_samplers_record_whether_the_model_proposed() {
        // TPE: the first n_startup settings are the start-up design, the
        // rest the model's once two results are in.
        let st = study(SPACE, r#"{"kind":"tpe","seed":1,"n_startup":4}"#);
        let mut s = build(&st, Path::new("study.json")).unwrap();
        let calls = drive(s.as_mut(), 8, true, 2);
        let sources: Vec<Option<Source>> = calls
            .iter()
            .map(|c| s.propose(c.config, &c.history, &c.pending).source)
            .collect();
        let (startup, model) = (Some(Source::Startup), Some(Source::Model));
        assert_eq!(sources[..4], [startup; 4]);
        assert_eq!(sources[4..], [model; 4]);
        // Past n_startup without two results: still the start-up design.
        assert_eq!(s.propose(6, &[], &[]).source, startup);
        // CMA-ES: its first generation is drawn before any update.
        let st = study(SPACE, r#"{"kind":"cmaes","seed":1,"popsize":3}"#);
        let mut s = build(&st, Path::new("study.json")).unwrap();
        let calls = drive(s.as_mut(), 9, true, 3);
        let sources: Vec<Option<Source>> = calls
            .iter()
            .map(|c| s.propose(c.config, &c.history, &c.pending).source)
            .collect();
        assert_eq!(sources[..3], [startup; 3]);
        assert_eq!(sources[3..], [model; 6]);
        // The GP: like TPE, its start-up design, then the model.
        let st = study(SPACE, r#"{"kind":"gp","seed":1,"startup":4}"#);
        let mut s = build(&st, Path::new("study.json")).unwrap();
        let calls = drive(s.as_mut(), 7, true, 2);
        let sources: Vec<Option<Source>> = calls
            .iter()
            .map(|c| s.propose(c.config, &c.history, &c.pending).source)
            .collect();
        assert_eq!(sources[..4], [startup; 4]);
        assert_eq!(sources[4..], [model; 3]);
        assert_eq!(s.propose(6, &[], &[]).source, startup);
        // Samplers without a model record nothing.
        for kind in [r#""random""#, r#""quasi_random""#] {
            let st = study(SPACE, &format!(r#"{{"kind":{kind},"seed":1}}"#));
            let mut s = build(&st, Path::new("study.json")).unwrap();
            assert_eq!(s.propose(0, &[], &[]).source, None, "{kind}");
        }
        let st = study(grid_space(), r#"{"kind":"grid"}"#);
        let mut s = build(&st, Path::new("study.json")).unwrap();
        assert_eq!(s.propose(0, &[], &[]).source, None);
    }

    #[test]
    fn a_startup_design_that_is_the_budget_is_warned_about() {
        let warn = |sampler: &str, extra: &str| {
            let st = study_with(SPACE, sampler, extra);
            let s = build(&st, Path::new("study.json")).unwrap();
            startup_warning(&st, s.as_ref())
        };
        let tpe = r#"{"kind":"tpe","seed":1}"#;
        // TPE's default n_startup (10) with a budget of 10: all Sobol.
        let w = warn(tpe, r#""budget":{"trials":10}"#).expect("warned");
        assert!(
            w.contains("the whole budget of 10")
                && w.contains("no setting will come from the model")
                && w.contains("`sampler.n_startup`"),
            "{w}"
        );
        // Most of it: 10 of 15.
        let w = warn(tpe, r#""budget":{"trials":15}"#).expect("warned");
        assert!(
            w.contains("10 of the budget's 15") && w.contains("only 5 will come from the model"),
            "{w}"
        );
        assert_eq!(warn(tpe, r#""budget":{"trials":20}"#), None);
        // Counted in settings: 20 trials of 2 repeats are 10 settings.
        let w = warn(tpe, r#""budget":{"trials":20},"repeats":2"#).expect("warned");
        assert!(w.contains("the whole budget of 10"), "{w}");
        // CMA-ES: the first generation, by default the sync batch.
        let w = warn(
            r#"{"kind":"cmaes","seed":1}"#,
            r#""budget":{"trials":8},"mode":{"kind":"sync","batch":8}"#,
        )
        .expect("warned");
        assert!(
            w.contains("the whole budget of 8") && w.contains("`sampler.popsize`"),
            "{w}"
        );
        assert_eq!(
            warn(r#"{"kind":"random","seed":1}"#, r#""budget":{"trials":2}"#),
            None
        );
    }
}
