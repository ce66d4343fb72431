//! The study file, `study.json`: what to search, how, and with which trainer.
//! Its reference is `docs/study-file.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::exercise::{Exercise, Hypothesis};
use crate::functions::Function;
use crate::space::ParamSpec;
use crate::{FieldError, Metric, Versioned, FORMAT_VERSION};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Study {
    pub format_version: u32,
    /// A short name, used in logs and tables.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Parameter name → how it is searched.
    pub space: BTreeMap<String, ParamSpec>,
    pub objective: Objective,
    /// `auto` when the study file has none.
    #[serde(default)]
    pub sampler: SamplerSpec,
    /// Trials per setting, each with its own training seed
    /// (`seed`, `seed + 1`, …). Scenario 1's "3 runs per LR" is `"repeats": 3`.
    #[serde(default = "one_u32")]
    pub repeats: u32,
    /// Base training seed. Repeat `r` of every setting trains with `seed + r`,
    /// so settings are compared on common random numbers.
    #[serde(default)]
    pub seed: u64,
    /// Optional: grid studies may leave it out entirely.
    #[serde(default)]
    pub budget: Budget,
    #[serde(default)]
    pub mode: Mode,
    /// Multi-fidelity early stopping; the fidelity is the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruner: Option<PrunerSpec>,
    pub trainer: TrainerSpec,
    /// The course exercise this study reproduces; the report opens with
    /// the answers to its questions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exercise: Option<Exercise>,
    /// The hypothesis this study tests; the report states a verdict beside
    /// the measured effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hypothesis: Option<Hypothesis>,
}

/// How trials are stopped early on their intermediate values. Every kind
/// needs a trainer that reports per epoch (cnn, or exec with reports).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PrunerSpec {
    /// Asynchronous successive halving (Li et al. 2018), stopping variant:
    /// at each rung (`min_epochs * eta^k` epochs) a trial goes on only if
    /// it is in the top `1/eta` of all trials that reached that rung.
    Asha {
        #[serde(default = "one_u32")]
        min_epochs: u32,
        #[serde(default = "three")]
        eta: u32,
    },
    /// Sync mode: each batch is one successive-halving bracket. Trials
    /// pause at each rung; when the whole batch has reached it, the best
    /// `1/eta` resume from their checkpoints and the rest are pruned.
    SuccessiveHalving {
        #[serde(default = "one_u32")]
        min_epochs: u32,
        #[serde(default = "three")]
        eta: u32,
    },
    /// Sync mode: successive-halving brackets with Hyperband's sizes
    /// (Li et al. 2017), cycling from the most to the least aggressive.
    /// The batch sizes come from the brackets; `mode.batch` is not used.
    Hyperband {
        #[serde(default = "one_u32")]
        min_epochs: u32,
        #[serde(default = "three")]
        eta: u32,
    },
    /// The median stopping rule (Golovin et al. 2017, as Optuna's
    /// `MedianPruner`): after `warmup_epochs`, stop a trial whose best
    /// value so far is worse than the median of the finished trials'
    /// values at the same epoch, once `startup_trials` have finished.
    Median {
        #[serde(default = "one_u32")]
        warmup_epochs: u32,
        #[serde(default = "five")]
        startup_trials: u32,
    },
}

fn three() -> u32 {
    3
}

fn five() -> u32 {
    5
}

impl PrunerSpec {
    pub fn name(&self) -> &'static str {
        match self {
            PrunerSpec::Asha { .. } => "asha",
            PrunerSpec::SuccessiveHalving { .. } => "successive_halving",
            PrunerSpec::Hyperband { .. } => "hyperband",
            PrunerSpec::Median { .. } => "median",
        }
    }

    /// Kinds that pause trials and resume them from checkpoints.
    pub fn pauses(&self) -> bool {
        matches!(
            self,
            PrunerSpec::SuccessiveHalving { .. } | PrunerSpec::Hyperband { .. }
        )
    }
}

fn one_u32() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Objective {
    /// A key of the result's `metrics`, e.g. `val_error` or `value`.
    pub metric: String,
    pub direction: Direction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Minimize,
    Maximize,
}

