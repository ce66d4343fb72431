//! End-to-end tests: the real `hps-master` and `hps-worker` binaries on a
//! temp study directory.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use hps_common::TrialStatus;
use hps_tests::{bin, json_stems, run, runs_per_trial, Proc};

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

use hps_tests::read_result;

/// Scenario 6: one master, two workers, a sync study of cnn trials on small
/// generated IDX data.
#[test]
fn cnn_sync_study_with_two_workers() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    hps_worker::cnn::write_idx_dir(&data, 300, 100, 7).unwrap();
    let study = tmp.path().join("study");
    let study_file = tmp.path().join("study.json");
    write(
        &study_file,
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
    let (m, w) = (bin("hps-master"), bin("hps-worker"));
    hps_tests::init_from_file(&study, &study_file);

    let s = study.to_str().unwrap();
    let d = data.to_str().unwrap();
    let mut master = Proc::spawn(
        "master",
        &m,
        &["run", s, "--rescan", "0.5"],
        &tmp.path().join("master.log"),
    );
    let mut workers: Vec<Proc> = (0..2)
        .map(|i| {
            let id = format!("w{i}");
            Proc::spawn(
                &id,
                &w,
                &[
                    s,
                    "--id",
                    &id,
                    "--data",
                    d,
                    "--threads",
                    "1",
                    "--rescan",
                    "0.5",
                ],
                &tmp.path().join(format!("{id}.log")),
            )
        })
        .collect();
    let st = master.wait(Duration::from_secs(600));
    assert!(st.success(), "master failed:\n{}", master.log_text());
    for w in &mut workers {
        let st = w.wait(Duration::from_secs(60));
        assert!(st.success(), "{} failed:\n{}", w.name, w.log_text());
    }

    let settings = json_stems(&study.join("settings"));
    let results = json_stems(&study.join("results"));
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
    let master_log = master.log_text();
    assert!(master_log.contains("study finished"), "{master_log}");

    let out = run(&m, &["export", s, "--format", "csv"]);
    assert!(out.status.success());
    let csv = String::from_utf8(out.stdout).unwrap();
    assert_eq!(csv.lines().count(), 7, "header + one row per trial:\n{csv}");
    for id in &results {
        assert!(csv.contains(id.as_str()), "{id} missing from export");
    }
    let out = run(&m, &["export", s, "--format", "jsonl"]);
    let jsonl = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        jsonl
            .lines()
            .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
            .count(),
        6
    );
    let out = run(&m, &["best", s, "-n", "3"]);
    assert!(out.status.success());
    let out = run(&m, &["status", s]);
    assert!(out.status.success());
}

