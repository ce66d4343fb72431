//! Two masters on one study directory (issue 10 §3): whatever their timing,
//! every trial has one recorded setting, every pending file and result
//! carries it, and exactly one master runs the study to its end. These start
//! the real binaries.

use std::path::Path;
use std::time::Duration;

use hps_common::TrialSetting;
use hps_tests::{
    arg, bin, read_results, spawn_master, spawn_worker, temp_study, wait_until, worker_ids, Proc,
};
use hps_tests::{trial_file, trial_ids};

const TRIALS: usize = 60;

const TPE_ASYNC: &str = r#"{"format_version":1,"name":"masters",
  "space":{"x0":{"type":"float","low":-5,"high":10},"x1":{"type":"float","low":0,"high":15}},
  "objective":{"metric":"value","direction":"minimize"},
  "sampler":{"kind":"tpe","seed":5,"n_startup":2},"budget":{"trials":TRIALS},
  "mode":{"kind":"async","queue":4},
  "trainer":{"kind":"function","name":"branin","sleep_s":SLEEP}}"#;

/// The study, each trial taking `sleep` seconds. The masters started
/// together use 0.05 s, so that the study cannot end before the loser has
/// seen the winner renew its lease (a master started on a finished study
/// would run to its end too).
fn study_json(sleep: f64) -> String {
    TPE_ASYNC
        .replace("TRIALS", &TRIALS.to_string())
        .replace("SLEEP", &sleep.to_string())
}

/// `hps-master run` renewing its lease every `lease` seconds; log in
/// `<tmp>/<name>.log`.
fn master(study: &Path, tmp: &Path, name: &str, lease: &str) -> Proc {
    let args = ["--rescan", "0.2", "--lease-interval", lease];
    spawn_master(study, &tmp.join(format!("{name}.log")), &args)
}

/// `n` workers `w0`…, logs in `<tmp>/<id>.log`.
/// Two masters (`m0`, `m1`) let go at the same instant: each starts as a
/// shell that stops itself and then `exec`s `hps-master run`, and both get
/// SIGCONT once both are stopped, so their lease checks overlap as closely
/// as two processes can make them.
fn masters_together(study: &Path, tmp: &Path, lease: &str) -> [Proc; 2] {
    let master = bin("hps-master");
    let ms = ["m0", "m1"].map(|name| {
        let args = [
            "-c",
            "kill -STOP $$; exec \"$@\"",
            "sh",
            arg(&master),
            "run",
            arg(study),
            "--rescan",
            "0.2",
            "--lease-interval",
            lease,
        ];
        let log = tmp.join(format!("{name}.log"));
        Proc::spawn(name, Path::new("sh"), &args, &log)
    });
    let stopped = |p: &Proc| {
        std::fs::read_to_string(format!("/proc/{}/stat", p.pid()))
            .ok()
            .and_then(|s| s.rsplit(") ").next().map(|r| r.starts_with('T')))
            .unwrap_or(false)
    };
    wait_until(Duration::from_secs(10), "both masters stopped", || {
        ms.iter().all(stopped)
    });
    for m in &ms {
        m.signal(libc::SIGCONT);
    }
    ms
}

fn workers(study: &Path, tmp: &Path, n: usize) -> Vec<Proc> {
    worker_ids(n)
        .iter()
        .map(|id| {
            let args = ["--rescan", "0.2", "--heartbeat", "0.3"];
            spawn_worker(study, id, &tmp.join(format!("{id}.log")), &args)
        })
        .collect()
}

fn read_setting(study: &Path, id: &str) -> TrialSetting {
    let p = trial_file(study, "settings", id);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    hps_common::parse_versioned(&p, &text).unwrap_or_else(|e| panic!("{e}"))
}

/// The trials whose result carries params other than their `settings/`
/// record, as `id: result params / recorded params`.
fn mismatches(study: &Path) -> Vec<String> {
    read_results(study)
        .into_iter()
        .filter_map(|r| {
            let s = read_setting(study, &r.trial_id);
            (s.params != r.params).then(|| {
                format!(
                    "{}: result {} / recorded {}",
                    r.trial_id,
                    serde_json::to_string(&r.params).unwrap(),
                    serde_json::to_string(&s.params).unwrap()
                )
            })
        })
        .collect()
}

