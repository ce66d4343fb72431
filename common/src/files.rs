//! The files that travel through the study directory (see `docs/protocol.md`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{validate_id, FieldError, Metric, Versioned, FORMAT_VERSION};

/// Hyperparameter name → value, in a stable order.
pub type Params = BTreeMap<String, Value>;

/// A setting file: one trial the master asks a worker to run.
/// Written by the master to `settings/<id>.json` (the record) and
/// `pending/<id>.json` (the queue); never changed afterwards except by
/// re-queueing, which bumps `attempt`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrialSetting {
    pub format_version: u32,
    pub trial_id: String,
    /// Position in the study's proposal sequence (0-based).
    pub index: u64,
    /// Which distinct setting this is; repeats of a setting share it.
    pub config: u64,
    /// Repeat number within the setting (0-based).
    pub repeat: u32,
    /// Training seed.
    pub seed: u64,
    pub params: Params,
    pub epochs: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit_s: Option<f64>,
    /// 1 for the first run; incremented each time the trial is re-queued.
    #[serde(default = "one")]
    pub attempt: u32,
    /// Sync mode: the batch (generation) this setting belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u64>,
    /// The sampler that proposed it.
    pub sampler: String,
    /// How the sampler proposed it, for samplers with a start-up design
    /// and a model (`tpe`, `cmaes`, `gp`); absent for the others and in records
    /// written before this field existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// Successive halving / Hyperband: train up to this epoch, then pause
    /// (checkpoint kept, setting moved to `paused/`) until the master
    /// promotes the trial with a later `until_epoch` or prunes it. `None`:
    /// train to `epochs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_epoch: Option<u32>,
    /// Epochs after which the master decides whether the trial goes on
    /// (ASHA rungs, median-rule epochs). The cnn worker waits briefly for
    /// that decision in `decisions/` before training on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decide_at: Vec<u32>,
}

fn one() -> u32 {
    1
}

impl TrialSetting {
    /// The first attempt of trial `index` with `params`: its own config,
    /// repeat 0, seed 0, no batch, no time limit, no pruning epochs. The
    /// master fills in the rest with struct update syntax.
    pub fn new(index: u64, params: Params, epochs: u32, sampler: &str) -> TrialSetting {
        TrialSetting {
            format_version: crate::FORMAT_VERSION,
            trial_id: crate::ids::trial_id(index),
            index,
            config: index,
            repeat: 0,
            seed: 0,
            params,
            epochs,
            time_limit_s: None,
            attempt: 1,
            batch: None,
            sampler: sampler.to_string(),
            source: None,
            until_epoch: None,
            decide_at: Vec::new(),
        }
    }
}

impl Versioned for TrialSetting {
    fn validate(&self) -> Result<(), FieldError> {
        validate_id("trial id", &self.trial_id)
            .map_err(|e| FieldError::new("trial_id", e.to_string()))?;
        for k in self.params.keys() {
            validate_id("parameter name", k)
                .map_err(|e| FieldError::new(format!("params.{k}"), e.to_string()))?;
        }
        Ok(())
    }
}

/// How a learning sampler came to a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// From the start-up design, before the model had anything to learn
    /// from: TPE's Sobol points, CMA-ES's generation drawn before its
    /// distribution was first updated.
    Startup,
    /// From the model fitted to the finished trials.
    Model,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Startup => "startup",
            Source::Model => "model",
        }
    }
}

/// How a trial ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialStatus {
    /// Trained to the end (or to its time limit).
    Complete,
    /// The loss became NaN or infinite; the curve up to that point is kept.
    Diverged,
    /// The trainer failed (error recorded in `error`).
    Failed,
    /// The hyperparameters are outside the trainer's domain (e.g. lr < 0).
    Invalid,
    /// Stopped early by a pruner.
    Pruned,
}

impl TrialStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TrialStatus::Complete => "complete",
            TrialStatus::Diverged => "diverged",
            TrialStatus::Failed => "failed",
            TrialStatus::Invalid => "invalid",
            TrialStatus::Pruned => "pruned",
        }
    }
}

