//! The hps-worker command line: errors a user sees.

use hps_tests::{arg, assert_contains_all, hps_worker, init_study, stderr_err};

/// `hps-worker <study> ARGS… --once` on a fresh one-trial cnn study; its stderr.
fn worker_error(args: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let dir = cnn_study(tmp.path());
    let mut all = vec![arg(&dir)];
    all.extend_from_slice(args);
    all.push("--once");
    let err = stderr_err(hps_worker(&all));
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn missing_dataset_names_the_file_and_the_package() {
    let err = worker_error(&["--data", "/nonexistent/nodata"]);
    assert_contains_all(&err, &["nodata", "dataset-fashion-mnist"]);
}

#[test]
fn a_gpu_that_is_not_there_is_an_error_not_a_cpu_fallback() {
    // candle is one package in the build: built with cuda here means the
    // hps-worker binary was too, and then cuda:0 may well be there.
    if candle_core::utils::cuda_is_available() {
        eprintln!("SKIPPED: hps-worker was built with --features cuda");
        return;
    }
    let err = worker_error(&["--device", "cuda:0"]);
    assert_contains_all(&err, &["cuda:0", "--features cuda"]);
}

#[test]
fn bad_worker_id_is_rejected() {
    assert_contains_all(&worker_error(&["--id", "../evil"]), &["worker id"]);
}

/// A study of one cnn trial in `<tmp>/s` (for the worker's errors).
fn cnn_study(tmp: &std::path::Path) -> std::path::PathBuf {
    let dir = tmp.join("s");
    init_study(
        &dir,
        r#"{"format_version":1,"name":"c","space":{"lr":{"type":"fixed","value":0.1}},
        "objective":{"metric":"val_error","direction":"minimize"},
        "sampler":{"kind":"random","seed":0},"budget":{"trials":1},"trainer":{"kind":"cnn"}}"#,
    );
    dir
}
