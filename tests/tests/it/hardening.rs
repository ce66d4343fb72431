//! Issue 25, hardening round two: a damaged newest record, a non-finite
//! objective, a hand-edited queue file, protocol folders removed under a
//! running study, study files that are devices or pipes, a categorical of
//! a million choices in the report, a master whose clock is ahead, a full
//! disk during a checkpoint, a shard folder that is a link, and intervals
//! too short to be sane. Each starts the real binaries.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hps_common::{TrialSetting, TrialStatus};
use hps_tests::{
    arg, assert_contains_all, dir_names, hps_master, hps_worker, idx_data, json_stems, read_result,
    read_results, runs_per_trial, spawn_master, spawn_worker, stderr_err, stdout_ok, temp_study,
    trial_file, trial_ids, wait_until, Cluster, Proc,
};

const FAST: &[&str] = &["--rescan", "0.2", "--lease-interval", "0.3"];

/// Branin, random search, six trials, four in flight; each evaluation
/// sleeps `sleep` seconds.
fn branin(sleep: f64, x0: (f64, f64)) -> String {
    format!(
        r#"{{"format_version":1,"name":"hardening",
  "space":{{"x0":{{"type":"float","low":{},"high":{}}},"x1":{{"type":"float","low":0,"high":15}}}},
  "objective":{{"metric":"value","direction":"minimize"}},
  "sampler":{{"kind":"random","seed":5}},"budget":{{"trials":6}},
  "mode":{{"kind":"async","queue":4}},
  "trainer":{{"kind":"function","name":"branin","sleep_s":{sleep}}}}}"#,
        x0.0, x0.1
    )
}

/// A study whose master recorded and published four settings
/// (`t000000`..`t000003`) and then stopped cleanly, with no worker yet.
fn recorded(sleep: f64) -> (tempfile::TempDir, PathBuf) {
    hps_tests::recorded_study(&branin(sleep, (-5.0, 10.0)), 4)
}

fn record(study: &Path, id: &str) -> TrialSetting {
    let p = trial_file(study, "settings", id);
    hps_common::parse_versioned(&p, &fs::read_to_string(&p).unwrap()).unwrap()
}

fn quarantined(study: &Path) -> Vec<String> {
    dir_names(&study.join("quarantine"))
}

/// Defect 1. The newest record (`t000003`) is damaged while a worker runs
/// its trial. Before, the master took the next index from the readable
/// records, proposed index 3 again and published it, and a second worker
/// ran the trial at the same time in the same checkpoint directory. Now
/// the record is restored from the running copy and no trial runs twice.
#[test]
fn a_damaged_newest_record_is_restored_and_its_trial_runs_once() {
    let (tmp, study) = recorded(3.0);
    let original = record(&study, "t000003");
    // Only t000003 is claimable: the others wait outside the study (the
    // master re-publishes them as lost).
    for id in ["t000000", "t000001", "t000002"] {
        fs::remove_file(study.join("pending").join(format!("{id}.json"))).unwrap();
    }
    let mut w0 = spawn_worker(
        &study,
        "w0",
        &tmp.path().join("w0.log"),
        &["--rescan", "0.2"],
    );
    wait_until(Duration::from_secs(30), "w0 runs t000003", || {
        study.join("running/t000003@w0.json").is_file()
    });
    fs::write(
        trial_file(&study, "settings", "t000003"),
        b"{\"format_version\": 1, \"trial_",
    )
    .unwrap();

    let mut m = spawn_master(&study, &tmp.path().join("m.log"), FAST);
    let mut w1 = spawn_worker(
        &study,
        "w1",
        &tmp.path().join("w1.log"),
        &["--rescan", "0.2"],
    );
    m.wait_ok(Duration::from_secs(120));
    w0.wait_ok(Duration::from_secs(60));
    w1.wait_ok(Duration::from_secs(60));

    let runs = runs_per_trial(&study);
    assert!(
        runs.values().all(|n| *n == 1),
        "a trial ran twice: {runs:?}"
    );
    let results = read_results(&study);
    assert_eq!(results.len(), 6);
    assert!(
        results.iter().all(|r| r.status == TrialStatus::Complete),
        "{results:?}"
    );
    assert_eq!(trial_ids(&study, "settings").len(), 6);
    assert_eq!(record(&study, "t000003").params, original.params);
    assert_eq!(read_result(&study, "t000003").params, original.params);
    assert!(
        quarantined(&study)
            .iter()
            .any(|n| n.starts_with("settings-t000-t000003.json")),
        "{:?}",
        quarantined(&study)
    );
    assert_contains_all(&m.log_text(), &["restored the trial's lost record"]);
}

