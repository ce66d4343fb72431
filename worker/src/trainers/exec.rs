//! The `exec` trainer: run the study's command once per trial.
//!
//! - argv comes from the template with placeholders filled in, and is
//!   executed directly — never through a shell — so a value such as
//!   `"; touch /tmp/pwned"` is just an argument.
//! - The hyperparameters arrive as a JSON file (`HPS_PARAMS_FILE`) and as
//!   `HPS_PARAM_<NAME>` environment variables.
//! - The command may append JSON objects, one per line, to
//!   `HPS_REPORT_FILE` (intermediate results) and must write its final
//!   metrics as a JSON object to `HPS_RESULT_FILE`.
//! - stdout and stderr go to the trial's log; a non-zero exit or a missing
//!   result makes the trial `failed` with the tail of stderr.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hps_common::exec::{param_env_var, render, ExecSpec, StoppedBy, TemplateError};
use hps_common::{TrialSetting, TrialStatus};
use serde_json::Value;

pub use super::Report;
use super::{Outcome, Trainer, TrainerError, TrialContext, TrialEnd};

/// Lines of stderr kept for the error message of a failed trial.
const STDERR_TAIL: usize = 20;

/// The `exec` trainer of a study.
#[derive(Debug, Clone)]
pub struct ExecTrainer {
    spec: ExecSpec,
}

impl ExecTrainer {
    pub fn new(spec: ExecSpec) -> ExecTrainer {
        ExecTrainer { spec }
    }
}

impl Trainer for ExecTrainer {
    fn run(&self, trial: &mut TrialContext<'_>) -> Result<Outcome, TrainerError> {
        // The command picks its own device; CUDA_VISIBLE_DEVICES from the
        // launcher is passed through unchanged.
        let trial_dir = trial.checkpoint_dir()?;
        let reporter = &mut trial.reporter;
        let mut monitor = |reports: &[Report], changed: bool| {
            if changed {
                reporter.reports(reports);
            }
            reporter
                .last_step()
                .and_then(|s| reporter.stop_requested(s))
        };
        let out = run(
            &self.spec,
            trial.setting,
            trial.dir.root(),
            &trial_dir,
            trial.log,
            trial.should_stop,
            &mut monitor,
        );
        if let Outcome::Finished(TrialEnd {
            status,
            error: Some(e),
            ..
        }) = &out
        {
            // A pruned trial is routine; only a failure is a warning.
            if *status == TrialStatus::Failed {
                tracing::warn!(status = status.as_str(), "{e}");
            } else {
                tracing::info!(status = status.as_str(), "{e}");
            }
        }
        Ok(out)
    }
}

/// The trial's end: its reports count as its epochs.
fn done(
    status: TrialStatus,
    metrics: BTreeMap<String, f64>,
    reports: Vec<Report>,
    error: Option<String>,
) -> Outcome {
    Outcome::Finished(TrialEnd {
        metrics,
        epochs_completed: reports.len() as u32,
        reports,
        ..TrialEnd::with_status(status, error)
    })
}

fn failed(error: String, reports: Vec<Report>) -> Outcome {
    done(TrialStatus::Failed, BTreeMap::new(), reports, Some(error))
}

/// The text of a parameter value on a command line or in the environment:
/// strings as they are, everything else as JSON (`0.1`, `64`, `true`).
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Run one trial. `trial_dir` holds the params, report and result files
/// (it is the trial's checkpoint directory, kept across re-queues);
/// `study_dir` is the default working directory.
///
/// While the command runs, `monitor` is called every [`MONITOR_EVERY`]
/// with the complete report lines so far and whether they changed since
/// the last call; when it returns `Some(reason)` the command's process
/// group is killed and the trial ends `pruned` with that reason.
pub fn run(
    spec: &ExecSpec,
    setting: &TrialSetting,
    study_dir: &Path,
    trial_dir: &Path,
    log: &mut File,
    should_stop: &dyn Fn() -> bool,
    monitor: &mut Monitor,
) -> Outcome {
    let job = match Job::prepare(spec, setting, study_dir, trial_dir) {
        Ok(job) => job,
        Err(out) => return out,
    };
    let mut running = match job.spawn(setting, log) {
        Ok(r) => r,
        Err(out) => return out,
    };
    let ended = running.supervise(&job, spec.timeout_s, should_stop, monitor);
    job.conclude(running, ended)
}

