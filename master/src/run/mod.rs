//! `hps-master run`: the propose / publish / collect loop.
//!
//! The master keeps no state of its own beyond what is in the study
//! directory: on start it rebuilds everything from `settings/`, `pending/`,
//! `running/` and `results/`, so running it again after a crash continues
//! the search where it stopped.

pub(crate) mod cache;
mod failfast;
pub(crate) mod lease;
mod ledger;
mod progress;
mod prune;
mod recover;
mod refresh;
mod workers;
mod written;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hps_common::files::unix_now;
use hps_common::ids::trial_index;
use hps_common::{
    Finished, Mode, ResultDigest, Study, TrialResult, TrialSetting, TrialStatus, FORMAT_VERSION,
};
use hps_shared_fs::{detect_remote_fs, StudyDir, StudyRecord, Sub, Waker, WatchMode};
use tracing::{debug, info, info_span, warn};

use crate::error::MasterError;
use crate::liveness::{Clock, SystemClock};
use crate::pruners::halving::{self};
use crate::pruners::Curve;
use crate::samplers::{self, Intermediate, Observation, Sampler};
use crate::scan::Scan;
use failfast::FailureStreak;
use lease::{Lease, LeaseCheck};
use ledger::Ledger;
pub use progress::{LogWriter, ProgressLine};
use prune::Pruning;
use workers::Fleet;

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
    /// Go on with a `study.json` edited after init (other than its
    /// budget), and record it as the study from now on.
    pub accept_study_change: bool,
    /// Stop proposing, and fail, after this many failed trials in a row
    /// (see [`failfast`]); 0 never stops.
    pub max_consecutive_failures: u32,
    /// The live progress line, when stderr is a terminal (see [`progress`]).
    pub progress: Option<ProgressLine>,
    /// The `hps-master` binary, to write `DIR/report.html` in a child
    /// process (see [`refresh`]); `None` writes it in this process.
    pub report_exe: Option<PathBuf>,
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
            accept_study_change: false,
            max_consecutive_failures: 3,
            progress: None,
            report_exe: None,
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
pub fn run(cfg: &RunConfig, shutdown: Arc<AtomicBool>) -> Result<RunSummary, MasterError> {
    let dir = StudyDir::open(&cfg.dir)?;
    let study = dir.read_study()?;
    let planned = study
        .total_trials()
        .map_err(|e| e.in_file(&dir.study_path()))?;
    let sampler = samplers::build(&study, &dir.study_path())?;
    if let Some(w) = samplers::startup_warning(&study, sampler.as_ref()) {
        warn!("{w}");
    }
    // Refused before the lease is taken: a refusal leaves nothing behind.
    let record = dir.check_study(&study, cfg.accept_study_change)?;

    let lease = Lease::acquire(&dir, cfg.lease_interval, &shutdown)?;
    record_study(&dir, &study, record)?;
    let swept = dir.sweep_temp_files(Duration::from_secs(600));
    if swept > 0 {
        info!(swept, "removed temp files left by crashed writers");
    }
    let (cfg, mode) = watch_mode(&dir, cfg);
    // Not `pending/`: the master is its only writer but for claims, which
    // show in `running/` too; watching it woke the master on its own
    // publishing, a step per proposal for nothing.
    let waker = Waker::new(
        &[
            dir.sub(Sub::Results),
            dir.sub(Sub::Running),
            dir.sub(Sub::Progress),
            dir.sub(Sub::Paused),
        ],
        mode,
    );
    info!(dir = %dir.root().display(), study = %study.name, sampler = study.sampler.name(), planned, watch = waker.description(), "master started");

    let mut report = refresh::Refresher::new(dir.root().to_path_buf(), cfg.report_exe.clone());
    let clock = Arc::new(SystemClock);
    let mut m = Master::new(
        dir,
        study,
        sampler,
        planned,
        cfg,
        clock,
        Some(lease.checker()),
    )?;
    let mut watched = BTreeSet::new();
    let summary = (|| loop {
        lease.check()?;
        let before = m.summary(false);
        m.step()?;
        m.watch_result_shards(&waker, &mut watched);
        if let Some(p) = &m.cfg.progress {
            p.update(&m.snapshot());
        }
        if let Some(e) = m.give_up()? {
            return Err(e); // the lease is released below, as on any error
        }
        if m.summary(false) != before {
            // A result came in or a setting went out: the next change
            // follows soon (see Waker::busy).
            waker.busy();
        }
        if m.is_done() {
            m.finish()?;
            report.last(m.summary(true).results);
            return Ok(m.summary(true));
        }
        if shutdown.load(Ordering::SeqCst) {
            info!("shutdown requested; the study can be continued with `hps-master run`");
            report.last(m.summary(false).results);
            return Ok(m.summary(false));
        }
        report.tick(m.summary(false).results);
        waker.wait();
    })();
    if let Some(p) = &m.cfg.progress {
        p.finish(&m.snapshot());
    }
    // On an error too: the next master should not have to wait out a lease
    // nobody renews (release leaves one another master took over alone).
    lease.release();
    summary
}

