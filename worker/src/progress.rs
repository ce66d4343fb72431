//! The worker's half of pruning: report intermediate values to
//! `progress/<id>.json` and read the master's verdicts from
//! `decisions/<id>.json`.

use std::time::{Duration, Instant};

use hps_common::files::{points_from_curve, points_from_reports, unix_now};
use hps_common::{Action, EpochStat, Progress, TrialSetting, FORMAT_VERSION};
use hps_shared_fs::StudyDir;
use serde_json::{Map, Value};
use tracing::{debug, warn};

/// How long a worker waits at a `decide_at` epoch for the master's verdict
/// before training on regardless (the master may be down or slow; it can
/// still stop the trial at a later epoch).
pub const DECISION_WAIT: Duration = Duration::from_secs(10);

pub struct Reporter<'a> {
    dir: &'a StudyDir,
    progress: Progress,
    metric: String,
    /// Whether any trial needs reports (the study has a pruner).
    enabled: bool,
}

impl<'a> Reporter<'a> {
    /// A reporter for `setting`. A cnn trial resumed from a checkpoint
    /// keeps the epochs already in its progress file.
    pub fn new(
        dir: &'a StudyDir,
        setting: &TrialSetting,
        worker: &str,
        metric: &str,
        enabled: bool,
    ) -> Self {
        let mut progress = Progress {
            format_version: FORMAT_VERSION,
            trial_id: setting.trial_id.clone(),
            worker: worker.to_string(),
            attempt: setting.attempt,
            points: Vec::new(),
            curve: Vec::new(),
            reports: Vec::new(),
            updated_at_unix: unix_now(),
        };
        if enabled {
            match dir.read_progress(&setting.trial_id) {
                Ok(Some(old)) if old.trial_id == setting.trial_id => {
                    progress.curve = old.curve;
                }
                Ok(_) => {}
                Err(e) => debug!("{e}; starting a new progress file"),
            }
        }
        Reporter {
            dir,
            progress,
            metric: metric.to_string(),
            enabled,
        }
    }

    fn write(&mut self) {
        self.progress.updated_at_unix = unix_now();
        if let Err(e) = self.dir.write_progress(&self.progress) {
            warn!("{e}");
        }
    }

    /// A cnn epoch finished: record it (replacing that epoch and any later
    /// one left by an earlier run) and rewrite the progress file.
    pub fn epoch(&mut self, stat: &EpochStat) {
        if !self.enabled {
            return;
        }
        self.progress.curve.retain(|s| s.epoch < stat.epoch);
        self.progress.curve.push(stat.clone());
        self.progress.points = points_from_curve(&self.metric, &self.progress.curve);
        self.write();
    }

    /// The exec trainer's reports so far.
    pub fn reports(&mut self, reports: &[Map<String, Value>]) {
        if !self.enabled {
            return;
        }
        self.progress.reports = reports.to_vec();
        self.progress.points = points_from_reports(&self.metric, reports);
        self.write();
    }

    /// The last reported step.
    pub fn last_step(&self) -> Option<u32> {
        self.progress.points.last().map(|p| p.step)
    }

    /// `Some(reason)` when the master decided, at `step` or earlier, that
    /// this trial stops. A verdict for a later step (left by an earlier
    /// run of the trial) is not acted on yet.
    pub fn stop_requested(&self, step: u32) -> Option<String> {
        if !self.enabled {
            return None;
        }
        match self.dir.read_decision(&self.progress.trial_id) {
            Ok(Some(d)) if d.action == Action::Stop && d.step <= step => Some(d.reason),
            Ok(_) => None,
            Err(e) => {
                debug!("{e}");
                None
            }
        }
    }

    /// Wait (up to [`DECISION_WAIT`]) for a verdict on `step`.
    pub fn wait_decision(&self, step: u32, should_stop: &dyn Fn() -> bool) {
        if !self.enabled {
            return;
        }
        let t = Instant::now();
        while t.elapsed() < DECISION_WAIT && !should_stop() {
            if let Ok(Some(d)) = self.dir.read_decision(&self.progress.trial_id) {
                if d.step >= step {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        if !should_stop() {
            warn!(
                step,
                "no decision from the master after {:?}; training on", DECISION_WAIT
            );
        }
    }
}
