//! Built-in study files: every study of the seeds' exercises, each at the
//! seed's size and as a `-quick` twin that finishes in minutes on two CPU
//! cores, plus three small studies, so `hps-master init DIR --preset s5`
//! needs no file of its own. The texts are the files in `examples/`,
//! compiled in; [`PRESETS`] is the one list of them.
//!
//! `hps-master init --list-presets` prints [`list`]: each preset with its
//! one-line summary and its estimated CPU time ([`crate::estimate`]).

use std::path::Path;

use hps_common::exercise::Exercise;
use hps_common::{SchemaError, Study};

use crate::estimate::{estimate, Estimate};

/// One built-in study.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    /// The `--preset` name, also the file's stem in `examples/`.
    pub name: &'static str,
    /// The seed exercise it reproduces (the study file's `exercise`).
    pub exercise: Option<Exercise>,
    /// One line for `--list-presets`; the file's `description` says more.
    pub summary: &'static str,
    /// The study file's text.
    pub text: &'static str,
}

impl Preset {
    /// The parsed and validated study.
    pub fn study(&self) -> Result<Study, SchemaError> {
        let file = Path::new("examples").join(format!("{}.json", self.name));
        hps_common::parse_versioned(&file, self.text)
    }

    /// Whether this is the `-quick` twin of another preset.
    pub fn is_quick(&self) -> bool {
        self.name.ends_with("-quick")
    }
}

/// A [`Preset`] whose text is `examples/<name>.json`.
macro_rules! preset {
    ($name:literal, $exercise:expr, $summary:literal) => {
        Preset {
            name: $name,
            exercise: $exercise,
            summary: $summary,
            text: include_str!(concat!("../../examples/", $name, ".json")),
        }
    };
}

use Exercise::*;