/// One per-epoch stat line, as in the seed's Lasagne code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochStat {
    /// 1-based epoch number.
    pub epoch: u32,
    /// Seconds of training since the trial started (evaluation excluded).
    pub elapsed_s: f64,
    /// Mean training loss over the epoch; `null` if it was not finite.
    #[serde(with = "nan_as_null")]
    pub train_loss: f64,
    #[serde(with = "nan_as_null")]
    pub val_loss: f64,
    /// Fraction of validation examples misclassified.
    #[serde(with = "nan_as_null")]
    pub val_error: f64,
    /// Fraction of training examples misclassified over the epoch's
    /// batches (as seed 004 computes its train accuracy: in training mode,
    /// while the weights move); absent in files from older workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_error: Option<f64>,
    /// Training instruments of the epoch (cnn trainer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruments: Option<Instruments>,
}

/// Cockpit-style measurements of one epoch, so that bugs such as a wrong
/// learning-rate schedule show up in the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instruments {
    /// The learning rate of the epoch's last step.
    #[serde(with = "nan_as_null")]
    pub lr: f64,
    /// Mean over the epoch's steps of the global gradient L2 norm.
    #[serde(with = "nan_as_null")]
    pub grad_norm: f64,
    /// Global L2 norm of the weights after the epoch.
    #[serde(with = "nan_as_null")]
    pub weight_norm: f64,
    /// Mean over the epoch's steps of `||update|| / ||weights||`.
    #[serde(with = "nan_as_null")]
    pub update_ratio: f64,
    /// Mean over the epoch's steps of the first layer's mean absolute
    /// weight (seed 004's "train mean abs weight"); absent in older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_abs_weight: Option<f64>,
    /// Mean over the epoch's steps of the first layer's mean absolute
    /// gradient (seed 004's "train mean abs grad"); absent in older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_abs_grad: Option<f64>,
    /// Mean and standard deviation of every block's output (conv blocks,
    /// then hidden dense layers) on up to 256 validation examples in
    /// evaluation mode.
    pub activations: Vec<LayerStat>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerStat {
    pub layer: String,
    #[serde(with = "nan_as_null")]
    pub mean: f64,
    #[serde(with = "nan_as_null")]
    pub std: f64,
}

/// A result file, `results/<id>.json`, written once by the worker that
/// finished the trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrialResult {
    pub format_version: u32,
    pub trial_id: String,
    pub status: TrialStatus,
    pub params: Params,
    pub seed: u64,
    /// The study objective's value, when the trial produced it (never a
    /// non-finite one: that is left out, as JSON cannot hold it).
    #[serde(default, skip_serializing_if = "not_finite")]
    pub objective: Option<f64>,
    /// Final scalar metrics (only finite values: others are left out when
    /// written, so every result file written can be read back). For the
    /// cnn trainer these are taken at the best epoch (lowest validation
    /// loss); the last epoch's values carry a `last_` prefix.
    #[serde(default, serialize_with = "finite_entries")]
    pub metrics: BTreeMap<String, f64>,
    /// Per-epoch record.
    #[serde(default)]
    pub curve: Vec<EpochStat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_epoch: Option<u32>,
    #[serde(default)]
    pub epochs_completed: u32,
    /// Wall time of the whole trial, data loading excluded: every run of
    /// it that handed it back or paused it, plus the last one.
    pub wall_time_s: f64,
    /// Wall time of the last run alone, when earlier runs handed the trial
    /// back or paused it (left out otherwise: it equals `wall_time_s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_wall_time_s: Option<f64>,
    pub device: String,
    pub worker: String,
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The run ended at chance level: it completed, but its network
    /// predicts no better than guessing (the cnn trainer's rule is in
    /// `docs/study-file.md`). Such a run is not `diverged`: its losses
    /// stayed finite. Left out when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub collapsed: bool,
    /// Intermediate reports of the `exec` trainer: the JSON objects its
    /// command appended to `HPS_REPORT_FILE`, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reports: Vec<serde_json::Map<String, Value>>,
    /// Unix time the result was written (informational; never used to
    /// order events across hosts).
    pub finished_at_unix: f64,
}

impl TrialResult {
    /// An empty `failed` result for `setting`, run by `worker` on `device`;
    /// callers fill in what the run produced.
    pub fn for_setting(setting: &TrialSetting, worker: &str, device: &str) -> TrialResult {
        TrialResult {
            format_version: FORMAT_VERSION,
            trial_id: setting.trial_id.clone(),
            status: TrialStatus::Failed,
            params: setting.params.clone(),
            seed: setting.seed,
            objective: None,
            metrics: BTreeMap::new(),
            curve: Vec::new(),
            best_epoch: None,
            epochs_completed: 0,
            wall_time_s: 0.0,
            last_run_wall_time_s: None,
            device: device.to_string(),
            worker: worker.to_string(),
            attempt: setting.attempt,
            error: None,
            collapsed: false,
            reports: Vec::new(),
            finished_at_unix: unix_now(),
        }
    }
}

