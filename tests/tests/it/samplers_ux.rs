//! Issue 17 §5, samplers on small budgets say what they do: `init` and
//! `run` warn when TPE's start-up design is the whole budget, and every
//! setting records whether the start-up design or the model proposed it.

use std::time::Duration;

use hps_tests::trial_file;
use hps_tests::{arg, hps_master, run_one_worker, stdout_ok, temp_study};

/// A TPE study of the function trainer with `sampler` fields and a budget.
fn tpe_study(sampler: &str, trials: u32) -> String {
    format!(
        r#"{{
          "format_version": 1,
          "name": "small-tpe",
          "space": {{
            "x0": {{"type": "float", "low": -5, "high": 10}},
            "x1": {{"type": "float", "low": 0, "high": 15}}
          }},
          "objective": {{"metric": "value", "direction": "minimize"}},
          "sampler": {{"kind": "tpe", "seed": 3{sampler}}},
          "budget": {{"trials": {trials}}},
          "mode": {{"kind": "sync", "batch": 2}},
          "trainer": {{"kind": "function", "name": "branin"}}
        }}"#
    )
}

/// With the default n_startup of 10 and a budget of 10, TPE never used its
/// model and nobody said so.
#[test]
fn tpe_startup_equal_to_the_budget_is_warned_at_init_and_run() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("small.json");
    std::fs::write(&file, tpe_study("", 10)).unwrap();
    let study = tmp.path().join("study");
    let out = hps_master(&["init", arg(&study), "--study", arg(&file)]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(stdout_ok(out).contains("10 trials planned"));
    assert!(
        stderr.contains("warning: TPE's start-up design")
            && stderr.contains("the whole budget of 10")
            && stderr.contains("`sampler.n_startup`"),
        "{stderr}"
    );
    let log = run_one_worker(&study, tmp.path(), Duration::from_secs(120));
    assert!(
        log.contains("WARN") && log.contains("the whole budget of 10"),
        "{log}"
    );

    // A budget the model gets most of: no warning.
    std::fs::write(&file, tpe_study("", 40)).unwrap();
    let out = hps_master(&[
        "init",
        arg(&tmp.path().join("study40")),
        "--study",
        arg(&file),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    stdout_ok(out);
    assert!(!stderr.contains("warning"), "{stderr}");
}

/// Every setting said `"sampler": "tpe"`, whether TPE's model proposed it
/// or its start-up design did.
#[test]
fn settings_record_whether_the_startup_design_or_the_model_proposed_them() {
    let (tmp, study) = temp_study(&tpe_study(r#", "n_startup": 3"#, 6));
    run_one_worker(&study, tmp.path(), Duration::from_secs(120));
    let sources: Vec<String> = (0..6)
        .map(|i| {
            let p = trial_file(&study, "settings", &format!("t{i:06}"));
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            assert_eq!(v["sampler"], "tpe");
            v["source"].as_str().unwrap_or("").to_string()
        })
        .collect();
    // Sync batches of 2: settings 0-2 are the start-up design; 3 comes
    // after the first batch's two results, when the model can rank them.
    assert_eq!(
        sources,
        ["startup", "startup", "startup", "model", "model", "model"]
    );
    // And `export` shows it.
    let csv = stdout_ok(hps_master(&["export", arg(&study), "--format", "csv"]));
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header
        .iter()
        .position(|h| *h == "source")
        .expect("a source column");
    let column: Vec<&str> = lines.map(|l| l.split(',').nth(col).unwrap()).collect();
    assert_eq!(column, sources);
}