/// One trial's command, ready to start.
struct Job {
    argv: Vec<String>,
    workdir: PathBuf,
    /// The placeholders' values (parameters and [`hps_common::exec::BUILTINS`]).
    vars: BTreeMap<String, String>,
    /// `trainer.env`, rendered.
    env: Vec<(String, String)>,
    result_file: PathBuf,
    report_file: PathBuf,
}

impl Job {
    /// Create the trial directory, write the params file and render the
    /// command; `Err` is the trial's outcome when that fails.
    fn prepare(
        spec: &ExecSpec,
        setting: &TrialSetting,
        study_dir: &Path,
        trial_dir: &Path,
    ) -> Result<Job, Outcome> {
        if let Err(e) = std::fs::create_dir_all(trial_dir) {
            return Err(failed(
                format!(
                    "cannot create the trial directory `{}`: {e}",
                    trial_dir.display()
                ),
                Vec::new(),
            ));
        }
        // The command runs in another directory: hand it absolute paths.
        let trial_dir =
            &std::fs::canonicalize(trial_dir).unwrap_or_else(|_| trial_dir.to_path_buf());
        let study_dir =
            &std::fs::canonicalize(study_dir).unwrap_or_else(|_| study_dir.to_path_buf());
        let params_file = trial_dir.join("params.json");
        let result_file = trial_dir.join("result.json");
        let report_file = trial_dir.join("reports.jsonl");
        // A re-run starts clean: old results or reports must not be mistaken for new ones.
        let _ = std::fs::remove_file(&result_file);
        let _ = std::fs::remove_file(&report_file);
        let params_json = serde_json::json!({
            "trial_id": setting.trial_id,
            "seed": setting.seed,
            "epochs": setting.epochs,
            "attempt": setting.attempt,
            "params": setting.params,
        });
        if let Err(e) =
            hps_shared_fs::write_atomic(&params_file, &hps_common::to_pretty_json(&params_json))
        {
            return Err(failed(e.to_string(), Vec::new()));
        }

        let path_text = |p: &Path| p.to_string_lossy().into_owned();
        let mut vars: BTreeMap<String, String> = setting
            .params
            .iter()
            .map(|(k, v)| (k.clone(), value_text(v)))
            .collect();
        for (k, v) in [
            ("trial_id", setting.trial_id.clone()),
            ("seed", setting.seed.to_string()),
            ("epochs", setting.epochs.to_string()),
            ("attempt", setting.attempt.to_string()),
            ("trial_dir", path_text(trial_dir)),
            ("params_file", path_text(&params_file)),
            ("result_file", path_text(&result_file)),
            ("report_file", path_text(&report_file)),
            ("study_dir", path_text(study_dir)),
        ] {
            vars.insert(k.to_string(), v);
        }
        let (argv, workdir, env) = render_command(spec, &vars, study_dir)?;
        Ok(Job {
            argv,
            workdir,
            vars,
            env,
            result_file,
            report_file,
        })
    }

