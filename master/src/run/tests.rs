//! The run loop's parts, driven scan by scan on a manual clock.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hps_common::{Heartbeat, TrialSetting, TrialStatus, FORMAT_VERSION};
use hps_shared_fs::{StudyDir, Sub};

use super::{Master, RunConfig};
use crate::liveness::ManualClock;
use crate::samplers;

fn study_dir(tmp: &Path) -> StudyDir {
    hps_shared_fs::testing::branin_study_dir(&tmp.join("s"), 1)
}

fn setting() -> TrialSetting {
    let params = [
        ("x0".to_string(), serde_json::Value::from(0.5)),
        ("x1".to_string(), serde_json::Value::from(2.5)),
    ]
    .into();
    TrialSetting::new(0, params, 1, "random")
}

fn master(dir: &StudyDir, clock: &Arc<ManualClock>) -> Master {
    let study = dir.read_study().unwrap();
    let sampler = samplers::build(&study, &dir.study_path()).unwrap();
    let mut cfg = RunConfig::new(dir.root().to_path_buf());
    cfg.orphan_grace = Duration::from_secs(10);
    cfg.worker_grace = Duration::from_secs(30);
    cfg.max_attempts = 2;
    Master::new(dir.clone(), study, sampler, 1, cfg, clock.clone(), None).unwrap()
}

fn beat(seq: u64) -> Heartbeat {
    Heartbeat {
        format_version: FORMAT_VERSION,
        worker: "w1".into(),
        host: "h".into(),
        pid: 1,
        device: "cpu".into(),
        seq,
        state: hps_common::WorkerState::Idle,
        trial: None,
        epoch: None,
        interval_s: 2.0,
        written_at_unix: 0.0,
        slurm: None,
    }
}

#[test]
fn a_recorded_but_unpublished_setting_is_published_after_the_orphan_grace() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = study_dir(tmp.path());
    dir.record_setting(&setting()).unwrap();
    let clock = Arc::new(ManualClock::new());
    let mut m = master(&dir, &clock);
    assert_eq!(m.ledger.next_index, 1, "recovered from settings/");
    m.step().unwrap();
    assert!(
        dir.list(Sub::Pending).unwrap().is_empty(),
        "not before the grace"
    );
    clock.advance(Duration::from_secs(9));
    m.step().unwrap();
    assert!(dir.list(Sub::Pending).unwrap().is_empty());
    clock.advance(Duration::from_secs(1));
    m.step().unwrap();
    assert_eq!(dir.list(Sub::Pending).unwrap(), ["t000000"]);
    assert!(!m.is_done());
}

#[test]
fn a_silent_workers_trial_is_requeued_then_given_up() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = study_dir(tmp.path());
    dir.record_setting(&setting()).unwrap();
    dir.publish(&setting()).unwrap();
    dir.claim("t000000", "w1").unwrap().unwrap();
    dir.write_heartbeat(&beat(0)).unwrap();
    let clock = Arc::new(ManualClock::new());
    let mut m = master(&dir, &clock);
    m.step().unwrap();
    // Beating: alive however long it takes.
    for seq in 1..20 {
        clock.advance(Duration::from_secs(5));
        dir.write_heartbeat(&beat(seq)).unwrap();
        m.step().unwrap();
    }
    assert_eq!(dir.list_running().unwrap().len(), 1);
    // Silent for longer than the grace: re-queued with the next attempt.
    clock.advance(Duration::from_secs(31));
    m.step().unwrap();
    assert!(dir.list_running().unwrap().is_empty());
    let pending = dir
        .read_claim(&dir.claim("t000000", "w1").unwrap().unwrap())
        .unwrap();
    assert_eq!(pending.attempt, 2);
    // Silent again on the last attempt: a failed result, and done.
    clock.advance(Duration::from_secs(31));
    m.step().unwrap();
    m.step().unwrap();
    let r = dir.read_result("t000000").unwrap();
    assert_eq!((r.status, r.attempt), (TrialStatus::Failed, 2));
    assert!(r.error.unwrap().contains("all 2 attempts"));
    assert!(m.is_done());
}

/// Two masters proposing the same trial: the record made first wins, and
/// the other master adopts it (its config's params too) and publishes
/// exactly that record, never its own proposal.
#[test]
fn a_setting_another_master_recorded_first_is_adopted_and_published_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = study_dir(tmp.path());
    let clock = Arc::new(ManualClock::new());
    let mut m = master(&dir, &clock);
    let theirs = setting();
    assert_ne!(
        m.make_setting(0).params,
        theirs.params,
        "a different proposal"
    );
    assert!(
        dir.record_setting(&theirs).unwrap(),
        "the other master first"
    );
    m.step().unwrap();
    assert_eq!(dir.read_setting("t000000").unwrap(), theirs, "left alone");
    let pending = dir.read_claim(&dir.claim("t000000", "w").unwrap().unwrap());
    assert_eq!(pending.unwrap(), theirs, "the record is what is published");
    assert_eq!(m.ledger.settings["t000000"], theirs);
    assert_eq!(
        m.ledger.configs[&0].params, theirs.params,
        "repeats would share it"
    );
}