impl Direction {
    /// True when `a` is strictly better than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Direction::Minimize => a < b,
            Direction::Maximize => a > b,
        }
    }

    /// `v` in minimisation form: `v` when minimising, `-v` when maximising,
    /// so that lower is always better.
    pub fn sort_key(self, v: f64) -> f64 {
        match self {
            Direction::Minimize => v,
            Direction::Maximize => -v,
        }
    }

    /// Orders values best first (by `f64::total_cmp`).
    pub fn cmp(self, a: f64, b: f64) -> std::cmp::Ordering {
        match self {
            Direction::Minimize => a.total_cmp(&b),
            Direction::Maximize => b.total_cmp(&a),
        }
    }

    /// The worst possible value: +inf when minimising, -inf when maximising.
    pub fn worst(self) -> f64 {
        match self {
            Direction::Minimize => f64::INFINITY,
            Direction::Maximize => f64::NEG_INFINITY,
        }
    }

    /// The serde name: `minimize` or `maximize`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Minimize => "minimize",
            Direction::Maximize => "maximize",
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SamplerSpec {
    /// The Cartesian product of every parameter's grid values, in a fixed
    /// order (parameters by name, last name varying fastest). With
    /// `shuffle`, a seeded permutation of that order.
    Grid {
        #[serde(default)]
        shuffle: bool,
        #[serde(default)]
        seed: u64,
    },
    /// Independent uniform draws in the unit cube, one seeded stream per trial.
    Random { seed: u64 },
    /// A (scrambled) Sobol sequence: setting `c` is point `c` of the sequence.
    QuasiRandom {
        seed: u64,
        /// Scramble the sequence (linear matrix scramble + digital shift)
        /// with `seed`; unscrambled, the sequence's all-zero first point is
        /// skipped.
        #[serde(default = "yes")]
        scramble: bool,
    },
    /// Multivariate tree-structured Parzen estimator (Optuna's
    /// `TPESampler(multivariate=True, constant_liar=True)`).
    Tpe {
        seed: u64,
        /// Settings drawn from the quasi-random sequence before TPE starts.
        #[serde(default = "ten")]
        n_startup: u32,
        /// Candidates drawn from l(x) per proposal; the best l/g is proposed.
        #[serde(default = "twenty_four", deserialize_with = "at_least_one")]
        n_ei_candidates: u32,
    },
    /// CMA-ES in the unit cube with IPOP restarts.
    Cmaes {
        seed: u64,
        /// Initial step size in the unit cube, in (0, 1]; default 1/6 (a
        /// sixth of every range, as Optuna).
        #[serde(default = "default_sigma0", deserialize_with = "unit_step")]
        sigma0: f64,
        /// Population per generation; `null`: the sync batch (in settings)
        /// when it is at least 2, else 4 + floor(3 ln d).
        #[serde(default, deserialize_with = "popsize")]
        popsize: Option<u32>,
        /// Restart with a doubled population when a run converges or stalls.
        #[serde(default = "yes")]
        ipop: bool,
    },
    /// Bayesian optimisation: a Gaussian process (Matérn-5/2 with automatic
    /// relevance determination) on the unit cube, proposing the maximiser
    /// of log expected improvement; pending settings are fantasised at the
    /// posterior mean (kriging believer).
    Gp {
        seed: u64,
        /// Settings drawn from the quasi-random sequence before the GP starts.
        #[serde(default = "ten")]
        startup: u32,
    },
    /// The default: the GP on mostly numeric spaces while fewer than 250
    /// trials have finished, TPE after that and on mostly categorical
    /// spaces (the master's `samplers/auto.rs` gives the evidence).
    Auto {
        #[serde(default)]
        seed: u64,
        /// Settings drawn from the quasi-random sequence before the model starts.
        #[serde(default = "ten")]
        startup: u32,
    },
}

impl Default for SamplerSpec {
    /// A study file without `sampler`.
    fn default() -> Self {
        SamplerSpec::Auto {
            seed: 0,
            startup: 10,
        }
    }
}

/// `trainer.defaults`, with the offending hyperparameter named in errors
/// (serde's internally tagged enums would otherwise lose the path).
fn cnn_defaults<'de, D: serde::Deserializer<'de>>(d: D) -> Result<CnnDefaults, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        serde::de::Error::custom(format!("defaults.{path}: {}", e.into_inner()))
    })
}

fn yes() -> bool {
    true
}

fn ten() -> u32 {
    10
}

fn twenty_four() -> u32 {
    24
}

fn default_sigma0() -> f64 {
    1.0 / 6.0
}

fn at_least_one<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    if v == 0 {
        return Err(serde::de::Error::custom(
            "`n_ei_candidates` must be at least 1",
        ));
    }
    Ok(v)
}

fn unit_step<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if !(v.is_finite() && v > 0.0 && v <= 1.0) {
        return Err(serde::de::Error::custom(format!(
            "`sigma0` must be in (0, 1] (a step size in the unit cube), got {v}"
        )));
    }
    Ok(v)
}

fn popsize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let v = Option::<u32>::deserialize(d)?;
    if let Some(n) = v {
        if n < 2 {
            return Err(serde::de::Error::custom(format!(
                "`popsize` must be at least 2 (or null), got {n}"
            )));
        }
    }
    Ok(v)
}

impl SamplerSpec {
    pub fn name(&self) -> &'static str {
        match self {
            SamplerSpec::Grid { .. } => "grid",
            SamplerSpec::Random { .. } => "random",
            SamplerSpec::QuasiRandom { .. } => "quasi_random",
            SamplerSpec::Tpe { .. } => "tpe",
            SamplerSpec::Cmaes { .. } => "cmaes",
            SamplerSpec::Gp { .. } => "gp",
            SamplerSpec::Auto { .. } => "auto",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Total number of trials (evaluations, repeats included). Optional for
    /// the grid sampler, where it defaults to grid size × repeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trials: Option<u64>,
    /// Training epochs per trial (ignored by the `function` trainer).
    #[serde(default = "one_u32")]
    pub epochs: u32,
    /// Wall-clock limit per trial in seconds. Training stops at the first
    /// epoch boundary past it and the trial completes with what it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Mode {
    /// Scenario 6: write `batch` settings, wait for all their results, then
    /// propose the next batch.
    Sync {
        #[serde(default = "two")]
        batch: u32,
    },
    /// Keep every worker busy: hold at least `queue` (and at least one per
    /// live worker) settings pending at all times.
    Async {
        #[serde(default = "two")]
        queue: u32,
    },
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            trials: None,
            epochs: 1,
            time_limit_s: None,
        }
    }
}

fn two() -> u32 {
    2
}

impl Default for Mode {
    fn default() -> Self {
        Mode::Sync { batch: 2 }
    }
}

