//! Issue 17 §3, "a wrong setup burns the whole budget", on the real
//! binaries: a trial without the objective metric is an error, the master
//! stops after consecutive failures and says why with a non-zero exit
//! (passed on by deploy/local.sh), and `init` checks the exec script's
//! path relative to the study file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hps_common::TrialStatus;
use hps_tests::{
    arg, bin, hps_master, init_study, read_results, run_cmd, spawn_master, spawn_worker,
    stderr_err, stdout_ok,
};

/// An exec study of `trials` trials (async, queue 1) running `argv`.
fn exec_study(metric: &str, trials: u32, argv: &[&str]) -> String {
    serde_json::json!({
        "format_version": 1, "name": "failfast",
        "space": {"lr": {"type": "float", "low": 0.001, "high": 0.1, "log": true}},
        "objective": {"metric": metric, "direction": "maximize"},
        "sampler": {"kind": "random", "seed": 1},
        "budget": {"trials": trials, "epochs": 2},
        "mode": {"kind": "async", "queue": 1},
        "trainer": {"kind": "exec", "argv": argv, "timeout_s": 60}
    })
    .to_string()
}

/// Run the master and one worker until the master exits; returns its exit
/// status and log. The worker, which would wait for trials, is then
/// stopped as local.sh stops it (SIGTERM: a trial it runs goes back to
/// the queue).
fn run_until_the_master_exits(study: &Path, logs: &Path) -> (std::process::ExitStatus, String) {
    let mut m = spawn_master(study, &logs.join("m.log"), &["--rescan", "0.2"]);
    let mut w = spawn_worker(study, "w0", &logs.join("w0.log"), &["--rescan", "0.2"]);
    let st = m.wait(Duration::from_secs(120));
    w.signal(libc::SIGTERM);
    w.wait_ok(Duration::from_secs(60));
    (st, m.log_text())
}

/// The script reports `val_error` while the objective is `val_acc`: every
/// trial used to end `complete` with `objective: null` and the master
/// exited 0 with "study finished; no trial completed". Now each such trial
/// is `failed` with an error naming the metric and the keys it reported,
/// and the master stops after three of them.
#[test]
fn a_result_without_the_objective_metric_is_an_error_naming_the_metric_and_the_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let study = tmp.path().join("study");
    // `{{`: a literal brace in an argv template.
    let script = r#"echo '{{"epoch": 1, "val_error": 0.3}}' >> "$HPS_REPORT_FILE"
        echo '{{"val_error": 0.25, "val_loss": 0.7}}' > "$HPS_RESULT_FILE""#;
    init_study(
        &study,
        &exec_study("val_acc", 10, &["/bin/sh", "-c", script]),
    );
    let (st, log) = run_until_the_master_exits(&study, tmp.path());
    assert!(!st.success(), "the master must fail:\n{log}");
    assert!(log.contains("3 consecutive failed trials"), "{log}");
    let results = read_results(&study);
    assert!(
        results.len() < 10,
        "the budget of 10 was spent: {}",
        results.len()
    );
    for r in &results {
        assert_eq!(r.status, TrialStatus::Failed, "{}", r.trial_id);
        assert_eq!(r.objective, None);
        let e = r.error.as_deref().unwrap_or_default();
        for part in [
            "`val_acc`",
            "reported: val_error, val_loss",
            "epoch, val_error",
        ] {
            assert!(e.contains(part), "`{part}` missing from: {e}");
        }
    }
}

/// A script that crashes: every trial of the budget used to end `failed`
/// and the master exited 0. Now the master stops proposing after three
/// failures in a row, withdraws the pending trials, shows the first
/// traceback's tail and exits non-zero; once the script is fixed, the same
/// command continues the study (the old failures do not count again).
#[test]
fn a_crashing_script_stops_the_master_after_three_failures_with_the_first_error() {
    if !hps_tests::python3_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("train.py");
    std::fs::write(
        &script,
        "import os\nraise ValueError('no data in ' + os.environ['HPS_TRIAL_ID'])\n",
    )
    .unwrap();
    let study = tmp.path().join("study");
    init_study(&study, &exec_study("acc", 10, &["python3", arg(&script)]));
    let (st, log) = run_until_the_master_exits(&study, tmp.path());
    assert!(!st.success(), "the master must fail:\n{log}");
    for part in [
        "stopped after 3 consecutive failed trials (t000000, t000001, t000002)",
        "The first, t000000, failed with:",
        "ValueError: no data in t000000",
        "--max-consecutive-failures",
    ] {
        assert!(log.contains(part), "`{part}` missing from:\n{log}");
    }
    assert!(read_results(&study).len() < 10, "the budget was spent");
    assert!(log.contains("withdrew the pending trials"), "{log}");
    assert!(!study.join("master.json").exists(), "the lease is released");

    // Fixed: the same command goes on to the end.
    std::fs::write(
        &script,
        "import json, os\njson.dump({'acc': 0.5}, open(os.environ['HPS_RESULT_FILE'], 'w'))\n",
    )
    .unwrap();
    let mut m = spawn_master(&study, &tmp.path().join("m2.log"), &["--rescan", "0.2"]);
    let _w = spawn_worker(
        &study,
        "w1",
        &tmp.path().join("w1.log"),
        &["--rescan", "0.2"],
    );
    m.wait_ok(Duration::from_secs(120));
    let results = read_results(&study);
    assert_eq!(results.len(), 10);
    let failed = results
        .iter()
        .filter(|r| r.status == TrialStatus::Failed)
        .count();
    assert!((3..10).contains(&failed), "{failed} failed");
}

