//! `hps-master run`: the propose / publish / collect loop.
//!
//! The master keeps no state of its own beyond what is in the study
//! directory: on start it rebuilds everything from `settings/`, `pending/`,
//! `running/` and `results/`, so running it again after a crash continues
//! the search where it stopped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hps_common::files::unix_now;
use hps_common::ids::trial_id;
use hps_common::{
    Direction, Finished, MasterLease, Mode, Study, TrialResult, TrialSetting, TrialStatus,
    WorkerState, FORMAT_VERSION,
};
use hps_shared_fs::dir::is_not_found;
use hps_shared_fs::host::hostname;
use hps_shared_fs::{detect_remote_fs, FsError, Periodic, StudyDir, Sub, Waker, WatchMode};
use tracing::{debug, info, info_span, warn};

use crate::liveness::{Clock, Liveness, SystemClock, Verdict};
use crate::pruners::halving::{self, Bracket};
use crate::pruners::{self, rank_key, Curve, Shown, StopRule};
use crate::samplers::{self, Observation, Sampler};

/// Everything `run` needs, validated by the binary.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub dir: PathBuf,
    /// `Some(interval)`: scan only, no native events (network filesystems).
    pub poll: Option<Duration>,
    /// Rescan at least this often even with native events.
    pub rescan: Duration,
    /// How often the master renews its lease (`master.json`).
    pub lease_interval: Duration,
    /// A worker whose heartbeat has not changed for this long, measured on
    /// the master's own clock, is presumed dead and its trials re-queued.
    pub worker_grace: Duration,
    /// Runs of a trial before it is given up as failed.
    pub max_attempts: u32,
    /// A recorded trial seen nowhere (not pending, running or done) for
    /// this long is published again. Longer than a directory listing can
    /// be stale on NFS, so a trial in flight is never mistaken for lost.
    pub orphan_grace: Duration,
}

impl RunConfig {
    pub fn new(dir: PathBuf) -> Self {
        RunConfig {
            dir,
            poll: None,
            rescan: Duration::from_secs(2),
            lease_interval: Duration::from_secs(2),
            worker_grace: Duration::from_secs(30),
            max_attempts: 3,
            orphan_grace: Duration::from_secs(10),
        }
    }
}

/// What a finished (or interrupted) run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub planned: u64,
    pub proposed: u64,
    pub results: u64,
    pub finished: bool,
}

/// Run the master until the budget is spent or `shutdown` is set.
pub fn run(cfg: &RunConfig, shutdown: Arc<AtomicBool>) -> Result<RunSummary> {
    let dir = StudyDir::open(&cfg.dir)?;
    let study = dir.read_study()?;
    let planned = study
        .total_trials()
        .map_err(|e| e.in_file(&dir.study_path()))?;
    let sampler = samplers::build(&study)?;

    let lease = Lease::acquire(&dir, cfg.lease_interval, &shutdown)?;
    let swept = dir.sweep_temp_files(Duration::from_secs(600));
    if swept > 0 {
        info!(swept, "removed temp files left by crashed writers");
    }

    let mut cfg = cfg.clone();
    let remote = detect_remote_fs(dir.root());
    if remote.is_some() {
        // NFS may serve directory listings up to a minute stale.
        cfg.orphan_grace = cfg.orphan_grace.max(Duration::from_secs(90));
    }
    let (mode, why) = WatchMode::choose(dir.root(), cfg.poll, cfg.rescan);
    if let Some(why) = why {
        info!("{why}");
    }
    let waker = Waker::new(
        &[
            dir.sub(Sub::Results),
            dir.sub(Sub::Pending),
            dir.sub(Sub::Running),
            dir.sub(Sub::Progress),
            dir.sub(Sub::Paused),
        ],
        mode,
    );
    info!(dir = %dir.root().display(), study = %study.name, sampler = sampler.name(), planned, watch = waker.description(), "master started");

    let mut m = Master::new(
        dir.clone(),
        study,
        sampler,
        planned,
        cfg.clone(),
        Arc::new(SystemClock),
    )?;
    let summary = loop {
        lease.check()?;
        m.step()?;
        if m.is_done() {
            m.finish()?;
            break m.summary(true);
        }
        if shutdown.load(Ordering::SeqCst) {
            info!("shutdown requested; the study can be continued with `hps-master run`");
            break m.summary(false);
        }
        waker.wait();
    };
    lease.release();
    Ok(summary)
}

