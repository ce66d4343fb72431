//! Careless users (issue 10 section 6): two workers given one id, a study
//! file edited after init, a budget raised while a worker is quicker than
//! the master. Each is refused with a message that says what to do, or
//! simply works. These start the real binaries.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hps_tests::trial_ids;
use hps_tests::{
    arg, bin, copy_dir, hps_master, hps_worker, json_stems, read_results, runs_per_trial,
    spawn_master, spawn_worker, stderr_err, stdout_ok, temp_study, wait_until, Proc,
};

const BRANIN: &str = r#"{"format_version":1,"name":"careless",
  "space":{"x0":{"type":"float","low":-5,"high":10},"x1":{"type":"float","low":0,"high":15}},
  "objective":{"metric":"value","direction":"minimize"},
  "sampler":{"kind":"random","seed":3},"budget":{"trials":TRIALS},
  "mode":{"kind":"async","queue":2},
  "trainer":{"kind":"function","name":"branin","sleep_s":SLEEP}}"#;

fn branin(trials: u32, sleep: f64) -> String {
    BRANIN
        .replace("TRIALS", &trials.to_string())
        .replace("SLEEP", &sleep.to_string())
}

const WAIT: Duration = Duration::from_secs(60);

fn master(study: &Path, log: &Path, extra: &[&str]) -> Proc {
    let mut args = vec!["--rescan", "0.2", "--lease-interval", "0.3"];
    args.extend_from_slice(extra);
    spawn_master(study, log, &args)
}

fn worker(study: &Path, id: &str, log: &Path) -> Proc {
    spawn_worker(study, id, log, &["--rescan", "0.2", "--heartbeat", "0.2"])
}

/// The heartbeat of worker `id`, if it is there and readable.
fn heartbeat(study: &Path, id: &str) -> Option<hps_common::Heartbeat> {
    let p = study.join("heartbeats").join(format!("{id}.json"));
    let text = std::fs::read_to_string(&p).ok()?;
    hps_common::parse_versioned(&p, &text).ok()
}

/// Edit `study.json` in place: replace `from` by `to`.
fn edit_study(study: &Path, from: &str, to: &str) {
    let p = study.join("study.json");
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains(from), "`{from}` not in {text}");
    std::fs::write(&p, text.replace(from, to)).unwrap();
}

#[test]
fn a_second_worker_with_a_live_workers_id_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_t, study) = temp_study(&branin(2, 0.0));
    // No master: the first worker idles and beats.
    let first = worker(&study, "w", &tmp.path().join("first.log"));
    wait_until(WAIT, "the first worker's heartbeat", || {
        heartbeat(&study, "w").is_some_and(|hb| hb.pid == first.pid())
    });
    let e = stderr_err(hps_worker(&[
        arg(&study),
        "--id",
        "w",
        "--heartbeat",
        "0.2",
    ]));
    for part in [
        "worker id `w` is in use",
        "heartbeats/w.json",
        &format!("pid {}", first.pid()),
        "--id",
    ] {
        assert!(e.contains(part), "`{part}` missing from:\n{e}");
    }
    let hb = heartbeat(&study, "w").unwrap();
    assert_eq!(
        hb.pid,
        first.pid(),
        "the refused worker left the live one's heartbeat alone"
    );
}

#[test]
fn a_worker_restarted_with_its_id_after_a_crash_still_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let (_t, study) = temp_study(&branin(2, 0.0));
    // Killed on this host: its pid is gone, so the restart is immediate.
    let mut first = worker(&study, "w", &tmp.path().join("first.log"));
    wait_until(WAIT, "the first worker's heartbeat", || {
        heartbeat(&study, "w").is_some_and(|hb| hb.pid == first.pid())
    });
    first.kill9(WAIT);
    let second = worker(&study, "w", &tmp.path().join("second.log"));
    wait_until(WAIT, "the restarted worker's heartbeat", || {
        heartbeat(&study, "w").is_some_and(|hb| hb.pid == second.pid() && hb.seq > 0)
    });
    drop(second);
    // Killed on another host: its beat stands still, so it is taken over
    // after three of its intervals.
    let mut stale = heartbeat(&study, "w").unwrap();
    stale.host = "elsewhere".into();
    stale.interval_s = 0.1;
    std::fs::write(
        study.join("heartbeats/w.json"),
        hps_common::to_pretty_json(&stale),
    )
    .unwrap();
    let third = worker(&study, "w", &tmp.path().join("third.log"));
    wait_until(WAIT, "the worker that took over a stale id", || {
        heartbeat(&study, "w").is_some_and(|hb| hb.pid == third.pid() && hb.seq > 0)
    });
}

