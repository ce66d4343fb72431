//! Bad input and crashes: each case gets one clear message naming the file,
//! and nothing is lost. These start the real binaries.

use std::path::Path;
use std::time::Duration;

use hps_common::{TrialResult, TrialStatus};
use hps_tests::{
    arg, cnn_args, dir_names, hps_master, idx_data, init_from_file, init_study, json_stems,
    read_result, read_results, runs_per_trial, spawn_master, spawn_worker, stderr_err, stdout_ok,
    temp_study, wait_until, Proc,
};
use hps_tests::{trial_file, trial_ids};

const BRANIN: &str = r#"{"format_version":1,"name":"faults",
  "space":{"x0":{"type":"float","low":-5,"high":10},"x1":{"type":"float","low":0,"high":15}},
  "objective":{"metric":"value","direction":"minimize"},
  "sampler":{"kind":"random","seed":3},"budget":{"trials":TRIALS},
  "mode":{"kind":"async","queue":2},
  "trainer":{"kind":"function","name":"branin","sleep_s":SLEEP}}"#;

fn init(tmp: &Path, trials: u32, sleep: f64) -> std::path::PathBuf {
    let study = tmp.join("study");
    init_study(
        &study,
        &BRANIN
            .replace("TRIALS", &trials.to_string())
            .replace("SLEEP", &sleep.to_string()),
    );
    study
}

/// `hps-master run` with the fast rescan and lease of these tests; log in
/// `<tmp>/<name>.log`.
fn master(study: &Path, tmp: &Path, name: &str, extra: &[&str]) -> Proc {
    let mut args = vec!["--rescan", "0.2", "--lease-interval", "0.3"];
    args.extend_from_slice(extra);
    spawn_master(study, &tmp.join(format!("{name}.log")), &args)
}

/// `hps-worker` with the fast rescan and heartbeat of these tests, and
/// `extra` arguments; log in `<tmp>/<log>.log`.
fn worker_with(study: &Path, tmp: &Path, id: &str, log: &str, extra: &[&str]) -> Proc {
    let mut args = vec!["--rescan", "0.2", "--heartbeat", "0.3"];
    args.extend_from_slice(extra);
    spawn_worker(study, id, &tmp.join(format!("{log}.log")), &args)
}

fn worker(study: &Path, tmp: &Path, id: &str) -> Proc {
    worker_with(study, tmp, id, id, &[])
}

/// A truncated setting file in pending/, a result with an unknown
/// format_version, a setting whose trial id tries to escape the directory
/// and a corrupt heartbeat: each is quarantined with a message naming it,
/// and every trial still ends with exactly one result.
#[test]
fn corrupt_files_are_quarantined_and_nothing_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let study = init(tmp.path(), 6, 0.0);

    // Let the master propose the first two trials, then stop it.
    let mut m = master(&study, tmp.path(), "m1", &[]);
    wait_until(Duration::from_secs(30), "two pending settings", || {
        json_stems(&study.join("pending")).len() >= 2
    });
    m.signal(libc::SIGTERM);
    m.wait_ok(Duration::from_secs(30));

    // Corrupt a pending setting (truncate it) ...
    let p0 = study.join("pending/t000000.json");
    let text = std::fs::read_to_string(&p0).unwrap();
    std::fs::write(&p0, &text[..text.len() / 2]).unwrap();
    // ... plant a setting whose trial id escapes the directory ...
    let evil = text.replace("\"t000000\"", "\"../../evil\"");
    std::fs::write(study.join("pending/t000077.json"), evil).unwrap();
    // ... a result from a future hps for trial t000001 ...
    let r1 = trial_file(&study, "results", "t000001");
    std::fs::write(&r1, r#"{"format_version": 99, "trial_id": "t000001"}"#).unwrap();
    // ... and a corrupt heartbeat.
    std::fs::write(study.join("heartbeats/ghost.json"), "{not json").unwrap();

    let mut m = master(&study, tmp.path(), "m2", &[]);
    let mut w = worker(&study, tmp.path(), "w0");
    m.wait_ok(Duration::from_secs(60));
    w.wait_ok(Duration::from_secs(30));

    let wlog = w.log_text();
    let mlog = m.log_text();
    assert!(
        wlog.contains("pending/t000000.json") || wlog.contains("running/t000000@w0.json"),
        "worker names the truncated file:\n{wlog}"
    );
    assert!(wlog.contains("quarantine"), "{wlog}");
    assert!(
        mlog.contains("results/t000/t000001.json") && mlog.contains("format_version"),
        "master names the bad result:\n{mlog}"
    );
    assert!(
        mlog.contains("heartbeats/ghost.json"),
        "master names the bad heartbeat:\n{mlog}"
    );
    assert!(!tmp.path().join("evil.json").exists() && !tmp.path().join("evil").exists());

    let settings = trial_ids(&study, "settings");
    assert_eq!(settings.len(), 6);
    assert_eq!(trial_ids(&study, "results"), settings, "no trial lost");
    for r in read_results(&study) {
        assert_eq!(r.status, TrialStatus::Complete);
    }
    let q = dir_names(&study.join("quarantine"));
    assert!(
        q.len() >= 4,
        "truncated setting, evil setting, future result, bad heartbeat: {q:?}"
    );
    stdout_ok(hps_master(&["status", arg(&study)]));
}

