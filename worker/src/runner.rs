//! The worker loop: claim a pending setting, train it, publish the result.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hps_common::files::unix_now;
use hps_common::{
    Heartbeat, Study, TrainerSpec, TrialResult, TrialSetting, TrialStatus, WorkerState,
    FORMAT_VERSION,
};
use hps_shared_fs::dir::is_not_found;
use hps_shared_fs::host::hostname;
use hps_shared_fs::{Claim, Periodic, StudyDir, Sub, Waker, WatchMode};
use tracing::{error, info, info_span, warn};

use crate::cnn::{self, CnnConfig, Dataset, EpochControl, TrainError};
use crate::device::DeviceSpec;
use crate::exec::ExecOutcome;
use crate::function::{self, FunctionOutcome};
use crate::progress::Reporter;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub dir: PathBuf,
    /// Unique among the study's workers; becomes a file name.
    pub id: String,
    pub device: DeviceSpec,
    /// Dataset directory; overrides the study's `trainer.data`.
    pub data: Option<PathBuf>,
    /// `Some(interval)`: scan only, no native events.
    pub poll: Option<Duration>,
    pub rescan: Duration,
    pub heartbeat_interval: Duration,
    /// Exit after one trial.
    pub once: bool,
    /// Trials run at once, sharing the loaded dataset and the device. Each
    /// slot is a worker of its own to the protocol, named `<id>-s<k>`.
    pub slots: usize,
}

