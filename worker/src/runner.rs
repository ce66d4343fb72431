//! The worker loop: claim a pending setting, hand it to the study's
//! trainer (see [`crate::trainers`]), publish the result or hand the trial
//! back; a heartbeat thread tells the master this worker is alive.

use std::collections::BTreeSet;
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hps_common::files::unix_now;
use hps_common::{Spent, Study, TrialResult, TrialSetting, TrialStatus, FORMAT_VERSION};
use hps_shared_fs::dir::is_not_found;
use hps_shared_fs::{Claim, StudyDir, Sub, Waker, WatchMode};
use tracing::{info, info_span, warn};

use crate::beat::{spawn_heartbeat, stop_beat, Status};
pub use crate::config::WorkerConfig;
pub use crate::error::RunnerError;
use crate::identity;
use crate::progress::Reporter;
use crate::trainers::{
    self, Outcome, Trainer, TrainerError, TrainerOptions, TrialContext, TrialEnd,
};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerSummary {
    pub trials: u64,
    pub interrupted: bool,
}

/// What every claim loop of a worker shares.
struct Slot<'a> {
    cfg: &'a WorkerConfig,
    dir: &'a StudyDir,
    study: &'a Study,
    trainer: &'a dyn Trainer,
}

/// Run the worker until the study is finished (or after one trial with
/// `once`), or until `shutdown` is set — then the trial in hand is handed
/// back to the queue. With `slots` > 1, that many claim loops run at once
/// on one loaded trainer (dataset and device), as workers `<id>-s0`, …
pub fn run(cfg: &WorkerConfig, shutdown: Arc<AtomicBool>) -> Result<WorkerSummary, RunnerError> {
    hps_common::validate_id("worker id", &cfg.id)?;
    if cfg.slots == 0 {
        return Err(RunnerError::NoSlots);
    }
    let dir = StudyDir::open(&cfg.dir)?;
    let study = dir.read_study()?;
    // Workers train with the study's trainer and space too, so an edited
    // study is refused here as well; accepting one is the master's call.
    dir.check_study(&study, false)?;
    let opts = TrainerOptions {
        device: cfg.device,
        data: cfg.data.clone(),
    };
    let trainer = trainers::open(&study, &opts)?;
    let slot = |cfg| Slot {
        cfg,
        dir: &dir,
        study: &study,
        trainer: trainer.as_ref(),
    };
    let configs: Vec<WorkerConfig> = if cfg.slots == 1 {
        vec![cfg.clone()]
    } else {
        (0..cfg.slots)
            .map(|k| WorkerConfig {
                id: format!("{}-s{k}", cfg.id),
                ..cfg.clone()
            })
            .collect()
    };
    // Writes each id's first beat, so the master knows this worker before
    // it sees anything it holds.
    identity::claim_all(&dir, &configs, &shutdown)?;
    if let [one] = configs.as_slice() {
        return run_slot(&slot(one), shutdown);
    }
    let results: Vec<Result<WorkerSummary, RunnerError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = configs
            .iter()
            .enumerate()
            .map(|(k, c)| {
                let (slot, shutdown) = (slot(c), shutdown.clone());
                scope.spawn(move || {
                    let span = info_span!("slot", slot = k);
                    let _g = span.enter();
                    run_slot(&slot, shutdown)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(RunnerError::SlotPanicked)))
            .collect()
    });
    let mut total = WorkerSummary::default();
    for r in results {
        let s = r?;
        total.trials += s.trials;
        total.interrupted |= s.interrupted;
    }
    Ok(total)
}

/// One claim loop (the whole worker, or one of its slots).
fn run_slot(slot: &Slot<'_>, shutdown: Arc<AtomicBool>) -> Result<WorkerSummary, RunnerError> {
    let (cfg, dir) = (slot.cfg, slot.dir);
    hps_common::validate_id("worker id", &cfg.id)?;
    // Filesystem events, or polling where they are unreliable
    // (network/FUSE filesystems, `--poll`).
    let (mode, why) = WatchMode::choose(dir.root(), cfg.poll, cfg.rescan);
    if let Some(why) = why {
        info!("{why}");
    }
    let waker = Waker::new(&[dir.sub(Sub::Pending), dir.root().to_path_buf()], mode);
    info!(worker = %cfg.id, device = %cfg.device, study = %slot.study.name, watch = waker.description(), "worker started");
    if let Some(job) = &cfg.slurm {
        // Which GPU Slurm gave this job: the device index counts from it.
        let gpus = std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_else(|_| "unset".into());
        info!(slurm_job = %job.job, node = %job.node, cuda_visible_devices = %gpus, "running under Slurm");
    }

    let status = Arc::new(Mutex::new(Status::default()));
    let hb = spawn_heartbeat(dir.clone(), cfg.clone(), status.clone());

    let mut summary = WorkerSummary::default();
    let outcome = claim_loop(slot, &waker, &status, &shutdown, &mut summary);
    hb.stop();
    stop_beat(dir, cfg);
    outcome.map(|()| summary)
}

