//! Multi-fidelity end to end: the real binaries prune trials with ASHA
//! (exec trainer, stopping decisions) and with successive halving (cnn
//! trainer, pause at rungs and resume from checkpoints).

use std::path::{Path, PathBuf};
use std::time::Duration;

use hps_common::TrialStatus;
use hps_tests::{
    arg, cnn_args, hps_master, idx_data, init_study, json_stems, read_result, read_results,
    run_one_worker, run_study, stdout_ok,
};
use hps_tests::{trial_file, trial_ids};

/// Initialise `<tmp>/study` from `study` and run it on `<tmp>/data` with a
/// master and two 1-thread workers; returns the study and the master's log.
fn run_cnn_study(tmp: &Path, study: serde_json::Value) -> (PathBuf, String) {
    let s = tmp.join("study");
    init_study(&s, &study.to_string());
    let data = tmp.join("data");
    let cnn = cnn_args(&data);
    let log = run_study(
        &s,
        tmp,
        "0.3",
        &[("w0", &cnn), ("w1", &cnn)],
        Duration::from_secs(300),
    );
    (s, log)
}

/// An exec trainer reports a value per epoch; the second trial is worse
/// than the first at ASHA's first rung, so the master tells its worker to
/// stop, the worker kills the script, and the trial ends `pruned` with the
/// reports it made.
#[test]
fn exec_trial_is_pruned_by_asha() {
    if !hps_tests::python3_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("train.py");
    std::fs::write(
        &script,
        r#"
import json, os, time
p = json.load(open(os.environ["HPS_PARAMS_FILE"]))
x = float(p["params"]["x"])
epochs = int(os.environ["HPS_EPOCHS"])
for e in range(1, epochs + 1):
    time.sleep(0.3)
    with open(os.environ["HPS_REPORT_FILE"], "a") as f:
        f.write(json.dumps({"epoch": e, "val_error": x + 1.0 / e}) + "\n")
json.dump({"val_error": x + 1.0 / epochs}, open(os.environ["HPS_RESULT_FILE"], "w"))
"#,
    )
    .unwrap();
    let study = serde_json::json!({
        "format_version": 1, "name": "asha-exec",
        "space": {"x": {"type": "categorical", "choices": [0.1, 0.9, 0.05]}},
        "objective": {"metric": "val_error", "direction": "minimize"},
        "sampler": {"kind": "grid"},
        "budget": {"epochs": 9},
        "mode": {"kind": "async", "queue": 1},
        "pruner": {"kind": "asha", "min_epochs": 1, "eta": 3},
        "trainer": {"kind": "exec", "timeout_s": 120,
                    "argv": ["python3", script.to_str().unwrap()]}
    });
    let s = tmp.path().join("study");
    init_study(&s, &study.to_string());
    run_one_worker(&s, tmp.path(), Duration::from_secs(120));

    let first = read_result(&s, "t000000");
    assert_eq!(first.status, TrialStatus::Complete, "{:?}", first.error);
    assert_eq!(first.reports.len(), 9);

    let pruned = read_result(&s, "t000001");
    assert_eq!(
        pruned.status,
        TrialStatus::Pruned,
        "{:?}\n{}",
        pruned.error,
        std::fs::read_to_string(tmp.path().join("w0.log")).unwrap_or_default()
    );
    let why = pruned.error.clone().unwrap_or_default();
    assert!(why.contains("asha") && why.contains("epoch 1"), "{why}");
    assert!(
        !pruned.reports.is_empty() && pruned.reports.len() < 9,
        "the partial curve is kept and the script was stopped early: {} reports",
        pruned.reports.len()
    );
    assert!(pruned.objective.is_none());
    // Issue 17 §7 and §4: a pruned exec trial had `"metrics": {}` and no
    // best_epoch; it now has the values of its best report so far.
    let best_step = pruned
        .best_epoch
        .expect("best_epoch of a pruned exec trial");
    assert!(best_step as usize <= pruned.reports.len(), "{best_step}");
    assert!(
        pruned.metrics.contains_key("val_error"),
        "{:?}",
        pruned.metrics
    );
    assert!(
        !pruned.metrics.contains_key("epoch"),
        "{:?}",
        pruned.metrics
    );
    // A complete one: best_epoch is the step of its best report (the
    // script's val_error falls every epoch, so the last).
    assert_eq!(first.best_epoch, Some(9));

    let third = read_result(&s, "t000002");
    assert_eq!(
        third.status,
        TrialStatus::Complete,
        "better at every rung: {:?}",
        third.error
    );
    // Nothing left behind for finished trials.
    assert!(json_stems(&s.join("progress")).is_empty());
    assert!(json_stems(&s.join("decisions")).is_empty());

    let text = stdout_ok(hps_master(&["status", arg(&s)]));
    assert!(text.contains("pruned 1"), "{text}");

    // Issue 17 §6: routine pruning was logged as WARN, and the trial log
    // showed Rust's debug text ("objective Some(0.694)").
    let worker_log = std::fs::read_to_string(tmp.path().join("w0.log")).unwrap();
    let pruning: Vec<&str> = worker_log
        .lines()
        .filter(|l| l.contains("pruned by asha"))
        .collect();
    assert!(!pruning.is_empty(), "{worker_log}");
    assert!(pruning.iter().all(|l| !l.contains("WARN")), "{pruning:?}");
    let log = |id: &str| std::fs::read_to_string(trial_file(&s, "logs", id)).unwrap();
    assert!(
        log("t000001").contains("status pruned in"),
        "{}",
        log("t000001")
    );
    assert!(
        log("t000001").contains(" objective none"),
        "{}",
        log("t000001")
    );
    let done = log("t000000");
    assert!(done.contains(" objective 0.2111"), "{done}");
    assert!(!done.contains("Some("), "{done}");
}