/// A master whose lease another master took over stops at its next
/// write, with the lease message, and writes nothing more.
#[test]
fn a_master_that_lost_its_lease_writes_nothing_more() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = study_dir(tmp.path());
    let stop = std::sync::atomic::AtomicBool::new(false);
    let lease = super::Lease::acquire(&dir, Duration::from_secs(60), &stop).unwrap();
    let clock = Arc::new(ManualClock::new());
    let study = dir.read_study().unwrap();
    let sampler = samplers::build(&study, &dir.study_path()).unwrap();
    let cfg = RunConfig::new(dir.root().to_path_buf());
    let mut m = Master::new(
        dir.clone(),
        study,
        sampler,
        1,
        cfg,
        clock,
        Some(lease.checker()),
    )
    .unwrap();
    // After the first renewal (the next is a minute away), so that no
    // renewal in flight can write over the newcomer's lease.
    let t = std::time::Instant::now();
    while dir.read_lease().unwrap().unwrap().seq < 1 {
        assert!(t.elapsed() < Duration::from_secs(30), "no first renewal");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut newcomer = dir.read_lease().unwrap().unwrap();
    newcomer.host = "elsewhere".into();
    dir.write_lease(&newcomer).unwrap();
    let e = m.step().unwrap_err().to_string();
    assert!(
        e.contains("another master took over") && e.contains("host elsewhere"),
        "{e}"
    );
    assert!(dir.list(Sub::Settings).unwrap().is_empty());
    assert!(dir.list(Sub::Pending).unwrap().is_empty());
    assert!(m.finish().is_err(), "no finished.json either");
    assert!(!dir.is_finished());
    lease.release();
    assert_eq!(dir.read_lease().unwrap().unwrap().host, "elsewhere");
}

/// TPE ranks pruned trials by their last intermediate value: the master
/// hands it over with the observation, oriented and at the furthest step.
#[test]
fn a_pruned_result_reaches_the_sampler_with_its_last_intermediate_value() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = study_dir(tmp.path());
    let s = setting();
    dir.record_setting(&s).unwrap();
    let clock = Arc::new(ManualClock::new());
    let mut m = master(&dir, &clock);
    let mut r = hps_common::TrialResult::for_setting(&s, "w1", "cpu");
    r.status = TrialStatus::Pruned;
    r.reports = [(1, 3.0), (3, 2.5), (2, 1.0)]
        .iter()
        .map(|(step, v)| serde_json::json!({"step": step, "value": v}))
        .map(|v| v.as_object().unwrap().clone())
        .collect();
    m.accept(r);
    let o = &m.ledger.observations[0];
    assert_eq!((o.status, o.loss), (TrialStatus::Pruned, None));
    assert_eq!(
        o.last_intermediate,
        Some(samplers::Intermediate { step: 3, loss: 2.5 })
    );
}

/// A master resuming from `cache/results.jsonl` learns what one reading
/// every result and setting learns; a cached trial whose result file is
/// gone counts as not done; without the cache, every file is read.
#[test]
fn a_master_resumed_from_the_results_cache_knows_what_one_reading_every_file_knows() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = hps_shared_fs::testing::branin_study_dir(&tmp.path().join("s"), 3);
    let clock = Arc::new(ManualClock::new());
    let open = || {
        let study = dir.read_study().unwrap();
        let sampler = samplers::build(&study, &dir.study_path()).unwrap();
        let cfg = RunConfig::new(dir.root().to_path_buf());
        Master::new(dir.clone(), study, sampler, 3, cfg, clock.clone(), None).unwrap()
    };
    for i in 0..3u64 {
        let mut s = setting();
        s = TrialSetting {
            config: i,
            ..TrialSetting::new(i, s.params.clone(), 1, "random")
        };
        s.params
            .insert("x0".into(), serde_json::Value::from(i as f64));
        dir.record_setting(&s).unwrap();
        if i < 2 {
            let mut r = hps_common::TrialResult::for_setting(&s, "w1", "cpu");
            r.status = TrialStatus::Complete;
            r.objective = Some(10.0 - i as f64);
            r.wall_time_s = 1.5;
            assert!(dir.submit_result(&r).unwrap());
        }
    }
    let learned = |m: &Master| {
        let obs: Vec<String> = m
            .ledger
            .observations
            .iter()
            .map(|o| format!("{o:?}"))
            .collect();
        let mut done: Vec<(String, TrialStatus)> = m
            .ledger
            .results
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        done.sort_by(|a, b| a.0.cmp(&b.0));
        let in_flight: Vec<String> = m.ledger.settings.keys().cloned().collect();
        (
            obs,
            done,
            in_flight,
            m.ledger.next_index,
            m.best().map(|(id, v)| (id.to_string(), v)),
        )
    };
    let mut first = open();
    first.step().unwrap();
    let from_files = learned(&first);
    assert_eq!(from_files.1.len(), 2, "both results accepted");
    assert_eq!(
        from_files.2,
        ["t000002"],
        "only the trial in flight keeps its setting"
    );
    let cache = dir.root().join("cache/results.jsonl");
    let lines = std::fs::read_to_string(&cache).unwrap().lines().count();
    assert_eq!(lines, 2, "one digest per accepted result");

    let resumed = open();
    assert_eq!(learned(&resumed), from_files, "from the cache");

    std::fs::remove_file(&cache).unwrap();
    let mut rebuilt = open();
    rebuilt.step().unwrap();
    assert_eq!(learned(&rebuilt), from_files, "from the files again");
    assert_eq!(
        std::fs::read_to_string(&cache).unwrap().lines().count(),
        2,
        "rebuilt"
    );

    std::fs::remove_file(dir.result_path("t000001").unwrap()).unwrap();
    let m = open();
    assert_eq!(
        m.ledger.results.len(),
        1,
        "a digest counts only while its result exists"
    );
    assert_eq!(
        m.ledger.settings.keys().cloned().collect::<Vec<_>>(),
        ["t000001", "t000002"],
        "its setting is read again: the trial is in flight"
    );
}