/// `deploy/local.sh` passes the master's failure on as its own exit
/// status (it used to exit 0 after a study whose every trial failed).
#[test]
fn local_sh_exits_with_the_masters_status_when_it_gives_up() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("crash.json");
    let argv = ["/bin/sh", "-c", "echo 'Traceback: boom' >&2; exit 3"];
    std::fs::write(&file, exec_study("acc", 10, &argv)).unwrap();
    let local_sh = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local.sh");
    let bin_dir = bin("hps-master").parent().unwrap().to_path_buf();
    let study = tmp.path().join("study");
    let out = run_cmd(
        Command::new("bash")
            .arg(&local_sh)
            .args([
                arg(&study),
                "--workers",
                "1",
                "--cpu",
                "--study",
                arg(&file),
            ])
            .args(["--", "--rescan", "0.2"])
            .env("HPS_BIN_DIR", &bin_dir),
    );
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("3 consecutive failed trials"), "{text}");
    assert!(text.contains("Traceback: boom"), "{text}");
}

/// The example study file, copied to the user's own folder without its
/// script, used to be accepted and then failed every trial with "can't
/// open file '…/../../deploy/example…'". `init` now looks for a relative
/// script path in the study file's directory, refuses a script it cannot
/// find there (nor where the command runs), and records a found one
/// absolute, so the study directory can be created anywhere.
#[test]
fn init_checks_the_exec_script_path_relative_to_the_study_file() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let example = std::fs::read_to_string(repo.join("deploy/examples/exec-logreg.json")).unwrap();
    let mine = tmp.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    let argv1 = |study: &Path| -> PathBuf {
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(study.join("study.json")).unwrap())
                .unwrap();
        PathBuf::from(s["trainer"]["argv"][1].as_str().unwrap())
    };

    // The old example (a path relative to the study directory), copied.
    let old = example.replace(
        "\"train_logreg.py\"",
        "\"../../deploy/examples/train_logreg.py\"",
    );
    assert_ne!(old, example);
    let old_file = mine.join("old.json");
    std::fs::write(&old_file, old).unwrap();
    let study = tmp.path().join("runs/a");
    let e = stderr_err(hps_master(&[
        "init",
        arg(&study),
        "--study",
        arg(&old_file),
    ]));
    for part in [
        "old.json",
        "trainer.argv[1]",
        "../../deploy/examples/train_logreg.py",
        "study file's directory",
    ] {
        assert!(e.contains(part), "`{part}` missing from: {e}");
    }
    assert!(!study.exists(), "a refused init leaves nothing behind");

    // The new example copied without its script: refused; with it: found.
    let new_file = mine.join("exec-logreg.json");
    std::fs::write(&new_file, &example).unwrap();
    let e = stderr_err(hps_master(&[
        "init",
        arg(&study),
        "--study",
        arg(&new_file),
    ]));
    assert!(e.contains("`train_logreg.py` is not found"), "{e}");
    std::fs::copy(
        repo.join("deploy/examples/train_logreg.py"),
        mine.join("train_logreg.py"),
    )
    .unwrap();
    stdout_ok(hps_master(&[
        "init",
        arg(&study),
        "--study",
        arg(&new_file),
    ]));
    assert_eq!(argv1(&study), mine.join("train_logreg.py"));

    // The repository's example, from anywhere: its own script, absolute.
    let other = tmp.path().join("elsewhere/deep/b");
    let file = repo.join("deploy/examples/exec-logreg.json");
    stdout_ok(hps_master(&["init", arg(&other), "--study", arg(&file)]));
    let recorded = argv1(&other);
    assert!(recorded.is_absolute(), "{}", recorded.display());
    assert_eq!(
        recorded.canonicalize().unwrap(),
        repo.join("deploy/examples/train_logreg.py")
            .canonicalize()
            .unwrap()
    );
}