/// Successive halving in sync mode: 4 settings to epoch 1, the best 2 to
/// epoch 2, the best one to epoch 4. Promoted trials resume from their
/// checkpoints, and the survivor's curve is bit-identical to training the
/// same setting straight through.
#[test]
fn successive_halving_promotes_from_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let data = idx_data(tmp.path(), 300, 60, 5);
    let study = serde_json::json!({
        "format_version": 1, "name": "sh-cnn",
        "space": {
            "lr": {"type": "float", "low": 0.005, "high": 0.3, "log": true},
            "nf": {"type": "fixed", "value": 3},
            "batch_size": {"type": "fixed", "value": 32}
        },
        "objective": {"metric": "val_error", "direction": "minimize"},
        "sampler": {"kind": "random", "seed": 4},
        "budget": {"trials": 4, "epochs": 4},
        "mode": {"kind": "sync", "batch": 4},
        "pruner": {"kind": "successive_halving", "min_epochs": 1, "eta": 2},
        "trainer": {"kind": "cnn", "defaults": {"train_size": 200, "val_size": 100, "test_size": 60}}
    });
    let (s, master_log) = run_cnn_study(tmp.path(), study);

    let results = read_results(&s);
    assert_eq!(results.len(), 4);
    let mut epochs: Vec<(TrialStatus, usize)> =
        results.iter().map(|r| (r.status, r.curve.len())).collect();
    epochs.sort();
    assert_eq!(
        epochs,
        vec![
            (TrialStatus::Complete, 4),
            (TrialStatus::Pruned, 1),
            (TrialStatus::Pruned, 1),
            (TrialStatus::Pruned, 2),
        ],
        "{master_log}"
    );
    for r in results.iter().filter(|r| r.status == TrialStatus::Pruned) {
        let why = r.error.as_deref().unwrap_or("");
        assert!(why.contains("successive_halving"), "{why}");
        assert!(r.metrics.contains_key("val_error"), "partial metrics kept");
    }
    assert!(json_stems(&s.join("paused")).is_empty());
    assert!(hps_tests::dir_names(&s.join("checkpoints")).is_empty());

    // The survivor paused twice and resumed from its checkpoint each time.
    let best = results
        .iter()
        .find(|r| r.status == TrialStatus::Complete)
        .unwrap();
    let log = std::fs::read_to_string(trial_file(&s, "logs", &best.trial_id)).unwrap();
    assert!(log.contains("# paused after epoch 1"), "{log}");
    assert!(log.contains("# paused after epoch 2"), "{log}");
    assert!(
        log.contains("# resuming from the checkpoint after epoch 2"),
        "{log}"
    );

    // Straight through, the same setting gives the same curve.
    let device = candle_core::Device::Cpu;
    let dataset = hps_worker::cnn::Dataset::load(&data, &device).unwrap();
    let defaults = hps_common::CnnDefaults {
        train_size: 200,
        val_size: 100,
        test_size: 60,
        ..Default::default()
    };
    let cfg = hps_worker::cnn::CnnConfig::from_params(&best.params, &defaults, 4, None, best.seed)
        .unwrap();
    use hps_worker::cnn::{train, EpochControl, Job};
    let job = Job::new(&cfg, &dataset, &device);
    let straight = train(&job, &mut |_| EpochControl::Continue).unwrap();
    let losses = |c: &[hps_common::EpochStat]| -> Vec<(f64, f64)> {
        c.iter().map(|e| (e.train_loss, e.val_loss)).collect()
    };
    assert_eq!(losses(&best.curve), losses(&straight.curve));
    assert_eq!(best.metrics["test_error"], straight.metrics["test_error"]);
}