/// Record the study for later runs to compare `study.json` with: a
/// directory made by an older release gets its record now, an accepted
/// edit replaces it.
fn record_study(dir: &StudyDir, study: &Study, record: StudyRecord) -> Result<(), MasterError> {
    match record {
        StudyRecord::Same => return Ok(()),
        StudyRecord::Unrecorded => info!(
            file = %dir.recorded_study_path().display(),
            "recorded the study; later edits of study.json other than budget.trials will be refused"
        ),
        StudyRecord::Accepted(fields) => warn!(
            changed = %fields.join(", "),
            "study.json was edited after init; going on with the edited study as --accept-study-change asks (trials before and after the edit are mixed)"
        ),
    }
    Ok(dir.record_study(study)?)
}

/// Native events or polling ([`WatchMode::choose`]), and the orphan grace
/// that suits the filesystem: NFS may serve directory listings up to a
/// minute stale.
fn watch_mode(dir: &StudyDir, cfg: &RunConfig) -> (RunConfig, WatchMode) {
    let mut cfg = cfg.clone();
    let remote = detect_remote_fs(dir.root());
    if remote.is_some() {
        cfg.orphan_grace = cfg.orphan_grace.max(Duration::from_secs(90));
    }
    let (mode, why) = WatchMode::choose_on(remote, cfg.poll, cfg.rescan);
    if let Some(why) = why {
        info!("{why}");
    }
    (cfg, mode)
}

/// The master's view of the study, rebuilt from the directory.
struct Master {
    dir: StudyDir,
    study: Study,
    sampler: Box<dyn Sampler>,
    planned: u64,
    cfg: RunConfig,
    /// The settings in flight and the results accepted ([`Ledger`]).
    ledger: Ledger,
    /// The workers, their claims and the queues ([`Fleet`]).
    fleet: Fleet,
    /// The pruners' state ([`Pruning`]).
    pruning: Pruning,
    clock: Arc<dyn Clock>,
    /// Warnings already logged, so a file that stays unreadable is
    /// reported once, not at every scan.
    warned: RefCell<BTreeSet<String>>,
    /// Asked before each batch of writes: stop at once when another master
    /// took the study over (`None` in tests that drive one master alone).
    lease: Option<LeaseCheck>,
    /// Failed trials in a row, to stop early on a wrong setup.
    streak: FailureStreak,
    /// A slow proposal has been warned about.
    warned_slow: bool,
}

/// A proposal that takes this long is said in the log, once.
const SLOW_PROPOSAL: Duration = Duration::from_secs(1);

impl Master {
    fn new(
        dir: StudyDir,
        study: Study,
        sampler: Box<dyn Sampler>,
        planned: u64,
        cfg: RunConfig,
        clock: Arc<dyn Clock>,
        lease: Option<LeaseCheck>,
    ) -> Result<Self, MasterError> {
        let streak = FailureStreak::new(cfg.max_consecutive_failures);
        let ledger = Ledger::new(&dir);
        let fleet = Fleet::new(cfg.worker_grace);
        let pruning = Pruning::new(&study);
        let mut m = Master {
            dir,
            study,
            sampler,
            planned,
            cfg,
            ledger,
            fleet,
            pruning,
            clock,
            warned: RefCell::new(BTreeSet::new()),
            lease,
            streak,
            warned_slow: false,
        };
        m.recover()?;
        Ok(m)
    }

