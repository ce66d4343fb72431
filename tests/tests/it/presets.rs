//! The built-in presets (issue 12 §2) end to end: every `-quick` preset
//! passes `init` as written, runs on generated IDX data with two real
//! workers, and gets its HTML report; `init --list-presets` lists every
//! study file in `examples/` with its estimated CPU time.
//!
//! To keep the test short, each preset runs from a copy of its study.json
//! with 1 epoch, 2 trials (the first two of its grid, or two random draws)
//! and 64 training examples; everything else (space, sampler, model,
//! hypothesis, exercise) is as written. `study.json` cannot be edited after
//! init (docs/study-file.md, "Editing a study after init"), so the copy is
//! a second study created with `--study`.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hps_common::TrialStatus;
use hps_tests::{
    arg, assert_contains_all, cnn_args, example_presets, hps_master, idx_data, init_from_file,
    read_results, run_study, stderr_err, stdout_ok,
};
use serde_json::{json, Value};

/// Presets run at once (each a master and two one-thread workers).
const PARALLEL: usize = 1;

/// The names `init --list-presets` prints, in its order.
fn listed_presets() -> Vec<String> {
    let text = stdout_ok(hps_master(&["init", "--list-presets"]));
    text.lines()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn list_presets_shows_every_study_file_with_its_estimate() {
    let text = stdout_ok(hps_master(&["init", "--list-presets"]));
    let listed = listed_presets();
    let mut files = example_presets();
    let mut sorted = listed.clone();
    sorted.sort();
    files.sort();
    assert_eq!(sorted, files, "the list and examples/ differ:\n{text}");
    for name in &listed {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))
            .unwrap();
        let time = if name == "branin" { "seconds" } else { "CPU" };
        assert!(line.contains(time), "{line}");
        if name.ends_with("-quick") {
            assert!(
                line.contains(" s CPU") || line.contains(" min CPU"),
                "{line}"
            );
        }
    }
    assert_contains_all(&text, &["2 workers: half", "--preset NAME"]);
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/presets.md");
    let docs = std::fs::read_to_string(docs).unwrap();
    for name in &listed {
        assert!(
            docs.contains(&format!("| `{name}` |")),
            "{name} missing from docs/presets.md"
        );
    }
    // Listing creates nothing and needs no directory; init without one
    // says what to give.
    let err = stderr_err(hps_master(&["init"]));
    assert!(
        err.contains("--list-presets") || err.contains("<DIR>"),
        "{err}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let err = stderr_err(hps_master(&[
        "init",
        arg(&tmp.path().join("x")),
        "--list-presets",
    ]));
    assert!(err.contains("cannot be used with"), "{err}");
}

/// `study` with 1 epoch, at most 2 trials and tiny data sizes.
fn shrunk(mut study: Value) -> Value {
    study["budget"]["epochs"] = json!(1);
    study["budget"]["trials"] = json!(2);
    let d = &mut study["trainer"]["defaults"];
    d["train_size"] = json!(64);
    d["val_size"] = json!(32);
    d["test_size"] = json!(32);
    study
}

/// Init `name` as written, then run a shrunk copy with two workers and
/// build its report; returns what went wrong, if anything.
fn run_quick_preset(name: &str, root: &Path, data: &Path) -> Result<(), String> {
    let written = root.join(format!("{name}-as-written"));
    let out = hps_master(&["init", arg(&written), "--preset", name]);
    if !out.status.success() {
        return Err(format!(
            "init --preset {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = std::fs::read_to_string(written.join("study.json")).map_err(|e| e.to_string())?;
    let study: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let file = root.join(format!("{name}.json"));
    std::fs::write(&file, shrunk(study).to_string()).map_err(|e| e.to_string())?;
    let dir = root.join(name);
    init_from_file(&dir, &file);
    let logs = root.join(format!("{name}-logs"));
    std::fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
    let args = cnn_args(data);
    run_study(
        &dir,
        &logs,
        "0.2",
        &[("w0", &args), ("w1", &args)],
        Duration::from_secs(240),
    );
    let results = read_results(&dir);
    if results.len() != 2 {
        return Err(format!("{name}: {} results, expected 2", results.len()));
    }
    for r in &results {
        if matches!(r.status, TrialStatus::Failed | TrialStatus::Invalid) {
            return Err(format!(
                "{name}: trial {} ended {:?}: {:?}",
                r.trial_id, r.status, r.error
            ));
        }
    }
    stdout_ok(hps_master(&["report", arg(&dir)]));
    let html = std::fs::read_to_string(dir.join("report.html")).map_err(|e| e.to_string())?;
    if html.len() < 20_000 || !html.contains(name) {
        return Err(format!("{name}: report.html has {} bytes", html.len()));
    }
    Ok(())
}

/// Issue 12's acceptance: every `-quick` preset inits, runs one epoch on
/// generated IDX data with two workers, and gets its report.
#[test]
fn every_quick_preset_runs_and_reports() {
    let (after, quick): (Vec<String>, Vec<String>) = listed_presets()
        .into_iter()
        .filter(|n| n.ends_with("-quick"))
        .partition(|n| n.starts_with("hypothesis-transfer"));
    assert!(quick.len() >= 20 && after.len() == 1, "{quick:?} {after:?}");
    let tmp = tempfile::tempdir().unwrap();
    let data = idx_data(tmp.path(), 128, 64, 12);
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..PARALLEL {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(name) = quick.get(i) else { break };
                // A panic inside (a helper's assert) is a failure too.
                let r = std::panic::catch_unwind(|| run_quick_preset(name, tmp.path(), &data))
                    .unwrap_or_else(|_| Err(format!("{name}: panicked (see above)")));
                if let Err(e) = r {
                    failures.lock().unwrap().push(e);
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap();
    // Transfer studies start from a sibling study's best trial
    // (`../base-model-quick`), which has finished by now.
    for name in &after {
        if let Err(e) = run_quick_preset(name, tmp.path(), &data) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