/// Claim and run trials until the study is finished, `once` is done or
/// `shutdown` is set.
fn claim_loop(
    slot: &Slot<'_>,
    waker: &Waker,
    status: &Mutex<Status>,
    shutdown: &AtomicBool,
    summary: &mut WorkerSummary,
) -> Result<(), RunnerError> {
    let (cfg, dir) = (slot.cfg, slot.dir);
    let mut lost = BTreeSet::new();
    let mut queue_gone = false;
    loop {
        if shutdown.load(Ordering::SeqCst) {
            summary.interrupted = true;
            return Ok(());
        }
        // A worker that finds no `pending/` would otherwise idle in
        // silence: say so once, and once more when it is back.
        let pending = dir.sub(Sub::Pending);
        let present = pending.is_dir();
        match (present, queue_gone) {
            (false, false) => warn!(
                folder = %pending.display(),
                "the study's pending/ folder is gone (removed by hand?); waiting for the master to create it again"
            ),
            (true, true) => info!(folder = %pending.display(), "pending/ is back"),
            _ => {}
        }
        queue_gone = !present;
        // Between trials no claim under our name is legitimate: any is
        // from an earlier life of this worker, or a claim whose rename
        // reply NFS lost (we believed we lost the race). Hand them back.
        release_stale_claims(dir, &cfg.id)?;
        if let Some(claim) = claim_next(dir, &cfg.id, waker, &mut lost)? {
            if let Claimed::HandedBack = run_claim(slot, &claim, status, shutdown)? {
                summary.interrupted = true;
                return Ok(());
            }
            summary.trials += 1;
            if cfg.once {
                return Ok(());
            }
            // Our result is out: the master's next setting follows soon.
            waker.busy();
            continue;
        }
        if study_finished(dir, slot.study) {
            info!(trials = summary.trials, "study finished; worker exiting");
            return Ok(());
        }
        waker.wait();
    }
}

/// Whether `finished.json` says the study is done: it must count at least
/// the trials the study plans now. One with fewer is left from before a
/// budget raise, and the master that continues the study removes it; a
/// worker that starts before that master waits for the new trials.
fn study_finished(dir: &StudyDir, study: &Study) -> bool {
    match dir.read_finished() {
        Ok(Some(f)) => study
            .total_trials()
            .map_or(true, |planned| f.trials >= planned),
        Ok(None) => false,
        // An unreadable one is the master's to repair; it is there.
        Err(_) => dir.is_finished(),
    }
}

/// Claim the first pending setting we can win. Losing a race to another
/// worker is normal: try the next one. A listed file that is gone when
/// claimed (another worker's, or a stale directory cache on NFS/FUSE) means
/// settings are moving: look again soon rather than a poll interval later.
/// Each id counts once (`lost`): a stale listing that keeps showing a file
/// that is gone must not turn polling into a busy loop.
fn claim_next(
    dir: &StudyDir,
    worker: &str,
    waker: &Waker,
    lost: &mut BTreeSet<String>,
) -> Result<Option<Claim>, RunnerError> {
    for id in dir.list(Sub::Pending)? {
        if hps_common::validate_id("trial id", &id).is_err() {
            let path = dir.json_path(Sub::Pending, &id);
            warn!(file = %path.display(), "pending file with an invalid trial id; moving it to quarantine/");
            let _ = dir.quarantine(&path);
            continue;
        }
        if let Some(c) = dir.claim(&id, worker)? {
            lost.clear();
            return Ok(Some(c));
        }
        if lost.insert(id) {
            waker.busy();
        }
    }
    Ok(None)
}

/// What became of a claim.
enum Claimed {
    /// Done with it (a result published, paused, or nothing to do): claim
    /// the next one.
    Next,
    /// Interrupted and handed back to the queue: stop claiming.
    HandedBack,
}