/// Every preset, in the order they are listed to the user: the small
/// studies, then the seeds' exercises, each at full size and `-quick`.
#[rustfmt::skip]
pub const PRESETS: &[Preset] = &[
    preset!("quickstart", None, "Scenario 5's random search, 8 trials of 1 epoch: a first run"),
    preset!("branin", None, "The Branin function: try samplers without training"),
    preset!("asha", None, "ASHA pruning of a random search on the cnn trainer"),
    preset!("s1", Some(S1), "Seed 001 S1: SGD learning rate, 7 rates x 3 seeds"),
    preset!("s1-quick", Some(S1), "S1 on 2000 examples, 10 epochs"),
    preset!("s2", Some(S2), "Seed 001 S2: batch size x learning rate"),
    preset!("s2-quick", Some(S2), "S2 on 2000 examples, 10 epochs"),
    preset!("s3", Some(S3), "Seed 001 S3: momentum x learning rate"),
    preset!("s3-quick", Some(S3), "S3 on 2000 examples, 10 epochs"),
    preset!("s4", Some(S4), "Seed 001 S4: filters per layer, 1 to 256"),
    preset!("s4-quick", Some(S4), "S4 with 1 to 64 filters on 2000 examples, 10 epochs"),
    preset!("s5", Some(S5), "Seed 001 S5: random search, 200 trials of 60 s"),
    preset!("s5-quick", Some(S5), "S5 with 30 trials of 6 s on 2000 examples"),
    preset!("weight-decay", Some(WeightDecay), "Seed 004: weight decay on the MLP, Adam + L2"),
    preset!("weight-decay-quick", Some(WeightDecay), "Weight decay, Adam + L2, 50 epochs"),
    preset!("weight-decay-adamw", Some(WeightDecay), "Seed 004: weight decay on the MLP, AdamW"),
    preset!("weight-decay-adamw-quick", Some(WeightDecay), "Weight decay, AdamW, 50 epochs"),
    preset!("dropout", Some(Dropout), "Seed 004: dropout 0 to 0.9 on the MLP"),
    preset!("dropout-quick", Some(Dropout), "Dropout on the MLP, 50 epochs"),
    preset!("early-stopping", Some(EarlyStopping), "Seed 004: early stopping by best epoch, 4 rates"),
    preset!("early-stopping-quick", Some(EarlyStopping), "Best-epoch early stopping, 50 epochs"),
    preset!("early-stopping-patience", Some(EarlyStopping), "Seed 004: early stopping, patience 5"),
    preset!("early-stopping-patience-quick", Some(EarlyStopping), "Patience 5, at most 50 epochs"),
    preset!("base-model", Some(BaseModel), "Seed 003: plain SGD base CNN, LR x batch, 5-fold CV"),
    preset!("base-model-quick", Some(BaseModel), "Base model, 3-fold CV on 2000 examples"),
    preset!("hypothesis-depth", Some(Hypothesis), "Seed 003: 1, 2 or 3 conv layers"),
    preset!("hypothesis-depth-quick", Some(Hypothesis), "Depth, 3-fold CV on 2000 examples"),
    preset!("hypothesis-width", Some(Hypothesis), "Seed 003: 8 to 64 filters per layer"),
    preset!("hypothesis-width-quick", Some(Hypothesis), "Width, 3-fold CV on 2000 examples"),
    preset!("hypothesis-kernel", Some(Hypothesis), "Seed 003: kernel size 3, 5 or 7"),
    preset!("hypothesis-kernel-quick", Some(Hypothesis), "Kernel size, 3-fold CV on 2000 examples"),
    preset!("hypothesis-pooling", Some(Hypothesis), "Seed 003: average against max pooling"),
    preset!("hypothesis-pooling-quick", Some(Hypothesis), "Pooling, 3-fold CV on 2000 examples"),
    preset!("hypothesis-dropout", Some(Hypothesis), "Seed 003: dropout 0, 0.25, 0.5"),
    preset!("hypothesis-dropout-quick", Some(Hypothesis), "Dropout, 3-fold CV on 2000 examples"),
    preset!("hypothesis-augmentation", Some(Hypothesis), "Seed 003: shifts and flips"),
    preset!("hypothesis-augmentation-quick", Some(Hypothesis), "Augmentation, 3-fold CV on 2000 examples"),
    preset!("hypothesis-batchnorm", Some(Hypothesis), "Seed 003: with and without batch norm"),
    preset!("hypothesis-batchnorm-quick", Some(Hypothesis), "Batch norm, 3-fold CV on 2000 examples"),
    preset!("hypothesis-init", Some(Hypothesis), "Seed 003: normal, Glorot or He initialisation"),
    preset!("hypothesis-init-quick", Some(Hypothesis), "Initialisation, 3-fold CV on 2000 examples"),
    preset!("hypothesis-adam", Some(Hypothesis), "Seed 003: Adam against SGD, 3 rates each"),
    preset!("hypothesis-adam-quick", Some(Hypothesis), "Adam against SGD, 3-fold CV on 2000 examples"),
    preset!("hypothesis-transfer", Some(Hypothesis), "Seed 003: from base-model's best weights, fine-tuned or frozen"),
    preset!("hypothesis-transfer-quick", Some(Hypothesis), "Transfer from base-model-quick (run it first), 3-fold CV"),
    preset!("debugging", Some(Debugging), "Seeds 000/002: growing LR, rotations, tiny LR"),
    preset!("debugging-quick", Some(Debugging), "Debugging, 8 epochs on 2000 examples"),
];

/// The preset named `name`.
pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// The preset names, in [`PRESETS`] order.
pub fn names() -> impl Iterator<Item = &'static str> {
    PRESETS.iter().map(|p| p.name)
}

/// The estimated cost of a preset: [`Estimate::Unknown`] if its file does
/// not parse (a test keeps that from happening).
pub fn preset_estimate(p: &Preset) -> Estimate {
    p.study().map_or(Estimate::Unknown, |s| estimate(&s))
}

