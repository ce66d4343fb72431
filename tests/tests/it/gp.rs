//! The `gp` sampler with the real binaries (issue 16): an async study on
//! three workers, each proposal made while others run.

use std::time::Duration;

use hps_common::TrialStatus;
use hps_tests::{read_results, run_study, runs_per_trial, temp_study};
use hps_tests::{trial_file, trial_ids};

/// 30 branin trials, 3 workers, async: every trial runs exactly once, the
/// pending settings fantasised by the GP keep proposals apart (no two
/// within 1e-6 of each other in the unit cube), and the GP gets close to
/// the minimum (0.398; 30 random settings typically reach 1 to 3).
#[test]
fn gp_async_study_on_three_workers_runs_each_trial_once_without_duplicates() {
    let (tmp, study) = temp_study(
        r#"{"format_version": 1, "name": "gp-async",
            "space": {"x0": {"type": "float", "low": -5, "high": 10},
                      "x1": {"type": "float", "low": 0, "high": 15}},
            "objective": {"metric": "value", "direction": "minimize"},
            "sampler": {"kind": "gp", "seed": 1},
            "budget": {"trials": 30},
            "mode": {"kind": "async", "queue": 3},
            "trainer": {"kind": "function", "name": "branin", "sleep_s": 0.05}}"#,
    );
    let none: &[&str] = &[];
    let log = run_study(
        &study,
        tmp.path(),
        "0.2",
        &[("w0", none), ("w1", none), ("w2", none)],
        Duration::from_secs(600),
    );
    assert!(log.contains("study finished"), "{log}");

    let settings = trial_ids(&study, "settings");
    let results = trial_ids(&study, "results");
    assert_eq!(results.len(), 30, "{results:?}");
    assert_eq!(settings, results, "every setting has exactly one result");
    let runs = runs_per_trial(&study);
    assert!(
        runs.values().all(|&n| n == 1),
        "each trial ran once: {runs:?}"
    );

    let results = read_results(&study);
    let unit: Vec<[f64; 2]> = results
        .iter()
        .map(|r| {
            assert_eq!(
                r.status,
                TrialStatus::Complete,
                "{}: {:?}",
                r.trial_id,
                r.error
            );
            let x0 = r.params["x0"].as_f64().unwrap();
            let x1 = r.params["x1"].as_f64().unwrap();
            [(x0 + 5.0) / 15.0, x1 / 15.0]
        })
        .collect();
    for i in 0..unit.len() {
        for j in 0..i {
            let d = ((unit[i][0] - unit[j][0]).powi(2) + (unit[i][1] - unit[j][1]).powi(2)).sqrt();
            assert!(
                d > 1e-6,
                "{} and {} are {d} apart in the unit cube",
                results[i].trial_id,
                results[j].trial_id
            );
        }
    }
    let best = results
        .iter()
        .filter_map(|r| r.objective)
        .fold(f64::INFINITY, f64::min);
    assert!(best < 1.0, "best branin value {best}");
}

/// A study file without `sampler` gets `auto`, which takes the GP on a
/// numeric space and says so in the master's log; its settings name it.
#[test]
fn a_study_without_a_sampler_runs_with_auto_which_logs_its_choice() {
    let (tmp, study) = temp_study(
        r#"{"format_version": 1, "name": "auto-default",
            "space": {"x0": {"type": "float", "low": -5, "high": 10},
                      "x1": {"type": "float", "low": 0, "high": 15}},
            "objective": {"metric": "value", "direction": "minimize"},
            "budget": {"trials": 14},
            "mode": {"kind": "async", "queue": 2},
            "trainer": {"kind": "function", "name": "branin"}}"#,
    );
    let none: &[&str] = &[];
    let log = run_study(
        &study,
        tmp.path(),
        "0.2",
        &[("w0", none), ("w1", none)],
        Duration::from_secs(600),
    );
    assert!(log.contains("study finished"), "{log}");
    assert!(
        log.contains("auto sampler: gp: a numeric space (2 numeric, 0 categorical parameters)"),
        "{log}"
    );
    let recorded = std::fs::read_to_string(study.join("study.recorded.json")).unwrap();
    assert!(recorded.contains(r#""kind": "auto""#), "{recorded}");
    let results = read_results(&study);
    assert_eq!(results.len(), 14);
    let setting = std::fs::read_to_string(trial_file(&study, "settings", "t000013")).unwrap();
    assert!(setting.contains(r#""sampler": "auto""#), "{setting}");
    assert!(setting.contains(r#""source": "model""#), "{setting}");
}