/// The master's view of the study, rebuilt from the directory.
struct Master {
    dir: StudyDir,
    study: Study,
    sampler: Box<dyn Sampler>,
    planned: u64,
    cfg: RunConfig,
    /// Every recorded setting, by trial id.
    settings: BTreeMap<String, TrialSetting>,
    /// Parameters of each config, so repeats share them.
    configs: HashMap<u64, hps_common::Params>,
    results: BTreeMap<String, TrialResult>,
    observations: Vec<Observation>,
    next_index: u64,
    /// Trials seen nowhere (not pending, running or done), and since when
    /// (on this process's clock).
    suspected_orphans: BTreeMap<String, Instant>,
    liveness: Liveness,
    /// Workers already warned about a too-short --worker-grace.
    warned_grace: BTreeSet<String>,
    clock: Arc<dyn Clock>,
    pending_count: usize,
    /// ASHA or the median rule, if the study has one.
    stop_rule: Option<Box<dyn StopRule>>,
    /// Successive halving / Hyperband brackets (empty otherwise).
    brackets: Vec<Bracket>,
    /// The last step a decision was written for, per running trial.
    decided: HashMap<String, u32>,
    /// Intermediate values of every trial with a result.
    finished_curves: BTreeMap<String, Curve>,
}

impl Master {
    fn new(
        dir: StudyDir,
        study: Study,
        sampler: Box<dyn Sampler>,
        planned: u64,
        cfg: RunConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        let worker_grace = cfg.worker_grace;
        let shown = Shown {
            metric: study.objective.metric.clone(),
            direction: study.objective.direction,
        };
        let stop_rule = study
            .pruner
            .as_ref()
            .and_then(|p| pruners::stop_rule(p, shown));
        let brackets = match (&study.pruner, &study.mode) {
            (Some(p), Mode::Sync { batch }) => halving::brackets(p, *batch, study.budget.epochs),
            _ => Vec::new(),
        };
        let mut m = Master {
            dir,
            study,
            sampler,
            planned,
            cfg,
            settings: BTreeMap::new(),
            configs: HashMap::new(),
            results: BTreeMap::new(),
            observations: Vec::new(),
            next_index: 0,
            suspected_orphans: BTreeMap::new(),
            liveness: Liveness::new(worker_grace),
            warned_grace: BTreeSet::new(),
            clock,
            pending_count: 0,
            stop_rule,
            brackets,
            decided: HashMap::new(),
            finished_curves: BTreeMap::new(),
        };
        m.load_settings()?;
        for id in m.dir.list(Sub::Decisions)? {
            if let Ok(Some(d)) = m.dir.read_decision(&id) {
                m.decided.insert(id, d.step);
            }
        }
        if m.dir.is_finished() && m.next_index < m.planned {
            // The budget was raised after the study finished: continue it.
            info!(
                planned = m.planned,
                proposed = m.next_index,
                "budget raised; continuing a finished study"
            );
            m.dir.clear_finished()?;
        }
        info!(
            proposed = m.next_index,
            "recovered {} recorded settings",
            m.settings.len()
        );
        Ok(m)
    }

    /// Read every recorded proposal. A corrupt record is quarantined and
    /// re-created from the sampler, which is deterministic per setting.
    fn load_settings(&mut self) -> Result<()> {
        let ids = self.dir.list(Sub::Settings)?;
        for id in ids {
            if self.named(Sub::Settings, &id).is_none() {
                continue;
            }
            match self.dir.read_setting(&id) {
                Ok(s) if s.trial_id != id => {
                    warn!("settings/{id}.json says trial `{}`; moving it to quarantine/ and re-creating it", s.trial_id);
                    self.quarantine(&self.dir.setting_path(&id)?);
                }
                Ok(s) => {
                    self.configs
                        .entry(s.config)
                        .or_insert_with(|| s.params.clone());
                    self.next_index = self.next_index.max(s.index + 1);
                    self.settings.insert(id, s);
                }
                Err(FsError::Schema(e)) => {
                    warn!("{e}; moving it to quarantine/ and re-creating the setting");
                    self.quarantine(&self.dir.setting_path(&id)?);
                }
                Err(e) => return Err(e.into()),
            }
        }
        // Re-create any record missing below next_index (quarantined above).
        for index in 0..self.next_index {
            let id = trial_id(index);
            if !self.settings.contains_key(&id) {
                let s = self.make_setting(index);
                self.dir.record_setting(&s)?;
                self.settings.insert(id, s);
            }
        }
        Ok(())
    }