/// Heartbeats are read at most once a second, but a claim is never taken
/// away on an older view: a worker whose last beat said `stopped` and that
/// started again under its id claims a trial between two regular readings.
#[test]
fn a_worker_back_under_its_id_keeps_its_claim_between_heartbeat_readings() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = study_dir(tmp.path());
    dir.record_setting(&setting()).unwrap();
    dir.publish(&setting()).unwrap();
    let stopped = Heartbeat {
        state: hps_common::WorkerState::Stopped,
        ..beat(u64::MAX)
    };
    dir.write_heartbeat(&stopped).unwrap();
    let clock = Arc::new(ManualClock::new());
    let mut m = master(&dir, &clock);
    m.step().unwrap();
    // Back, with a new pid, within the second.
    dir.write_heartbeat(&Heartbeat { pid: 2, ..beat(0) })
        .unwrap();
    dir.claim("t000000", "w1").unwrap().unwrap();
    m.step().unwrap();
    assert_eq!(dir.list_running().unwrap().len(), 1, "the claim stays");
    assert!(dir.list(Sub::Pending).unwrap().is_empty());
}

/// Issue 25, defect 1: the newest record is damaged while its trial runs.
/// The next index comes from every name, and the record is restored from
/// the running copy: nothing is proposed under its index again.
#[test]
fn a_damaged_newest_record_is_restored_from_its_running_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = hps_shared_fs::testing::branin_study_dir(&tmp.path().join("s"), 3);
    let study = dir.read_study().unwrap();
    let sampler = samplers::build(&study, &dir.study_path()).unwrap();
    let cfg = RunConfig::new(dir.root().to_path_buf());
    let clock = Arc::new(ManualClock::new());
    for i in 0..2 {
        let s = TrialSetting::new(i, setting().params, 1, "random");
        dir.record_setting(&s).unwrap();
        dir.publish(&s).unwrap();
    }
    dir.claim("t000001", "w1").unwrap().unwrap();
    let newest = dir.setting_path("t000001").unwrap();
    std::fs::write(&newest, "{\"format_version\": 1, \"trial").unwrap();
    let m = Master::new(dir.clone(), study, sampler, 3, cfg, clock, None).unwrap();
    assert_eq!(m.ledger.next_index, 2, "t000001 is named by its claim");
    assert_eq!(
        dir.read_setting("t000001").unwrap().params,
        setting().params
    );
    assert_eq!(
        dir.list(Sub::Pending).unwrap(),
        ["t000000"],
        "nothing re-published"
    );
}

/// Issue 25, defect 3: a result whose parameters differ from the record
/// of its trial is quarantined, not accepted.
#[test]
fn a_result_of_other_parameters_than_recorded_is_not_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = study_dir(tmp.path());
    dir.record_setting(&setting()).unwrap();
    let clock = Arc::new(ManualClock::new());
    let mut m = master(&dir, &clock);
    let mut other = setting();
    other
        .params
        .insert("x0".into(), serde_json::Value::from(9.5));
    let mut r = hps_common::TrialResult::for_setting(&other, "w", "cpu");
    r.status = TrialStatus::Complete;
    r.objective = Some(0.0);
    assert!(dir.submit_result(&r).unwrap());
    m.step().unwrap();
    assert!(m.ledger.results.is_empty(), "not accepted");
    assert!(!dir.has_result("t000000"));
    assert_eq!(
        dir.list(Sub::Pending).unwrap(),
        ["t000000"],
        "re-run as recorded"
    );
}
