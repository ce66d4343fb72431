//! Issue 10, sections 2 and 5: files in the study directory that cannot be
//! read (a directory, a FIFO, invalid UTF-8, a symlink, a file over the size
//! cap), a damaged lease and a forged index. Each is quarantined with one
//! message, nothing blocks a resume, and the study finishes. These start the
//! real binaries.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hps_common::TrialStatus;
use hps_tests::{
    assert_contains_all, dir_names, read_results, runs_per_trial, spawn_master, temp_study, Cluster,
};
use hps_tests::{trial_file, trial_ids};

const BRANIN: &str = r#"{"format_version":1,"name":"hostile",
  "space":{"x0":{"type":"float","low":-5,"high":10},"x1":{"type":"float","low":0,"high":15}},
  "objective":{"metric":"value","direction":"minimize"},
  "sampler":{"kind":"random","seed":5},"budget":{"trials":6},
  "mode":{"kind":"async","queue":4},
  "trainer":{"kind":"function","name":"branin"}}"#;

const FAST: &[&str] = &["--rescan", "0.2", "--lease-interval", "0.3"];

/// A study whose master recorded and published four settings
/// (`t000000`..`t000003`) and then stopped cleanly, with no worker yet.
fn recorded_study() -> (tempfile::TempDir, PathBuf) {
    hps_tests::recorded_study(BRANIN, 4)
}

/// Run the study to the end with one master and one worker.
fn finish(study: &Path, logs: &Path) -> String {
    let c = Cluster::start(study, logs, "0.2", &[("w0", &[])]);
    c.finish(Duration::from_secs(90))
}

/// Every one of the six trials has exactly one complete result.
fn assert_all_done_once(study: &Path) {
    let results = read_results(study);
    assert_eq!(results.len(), 6, "{results:?}");
    assert!(results.iter().all(|r| r.status == TrialStatus::Complete));
    assert_eq!(trial_ids(study, "settings").len(), 6);
    let runs = runs_per_trial(study);
    assert!(runs.values().all(|n| *n <= 2), "{runs:?}");
}