    /// The path of `sub/<name>.json`, or `None` (after moving the file to
    /// quarantine/) when the name is not a valid trial id — one stray file
    /// must not stop the master.
    fn named(&self, sub: Sub, name: &str) -> Option<PathBuf> {
        let path = self.dir.json_path(sub, name);
        match hps_common::validate_id("trial id", name) {
            Ok(()) => Some(path),
            Err(e) => {
                warn!(file = %path.display(), "{e}; moving it to quarantine/");
                self.quarantine(&path);
                None
            }
        }
    }

    fn quarantine(&self, path: &std::path::Path) {
        match self.dir.quarantine(path) {
            Ok(to) => info!(from = %path.display(), to = %to.display(), "quarantined"),
            Err(e) => warn!("{e}"),
        }
    }

    fn make_setting(&mut self, index: u64) -> TrialSetting {
        let repeats = self.study.repeats as u64;
        let config = index / repeats;
        let repeat = (index % repeats) as u32;
        let params = match self.configs.get(&config) {
            Some(p) => p.clone(),
            None => {
                // Pending: recorded settings without a result, one per config.
                let mut seen = BTreeSet::new();
                let pending: Vec<hps_common::Params> = self
                    .settings
                    .values()
                    .filter(|s| !self.results.contains_key(&s.trial_id) && seen.insert(s.config))
                    .map(|s| s.params.clone())
                    .collect();
                let p = self.sampler.propose(config, &self.observations, &pending);
                self.configs.insert(config, p.clone());
                p
            }
        };
        let batch = match self.study.mode {
            Mode::Sync { .. } if !self.brackets.is_empty() => {
                Some(halving::batch_of(&self.brackets, index).0)
            }
            Mode::Sync { batch } => Some(index / batch as u64),
            Mode::Async { .. } => None,
        };
        let until_epoch = match batch {
            Some(b) if !self.brackets.is_empty() => {
                halving::bracket_of(&self.brackets, b).first_until()
            }
            _ => None,
        };
        let decide_at = self
            .stop_rule
            .as_ref()
            .map(|r| r.decide_at(self.study.budget.epochs))
            .unwrap_or_default();
        TrialSetting {
            format_version: FORMAT_VERSION,
            trial_id: trial_id(index),
            index,
            config,
            repeat,
            seed: self.study.trial_seed(repeat),
            params,
            epochs: self.study.budget.epochs,
            time_limit_s: self.study.budget.time_limit_s,
            attempt: 1,
            batch,
            sampler: self.sampler.name().to_string(),
            until_epoch,
            decide_at,
        }
    }