    /// Start the command in its own process group, stdout to `log`.
    fn spawn(&self, setting: &TrialSetting, log: &mut File) -> Result<Running, Outcome> {
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..])
            .current_dir(&self.workdir)
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        match log.try_clone() {
            Ok(f) => cmd.stdout(Stdio::from(f)),
            Err(_) => cmd.stdout(Stdio::null()),
        };
        for (k, v) in [
            ("HPS_TRIAL_ID", "trial_id"),
            ("HPS_SEED", "seed"),
            ("HPS_EPOCHS", "epochs"),
            ("HPS_ATTEMPT", "attempt"),
            ("HPS_TRIAL_DIR", "trial_dir"),
            ("HPS_PARAMS_FILE", "params_file"),
            ("HPS_RESULT_FILE", "result_file"),
            ("HPS_REPORT_FILE", "report_file"),
            ("HPS_STUDY_DIR", "study_dir"),
        ] {
            cmd.env(k, &self.vars[v]);
        }
        for (k, v) in &setting.params {
            cmd.env(param_env_var(k), value_text(v));
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        // Its own process group, so a timeout or preemption kills everything
        // the command started (data loaders, shells it ran).
        cmd.process_group(0);
        let mut child = cmd.spawn().map_err(|e| {
            failed(
                format!(
                    "cannot start `{}` (in `{}`): {e}",
                    self.argv[0],
                    self.workdir.display()
                ),
                Vec::new(),
            )
        })?;
        let tail = Arc::new(Mutex::new(VecDeque::<String>::new()));
        let pump = child
            .stderr
            .take()
            .map(|err| pump_stderr(err, tail.clone(), log.try_clone().ok()));
        Ok(Running {
            child,
            tail,
            pump,
            started: Instant::now(),
        })
    }

    /// The trial's outcome once the command has ended (or was stopped).
    fn conclude(&self, running: Running, ended: Ended) -> Outcome {
        if let Some(p) = running.pump {
            let _ = p.join();
        }
        let reports = read_reports(&self.report_file);
        let tail_text = || {
            let t = running.tail.lock().unwrap();
            if t.is_empty() {
                "(stderr was empty)".to_string()
            } else {
                format!(
                    "stderr tail:\n{}",
                    t.iter().cloned().collect::<Vec<_>>().join("\n")
                )
            }
        };
        let program = &self.argv[0];
        match ended.stopped_by {
            Some(StoppedBy::Preemption) => return Outcome::Interrupted,
            Some(StoppedBy::Pruner) => {
                return done(TrialStatus::Pruned, BTreeMap::new(), reports, ended.pruned)
            }
            Some(StoppedBy::Timeout) => {
                return failed(
                    format!(
                    "`{program}` timed out after {:.1} s (trainer.timeout_s) and was killed; {}",
                    running.started.elapsed().as_secs_f64(),
                    tail_text()
                ),
                    reports,
                )
            }
            None => {}
        }
        match ended.status {
            Some(st) if st.success() => {}
            Some(st) => {
                return failed(
                    format!("`{program}` exited with {st}; {}", tail_text()),
                    reports,
                )
            }
            None => {
                return failed(
                    format!("lost track of `{program}`; {}", tail_text()),
                    reports,
                )
            }
        }
        match read_result(&self.result_file) {
            Ok((status, metrics)) => done(status, metrics, reports, None),
            Err(e) => failed(format!("{e}; {}", tail_text()), reports),
        }
    }
}

/// argv, working directory and `trainer.env` with the placeholders filled
/// in; `Err` is the trial's outcome (`invalid` for argv, else `failed`).
#[allow(clippy::type_complexity)]
fn render_command(
    spec: &ExecSpec,
    vars: &BTreeMap<String, String>,
    study_dir: &Path,
) -> Result<(Vec<String>, PathBuf, Vec<(String, String)>), Outcome> {
    let argv: Result<Vec<String>, TemplateError> =
        spec.argv.iter().map(|a| render(a, vars)).collect();
    let argv = argv.map_err(|e| {
        done(
            TrialStatus::Invalid,
            BTreeMap::new(),
            Vec::new(),
            Some(e.to_string()),
        )
    })?;
    let workdir = match &spec.workdir {
        Some(w) => {
            check_workdir_values(spec, vars)?;
            study_dir.join(render(w, vars).map_err(|e| failed(e.to_string(), Vec::new()))?)
        }
        None => study_dir.to_path_buf(),
    };
    let env = spec
        .env
        .iter()
        .map(|(k, v)| Ok((k.clone(), render(v, vars)?)))
        .collect::<Result<Vec<_>, TemplateError>>()
        .map_err(|e| failed(e.to_string(), Vec::new()))?;
    Ok((argv, workdir, env))
}

/// Refuse, before anything starts, a parameter value that would move
/// `trainer.workdir` out of the study directory (`../../../../etc`): the
/// trial is `invalid`, with the parameter named. `hps-master init` refuses
/// such choices when it can know them; this catches the rest (a setting
/// file edited in the shared directory, say).
fn check_workdir_values(spec: &ExecSpec, vars: &BTreeMap<String, String>) -> Result<(), Outcome> {
    let names: Vec<&str> = vars
        .keys()
        .map(String::as_str)
        .filter(|k| !hps_common::exec::BUILTINS.contains(k))
        .collect();
    for name in spec.workdir_params(&names) {
        hps_common::exec::check_workdir_value(name, &vars[name]).map_err(|e| {
            done(
                TrialStatus::Invalid,
                BTreeMap::new(),
                Vec::new(),
                Some(format!("{}: {}", e.field, e.message)),
            )
        })?;
    }
    Ok(())
}

