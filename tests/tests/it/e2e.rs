//! End-to-end tests: the real `hps-master` and `hps-worker` binaries on a
//! temp study directory.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use hps_common::TrialStatus;
use hps_tests::{
    arg, hps_master, idx_data, init_study, json_stems, read_result, run_one_worker, run_study,
    runs_per_trial, spawn_master, spawn_worker, stdout_ok, temp_study, wait_until, worker_ids,
    Cluster,
};
use hps_tests::{trial_file, trial_ids};

/// Scenario 6: one master, two workers, a sync study of cnn trials on small
/// generated IDX data.
#[test]
fn cnn_sync_study_with_two_workers() {
    let (tmp, study) = temp_study(
        r#"{
          "format_version": 1,
          "name": "e2e-cnn",
          "space": {
            "lr": {"type": "float", "low": 0.01, "high": 0.2, "log": true},
            "momentum": {"type": "categorical", "choices": [0.0, 0.9]},
            "nf": {"type": "int", "low": 2, "high": 4},
            "batch_size": {"type": "fixed", "value": 32}
          },
          "objective": {"metric": "val_error", "direction": "minimize"},
          "sampler": {"kind": "random", "seed": 11},
          "budget": {"trials": 6, "epochs": 2},
          "mode": {"kind": "sync", "batch": 2},
          "trainer": {"kind": "cnn", "defaults": {"train_size": 200, "val_size": 100, "test_size": 100}}
        }"#,
    );
    let data = idx_data(tmp.path(), 300, 100, 7);
    let cnn: &[&str] = &["--data", arg(&data), "--threads", "1"];
    let master_log = run_study(
        &study,
        tmp.path(),
        "0.5",
        &[("w0", cnn), ("w1", cnn)],
        Duration::from_secs(600),
    );

    let settings = trial_ids(&study, "settings");
    let results = trial_ids(&study, "results");
    assert_eq!(settings.len(), 6);
    assert_eq!(settings, results, "every trial id has exactly one result");
    assert!(json_stems(&study.join("pending")).is_empty());
    assert!(json_stems(&study.join("running")).is_empty());
    assert!(
        runs_per_trial(&study).values().all(|&n| n == 1),
        "each trial ran once: {:?}",
        runs_per_trial(&study)
    );
    let mut workers_used = BTreeSet::new();
    for id in &results {
        let r = read_result(&study, id);
        assert_eq!(&r.trial_id, id);
        assert_eq!(r.status, TrialStatus::Complete, "{id}: {:?}", r.error);
        assert_eq!(r.curve.len(), 2, "one stat line per epoch");
        assert!(r.objective.is_some() && r.metrics.contains_key("test_error"));
        workers_used.insert(r.worker.clone());
    }
    assert_eq!(
        workers_used.len(),
        2,
        "both workers trained: {workers_used:?}"
    );

    // Sync mode: batch b+1 is only published after every result of batch b.
    assert!(master_log.contains("study finished"), "{master_log}");

    let s = arg(&study);
    let csv = stdout_ok(hps_master(&["export", s, "--format", "csv"]));
    assert_eq!(csv.lines().count(), 7, "header + one row per trial:\n{csv}");
    for id in &results {
        assert!(csv.contains(id.as_str()), "{id} missing from export");
    }
    let jsonl = stdout_ok(hps_master(&["export", s, "--format", "jsonl"]));
    assert_eq!(
        jsonl
            .lines()
            .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
            .count(),
        6
    );
    stdout_ok(hps_master(&["best", s, "-n", "3"]));
    stdout_ok(hps_master(&["status", s]));
}