    fn make_setting(&mut self, index: u64) -> TrialSetting {
        let repeats = self.study.repeats as u64;
        let config = index / repeats;
        let repeat = (index % repeats) as u32;
        let proposal = match self.ledger.configs.get(&config) {
            Some(p) => p.clone(),
            None => {
                // Pending: recorded settings without a result, one per config.
                let mut seen = BTreeSet::new();
                let pending: Vec<hps_common::Params> = self
                    .ledger
                    .settings
                    .values()
                    .filter(|s| {
                        !self.ledger.results.contains_key(&s.trial_id) && seen.insert(s.config)
                    })
                    .map(|s| s.params.clone())
                    .collect();
                let started = Instant::now();
                let p = self
                    .sampler
                    .propose(config, &self.ledger.observations, &pending);
                let took = started.elapsed();
                if took >= SLOW_PROPOSAL && !self.warned_slow {
                    self.warned_slow = true;
                    warn!(
                        sampler = self.study.sampler.name(),
                        finished = self.ledger.observations.len(),
                        "a proposal took {:.1} s; the sampler's cost grows with the finished trials and will slow the study from here (`auto` leaves the GP for TPE at 250 trials; `tpe` stays in milliseconds at 10,000)",
                        took.as_secs_f64()
                    );
                }
                self.ledger.configs.insert(config, p.clone());
                p
            }
        };
        let batch = match self.study.mode {
            Mode::Sync { .. } if !self.pruning.brackets.is_empty() => {
                Some(halving::batch_of(&self.pruning.brackets, index).0)
            }
            Mode::Sync { batch } => Some(index / batch as u64),
            Mode::Async { .. } => None,
        };
        let until_epoch = match batch {
            Some(b) if !self.pruning.brackets.is_empty() => {
                halving::bracket_of(&self.pruning.brackets, b).first_until()
            }
            _ => None,
        };
        let decide_at = self
            .pruning
            .stop_rule
            .as_ref()
            .map(|r| r.decide_at(self.study.budget.epochs))
            .unwrap_or_default();
        let epochs = self.study.budget.epochs;
        TrialSetting {
            config,
            repeat,
            seed: self.study.trial_seed(repeat),
            time_limit_s: self.study.budget.time_limit_s,
            batch,
            until_epoch,
            decide_at,
            source: proposal.source,
            ..TrialSetting::new(index, proposal.params, epochs, self.study.sampler.name())
        }
    }

    /// One scan: collect results, recover lost trials, propose new ones.
    /// Its cost follows the trials in flight: the queues hold only those,
    /// and their results are looked up by name; `results/` is listed whole
    /// only now and then ([`FullListing`]).
    fn step(&mut self) -> Result<(), MasterError> {
        let scan = Scan::queues(&self.dir)?;
        self.fleet.pending_count = scan.pending.len();
        self.fleet.running_count = scan.running.len();
        let listed = match self.ledger.listing.at_start.take() {
            Some(ids) => Some(ids),
            None if self.ledger.listing.due(self.clock.now()) => {
                let started = Instant::now();
                let all = self.dir.list(Sub::Results)?;
                self.ledger
                    .listing
                    .done(self.clock.now(), started.elapsed());
                Some(all)
            }
            None => None,
        };
        // The trials in flight are always looked up by name, after the
        // queues were listed (§4.3's order), also when a listing (possibly
        // older, the one taken at start) adds results of other trials.
        let in_flight = self.ledger.settings.keys().cloned();
        let candidates: Vec<String> = match listed {
            Some(all) => all
                .into_iter()
                .filter(|id| {
                    !self.ledger.results.contains_key(id) && !self.ledger.settings.contains_key(id)
                })
                .chain(in_flight)
                .collect(),
            None => in_flight.collect(),
        };
        self.collect_results(&candidates, &scan);
        // A claim whose result is in is not running: its worker is removing it.
        self.fleet.running_count = scan
            .running
            .iter()
            .filter(|c| !self.ledger.results.contains_key(&c.trial_id))
            .count();
        // Results that were in before this run started do not count.
        self.streak.start_counting();
        self.drop_finished_copies(&scan)?;
        if self.streak.given_up().is_some() {
            return Ok(()); // `run` stops; nothing more is published
        }
        self.check_workers(&scan.running)?;
        self.publish_orphans(&scan)?;
        self.judge_running()?;
        self.advance_brackets(&scan.paused)?;
        self.propose()?;
        Ok(())
    }

