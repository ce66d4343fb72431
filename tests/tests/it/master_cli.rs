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
/// were accepted at init, and a pruner on the function trainer got a
/// misleading `min_epochs` message. Each is refused, naming the file and
/// the field, for what it is.
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
        (
            two,
            r#"{"kind":"random","seed":0}"#,
            r#""pruner":{"kind":"asha"},"budget":{"trials":5},"#,
            "2",
            vec!["field `pruner`", "function trainer reports a single value"],
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

/// A copy of the finished c53896b successive-halving cnn study (one
/// complete trial of 4 epochs, three pruned), in a fresh temp directory.
fn finished_cnn_study() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/c53896b/sh-cnn-done");
    let study = tmp.path().join("study");
    hps_tests::copy_dir(&src, &study);
    (tmp, study)
}

/// Issue 17 §4: `export -o x.csv` wrote the file, then failed with
/// "failed to sync directory ``" (the parent of a bare name is empty) and
/// exited 1.
#[test]
fn export_to_a_bare_file_name_succeeds() {
    let (tmp, study) = finished_cnn_study();
    let out = hps_tests::run_cmd(
        std::process::Command::new(hps_tests::bin("hps-master"))
            .args(["export", arg(&study), "-o", "x.csv"])
            .current_dir(tmp.path()),
    );
    hps_tests::assert_quiet_ok(&out);
    let csv = std::fs::read_to_string(tmp.path().join("x.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    // A count is an integer, so pandas reads the column as one.
    assert!(csv.lines().nth(1).unwrap().contains(",28,"), "{csv}");
}

/// Issue 17 §4: `export | head` printed "error: Broken pipe (os error 32)"
/// and exited 1. A reader that closed the pipe got all it wanted.
#[test]
fn export_into_a_closed_pipe_is_success_and_silent() {
    use std::os::fd::FromRawFd;
    let (_tmp, study) = finished_cnn_study();
    let mut fds = [0; 2];
    // SAFETY: pipe fills two fresh descriptors; we own both.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: closing the read end we own: every write then fails (EPIPE).
    unsafe { libc::close(fds[0]) };
    // SAFETY: the write end is ours and handed over exactly once.
    let write_end = unsafe { std::fs::File::from_raw_fd(fds[1]) };
    for curves in [false, true] {
        let mut cmd = std::process::Command::new(hps_tests::bin("hps-master"));
        cmd.args(["export", arg(&study)]);
        if curves {
            cmd.arg("--curves");
        }
        let out = cmd
            .stdout(write_end.try_clone().unwrap())
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        hps_tests::assert_quiet_ok(&out);
    }
}

/// Issue 17 §4: neither export had the per-epoch curves. `--curves` gives
/// one row per trial and epoch with the instruments, in CSV and JSON lines.
#[test]
fn export_curves_gives_one_row_per_trial_and_epoch_with_instruments() {
    let (_tmp, study) = finished_cnn_study();
    let s = arg(&study);
    let csv = stdout_ok(hps_master(&["export", s, "--curves"]));
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(
        &header[..8],
        [
            "trial_id",
            "status",
            "param_batch_size",
            "param_lr",
            "param_nf",
            "step",
            "elapsed_s",
            "train_loss"
        ]
    );
    for col in [
        "val_loss",
        "val_error",
        "lr",
        "grad_norm",
        "weight_norm",
        "update_ratio",
    ] {
        assert!(header.contains(&col), "{col} missing: {header:?}");
    }
    assert!(
        header
            .iter()
            .any(|h| h.starts_with("act_") && h.ends_with("_std")),
        "{header:?}"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    // t000000 ran 4 epochs; the pruned ones 1, 2 and 1 (their results say so).
    let per_trial = |id: &str| rows.iter().filter(|r| r[0] == id).count();
    let epochs: Vec<usize> = ["t000000", "t000001", "t000002", "t000003"]
        .iter()
        .map(|id| per_trial(id))
        .collect();
    for (i, id) in ["t000000", "t000001", "t000002", "t000003"]
        .iter()
        .enumerate()
    {
        let r = hps_tests::read_result(&study, id);
        assert_eq!(epochs[i], r.curve.len(), "{id}");
    }
    assert_eq!(epochs[0], 4);
    let first = &rows[0];
    assert_eq!((first[0], first[1], first[5]), ("t000000", "complete", "1"));
    let jsonl = stdout_ok(hps_master(&["export", s, "--curves", "--format", "jsonl"]));
    let objs: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objs.len(), rows.len());
    assert_eq!(objs[0]["step"], 1);
    assert_eq!(objs[0]["params"]["nf"], 3);
    assert!(objs[0]["grad_norm"].is_number(), "{}", objs[0]);
}

/// Issue 17 §6: with the grid sampler, a typo `momentun` was reported as
/// "a float parameter needs `grid: N`"; a typo in `trainer.defaults` was
/// reported at line 47 of a 46-line file with no suggestion; a log-scale
/// int added to the s1 grid was accepted as "(2541 trials planned)" with
/// no word of how the grid expands.
#[test]
fn init_reports_typos_as_typos_at_their_line_and_says_how_a_grid_expands() {
    let tmp = tempfile::tempdir().unwrap();
    let s1 = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/s1.json"),
    )
    .unwrap();
    let lr = r#""lr": {"type": "categorical", "choices": [0.001, 0.01, 0.1, 0.2, 0.5, 1.0, 2.0]}"#;
    assert!(s1.contains(lr), "examples/s1.json changed");
    let init = |name: &str, text: String| {
        let f = tmp.path().join(format!("{name}.json"));
        std::fs::write(&f, text).unwrap();
        hps_master(&["init", arg(&tmp.path().join(name)), "--study", arg(&f)])
    };

    let typo = s1.replace(
        lr,
        &format!(r#"{lr}, "momentun": {{"type": "float", "low": 0, "high": 0.9}}"#),
    );
    let err = stderr_err(init("grid-typo", typo));
    assert_contains_all(
        &err,
        &[
            "space.momentun",
            "no hyperparameter `momentun` (did you mean `momentum`?)",
        ],
    );
    assert!(!err.contains("grid: N"), "{err}");

    let typo = s1.replace(r#""batch_size": 100"#, r#""batchsize": 100"#);
    let line = typo.lines().position(|l| l.contains("batchsize")).unwrap() + 1;
    let err = stderr_err(init("defaults-typo", typo));
    assert_contains_all(
        &err,
        &[
            "unknown field `batchsize`",
            "(did you mean `batch_size`?)",
            &format!("at line {line} column"),
        ],
    );

    let wide = s1.replace(
        lr,
        &format!(r#"{lr}, "nf": {{"type": "int", "low": 8, "high": 128, "log": true}}"#),
    );
    let out = stdout_ok(init("wide", wide));
    assert!(
        out.contains("(2541 trials planned; grid: lr 7 x nf 121 = 847 settings x 3 repeats)"),
        "{out}"
    );
}

/// Issue 17 §7: `init --help` listed the presets by hand, without `asha`.
/// The list now comes from the code, and a typo gets clap's suggestion.
#[test]
fn init_help_lists_every_preset() {
    let help = stdout_ok(hps_master(&["init", "--help"]));
    let names = hps_tests::example_presets();
    assert!(names.contains(&"asha".to_string()), "{names:?}");
    for name in &names {
        assert!(help.contains(name.as_str()), "{name} missing from:\n{help}");
    }
    let err = stderr_err(hps_master(&["init", "x", "--preset", "ashaa"]));
    assert_contains_all(&err, &["possible values", "a similar value exists: 'asha'"]);
}
