//! How much CPU time a study will take, estimated from the study file
//! alone, for `hps-master init --list-presets`.
//!
//! A cnn trial costs, per epoch, a forward and a backward pass (about three
//! forward passes) over its training examples and a forward pass over its
//! validation examples, plus one forward pass over the test examples at the
//! end; with `folds: k` it trains k models, each on `(k-1)/k` of
//! `train_size` and validating on the rest. A forward pass of one example
//! costs [`Arch::macs_per_example`] multiply-adds at [`MACS_PER_SECOND`]. A
//! trial with `budget.time_limit_s` costs at most that. The estimate
//! assumes every trial runs all its epochs (`patience` and pruners only
//! make it shorter) and leaves out starting a worker (loading the data set,
//! a few seconds) and the batch size's effect on speed.
//!
//! Where the space searches a parameter, the estimate averages over the
//! settings: the grid's points for the grid sampler; for the others each
//! categorical's choices and five quantiles (0.1, 0.3, …, 0.9) of every
//! other parameter, all combinations (at most [`MAX_SETTINGS`], else the
//! midpoint of every range).

use hps_common::arch::Arch;
use hps_common::cnn::{epochs_param, CnnHyper};
use hps_common::{ParamSpec, Params, SamplerSpec, Study, TrainerSpec};
use serde_json::Value;

/// Multiply-adds per second of one CPU core training the cnn trainer's
/// networks: forward-pass multiply-adds x (3 x training + validation
/// examples) / epoch seconds.
///
/// Measured on the project's build machine (2 cores, load average about 9
/// from other builds), release build, one worker with `--threads 1`, on
/// Fashion-MNIST (`/usr/share/datasets/fashion-mnist`), from the results'
/// `epoch_time_s` (`hps-master run` and `hps-worker DIR --threads 1` on a
/// one-trial study; the recipe is in docs/presets.md):
///
/// | network | multiply-adds | examples per epoch | s per epoch | MAC/s |
/// |---|---|---|---|---|
/// | seed CNN, nf 32, batch 100 | 2.23 M | 5000 + 1000 | 5.41, 5.65, 5.88 | 6.3 G |
/// | seed CNN, nf 64, batch 100 | 7.74 M | 5000 + 1000 | 15.4 | 8.1 G |
/// | seed 004's MLP, Adam, batch 32 | 0.109 M | 1024 + 2560 | 0.086, 0.088, 0.092 | 6.9 G |
///
/// 7 G is within 15% of all three. A quiet machine is faster:
/// docs/performance.md's 60 000-example epoch at nf 32 in 16.85 s on two
/// threads is about 12 G per core, so the estimates err long.
pub const MACS_PER_SECOND: f64 = 7.0e9;

/// Examples in the test file when `test_size` is 0 (Fashion-MNIST's).
const TEST_FILE: usize = 10_000;

/// Most settings averaged over; larger spaces use the midpoint.
pub const MAX_SETTINGS: usize = 4096;

/// The estimated cost of a study.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Estimate {
    /// Seconds of one CPU core (one worker with `--threads 1`); `n`
    /// workers on `n` cores take about `1/n` of it in wall time.
    Cpu(f64),
    /// Seconds of waiting (the `function` trainer's `sleep_s`), no CPU.
    Sleep(f64),
    /// Not known before it runs (an `exec` trainer's command).
    Unknown,
}

/// The estimated cost of running every trial of `study`.
pub fn estimate(study: &Study) -> Estimate {
    let trials = study.total_trials().unwrap_or(0) as f64;
    match &study.trainer {
        TrainerSpec::Cnn { defaults, .. } => {
            let per_trial = mean_trial_seconds(study, defaults);
            Estimate::Cpu(trials * per_trial)
        }
        TrainerSpec::Function { sleep_s, .. } => Estimate::Sleep(trials * sleep_s),
        TrainerSpec::Exec(_) => Estimate::Unknown,
    }
}

impl std::fmt::Display for Estimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Estimate::Cpu(s) => write!(f, "~{} CPU", duration_text(s)),
            Estimate::Sleep(s) if s < 1.0 => f.write_str("seconds"),
            Estimate::Sleep(s) => write!(f, "~{} waiting", duration_text(s)),
            Estimate::Unknown => f.write_str("unknown"),
        }
    }
}