/// Defect 2. Branin on x0 ∈ [-1e200, 1e200] overflows. Before, the worker
/// wrote `"value": null` in a `complete` result, the master could not read
/// it, quarantined it and re-ran the trial forever. Now `init` warns, each
/// such trial ends `diverged` with the reason, and the study finishes.
#[test]
fn an_objective_that_overflows_ends_diverged_and_the_study_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let study = tmp.path().join("study");
    let file = tmp.path().join("study.json");
    fs::write(&file, branin(0.0, (-1e200, 1e200))).unwrap();
    let out = hps_master(&["init", arg(&study), "--study", arg(&file)]);
    assert!(out.status.success());
    let warned = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_contains_all(
        &warned,
        &["branin is not a finite number at x0 = ", "diverged"],
    );

    Cluster::start(&study, tmp.path(), "0.2", &[("w0", &[])]).finish(Duration::from_secs(90));
    let results = read_results(&study);
    assert_eq!(results.len(), 6);
    for r in &results {
        assert_eq!(r.status, TrialStatus::Diverged, "{r:?}");
        assert!(r.objective.is_none());
        let e = r.error.as_deref().unwrap_or_default();
        assert!(
            e.contains("`value`") && e.contains("not a finite number"),
            "{e}"
        );
    }
    assert!(quarantined(&study).is_empty(), "{:?}", quarantined(&study));
}