impl Versioned for TrialResult {
    fn validate(&self) -> Result<(), FieldError> {
        validate_id("trial id", &self.trial_id)
            .map_err(|e| FieldError::new("trial_id", e.to_string()))
    }
}

/// One intermediate value of the objective metric: the worker reports
/// them in `progress/<id>.json`, pruners compare them across trials.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressPoint {
    /// Epoch (cnn) or report step (exec), 1-based.
    pub step: u32,
    /// The objective metric at that step; `null` when not finite.
    #[serde(with = "nan_as_null")]
    pub value: f64,
}

/// One line of `cache/results.jsonl`: what the master needs of an accepted
/// result to resume without reading it again. The file is derived and
/// never the source of truth (see `docs/protocol.md`): a line counts only
/// while `results/<id>.json` exists, and a line that does not parse, or of
/// another `v`, is skipped (its result is read from `results/` instead).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultDigest {
    /// The line's format; [`ResultDigest::VERSION`].
    pub v: u32,
    pub trial_id: String,
    pub index: u64,
    pub config: u64,
    pub status: TrialStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<f64>,
    pub params: Params,
    pub wall_time_s: f64,
    /// The objective metric per epoch or report, as pruners and TPE use it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub points: Vec<ProgressPoint>,
}

impl ResultDigest {
    pub const VERSION: u32 = 1;
}

/// `progress/<id>.json`: a running trial's intermediate values, rewritten
/// by its worker after every epoch (cnn) or report (exec).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    pub format_version: u32,
    pub trial_id: String,
    pub worker: String,
    pub attempt: u32,
    /// The objective metric per step, in step order.
    pub points: Vec<ProgressPoint>,
    /// cnn: the per-epoch record so far (kept for a trial pruned while
    /// paused, whose result the master writes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub curve: Vec<EpochStat>,
    /// exec: the reports so far.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reports: Vec<serde_json::Map<String, Value>>,
    pub updated_at_unix: f64,
}

impl Versioned for Progress {
    fn validate(&self) -> Result<(), FieldError> {
        validate_id("trial id", &self.trial_id)
            .map_err(|e| FieldError::new("trial_id", e.to_string()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Continue,
    Stop,
}

/// `decisions/<id>.json`: the master's latest verdict on a running trial,
/// written by the pruner after the worker reported `step`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub format_version: u32,
    pub trial_id: String,
    /// The step (epoch) the decision was taken at.
    pub step: u32,
    pub action: Action,
    /// Which pruner decided (`asha`, `median`).
    pub pruner: String,
    /// Human-readable why, copied into a pruned trial's `error`.
    pub reason: String,
    pub written_at_unix: f64,
}

impl Versioned for Decision {
    fn validate(&self) -> Result<(), FieldError> {
        validate_id("trial id", &self.trial_id)
            .map_err(|e| FieldError::new("trial_id", e.to_string()))
    }
}

/// The objective metric per epoch of a cnn curve. `val_accuracy` is
/// derived from `val_error`; test metrics have no per-epoch value.
/// Empty for any other metric.
pub fn points_from_curve(metric: &str, curve: &[EpochStat]) -> Vec<ProgressPoint> {
    let Some(metric) = metric.parse::<Metric>().ok().filter(|m| m.per_epoch()) else {
        return Vec::new();
    };
    curve
        .iter()
        .map(|s| ProgressPoint {
            step: s.epoch,
            value: s.get(metric),
        })
        .collect()
}

/// The step of report number `i` (0-based) of an exec trainer: its `step`
/// or `epoch` key when that is a positive integer, else `i + 1`.
pub fn report_step(i: usize, report: &serde_json::Map<String, Value>) -> u32 {
    ["step", "epoch"]
        .iter()
        .find_map(|k| report.get(*k).and_then(Value::as_u64))
        .filter(|s| *s >= 1 && *s <= u32::MAX as u64)
        .map(|s| s as u32)
        .unwrap_or(i as u32 + 1)
}

/// The numeric values of an exec trainer's report, without its step key
/// (`step` or `epoch`, see [`report_step`]).
pub fn report_values(
    report: &serde_json::Map<String, Value>,
) -> impl Iterator<Item = (&String, f64)> {
    report
        .iter()
        .filter(|(k, _)| k.as_str() != "step" && k.as_str() != "epoch")
        .filter_map(|(k, v)| Some((k, v.as_f64()?)))
}

/// The objective metric per report of an exec trainer: the step is the
/// report's `step` or `epoch` key when it is a positive integer, else its
/// 1-based line number; reports without a numeric `metric` are skipped.
pub fn points_from_reports(
    metric: &str,
    reports: &[serde_json::Map<String, Value>],
) -> Vec<ProgressPoint> {
    let mut out: Vec<ProgressPoint> = Vec::new();
    for (i, r) in reports.iter().enumerate() {
        let Some(value) = r.get(metric).and_then(Value::as_f64) else {
            continue;
        };
        let step = report_step(i, r);
        // A repeated step keeps its latest value.
        out.retain(|p| p.step != step);
        out.push(ProgressPoint { step, value });
    }
    out.sort_by_key(|p| p.step);
    out
}

/// What a worker says it is doing, in its heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Waiting for a setting to claim.
    Idle,
    /// Running a trial (named in the heartbeat's `trial`).
    Training,
    /// Exited cleanly; its last heartbeat.
    Stopped,
}

impl WorkerState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Idle => "idle",
            WorkerState::Training => "training",
            WorkerState::Stopped => "stopped",
        }
    }
}