// One per study, read once: the size of the cnn variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TrainerSpec {
    /// The built-in candle CNN of the seed (`build_cnn`).
    Cnn {
        /// Dataset directory with MNIST-format IDX files. The worker's
        /// `--data` overrides it; the default is Fashion-MNIST from the
        /// Debian package `dataset-fashion-mnist`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<String>,
        /// Values for hyperparameters the space does not mention.
        #[serde(default, deserialize_with = "cnn_defaults")]
        defaults: CnnDefaults,
        /// Where trials with `transfer` other than `none` take their
        /// starting weights from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transfer_from: Option<crate::cnn::TransferFrom>,
    },
    /// Any command, once per trial (see [`crate::exec::ExecSpec`]).
    Exec(crate::exec::ExecSpec),
    /// A built-in analytic test function; costs no time unless `sleep_s`.
    Function {
        name: Function,
        /// Dimension for functions that take any (rosenbrock, styblinski_tang).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dim: Option<usize>,
        /// Seconds each evaluation sleeps, to mimic training cost.
        #[serde(default)]
        sleep_s: f64,
    },
}

pub use crate::cnn::CnnDefaults;

impl Study {
    /// Number of trials the study will run, or an error naming the field.
    pub fn total_trials(&self) -> Result<u64, FieldError> {
        match (&self.sampler, self.budget.trials) {
            (_, Some(n)) => Ok(n),
            (SamplerSpec::Grid { .. }, None) => Ok(self.grid_size()? * self.repeats as u64),
            (s, None) => Err(FieldError::new(
                "budget.trials",
                format!(
                    "required for the {} sampler (how many trials to run)",
                    s.name()
                ),
            )),
        }
    }

    /// How the grid sampler's settings multiply out, e.g. `grid: lr 7 x nf
    /// 121 = 847 settings x 3 repeats`; `None` for other samplers.
    pub fn grid_expansion(&self) -> Option<String> {
        if !matches!(self.sampler, SamplerSpec::Grid { .. }) {
            return None;
        }
        let axes = self.grid_axes().ok()?;
        let size = axes.iter().fold(1u64, |n, (_, k)| n.saturating_mul(*k));
        let axes: Vec<String> = axes.iter().map(|(name, k)| format!("{name} {k}")).collect();
        let repeats = match self.repeats {
            1 => String::new(),
            r => format!(" x {r} repeats"),
        };
        Some(format!(
            "grid: {} = {size} settings{repeats}",
            axes.join(" x ")
        ))
    }

    /// Each parameter with its number of grid points.
    fn grid_axes(&self) -> Result<Vec<(&str, u64)>, FieldError> {
        self.space
            .iter()
            .map(|(name, p)| {
                let k = p
                    .grid_values()
                    .map_err(|m| FieldError::new(format!("space.{name}"), m.to_string()))?
                    .len() as u64;
                Ok((name.as_str(), k))
            })
            .collect()
    }

    /// Number of points in the full grid (saturating at `u64::MAX`).
    pub fn grid_size(&self) -> Result<u64, FieldError> {
        Ok(self
            .grid_axes()?
            .iter()
            .fold(1u64, |n, (_, k)| n.saturating_mul(*k)))
    }

    /// The training seed of repeat `r`: `seed + r`.
    pub fn trial_seed(&self, repeat: u32) -> u64 {
        self.seed.wrapping_add(repeat as u64)
    }
}

/// The fields of a study that may change after init: `budget.trials` (to
/// continue a study, §4.6 of the protocol) and the cosmetic `name` and
/// `description`. Every other field decides what a trial is or how trials
/// are compared, so editing it would mix old and new trials.
pub const TOLERATED_EDITS: [&str; 3] = ["budget.trials", "name", "description"];

/// At most this many changed fields are named in [`Study::edits_since`].
const MAX_EDITS_SHOWN: usize = 8;

impl Study {
    /// The fields that differ between `recorded` (the study as it was at
    /// init) and this one, ignoring [`TOLERATED_EDITS`]: dotted paths such
    /// as `sampler.seed: 0 → 1`. Empty when nothing that matters changed.
    /// Both sides are compared as parsed, so formatting, key order and
    /// spelled-out defaults are not edits.
    pub fn edits_since(&self, recorded: &Study) -> Vec<String> {
        let canonical = |s: &Study| {
            let mut s = s.clone();
            s.budget.trials = None;
            s.name = String::new();
            s.description = None;
            serde_json::to_value(s).unwrap_or(serde_json::Value::Null)
        };
        let mut out = Vec::new();
        diff_values("", &canonical(recorded), &canonical(self), &mut out);
        if out.len() > MAX_EDITS_SHOWN {
            let more = out.len() - MAX_EDITS_SHOWN;
            out.truncate(MAX_EDITS_SHOWN);
            out.push(format!("and {more} more"));
        }
        out
    }
}

/// Append to `out` the dotted path of every leaf where `old` and `new`
/// differ, with both values.
fn diff_values(
    path: &str,
    old: &serde_json::Value,
    new: &serde_json::Value,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    if let (Value::Object(a), Value::Object(b)) = (old, new) {
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for k in keys {
            let sub = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            let absent = Value::Null;
            diff_values(
                &sub,
                a.get(k).unwrap_or(&absent),
                b.get(k).unwrap_or(&absent),
                out,
            );
        }
    } else if old != new {
        out.push(format!("{path}: {} → {}", short_json(old), short_json(new)));
    }
}

