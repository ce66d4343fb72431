//! Symlinks planted in the shared study directory (issue 10, section 4): a
//! worker never writes, appends or deletes outside the study through them.
//! The link is moved to `quarantine/` and the trial still runs. These start
//! the real binaries.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hps_common::TrialStatus;
use hps_tests::trial_file;
use hps_tests::{
    arg, dir_names, hps_master, init_study, json_stems, read_result, read_results, run_one_worker,
    spawn_master, stderr_err, trial_log, wait_until,
};

/// An exec study whose command (`sh -c`; `{{` is a literal brace)
/// appends its working directory to `<tmp>/pwds` and writes a result.
fn exec_study(tmp: &Path, trials: u32, workdir: Option<&str>, choices: &[&str]) -> PathBuf {
    let pwds = tmp.join("pwds");
    let mut trainer = serde_json::json!({
        "kind": "exec", "timeout_s": 60,
        "argv": ["/bin/sh", "-c",
                 "pwd >> \"$0\" && echo '{{\"value\": 1}}' > \"$HPS_RESULT_FILE\"",
                 arg(&pwds)]
    });
    if let Some(w) = workdir {
        trainer["workdir"] = w.into();
    }
    let study = serde_json::json!({
        "format_version": 1, "name": "links",
        "space": {"dir": {"type": "categorical", "choices": choices}},
        "objective": {"metric": "value", "direction": "minimize"},
        "sampler": {"kind": "random", "seed": 1},
        "budget": {"trials": trials},
        "mode": {"kind": "async", "queue": 2},
        "trainer": trainer
    });
    let s = tmp.join("study");
    init_study(&s, &study.to_string());
    s
}

/// The entries of `quarantine/` that are symlinks, with their targets.
fn quarantined_links(study: &Path) -> Vec<PathBuf> {
    dir_names(&study.join("quarantine"))
        .iter()
        .filter_map(|n| std::fs::read_link(study.join("quarantine").join(n)).ok())
        .collect()
}

fn assert_all_complete(study: &Path, trials: usize) {
    let results = read_results(study);
    assert_eq!(results.len(), trials, "the study finished");
    for r in results {
        assert_eq!(
            r.status,
            TrialStatus::Complete,
            "{}: {:?}",
            r.trial_id,
            r.error
        );
    }
}

/// Before: with `checkpoints/<id>` a symlink to an outside directory, the
/// exec worker deleted the outside `result.json` and `reports.jsonl` and
/// wrote `params.json` there.
#[test]
fn exec_worker_never_deletes_or_writes_through_a_symlinked_checkpoint_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let study = exec_study(tmp.path(), 2, None, &["a"]);
    let outside = tmp.path().join("someone-elses-run");
    std::fs::create_dir(&outside).unwrap();
    let files = [
        ("result.json", "{\"theirs\": 1}\n"),
        ("reports.jsonl", "{\"epoch\": 1}\n"),
    ];
    for (name, text) in files {
        std::fs::write(outside.join(name), text).unwrap();
    }
    for id in ["t000000", "t000001"] {
        symlink(&outside, study.join("checkpoints").join(id)).unwrap();
    }

    let log = run_one_worker(&study, tmp.path(), Duration::from_secs(60));

    for (name, text) in files {
        assert_eq!(
            std::fs::read_to_string(outside.join(name)).ok().as_deref(),
            Some(text),
            "outside {name} must be untouched"
        );
    }
    assert_eq!(
        dir_names(&outside),
        ["reports.jsonl", "result.json"],
        "nothing written outside"
    );
    assert_eq!(
        quarantined_links(&study),
        [outside.clone(), outside],
        "{log}"
    );
    let wlog = std::fs::read_to_string(tmp.path().join("w0.log")).unwrap();
    assert!(
        wlog.contains("checkpoints/t000000") && wlog.contains("symbolic link"),
        "one message names the link:\n{wlog}"
    );
    assert_all_complete(&study, 2);
}

