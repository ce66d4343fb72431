//! The hps-worker command line: errors a user sees.

use std::process::Command;

fn worker() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hps-worker"))
}

fn cnn_study(dir: &std::path::Path) {
    let text = r#"{"format_version":1,"name":"c","space":{"lr":{"type":"fixed","value":0.1}},
        "objective":{"metric":"val_error","direction":"minimize"},
        "sampler":{"kind":"random","seed":0},"budget":{"trials":1},"trainer":{"kind":"cnn"}}"#;
    let study: hps_common::Study =
        hps_common::parse_versioned(std::path::Path::new("s.json"), text).unwrap();
    hps_shared_fs::StudyDir::init(dir, &study).unwrap();
}

#[test]
fn missing_dataset_names_the_file_and_the_package() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    cnn_study(&dir);
    let out = worker()
        .arg(&dir)
        .arg("--data")
        .arg(tmp.path().join("nodata"))
        .args(["--once"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nodata") && err.contains("dataset-fashion-mnist"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[cfg(not(feature = "cuda"))]
#[test]
fn a_gpu_that_is_not_there_is_an_error_not_a_cpu_fallback() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    cnn_study(&dir);
    let out = worker()
        .arg(&dir)
        .args(["--device", "cuda:0", "--once"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cuda:0") && err.contains("--features cuda"),
        "{err}"
    );
}

#[test]
fn bad_worker_id_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    cnn_study(&dir);
    let out = worker()
        .arg(&dir)
        .args(["--id", "../evil", "--once"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("worker id"));
}