/// The text of `hps-master init --list-presets`: one line per preset
/// (name, estimated CPU time, summary), then how to read the times.
pub fn list() -> String {
    let width = names().map(str::len).max().unwrap_or(0);
    let rows: Vec<(&str, String, &str)> = PRESETS
        .iter()
        .map(|p| (p.name, preset_estimate(p).to_string(), p.summary))
        .collect();
    let time_width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (name, time, summary) in rows {
        out += &format!("{name:<width$}  {time:<time_width$}  {summary}\n");
    }
    out += "\nCPU: the estimated time of one worker on one core (hps-worker --threads 1); \
            N workers on N cores take about 1/N of it in wall time (2 workers: half). \
            Grid and categorical choices are averaged; early stopping and pruning only shorten it. \
            The study files are in examples/; init a preset with `hps-master init DIR --preset NAME`.\n";
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hps_common::cnn::Optimizer;
    use hps_common::TrainerSpec;
    use serde_json::Value;
    use std::collections::BTreeSet;

    fn parse(name: &str) -> Study {
        let p = preset(name).unwrap_or_else(|| panic!("no preset {name}"));
        p.study().unwrap_or_else(|e| panic!("{e}"))
    }

    /// The small studies that reproduce no exercise and have no twin.
    const EXTRAS: [&str; 3] = ["quickstart", "branin", "asha"];

    #[test]
    fn every_preset_parses_and_names_are_unique() {
        let mut seen = BTreeSet::new();
        for p in PRESETS {
            assert!(seen.insert(p.name), "{} listed twice", p.name);
            let study = p.study().unwrap_or_else(|e| panic!("{}: {e}", p.name));
            assert!(study.total_trials().unwrap() >= 1, "{}", p.name);
            assert!(!p.summary.is_empty() && !p.summary.contains('\n'));
            assert!(study.description.is_some(), "{} has no description", p.name);
        }
        assert!(preset("s6").is_none());
    }

    #[test]
    fn the_seed_scenarios_keep_their_trial_counts() {
        let expected = [
            ("s1", 21),
            ("s2", 9),
            ("s3", 9),
            ("s4", 9),
            ("s5", 200),
            ("quickstart", 8),
            ("branin", 200),
            ("asha", 60),
            ("weight-decay", 15),
            ("dropout", 18),
            ("early-stopping", 12),
            ("debugging", 16),
        ];
        for (name, n) in expected {
            assert_eq!(parse(name).total_trials().unwrap(), n, "{name}");
        }
    }

    #[test]
    fn every_exercise_preset_has_its_exercise_and_a_quick_twin() {
        for p in PRESETS {
            let study = parse(p.name);
            assert_eq!(
                study.exercise, p.exercise,
                "{}: table and file differ",
                p.name
            );
            if EXTRAS.contains(&p.name) {
                assert!(p.exercise.is_none(), "{}", p.name);
                continue;
            }
            assert!(p.exercise.is_some(), "{} has no exercise", p.name);
            let (full, quick) = match p.name.strip_suffix("-quick") {
                Some(full) => (full.to_string(), p.name.to_string()),
                None => (p.name.to_string(), format!("{}-quick", p.name)),
            };
            let (f, q) = (parse(&full), parse(&quick));
            assert_eq!(f.exercise, q.exercise, "{full} and {quick}");
            // The same question: the same parameters searched, the same
            // objective and hypothesis.
            let keys = |s: &Study| s.space.keys().cloned().collect::<Vec<_>>();
            assert_eq!(
                keys(&f),
                keys(&q),
                "{full} and {quick} search different parameters"
            );
            assert_eq!(f.objective, q.objective, "{full}");
            assert_eq!(f.hypothesis, q.hypothesis, "{full}");
        }
        // Every exercise has a preset.
        for e in Exercise::ALL {
            assert!(
                PRESETS.iter().any(|p| p.exercise == Some(*e)),
                "{e} has no preset"
            );
        }
    }

    #[test]
    fn hypothesis_presets_measure_more_than_one_run_per_value() {
        for p in PRESETS.iter().filter(|p| p.exercise == Some(Hypothesis)) {
            let s = parse(p.name);
            assert!(s.hypothesis.is_some(), "{} states no hypothesis", p.name);
            let TrainerSpec::Cnn { defaults, .. } = &s.trainer else {
                panic!("{} is not a cnn study", p.name)
            };
            assert!(s.repeats >= 2 || defaults.folds >= 2, "{}", p.name);
        }
    }

    #[test]
    fn estimates_are_positive_and_quick_is_quick() {
        for p in PRESETS {
            match preset_estimate(p) {
                Estimate::Cpu(s) => assert!(s.is_finite() && s > 0.0, "{}: {s}", p.name),
                Estimate::Sleep(s) => assert!(s.is_finite() && s >= 0.0, "{}", p.name),
                Estimate::Unknown => panic!("{}: no estimate", p.name),
            }
            if p.is_quick() {
                let Estimate::Cpu(s) = preset_estimate(p) else {
                    panic!("{}", p.name)
                };
                // A few minutes with 2 workers on 2 cores.
                assert!(s < 12.0 * 60.0, "{}: {s} s of CPU is not quick", p.name);
            }
        }
    }

    #[test]
    fn the_list_shows_every_preset_with_its_estimate() {
        let text = list();
        for p in PRESETS {
            let line = text
                .lines()
                .find(|l| l.split_whitespace().next() == Some(p.name))
                .unwrap_or_else(|| panic!("{} missing from:\n{text}", p.name));
            assert!(line.contains(p.summary), "{line}");
            assert!(line.contains("CPU") || line.contains("seconds"), "{line}");
        }
        assert!(text.contains("2 workers: half"), "{text}");
    }

    #[test]
    fn s5_is_the_seed_parameterisation() {
        for name in ["s5", "s5-quick", "quickstart"] {
            let s = parse(name);
            assert_eq!(s.space["nf"].from_unit(0.5), Value::from(55), "{name}");
            assert_eq!(
                s.space["batch_size"].from_unit(0.5),
                Value::from(64),
                "{name}"
            );
            assert_eq!(
                s.space["momentum"].from_unit(0.5).as_f64(),
                Some(0.5),
                "{name}"
            );
            let lr = s.space["lr"].from_unit(0.5).as_f64().unwrap();
            assert!((lr - 10f64.powf(-1.25)).abs() < 1e-15, "{name}: lr {lr}");
            // The ends of the seed's ranges: nf in [10, 100), batch in [16, 256).
            assert_eq!(s.space["nf"].from_unit(0.0), Value::from(10), "{name}");
            assert_eq!(
                s.space["batch_size"].from_unit(0.0),
                Value::from(16),
                "{name}"
            );
        }
        assert_eq!(parse("s5").budget.time_limit_s, Some(60.0));
    }

    #[test]
    fn seed_004_presets_train_its_mlp() {
        for p in PRESETS.iter().filter(|p| {
            matches!(
                p.exercise,
                Some(WeightDecay) | Some(Dropout) | Some(EarlyStopping)
            )
        }) {
            let s = parse(p.name);
            let TrainerSpec::Cnn { defaults: d, .. } = &s.trainer else {
                panic!("{}", p.name)
            };
            assert_eq!(d.conv_layers, 0, "{}", p.name);
            assert_eq!(d.dense_widths, vec![128, 64], "{}", p.name);
            assert_eq!(d.batch_size, 32, "{}", p.name);
            assert!(
                matches!(d.optimizer, Optimizer::Adam | Optimizer::Adamw),
                "{}",
                p.name
            );
            if !s.space.contains_key("lr") {
                assert_eq!(d.lr, 1e-4, "{}", p.name);
            }
            assert_eq!((d.train_size, d.val_size), (1024, 2560), "{}", p.name);
        }
    }
}