/// Before: with `logs/<id>.log` a symlink, the worker appended the trial's
/// log lines to the outside file.
#[test]
fn worker_never_appends_to_a_symlinked_trial_log() {
    let tmp = tempfile::tempdir().unwrap();
    let study = exec_study(tmp.path(), 2, None, &["a"]);
    let outside = tmp.path().join("someone-elses.txt");
    std::fs::write(&outside, "precious\n").unwrap();
    let log0 = trial_file(&study, "logs", "t000000");
    std::fs::create_dir_all(log0.parent().unwrap()).unwrap();
    symlink(&outside, log0).unwrap();
    // A directory where the log belongs used to kill every worker that
    // claimed the trial; it is moved away the same way.
    std::fs::create_dir(trial_file(&study, "logs", "t000001")).unwrap();

    run_one_worker(&study, tmp.path(), Duration::from_secs(60));

    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "precious\n");
    assert_eq!(quarantined_links(&study), [outside]);
    assert_eq!(dir_names(&study.join("quarantine")).len(), 2);
    for id in ["t000000", "t000001"] {
        let log = trial_file(&study, "logs", id);
        assert!(std::fs::symlink_metadata(&log).unwrap().is_file(), "{id}");
        assert_eq!(
            trial_log(&study, id).accepted.len(),
            1,
            "{id} has a new log"
        );
    }
    let wlog = std::fs::read_to_string(tmp.path().join("w0.log")).unwrap();
    assert!(wlog.contains("logs/t000/t000000.log"), "{wlog}");
    assert_all_complete(&study, 2);
}

/// Before: a parameter value `../../../../etc` in the exec trainer's
/// `workdir` template ran the script in `/etc`. `hps-master init` refuses
/// such a choice; a value that gets into a setting anyway (an edited file)
/// makes the trial `invalid` before its command starts.
#[test]
fn a_workdir_parameter_value_that_escapes_the_study_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("bad.json");
    std::fs::write(
        &file,
        serde_json::json!({
            "format_version": 1, "name": "bad",
            "space": {"dir": {"type": "categorical", "choices": ["sub", "../../../../etc"]}},
            "objective": {"metric": "value", "direction": "minimize"},
            "sampler": {"kind": "grid"},
            "trainer": {"kind": "exec", "argv": ["true"], "workdir": "{dir}"}
        })
        .to_string(),
    )
    .unwrap();
    let err = stderr_err(hps_master(&[
        "init",
        arg(&tmp.path().join("bad")),
        "--study",
        arg(&file),
    ]));
    assert!(
        err.contains("trainer.workdir") && err.contains("`dir`") && err.contains("../../../../etc"),
        "{err}"
    );

    // At run time: the master publishes two trials, then one pending file
    // (and its record) is edited to escape.
    let study = exec_study(tmp.path(), 2, Some("{dir}"), &["sub"]);
    std::fs::create_dir(study.join("sub")).unwrap();
    let mut m = spawn_master(
        &study,
        &tmp.path().join("m0.log"),
        &["--rescan", "0.2", "--lease-interval", "0.3"],
    );
    wait_until(Duration::from_secs(30), "two pending settings", || {
        json_stems(&study.join("pending")).len() == 2
    });
    m.signal(libc::SIGTERM);
    m.wait_ok(Duration::from_secs(30));
    for p in [
        study.join("pending/t000000.json"),
        trial_file(&study, "settings", "t000000"),
    ] {
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("\"sub\""), "{text}");
        std::fs::write(&p, text.replace("\"sub\"", "\"../../../../etc\"")).unwrap();
    }

    run_one_worker(&study, tmp.path(), Duration::from_secs(60));

    let bad = read_result(&study, "t000000");
    assert_eq!(bad.status, TrialStatus::Invalid, "{:?}", bad.error);
    let why = bad.error.unwrap_or_default();
    assert!(
        why.contains("`dir`") && why.contains("trainer.workdir"),
        "{why}"
    );
    let good = read_result(&study, "t000001");
    assert_eq!(good.status, TrialStatus::Complete, "{:?}", good.error);
    let pwds = std::fs::read_to_string(tmp.path().join("pwds")).unwrap();
    assert_eq!(pwds.lines().count(), 1, "only the good trial ran: {pwds}");
    assert!(pwds.trim_end().ends_with("study/sub"), "{pwds}");
}