/// Defect 3. A queued copy edited by hand (`x0` set to 9.5) and a result
/// planted with other parameters. Before, the worker ran the edited
/// parameters and the master accepted them, so export paired the recorded
/// `x0` with another setting's objective. Now the record rules: the worker
/// runs its parameters, the master refuses a result of other ones.
#[test]
fn a_hand_edited_queue_file_never_changes_what_is_recorded_or_exported() {
    let (tmp, study) = recorded(0.0);
    let edited = study.join("pending/t000001.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&edited).unwrap()).unwrap();
    v["params"]["x0"] = 9.5.into();
    fs::write(&edited, v.to_string()).unwrap();
    // A result of other parameters for t000002, whose queue copy is gone.
    fs::remove_file(study.join("pending/t000002.json")).unwrap();
    let forged = serde_json::json!({
        "format_version": 1, "trial_id": "t000002", "status": "complete",
        "params": {"x0": 9.5, "x1": 2.475}, "seed": 0, "objective": 0.0,
        "metrics": {"value": 0.0}, "wall_time_s": 0.1, "device": "cpu",
        "worker": "someone", "attempt": 1, "finished_at_unix": 0.0
    });
    let planted = trial_file(&study, "results", "t000002");
    fs::create_dir_all(planted.parent().unwrap()).unwrap();
    fs::write(&planted, forged.to_string()).unwrap();

    let mut c = Cluster::start(&study, tmp.path(), "0.2", &[("w0", &[])]);
    c.master.wait_ok(Duration::from_secs(90));
    let wlog = c.workers[0].log_text();
    drop(c);
    for id in ["t000001", "t000002"] {
        let r = read_result(&study, id);
        assert_eq!(r.params, record(&study, id).params, "{id}");
        assert_ne!(r.params["x0"], serde_json::json!(9.5), "{id}");
    }
    assert_contains_all(&wlog, &["differs from the trial's record"]);
    assert!(
        quarantined(&study)
            .iter()
            .any(|n| n.starts_with("results-t000-t000002.json")),
        "{:?}",
        quarantined(&study)
    );
    let csv = stdout_ok(hps_master(&["export", arg(&study)]));
    assert!(!csv.contains("9.5,"), "{csv}");
}

/// Edge 4. `rm -rf pending/ running/ heartbeats/` under a running study.
/// Before, the master exited ("failed to write …/pending/t000024.json")
/// and the workers idled in silence. Now the folders are created again
/// and the study finishes with every trial run once.
#[test]
fn protocol_folders_removed_under_a_running_study_are_created_again() {
    let json = branin(0.3, (-5.0, 10.0)).replace("\"trials\":6", "\"trials\":16");
    let (tmp, study) = temp_study(&json);
    let c = Cluster::start(&study, tmp.path(), "0.2", &[("w0", &[]), ("w1", &[])]);
    wait_until(Duration::from_secs(60), "three results", || {
        trial_ids(&study, "results").len() >= 3
    });
    for sub in ["pending", "running", "heartbeats"] {
        fs::remove_dir_all(study.join(sub)).unwrap();
    }
    let log = c.finish(Duration::from_secs(120));
    assert_contains_all(&log, &["was gone (removed by hand?); created it again"]);
    let results = read_results(&study);
    assert_eq!(results.len(), 16);
    assert!(results.iter().all(|r| r.status == TrialStatus::Complete));
    let runs = runs_per_trial(&study);
    assert!(runs.values().all(|n| *n == 1), "{runs:?}");
}

/// Edge 4, the worker's side: with no `pending/` it says so, once.
#[test]
fn a_worker_says_when_the_queue_folder_is_gone() {
    let (tmp, study) = temp_study(&branin(0.0, (-5.0, 10.0)));
    let w = spawn_worker(
        &study,
        "w0",
        &tmp.path().join("w0.log"),
        &["--rescan", "0.2"],
    );
    wait_until(Duration::from_secs(30), "the worker's start", || {
        w.log_text().contains("worker started")
    });
    fs::remove_dir_all(study.join("pending")).unwrap();
    wait_until(Duration::from_secs(30), "the worker's warning", || {
        w.log_text().contains("pending/ folder is gone")
    });
    fs::create_dir(study.join("pending")).unwrap();
    wait_until(Duration::from_secs(30), "the worker sees it back", || {
        w.log_text().contains("pending/ is back")
    });
    assert_eq!(w.log_text().matches("folder is gone").count(), 1);
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

/// Edge 5. `study.json` a link to /dev/zero or /dev/urandom, or a FIFO.
/// Before: "is not an hps study directory (no study.json)", which is
/// false; `init --study /dev/zero` read until memory ran out. Now each
/// message says what the file is, and a pipe still works for `init`.
#[test]
fn study_files_that_are_devices_or_pipes_are_named_for_what_they_are() {
    for (what, expect) in [
        (
            "/dev/zero",
            "a symbolic link to `/dev/zero`, which is a device",
        ),
        (
            "/dev/urandom",
            "a symbolic link to `/dev/urandom`, which is a device",
        ),
        ("fifo", "is a socket or FIFO, not a study file"),
    ] {
        let (_tmp, study) = temp_study(&branin(0.0, (-5.0, 10.0)));
        let file = study.join("study.json");
        fs::remove_file(&file).unwrap();
        if what == "fifo" {
            mkfifo(&file);
        } else {
            std::os::unix::fs::symlink(what, &file).unwrap();
        }
        for cmd in [&["status"][..], &["run"], &["best"]] {
            let mut args = cmd.to_vec();
            args.push(arg(&study));
            let err = stderr_err(hps_master(&args));
            assert_contains_all(&err, &[expect, "study.recorded.json"]);
            assert!(!err.contains("no study.json"), "{err}");
        }
        let err = stderr_err(hps_worker(&[arg(&study), "--once"]));
        assert_contains_all(&err, &[expect]);
    }
    let tmp = tempfile::tempdir().unwrap();
    let err = stderr_err(hps_master(&[
        "init",
        arg(&tmp.path().join("s")),
        "--study",
        "/dev/zero",
    ]));
    assert_contains_all(
        &err,
        &[
            "`/dev/zero` is a device, not a study file",
            "a pipe such as",
        ],
    );
    // A pipe is a study file like any other.
    let json = tmp.path().join("base.json");
    fs::write(&json, branin(0.0, (-5.0, 10.0))).unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "'{}' init '{}' --study <(cat '{}')",
            hps_tests::bin("hps-master").display(),
            tmp.path().join("piped").display(),
            json.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(tmp.path().join("piped/study.json").is_file());
}

/// Edge 6. A categorical of a million choices. Before, the report of 20
/// trials was 39 MB (a grid line per choice in the slice plot, 11.7 MB of
/// parallel coordinates). Now figures draw the choices that occur.
#[test]
fn a_categorical_of_a_million_choices_makes_a_report_proportional_to_the_trials() {
    let choices: Vec<String> = (0..1_000_000)
        .map(|i| format!("{}", -5.0 + i as f64 * 1.5e-5))
        .collect();
    let json = format!(
        r#"{{"format_version":1,"name":"wide",
  "space":{{"x0":{{"type":"categorical","choices":[{}]}},"x1":{{"type":"float","low":0,"high":15}}}},
  "objective":{{"metric":"value","direction":"minimize"}},
  "sampler":{{"kind":"random","seed":5}},"budget":{{"trials":20}},
  "mode":{{"kind":"async","queue":4}},
  "trainer":{{"kind":"function","name":"branin"}}}}"#,
        choices.join(",")
    );
    let (tmp, study) = temp_study(&json);
    Cluster::start(&study, tmp.path(), "0.2", &[("w0", &[])]).finish(Duration::from_secs(180));
    let page = tmp.path().join("page.html");
    stdout_ok(hps_master(&["report", arg(&study), "-o", arg(&page)]));
    let size = fs::metadata(&page).unwrap().len();
    assert!(size < 2_000_000, "report of 20 trials is {size} bytes");
}