/// Every planned trial has exactly one result and that result's params
/// equal its record.
fn assert_results_match_records(study: &Path, logs: &str) {
    let results = trial_ids(study, "results");
    assert_eq!(results.len(), TRIALS, "one result per trial; {logs}");
    assert_eq!(trial_ids(study, "settings"), results, "{logs}");
    let bad = mismatches(study);
    assert!(
        bad.is_empty(),
        "{} of {TRIALS} results differ from their settings/ record:\n{}\n{logs}",
        bad.len(),
        bad.join("\n")
    );
}

const LOST: &str = "another master took over";
const HELD: &str = "another master (host";

/// Wait for both masters; returns (index of the one that ran to the end,
/// the other's log). Asserts that exactly one succeeded and the other
/// refused to start or stopped with the lease message.
fn one_winner(masters: &mut [Proc; 2]) -> (usize, String) {
    let st: Vec<_> = masters
        .iter_mut()
        .map(|m| m.wait(Duration::from_secs(180)))
        .collect();
    let logs = format!(
        "m0 ({}):\n{}\nm1 ({}):\n{}",
        st[0],
        masters[0].log_text(),
        st[1],
        masters[1].log_text()
    );
    let ok: Vec<usize> = (0..2).filter(|&i| st[i].success()).collect();
    assert_eq!(ok.len(), 1, "exactly one master runs to the end:\n{logs}");
    let other = masters[1 - ok[0]].log_text();
    assert!(
        other.contains(LOST) || other.contains(HELD),
        "the other master refused or stopped with the lease message:\n{logs}"
    );
    (ok[0], logs)
}

#[test]
fn two_masters_started_together_never_record_different_settings_for_one_trial() {
    let (tmp, study) = temp_study(&study_json(0.05));
    let mut ws = workers(&study, tmp.path(), 2);
    let mut ms = masters_together(&study, tmp.path(), "0.3");
    let (_, logs) = one_winner(&mut ms);
    for w in &mut ws {
        w.wait_ok(Duration::from_secs(60));
    }
    assert_results_match_records(&study, &logs);
}

/// The harder start: `master.json` names a master of this host that is
/// gone, so both newcomers may take it over at once (no watching), and both
/// run until one of them finds that the lease is the other's.
#[test]
fn two_masters_taking_over_a_dead_masters_lease_together_never_record_different_settings() {
    let (tmp, study) = temp_study(&study_json(0.05));
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    dead.wait().unwrap();
    let lease = hps_common::MasterLease {
        format_version: 1,
        host: hps_shared_fs::hostname(),
        pid: dead.id(),
        seq: 7,
        interval_s: 1.0,
        written_at_unix: 0.0,
    };
    std::fs::write(
        study.join("master.json"),
        serde_json::to_string(&lease).unwrap(),
    )
    .unwrap();
    let mut ws = workers(&study, tmp.path(), 2);
    let mut ms = masters_together(&study, tmp.path(), "0.5");
    let (_, logs) = one_winner(&mut ms);
    for w in &mut ws {
        w.wait_ok(Duration::from_secs(60));
    }
    assert_results_match_records(&study, &logs);
}

#[test]
fn a_master_frozen_past_its_lease_stops_proposing_when_resumed() {
    let (tmp, study) = temp_study(&study_json(0.01));
    // Four quick workers keep pending/ short, so the resumed master wants
    // to propose at once.
    let mut ws = workers(&study, tmp.path(), 4);
    let first = master(&study, tmp.path(), "m0", "0.3");
    let n_results = || trial_ids(&study, "results").len();
    wait_until(Duration::from_secs(60), "a few results", || {
        n_results() >= 5
    });
    first.signal(libc::SIGSTOP);
    let second = master(&study, tmp.path(), "m1", "0.3");
    let lease_pid = || {
        std::fs::read_to_string(study.join("master.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["pid"].as_u64())
    };
    wait_until(Duration::from_secs(30), "the second master's lease", || {
        lease_pid() == Some(second.pid() as u64)
    });
    // Let the newcomer propose past where the frozen one stopped.
    let at_takeover = n_results();
    wait_until(
        Duration::from_secs(60),
        "results under the new master",
        || n_results() >= (at_takeover + 6).min(TRIALS),
    );
    first.signal(libc::SIGCONT);
    let mut ms = [first, second];
    let (winner, logs) = one_winner(&mut ms);
    assert_eq!(winner, 1, "the newcomer finishes the study:\n{logs}");
    assert!(ms[0].log_text().contains(LOST), "{logs}");
    for w in &mut ws {
        w.wait_ok(Duration::from_secs(60));
    }
    assert_results_match_records(&study, &logs);
}