/// Stress: 8 workers and 1000 function trials in async mode. Every trial is
/// evaluated exactly once: no double claims, none lost.
#[test]
fn stress_1000_trials_8_workers_async() {
    let (tmp, study) = temp_study(
        r#"{
          "format_version": 1,
          "name": "stress",
          "space": {
            "x0": {"type": "float", "low": -5, "high": 5},
            "x1": {"type": "float", "low": -5, "high": 5},
            "x2": {"type": "float", "low": -5, "high": 5},
            "x3": {"type": "float", "low": -5, "high": 5}
          },
          "objective": {"metric": "value", "direction": "minimize"},
          "sampler": {"kind": "random", "seed": 5},
          "budget": {"trials": 1000},
          "mode": {"kind": "async", "queue": 16},
          "trainer": {"kind": "function", "name": "styblinski_tang"}
        }"#,
    );
    let ids = worker_ids(8);
    let workers: Vec<(&str, &[&str])> = ids.iter().map(|id| (id.as_str(), &[][..])).collect();
    run_study(
        &study,
        tmp.path(),
        "0.2",
        &workers,
        Duration::from_secs(600),
    );
    let settings = trial_ids(&study, "settings");
    let results = trial_ids(&study, "results");
    assert_eq!(settings.len(), 1000);
    assert_eq!(settings, results, "every trial has a result, none lost");
    let runs = runs_per_trial(&study);
    assert_eq!(runs.len(), 1000);
    let twice: Vec<_> = runs.iter().filter(|(_, &n)| n != 1).collect();
    assert!(
        twice.is_empty(),
        "trials evaluated more than once: {twice:?}"
    );
    let mut per_worker = std::collections::BTreeMap::new();
    for id in &results {
        let r = read_result(&study, id);
        assert_eq!(r.status, TrialStatus::Complete);
        *per_worker.entry(r.worker).or_insert(0) += 1;
    }
    assert!(per_worker.len() >= 2, "work was shared: {per_worker:?}");
    // The proposals are all distinct settings.
    let distinct: BTreeSet<String> = results
        .iter()
        .map(|id| serde_json::to_string(&read_result(&study, id).params).unwrap())
        .collect();
    assert_eq!(distinct.len(), 1000);
}

/// Running the master again on a finished or interrupted study continues
/// it without repeating or skipping a setting.
#[test]
fn rerunning_the_master_resumes_without_repeats() {
    let (tmp, study) = temp_study(
        r#"{"format_version":1,"name":"resume",
            "space":{"x0":{"type":"float","low":-5,"high":10,"grid":5},"x1":{"type":"categorical","choices":[0,5,10,15]}},
            "objective":{"metric":"value","direction":"minimize"},
            "sampler":{"kind":"grid"},"mode":{"kind":"sync","batch":4},
            "trainer":{"kind":"function","name":"branin"}}"#,
    );
    // First master: interrupt it (SIGTERM) after the first batch is out.
    let mut master = spawn_master(&study, &tmp.path().join("m1.log"), &["--rescan", "0.2"]);
    wait_until(Duration::from_secs(30), "first batch", || {
        trial_ids(&study, "settings").len() >= 4
    });
    master.signal(libc::SIGTERM);
    master.wait_ok(Duration::from_secs(30));
    let first: Vec<String> = trial_ids(&study, "settings");
    assert_eq!(
        first.len(),
        4,
        "sync mode stops at one batch without results"
    );
    let before: Vec<String> = first
        .iter()
        .map(|id| std::fs::read_to_string(trial_file(&study, "settings", id)).unwrap())
        .collect();

    // Second master plus a worker finish the study.
    Cluster {
        master: spawn_master(
            &study,
            &tmp.path().join("m2.log"),
            &["--rescan", "0.2", "--lease-interval", "0.2"],
        ),
        workers: vec![spawn_worker(
            &study,
            "w0",
            &tmp.path().join("w0.log"),
            &["--rescan", "0.2"],
        )],
    }
    .finish(Duration::from_secs(120));
    let all = trial_ids(&study, "settings");
    assert_eq!(all.len(), 20, "the full 5x4 grid");
    assert_eq!(trial_ids(&study, "results"), all);
    for (id, text) in first.iter().zip(before) {
        let now = std::fs::read_to_string(trial_file(&study, "settings", id)).unwrap();
        assert_eq!(now, text, "{id}: a recorded proposal was changed on resume");
    }
    let points: BTreeSet<String> = all
        .iter()
        .map(|id| serde_json::to_string(&read_result(&study, id).params).unwrap())
        .collect();
    assert_eq!(points.len(), 20, "no grid point repeated or skipped");
    // A third run on the finished study is a no-op that says so.
    let out = stdout_ok(hps_master(&["run", arg(&study)]));
    assert!(out.contains("study finished"), "{out}");
}

