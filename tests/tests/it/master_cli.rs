//! The hps-master command line: errors a user sees.

use hps_tests::{arg, assert_contains_all, hps_master, stderr_err, stdout_ok};

#[test]
fn init_rejects_a_bad_study_naming_file_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("bad.json");
    std::fs::write(
        &f,
        r#"{"format_version":1,"name":"x","space":{"lr":{"type":"float","low":-1,"high":1,"log":true}},
            "objective":{"metric":"val_error","direction":"minimize"},
            "sampler":{"kind":"random","seed":0},"budget":{"trials":3},"trainer":{"kind":"cnn"}}"#,
    )
    .unwrap();
    let s = tmp.path().join("s");
    let err = stderr_err(hps_master(&["init", arg(&s), "--study", arg(&f)]));
    assert_contains_all(&err, &["bad.json", "space.lr.low", "log-scale"]);
    assert!(
        !s.join("study.json").exists(),
        "nothing created for a bad study"
    );
}

/// Issue 10 §6: `lr-x`, `lr_x`, `lr.x` and `LR_X` all became
/// `HPS_PARAM_LR_X`, and all but one value were lost without a word.
#[test]
fn init_refuses_parameters_that_share_an_hps_param_variable() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("collide.json");
    std::fs::write(
        &f,
        r#"{"format_version":1,"name":"x",
            "space":{"lr_x":{"type":"float","low":0,"high":1},"lr-x":{"type":"float","low":0,"high":1}},
            "objective":{"metric":"loss","direction":"minimize"},
            "sampler":{"kind":"random","seed":0},"budget":{"trials":3},
            "trainer":{"kind":"exec","argv":["python3","train.py"]}}"#,
    )
    .unwrap();
    let s = tmp.path().join("s");
    let err = stderr_err(hps_master(&["init", arg(&s), "--study", arg(&f)]));
    assert_contains_all(
        &err,
        &["collide.json", "space.", "HPS_PARAM_LR_X", "rename"],
    );
    assert!(!s.join("study.json").exists(), "nothing created");
}

/// Issue 10 §5: a budget of 1e15 trials, a 100^10 grid (reported as
/// `18446744073709551615 trials planned`) and a range with `low == high`
/// were accepted at init. Each is refused, naming the file and the field.
#[test]
fn init_refuses_absurd_budgets_grids_and_one_value_ranges() {
    let tmp = tempfile::tempdir().unwrap();
    let base = r#"{"format_version":1,"name":"x","space":SPACE,
        "objective":{"metric":"value","direction":"minimize"},
        "sampler":SAMPLER,BUDGET"trainer":{"kind":"function","name":"rosenbrock","dim":DIM}}"#;
    let axes: Vec<String> = (0..10)
        .map(|i| format!(r#""x{i}":{{"type":"float","low":-2,"high":2,"grid":100}}"#))
        .collect();
    let grid = format!("{{{}}}", axes.join(","));
    let two =
        r#"{"x0":{"type":"float","low":-2,"high":2},"x1":{"type":"float","low":-2,"high":2}}"#;
    let flat = r#"{"x0":{"type":"float","low":-2,"high":2},"x1":{"type":"int","low":1,"high":1}}"#;
    let cases = [
        (
            two,
            r#"{"kind":"random","seed":0}"#,
            r#""budget":{"trials":1000000000000000},"#,
            "2",
            vec!["budget.trials", "at most 10000000"],
        ),
        (
            grid.as_str(),
            r#"{"kind":"grid"}"#,
            "",
            "10",
            vec!["field `space`", "1.000e20 settings", "fewer `grid` points"],
        ),
        (
            flat,
            r#"{"kind":"random","seed":0}"#,
            r#""budget":{"trials":5},"#,
            "2",
            vec!["space.x1.high", "holds one value", r#""type": "fixed""#],
        ),
    ];
    for (i, (space, sampler, budget, dim, expect)) in cases.into_iter().enumerate() {
        let f = tmp.path().join(format!("absurd{i}.json"));
        let text = base
            .replace("SPACE", space)
            .replace("SAMPLER", sampler)
            .replace("BUDGET", budget)
            .replace("DIM", dim);
        std::fs::write(&f, text).unwrap();
        let s = tmp.path().join(format!("s{i}"));
        let err = stderr_err(hps_master(&["init", arg(&s), "--study", arg(&f)]));
        assert_contains_all(&err, &expect);
        assert!(err.contains(&format!("absurd{i}.json")), "{err}");
        assert!(!s.join("study.json").exists(), "nothing created");
    }
}

#[test]
fn init_from_preset_and_refuse_a_second_init() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s5");
    let init = || hps_master(&["init", arg(&dir), "--preset", "s5"]);
    assert!(stdout_ok(init()).contains("200 trials"));
    assert!(stderr_err(init()).contains("already holds a study"));
}

#[test]
fn unknown_preset_lists_the_presets() {
    let tmp = tempfile::tempdir().unwrap();
    let x = tmp.path().join("x");
    let err = stderr_err(hps_master(&["init", arg(&x), "--preset", "s9"]));
    assert_contains_all(&err, &["s9", "quickstart"]);
}

#[test]
fn commands_on_a_non_study_say_how_to_create_one() {
    let tmp = tempfile::tempdir().unwrap();
    for cmd in ["run", "status", "best", "export"] {
        let err = stderr_err(hps_master(&[cmd, arg(tmp.path())]));
        assert_contains_all(&err, &["not an hps study directory", "hps-master init"]);
    }
}