impl std::str::FromStr for WorkerState {
    type Err = String;

    fn from_str(s: &str) -> Result<WorkerState, String> {
        [
            WorkerState::Idle,
            WorkerState::Training,
            WorkerState::Stopped,
        ]
        .into_iter()
        .find(|w| w.as_str() == s)
        .ok_or_else(|| format!("`{s}` is not a worker state (idle, training, stopped)"))
    }
}

impl std::fmt::Display for WorkerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `heartbeats/<worker>.json`, rewritten by each worker every few seconds.
/// Liveness is judged by whether `seq` changes, on the reader's own clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    pub format_version: u32,
    pub worker: String,
    pub host: String,
    pub pid: u32,
    pub device: String,
    /// Incremented on every write.
    pub seq: u64,
    /// `idle`, `training` or `stopped` (a clean exit).
    pub state: WorkerState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u32>,
    /// Seconds between heartbeats, so readers can size their grace period.
    pub interval_s: f64,
    /// Informational only.
    pub written_at_unix: f64,
    /// The Slurm job this worker runs in, when it runs under Slurm
    /// (absent in heartbeats written before it existed, and outside Slurm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmJob>,
}

/// Where a worker runs under Slurm, from the environment Slurm gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmJob {
    /// `<array job>_<task>` for an array task, else the job id: what
    /// `squeue -j`, `scontrol requeue` and `scancel` take.
    pub job: String,
    /// The node it runs on (`SLURMD_NODENAME`).
    pub node: String,
}

impl Versioned for Heartbeat {
    fn validate(&self) -> Result<(), FieldError> {
        validate_id("worker id", &self.worker).map_err(|e| FieldError::new("worker", e.to_string()))
    }
}

/// `master.json`: the running master's lease, rewritten every few seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasterLease {
    pub format_version: u32,
    pub host: String,
    pub pid: u32,
    pub seq: u64,
    pub interval_s: f64,
    pub written_at_unix: f64,
}

impl Versioned for MasterLease {}

/// `finished.json`: written by the master when the budget is spent and all
/// results are in. Workers exit when they see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finished {
    pub format_version: u32,
    pub trials: u64,
    pub finished_at_unix: f64,
}

impl Versioned for Finished {}

/// `checkpoints/<id>/spent.json`: the wall time that earlier runs of a
/// trial spent without producing its result (handed back on a stop or a
/// preemption, or paused at a rung). Written by the worker that ran it and
/// read by the next run, so the result's `wall_time_s` covers every run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spent {
    pub format_version: u32,
    /// Wall seconds of those runs together.
    pub seconds: f64,
    /// How many runs.
    pub runs: u32,
}

impl Versioned for Spent {
    fn validate(&self) -> Result<(), FieldError> {
        if !self.seconds.is_finite() || self.seconds < 0.0 {
            return Err(FieldError::new("seconds", "must be a finite number >= 0"));
        }
        Ok(())
    }
}