/// Out-of-domain hyperparameters (negative LR, batch 0) end the trial as
/// `invalid` with a message naming the parameter; the worker carries on.
#[test]
fn out_of_domain_hyperparameters_are_invalid_trials() {
    let (tmp, study) = temp_study(
        r#"{"format_version":1,"name":"domain",
           "space":{"lr":{"type":"categorical","choices":[-0.1, 0.05]},"batch_size":{"type":"categorical","choices":[0, 16]}},
           "objective":{"metric":"val_error","direction":"minimize"},
           "sampler":{"kind":"grid"},"mode":{"kind":"async","queue":4},
           "trainer":{"kind":"cnn","defaults":{"nf":2,"train_size":80,"val_size":40,"test_size":40}}}"#,
    );
    let data = idx_data(tmp.path(), 120, 40, 1);
    let mut m = master(&study, tmp.path(), "m", &[]);
    let mut w = worker_with(&study, tmp.path(), "w0", "w0", &cnn_args(&data));
    m.wait_ok(Duration::from_secs(120));
    w.wait_ok(Duration::from_secs(30));
    let mut statuses = Vec::new();
    for id in trial_ids(&study, "results") {
        let r = read_result(&study, &id);
        let lr = r.params["lr"].as_f64().unwrap();
        let bs = r.params["batch_size"].as_i64().unwrap();
        if lr < 0.0 || bs == 0 {
            assert_eq!(r.status, TrialStatus::Invalid, "{id}");
            let e = r.error.unwrap();
            assert!(
                e.contains(if lr < 0.0 { "lr" } else { "batch_size" }),
                "{e}"
            );
        } else {
            assert_eq!(r.status, TrialStatus::Complete, "{id}: {:?}", r.error);
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses.len(), 4);
}

/// A second master refuses to start while the first one's lease is live,
/// and takes over once it is stale — both for a killed master on this host
/// and for a lease left by another host, judged on the new master's clock.
#[test]
fn a_second_master_refuses_a_live_lease_and_takes_over_a_stale_one() {
    let tmp = tempfile::tempdir().unwrap();
    let study = init(tmp.path(), 4, 0.0);
    let mut m1 = master(&study, tmp.path(), "m1", &[]);
    wait_until(Duration::from_secs(30), "the first master's lease", || {
        study.join("master.json").exists()
    });
    let err = stderr_err(hps_master(&["run", arg(&study)]));
    assert!(
        err.contains("another master") && err.contains(&m1.pid().to_string()),
        "{err}"
    );

    // SIGKILL leaves the lease behind; same host, dead pid: immediate takeover.
    m1.signal(libc::SIGKILL);
    m1.wait(Duration::from_secs(10));
    assert!(study.join("master.json").exists());
    let mut m2 = master(&study, tmp.path(), "m2", &[]);
    wait_until(Duration::from_secs(30), "takeover", || {
        m2.log_text().contains("master started")
    });
    m2.signal(libc::SIGKILL);
    m2.wait(Duration::from_secs(10));

    // A lease from another host that no longer changes: taken over after
    // three of its intervals.
    std::fs::write(
        study.join("master.json"),
        r#"{"format_version":1,"host":"elsewhere","pid":1,"seq":42,"interval_s":0.5,"written_at_unix":0.0}"#,
    )
    .unwrap();
    let mut m3 = master(&study, tmp.path(), "m3", &[]);
    let mut w = worker(&study, tmp.path(), "w0");
    m3.wait_ok(Duration::from_secs(60));
    w.wait_ok(Duration::from_secs(30));
    assert!(
        m3.log_text().contains("stale; taking over"),
        "{}",
        m3.log_text()
    );
    assert_eq!(trial_ids(&study, "results").len(), 4);
}

