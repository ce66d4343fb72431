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
    FORMAT_VERSION,
};
use hps_shared_fs::dir::{hostname, is_not_found};
use hps_shared_fs::{detect_remote_fs, FsError, StudyDir, Sub, Waker, WatchMode};
use tracing::{debug, info, info_span, warn};

use crate::liveness::{Clock, Liveness, SystemClock, Verdict};
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
        .map_err(|(f, m)| anyhow::anyhow!("{}: field `{f}`: {m}", dir.study_path().display()))?;
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
    let mode = match (cfg.poll, remote) {
        (Some(d), _) => WatchMode::Poll(d),
        (None, Some(fs)) => {
            info!(
                filesystem = fs.0,
                "study directory is on a network/FUSE filesystem: polling"
            );
            WatchMode::Poll(cfg.rescan)
        }
        (None, None) => WatchMode::Native(cfg.rescan),
    };
    let waker = Waker::new(
        &[
            dir.sub(Sub::Results),
            dir.sub(Sub::Pending),
            dir.sub(Sub::Running),
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
        };
        m.load_settings()?;
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
            Mode::Sync { batch } => Some(index / batch as u64),
            Mode::Async { .. } => None,
        };
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
        }
    }

    /// One scan: collect results, recover lost trials, propose new ones.
    fn step(&mut self) -> Result<()> {
        // Order matters: a trial moves pending → running → results, so
        // listing in that order never misses a trial in flight.
        let pending: BTreeSet<String> = self.dir.list(Sub::Pending)?.into_iter().collect();
        let running = self.dir.list_running()?;
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

        self.propose()?;
        Ok(())
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
                        .observe(&w, hb.seq, hb.state == "stopped", now)
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
                    (batch as u64).min(remaining)
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
    stop: Arc<AtomicBool>,
    lost: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
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
        let stop = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicBool::new(false));
        let thread = {
            let (dir, stop, lost) = (dir.clone(), stop.clone(), lost.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    sleep_unless(&stop, interval);
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    // Someone else took the lease (we were presumed dead).
                    if let Ok(Some(cur)) = dir.read_lease() {
                        if cur.pid != lease.pid || cur.host != lease.host {
                            lost.store(true, Ordering::SeqCst);
                            break;
                        }
                    }
                    lease.seq += 1;
                    lease.written_at_unix = unix_now();
                    if let Err(e) = dir.write_lease(&lease) {
                        warn!("{e}");
                    }
                }
            })
        };
        Ok(Lease {
            stop,
            lost,
            thread: Some(thread),
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
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if !self.lost.load(Ordering::SeqCst) {
            let _ = std::fs::remove_file(self.dir.root().join(hps_shared_fs::dir::MASTER_FILE));
        }
    }
}

fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50).min(d));
    }
}

fn pid_alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