/// `skip_serializing_if` for an optional number JSON cannot hold.
fn not_finite(v: &Option<f64>) -> bool {
    !v.is_some_and(f64::is_finite)
}

/// Serialize the finite entries of a map of numbers (JSON has no NaN or
/// infinity, and a `null` would not read back as a number).
fn finite_entries<S: serde::Serializer>(
    m: &BTreeMap<String, f64>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(m.iter().filter(|(_, v)| v.is_finite()))
}

/// Seconds since the Unix epoch, for informational timestamps.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Serialize non-finite floats as `null` (JSON has no NaN) and read `null`
/// back as NaN, so a diverged curve round-trips.
pub mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn result() -> TrialResult {
        TrialResult {
            format_version: FORMAT_VERSION,
            trial_id: "t000003".into(),
            status: TrialStatus::Diverged,
            params: [
                ("lr".to_string(), Value::from(2.0)),
                ("nf".to_string(), Value::from(32)),
            ]
            .into_iter()
            .collect(),
            seed: 1,
            objective: None,
            metrics: BTreeMap::new(),
            curve: vec![EpochStat {
                train_error: None,
                instruments: None,
                epoch: 1,
                elapsed_s: 1.5,
                train_loss: f64::NAN,
                val_loss: 2.3,
                val_error: 0.9,
            }],
            best_epoch: None,
            epochs_completed: 1,
            wall_time_s: 1.5,
            last_run_wall_time_s: None,
            device: "cpu".into(),
            worker: "w0".into(),
            attempt: 1,
            error: Some("loss became NaN at epoch 1".into()),
            collapsed: false,
            reports: Vec::new(),
            finished_at_unix: 0.0,
        }
    }

    /// Issue 25: a non-finite metric or objective was written as `null`,
    /// which the reader refused, and the master re-ran the trial forever.
    /// Whatever a writer puts in, the file it writes reads back.
    #[test]
    fn a_result_with_non_finite_numbers_reads_back() {
        let mut r = result();
        r.status = TrialStatus::Complete;
        r.objective = Some(f64::INFINITY);
        r.metrics.insert("value".into(), f64::INFINITY);
        r.metrics.insert("regret".into(), f64::NAN);
        r.metrics.insert("ok".into(), 1.5);
        let text = String::from_utf8(crate::to_pretty_json(&r)).unwrap();
        let back: TrialResult = crate::parse_versioned(Path::new("r.json"), &text).unwrap();
        assert_eq!(back.objective, None);
        assert_eq!(
            back.metrics.into_iter().collect::<Vec<_>>(),
            vec![("ok".to_string(), 1.5)]
        );
    }

    /// Snapshot: the on-disk shape of a result file is part of the protocol.
    #[test]
    fn result_snapshot() {
        let text = String::from_utf8(crate::to_pretty_json(&result())).unwrap();
        let expected = r#"{
  "format_version": 1,
  "trial_id": "t000003",
  "status": "diverged",
  "params": {
    "lr": 2.0,
    "nf": 32
  },
  "seed": 1,
  "metrics": {},
  "curve": [
    {
      "epoch": 1,
      "elapsed_s": 1.5,
      "train_loss": null,
      "val_loss": 2.3,
      "val_error": 0.9
    }
  ],
  "epochs_completed": 1,
  "wall_time_s": 1.5,
  "device": "cpu",
  "worker": "w0",
  "attempt": 1,
  "error": "loss became NaN at epoch 1",
  "finished_at_unix": 0.0
}
"#;
        assert_eq!(text, expected);
        let back: TrialResult = crate::parse_versioned(Path::new("r.json"), &text).unwrap();
        assert!(back.curve[0].train_loss.is_nan());
        assert_eq!(back.trial_id, "t000003");
    }

    #[test]
    fn worker_state_keeps_its_names() {
        for (st, name) in [
            (WorkerState::Idle, "idle"),
            (WorkerState::Training, "training"),
            (WorkerState::Stopped, "stopped"),
        ] {
            assert_eq!(st.as_str(), name);
            assert_eq!(st.to_string(), name);
            assert_eq!(serde_json::to_value(st).unwrap(), Value::from(name));
            let back: WorkerState = serde_json::from_value(Value::from(name)).unwrap();
            assert_eq!(back, st);
            assert_eq!(name.parse::<WorkerState>().unwrap(), st);
        }
        assert!(serde_json::from_value::<WorkerState>(Value::from("busy")).is_err());
        assert!("busy".parse::<WorkerState>().is_err());
    }

    /// A heartbeat as written by c53896b still reads, and writes back the same.
    #[test]
    fn heartbeat_file_is_unchanged() {
        let text = r#"{
  "format_version": 1,
  "worker": "w0",
  "host": "h",
  "pid": 7,
  "device": "cpu",
  "seq": 3,
  "state": "training",
  "trial": "t000001",
  "epoch": 2,
  "interval_s": 2.0,
  "written_at_unix": 1.5
}
"#;
        let hb: Heartbeat = crate::parse_versioned(Path::new("hb.json"), text).unwrap();
        assert_eq!(hb.state, WorkerState::Training);
        assert_eq!(hb.slurm, None);
        assert_eq!(String::from_utf8(crate::to_pretty_json(&hb)).unwrap(), text);
    }

    /// A worker under Slurm records its job and node; they read back.
    #[test]
    fn heartbeat_records_the_slurm_job() {
        let text = r#"{
  "format_version": 1,
  "worker": "slurm-12_0",
  "host": "gpu1",
  "pid": 7,
  "device": "cuda:0",
  "seq": 3,
  "state": "idle",
  "interval_s": 2.0,
  "written_at_unix": 1.5,
  "slurm": {
    "job": "12_0",
    "node": "gpu1"
  }
}
"#;
        let hb: Heartbeat = crate::parse_versioned(Path::new("hb.json"), text).unwrap();
        assert_eq!(
            hb.slurm,
            Some(SlurmJob {
                job: "12_0".into(),
                node: "gpu1".into()
            })
        );
        assert_eq!(String::from_utf8(crate::to_pretty_json(&hb)).unwrap(), text);
    }

    /// `source` is optional: a setting written before it existed reads
    /// (and writes back unchanged); a new one carries it after `sampler`.
    #[test]
    fn setting_source_is_optional_and_recorded() {
        let old = r#"{
  "format_version": 1,
  "trial_id": "t000002",
  "index": 2,
  "config": 2,
  "repeat": 0,
  "seed": 0,
  "params": {
    "lr": 0.1
  },
  "epochs": 4,
  "attempt": 1,
  "sampler": "tpe"
}
"#;
        let s: TrialSetting = crate::parse_versioned(Path::new("s.json"), old).unwrap();
        assert_eq!(s.source, None);
        assert_eq!(String::from_utf8(crate::to_pretty_json(&s)).unwrap(), old);
        let new = TrialSetting {
            source: Some(Source::Model),
            ..s
        };
        let text = String::from_utf8(crate::to_pretty_json(&new)).unwrap();
        assert!(
            text.contains("\"sampler\": \"tpe\",\n  \"source\": \"model\"\n"),
            "{text}"
        );
        let back: TrialSetting = crate::parse_versioned(Path::new("s.json"), &text).unwrap();
        assert_eq!(back, new);
        for (src, name) in [(Source::Startup, "startup"), (Source::Model, "model")] {
            assert_eq!(serde_json::to_value(src).unwrap(), Value::from(name));
            assert_eq!(src.as_str(), name);
        }
    }

    #[test]
    fn points_from_curve_per_metric() {
        let curve = result().curve;
        let p = points_from_curve("val_accuracy", &curve);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].value, 1.0 - 0.9);
        assert_eq!(points_from_curve("val_loss", &curve)[0].value, 2.3);
        assert!(points_from_curve("test_error", &curve).is_empty());
        assert!(points_from_curve("value", &curve).is_empty());
    }

    #[test]
    fn truncated_file_names_the_file() {
        let text = String::from_utf8(crate::to_pretty_json(&result())).unwrap();
        let e =
            crate::parse_versioned::<TrialResult>(Path::new("results/t000003.json"), &text[..40])
                .unwrap_err()
                .to_string();
        assert!(e.starts_with("results/t000003.json: "), "{e}");
    }

    #[test]
    fn traversal_in_trial_id_is_rejected() {
        let mut r = result();
        r.trial_id = "../../etc/passwd".into();
        let text = String::from_utf8(crate::to_pretty_json(&r)).unwrap();
        let e = crate::parse_versioned::<TrialResult>(Path::new("r.json"), &text).unwrap_err();
        assert_eq!(e.field(), "trial_id");
    }
}