    /// One scan: collect results, recover lost trials, propose new ones.
    fn step(&mut self) -> Result<()> {
        // Order matters: a trial moves pending → running → results, so
        // listing in that order never misses a trial in flight.
        let pending: BTreeSet<String> = self.dir.list(Sub::Pending)?.into_iter().collect();
        let running = self.dir.list_running()?;
        let paused: BTreeSet<String> = self.dir.list(Sub::Paused)?.into_iter().collect();
        let result_ids = self.dir.list(Sub::Results)?;
        self.pending_count = pending.len();

        for id in result_ids {
            if self.results.contains_key(&id) {
                continue;
            }
            let Some(path) = self.named(Sub::Results, &id) else {
                continue;
            };
            match self.dir.read_result(&id) {
                Ok(r) if r.trial_id == id => self.accept(r),
                Ok(r) => {
                    warn!(file = %path.display(), "result file says trial `{}`; moving it to quarantine/", r.trial_id);
                    self.quarantine(&path);
                }
                Err(FsError::Schema(e)) => {
                    warn!("{e}; moving it to quarantine/ and re-running the trial");
                    self.quarantine(&path);
                }
                Err(e) if is_not_found(&e) => {}
                // EIO, ESTALE…: maybe transient; try again next scan.
                Err(e) => warn!("{e}"),
            }
        }

        // A pending copy of a finished trial (a late result won the race
        // with a re-queue): remove it so nobody runs the trial again.
        for id in &pending {
            if self.results.contains_key(id) {
                if let Ok(p) = self.dir.pending_path(id) {
                    debug!(trial = %id, "removing the pending copy of a finished trial");
                    let _ = std::fs::remove_file(p);
                }
            }
        }

        // Claims whose result is already in: the worker died between
        // publishing the result and dropping its claim.
        for c in &running {
            if self.results.contains_key(&c.trial_id) {
                debug!(trial = %c.trial_id, "dropping the claim of a finished trial");
                self.dir.drop_claim(c)?;
            }
        }
        self.check_workers(&running)?;

        // Recorded but nowhere else: the master died between recording and
        // publishing, or a file was lost. Re-publish after two scans agree.
        let running_ids: BTreeSet<&str> = running.iter().map(|c| c.trial_id.as_str()).collect();
        let mut orphans = BTreeSet::new();
        for id in self.settings.keys() {
            if !pending.contains(id)
                && !running_ids.contains(id.as_str())
                && !paused.contains(id)
                && !self.results.contains_key(id)
            {
                orphans.insert(id.clone());
            }
        }
        let now = self.clock.now();
        self.suspected_orphans.retain(|id, _| orphans.contains(id));
        for id in &orphans {
            self.suspected_orphans.entry(id.clone()).or_insert(now);
        }
        let grace = self.cfg.orphan_grace;
        let confirmed: Vec<String> = self
            .suspected_orphans
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= grace)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &confirmed {
            self.suspected_orphans.remove(id);
            if self.dir.has_result(id) {
                continue;
            }
            info!(trial = %id, "publishing a recorded setting that was never published");
            self.dir.publish(&self.settings[id])?;
            self.pending_count += 1;
        }