    fn accept(&mut self, r: TrialResult) {
        let span = info_span!("trial", trial_id = %r.trial_id);
        let _g = span.enter();
        // The results found at start are one line in the log, not one each.
        let found_at_start = !self.streak.counting();
        match (r.objective, found_at_start) {
            (Some(v), false) => info!(
                status = r.status.as_str(),
                worker = %r.worker,
                "{} {} = {v:.6}",
                r.trial_id,
                self.study.objective.metric
            ),
            (None, false) => {
                info!(status = r.status.as_str(), worker = %r.worker, error = r.error.as_deref().unwrap_or(""), "{} ended without an objective", r.trial_id)
            }
            (_, true) => debug!(
                status = r.status.as_str(),
                objective = r.objective,
                "found at start"
            ),
        }
        // Pruners compare running trials with finished ones' curves.
        if self.study.pruner.is_some() {
            if let Err(e) = self.dir.clear_trial_state(&r.trial_id) {
                debug!("{e}");
            }
        }
        self.streak.observe(&r);
        let points = self.result_points(&r);
        let setting = self.ledger.settings.remove(&r.trial_id);
        let learn = setting.is_some();
        let (index, config, params) = match setting {
            Some(s) => (s.index, s.config, s.params),
            // A result for no setting in flight (a foreign file): counted,
            // not learned from.
            None => (trial_index(&r.trial_id).unwrap_or(0), 0, r.params),
        };
        let d = ResultDigest {
            v: ResultDigest::VERSION,
            trial_id: r.trial_id,
            index,
            config,
            status: r.status,
            objective: r.objective,
            params,
            wall_time_s: r.wall_time_s,
            points,
        };
        if learn {
            self.ledger.cache.append(&d);
        }
        self.take(d, learn);
    }

    /// Count a result in: for the sampler (`learn`), the pruners, the
    /// totals. From a result file ([`Master::accept`]) or from the results
    /// cache at start.
    fn take(&mut self, d: ResultDigest, learn: bool) {
        let direction = self.study.objective.direction;
        let complete = d.status == TrialStatus::Complete;
        let curve = Curve::from_points(&d.points, direction, complete);
        if learn {
            // TPE ranks a pruned trial by its value at its furthest step.
            let last_intermediate = curve
                .values
                .last_key_value()
                .map(|(&step, &loss)| Intermediate { step, loss });
            self.ledger.observations.push(Observation {
                config: d.config,
                params: d.params,
                status: d.status,
                loss: d.objective.map(|v| direction.sort_key(v)),
                last_intermediate,
            });
        }
        if self.study.pruner.is_some() {
            self.pruning
                .finished_curves
                .insert(d.trial_id.clone(), curve);
        }
        self.pruning.decided.remove(&d.trial_id);
        self.ledger
            .tally
            .add(&d.trial_id, d.status, d.objective, d.wall_time_s, direction);
        self.ledger.results.insert(d.trial_id, d.status);
    }

    /// In the sharded layout, results are created in the shard of their
    /// trial, which a watch on `results/` does not see: watch the shards
    /// of the trials in flight (created first, so that the watch can be
    /// set before the first result). `watched` holds those already done.
    fn watch_result_shards(&self, waker: &Waker, watched: &mut BTreeSet<PathBuf>) {
        for id in self.ledger.settings.keys() {
            let Some(shard) = self.dir.shard_dir(Sub::Results, id) else {
                return; // the flat layout
            };
            if watched.contains(&shard) {
                continue;
            }
            match self.dir.make_shard(Sub::Results, id) {
                Ok(_) => {
                    waker.watch(&shard);
                    watched.insert(shard);
                }
                Err(e) => self.warn_once(e.to_string()),
            }
        }
    }

