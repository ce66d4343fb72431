//! Transfer learning (seed 003): a study whose trials start from the kept
//! weights of another study's best trial, fine-tuned or with the conv
//! layers frozen; and the messages when the source is not there.

use std::path::Path;
use std::time::Duration;

use hps_common::TrialStatus;
use hps_tests::trial_file;
use hps_tests::{
    arg, assert_contains_all, cnn_args, hps_master, idx_data, init_study, read_result,
    read_results, run_study, stderr_err,
};

/// A grid study of tiny cnn trials with `space` and `trainer_extra`.
fn study_json(name: &str, space: &str, trials: u32, trainer_extra: &str) -> String {
    format!(
        r#"{{"format_version": 1, "name": "{name}",
          "space": {space},
          "objective": {{"metric": "val_error", "direction": "minimize"}},
          "sampler": {{"kind": "grid"}},
          "budget": {{"trials": {trials}, "epochs": 2}},
          "trainer": {{"kind": "cnn",
                      "defaults": {{"nf": 3, "batch_size": 32, "dropout": 0.0,
                                   "train_size": 200, "val_size": 100, "test_size": 100}}
                      {trainer_extra}}}}}"#
    )
}

fn run(study: &Path, logs: &Path, data: &Path) {
    std::fs::create_dir_all(logs).unwrap();
    run_study(
        study,
        logs,
        "0.2",
        &[("w0", &cnn_args(data)[..])],
        Duration::from_secs(600),
    );
}

#[test]
fn a_study_starts_from_the_best_trial_of_another() {
    let tmp = tempfile::tempdir().unwrap();
    let data = idx_data(tmp.path(), 300, 100, 7);
    let base = tmp.path().join("base");
    let lr = r#"{"lr": {"type": "categorical", "choices": [0.01, 0.1]}}"#;
    init_study(&base, &study_json("base", lr, 2, ""));
    run(&base, &tmp.path().join("base-logs"), &data);
    let results = read_results(&base);
    assert!(results.iter().all(|r| r.status == TrialStatus::Complete));
    for r in &results {
        let w = trial_file(&base, "weights", &r.trial_id);
        assert!(w.is_file(), "{} kept its weights", r.trial_id);
    }
    let best = results
        .iter()
        .min_by(|a, b| a.objective.unwrap().total_cmp(&b.objective.unwrap()))
        .unwrap();

    let tl = tmp.path().join("tl");
    let transfer =
        r#"{"transfer": {"type": "categorical", "choices": ["none", "finetune", "freeze_conv"]}}"#;
    let from = r#", "transfer_from": {"study": "../base", "trial": "best"}"#;
    init_study(&tl, &study_json("tl", transfer, 3, from));
    run(&tl, &tmp.path().join("tl-logs"), &data);
    let label = format!(
        "starting from the weights of trial {} of study `../base`",
        best.trial_id
    );
    for r in read_results(&tl) {
        assert_eq!(r.status, TrialStatus::Complete, "{:?}", r.error);
        let log = std::fs::read_to_string(trial_file(&tl, "logs", &r.trial_id)).unwrap();
        let from_source = r.params["transfer"] != "none";
        assert_eq!(log.contains(&label), from_source, "{}: {log}", r.trial_id);
    }
}

#[test]
fn an_unfinished_source_makes_the_trial_invalid_and_says_what_to_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = idx_data(tmp.path(), 300, 100, 7);
    let base = tmp.path().join("base");
    init_study(
        &base,
        &study_json("base", r#"{"lr": {"type": "fixed", "value": 0.1}}"#, 1, ""),
    );
    let tl = tmp.path().join("tl");
    let fixed = r#"{"transfer": {"type": "fixed", "value": "finetune"}}"#;
    let from = r#", "transfer_from": {"study": "../base", "trial": "t000000"}"#;
    init_study(&tl, &study_json("tl", fixed, 1, from));
    run(&tl, &tmp.path().join("tl-logs"), &data);
    let r = read_result(&tl, "t000000");
    assert_eq!(r.status, TrialStatus::Invalid);
    assert_contains_all(
        r.error.as_deref().unwrap_or(""),
        &[
            "trial t000000 of study `../base` has not finished",
            "hps-master run",
        ],
    );
}

#[test]
fn transfer_without_a_source_is_refused_at_init() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("tl.json");
    let fixed = r#"{"transfer": {"type": "categorical", "choices": ["none", "freeze_conv"]}}"#;
    std::fs::write(&file, study_json("tl", fixed, 2, "")).unwrap();
    let err = stderr_err(hps_master(&[
        "init",
        arg(&tmp.path().join("tl")),
        "--study",
        arg(&file),
    ]));
    assert_contains_all(&err, &["space.transfer", "transfer_from"]);
}