/// Run one claimed trial.
fn run_claim(
    slot: &Slot<'_>,
    claim: &Claim,
    status: &Mutex<Status>,
    shutdown: &AtomicBool,
) -> Result<Claimed, RunnerError> {
    let dir = slot.dir;
    let Some(setting) = read_setting(dir, claim)? else {
        return Ok(Claimed::Next);
    };
    let span = info_span!("trial", trial_id = %setting.trial_id);
    let _g = span.enter();
    info!(attempt = setting.attempt, params = %serde_json::to_string(&setting.params).unwrap_or_default(), "claimed");
    *status.lock().unwrap() = Status {
        trial: Some(setting.trial_id.clone()),
        epoch: None,
    };
    let mut log = open_log(dir, &setting, slot.cfg)?;
    let earlier = dir.read_spent(&setting.trial_id);
    let started = Instant::now();
    let should_stop = || shutdown.load(Ordering::SeqCst);
    let on_epoch = |e: u32| status.lock().unwrap().epoch = Some(e);
    let study = slot.study;
    let mut trial = TrialContext {
        dir,
        setting: &setting,
        log: &mut log,
        reporter: Reporter::new(
            dir,
            &setting,
            &slot.cfg.id,
            &study.objective.metric,
            study.pruner.is_some(),
            slot.cfg.decision_wait,
        ),
        on_epoch: &on_epoch,
        should_stop: &should_stop,
    };
    let outcome = match slot.trainer.run(&mut trial) {
        Ok(outcome) => outcome,
        // The trial cannot go on here (its state cannot be saved): hand it
        // back rather than fail it, and stop.
        Err(e @ TrainerError::Checkpoint { .. }) => {
            // What failed first is the error; handing the trial back on a
            // full disk may fail too, and must not hide it.
            if let Err(r) = release(dir, claim, &setting) {
                warn!("{r}; the trial stays claimed until the master presumes this worker dead and re-queues it");
            }
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    match outcome {
        Outcome::Finished(f) => {
            let mut result = base_result(&setting, slot.cfg);
            fill_result(&mut result, f, study, started);
            if earlier.runs > 0 {
                result.last_run_wall_time_s = Some(result.wall_time_s);
                result.wall_time_s += earlier.seconds;
            }
            publish(dir, claim, &result, study, &mut log)?;
            *status.lock().unwrap() = Status::default();
            Ok(Claimed::Next)
        }
        Outcome::Paused { epoch } => {
            record_spent(dir, &setting, &earlier, started);
            pause(dir, claim, &setting, epoch, &mut log, status)
        }
        Outcome::Interrupted => {
            record_spent(dir, &setting, &earlier, started);
            release(dir, claim, &setting)
        }
    }
}

/// The setting of a claim, checked against the claim's name; `None` when
/// there is nothing to run (gone, quarantined, or already has a result).
fn read_setting(dir: &StudyDir, claim: &Claim) -> Result<Option<TrialSetting>, RunnerError> {
    let setting = match dir.read_claim(claim) {
        Ok(s) if s.trial_id == claim.trial_id => s,
        Ok(s) => {
            warn!(file = %claim.path.display(), "setting file says trial `{}`; moving it to quarantine/", s.trial_id);
            dir.quarantine(&claim.path)?;
            return Ok(None);
        }
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => {
            // The master re-publishes it from its record in settings/.
            warn!("{e}; moving it to quarantine/");
            dir.quarantine(&claim.path)?;
            return Ok(None);
        }
    };
    if dir.has_result(&setting.trial_id) {
        // A stale copy of a finished trial (re-queued while its first run
        // was still writing its result): nothing to do.
        info!(trial = %setting.trial_id, "already has a result; dropping the claim");
        dir.drop_claim(claim)?;
        return Ok(None);
    }
    as_recorded(dir, claim, setting)
}

/// The claimed setting as its record in `settings/` says: the record is
/// the truth of what a trial is, and a queue file is only a copy of it. A
/// copy whose parameters differ (edited by hand) runs with the record's,
/// said in the log; a copy with no record at all is no trial of this study
/// and is moved to `quarantine/`. When the record cannot be read, the copy
/// runs: the master checks the result against its own record.
fn as_recorded(
    dir: &StudyDir,
    claim: &Claim,
    mut setting: TrialSetting,
) -> Result<Option<TrialSetting>, RunnerError> {
    match dir.read_setting(&setting.trial_id) {
        Ok(record) => {
            if record.params != setting.params
                || record.index != setting.index
                || record.config != setting.config
                || record.repeat != setting.repeat
                || record.seed != setting.seed
            {
                warn!(
                    file = %claim.path.display(),
                    record = %dir.setting_path(&setting.trial_id)?.display(),
                    "the queued copy differs from the trial's record (edited by hand?); running the record's parameters and seed"
                );
                setting.params = record.params;
                setting.index = record.index;
                setting.config = record.config;
                setting.repeat = record.repeat;
                setting.seed = record.seed;
            }
            Ok(Some(setting))
        }
        Err(e) if is_not_found(&e) => {
            warn!(
                file = %claim.path.display(),
                "no record of this trial in settings/: it is not a setting the master proposed; moving it to quarantine/"
            );
            dir.quarantine(&claim.path)?;
            Ok(None)
        }
        Err(e) => {
            warn!("{e}; running the queued copy as it is (the master checks its result against its own record)");
            Ok(Some(setting))
        }
    }
}

/// Open the trial's log for appending (never through a link: see
/// [`StudyDir::open_log`]) and write the run's header line.
fn open_log(
    dir: &StudyDir,
    setting: &TrialSetting,
    cfg: &WorkerConfig,
) -> Result<File, RunnerError> {
    let mut log = dir.open_log(&setting.trial_id)?;
    crate::logln!(
        log,
        "# trial {} attempt {} worker {} device {} seed {} params {}",
        setting.trial_id,
        setting.attempt,
        cfg.id,
        cfg.device,
        setting.seed,
        serde_json::to_string(&setting.params).unwrap_or_default()
    );
    Ok(log)
}

/// Copy the trainer's part into `result` and complete it: the objective
/// of a complete trial, the wall time.
fn fill_result(result: &mut TrialResult, f: TrialEnd, study: &Study, started: Instant) {
    result.status = f.status;
    result.curve = f.curve;
    result.best_epoch = f.best_epoch;
    result.metrics = f.metrics;
    result.reports = f.reports;
    result.epochs_completed = f.epochs_completed;
    result.error = f.error;
    result.collapsed = f.collapsed;
    // JSON has no NaN or infinity: such a metric would be written as
    // `null`, which no reader of a result takes for a number.
    let non_finite: Vec<(String, f64)> = result
        .metrics
        .iter()
        .filter(|(_, v)| !v.is_finite())
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    result.metrics.retain(|_, v| v.is_finite());
    from_best_report(result, study);
    let metric = &study.objective.metric;
    match non_finite.iter().find(|(k, _)| k == metric) {
        Some((_, v)) if result.status == TrialStatus::Complete => {
            result.status = TrialStatus::Diverged;
            result.collapsed = false;
            result.error = Some(format!(
                "the objective metric `{metric}` came out as {v}, not a finite number \
                 (an overflow or a division by zero in the objective); the trial counts as diverged"
            ));
        }
        _ if result.status == TrialStatus::Complete => set_objective(result, metric),
        _ => {}
    }
    if !non_finite.is_empty() && result.status != TrialStatus::Diverged {
        let listed: Vec<String> = non_finite
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect();
        warn!(
            "metrics that are not finite numbers were left out of the result: {}",
            listed.join(", ")
        );
    }
    result.wall_time_s = started.elapsed().as_secs_f64();
    result.finished_at_unix = unix_now();
}

/// A trial that reported per step (the exec trainer's reports) gets the
/// step of its best objective value as `best_epoch`, and, when it ended
/// without final metrics (stopped by a pruner), the numeric values of that
/// best report as its metrics: "the metrics at the best epoch so far", as
/// for the cnn trainer.
fn from_best_report(result: &mut TrialResult, study: &Study) {
    let metric = &study.objective.metric;
    let direction = study.objective.direction;
    let best = hps_common::files::points_from_reports(metric, &result.reports)
        .into_iter()
        .filter(|p| p.value.is_finite())
        .reduce(|a, b| {
            if direction.better(b.value, a.value) {
                b
            } else {
                a
            }
        });
    let Some(best) = best else {
        return;
    };
    if result.best_epoch.is_none() {
        result.best_epoch = Some(best.step);
    }
    if result.status == TrialStatus::Pruned && result.metrics.is_empty() {
        let report = result
            .reports
            .iter()
            .enumerate()
            .filter(|(i, r)| hps_common::files::report_step(*i, r) == best.step)
            .map(|(_, r)| r)
            .next_back();
        if let Some(r) = report {
            result.metrics = hps_common::files::report_values(r)
                .map(|(k, v)| (k.clone(), v))
                .collect();
        }
    }
}

/// The objective of a complete trial is its `metric`. A trial that ends
/// without it is `failed`, whatever its trainer (a script reporting
/// `val_error` for an objective `val_acc`, say): a `complete` result
/// without an objective would teach the sampler nothing and hide the
/// mistake. The error names the metric and the keys the trial did report.
fn set_objective(result: &mut TrialResult, metric: &str) {
    if let Some(v) = result.metrics.get(metric) {
        result.objective = Some(*v);
        return;
    }
    let listed = |keys: Vec<&str>| match keys.is_empty() {
        true => "none".to_string(),
        false => keys.join(", "),
    };
    let mut why = format!(
        "the trial ended without the objective metric `{metric}` (objective.metric in study.json); \
         the metrics it reported: {}",
        listed(result.metrics.keys().map(String::as_str).collect())
    );
    if !result.reports.is_empty() {
        let keys: std::collections::BTreeSet<&str> = result
            .reports
            .iter()
            .flat_map(|r| r.keys().map(String::as_str))
            .collect();
        why.push_str(&format!(
            "; the keys of its {} reports: {}",
            result.reports.len(),
            listed(keys.into_iter().collect())
        ));
    }
    why.push_str(". Report that metric, or set objective.metric to one of these");
    result.status = TrialStatus::Failed;
    result.collapsed = false; // marks complete trials only
    result.error = Some(why);
}

/// Publish `result` (the first result of a trial wins), log it, drop the
/// claim and the trial's checkpoint.
fn publish(
    dir: &StudyDir,
    claim: &Claim,
    result: &TrialResult,
    study: &Study,
    log: &mut File,
) -> Result<(), RunnerError> {
    if let Some(e) = &result.error {
        crate::logln!(log, "# {}: {e}", result.status.as_str());
    }
    // Logged before the link, so a worker killed between the link and its
    // outcome line still leaves a trace that this run got that far; the
    // result file says whose result was accepted.
    crate::logln!(log, "# publishing the result");
    let accepted = dir.submit_result(result)?;
    // One `# result` line per run that published; tools and the chaos test
    // count them to prove no setting ran twice to completion.
    crate::logln!(
        log,
        "# result {} status {} in {:.1}s objective {}",
        if accepted {
            "accepted"
        } else {
            "rejected (a result was already published)"
        },
        result.status.as_str(),
        result.wall_time_s,
        result
            .objective
            .map_or("none".to_string(), |v| v.to_string())
    );
    if accepted {
        match result.objective {
            Some(v) => info!(
                status = result.status.as_str(),
                "done: {} = {v:.6} in {:.1}s", study.objective.metric, result.wall_time_s
            ),
            None => info!(
                status = result.status.as_str(),
                error = result.error.as_deref().unwrap_or(""),
                "done without an objective"
            ),
        }
    } else {
        warn!("a result for this trial was already published (a re-run of a trial presumed lost); keeping the first one");
    }
    dir.drop_claim(claim)?;
    if let Err(e) = dir.remove_checkpoint(&result.trial_id) {
        warn!("{e} (a finished trial's)");
    }
    Ok(())
}

/// Successive halving: the trial reached its `until_epoch`. Park it in
/// `paused/` with its checkpoint; the master promotes or prunes it.
fn pause(
    dir: &StudyDir,
    claim: &Claim,
    setting: &TrialSetting,
    epoch: u32,
    log: &mut File,
    status: &Mutex<Status>,
) -> Result<Claimed, RunnerError> {
    if dir.pause(claim)? {
        info!(
            epoch,
            "paused at a rung; waiting for the master to promote or prune it"
        );
        crate::logln!(
            log,
            "# paused after epoch {epoch} (until_epoch {:?})",
            setting.until_epoch
        );
    } else {
        info!("paused, but the master had already re-queued the trial");
    }
    *status.lock().unwrap() = Status::default();
    Ok(Claimed::Next)
}

/// Preemption: hand the trial back to the queue with the same attempt.
/// Add this run's wall time to the trial's `spent.json` before it is
/// handed back or paused, so its result counts every run. Informational:
/// a failure is logged, never fatal. A run killed outright is not counted.
fn record_spent(dir: &StudyDir, setting: &TrialSetting, earlier: &Spent, started: Instant) {
    let spent = Spent {
        format_version: FORMAT_VERSION,
        seconds: earlier.seconds + started.elapsed().as_secs_f64(),
        runs: earlier.runs + 1,
    };
    if let Err(e) = dir.write_spent(&setting.trial_id, &spent) {
        warn!("{e}; this run's time will be missing from the trial's wall_time_s");
    }
}

fn release(dir: &StudyDir, claim: &Claim, setting: &TrialSetting) -> Result<Claimed, RunnerError> {
    match dir.take_claim(claim)? {
        Some(taken) => {
            info!("interrupted; handing the trial back to the queue");
            dir.requeue(taken, setting)?;
        }
        None => info!("interrupted; the master had already re-queued the trial"),
    }
    Ok(Claimed::HandedBack)
}

/// Claims under our own name left by an earlier life of this worker (it
/// was killed or crashed) go back to the queue with attempt + 1, before the
/// master's grace period would do the same. Taking them first means the
/// master and we cannot both re-queue one.
fn release_stale_claims(dir: &StudyDir, worker: &str) -> Result<(), RunnerError> {
    for c in dir
        .list_running()?
        .into_iter()
        .filter(|c| c.worker == worker)
    {
        let Some(taken) = dir.take_claim(&c)? else {
            continue;
        };
        if dir.has_result(&c.trial_id) {
            dir.forget(taken)?;
            continue;
        }
        match dir.read_taken(&taken) {
            Ok(mut s) => {
                s.attempt += 1;
                info!(trial = %c.trial_id, attempt = s.attempt, "re-queueing a trial this worker held when it last stopped");
                dir.requeue(taken, &s)?;
            }
            Err(e) => {
                // The master re-creates it from settings/ (orphan rule).
                warn!("{e}; moving it to quarantine/");
                dir.quarantine(&taken.path)?;
            }
        }
    }
    Ok(())
}

fn base_result(s: &TrialSetting, cfg: &WorkerConfig) -> TrialResult {
    TrialResult::for_setting(s, &cfg.id, &cfg.device.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_killed_between_linking_its_result_and_logging_it_leaves_a_publishing_line() {
        let tmp = tempfile::tempdir().unwrap();
        let study = hps_shared_fs::testing::branin_study(1);
        let dir = StudyDir::init(tmp.path(), &study).unwrap();
        let setting = TrialSetting::new(0, Default::default(), 1, "random");
        dir.publish(&setting).unwrap();
        let claim = dir.claim(&setting.trial_id, "w0").unwrap().unwrap();
        let cfg = WorkerConfig::new(tmp.path().into(), "w0".into());
        let mut log = open_log(&dir, &setting, &cfg).unwrap();
        // The link never happens (as if the worker died at it): the log
        // already says the run got as far as publishing.
        std::fs::remove_dir(dir.sub(Sub::Results)).unwrap();
        std::fs::write(dir.sub(Sub::Results), b"").unwrap();
        let result = base_result(&setting, &cfg);
        assert!(publish(&dir, &claim, &result, &study, &mut log).is_err());
        let text = std::fs::read_to_string(dir.log_path(&setting.trial_id).unwrap()).unwrap();
        let last = text.lines().last().unwrap_or_default();
        assert_eq!(last, "# publishing the result", "{text}");
    }

    #[test]
    fn a_complete_trial_without_the_objective_metric_fails_naming_the_metric_and_the_keys_it_reported(
    ) {
        let setting = TrialSetting::new(0, Default::default(), 1, "random");
        let cfg = WorkerConfig::new("d".into(), "w0".into());
        let mut r = base_result(&setting, &cfg);
        r.status = TrialStatus::Complete;
        r.metrics.insert("val_error".into(), 0.25);
        r.reports = vec![serde_json::json!({"epoch": 1, "val_error": 0.3})
            .as_object()
            .cloned()
            .unwrap()];
        set_objective(&mut r, "val_acc");
        assert_eq!(r.status, TrialStatus::Failed);
        assert_eq!(r.objective, None);
        let e = r.error.unwrap();
        assert!(e.contains("`val_acc`"), "{e}");
        assert!(e.contains("reported: val_error"), "{e}");
        assert!(e.contains("1 reports: epoch, val_error"), "{e}");

        let mut ok = base_result(&setting, &cfg);
        ok.status = TrialStatus::Complete;
        ok.metrics.insert("val_acc".into(), 0.75);
        set_objective(&mut ok, "val_acc");
        assert_eq!(
            (ok.status, ok.objective),
            (TrialStatus::Complete, Some(0.75))
        );
        assert!(ok.error.is_none());
    }
}