/// Edge 7. A master whose clock is an hour ahead (libfaketime) used to
/// delete other hosts' fresh temp files at start, and a worker writing
/// one at that moment died. Temp files are now aged on the filesystem's
/// clock.
#[test]
fn a_master_with_its_clock_ahead_keeps_fresh_temp_files() {
    let Some(lib) = faketime_lib() else {
        eprintln!("SKIPPED: libfaketime is not installed (Debian package faketime)");
        return;
    };
    let (tmp, study) = temp_study(&branin(0.0, (-5.0, 10.0)));
    let fresh = study.join("heartbeats/.tmp.wy.json.1.2.3");
    fs::write(&fresh, b"{").unwrap();
    let mut cmd = Command::new(hps_tests::bin("hps-master"));
    cmd.args(["run", arg(&study)])
        .args(FAST)
        .env("RUST_LOG", "info")
        .env("LD_PRELOAD", &lib)
        .env("FAKETIME", "+1h")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    let mut m = Proc::spawn_cmd("m", &mut cmd, &tmp.path().join("m.log"));
    wait_until(
        Duration::from_secs(30),
        "the master's first proposals",
        || json_stems(&study.join("pending")).len() == 4,
    );
    assert!(m.log_text().contains("master started"), "{}", m.log_text());
    assert!(
        fresh.is_file(),
        "a fresh temp file was swept:\n{}",
        m.log_text()
    );
    m.signal(libc::SIGTERM);
    m.wait_ok(Duration::from_secs(30));
}