/// stderr goes to the log and a ring buffer of its last lines.
fn pump_stderr(
    err: std::process::ChildStderr,
    tail: Arc<Mutex<VecDeque<String>>>,
    mut log: Option<File>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if let Some(l) = log.as_mut() {
                crate::logln!(l, "{line}");
            }
            let mut t = tail.lock().unwrap();
            if t.len() == STDERR_TAIL {
                t.pop_front();
            }
            t.push_back(line);
        }
    })
}

/// A started command.
struct Running {
    child: Child,
    /// The last lines of its stderr.
    tail: Arc<Mutex<VecDeque<String>>>,
    pump: Option<JoinHandle<()>>,
    started: Instant,
}

/// How a command ended.
struct Ended {
    /// `None`: its status could not be read.
    status: Option<ExitStatus>,
    /// Set when we killed it.
    stopped_by: Option<StoppedBy>,
    /// The pruner's reason.
    pruned: Option<String>,
}

impl Running {
    /// Wait for the command to end, watching its reports, the preemption
    /// flag and the timeout; kill its process group when one of them says
    /// so.
    fn supervise(
        &mut self,
        job: &Job,
        timeout_s: Option<f64>,
        should_stop: &dyn Fn() -> bool,
        monitor: &mut Monitor,
    ) -> Ended {
        let timeout = timeout_s.map(Duration::from_secs_f64);
        let mut stopped_by: Option<StoppedBy> = None;
        let mut pruned: Option<String> = None;
        let mut watched = ReportWatch::default();
        let mut last_monitor = Instant::now();
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) => {}
                Err(_) => break None,
            }
            if last_monitor.elapsed() >= MONITOR_EVERY {
                last_monitor = Instant::now();
                let changed = watched.refresh(&job.report_file);
                pruned = monitor(&watched.reports, changed);
            }
            if should_stop() {
                stopped_by = Some(StoppedBy::Preemption);
            } else if pruned.is_some() {
                stopped_by = Some(StoppedBy::Pruner);
            } else if timeout.is_some_and(|t| self.started.elapsed() >= t) {
                stopped_by = Some(StoppedBy::Timeout);
            }
            if stopped_by.is_some() {
                kill_group(self.child.id(), &mut self.child);
                break self.child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Ended {
            status,
            stopped_by,
            pruned,
        }
    }
}

/// `learning-rate` → `LEARNING_RATE`.
fn kill_group(pid: u32, child: &mut std::process::Child) {
    let pgid = pid as libc::pid_t;
    // SAFETY: signalling the process group we created for the child.
    unsafe { libc::kill(-pgid, libc::SIGTERM) };
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: as above; whatever is left of the group.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
}

/// Called with the complete reports so far and whether they changed;
/// `Some(reason)` stops the trial as pruned.
pub type Monitor<'a> = dyn FnMut(&[Report], bool) -> Option<String> + 'a;

/// How often a running command's report file is looked at.
pub const MONITOR_EVERY: Duration = Duration::from_millis(200);

/// The complete lines of a report file that is still being appended to.
#[derive(Default)]
struct ReportWatch {
    len: u64,
    reports: Vec<Report>,
}

impl ReportWatch {
    /// Re-read the file if its size changed; true when reports changed.
    fn refresh(&mut self, path: &Path) -> bool {
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if len == self.len {
            return false;
        }
        self.len = len;
        let Ok(text) = std::fs::read_to_string(path) else {
            return false;
        };
        // A line still being written (no newline yet) waits for the next look.
        let complete = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        let reports: Vec<_> = complete
            .lines()
            .filter_map(|l| match serde_json::from_str::<Value>(l) {
                Ok(Value::Object(m)) => Some(m),
                _ => None,
            })
            .collect();
        let changed = reports != self.reports;
        self.reports = reports;
        changed
    }
}

