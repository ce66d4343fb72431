//! `deploy/gpu-check.sh --dry-run`: the GPU check runs end to end on the
//! CPU with the real binaries (tiny sizes, generated IDX data) and writes a
//! JSON report whose phases passed or say why they were skipped. PyTorch is
//! not needed: without it the PyTorch rows are skipped and the report says
//! so.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hps_tests::{arg, bin, idx_data, python3_or_skip, Proc};
use serde_json::Value;

#[test]
fn the_dry_run_checks_everything_but_the_gpu_and_reports_it() {
    if !python3_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = idx_data(tmp.path(), 1200, 400, 5);
    let out = tmp.path().join("out");
    let bins = bin("hps-master").parent().unwrap().to_path_buf();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/gpu-check.sh");
    // Debug binaries train ~20x slower than release: smaller sizes still,
    // and up to 10 minutes on a loaded machine.
    let mut check = Proc::spawn_cmd(
        "gpu-check.sh --dry-run",
        Command::new(&script)
            .args(["--dry-run", "--out", arg(&out)])
            .args([
                "--correct-train",
                "128",
                "--val-size",
                "100",
                "--speed-train",
                "256",
            ])
            .args(["--slots-train", "64", "--slots-trials", "3"])
            .env("HPS_BIN_DIR", &bins)
            .env("FASHION_MNIST", &data)
            .env("PYTHON", "python3"),
        &tmp.path().join("gpu-check.out"),
    );
    let status = check.wait(Duration::from_secs(600));
    assert!(
        status.success(),
        "gpu-check.sh --dry-run failed:\n{}",
        check.log_text()
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("gpu-check.json")).unwrap())
            .unwrap();
    assert_eq!(report["dry_run"], true);
    let log = check.log_text();
    let phases = &report["phases"];
    for p in ["env", "correctness", "resume", "speed", "slots"] {
        assert_eq!(phases[p]["status"], "ok", "{p}: {}\n{log}", phases[p]);
    }
    assert_eq!(phases["device_errors"]["status"], "skipped");
    assert!(phases["device_errors"]["why"]
        .as_str()
        .unwrap()
        .contains("no GPU"));

    // Every architecture ran on both sides; the CPU kernels give the same
    // numbers with 1 and 2 threads.
    let archs = phases["correctness"]["archs"].as_object().unwrap();
    assert_eq!(archs["convnets"]["trials"].as_array().unwrap().len(), 8);
    assert_eq!(archs["mlp"]["trials"].as_array().unwrap().len(), 1);
    for (name, a) in archs {
        assert_eq!(a["within_tolerance"], true, "{name}: {a}");
    }
    // A worker killed after a checkpoint resumed from it and ended where an
    // uninterrupted run ends.
    let resume = &phases["resume"];
    assert_eq!(resume["identical"], true, "{resume}");
    assert_eq!(resume["trial_log_says_resumed"], true, "{resume}");
    // One hps speed row per nf, and one slots row per slot count.
    let speed = phases["speed"]["rows"].as_array().unwrap();
    assert!(
        speed.iter().any(|r| r["impl"] == "hps" && r["nf"] == 8),
        "{speed:?}"
    );
    let slots = phases["slots"]["rows"].as_array().unwrap();
    for s in [1, 2] {
        let row = slots
            .iter()
            .find(|r| r["impl"] == "hps" && r["slots"] == s)
            .unwrap_or_else(|| panic!("no hps row for {s} slots: {slots:?}"));
        assert_eq!(row["trials"], 3, "{row}");
        assert!(row["samples_per_s"].as_f64().unwrap() > 0.0, "{row}");
    }
}