/// A rough duration: `40 s`, `3 min`, `2.5 h`, `4 days`.
pub fn duration_text(seconds: f64) -> String {
    let round = |v: f64| {
        if v < 10.0 {
            format!("{:.1}", v).trim_end_matches(".0").to_string()
        } else {
            format!("{:.0}", v)
        }
    };
    match seconds {
        s if !s.is_finite() => "?".into(),
        s if s < 90.0 => format!("{} s", round(s.max(1.0))),
        s if s < 90.0 * 60.0 => format!("{} min", round(s / 60.0)),
        s if s < 48.0 * 3600.0 => format!("{} h", round(s / 3600.0)),
        s => format!("{} days", round(s / 86400.0)),
    }
}

/// The mean CPU seconds of one trial over the settings the study may run.
fn mean_trial_seconds(study: &Study, defaults: &CnnHyper) -> f64 {
    let costs: Vec<f64> = settings(study)
        .iter()
        .filter_map(|p| trial_seconds(study, defaults, p))
        .collect();
    if costs.is_empty() {
        return 0.0;
    }
    costs.iter().sum::<f64>() / costs.len() as f64
}

/// CPU seconds of one trial of the setting `params`, or `None` when the
/// setting is invalid (such a trial ends at once).
fn trial_seconds(study: &Study, defaults: &CnnHyper, params: &Params) -> Option<f64> {
    let h = defaults.with_params(params).ok()?;
    let epochs = epochs_param(params, study.budget.epochs).ok()? as f64;
    let macs = Arch::from_hyper(&h).ok()?.macs_per_example() as f64;
    let (train, val, runs) = if h.folds > 1 {
        let k = h.folds as f64;
        let n = h.train_size as f64;
        (n * (k - 1.0), n, k)
    } else {
        (h.train_size as f64, h.val_size as f64, 1.0)
    };
    let test = runs
        * (if h.test_size == 0 {
            TEST_FILE
        } else {
            h.test_size
        }) as f64;
    let passes = epochs * (3.0 * train + val) + test;
    let seconds = passes * macs / MACS_PER_SECOND;
    Some(match study.budget.time_limit_s {
        Some(limit) => seconds.min(limit),
        None => seconds,
    })
}

/// The settings averaged over (see the module doc).
fn settings(study: &Study) -> Vec<Params> {
    let grid = matches!(study.sampler, SamplerSpec::Grid { .. });
    let axes: Vec<(&String, Vec<Value>)> = study
        .space
        .iter()
        .map(|(name, spec)| (name, axis_values(spec, grid)))
        .collect();
    let size = axes
        .iter()
        .try_fold(1usize, |n, (_, v)| n.checked_mul(v.len().max(1)));
    if size.is_none_or(|n| n > MAX_SETTINGS) {
        let mid = study
            .space
            .iter()
            .map(|(name, spec)| (name.clone(), spec.from_unit(0.5)))
            .collect();
        return vec![mid];
    }
    let mut out = vec![Params::new()];
    for (name, values) in axes {
        out = out
            .into_iter()
            .flat_map(|p| {
                values.iter().map(move |v| {
                    let mut p = p.clone();
                    p.insert(name.clone(), v.clone());
                    p
                })
            })
            .collect();
    }
    out
}