fn quarantined(study: &Path) -> Vec<String> {
    dir_names(&study.join("quarantine"))
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

/// A worker "published" four results that can never be read: a directory,
/// invalid UTF-8, a sparse file over the 64 MiB cap and a FIFO. Before,
/// the master retried them as transient I/O errors forever, logging a
/// warning at every scan, and the study never finished. Now each is
/// quarantined (the big one without being read), its trial re-run, and a
/// damaged record in settings/ is re-created instead of stopping the master.
#[test]
fn unreadable_results_and_settings_are_quarantined_and_the_study_finishes() {
    let (tmp, study) = recorded_study();
    let result = |id: &str| {
        let p = trial_file(&study, "results", id);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        p
    };
    for id in ["t000000", "t000001", "t000002", "t000003"] {
        fs::remove_file(study.join("pending").join(format!("{id}.json"))).unwrap();
    }
    fs::create_dir(result("t000000")).unwrap();
    fs::write(result("t000001"), b"{\"trial_id\": \"t00000\xff\"}").unwrap();
    let big = fs::File::create(result("t000002")).unwrap();
    big.set_len(200 << 20).unwrap();
    mkfifo(&result("t000003"));
    // And a record the master cannot read: not UTF-8.
    fs::write(trial_file(&study, "settings", "t000001"), b"\xfe\xff").unwrap();

    let log = finish(&study, tmp.path());
    assert_all_done_once(&study);
    let q = quarantined(&study);
    for name in [
        "results-t000-t000000.json",
        "results-t000-t000001.json",
        "results-t000-t000002.json",
        "results-t000-t000003.json",
        "settings-t000-t000001.json",
    ] {
        assert!(q.iter().any(|n| n.starts_with(name)), "{name} not in {q:?}");
    }
    assert_contains_all(
        &log,
        &[
            "is unusable: it is a directory",
            "over the 64 MiB cap",
            "not UTF-8",
            "a socket or FIFO",
        ],
    );
    let warnings = log.lines().filter(|l| l.contains("WARN")).count();
    assert!(warnings < 20, "a warning per scan, not once:\n{log}");
}

/// `master.json` truncated, garbage, empty, a directory, or of an unknown
/// version. Before, the master refused to start, forever, with no hint.
/// Now each is taken as a stale lease: watched for three lease intervals,
/// quarantined, and the master runs.
#[test]
fn a_damaged_master_json_never_blocks_a_resume() {
    type Damage<'a> = &'a dyn Fn(&Path);
    let damages: [(&str, Damage); 5] = [
        ("truncated", &|p| {
            fs::write(p, r#"{"format_version":1,"host":"h"#).unwrap()
        }),
        ("garbage", &|p| fs::write(p, b"\x00\x01 not json").unwrap()),
        ("empty", &|p| fs::write(p, "").unwrap()),
        ("a directory", &|p| fs::create_dir(p).unwrap()),
        ("version 99", &|p| {
            fs::write(p, r#"{"format_version":99,"host":"h","pid":1,"seq":3}"#).unwrap()
        }),
    ];
    for (what, damage) in damages {
        let (tmp, study) = temp_study(BRANIN);
        damage(&study.join("master.json"));
        let log = finish(&study, tmp.path());
        assert_all_done_once(&study);
        assert_contains_all(
            &log,
            &[
                "treating it as a stale lease",
                "moved the unreadable lease to quarantine/",
            ],
        );
        assert!(
            quarantined(&study)
                .iter()
                .any(|n| n.starts_with("-master.json") || n.contains("master.json")),
            "{what}: {:?}",
            quarantined(&study)
        );
        assert!(
            !study.join("master.json").exists(),
            "{what}: released at the end"
        );
    }
}

/// A forged record: `settings/t000001.json` claiming index 50,000,000, and
/// `settings/t50000000.json` with that index. Before, the master obeyed
/// the index and re-created every record below it (22,444 files, 89 MB in
/// 20 s) and ignored SIGTERM. Now both are quarantined and the budget of
/// six holds.
#[test]
fn an_index_bomb_in_settings_is_quarantined_not_obeyed() {
    let (tmp, study) = recorded_study();
    let record = trial_file(&study, "settings", "t000001");
    let text = fs::read_to_string(&record).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["index"] = 50_000_000.into();
    fs::write(&record, v.to_string()).unwrap();
    v["trial_id"] = "t50000000".into();
    let bomb = trial_file(&study, "settings", "t50000000");
    fs::create_dir_all(bomb.parent().unwrap()).unwrap();
    fs::write(bomb, v.to_string()).unwrap();

    let log = finish(&study, tmp.path());
    assert_all_done_once(&study);
    let q = quarantined(&study);
    assert!(
        q.iter()
            .any(|n| n.starts_with("settings-t000-t000001.json")),
        "{q:?}"
    );
    assert!(
        q.iter()
            .any(|n| n.starts_with("settings-t50000-t50000000.json")),
        "{q:?}"
    );
    assert_contains_all(&log, &["must agree", "beyond the budget of 6 trials"]);
}

/// A directory named like a claim in running/, and `finished.json` as a
/// directory. Before, the master exited when it tried to re-queue the
/// claim or write finished.json. Now both are moved to quarantine/.
#[test]
fn a_claim_or_finished_json_that_is_a_directory_does_not_stop_the_master() {
    let (tmp, study) = temp_study(BRANIN);
    fs::create_dir(study.join("running/t000000@ghost.json")).unwrap();
    fs::create_dir(study.join("finished.json")).unwrap();
    let mut args = FAST.to_vec();
    args.extend(["--worker-grace", "1"]);
    let mut m = spawn_master(&study, &tmp.path().join("m.log"), &args);
    let mut w = hps_tests::spawn_worker(
        &study,
        "w0",
        &tmp.path().join("w0.log"),
        &["--rescan", "0.2"],
    );
    m.wait_ok(Duration::from_secs(90));
    w.wait_ok(Duration::from_secs(60));
    assert_all_done_once(&study);
    assert!(study.join("finished.json").is_file());
    let q = quarantined(&study);
    assert!(
        q.iter()
            .any(|n| n.starts_with("-finished.json") || n.contains("finished.json")),
        "{q:?}"
    );
    assert!(q.iter().any(|n| n.contains("t000000@ghost.json")), "{q:?}");
}