/// A value for a message: compact JSON, `(none)` for null, at most 40 characters.
fn short_json(v: &serde_json::Value) -> String {
    if v.is_null() {
        return "(none)".into();
    }
    let s = v.to_string();
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

impl Study {
    fn validate_pruner(&self, p: &PrunerSpec) -> Result<(), FieldError> {
        // First: what the pruner's numbers would have to be says nothing
        // useful when the trainer cannot be pruned at all.
        if let TrainerSpec::Function { .. } = self.trainer {
            return Err(FieldError::new(
                "pruner",
                "the function trainer reports a single value, and pruning needs per-epoch \
                 values; remove the pruner, or use the cnn or exec trainer",
            ));
        }
        p.validate_rungs(self.budget.epochs)?;
        if self.repeats != 1 {
            return Err(FieldError::new(
                "pruner",
                format!(
                    "pruners compare single runs; use `repeats`: 1 (got {})",
                    self.repeats
                ),
            ));
        }
        if p.pauses() {
            if !matches!(self.mode, Mode::Sync { .. }) {
                return Err(FieldError::new(
                    "pruner.kind",
                    format!(
                        "{} needs `mode`: {{\"kind\": \"sync\"}}; use `asha` in async mode",
                        p.name()
                    ),
                ));
            }
            if !matches!(self.trainer, TrainerSpec::Cnn { .. }) {
                return Err(FieldError::new(
                    "pruner.kind",
                    format!(
                        "{} pauses trials and resumes them from checkpoints, which only the cnn \
                         trainer can do; use `asha` or `median` with this trainer",
                        p.name()
                    ),
                ));
            }
        }
        self.validate_pruned_trainer()
    }

    /// What the trainer must allow for a pruner: one model per trial (no
    /// folds) and an objective with a value per epoch.
    fn validate_pruned_trainer(&self) -> Result<(), FieldError> {
        match &self.trainer {
            // Refused first, above.
            TrainerSpec::Function { .. } => Ok(()),
            TrainerSpec::Cnn { defaults, .. } => {
                if defaults.folds > 1 || self.space.contains_key("folds") {
                    return Err(FieldError::new(
                        "pruner",
                        "k-fold cross-validation (`folds`) trains one model per fold and \
                         cannot be pruned per epoch; remove the pruner or `folds`",
                    ));
                }
                let metric = self.objective.metric.parse::<Metric>().ok();
                if metric.is_some_and(Metric::per_epoch) {
                    Ok(())
                } else {
                    Err(FieldError::new(
                        "objective.metric",
                        format!(
                            "a pruner compares the objective per epoch, and `{}` has no per-epoch \
                             value; use one of {}",
                            self.objective.metric,
                            Metric::join(Metric::PER_EPOCH)
                        ),
                    ))
                }
            }
            TrainerSpec::Exec(_) => Ok(()),
        }
    }
}

impl PrunerSpec {
    /// The pruner's own numbers, against the study's `epochs`.
    fn validate_rungs(&self, epochs: u32) -> Result<(), FieldError> {
        match *self {
            PrunerSpec::Asha { min_epochs, eta }
            | PrunerSpec::SuccessiveHalving { min_epochs, eta }
            | PrunerSpec::Hyperband { min_epochs, eta } => {
                if eta < 2 {
                    return Err(FieldError::new(
                        "pruner.eta",
                        format!("must be at least 2, got {eta}"),
                    ));
                }
                if min_epochs == 0 || min_epochs >= epochs {
                    return Err(FieldError::new(
                        "pruner.min_epochs",
                        format!(
                            "must be at least 1 and below budget.epochs ({epochs}), got {min_epochs}: \
                             the first rung is min_epochs, the last budget.epochs"
                        ),
                    ));
                }
            }
            PrunerSpec::Median {
                warmup_epochs,
                startup_trials,
            } => {
                if warmup_epochs == 0 || warmup_epochs >= epochs {
                    return Err(FieldError::new(
                        "pruner.warmup_epochs",
                        format!(
                            "must be at least 1 and below budget.epochs ({epochs}), got {warmup_epochs}"
                        ),
                    ));
                }
                if startup_trials == 0 {
                    return Err(FieldError::new(
                        "pruner.startup_trials",
                        "must be at least 1",
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Study {
    /// The trainer's checks: the space names its hyperparameters, the
    /// objective is a metric it reports, its own settings are valid.
    /// The parameter names a trainer with a fixed vocabulary knows. Checked
    /// before anything about the values (a grid's points), so that a typo
    /// is reported as a typo.
    fn check_space_names(&self) -> Result<(), FieldError> {
        if let TrainerSpec::Cnn { .. } = self.trainer {
            let known = crate::cnn::cnn_params();
            for name in self.space.keys() {
                if !known.contains(name) {
                    return Err(FieldError::new(
                        format!("space.{name}"),
                        format!(
                            "the cnn trainer has no hyperparameter `{name}`{}; it knows {}",
                            crate::suggest::did_you_mean(name, known.iter().map(|k| k.as_str())),
                            known.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// `transfer` other than `none` (in the defaults or among the choices
    /// of a `transfer` parameter) needs `trainer.transfer_from`, which
    /// must be well formed.
    fn validate_transfer(
        &self,
        defaults: &CnnDefaults,
        from: Option<&crate::cnn::TransferFrom>,
    ) -> Result<(), FieldError> {
        use crate::cnn::Transfer;
        if let Some(from) = from {
            return from
                .validate()
                .map_err(|(f, m)| FieldError::new(format!("trainer.transfer_from.{f}"), m));
        }
        let none = serde_json::Value::from(Transfer::None.as_str());
        let searched = match self.space.get("transfer") {
            Some(crate::ParamSpec::Categorical { choices }) => {
                choices.iter().find(|c| **c != none).cloned()
            }
            Some(crate::ParamSpec::Fixed { value }) => (*value != none).then(|| value.clone()),
            _ => None,
        };
        let (field, value) = match searched {
            Some(v) => ("space.transfer", v.to_string()),
            None if defaults.transfer != Transfer::None => (
                "trainer.defaults.transfer",
                format!("\"{}\"", defaults.transfer.as_str()),
            ),
            None => return Ok(()),
        };
        Err(FieldError::new(
            field,
            format!(
                "transfer {value} starts trials from another trial's weights, named by \
                 `trainer.transfer_from`, which is missing; add e.g. \
                 \"transfer_from\": {{\"study\": \"../base-model\", \"trial\": \"best\"}}"
            ),
        ))
    }

    fn validate_trainer(&self) -> Result<(), FieldError> {
        match &self.trainer {
            TrainerSpec::Cnn {
                defaults,
                transfer_from,
                ..
            } => {
                defaults
                    .validate()
                    .map_err(|m| FieldError::new("trainer.defaults", m.to_string()))?;
                self.validate_transfer(defaults, transfer_from.as_ref())?;
                let metric = self.objective.metric.parse::<Metric>().ok();
                if !metric.is_some_and(|m| Metric::OBJECTIVES.contains(&m)) {
                    return Err(FieldError::new(
                        "objective.metric",
                        format!(
                            "the cnn trainer reports {}; got `{}`",
                            Metric::join(Metric::OBJECTIVES),
                            self.objective.metric
                        ),
                    ));
                }
            }
            TrainerSpec::Exec(spec) => {
                spec.validate(self.space.keys())?;
                spec.validate_workdir_values(&self.space)?;
            }
            TrainerSpec::Function { name, dim, sleep_s } => {
                if !sleep_s.is_finite() || *sleep_s < 0.0 {
                    return Err(FieldError::new(
                        "trainer.sleep_s",
                        format!("must be >= 0, got {sleep_s}"),
                    ));
                }
                let d = name
                    .dimension(*dim)
                    .map_err(|m| FieldError::new("trainer.dim", m.to_string()))?;
                for i in 0..d {
                    let key = format!("x{i}");
                    if !self.space.contains_key(&key) {
                        return Err(FieldError::new(
                            "space",
                            format!(
                                "the {} function takes x0..x{}; `{key}` is missing",
                                name.as_str(),
                                d - 1
                            ),
                        ));
                    }
                }
                if let Some(extra) = self.space.keys().find(|k| {
                    k.strip_prefix('x')
                        .and_then(|i| i.parse::<usize>().ok())
                        .is_none_or(|i| i >= d)
                }) {
                    return Err(FieldError::new(
                        format!("space.{extra}"),
                        format!("the {} function takes only x0..x{}", name.as_str(), d - 1),
                    ));
                }
                if !["value", "regret"].contains(&self.objective.metric.as_str()) {
                    return Err(FieldError::new(
                        "objective.metric",
                        format!(
                            "the function trainer reports `value` and `regret`; got `{}`",
                            self.objective.metric
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The most trials one study may plan: each is a few files in one
/// directory, and a larger number is a typo (`1e15`) or a grid far too fine.
pub const MAX_TRIALS: u64 = 10_000_000;

impl Study {
    /// A grid study: the grid times `repeats` fits one study, and
    /// `budget.trials` (if given) is no more than that.
    fn validate_grid_budget(&self) -> Result<(), FieldError> {
        let size = self.grid_size()?;
        let full = size.saturating_mul(self.repeats as u64);
        if full > MAX_TRIALS {
            // The exact count may not fit a u64 (100 points on 10 axes).
            let shown = if full == u64::MAX {
                let n = self
                    .grid_axes()?
                    .iter()
                    .map(|(_, k)| *k as f64)
                    .product::<f64>();
                format!("{:.3e}", n * self.repeats as f64)
            } else {
                full.to_string()
            };
            return Err(FieldError::new(
                "space",
                format!(
                    "the grid holds {shown} settings x repeats, more than one study can \
                     hold (at most {MAX_TRIALS}); use fewer `grid` points or choices, or a \
                     sampler such as tpe or random with a `budget.trials`"
                ),
            ));
        }
        if let Some(n) = self.budget.trials {
            if n > full {
                return Err(FieldError::new(
                    "budget.trials",
                    format!(
                        "{n} is more than the grid holds ({size} settings x {} repeats = {full}); \
                         raise `repeats` or leave `budget.trials` out",
                        self.repeats
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl Versioned for Study {
    fn validate(&self) -> Result<(), FieldError> {
        if self.format_version != FORMAT_VERSION {
            return Err(FieldError::new(
                "format_version",
                format!("must be {FORMAT_VERSION}"),
            ));
        }
        crate::validate_id("study name", &self.name)
            .map_err(|e| FieldError::new("name", e.to_string()))?;
        if self.space.is_empty() {
            return Err(FieldError::new(
                "space",
                "must define at least one parameter",
            ));
        }
        self.check_space_names()?;
        for (name, p) in &self.space {
            crate::validate_id("parameter name", name)
                .map_err(|e| FieldError::new(format!("space.{name}"), e.to_string()))?;
            p.validate()
                .map_err(|e| e.under(&format!("space.{name}")))?;
        }
        if self.repeats == 0 {
            return Err(FieldError::new("repeats", "must be at least 1"));
        }
        if self.budget.epochs == 0 {
            return Err(FieldError::new("budget.epochs", "must be at least 1"));
        }
        if let Some(t) = self.budget.time_limit_s {
            if !t.is_finite() || t <= 0.0 {
                return Err(FieldError::new(
                    "budget.time_limit_s",
                    format!("must be a positive number of seconds, got {t}"),
                ));
            }
        }
        if self.budget.trials == Some(0) {
            return Err(FieldError::new("budget.trials", "must be at least 1"));
        }
        if let Some(n) = self.budget.trials.filter(|n| *n > MAX_TRIALS) {
            return Err(FieldError::new(
                "budget.trials",
                format!(
                    "{n} is more than one study can hold (at most {MAX_TRIALS}: each trial is \
                     a few files in one directory); split the search into several studies"
                ),
            ));
        }
        match self.mode {
            Mode::Sync { batch: 0 } => {
                return Err(FieldError::new("mode.batch", "must be at least 1"))
            }
            Mode::Async { queue: 0 } => {
                return Err(FieldError::new("mode.queue", "must be at least 1"))
            }
            _ => {}
        }
        if let SamplerSpec::Grid { .. } = self.sampler {
            self.validate_grid_budget()?;
        }
        self.total_trials()?;
        if let Some(h) = &self.hypothesis {
            h.validate(&self.space)?;
        }
        if let Some(p) = &self.pruner {
            self.validate_pruner(p)?;
        }
        self.validate_trainer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const S5: &str = r#"{
      "format_version": 1,
      "name": "s5",
      "space": {
        "nf": {"type": "transform", "offset": 10, "scale": 90, "int": true},
        "batch_size": {"type": "transform", "offset": 4, "scale": 4, "base": 2, "int": true},
        "momentum": {"type": "transform"},
        "lr": {"type": "transform", "offset": -2, "scale": 1.5, "base": 10}
      },
      "objective": {"metric": "val_error", "direction": "minimize"},
      "sampler": {"kind": "random", "seed": 1},
      "budget": {"trials": 200, "epochs": 50, "time_limit_s": 60},
      "trainer": {"kind": "cnn"}
    }"#;

    fn parse(text: &str) -> Result<Study, crate::SchemaError> {
        crate::parse_versioned(Path::new("study.json"), text)
    }

    #[test]
    fn direction_helpers() {
        use std::cmp::Ordering;
        let (min, max) = (Direction::Minimize, Direction::Maximize);
        assert_eq!((min.as_str(), max.as_str()), ("minimize", "maximize"));
        assert_eq!(serde_json::to_value(max).unwrap(), "maximize");
        assert!(min.better(1.0, 2.0) && max.better(2.0, 1.0));
        assert_eq!((min.sort_key(3.0), max.sort_key(3.0)), (3.0, -3.0));
        assert_eq!(min.cmp(1.0, 2.0), Ordering::Less);
        assert_eq!(max.cmp(1.0, 2.0), Ordering::Greater);
        assert_eq!(max.cmp(2.0, 2.0), Ordering::Equal);
        assert!(min.better(5.0, min.worst()) && max.better(-5.0, max.worst()));
    }

    #[test]
    fn sampler_and_pruner_names_are_the_serde_tags() {
        for kind in ["grid", "random", "quasi_random", "tpe", "cmaes", "gp"] {
            let s: SamplerSpec =
                serde_json::from_str(&format!(r#"{{"kind": "{kind}", "seed": 1}}"#)).unwrap();
            assert_eq!(s.name(), kind);
        }
        for kind in ["asha", "successive_halving", "hyperband", "median"] {
            let p: PrunerSpec = serde_json::from_str(&format!(r#"{{"kind": "{kind}"}}"#)).unwrap();
            assert_eq!(p.name(), kind);
        }
    }

    /// A branin study on the function trainer with `edit` applied to its text.
    fn function_study(edit: impl Fn(&str) -> String) -> Result<Study, crate::SchemaError> {
        let text = r#"{"format_version":1,"name":"f",
            "space":{"x0":{"type":"float","low":-5,"high":10},"x1":{"type":"float","low":0,"high":15}},
            "objective":{"metric":"value","direction":"minimize"},
            "sampler":{"kind":"random","seed":0},"budget":{"trials":6},
            "trainer":{"kind":"function","name":"branin"}}"#;
        parse(&edit(text))
    }

    #[test]
    fn absurd_budgets_and_grids_are_refused_at_init_with_the_field_named() {
        let e = function_study(|t| t.replace(r#""trials":6"#, r#""trials":1000000000000000"#))
            .unwrap_err();
        assert_eq!(e.field(), "budget.trials", "{e}");
        assert!(e.to_string().contains("at most 10000000"), "{e}");
        // 100 points on each of 10 parameters: 100^10 settings.
        let axes: Vec<String> = (0..10)
            .map(|i| format!(r#""p{i}":{{"type":"float","low":0,"high":1,"grid":100}}"#))
            .collect();
        let text = format!(
            r#"{{"format_version":1,"name":"g","space":{{{}}},
            "objective":{{"metric":"value","direction":"minimize"}},
            "sampler":{{"kind":"grid"}},"trainer":{{"kind":"function","name":"rosenbrock","dim":10}}}}"#,
            axes.join(",")
        );
        let e = parse(&text).unwrap_err();
        assert_eq!(e.field(), "space", "{e}");
        assert!(
            e.to_string().contains("more than one study can hold"),
            "{e}"
        );
        assert!(e.to_string().contains("holds 1.000e20 settings"), "{e}");
        let e = function_study(|t| {
            t.replace(
                r#""type":"float","low":-5,"high":10"#,
                r#""type":"float","low":10,"high":10,"grid":1000000"#,
            )
        })
        .unwrap_err();
        assert_eq!(e.field(), "space.x0.high", "{e}");
    }

    #[test]
    fn a_range_with_low_equal_to_high_is_refused_with_the_fixed_alternative() {
        for spec in [
            r#""type":"float","low":3,"high":3"#,
            r#""type":"int","low":3,"high":3"#,
        ] {
            let e = function_study(|t| t.replace(r#""type":"float","low":-5,"high":10"#, spec))
                .unwrap_err();
            assert_eq!(e.field(), "space.x0.high", "{e}");
            assert!(
                e.to_string().contains(r#"{"type": "fixed", "value": 3}"#),
                "{e}"
            );
        }
    }

    #[test]
    fn a_pruner_on_the_function_trainer_is_refused_for_what_it_is_not_for_min_epochs() {
        let e =
            function_study(|t| t.replace(r#""budget":"#, r#""pruner":{"kind":"asha"},"budget":"#))
                .unwrap_err();
        assert_eq!(e.field(), "pruner", "{e}");
        assert!(e.to_string().contains("function trainer"), "{e}");
        assert!(!e.to_string().contains("min_epochs"), "{e}");
    }

    #[test]
    fn parses_scenario5() {
        let s = parse(S5).unwrap();
        assert_eq!(s.total_trials().unwrap(), 200);
        assert_eq!(s.mode, Mode::Sync { batch: 2 });
    }

    #[test]
    fn unknown_field_names_file_and_path() {
        let bad = S5.replace("\"offset\": 10", "\"ofset\": 10");
        let e = parse(&bad).unwrap_err().to_string();
        assert!(
            e.contains("study.json") && e.contains("space.nf") && e.contains("ofset"),
            "{e}"
        );
    }

    #[test]
    fn bad_value_names_the_field() {
        let bad = S5.replace("\"epochs\": 50", "\"epochs\": 0");
        let e = parse(&bad).unwrap_err();
        assert_eq!(e.field(), "budget.epochs", "{e}");
        let bad = S5.replace("\"trials\": 200", "\"trials\": -1");
        let e = parse(&bad).unwrap_err();
        assert_eq!(e.field(), "budget.trials", "{e}");
    }

    #[test]
    fn unknown_format_version_is_rejected() {
        let bad = S5.replace("\"format_version\": 1", "\"format_version\": 7");
        let e = parse(&bad).unwrap_err();
        assert_eq!(e.field(), "format_version");
        assert!(e.to_string().contains("unsupported version 7"));
    }

    #[test]
    fn unknown_cnn_param_is_rejected() {
        let bad = S5.replace("\"momentum\":", "\"momentun\":");
        let e = parse(&bad).unwrap_err();
        assert_eq!(e.field(), "space.momentun", "{e}");
    }

    #[test]
    fn grid_total_includes_repeats() {
        let s = parse(
            r#"{"format_version":1,"name":"s1","repeats":3,
                "space":{"lr":{"type":"categorical","choices":[0.001,0.01,0.1,0.2,0.5,1,2]}},
                "objective":{"metric":"val_error","direction":"minimize"},
                "sampler":{"kind":"grid"},"budget":{"epochs":50},"trainer":{"kind":"cnn"}}"#,
        )
        .unwrap();
        assert_eq!(s.total_trials().unwrap(), 21);
    }

    #[test]
    fn cnn_defaults_are_checked_and_every_hyperparameter_can_be_searched() {
        let bad = S5.replace(
            r#""trainer": {"kind": "cnn"}"#,
            r#""trainer": {"kind": "cnn", "defaults": {"dropout": 1.5}}"#,
        );
        let e = parse(&bad).unwrap_err();
        assert_eq!(e.field(), "trainer.defaults", "{e}");
        assert!(e.to_string().contains("dropout"), "{e}");
        let bad = S5.replace(
            r#""trainer": {"kind": "cnn"}"#,
            r#""trainer": {"kind": "cnn", "defaults": {"activation": "swish"}}"#,
        );
        assert!(parse(&bad).unwrap_err().to_string().contains("activation"));
        let ok = S5.replace(
            r#""momentum": {"type": "transform"},"#,
            r#""momentum": {"type": "transform"},
               "optimizer": {"type": "categorical", "choices": ["adam", "nesterov"]},
               "batchnorm": {"type": "categorical", "choices": [true, false]},"#,
        );
        parse(&ok).unwrap();
    }

    #[test]
    fn pruners_are_checked_against_mode_trainer_and_metric() {
        let with = |pruner: &str, extra: &str| {
            S5.replace(
                r#""trainer": {"kind": "cnn"}"#,
                &format!(r#""pruner": {pruner}, "trainer": {{"kind": "cnn"{extra}}}"#),
            )
        };
        parse(&with(r#"{"kind": "asha"}"#, "")).unwrap();
        parse(&with(r#"{"kind": "successive_halving", "eta": 2}"#, "")).unwrap();
        let e = parse(&with(r#"{"kind": "asha", "min_epochs": 50}"#, "")).unwrap_err();
        assert_eq!(e.field(), "pruner.min_epochs", "{e}");
        let e = parse(&with(r#"{"kind": "asha", "eta": 1}"#, "")).unwrap_err();
        assert_eq!(e.field(), "pruner.eta", "{e}");
        let e = parse(&with(
            r#"{"kind": "median"}"#,
            r#", "defaults": {"folds": 3}"#,
        ))
        .unwrap_err();
        assert_eq!(e.field(), "pruner", "{e}");
        let async_sh = with(r#"{"kind": "hyperband"}"#, "")
            .replace(r#""trainer":"#, r#""mode": {"kind": "async"}, "trainer":"#);
        let e = parse(&async_sh).unwrap_err();
        assert_eq!(e.field(), "pruner.kind", "{e}");
        let test_metric = with(r#"{"kind": "asha"}"#, "")
            .replace(r#""metric": "val_error""#, r#""metric": "test_error""#);
        let e = parse(&test_metric).unwrap_err();
        assert_eq!(e.field(), "objective.metric", "{e}");
    }

    #[test]
    fn function_trainer_checks_dimensions() {
        let text = r#"{"format_version":1,"name":"b",
            "space":{"x0":{"type":"float","low":-5,"high":10}},
            "objective":{"metric":"value","direction":"minimize"},
            "sampler":{"kind":"random","seed":0},"budget":{"trials":5},
            "trainer":{"kind":"function","name":"branin"}}"#;
        let e = parse(text).unwrap_err();
        assert!(e.to_string().contains("x1"), "{e}");
    }

    #[test]
    fn editing_study_json_after_init_names_the_changed_fields() {
        let recorded = parse(S5).unwrap();
        // Formatting, key order and spelled-out defaults are not edits, and
        // neither are the tolerated ones.
        let same = S5
            .replace(r#""seed": 1}"#, r#""seed": 1  }"#)
            .replace(r#""trials": 200"#, r#""trials": 500"#)
            .replace(
                r#""name": "s5""#,
                r#""name": "renamed", "description": "d""#,
            )
            .replace(r#""kind": "cnn""#, r#""kind": "cnn", "defaults": {}"#);
        assert_eq!(
            parse(&same).unwrap().edits_since(&recorded),
            Vec::<String>::new()
        );

        let edited = S5
            .replace(r#""seed": 1"#, r#""seed": 2"#)
            .replace(r#""minimize""#, r#""maximize""#)
            .replace(r#""scale": 1.5"#, r#""scale": 2"#)
            .replace(r#""epochs": 50"#, r#""epochs": 5"#);
        assert_eq!(
            parse(&edited).unwrap().edits_since(&recorded),
            vec![
                "budget.epochs: 50 → 5",
                "objective.direction: \"minimize\" → \"maximize\"",
                "sampler.seed: 1 → 2",
                "space.lr.scale: 1.5 → 2.0",
            ]
        );
        let added = S5.replace(
            r#""momentum": {"type": "transform"},"#,
            r#""momentum": {"type": "transform"}, "weight_decay": {"type": "transform"},"#,
        );
        let e = parse(&added).unwrap().edits_since(&recorded);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("space.weight_decay: (none) → {"), "{e:?}");
    }

    #[test]
    fn transfer_needs_a_well_formed_transfer_from() {
        let with = |space: &str, trainer: &str| {
            S5.replace(r#""momentum": {"type": "transform"},"#, space)
                .replace(r#""trainer": {"kind": "cnn"}"#, trainer)
        };
        let err = |text: String| parse(&text).unwrap_err().to_string();
        let searched =
            r#""transfer": {"type": "categorical", "choices": ["none", "freeze_conv"]},"#;
        let e = err(with(searched, r#""trainer": {"kind": "cnn"}"#));
        assert!(
            e.contains("space.transfer") && e.contains("transfer_from"),
            "{e}"
        );
        let e = err(with(
            "",
            r#""trainer": {"kind": "cnn", "defaults": {"transfer": "finetune"}}"#,
        ));
        assert!(
            e.contains("trainer.defaults.transfer") && e.contains("transfer_from"),
            "{e}"
        );
        let e = err(with(
            searched,
            r#""trainer": {"kind": "cnn", "transfer_from": {"trial": "best"}}"#,
        ));
        assert!(
            e.contains("trainer.transfer_from.trial") && e.contains("`study`"),
            "{e}"
        );
        let e = err(with(
            searched,
            r#""trainer": {"kind": "cnn", "transfer_from": {"trial": "../t1"}}"#,
        ));
        assert!(e.contains("trainer.transfer_from.trial"), "{e}");
        for from in [
            r#"{"trial": "t000003"}"#,
            r#"{"study": "../base-model", "trial": "best"}"#,
        ] {
            let trainer = format!(r#""trainer": {{"kind": "cnn", "transfer_from": {from}}}"#);
            let s = parse(&with(searched, &trainer)).unwrap();
            let TrainerSpec::Cnn { transfer_from, .. } = s.trainer else {
                panic!("a cnn trainer")
            };
            assert!(transfer_from.is_some());
        }
    }
}