    fn live_workers(&self) -> usize {
        self.fleet.liveness.live_count(self.clock.now())
    }

    fn propose(&mut self) -> Result<(), MasterError> {
        // A config whose repeats are all proposed is not needed again.
        let proposed_configs = self.ledger.next_index / self.study.repeats as u64;
        self.ledger.configs.retain(|&c, _| c >= proposed_configs);
        let remaining = self.planned.saturating_sub(self.ledger.next_index);
        if remaining == 0 {
            return Ok(());
        }
        let n = match self.study.mode {
            Mode::Sync { batch } => {
                // Scenario 6: the next batch only once every result is in.
                if self.ledger.all_in() {
                    let size = if self.pruning.brackets.is_empty() {
                        batch as u64
                    } else {
                        let (b, start) =
                            halving::batch_of(&self.pruning.brackets, self.ledger.next_index);
                        let size = halving::bracket_of(&self.pruning.brackets, b).size as u64;
                        start + size - self.ledger.next_index
                    };
                    size.min(remaining)
                } else {
                    0
                }
            }
            Mode::Async { queue } => {
                let target = (queue as usize).max(self.live_workers());
                (target.saturating_sub(self.fleet.pending_count) as u64).min(remaining)
            }
        };
        for _ in 0..n {
            // Record first, then publish: a crash in between leaves a
            // recorded setting that the next master publishes unchanged.
            // What is published is the record, ours or another master's.
            self.still_ours()?;
            let s = self.record(self.ledger.next_index)?;
            self.dir.publish(&s)?;
            // Option fields are left out of the line when they are None.
            let source = s.source.map(|x| x.as_str());
            info!(trial = %s.trial_id, batch = s.batch, source, params = %serde_json::to_string(&s.params).unwrap_or_default(), "proposed");
            self.ledger.settings.insert(s.trial_id.clone(), s);
            self.ledger.next_index += 1;
            self.fleet.pending_count += 1;
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.ledger.next_index >= self.planned && self.ledger.all_in()
    }

    /// `Err(LeaseLost)` once another master holds the lease: asked before
    /// every batch of writes, so a master that was frozen past its lease
    /// writes nothing once it could know.
    fn still_ours(&self) -> Result<(), MasterError> {
        self.lease.as_ref().map_or(Ok(()), LeaseCheck::verify)
    }

    fn finish(&mut self) -> Result<(), MasterError> {
        self.still_ours()?;
        self.dir.mark_finished(&Finished {
            format_version: FORMAT_VERSION,
            trials: self.planned,
            finished_at_unix: unix_now(),
        })?;
        match self.best() {
            Some((id, v)) => {
                info!(trials = self.ledger.results.len(), best = %id, "study finished; best {} = {v:.6}", self.study.objective.metric)
            }
            None => info!(
                trials = self.ledger.results.len(),
                "study finished; no trial completed"
            ),
        }
        Ok(())
    }

    /// The completed trial with the best objective, and its value.
    fn best(&self) -> Option<(&str, f64)> {
        self.ledger
            .tally
            .best
            .as_ref()
            .map(|(id, v)| (id.as_str(), *v))
    }

    /// What the progress line shows now.
    fn snapshot(&self) -> progress::Snapshot {
        let n = self.ledger.results.len();
        let wall = self.ledger.tally.wall_s;
        progress::Snapshot {
            planned: self.planned,
            done: n as u64,
            running: self.fleet.running_count,
            live_workers: self.live_workers(),
            mean_wall_s: (n > 0).then(|| wall / n as f64),
            metric: self.study.objective.metric.clone(),
            best: self.best().map(|(id, v)| (id.to_string(), v)),
        }
    }

    fn summary(&self, finished: bool) -> RunSummary {
        RunSummary {
            planned: self.planned,
            proposed: self.ledger.next_index,
            results: self.ledger.results.len() as u64,
            finished,
        }
    }
}

#[cfg(test)]
mod tests;