fn read_reports(path: &Path) -> Vec<Report> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| match serde_json::from_str::<Value>(l) {
            Ok(Value::Object(m)) => Some(m),
            _ => {
                tracing::warn!(file = %path.display(), "skipping a report line that is not a JSON object: {l}");
                None
            }
        })
        .collect()
}

/// The result file: a JSON object of numbers (`{"val_error": 0.1}`), or
/// `{"metrics": {...}, "status": "complete"|"diverged"|"invalid"|"failed"}`.
fn read_result(path: &Path) -> Result<(TrialStatus, BTreeMap<String, f64>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "the command exited 0 but wrote no result file `{}` ({e})",
            path.display()
        )
    })?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| format!("result file `{}`: {e}", path.display()))?;
    let Value::Object(obj) = v else {
        return Err(format!(
            "result file `{}`: must be a JSON object of metrics",
            path.display()
        ));
    };
    let status = match obj.get("status").and_then(Value::as_str) {
        None | Some("complete") => TrialStatus::Complete,
        Some("diverged") => TrialStatus::Diverged,
        Some("invalid") => TrialStatus::Invalid,
        Some("failed") => TrialStatus::Failed,
        Some(other) => {
            return Err(format!(
                "result file `{}`: field `status`: unknown status `{other}`",
                path.display()
            ))
        }
    };
    let source = match obj.get("metrics") {
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(format!(
                "result file `{}`: field `metrics` must be an object",
                path.display()
            ))
        }
        None => obj,
    };
    let metrics = source
        .iter()
        .filter_map(|(k, v)| v.as_f64().filter(|x| x.is_finite()).map(|x| (k.clone(), x)))
        .collect();
    Ok((status, metrics))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(params: &[(&str, Value)]) -> TrialSetting {
        let params = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        TrialSetting {
            seed: 7,
            ..TrialSetting::new(1, params, 3, "grid")
        }
    }

    fn spec(argv: &[&str]) -> ExecSpec {
        ExecSpec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            timeout_s: None,
            env: Default::default(),
            workdir: None,
        }
    }

    fn run_sh(script: &str, s: &TrialSetting, timeout: Option<f64>) -> (Outcome, String) {
        let tmp = tempfile::tempdir().unwrap();
        let mut sp = spec(&["/bin/sh", "-c", script]);
        sp.timeout_s = timeout;
        let log_path = tmp.path().join("log");
        let mut log = File::create(&log_path).unwrap();
        let out = run(
            &sp,
            s,
            tmp.path(),
            &tmp.path().join("trial"),
            &mut log,
            &|| false,
            &mut |_, _| None,
        );
        (out, std::fs::read_to_string(log_path).unwrap())
    }

    #[test]
    fn a_workdir_value_that_escapes_the_study_directory_is_refused_before_the_script_runs() {
        let tmp = tempfile::tempdir().unwrap();
        let study = tmp.path().join("a/b/c/study");
        std::fs::create_dir_all(&study).unwrap();
        let marker = tmp.path().join("ran");
        let mut sp = spec(&["/bin/sh", "-c", "pwd > \"$0\"", marker.to_str().unwrap()]);
        sp.workdir = Some("{dir}".into());
        let mut log = File::create(tmp.path().join("log")).unwrap();
        let mut go = |dir: &str| {
            let s = setting(&[("dir", Value::from(dir))]);
            run(
                &sp,
                &s,
                &study,
                &study.join("t"),
                &mut log,
                &|| false,
                &mut |_, _| None,
            )
        };
        let Outcome::Finished(f) = go("../../../../etc") else {
            panic!("not finished")
        };
        assert_eq!(f.status, TrialStatus::Invalid);
        let e = f.error.unwrap();
        assert!(e.contains("`dir`") && e.contains("trainer.workdir"), "{e}");
        assert!(!marker.exists(), "the script must not have run");
        std::fs::create_dir(study.join("sub")).unwrap();
        let Outcome::Finished(f) = go("sub") else {
            panic!("not finished")
        };
        assert_eq!(f.status, TrialStatus::Failed, "ran, wrote no result");
        let pwd = std::fs::read_to_string(&marker).unwrap();
        assert!(pwd.trim_end().ends_with("study/sub"), "{pwd}");
    }

    #[test]
    fn params_reports_and_result_flow_through_files_and_env() {
        let s = setting(&[("lr", Value::from(0.5)), ("opt", Value::from("sgd"))]);
        let script = r#"echo "lr=$HPS_PARAM_LR opt=$HPS_PARAM_OPT seed=$HPS_SEED"
            grep -q '"lr": 0.5' "$HPS_PARAMS_FILE" || exit 3
            echo '{{"epoch": 1, "val_loss": 2.0}}' >> "$HPS_REPORT_FILE"
            echo '{{"epoch": 2, "val_loss": 1.0}}' >> {report_file}
            echo '{{"val_loss": 1.0, "val_error": 0.25, "note": "x"}}' > "$HPS_RESULT_FILE""#;
        let (out, log) = run_sh(script, &s, None);
        let Outcome::Finished(TrialEnd {
            status,
            metrics,
            reports,
            error,
            epochs_completed,
            ..
        }) = out
        else {
            panic!()
        };
        assert_eq!(epochs_completed, 2);
        assert_eq!(status, TrialStatus::Complete, "{error:?}");
        assert_eq!(metrics["val_error"], 0.25);
        assert!(!metrics.contains_key("note"));
        assert_eq!(reports.len(), 2);
        assert!(log.contains("lr=0.5 opt=sgd seed=7"), "{log}");
    }

    #[test]
    fn nonzero_exit_fails_with_the_stderr_tail() {
        let (out, _) = run_sh(
            "echo boom-one >&2; echo boom-two >&2; exit 4",
            &setting(&[]),
            None,
        );
        let Outcome::Finished(TrialEnd { status, error, .. }) = out else {
            panic!()
        };
        assert_eq!(status, TrialStatus::Failed);
        let e = error.unwrap();
        assert!(
            e.contains("boom-two") && e.contains("exit status: 4"),
            "{e}"
        );
    }

    #[test]
    fn missing_result_fails() {
        let (out, _) = run_sh("true", &setting(&[]), None);
        let Outcome::Finished(TrialEnd { status, error, .. }) = out else {
            panic!()
        };
        assert_eq!(status, TrialStatus::Failed);
        assert!(error.unwrap().contains("no result file"));
    }

    #[test]
    fn timeout_kills_the_whole_process_group() {
        let t = Instant::now();
        let (out, _) = run_sh("sleep 30 & sleep 30", &setting(&[]), Some(0.3));
        let Outcome::Finished(TrialEnd { status, error, .. }) = out else {
            panic!()
        };
        assert_eq!(status, TrialStatus::Failed);
        assert!(error.unwrap().contains("timed out"));
        assert!(t.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_value_cannot_inject_a_command() {
        let tmp = tempfile::tempdir().unwrap();
        let pwned = tmp.path().join("pwned");
        let payload = format!("\"; touch {} ; echo \"", pwned.display());
        let s = setting(&[("x", Value::from(payload.clone()))]);
        let sp = spec(&["/bin/echo", "{x}", "$(touch {trial_dir}/also-pwned)"]);
        let log_path = tmp.path().join("log");
        let mut log = File::create(&log_path).unwrap();
        let _ = run(
            &sp,
            &s,
            tmp.path(),
            &tmp.path().join("trial"),
            &mut log,
            &|| false,
            &mut |_, _| None,
        );
        assert!(!pwned.exists(), "the payload ran a command");
        assert!(!tmp.path().join("trial/also-pwned").exists());
        let printed = std::fs::read_to_string(log_path).unwrap();
        assert!(
            printed.contains(&payload),
            "echo printed the literal value: {printed}"
        );
    }

    #[test]
    fn preemption_kills_and_reports_interrupted() {
        let tmp = tempfile::tempdir().unwrap();
        let sp = spec(&["/bin/sh", "-c", "sleep 30"]);
        let mut log = File::create(tmp.path().join("log")).unwrap();
        let t = Instant::now();
        let out = run(
            &sp,
            &setting(&[]),
            tmp.path(),
            &tmp.path().join("trial"),
            &mut log,
            &|| t.elapsed() > Duration::from_millis(200),
            &mut |_, _| None,
        );
        assert_eq!(out, Outcome::Interrupted);
        assert!(t.elapsed() < Duration::from_secs(10));
    }
}