/// libfaketime's preload library, where installed.
fn faketime_lib() -> Option<PathBuf> {
    [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// Edge 8. The disk fills while a cnn trial writes its checkpoint (and
/// stays full: a filler keeps taking what is freed). The worker stops,
/// and its error names the checkpoint that failed first, not the queue
/// file it could not write after it.
#[test]
fn a_full_disk_during_a_checkpoint_names_the_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("small");
    fs::create_dir(&mnt).unwrap();
    let Some(_mount) = Tmpfs::mount(&mnt, "8m") else {
        return;
    };
    let data = idx_data(tmp.path(), 200, 50, 3);
    let study = mnt.join("study");
    let json = r#"{"format_version":1,"name":"full",
      "space":{"lr":{"type":"float","low":0.01,"high":0.1,"log":true}},
      "objective":{"metric":"val_error","direction":"minimize"},
      "sampler":{"kind":"random","seed":1},"budget":{"trials":1,"epochs":200},
      "trainer":{"kind":"cnn","defaults":{"nf":16,"train_size":150,"val_size":50,"test_size":0}}}"#;
    let file = tmp.path().join("full.json");
    fs::write(&file, json).unwrap();
    stdout_ok(hps_master(&["init", arg(&study), "--study", arg(&file)]));
    let m = spawn_master(&study, &tmp.path().join("m.log"), FAST);
    let mut args = vec!["--rescan", "0.2"];
    args.extend(hps_tests::cnn_args(&data));
    let mut w = spawn_worker(&study, "w0", &tmp.path().join("w0.log"), &args);
    wait_until(
        Duration::from_secs(60),
        "the trial's first checkpoint",
        || {
            study
                .join("checkpoints/t000000")
                .read_dir()
                .is_ok_and(|mut d| d.next().is_some())
        },
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let filler = {
        let (stop, path) = (stop.clone(), mnt.join("filler"));
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = fs::File::create(path).unwrap();
            let chunk = vec![1u8; 4096];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if f.write_all(&chunk).is_err() {
                    std::thread::yield_now();
                }
            }
        })
    };
    let st = w.wait(Duration::from_secs(120));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    filler.join().unwrap();
    let _ = fs::remove_file(mnt.join("filler"));
    assert!(
        !st.success(),
        "the worker went on on a full disk:\n{}",
        w.log_text()
    );
    let log = w.log_text();
    let last = log
        .lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert_contains_all(
        last,
        &[
            "could not save its checkpoint",
            "checkpoints/t000000",
            "No space left",
        ],
    );
    assert!(!last.contains("pending/"), "{last}");
    m.signal(libc::SIGKILL);
}

/// A tmpfs mounted for one test (root only), unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mount a tmpfs of `size` on `at`, or print SKIPPED and return None
    /// where this process may not mount.
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                arg(at),
            ])
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs(at.to_path_buf())),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs here: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Edge 9. `results/t000` a link out of the study. Before, results and
/// logs landed outside it. Now nothing is written through it and the
/// message names the folder and what to do.
#[test]
fn a_shard_folder_that_is_a_link_is_refused_and_nothing_lands_outside() {
    let (tmp, study) = recorded(0.0);
    let outside = tmp.path().join("elsewhere");
    fs::create_dir(&outside).unwrap();
    let shard = study.join("results/t000");
    let _ = fs::remove_dir(&shard);
    std::os::unix::fs::symlink(&outside, &shard).unwrap();
    let out = hps_worker(&[arg(&study), "--id", "w0", "--once", "--rescan", "0.2"]);
    let err = stderr_err(out);
    assert_contains_all(&err, &["results/t000", "symbolic link", "mv "]);
    assert!(dir_names(&outside).is_empty(), "{:?}", dir_names(&outside));
}

/// Edge 10. `--heartbeat 1e-9` used to be accepted (about 90 synced beats
/// a second). Every interval now has a lower bound, said in the message.
#[test]
fn intervals_below_their_lower_bound_are_refused() {
    let (_tmp, study) = temp_study(&branin(0.0, (-5.0, 10.0)));
    let err = stderr_err(hps_worker(&[arg(&study), "--heartbeat", "1e-9"]));
    assert_contains_all(&err, &["--heartbeat", "must be at least 0.1 seconds"]);
    for (flag, min) in [
        ("--rescan", "0.05"),
        ("--poll", "0.05"),
        ("--lease-interval", "0.1"),
        ("--worker-grace", "0.5"),
    ] {
        let err = stderr_err(hps_master(&["run", arg(&study), flag, "0.001"]));
        assert_contains_all(&err, &[flag, &format!("must be at least {min} seconds")]);
    }
}