/// SIGTERM (Slurm/Kubernetes preemption): the worker hands its trial back
/// to pending within a few seconds and exits 0; the trial is later run to
/// completion exactly once.
#[test]
fn preempted_worker_releases_its_trial_and_exits_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let study = init(tmp.path(), 1, 60.0);
    let mut w = worker(&study, tmp.path(), "w0");
    let mut m = master(&study, tmp.path(), "m", &[]);
    wait_until(Duration::from_secs(30), "the claim", || {
        !json_stems(&study.join("running")).is_empty()
    });
    let t = std::time::Instant::now();
    w.signal(libc::SIGTERM);
    let st = w.wait(Duration::from_secs(10));
    assert!(
        st.success(),
        "exit 0 on preemption: {st:?}\n{}",
        w.log_text()
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(json_stems(&study.join("pending")), vec!["t000000"]);
    assert!(json_stems(&study.join("running")).is_empty());
    let hb = std::fs::read_to_string(study.join("heartbeats/w0.json")).unwrap();
    assert!(hb.contains("\"stopped\""), "{hb}");

    // Shorten the rerun: a new worker finishes it (the setting is the same).
    let p = study.join("pending/t000000.json");
    let setting = std::fs::read_to_string(&p).unwrap();
    assert!(
        setting.contains("\"attempt\": 1"),
        "preemption keeps the attempt count: {setting}"
    );
    m.signal(libc::SIGKILL);
    m.wait(Duration::from_secs(10));
}

/// A worker killed with SIGKILL mid-trial is presumed dead after the grace
/// period (judged by the master's own clock) and its trial re-queued with
/// attempt 2; a slow but live worker is never re-queued.
#[test]
fn killed_worker_is_requeued_slow_worker_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let study = init(tmp.path(), 2, 3.0);
    let mut m = master(&study, tmp.path(), "m", &["--worker-grace", "3"]);
    let mut slow = worker(&study, tmp.path(), "slow");
    let mut victim = worker(&study, tmp.path(), "victim");
    wait_until(Duration::from_secs(30), "both claimed", || {
        json_stems(&study.join("running")).len() == 2
    });
    victim.signal(libc::SIGKILL);
    victim.wait(Duration::from_secs(10));
    m.wait_ok(Duration::from_secs(60));
    slow.wait_ok(Duration::from_secs(30));
    let results = read_results(&study);
    assert_eq!(results.len(), 2);
    assert!(results
        .iter()
        .all(|r| r.worker == "slow" && r.status == TrialStatus::Complete));
    let attempts: Vec<u32> = results.iter().map(|r| r.attempt).collect();
    assert!(
        attempts.contains(&1) && attempts.contains(&2),
        "one trial re-queued once: {attempts:?}"
    );
    assert!(m.log_text().contains("presumed dead"));
    assert!(runs_per_trial(&study).values().all(|&n| n <= 2));
}

/// A trial whose workers keep dying is given up after `--max-attempts`
/// with status `failed` and the reason recorded; the study still finishes.
#[test]
fn a_trial_is_failed_after_max_attempts_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let study = init(tmp.path(), 1, 60.0);
    let mut m = master(
        &study,
        tmp.path(),
        "m",
        &["--worker-grace", "1", "--max-attempts", "2"],
    );
    for round in 0..2 {
        let id = format!("doomed{round}");
        let mut w = worker(&study, tmp.path(), &id);
        wait_until(Duration::from_secs(30), "the claim", || {
            json_stems(&study.join("running"))
                .iter()
                .any(|c| c.ends_with(&format!("@{id}")))
        });
        w.signal(libc::SIGKILL);
        w.wait(Duration::from_secs(10));
    }
    m.wait_ok(Duration::from_secs(60));
    let r = read_result(&study, "t000000");
    assert_eq!(r.status, TrialStatus::Failed);
    assert_eq!(r.attempt, 2);
    let e = r.error.unwrap();
    assert!(e.contains("max_attempts") && e.contains("doomed1"), "{e}");
    assert!(
        json_stems(&study.join("pending")).is_empty()
            && json_stems(&study.join("running")).is_empty()
    );
}

