//! The worker's half of pruning: report intermediate values to
//! `progress/<id>.json` and read the master's verdicts from
//! `decisions/<id>.json`.

use std::time::{Duration, Instant};

use hps_common::files::{points_from_curve, points_from_reports, unix_now};
use hps_common::{Action, EpochStat, Progress, TrialSetting, FORMAT_VERSION};
use hps_shared_fs::StudyDir;
use serde_json::{Map, Value};
use tracing::{debug, info, warn};

/// How long a worker waits at a `decide_at` epoch for the master's verdict
/// before training on regardless (the master may be down or slow; it can
/// still stop the trial at a later epoch); `hps-worker --decision-wait`.
pub const DECISION_WAIT: Duration = Duration::from_secs(10);

/// The master's lease as seen at one time: host, pid, seq.
type LeaseMark = (String, u32, u64);

pub struct Reporter<'a> {
    dir: &'a StudyDir,
    progress: Progress,
    metric: String,
    /// Whether any trial needs reports (the study has a pruner).
    enabled: bool,
    decide_at: Vec<u32>,
    /// How long a due decision may take before the worker says so.
    wait: Duration,
    /// The `decide_at` step whose verdict is due, since when, and the
    /// master's lease (host, pid, seq) then.
    awaiting: Option<(u32, Instant, Option<LeaseMark>)>,
    /// Said that decisions stopped coming (once, until they come again).
    stalled: bool,
}

impl<'a> Reporter<'a> {
    /// A reporter for `setting`. A cnn trial resumed from a checkpoint
    /// keeps the epochs already in its progress file. `wait`: see
    /// [`DECISION_WAIT`].
    pub fn new(
        dir: &'a StudyDir,
        setting: &TrialSetting,
        worker: &str,
        metric: &str,
        enabled: bool,
        wait: Duration,
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
            decide_at: setting.decide_at.clone(),
            wait,
            awaiting: None,
            stalled: false,
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
    /// run of the trial) is not acted on yet. Says once in the log when a
    /// due verdict has not come for the decision wait.
    pub fn stop_requested(&mut self, step: u32) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let decision = match self.dir.read_decision(&self.progress.trial_id) {
            Ok(d) => d,
            Err(e) => {
                debug!("{e}");
                None
            }
        };
        self.watch_decisions(step, decision.as_ref().map(|d| d.step));
        match decision {
            Some(d) if d.action == Action::Stop && d.step <= step => Some(d.reason),
            _ => None,
        }
    }

    /// Wait (up to the decision wait) for a verdict on `step`.
    pub fn wait_decision(&mut self, step: u32, should_stop: &dyn Fn() -> bool) {
        if !self.enabled {
            return;
        }
        let t = Instant::now();
        if self.awaiting.as_ref().is_none_or(|a| a.0 != step) {
            self.awaiting = Some((step, t, self.lease_now()));
        }
        while t.elapsed() < self.wait && !should_stop() {
            if let Ok(Some(d)) = self.dir.read_decision(&self.progress.trial_id) {
                if d.step >= step {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        if !should_stop() {
            debug!(
                step,
                "no decision from the master after {:?}; training on", self.wait
            );
        }
    }

    /// Track the verdict due at `step` (the last `decide_at` reached) against
    /// `decided` (the step of the decision file): warn once when it has not
    /// come for the decision wait, and say when verdicts come again.
    fn watch_decisions(&mut self, step: u32, decided: Option<u32>) {
        let due = self.decide_at.iter().copied().filter(|d| *d <= step).max();
        let Some(due) = due.filter(|d| decided.is_none_or(|x| x < *d)) else {
            self.awaiting = None;
            if std::mem::take(&mut self.stalled) {
                info!("pruning decisions from the master come again");
            }
            return;
        };
        match &self.awaiting {
            Some((d, since, lease)) if *d == due => {
                if !self.stalled && since.elapsed() >= self.wait {
                    self.stalled = true;
                    let why = lease_note(lease, &self.lease_now(), since.elapsed());
                    warn!(
                        step = due,
                        "no pruning decision from the master for {:.0}s: {why}; this trial trains \
                         on unpruned until decisions come again (`hps-master status DIR` shows \
                         the master)",
                        since.elapsed().as_secs_f64()
                    );
                }
            }
            _ => self.awaiting = Some((due, Instant::now(), self.lease_now())),
        }
    }

    fn lease_now(&self) -> Option<LeaseMark> {
        match self.dir.read_lease() {
            Ok(Some(l)) => Some((l.host, l.pid, l.seq)),
            _ => None,
        }
    }
}

/// Why decisions may not come, from the lease at the start and at the end
/// of the wait (`waited`).
fn lease_note(then: &Option<LeaseMark>, now: &Option<LeaseMark>, waited: Duration) -> String {
    match (then, now) {
        (_, None) => "no master is running (no master.json)".into(),
        (Some(a), Some(b)) if a == b => format!(
            "the master's lease (pid {} on {}) was not renewed in {:.0}s: no master is running",
            b.1,
            b.0,
            waited.as_secs_f64()
        ),
        (_, Some(b)) => format!(
            "the master (pid {} on {}) renews its lease but has not decided: it is busy or slow",
            b.1, b.0
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_note_says_whether_a_master_runs() {
        let l = |seq| Some(("h".to_string(), 7, seq));
        let w = Duration::from_secs(10);
        assert!(lease_note(&l(1), &None, w).contains("no master is running"));
        assert!(lease_note(&l(1), &l(1), w).contains("not renewed in 10s"));
        assert!(lease_note(&l(1), &l(5), w).contains("busy or slow"));
    }
}