/// Stress: 8 workers and 1000 function trials in async mode. Every trial is
/// evaluated exactly once: no double claims, none lost.
#[test]
fn stress_1000_trials_8_workers_async() {
    let tmp = tempfile::tempdir().unwrap();
    let study = tmp.path().join("study");
    let study_file = tmp.path().join("study.json");
    write(
        &study_file,
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
    let (m, w) = (bin("hps-master"), bin("hps-worker"));
    hps_tests::init_from_file(&study, &study_file);
    let s = study.to_str().unwrap();
    let mut master = Proc::spawn(
        "master",
        &m,
        &["run", s, "--rescan", "0.2"],
        &tmp.path().join("master.log"),
    );
    let mut workers: Vec<Proc> = (0..8)
        .map(|i| {
            let id = format!("w{i}");
            Proc::spawn(
                &id,
                &w,
                &[s, "--id", &id, "--rescan", "0.2"],
                &tmp.path().join(format!("{id}.log")),
            )
        })
        .collect();
    let st = master.wait(Duration::from_secs(600));
    assert!(st.success(), "master failed:\n{}", master.log_text());
    for w in &mut workers {
        assert!(
            w.wait(Duration::from_secs(60)).success(),
            "{} failed:\n{}",
            w.name,
            w.log_text()
        );
    }
    let settings = json_stems(&study.join("settings"));
    let results = json_stems(&study.join("results"));
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
    let tmp = tempfile::tempdir().unwrap();
    let study = tmp.path().join("study");
    let (m, w) = (bin("hps-master"), bin("hps-worker"));
    let study_file = tmp.path().join("study.json");
    write(
        &study_file,
        r#"{"format_version":1,"name":"resume",
            "space":{"x0":{"type":"float","low":-5,"high":10,"grid":5},"x1":{"type":"categorical","choices":[0,5,10,15]}},
            "objective":{"metric":"value","direction":"minimize"},
            "sampler":{"kind":"grid"},"mode":{"kind":"sync","batch":4},
            "trainer":{"kind":"function","name":"branin"}}"#,
    );
    assert!(run(
        &m,
        &[
            "init",
            study.to_str().unwrap(),
            "--study",
            study_file.to_str().unwrap()
        ]
    )
    .status
    .success());
    let s = study.to_str().unwrap();
    // First master: interrupt it (SIGTERM) after the first batch is out.
    let mut master = Proc::spawn(
        "master",
        &m,
        &["run", s, "--rescan", "0.2"],
        &tmp.path().join("m1.log"),
    );
    hps_tests::wait_until(Duration::from_secs(30), "first batch", || {
        json_stems(&study.join("settings")).len() >= 4
    });
    master.signal(libc::SIGTERM);
    assert!(
        master.wait(Duration::from_secs(30)).success(),
        "{}",
        master.log_text()
    );
    let first: Vec<String> = json_stems(&study.join("settings"));
    assert_eq!(
        first.len(),
        4,
        "sync mode stops at one batch without results"
    );
    let before: Vec<String> = first
        .iter()
        .map(|id| {
            std::fs::read_to_string(study.join("settings").join(format!("{id}.json"))).unwrap()
        })
        .collect();

    // Second master plus a worker finish the study.
    let mut master = Proc::spawn(
        "master",
        &m,
        &["run", s, "--rescan", "0.2", "--lease-interval", "0.2"],
        &tmp.path().join("m2.log"),
    );
    let mut worker = Proc::spawn(
        "w0",
        &w,
        &[s, "--id", "w0", "--rescan", "0.2"],
        &tmp.path().join("w0.log"),
    );
    assert!(
        master.wait(Duration::from_secs(120)).success(),
        "{}",
        master.log_text()
    );
    assert!(worker.wait(Duration::from_secs(60)).success());
    let all = json_stems(&study.join("settings"));
    assert_eq!(all.len(), 20, "the full 5x4 grid");
    assert_eq!(json_stems(&study.join("results")), all);
    for (id, text) in first.iter().zip(before) {
        let now =
            std::fs::read_to_string(study.join("settings").join(format!("{id}.json"))).unwrap();
        assert_eq!(now, text, "{id}: a recorded proposal was changed on resume");
    }
    let points: BTreeSet<String> = all
        .iter()
        .map(|id| serde_json::to_string(&read_result(&study, id).params).unwrap())
        .collect();
    assert_eq!(points.len(), 20, "no grid point repeated or skipped");
    // A third run on the finished study is a no-op that says so.
    let out = run(&m, &["run", s]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("study finished"));
}

/// The exec trainer with the example script (deploy/examples/train_logreg.py)
/// on generated IDX data: per-epoch reports and final metrics come back in
/// the result; a hyperparameter holding shell syntax stays an argument.
#[test]
fn exec_trainer_runs_the_example_script() {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: python3 is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    hps_worker::cnn::write_idx_dir(&data, 150, 20, 3).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/train_logreg.py");
    let pwned = tmp.path().join("pwned");
    let study_file = tmp.path().join("study.json");
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
    write(&study_file, &study.to_string());
    let (m, w) = (bin("hps-master"), bin("hps-worker"));
    let s = tmp.path().join("study");
    hps_tests::init_from_file(&s, &study_file);
    let sd = s.to_str().unwrap();
    let mut master = Proc::spawn(
        "master",
        &m,
        &["run", sd, "--rescan", "0.2"],
        &tmp.path().join("m.log"),
    );
    let mut worker = Proc::spawn(
        "w0",
        &w,
        &[sd, "--id", "w0", "--rescan", "0.2"],
        &tmp.path().join("w.log"),
    );
    assert!(
        master.wait(Duration::from_secs(180)).success(),
        "{}",
        master.log_text()
    );
    assert!(worker.wait(Duration::from_secs(30)).success());
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
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("study");
    hps_tests::init_study(
        &s,
        r#"{"format_version": 1, "name": "slots",
            "space": {"x0": {"type": "float", "low": -5, "high": 10},
                      "x1": {"type": "float", "low": 0, "high": 15}},
            "objective": {"metric": "value", "direction": "minimize"},
            "sampler": {"kind": "random", "seed": 3},
            "budget": {"trials": 9},
            "mode": {"kind": "async", "queue": 3},
            "trainer": {"kind": "function", "name": "branin", "sleep_s": 0.5}}"#,
    );
    hps_tests::run_study(
        &s,
        tmp.path(),
        "0.2",
        &[("gpu0", &["--slots", "3"])],
        Duration::from_secs(120),
    );
    let results = json_stems(&s.join("results"));
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