/// Checkpoint resume with the real binaries: a cnn trial whose worker is
/// killed (SIGKILL) after epoch 2 resumes from its checkpoint on a restarted
/// worker and ends with exactly the metrics of an uninterrupted run.
#[test]
fn killed_cnn_trial_resumes_from_checkpoint_with_identical_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let data = idx_data(tmp.path(), 1700, 100, 5);
    let f = tmp.path().join("study.json");
    std::fs::write(
        &f,
        r#"{"format_version":1,"name":"ckpt",
        "space":{"lr":{"type":"fixed","value":0.05},"momentum":{"type":"fixed","value":0.9},"nf":{"type":"fixed","value":4},"batch_size":{"type":"fixed","value":16}},
        "objective":{"metric":"val_error","direction":"minimize"},
        "sampler":{"kind":"grid"},"budget":{"epochs":5},
        "trainer":{"kind":"cnn","defaults":{"train_size":1600,"val_size":100,"test_size":100}}}"#,
    )
    .unwrap();
    let mk = |name: &str| {
        let s = tmp.path().join(name);
        init_from_file(&s, &f);
        s
    };
    let cnn = cnn_args(&data);
    let cnn_worker =
        |study: &Path, id: &str, log: &str| worker_with(study, tmp.path(), id, log, &cnn);

    // Uninterrupted.
    let a = mk("a");
    let mut m = master(&a, tmp.path(), "ma", &[]);
    let mut w = cnn_worker(&a, "w0", "wa");
    m.wait_ok(Duration::from_secs(300));
    w.wait_ok(Duration::from_secs(30));
    let ra = read_result(&a, "t000000");

    // Killed after epoch 2, resumed by a restarted worker.
    let b = mk("b");
    let mut m = master(&b, tmp.path(), "mb", &[]);
    let mut w = cnn_worker(&b, "w0", "wb1");
    let trial_log = trial_file(&b, "logs", "t000000");
    wait_for_epoch(&trial_log, 2);
    w.signal(libc::SIGKILL);
    w.wait(Duration::from_secs(10));
    assert!(b.join("checkpoints/t000000/checkpoint.json").exists());
    let mut w = cnn_worker(&b, "w0", "wb2");
    m.wait_ok(Duration::from_secs(300));
    w.wait_ok(Duration::from_secs(30));
    let rb = read_result(&b, "t000000");
    let log = std::fs::read_to_string(&trial_log).unwrap();
    assert!(
        log.contains("# resuming from the checkpoint after epoch"),
        "the second run resumed:\n{log}"
    );
    assert_eq!(rb.attempt, 2);
    assert!(
        !b.join("checkpoints/t000000").exists(),
        "checkpoint removed once the result is in"
    );

    assert_eq!(ra.status, TrialStatus::Complete);
    assert_eq!(rb.status, TrialStatus::Complete);
    assert_eq!(ra.best_epoch, rb.best_epoch);
    assert_eq!(ra.curve.len(), 5);
    assert_same_training(&ra, &rb, "a resume after SIGKILL");

    // Preempted (SIGTERM) in the middle of epoch 2: the worker saves a
    // mid-epoch checkpoint, hands the trial back and exits 0; the next
    // worker continues from that batch and ends identical too.
    let c = mk("c");
    let mut m = master(&c, tmp.path(), "mc", &[]);
    let mut w = cnn_worker(&c, "w0", "wc1");
    let trial_log = trial_file(&c, "logs", "t000000");
    wait_for_epoch(&trial_log, 1);
    std::thread::sleep(Duration::from_millis(300)); // into epoch 2
    let t = std::time::Instant::now();
    w.signal(libc::SIGTERM);
    w.wait_ok(Duration::from_secs(30)); // exit 0 on preemption
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    let finished_first = trial_file(&c, "results", "t000000").exists();
    if !finished_first {
        assert_eq!(
            json_stems(&c.join("pending")),
            vec!["t000000"],
            "handed back to pending"
        );
    }
    let mut w = cnn_worker(&c, "w1", "wc2");
    m.wait_ok(Duration::from_secs(300));
    w.wait_ok(Duration::from_secs(30));
    let rc = read_result(&c, "t000000");
    assert_eq!(rc.status, TrialStatus::Complete);
    assert_same_training(&ra, &rc, "a mid-epoch preemption");
}

/// Wait until the trial log `log` has the stat line of `epoch`.
fn wait_for_epoch(log: &Path, epoch: u32) {
    let line = format!("{epoch} ");
    wait_until(Duration::from_secs(300), &format!("epoch {epoch}"), || {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with(&line))
    });
}

/// `b` trained exactly as `a`: the same curve, bit for bit, and the same
/// final metrics (epoch times aside).
fn assert_same_training(a: &TrialResult, b: &TrialResult, after: &str) {
    let bits = |r: &TrialResult| -> Vec<(u32, u64, u64, u64)> {
        r.curve
            .iter()
            .map(|e| {
                let (t, v, err) = (e.train_loss, e.val_loss, e.val_error);
                (e.epoch, t.to_bits(), v.to_bits(), err.to_bits())
            })
            .collect()
    };
    assert_eq!(bits(a), bits(b), "identical curves after {after}");
    let strip = |r: &TrialResult| {
        let mut m = r.metrics.clone();
        m.remove("epoch_time_s");
        m
    };
    assert_eq!(strip(a), strip(b), "identical final metrics after {after}");
}