/// Two containers with one host name, each running its worker as pid 1,
/// used to get one default id `HOST-PID` and run every trial twice. Needs
/// `unshare` (PID and UTS namespaces); skipped where it is not allowed.
#[test]
fn two_hosts_with_one_hostname_and_pid_get_different_default_worker_ids() {
    let probe = Command::new("unshare")
        .args([
            "--uts",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "true",
        ])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: unshare --uts --pid is not allowed here");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_t, study) = temp_study(&branin(12, 0.3));
    let mut m = master(&study, &tmp.path().join("m.log"), &[]);
    let twin = |name: &str| {
        let script = format!(
            "hostname twin && exec {} {} --rescan 0.2 --heartbeat 0.2",
            arg(&bin("hps-worker")),
            arg(&study)
        );
        Proc::spawn(
            name,
            Path::new("unshare"),
            &[
                "--uts",
                "--pid",
                "--fork",
                "--kill-child",
                "--mount-proc",
                "sh",
                "-c",
                &script,
            ],
            &tmp.path().join(format!("{name}.log")),
        )
    };
    let mut twins = [twin("a"), twin("b")];
    m.wait_ok(WAIT);
    for t in &mut twins {
        t.wait_ok(WAIT);
    }
    let ids = json_stems(&study.join("heartbeats"));
    assert_eq!(ids.len(), 2, "one heartbeat per twin: {ids:?}");
    assert!(ids.iter().all(|id| id.starts_with("twin-1-")), "{ids:?}");
    let runs = runs_per_trial(&study);
    assert!(
        runs.values().all(|&n| n == 1),
        "no trial ran twice: {runs:?}"
    );
}

#[test]
fn editing_study_json_after_init_is_refused_unless_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let (_t, study) = temp_study(&branin(2, 0.0));
    assert!(
        study.join("study.recorded.json").is_file(),
        "recorded at init"
    );
    edit_study(&study, "\"seed\": 3", "\"seed\": 4");
    edit_study(&study, "\"minimize\"", "\"maximize\"");
    let run = |extra: &[&str]| {
        let mut args = vec!["run", arg(&study), "--rescan", "0.2"];
        args.extend_from_slice(extra);
        hps_master(&args)
    };
    for e in [
        stderr_err(run(&[])),
        stderr_err(hps_worker(&[arg(&study), "--id", "w"])),
    ] {
        for part in [
            "study.json` was edited",
            "objective.direction: \"minimize\" → \"maximize\"",
            "sampler.seed: 3 → 4",
            "study.recorded.json",
            "--accept-study-change",
        ] {
            assert!(e.contains(part), "`{part}` missing from:\n{e}");
        }
    }
    assert!(trial_ids(&study, "settings").is_empty(), "nothing ran");
    assert!(
        !study.join("master.json").exists(),
        "refused before the lease"
    );

    // Accepted: the edited study is recorded, and workers started after
    // that go along.
    let mut m = master(
        &study,
        &tmp.path().join("m.log"),
        &["--accept-study-change"],
    );
    wait_until(WAIT, "the master to record the edited study", || {
        m.log_text().contains("master started")
    });
    let mut w = worker(&study, "w", &tmp.path().join("w.log"));
    m.wait_ok(WAIT);
    w.wait_ok(WAIT);
    assert!(m.log_text().contains("sampler.seed: 3 → 4"));
    stdout_ok(run(&[]));
}

#[test]
fn raising_the_budget_is_the_one_edit_that_needs_no_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let (_t, study) = temp_study(&branin(2, 0.0));
    hps_tests::run_one_worker(&study, tmp.path(), WAIT);
    edit_study(&study, "\"trials\": 2", "\"trials\": 4");
    edit_study(&study, "\"name\": \"careless\"", "\"name\": \"renamed\"");
    hps_tests::run_one_worker(&study, tmp.path(), WAIT);
    assert_eq!(read_results(&study).len(), 4);
}

/// A study directory written by c53896b has no record of its study: the
/// first run records it instead of refusing.
#[test]
fn an_old_study_without_a_record_gets_one_on_its_first_run() {
    let tmp = tempfile::tempdir().unwrap();
    let study = tmp.path().join("function");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/c53896b/function"),
        &study,
    );
    assert!(!study.join("study.recorded.json").exists());
    hps_tests::run_one_worker(&study, tmp.path(), WAIT);
    assert!(study.join("study.recorded.json").is_file());
    edit_study(&study, "\"minimize\"", "\"maximize\"");
    let e = stderr_err(hps_master(&["run", arg(&study)]));
    assert!(e.contains("objective.direction"), "{e}");
}

/// The master removes a stale `finished.json` when it starts, but a
/// worker started first used to exit on it and miss the new trials.
#[test]
fn a_worker_started_before_the_master_after_a_budget_raise_runs_the_new_trials() {
    let tmp = tempfile::tempdir().unwrap();
    let (_t, study) = temp_study(&branin(2, 0.0));
    hps_tests::run_one_worker(&study, tmp.path(), WAIT);
    assert!(study.join("finished.json").is_file());
    edit_study(&study, "\"trials\": 2", "\"trials\": 4");

    let log = tmp.path().join("early.log");
    let mut w = worker(&study, "early", &log);
    wait_until(WAIT, "the early worker to start", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("worker started"))
    });
    let mut m = master(&study, &tmp.path().join("m2.log"), &[]);
    m.wait_ok(WAIT);
    w.wait_ok(WAIT);
    let new: Vec<String> = read_results(&study)
        .into_iter()
        .filter(|r| r.worker == "early")
        .map(|r| r.trial_id)
        .collect();
    assert_eq!(new, ["t000002", "t000003"], "{}", w.log_text());
}