/// Hyperband in sync mode: R = 4, eta = 2 gives brackets of 4 settings
/// (rungs 1, 2, 4), 3 (rungs 2, 4) and 3 (rung 4), run one after another
/// as batches 0, 1 and 2.
#[test]
fn hyperband_runs_its_brackets_as_batches() {
    let tmp = tempfile::tempdir().unwrap();
    idx_data(tmp.path(), 300, 60, 5);
    let study = serde_json::json!({
        "format_version": 1, "name": "hb-cnn",
        "space": {
            "lr": {"type": "float", "low": 0.005, "high": 0.3, "log": true},
            "nf": {"type": "fixed", "value": 2},
            "batch_size": {"type": "fixed", "value": 50}
        },
        "objective": {"metric": "val_error", "direction": "minimize"},
        "sampler": {"kind": "random", "seed": 8},
        "budget": {"trials": 10, "epochs": 4},
        "mode": {"kind": "sync"},
        "pruner": {"kind": "hyperband", "min_epochs": 1, "eta": 2},
        "trainer": {"kind": "cnn", "defaults": {"train_size": 200, "val_size": 100, "test_size": 60}}
    });
    let (s, master_log) = run_cnn_study(tmp.path(), study);
    let mut by_batch: std::collections::BTreeMap<u64, Vec<(TrialStatus, usize)>> =
        Default::default();
    for id in trial_ids(&s, "settings") {
        let setting: hps_common::TrialSetting = serde_json::from_str(
            &std::fs::read_to_string(trial_file(&s, "settings", &id)).unwrap(),
        )
        .unwrap();
        let r = read_result(&s, &id);
        by_batch
            .entry(setting.batch.unwrap())
            .or_default()
            .push((r.status, r.curve.len()));
    }
    for v in by_batch.values_mut() {
        v.sort();
    }
    use TrialStatus::{Complete as C, Pruned as P};
    let want: std::collections::BTreeMap<u64, Vec<(TrialStatus, usize)>> = [
        (0, vec![(C, 4), (P, 1), (P, 1), (P, 2)]),
        (1, vec![(C, 4), (P, 2), (P, 2)]),
        (2, vec![(C, 4), (C, 4), (C, 4)]),
    ]
    .into_iter()
    .collect();
    assert_eq!(by_batch, want, "{master_log}");
}