/// The values of one parameter the estimate averages over.
fn axis_values(spec: &ParamSpec, grid: bool) -> Vec<Value> {
    let quantiles = || {
        [0.1, 0.3, 0.5, 0.7, 0.9]
            .map(|u| spec.from_unit(u))
            .to_vec()
    };
    match spec {
        ParamSpec::Categorical { choices } => choices.clone(),
        ParamSpec::Fixed { value } => vec![value.clone()],
        _ if grid => spec.grid_values().unwrap_or_else(|_| quantiles()),
        _ => quantiles(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    fn study(space: Value, defaults: Value, budget: Value, sampler: Value) -> Study {
        let text = json!({
            "format_version": 1, "name": "t", "space": space,
            "objective": {"metric": "val_error", "direction": "minimize"},
            "sampler": sampler, "budget": budget,
            "trainer": {"kind": "cnn", "defaults": defaults}
        });
        hps_common::parse_versioned(Path::new("t.json"), &text.to_string()).unwrap()
    }

    fn cpu(e: Estimate) -> f64 {
        match e {
            Estimate::Cpu(s) => s,
            other => panic!("not a CPU estimate: {other:?}"),
        }
    }

    #[test]
    fn one_trial_is_passes_times_cost_per_pass() {
        let s = study(
            json!({"lr": {"type": "fixed", "value": 0.1}}),
            json!({"train_size": 100, "val_size": 10, "test_size": 20}),
            json!({"epochs": 2}),
            json!({"kind": "grid"}),
        );
        let macs = Arch::seed(32).macs_per_example() as f64;
        let passes = 2.0 * (3.0 * 100.0 + 10.0) + 20.0;
        let want = passes * macs / MACS_PER_SECOND;
        assert!((cpu(estimate(&s)) - want).abs() < 1e-9 * want);
    }

    #[test]
    fn folds_train_k_models_and_the_time_limit_caps_a_trial() {
        let space = json!({"lr": {"type": "categorical", "choices": [0.1, 0.2]}});
        let plain = json!({"train_size": 300, "val_size": 0, "test_size": 10});
        let folds = json!({"train_size": 300, "val_size": 0, "test_size": 10, "folds": 3});
        let one = cpu(estimate(&study(
            space.clone(),
            plain,
            json!({}),
            json!({"kind": "grid"}),
        )));
        let k = cpu(estimate(&study(
            space.clone(),
            folds,
            json!({}),
            json!({"kind": "grid"}),
        )));
        // 3 x (3 x 200 + 100) + 30 passes against 3 x 300 + 10.
        assert!((k / one - 2130.0 / 910.0).abs() < 1e-9, "{k} {one}");
        let capped = study(
            space,
            json!({"train_size": 5000}),
            json!({"epochs": 50, "time_limit_s": 2}),
            json!({"kind": "grid"}),
        );
        assert_eq!(cpu(estimate(&capped)), 2.0 * 2.0);
    }

    #[test]
    fn searched_architectures_are_averaged() {
        let small = Arch::seed(8).macs_per_example() as f64;
        let big = Arch::seed(64).macs_per_example() as f64;
        let both = study(
            json!({"nf": {"type": "categorical", "choices": [8, 64]}}),
            json!({"test_size": 1}),
            json!({}),
            json!({"kind": "grid"}),
        );
        let only = |nf: u64| {
            cpu(estimate(&study(
                json!({"nf": {"type": "fixed", "value": nf}}),
                json!({"test_size": 1}),
                json!({"trials": 2}),
                json!({"kind": "random", "seed": 0}),
            )))
        };
        assert!(big > 10.0 * small);
        let mean = (only(8) + only(64)) / 2.0;
        assert!((cpu(estimate(&both)) - mean).abs() < 1e-9 * mean);
        // A random search over a range: five quantiles, all finite.
        let random = study(
            json!({"nf": {"type": "int", "low": 8, "high": 64}}),
            json!({}),
            json!({"trials": 10}),
            json!({"kind": "random", "seed": 0}),
        );
        let e = cpu(estimate(&random));
        assert!(e.is_finite() && e > 0.0);
    }

    #[test]
    fn durations_read_as_rough_amounts() {
        assert_eq!(duration_text(0.2), "1 s");
        assert_eq!(duration_text(42.0), "42 s");
        assert_eq!(duration_text(150.0), "2.5 min");
        assert_eq!(duration_text(3000.0), "50 min");
        assert_eq!(duration_text(9000.0), "2.5 h");
        assert_eq!(duration_text(4.0 * 86400.0), "4 days");
        assert_eq!(duration_text(f64::NAN), "?");
        assert_eq!(Estimate::Sleep(0.0).to_string(), "seconds");
        assert_eq!(Estimate::Cpu(180.0).to_string(), "~3 min CPU");
    }
}