        self.judge_running()?;
        self.advance_brackets(&paused)?;
        self.propose()?;
        Ok(())
    }

    /// The objective per step of a finished trial.
    fn result_points(&self, r: &TrialResult) -> Vec<hps_common::ProgressPoint> {
        let metric = &self.study.objective.metric;
        if r.curve.is_empty() {
            hps_common::files::points_from_reports(metric, &r.reports)
        } else {
            hps_common::files::points_from_curve(metric, &r.curve)
        }
    }

    /// Stopping rules: judge every running trial that reported one of its
    /// `decide_at` epochs since the last decision, and write the verdict to
    /// `decisions/<id>.json` for its worker.
    fn judge_running(&mut self) -> Result<()> {
        let Some(rule) = &self.stop_rule else {
            return Ok(());
        };
        let direction = self.study.objective.direction;
        let mut live: Vec<(String, Curve)> = Vec::new();
        for id in self.dir.list(Sub::Progress)? {
            if self.results.contains_key(&id) || self.named(Sub::Progress, &id).is_none() {
                continue;
            }
            match self.dir.read_progress(&id) {
                Ok(Some(p)) if p.trial_id == id => {
                    live.push((id, Curve::from_points(&p.points, direction, false)))
                }
                Ok(_) => {}
                Err(FsError::Schema(e)) => {
                    warn!("{e}; moving it to quarantine/");
                    self.quarantine(&self.dir.json_path(Sub::Progress, &id));
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => debug!("{e}"),
            }
        }
        let mut decisions = Vec::new();
        for (id, curve) in &live {
            let Some(last) = curve.last_step() else {
                continue;
            };
            let Some(setting) = self.settings.get(id) else {
                continue;
            };
            let done = self.decided.get(id).copied().unwrap_or(0);
            let Some(step) = setting
                .decide_at
                .iter()
                .copied()
                .filter(|s| *s <= last && *s > done)
                .max()
            else {
                continue;
            };
            let others: Vec<&Curve> = self
                .finished_curves
                .iter()
                .filter(|(k, _)| *k != id)
                .map(|(_, c)| c)
                .chain(live.iter().filter(|(k, _)| k != id).map(|(_, c)| c))
                .collect();
            decisions.push((id.clone(), step, rule.decide(curve, step, &others)));
        }
        for (id, step, verdict) in decisions {
            let (action, reason) = match verdict {
                pruners::Verdict::Continue(r) => (hps_common::Action::Continue, r),
                pruners::Verdict::Stop(r) => (hps_common::Action::Stop, r),
            };
            match action {
                hps_common::Action::Stop => info!(trial = %id, step, "stop: {reason}"),
                hps_common::Action::Continue => debug!(trial = %id, step, "continue: {reason}"),
            }
            self.dir.write_decision(&hps_common::Decision {
                format_version: FORMAT_VERSION,
                trial_id: id.clone(),
                step,
                action,
                pruner: rule.name().to_string(),
                reason,
                written_at_unix: unix_now(),
            })?;
            self.decided.insert(id, step);
        }
        Ok(())
    }

    /// Successive halving / Hyperband: once no trial of a batch is pending
    /// or running, promote the best of those paused at the rung and prune
    /// the rest.
    fn advance_brackets(&mut self, paused: &BTreeSet<String>) -> Result<()> {
        if self.brackets.is_empty() || paused.is_empty() {
            return Ok(());
        }
        let mut by_batch: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for id in paused {
            if self.results.contains_key(id) {
                // Pruned (or finished) and the paused file left behind.
                self.dir.remove_paused(id)?;
                continue;
            }
            if self.named(Sub::Paused, id).is_none() {
                continue;
            }
            match self.settings.get(id) {
                Some(s) => by_batch
                    .entry(s.batch.unwrap_or(0))
                    .or_default()
                    .push(id.clone()),
                None => {
                    warn!(trial = %id, "paused trial with no record in settings/; moving it to quarantine/");
                    self.quarantine(&self.dir.json_path(Sub::Paused, id));
                }
            }
        }
        let direction = self.study.objective.direction;
        for (b, ids) in by_batch {
            let in_flight = self.settings.values().any(|s| {
                s.batch == Some(b)
                    && !self.results.contains_key(&s.trial_id)
                    && !paused.contains(&s.trial_id)
            });
            if in_flight {
                continue;
            }
            let bracket = halving::bracket_of(&self.brackets, b).clone();
            // (id, rung index, loss at the rung, paused setting, progress)
            let mut cands = Vec::new();
            let mut resumed = false;
            for id in &ids {
                let setting = match self.dir.read_paused(id) {
                    Ok(s) => s,
                    Err(FsError::Schema(e)) => {
                        // The orphan rule re-publishes it from settings/.
                        warn!("{e}; moving it to quarantine/");
                        self.quarantine(&self.dir.json_path(Sub::Paused, id));
                        resumed = true;
                        continue;
                    }
                    Err(e) if is_not_found(&e) => continue,
                    Err(e) => return Err(e.into()),
                };
                let progress = self.dir.read_progress(id).ok().flatten();
                let done = progress
                    .as_ref()
                    .and_then(|p| p.points.last().map(|q| q.step))
                    .unwrap_or(0);
                if setting.until_epoch.is_some_and(|u| done < u) {
                    // Promoted before a crash, not yet renamed into pending/.
                    self.dir.promote(&setting)?;
                    resumed = true;
                    continue;
                }
                let k = bracket
                    .rungs
                    .iter()
                    .position(|r| *r >= done)
                    .unwrap_or(bracket.rungs.len() - 1);
                let loss = progress
                    .as_ref()
                    .map(|p| Curve::from_points(&p.points, direction, false))
                    .and_then(|c| c.values.get(&done).copied())
                    .unwrap_or(f64::INFINITY);
                cands.push((id.clone(), k, loss, setting, progress));
            }
            if resumed || cands.is_empty() {
                continue;
            }
            let k = cands.iter().map(|c| c.1).min().unwrap_or(0);
            cands.retain(|c| c.1 == k);
            cands.sort_by(|a, b| rank_key(a.2).total_cmp(&rank_key(b.2)).then(a.0.cmp(&b.0)));
            let keep = bracket.keep_after(k);
            let n = cands.len();
            let rung = bracket.rungs[k];
            let shown = Shown {
                metric: self.study.objective.metric.clone(),
                direction,
            };
            for (rank, (id, _, loss, mut setting, progress)) in cands.into_iter().enumerate() {
                let what = format!(
                    "{} at epoch {rung} ranks {} of {n} in batch {b}; the best {keep} go on",
                    shown.value(loss),
                    rank + 1
                );
                if rank < keep && loss.is_finite() {
                    setting.until_epoch = bracket.until_after(k);
                    info!(trial = %id, until_epoch = ?setting.until_epoch, "promoted: {what}");
                    self.dir.record_setting(&setting)?;
                    self.dir.promote(&setting)?;
                    self.settings.insert(id, setting);
                    self.pending_count += 1;
                } else {
                    let reason = format!("pruned by {}: {what}", self.pruner_name());
                    info!(trial = %id, "{reason}");
                    let r = pruned_result(&setting, progress.as_ref(), reason);
                    if self.dir.submit_result(&r)? {
                        self.accept(r);
                    }
                    self.dir.remove_paused(&id)?;
                    let ckpt = self.dir.checkpoint_dir(&id)?;
                    if ckpt.exists() {
                        if let Err(e) = std::fs::remove_dir_all(&ckpt) {
                            warn!(
                                "failed to remove the checkpoint `{}` of a pruned trial: {e}",
                                ckpt.display()
                            );
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn pruner_name(&self) -> &'static str {
        self.study.pruner.as_ref().map_or("", |p| p.name())
    }

    fn accept(&mut self, r: TrialResult) {
        let span = info_span!("trial", trial_id = %r.trial_id);
        let _g = span.enter();
        match r.objective {
            Some(v) => info!(
                status = r.status.as_str(),
                worker = %r.worker,
                "{} {} = {v:.6}",
                r.trial_id,
                self.study.objective.metric
            ),
            None => {
                info!(status = r.status.as_str(), worker = %r.worker, error = r.error.as_deref().unwrap_or(""), "{} ended without an objective", r.trial_id)
            }
        }
        if let Some(s) = self.settings.get(&r.trial_id) {
            let loss = r.objective.map(|v| match self.study.objective.direction {
                Direction::Minimize => v,
                Direction::Maximize => -v,
            });
            self.observations.push(Observation {
                config: s.config,
                params: s.params.clone(),
                status: r.status,
                loss,
            });
        }
        // Pruners compare running trials with finished ones' curves.
        if self.study.pruner.is_some() {
            if let Err(e) = self.dir.clear_trial_state(&r.trial_id) {
                debug!("{e}");
            }
            let complete = r.status == TrialStatus::Complete;
            let points = self.result_points(&r);
            let curve = Curve::from_points(&points, self.study.objective.direction, complete);
            self.finished_curves.insert(r.trial_id.clone(), curve);
        }
        self.decided.remove(&r.trial_id);
        self.results.insert(r.trial_id.clone(), r);
    }

    /// Re-queue the trials of workers whose heartbeat stopped changing.
    /// Liveness is judged only on this process's monotonic clock.
    fn check_workers(&mut self, running: &[hps_shared_fs::Claim]) -> Result<()> {
        let now = self.clock.now();
        for w in self.dir.list(Sub::Heartbeats)? {
            match self.dir.read_heartbeat(&w) {
                Ok(hb) if hb.worker == w => {
                    // A grace period shorter than a few beats would re-queue
                    // live workers' trials: say so, once per worker.
                    let min_grace = Duration::from_secs_f64(hb.interval_s.max(0.0) * 3.0);
                    if self.cfg.worker_grace < min_grace && self.warned_grace.insert(w.clone()) {
                        warn!(
                            worker = %w,
                            "--worker-grace {:?} is shorter than 3 heartbeats of this worker ({:.1}s each); \
                             its trials may be re-queued while it is alive. Raise --worker-grace or lower the worker's --heartbeat",
                            self.cfg.worker_grace,
                            hb.interval_s
                        );
                    }
                    self.liveness
                        .observe(&w, hb.seq, hb.state == WorkerState::Stopped, now)
                }
                Ok(hb) => {
                    warn!(
                        "heartbeats/{w}.json says worker `{}`; moving it to quarantine/",
                        hb.worker
                    );
                    self.quarantine(&self.dir.json_path(Sub::Heartbeats, &w));
                }
                Err(FsError::Schema(e)) => {
                    // A truncated beat from a crashed writer cannot happen
                    // (atomic writes), so this is real corruption.
                    warn!("{e}; moving it to quarantine/");
                    self.quarantine(&self.dir.json_path(Sub::Heartbeats, &w));
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => debug!("{e}"),
            }
        }
        for c in running {
            self.liveness.saw_claim(&c.worker, now);
        }
        for c in running {
            if self.results.contains_key(&c.trial_id) {
                continue;
            }
            if self.liveness.verdict(&c.worker, now) == Verdict::Alive {
                continue;
            }
            // Take the claim first: if the worker (restarted, or merely
            // late) takes or finishes it at the same moment, one of us wins.
            let Some(taken) = self.dir.take_claim(c)? else {
                continue;
            };
            let mut setting = match self.dir.read_taken(&taken) {
                Ok(s) => s,
                Err(e) => {
                    warn!("{e}; restoring the setting from settings/");
                    match self.settings.get(&c.trial_id) {
                        Some(s) => s.clone(),
                        None => {
                            self.quarantine(&taken.path);
                            continue;
                        }
                    }
                }
            };
            if setting.attempt >= self.cfg.max_attempts {
                warn!(trial = %c.trial_id, worker = %c.worker, attempts = setting.attempt, "giving up on a trial whose workers keep dying");
                let r = lost_result(&setting, &c.worker, self.cfg.max_attempts);
                self.dir.submit_result(&r)?;
                self.dir.forget(taken)?;
                continue;
            }
            setting.attempt += 1;
            warn!(trial = %c.trial_id, worker = %c.worker, attempt = setting.attempt, "worker presumed dead (no heartbeat for {:?}); re-queueing", self.cfg.worker_grace);
            self.dir.requeue(taken, &setting)?;
        }
        Ok(())
    }

    fn live_workers(&self) -> usize {
        self.liveness.live_count(self.clock.now())
    }

    fn propose(&mut self) -> Result<()> {
        let remaining = self.planned.saturating_sub(self.next_index);
        if remaining == 0 {
            return Ok(());
        }
        let n = match self.study.mode {
            Mode::Sync { batch } => {
                // Scenario 6: the next batch only once every result is in.
                if self.settings.keys().all(|id| self.results.contains_key(id)) {
                    let size = if self.brackets.is_empty() {
                        batch as u64
                    } else {
                        let (b, start) = halving::batch_of(&self.brackets, self.next_index);
                        let size = halving::bracket_of(&self.brackets, b).size as u64;
                        start + size - self.next_index
                    };
                    size.min(remaining)
                } else {
                    0
                }
            }
            Mode::Async { queue } => {
                let target = (queue as usize).max(self.live_workers());
                (target.saturating_sub(self.pending_count) as u64).min(remaining)
            }
        };
        for _ in 0..n {
            let s = self.make_setting(self.next_index);
            // Record first, then publish: a crash in between leaves a
            // recorded setting that the next master publishes unchanged.
            self.dir.record_setting(&s)?;
            self.dir.publish(&s)?;
            info!(trial = %s.trial_id, batch = ?s.batch, params = %serde_json::to_string(&s.params).unwrap_or_default(), "proposed");
            self.settings.insert(s.trial_id.clone(), s);
            self.next_index += 1;
            self.pending_count += 1;
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.next_index >= self.planned
            && self.settings.keys().all(|id| self.results.contains_key(id))
    }

    fn finish(&mut self) -> Result<()> {
        self.dir.mark_finished(&Finished {
            format_version: FORMAT_VERSION,
            trials: self.planned,
            finished_at_unix: unix_now(),
        })?;
        let best = self
            .results
            .values()
            .filter(|r| r.status == TrialStatus::Complete)
            .filter_map(|r| r.objective.map(|v| (r, v)))
            .fold(None::<(&TrialResult, f64)>, |acc, (r, v)| match acc {
                Some((_, b)) if !self.study.objective.direction.better(v, b) => acc,
                _ => Some((r, v)),
            });
        match best {
            Some((r, v)) => {
                info!(trials = self.results.len(), best = %r.trial_id, "study finished; best {} = {v:.6}", self.study.objective.metric)
            }
            None => info!(
                trials = self.results.len(),
                "study finished; no trial completed"
            ),
        }
        Ok(())
    }

    fn summary(&self, finished: bool) -> RunSummary {
        RunSummary {
            planned: self.planned,
            proposed: self.next_index,
            results: self.results.len() as u64,
            finished,
        }
    }
}

/// The result the master writes for a trial it prunes while paused: the
/// partial curve from its progress file, metrics at the best epoch so far.
fn pruned_result(
    s: &TrialSetting,
    progress: Option<&hps_common::Progress>,
    reason: String,
) -> TrialResult {
    let worker = progress.map_or("", |p| p.worker.as_str());
    let mut r = TrialResult::for_setting(s, worker, "");
    r.status = TrialStatus::Pruned;
    r.error = Some(reason);
    if let Some(p) = progress {
        r.curve = p.curve.clone();
        r.reports = p.reports.clone();
        r.epochs_completed = p.points.len() as u32;
    }
    let best = r
        .curve
        .iter()
        .filter(|e| e.val_loss.is_finite())
        .min_by(|a, b| a.val_loss.total_cmp(&b.val_loss));
    if let Some(e) = best {
        r.best_epoch = Some(e.epoch);
        r.metrics.insert("val_loss".into(), e.val_loss);
        r.metrics.insert("val_error".into(), e.val_error);
        r.metrics.insert("val_accuracy".into(), 1.0 - e.val_error);
        if e.train_loss.is_finite() {
            r.metrics.insert("train_loss".into(), e.train_loss);
        }
    }
    if let Some(last) = r.curve.last() {
        r.wall_time_s = last.elapsed_s;
        if last.val_error.is_finite() {
            r.metrics.insert("last_val_error".into(), last.val_error);
        }
    }
    r
}

fn lost_result(s: &TrialSetting, worker: &str, attempts: u32) -> TrialResult {
    let mut r = TrialResult::for_setting(s, worker, "");
    r.error = Some(format!(
        "the worker running it stopped heartbeating on all {attempts} attempts (max_attempts); last worker `{worker}`"
    ));
    r
}

/// The master's lease on the study directory: `master.json`, renewed by a
/// background thread. A second master refuses to start while the lease is
/// being renewed, and takes over once it has stopped changing.
struct Lease {
    lost: Arc<AtomicBool>,
    beat: Option<Periodic>,
    dir: StudyDir,
}

impl Lease {
    fn acquire(dir: &StudyDir, interval: Duration, shutdown: &AtomicBool) -> Result<Lease> {
        let host = hostname();
        let pid = std::process::id();
        if let Some(old) = dir.read_lease().context("reading the master lease")? {
            let same_host_dead = old.host == host && !pid_alive(old.pid);
            let ours = old.host == host && old.pid == pid;
            if !same_host_dead && !ours {
                // Watch the lease on our own clock for a few of its intervals.
                let grace = Duration::from_secs_f64(old.interval_s.max(0.1) * 3.0);
                info!(host = %old.host, pid = old.pid, "a master lease exists; checking for {:?} whether it is live", grace);
                let t = Instant::now();
                while t.elapsed() < grace {
                    if shutdown.load(Ordering::SeqCst) {
                        bail!("interrupted while checking the master lease");
                    }
                    std::thread::sleep(Duration::from_millis(100));
                    match dir.read_lease() {
                        Ok(Some(now)) if now.seq != old.seq || now.pid != old.pid => bail!(
                            "another master (host {}, pid {}) is running on `{}`; stop it first \
                             (its lease in master.json is being renewed)",
                            now.host,
                            now.pid,
                            dir.root().display()
                        ),
                        Ok(None) => break,
                        _ => {}
                    }
                }
                info!("the previous master's lease is stale; taking over");
            }
        }
        let mut lease = MasterLease {
            format_version: FORMAT_VERSION,
            host,
            pid,
            seq: 0,
            interval_s: interval.as_secs_f64(),
            written_at_unix: unix_now(),
        };
        dir.write_lease(&lease)?;
        let lost = Arc::new(AtomicBool::new(false));
        let beat = {
            let (dir, lost) = (dir.clone(), lost.clone());
            Periodic::start("master lease", interval, move |seq| {
                if lost.load(Ordering::SeqCst) {
                    return Ok(());
                }
                // Someone else took the lease (we were presumed dead).
                if let Ok(Some(cur)) = dir.read_lease() {
                    if cur.pid != lease.pid || cur.host != lease.host {
                        lost.store(true, Ordering::SeqCst);
                        return Ok(());
                    }
                }
                lease.seq = seq;
                lease.written_at_unix = unix_now();
                dir.write_lease(&lease)
            })
        };
        Ok(Lease {
            lost,
            beat: Some(beat),
            dir: dir.clone(),
        })
    }

    fn check(&self) -> Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            bail!(
                "another master took over `{}`; stopping",
                self.dir.root().display()
            );
        }
        Ok(())
    }

    fn release(mut self) {
        if let Some(beat) = self.beat.take() {
            beat.stop();
        }
        if !self.lost.load(Ordering::SeqCst) {
            let _ = std::fs::remove_file(self.dir.root().join(hps_shared_fs::dir::MASTER_FILE));
        }
    }
}

fn pid_alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