/// The exec trainer with the example script (deploy/examples/train_logreg.py)
/// on generated IDX data: per-epoch reports and final metrics come back in
/// the result; a hyperparameter holding shell syntax stays an argument.
#[test]
fn exec_trainer_runs_the_example_script() {
    if !hps_tests::python3_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = idx_data(tmp.path(), 150, 20, 3);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/train_logreg.py");
    let pwned = tmp.path().join("pwned");
    let study = serde_json::json!({
        "format_version": 1, "name": "exec",
        "space": {
            "lr": {"type": "categorical", "choices": [0.05, -1.0]},
            "tag": {"type": "fixed", "value": format!("\"; touch {}; echo \"", pwned.display())}
        },
        "objective": {"metric": "val_error", "direction": "minimize"},
        "sampler": {"kind": "grid"}, "budget": {"epochs": 2},
        "mode": {"kind": "async", "queue": 2},
        "trainer": {"kind": "exec", "timeout_s": 120,
            "argv": ["python3", script.to_str().unwrap(), "--data", data.to_str().unwrap(), "--train", "100", "--val", "50"],
            "env": {"HPS_EXAMPLE_TAG": "{tag}"}}
    });
    let s = tmp.path().join("study");
    init_study(&s, &study.to_string());
    run_one_worker(&s, tmp.path(), Duration::from_secs(180));
    let ok = read_result(&s, "t000000");
    assert_eq!(ok.status, TrialStatus::Complete, "{:?}", ok.error);
    assert_eq!(ok.reports.len(), 2, "one report per epoch");
    assert!(ok.objective.is_some() && ok.metrics.contains_key("val_loss"));
    let bad = read_result(&s, "t000001");
    assert_eq!(
        bad.status,
        TrialStatus::Invalid,
        "lr < 0: the script says invalid"
    );
    assert!(!pwned.exists(), "a parameter value ran a command");
}

/// `--slots 3`: one worker process runs three trials at once, each slot a
/// worker of its own to the protocol (`<id>-s<k>`), sharing one trainer.
#[test]
fn one_worker_process_with_three_slots() {
    let (tmp, s) = temp_study(
        r#"{"format_version": 1, "name": "slots",
            "space": {"x0": {"type": "float", "low": -5, "high": 10},
                      "x1": {"type": "float", "low": 0, "high": 15}},
            "objective": {"metric": "value", "direction": "minimize"},
            "sampler": {"kind": "random", "seed": 3},
            "budget": {"trials": 9},
            "mode": {"kind": "async", "queue": 3},
            "trainer": {"kind": "function", "name": "branin", "sleep_s": 0.5}}"#,
    );
    run_study(
        &s,
        tmp.path(),
        "0.2",
        &[("gpu0", &["--slots", "3"])],
        Duration::from_secs(120),
    );
    let results = trial_ids(&s, "results");
    assert_eq!(results.len(), 9);
    let slots: BTreeSet<String> = results
        .iter()
        .map(|id| read_result(&s, id).worker)
        .collect();
    assert!(
        slots.len() >= 2 && slots.iter().all(|w| w.starts_with("gpu0-s")),
        "trials ran on several slots: {slots:?}"
    );
    let beats = json_stems(&s.join("heartbeats"));
    assert_eq!(beats, vec!["gpu0-s0", "gpu0-s1", "gpu0-s2"]);
    assert!(runs_per_trial(&s).values().all(|&n| n == 1));
}
