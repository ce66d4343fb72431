//! Old study directories still open: studies written by the binaries of
//! commit c53896b (`tests/fixtures/c53896b/`, see its README) are read and
//! continued by today's binaries. `expected/` holds what c53896b's
//! `status`, `best` and `export` printed for them, and the results c53896b
//! gave when it finished the interrupted studies itself.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hps_common::TrialResult;
use hps_tests::{
    arg, bin, cnn_args, copy_dir, dir_names, hps_master, idx_data, json_stems, read_result,
    run_cmd, run_one_worker, run_study, stdout_ok,
};
use hps_tests::{trial_file, trial_ids};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/c53896b")
}

fn expected(name: &str) -> String {
    let p = fixtures().join("expected").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A copy of the fixture study `name` in `tmp`, so the test may change it.
fn copy_study(tmp: &Path, name: &str) -> PathBuf {
    let study = tmp.join(name);
    copy_dir(&fixtures().join(name), &study);
    study
}

/// `status` up to its master line and workers table: how the master and
/// the workers are judged live may change, the trials and the best may not.
fn status_without_workers(text: &str) -> String {
    text.lines()
        .take_while(|l| !l.starts_with("master ") && !l.starts_with("workers"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// `hps-master ARGS…` run in `dir`, as the expected output was recorded
/// (`cd fixtures/c53896b; hps-master best sh-cnn …`).
fn master_in(dir: &Path, args: &[&str]) -> std::process::Output {
    run_cmd(
        std::process::Command::new(bin("hps-master"))
            .args(args)
            .current_dir(dir),
    )
}

#[test]
fn status_best_and_export_read_c53896b_studies_as_it_did() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["function", "sh-cnn", "sh-cnn-done"] {
        let study = copy_study(tmp.path(), name);
        let run = |args: &[&str]| master_in(tmp.path(), args);
        let status = stdout_ok(run(&["status", name]));
        assert_eq!(
            status_without_workers(&status),
            expected(&format!("{name}.status")),
            "{name}: status\n{status}"
        );
        let best = run(&["best", name, "-n", "5"]);
        assert_eq!(
            String::from_utf8_lossy(&best.stdout).into_owned()
                + &String::from_utf8_lossy(&best.stderr),
            expected(&format!("{name}.best")),
            "{name}: best"
        );
        for format in ["csv", "jsonl"] {
            assert_eq!(
                stdout_ok(run(&["export", name, "--format", format])),
                expected(&format!("{name}.{format}")),
                "{name}: export --format {format}"
            );
        }
        assert!(dir_names(&study.join("quarantine")).is_empty(), "{name}");
    }
}

/// What must come out the same however the study is continued: everything
/// in an exported result but the time it took.
fn comparable(line: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
    let o = v.as_object_mut().unwrap();
    o.remove("wall_time_s");
    o.remove("worker");
    o["metrics"].as_object_mut().unwrap().remove("epoch_time_s");
    v
}

fn comparable_export(jsonl: &str) -> Vec<serde_json::Value> {
    jsonl.lines().map(comparable).collect()
}

/// An async `function` study interrupted after 6 of its 10 trials (3 back
/// in `pending/`) is finished by today's master and worker with the same
/// proposals and values c53896b gave, its old results untouched.
#[test]
fn an_interrupted_c53896b_function_study_finishes_as_it_would_have() {
    let tmp = tempfile::tempdir().unwrap();
    let study = copy_study(tmp.path(), "function");
    let old = fixtures().join("function/results");
    run_one_worker(&study, tmp.path(), Duration::from_secs(120));
    assert!(dir_names(&study.join("quarantine")).is_empty());
    for id in json_stems(&old) {
        let file = format!("{id}.json");
        assert_eq!(
            std::fs::read(study.join("results").join(&file)).unwrap(),
            std::fs::read(old.join(&file)).unwrap(),
            "{id}: an old result was rewritten"
        );
    }
    let export = stdout_ok(hps_master(&["export", arg(&study), "--format", "jsonl"]));
    assert_eq!(
        comparable_export(&export),
        comparable_export(&expected("function-finished.jsonl"))
    );
}

/// A successive-halving cnn study interrupted with two trials paused at
/// their rung and two preempted mid-epoch (checkpoints of both kinds,
/// progress files) resumes from c53896b's checkpoints and ends bit for bit
/// as c53896b ended it (`sh-cnn-done`).
#[test]
fn a_paused_c53896b_cnn_study_resumes_from_its_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let study = copy_study(tmp.path(), "sh-cnn");
    // The IDX data the fixture was trained on: the same generator and seed.
    let data = idx_data(tmp.path(), 300, 60, 5);
    run_study(
        &study,
        tmp.path(),
        "0.1",
        &[("w0", &cnn_args(&data))],
        Duration::from_secs(300),
    );
    assert!(dir_names(&study.join("quarantine")).is_empty());
    let done = fixtures().join("sh-cnn-done");
    let ids = trial_ids(&done, "results");
    assert_eq!(trial_ids(&study, "results"), ids);
    for id in &ids {
        let (now, then) = (read_result(&study, id), read_result(&done, id));
        assert_eq!(same_training(&now), same_training(&then), "{id}");
    }
    let log = std::fs::read_to_string(trial_file(&study, "logs", "t000000")).unwrap();
    assert!(log.contains("# resuming from the checkpoint"), "{log}");
    let export = stdout_ok(hps_master(&["export", arg(&study), "--format", "jsonl"]));
    assert_eq!(
        comparable_export(&export),
        comparable_export(&expected("sh-cnn-done.jsonl"))
    );
}

/// A result without the times and the worker, curve values as bits.
fn same_training(r: &TrialResult) -> String {
    let mut r = r.clone();
    r.wall_time_s = 0.0;
    r.last_run_wall_time_s = None;
    r.worker.clear();
    r.finished_at_unix = 0.0;
    r.metrics.remove("epoch_time_s");
    for e in &mut r.curve {
        e.elapsed_s = 0.0;
        // Measured since c53896b, so only in the epochs run today.
        e.train_error = None;
        if let Some(i) = &mut e.instruments {
            (i.first_abs_weight, i.first_abs_grad) = (None, None);
        }
    }
    let bits: Vec<_> = r
        .curve
        .iter()
        .map(|e| {
            (
                e.train_loss.to_bits(),
                e.val_loss.to_bits(),
                e.val_error.to_bits(),
            )
        })
        .collect();
    format!("{}\n{bits:?}", serde_json::to_string(&r).unwrap())
}

/// `hps-master migrate` converts a c53896b directory (flat per-trial
/// folders, directory format 1) to the sharded layout (format 2):
/// `status`, `best` and `export` print what they printed before, every old
/// result is kept byte for byte in its shard, a second migrate finds
/// nothing to do, and the interrupted study then finishes as it would
/// have. A migration that did not finish (its `migrating` file left
/// behind) makes every other command refuse, naming `migrate`.
#[test]
fn a_migrated_c53896b_study_reads_the_same_and_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let name = "function";
    let study = copy_study(tmp.path(), name);
    let old = fixtures().join(name).join("results");
    let run = |args: &[&str]| master_in(tmp.path(), args);

    // An interrupted migration: refused until migrate is run again.
    std::fs::write(study.join("migrating"), "").unwrap();
    let out = run(&["status", name]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("did not finish") && err.contains("hps-master migrate"),
        "{err}"
    );
    let said = stdout_ok(run(&["migrate", name]));
    assert!(said.contains("now has the sharded layout"), "{said}");
    assert!(!study.join("migrating").exists());
    let record = std::fs::read_to_string(study.join("study.recorded.json")).unwrap();
    assert!(record.contains("\"format_version\": 2"), "{record}");
    for id in json_stems(&old) {
        assert_eq!(
            trial_file(&study, "results", &id),
            study.join("results/t000").join(format!("{id}.json"))
        );
        assert_eq!(
            std::fs::read(trial_file(&study, "results", &id)).unwrap(),
            std::fs::read(old.join(format!("{id}.json"))).unwrap(),
            "{id}: a result was rewritten"
        );
        assert!(trial_file(&study, "logs", &id).is_file(), "{id}: its log");
    }
    // Nothing flat is left in the per-trial folders.
    for sub in ["settings", "results", "logs"] {
        assert_eq!(dir_names(&study.join(sub)), ["t000"], "{sub}/");
    }

    let status = stdout_ok(run(&["status", name]));
    assert_eq!(
        status_without_workers(&status),
        expected(&format!("{name}.status")),
        "status\n{status}"
    );
    let best = run(&["best", name, "-n", "5"]);
    assert_eq!(
        String::from_utf8_lossy(&best.stdout).into_owned() + &String::from_utf8_lossy(&best.stderr),
        expected(&format!("{name}.best")),
    );
    for format in ["csv", "jsonl"] {
        assert_eq!(
            stdout_ok(run(&["export", name, "--format", format])),
            expected(&format!("{name}.{format}")),
            "export --format {format}"
        );
    }
    let again = stdout_ok(run(&["migrate", name]));
    assert!(again.contains("already has the sharded layout"), "{again}");

    run_one_worker(&study, tmp.path(), Duration::from_secs(120));
    assert!(dir_names(&study.join("quarantine")).is_empty());
    assert_eq!(dir_names(&study.join("results")), ["t000"]);
    // status and best read the results cache the master wrote (a line per
    // result it accepted, those found at start included) and only the
    // results it lacks from their files: a partial cache, or none, changes
    // nothing they print.
    let cache = study.join("cache/results.jsonl");
    let text = std::fs::read_to_string(&cache).unwrap();
    assert_eq!(text.lines().count(), 10, "{text}");
    let printed = || {
        let status = stdout_ok(run(&["status", name]));
        (
            status_without_workers(&status),
            stdout_ok(run(&["best", name, "-n", "3"])),
        )
    };
    let with_cache = printed();
    let half: String = text.lines().take(5).map(|l| format!("{l}\n")).collect();
    std::fs::write(&cache, half).unwrap();
    assert_eq!(printed(), with_cache, "half the results from the cache");
    std::fs::remove_file(&cache).unwrap();
    assert_eq!(printed(), with_cache, "every result from its file");
    assert!(
        with_cache.0.contains("done 10 (complete 10)"),
        "{}",
        with_cache.0
    );
    let export = stdout_ok(hps_master(&["export", arg(&study), "--format", "jsonl"]));
    assert_eq!(
        comparable_export(&export),
        comparable_export(&expected("function-finished.jsonl"))
    );
}