impl WorkerConfig {
    pub fn new(dir: PathBuf, id: String) -> Self {
        WorkerConfig {
            dir,
            id,
            device: DeviceSpec::Cpu,
            data: None,
            poll: None,
            rescan: Duration::from_secs(2),
            heartbeat_interval: Duration::from_secs(2),
            once: false,
            slots: 1,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerSummary {
    pub trials: u64,
    pub interrupted: bool,
}

/// What the heartbeat thread reports.
#[derive(Debug, Clone, Default)]
struct Status {
    trial: Option<String>,
    epoch: Option<u32>,
}

enum Trainer {
    Cnn {
        data: Box<Dataset>,
        device: candle_core::Device,
        defaults: hps_common::CnnDefaults,
    },
    Exec(hps_common::exec::ExecSpec),
    Function {
        f: hps_common::functions::Function,
        dim: Option<usize>,
        sleep_s: f64,
    },
}

/// Run the worker until the study is finished (or after one trial with
/// `once`), or until `shutdown` is set — then the trial in hand is handed
/// back to the queue. With `slots` > 1, that many claim loops run at once
/// on one loaded trainer (dataset and device), as workers `<id>-s0`, …
pub fn run(cfg: &WorkerConfig, shutdown: Arc<AtomicBool>) -> Result<WorkerSummary> {
    hps_common::validate_id("worker id", &cfg.id)?;
    if cfg.slots == 0 {
        anyhow::bail!("--slots must be at least 1");
    }
    let dir = StudyDir::open(&cfg.dir)?;
    let study = dir.read_study()?;
    let trainer = open_trainer(cfg, &study)?;
    if cfg.slots == 1 {
        return run_slot(cfg, &dir, &study, &trainer, shutdown);
    }
    let results: Vec<Result<WorkerSummary>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..cfg.slots)
            .map(|k| {
                let mut slot = cfg.clone();
                slot.id = format!("{}-s{k}", cfg.id);
                let (dir, study, trainer, shutdown) = (&dir, &study, &trainer, shutdown.clone());
                scope.spawn(move || {
                    let span = info_span!("slot", slot = k);
                    let _g = span.enter();
                    run_slot(&slot, dir, study, trainer, shutdown)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a slot thread panicked")))
            })
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
fn run_slot(
    cfg: &WorkerConfig,
    dir: &StudyDir,
    study: &Study,
    trainer: &Trainer,
    shutdown: Arc<AtomicBool>,
) -> Result<WorkerSummary> {
    hps_common::validate_id("worker id", &cfg.id)?;
    let (dir, study, trainer) = (dir.clone(), study, trainer);

    let (mode, why) = WatchMode::choose(dir.root(), cfg.poll, cfg.rescan);
    if let Some(why) = why {
        info!("{why}");
    }
    let waker = Waker::new(&[dir.sub(Sub::Pending), dir.root().to_path_buf()], mode);
    info!(worker = %cfg.id, device = %cfg.device, study = %study.name, watch = waker.description(), "worker started");

    // The first beat is written before the first claim, so the master
    // knows this worker before it sees anything it holds.
    write_heartbeat(&dir, cfg, &Status::default(), 0, WorkerState::Idle);
    let status = Arc::new(Mutex::new(Status::default()));
    let hb = spawn_heartbeat(dir.clone(), cfg.clone(), status.clone());

    let mut summary = WorkerSummary::default();
    let outcome = (|| -> Result<()> {
        loop {
            if shutdown.load(Ordering::SeqCst) {
                summary.interrupted = true;
                return Ok(());
            }
            // Between trials no claim under our name is legitimate: any is
            // from an earlier life of this worker, or a claim whose rename
            // reply NFS lost (we believed we lost the race). Hand them back.
            release_stale_claims(&dir, &cfg.id)?;
            if let Some(claim) = claim_next(&dir, &cfg.id)? {
                let done = run_claim(&dir, study, trainer, cfg, &claim, &status, &shutdown)?;
                if !done {
                    summary.interrupted = true;
                    return Ok(());
                }
                summary.trials += 1;
                if cfg.once {
                    return Ok(());
                }
                continue;
            }
            if dir.is_finished() {
                info!(trials = summary.trials, "study finished; worker exiting");
                return Ok(());
            }
            waker.wait();
        }
    })();
    hb.stop();
    write_heartbeat(
        &dir,
        cfg,
        &Status::default(),
        u64::MAX,
        WorkerState::Stopped,
    );
    outcome.map(|()| summary)
}

fn open_trainer(cfg: &WorkerConfig, study: &Study) -> Result<Trainer> {
    Ok(match &study.trainer {
        TrainerSpec::Cnn { data, defaults } => {
            let device = cfg.device.open()?;
            let path = cfg
                .data
                .clone()
                .or_else(|| data.as_ref().map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from(cnn::DEFAULT_DATA_DIR));
            let t = Instant::now();
            let data = Dataset::load(&path, &device)?;
            info!(data = %path.display(), train = data.train_len(), test = data.test_len(), "dataset loaded in {:.1}s", t.elapsed().as_secs_f64());
            Trainer::Cnn {
                data: Box::new(data),
                device,
                defaults: defaults.clone(),
            }
        }
        TrainerSpec::Exec(spec) => {
            // The command picks its own device; CUDA_VISIBLE_DEVICES from
            // the launcher is passed through unchanged.
            Trainer::Exec(spec.clone())
        }
        TrainerSpec::Function { name, dim, sleep_s } => {
            // The function trainer needs no device, but a GPU that was asked
            // for and is missing is still an error.
            cfg.device.open()?;
            Trainer::Function {
                f: *name,
                dim: *dim,
                sleep_s: *sleep_s,
            }
        }
    })
}

/// Claim the first pending setting we can win. Losing a race to another
/// worker is normal: try the next one.
fn claim_next(dir: &StudyDir, worker: &str) -> Result<Option<Claim>> {
    for id in dir.list(Sub::Pending)? {
        if hps_common::validate_id("trial id", &id).is_err() {
            let path = dir.json_path(Sub::Pending, &id);
            warn!(file = %path.display(), "pending file with an invalid trial id; moving it to quarantine/");
            let _ = dir.quarantine(&path);
            continue;
        }
        if let Some(c) = dir.claim(&id, worker)? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// Run one claimed trial. Returns false when it was interrupted and handed
/// back to the queue.
fn run_claim(
    dir: &StudyDir,
    study: &Study,
    trainer: &Trainer,
    cfg: &WorkerConfig,
    claim: &Claim,
    status: &Mutex<Status>,
    shutdown: &AtomicBool,
) -> Result<bool> {
    let setting = match dir.read_claim(claim) {
        Ok(s) if s.trial_id == claim.trial_id => s,
        Ok(s) => {
            warn!(file = %claim.path.display(), "setting file says trial `{}`; moving it to quarantine/", s.trial_id);
            dir.quarantine(&claim.path)?;
            return Ok(true);
        }
        Err(e) if is_not_found(&e) => return Ok(true),
        Err(e) => {
            // The master re-publishes it from its record in settings/.
            warn!("{e}; moving it to quarantine/");
            dir.quarantine(&claim.path)?;
            return Ok(true);
        }
    };
    if dir.has_result(&setting.trial_id) {
        // A stale copy of a finished trial (re-queued while its first run
        // was still writing its result): nothing to do.
        info!(trial = %setting.trial_id, "already has a result; dropping the claim");
        dir.drop_claim(claim)?;
        return Ok(true);
    }
    let span = info_span!("trial", trial_id = %setting.trial_id);
    let _g = span.enter();
    info!(attempt = setting.attempt, params = %serde_json::to_string(&setting.params).unwrap_or_default(), "claimed");
    *status.lock().unwrap() = Status {
        trial: Some(setting.trial_id.clone()),
        epoch: None,
    };

    let log_path = dir.log_path(&setting.trial_id)?;
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("failed to open the trial log `{}`", log_path.display()))?;
    let _ = writeln!(
        log,
        "# trial {} attempt {} worker {} device {} seed {} params {}",
        setting.trial_id,
        setting.attempt,
        cfg.id,
        cfg.device,
        setting.seed,
        serde_json::to_string(&setting.params).unwrap_or_default()
    );

    let started = Instant::now();
    let should_stop = || shutdown.load(Ordering::SeqCst);
    let mut result = base_result(&setting, cfg);
    let mut reporter = Reporter::new(
        dir,
        &setting,
        &cfg.id,
        &study.objective.metric,
        study.pruner.is_some(),
    );
    // Successive halving: where this run pauses.
    let until = setting.until_epoch.filter(|u| *u < setting.epochs);
    match trainer {
        Trainer::Cnn {
            data,
            device,
            defaults,
        } => {
            match CnnConfig::from_params(
                &setting.params,
                defaults,
                setting.epochs,
                setting.time_limit_s,
                setting.seed,
            ) {
                Err(e) => {
                    result.status = TrialStatus::Invalid;
                    result.error = Some(e.to_string());
                }
                Ok(cc) => {
                    let _ = writeln!(log, "# epoch elapsed_s train_loss val_loss val_error");
                    let ckpt = dir.checkpoint_dir(&setting.trial_id)?;
                    if let Some(done) = cnn::checkpoint_epochs(&ckpt, &cc, data) {
                        info!(epochs_done = done, "resuming from checkpoint");
                        let _ = writeln!(log, "# resuming from the checkpoint after epoch {done}");
                        if until.is_some_and(|u| done >= u) {
                            // Published again (orphan rule) after it had paused.
                            return pause(dir, claim, &setting, done, &mut log, status);
                        }
                    }
                    let mut stop_reason: Option<String> = None;
                    let mut on_epoch = |s: &hps_common::EpochStat| {
                        let _ = writeln!(
                            log,
                            "{} {:.3} {:.6} {:.6} {:.6}",
                            s.epoch, s.elapsed_s, s.train_loss, s.val_loss, s.val_error
                        );
                        info!(
                            epoch = s.epoch,
                            elapsed_s = format!("{:.1}", s.elapsed_s),
                            train_loss = s.train_loss,
                            val_loss = s.val_loss,
                            val_error = s.val_error,
                            "epoch"
                        );
                        status.lock().unwrap().epoch = Some(s.epoch);
                        reporter.epoch(s);
                        if until.is_some_and(|u| s.epoch >= u) {
                            return EpochControl::Pause;
                        }
                        if setting.decide_at.contains(&s.epoch) {
                            reporter.wait_decision(s.epoch, &should_stop);
                        }
                        match reporter.stop_requested(s.epoch) {
                            Some(why) => {
                                stop_reason = Some(why);
                                EpochControl::Stop
                            }
                            None => EpochControl::Continue,
                        }
                    };
                    let trained = cnn::train_controlled(
                        &cc,
                        data,
                        device,
                        Some(&ckpt),
                        &mut on_epoch,
                        &should_stop,
                    );
                    match trained {
                        Ok(out) => {
                            result.status = out.status;
                            result.curve = out.curve;
                            result.best_epoch = out.best_epoch;
                            result.metrics = out.metrics;
                            result.epochs_completed = out.epochs_completed;
                            result.error = out.error;
                            if let (Some(why), TrialStatus::Complete) = (stop_reason, result.status)
                            {
                                info!("{why}");
                                result.status = TrialStatus::Pruned;
                                result.error = Some(why);
                            }
                        }
                        Err(TrainError::Paused(epoch)) => {
                            return pause(dir, claim, &setting, epoch, &mut log, status)
                        }
                        // Preempted: the last epoch's checkpoint stays for whoever runs it next.
                        Err(TrainError::Interrupted) => return release(dir, claim, &setting),
                        // Cannot save state (disk full?): hand the trial back
                        // rather than fail it, and stop with a clear error.
                        Err(e @ TrainError::Checkpoint { .. }) => {
                            release(dir, claim, &setting)?;
                            return Err(anyhow::Error::new(e).context(format!(
                                "trial {} handed back to the queue; free space or fix permissions and restart the worker",
                                setting.trial_id
                            )));
                        }
                        Err(TrainError::InvalidCombination(m)) => {
                            result.status = TrialStatus::Invalid;
                            result.error = Some(m);
                        }
                        Err(e) => {
                            error!("training failed: {e}");
                            result.status = TrialStatus::Failed;
                            result.error = Some(e.to_string());
                        }
                    }
                }
            }
        }
        Trainer::Exec(spec) => {
            let trial_dir = dir.checkpoint_dir(&setting.trial_id)?;
            let mut monitor = |reports: &[serde_json::Map<String, serde_json::Value>],
                               changed: bool| {
                if changed {
                    reporter.reports(reports);
                }
                reporter
                    .last_step()
                    .and_then(|s| reporter.stop_requested(s))
            };
            match crate::exec::run(
                spec,
                &setting,
                dir.root(),
                &trial_dir,
                &mut log,
                &should_stop,
                &mut monitor,
            ) {
                ExecOutcome::Done {
                    status,
                    metrics,
                    reports,
                    error,
                } => {
                    if let Some(e) = &error {
                        warn!(status = status.as_str(), "{e}");
                    }
                    result.status = status;
                    result.metrics = metrics;
                    result.reports = reports;
                    result.error = error;
                    result.epochs_completed = result.reports.len() as u32;
                }
                ExecOutcome::Interrupted => return release(dir, claim, &setting),
            }
        }
        Trainer::Function { f, dim, sleep_s } => {
            match function::evaluate(*f, *dim, *sleep_s, &setting.params, &should_stop) {
                FunctionOutcome::Done { metrics } => {
                    result.status = TrialStatus::Complete;
                    result.metrics = metrics;
                    result.epochs_completed = 1;
                }
                FunctionOutcome::Invalid(m) => {
                    result.status = TrialStatus::Invalid;
                    result.error = Some(m);
                }
                FunctionOutcome::Interrupted => return release(dir, claim, &setting),
            }
        }
    }
    if result.status == TrialStatus::Complete {
        result.objective = result.metrics.get(&study.objective.metric).copied();
    }
    result.wall_time_s = started.elapsed().as_secs_f64();
    result.finished_at_unix = unix_now();
    if let Some(e) = &result.error {
        let _ = writeln!(log, "# {}: {e}", result.status.as_str());
    }
    let accepted = dir.submit_result(&result)?;
    // One `# result` line per run that got as far as publishing; tools and
    // the chaos test count them to prove no setting ran twice to completion.
    let _ = writeln!(
        log,
        "# result {} status {} in {:.1}s objective {:?}",
        if accepted {
            "accepted"
        } else {
            "rejected (a result was already published)"
        },
        result.status.as_str(),
        result.wall_time_s,
        result.objective
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
    if let Ok(ckpt) = dir.checkpoint_dir(&setting.trial_id) {
        if ckpt.exists() {
            if let Err(e) = std::fs::remove_dir_all(&ckpt) {
                warn!(
                    "failed to remove the checkpoint `{}` of a finished trial: {e}",
                    ckpt.display()
                );
            }
        }
    }
    *status.lock().unwrap() = Status::default();
    Ok(true)
}

/// Successive halving: the trial reached its `until_epoch`. Park it in
/// `paused/` with its checkpoint; the master promotes or prunes it.
fn pause(
    dir: &StudyDir,
    claim: &Claim,
    setting: &TrialSetting,
    epoch: u32,
    log: &mut std::fs::File,
    status: &Mutex<Status>,
) -> Result<bool> {
    if dir.pause(claim)? {
        info!(
            epoch,
            "paused at a rung; waiting for the master to promote or prune it"
        );
        let _ = writeln!(
            log,
            "# paused after epoch {epoch} (until_epoch {:?})",
            setting.until_epoch
        );
    } else {
        info!("paused, but the master had already re-queued the trial");
    }
    *status.lock().unwrap() = Status::default();
    Ok(true)
}

/// Preemption: hand the trial back to the queue with the same attempt.
fn release(dir: &StudyDir, claim: &Claim, setting: &TrialSetting) -> Result<bool> {
    match dir.take_claim(claim)? {
        Some(taken) => {
            info!("interrupted; handing the trial back to the queue");
            dir.requeue(taken, setting)?;
        }
        None => info!("interrupted; the master had already re-queued the trial"),
    }
    Ok(false)
}

/// Claims under our own name left by an earlier life of this worker (it
/// was killed or crashed) go back to the queue with attempt + 1, before the
/// master's grace period would do the same. Taking them first means the
/// master and we cannot both re-queue one.
fn release_stale_claims(dir: &StudyDir, worker: &str) -> Result<()> {
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

fn write_heartbeat(dir: &StudyDir, cfg: &WorkerConfig, st: &Status, seq: u64, state: WorkerState) {
    if let Err(e) = dir.write_heartbeat(&heartbeat(cfg, st, seq, state)) {
        warn!("{e}");
    }
}

fn heartbeat(cfg: &WorkerConfig, st: &Status, seq: u64, state: WorkerState) -> Heartbeat {
    Heartbeat {
        format_version: FORMAT_VERSION,
        worker: cfg.id.clone(),
        host: hostname(),
        pid: std::process::id(),
        device: cfg.device.to_string(),
        seq,
        state,
        trial: st.trial.clone(),
        epoch: st.epoch,
        interval_s: cfg.heartbeat_interval.as_secs_f64(),
        written_at_unix: unix_now(),
    }
}

fn spawn_heartbeat(dir: StudyDir, cfg: WorkerConfig, status: Arc<Mutex<Status>>) -> Periodic {
    let interval = cfg.heartbeat_interval;
    Periodic::start("heartbeat", interval, move |seq| {
        let st = status.lock().unwrap().clone();
        let state = if st.trial.is_some() {
            WorkerState::Training
        } else {
            WorkerState::Idle
        };
        dir.write_heartbeat(&heartbeat(&cfg, &st, seq, state))
    })
}
