//! Stopping a study cleanly, and saying so when its master is gone: the
//! real `deploy/local.sh` under a process group of its own, signalled as a
//! terminal's Ctrl-C signals (the whole group), and the real binaries.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use hps_common::TrialSetting;
use hps_tests::{
    arg, bin, hps_master, init_study, json_stems, read_results, spawn_master, spawn_worker,
    stdout_ok, wait_until,
};

const TIMEOUT: Duration = Duration::from_secs(120);

/// An exec study of `trials` trials whose script reports a line every
/// 0.3 s for `epochs` epochs (no python needed).
fn exec_study(tmp: &Path, trials: u32, epochs: u32, pruner: bool) -> PathBuf {
    let script = tmp.join("train.sh");
    std::fs::write(
        &script,
        r#"e=1
while [ $e -le $HPS_EPOCHS ]; do
  sleep 0.3
  echo "{\"epoch\": $e, \"val_error\": $HPS_PARAM_X}" >> "$HPS_REPORT_FILE"
  e=$((e+1))
done
echo "{\"val_error\": $HPS_PARAM_X}" > "$HPS_RESULT_FILE"
"#,
    )
    .unwrap();
    let mut study = serde_json::json!({
        "format_version": 1, "name": "stops",
        "space": {"x": {"type": "float", "low": 0, "high": 1}},
        "objective": {"metric": "val_error", "direction": "minimize"},
        "sampler": {"kind": "random", "seed": 1},
        "budget": {"trials": trials, "epochs": epochs},
        "trainer": {"kind": "exec", "timeout_s": 120, "argv": ["sh", arg(&script)]}
    });
    if pruner {
        study["pruner"] = serde_json::json!({"kind": "asha", "min_epochs": 1, "eta": 3});
    }
    let file = tmp.join("study.json");
    std::fs::write(&file, study.to_string()).unwrap();
    file
}

/// `deploy/local.sh` in a process group of its own (as under `setsid`, or
/// as a terminal's foreground job); the group is killed when dropped.
struct Launcher {
    child: Child,
    out: PathBuf,
}

impl Launcher {
    fn start(study: &Path, file: &Path, out: &Path) -> Launcher {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local.sh");
        let bins = bin("hps-master").parent().unwrap().to_path_buf();
        let log = std::fs::File::create(out).unwrap();
        let mut child = Command::new("bash");
        child
            .arg(&script)
            .args([arg(study), "--workers", "2", "--cpu", "--study", arg(file)])
            .env("HPS_BIN_DIR", &bins)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0);
        // A shell started with SIGINT ignored cannot trap it (POSIX), and
        // a test run from a background job inherits it ignored: the Ctrl-C
        // this test sends would then be lost. Start local.sh as a terminal
        // would, with the default disposition.
        // SAFETY: signal(2) is async-signal-safe, as pre_exec requires.
        unsafe {
            child.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                Ok(())
            });
        }
        let child = child.spawn().expect("start deploy/local.sh");
        Launcher {
            child,
            out: out.to_path_buf(),
        }
    }

    /// What a terminal does on Ctrl-C: the signal to the whole group.
    fn signal_group(&self, sig: i32) {
        // SAFETY: signalling the process group we created.
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), sig) };
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn wait(&mut self) -> ExitStatus {
        let mut st = None;
        wait_until(TIMEOUT, "deploy/local.sh to exit", || {
            st = self.child.try_wait().unwrap();
            st.is_some()
        });
        st.unwrap()
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        // A failed test: its children run in groups of their own, so ask
        // local.sh (twice: "at once") to end them, then kill it.
        for _ in 0..2 {
            if self.child.try_wait().ok().flatten().is_none() {
                self.signal_group(libc::SIGTERM);
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        if self.child.try_wait().ok().flatten().is_none() {
            self.signal_group(libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// The trials that are claimed and have reported at least one epoch.
fn running_mid_trial(study: &Path) -> Vec<String> {
    json_stems(&study.join("running"))
        .into_iter()
        .filter_map(|c| c.split('@').next().map(str::to_string))
        .filter(|id| {
            std::fs::read_to_string(study.join("checkpoints").join(id).join("reports.jsonl"))
                .is_ok_and(|t| !t.is_empty())
        })
        .collect()
}

fn read_pending(study: &Path, id: &str) -> TrialSetting {
    let text = std::fs::read_to_string(study.join("pending").join(format!("{id}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn one_ctrl_c_on_local_sh_hands_trials_back_with_their_attempt_and_releases_the_lease() {
    // Alone among the heavy and the timing-sensitive tests.
    let _exclusive = hps_tests::exclusive();
    let tmp = tempfile::tempdir().unwrap();
    let file = exec_study(tmp.path(), 4, 20, false);
    let s = tmp.path().join("study");
    let mut l = Launcher::start(&s, &file, &tmp.path().join("run1.out"));
    let mut mid = Vec::new();
    wait_until(TIMEOUT, "both workers mid-trial", || {
        mid = running_mid_trial(&s);
        mid.len() == 2
    });
    l.signal_group(libc::SIGINT);
    let st = l.wait();
    let out = l.output();
    assert_eq!(st.code(), Some(0), "{out}");
    assert!(out.contains("run the same command to continue"), "{out}");
    assert!(
        json_stems(&s.join("running")).is_empty(),
        "claims left: {out}"
    );
    assert!(!s.join("master.json").exists(), "the lease was left: {out}");
    for id in &mid {
        let setting = read_pending(&s, id);
        assert_eq!(setting.attempt, 1, "{id} lost an attempt: {out}");
        assert!(s.join("checkpoints").join(id).is_dir(), "{id}'s checkpoint");
        let spent = std::fs::read_to_string(s.join("checkpoints").join(id).join("spent.json"));
        assert!(
            spent.is_ok_and(|t| t.contains("\"runs\": 1")),
            "{id}: its run's time"
        );
    }
    for w in ["w0", "w1"] {
        let log = std::fs::read_to_string(s.join(format!("logs/worker-{w}.out"))).unwrap();
        assert!(!log.contains("exiting at once"), "{w}:\n{log}");
    }

    // The same command continues and finishes the study.
    let mut l = Launcher::start(&s, &file, &tmp.path().join("run2.out"));
    let st = l.wait();
    assert_eq!(st.code(), Some(0), "{}", l.output());
    let results = read_results(&s);
    assert_eq!(results.len(), 4, "{}", l.output());
    for r in results.iter().filter(|r| mid.contains(&r.trial_id)) {
        assert_eq!(r.attempt, 1, "{}", r.trial_id);
        // Issue 17 §7: wall_time_s counted the last run only. It now counts
        // the run that was handed back too, and the last run is beside it.
        let last = r.last_run_wall_time_s.expect("the last run's time");
        assert!(
            r.wall_time_s > last,
            "{}: {} <= {last}",
            r.trial_id,
            r.wall_time_s
        );
    }
}

#[test]
fn local_sh_stops_its_workers_when_its_master_is_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let file = exec_study(tmp.path(), 6, 20, false);
    let s = tmp.path().join("study");
    let mut l = Launcher::start(&s, &file, &tmp.path().join("run.out"));
    wait_until(TIMEOUT, "both workers mid-trial", || {
        running_mid_trial(&s).len() == 2
    });
    let lease: hps_common::MasterLease =
        serde_json::from_str(&std::fs::read_to_string(s.join("master.json")).unwrap()).unwrap();
    // SAFETY: the master local.sh started for this test.
    unsafe { libc::kill(lease.pid as libc::pid_t, libc::SIGINT) };
    let st = l.wait();
    let out = l.output();
    assert_eq!(st.code(), Some(0), "the master's status: {out}");
    assert!(
        out.contains(
            "the master exited (status 0) before the study finished; stopping the workers"
        ),
        "{out}"
    );
    assert!(json_stems(&s.join("running")).is_empty(), "{out}");
    let status = stdout_ok(hps_master(&["status", arg(&s)]));
    assert!(status.contains("master     NONE running"), "{status}");
    assert!(status.contains("0 live of 2"), "{status}");
}

#[test]
fn status_says_whether_a_master_holds_a_live_lease() {
    let tmp = tempfile::tempdir().unwrap();
    let file = exec_study(tmp.path(), 2, 2, false);
    let s = tmp.path().join("study");
    init_study(&s, &std::fs::read_to_string(&file).unwrap());
    let status = || stdout_ok(hps_master(&["status", arg(&s)]));
    assert!(
        status().contains("master     NONE running: none has run on this study yet"),
        "{}",
        status()
    );

    let mut m = spawn_master(&s, &tmp.path().join("m1.log"), &["--lease-interval", "0.2"]);
    wait_until(TIMEOUT, "the lease", || s.join("master.json").exists());
    let text = status();
    assert!(
        text.contains(&format!("master     live: pid {}", m.pid())),
        "{text}"
    );
    m.signal(libc::SIGINT);
    m.wait_ok(TIMEOUT);
    let text = status();
    assert!(
        text.contains("master     NONE running: no master.json; the last master stopped ~"),
        "{text}"
    );
    assert!(text.contains("start one with `hps-master run"), "{text}");

    // Killed: its lease stays, but nobody renews it.
    let mut m = spawn_master(&s, &tmp.path().join("m2.log"), &["--lease-interval", "0.2"]);
    wait_until(TIMEOUT, "the lease", || {
        std::fs::read_to_string(s.join("master.json"))
            .is_ok_and(|t| t.contains(&m.pid().to_string()))
    });
    assert!(m.kill9(TIMEOUT));
    let text = status();
    assert!(
        text.contains(&format!(
            "master     NONE running: the lease of pid {} on",
            m.pid()
        )),
        "{text}"
    );
    assert!(
        text.contains("is not being renewed; it was last renewed ~"),
        "{text}"
    );
}

#[test]
fn a_worker_says_when_pruning_decisions_stop_coming() {
    let tmp = tempfile::tempdir().unwrap();
    let file = exec_study(tmp.path(), 3, 9, true);
    let s = tmp.path().join("study");
    init_study(&s, &std::fs::read_to_string(&file).unwrap());
    // A master proposes, then is stopped: its settings wait in pending/.
    let mut m = spawn_master(&s, &tmp.path().join("m.log"), &[]);
    wait_until(TIMEOUT, "a proposal", || {
        !json_stems(&s.join("pending")).is_empty()
    });
    m.signal(libc::SIGINT);
    m.wait_ok(TIMEOUT);

    let log = tmp.path().join("w0.log");
    let mut w = spawn_worker(&s, "w0", &log, &["--once", "--decision-wait", "0.5"]);
    w.wait_ok(TIMEOUT);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("no pruning decision from the master").count(),
        1,
        "once:\n{text}"
    );
    assert!(
        text.contains("s: no master is running (no master.json)"),
        "{text}"
    );
}

#[test]
fn a_sigint_then_a_sigterm_to_a_worker_is_one_clean_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let file = exec_study(tmp.path(), 2, 20, false);
    let s = tmp.path().join("study");
    init_study(&s, &std::fs::read_to_string(&file).unwrap());
    let mut m = spawn_master(&s, &tmp.path().join("m.log"), &[]);
    let log = tmp.path().join("w0.log");
    let mut w = spawn_worker(&s, "w0", &log, &[]);
    let mut mid = Vec::new();
    wait_until(TIMEOUT, "a trial mid-run", || {
        mid = running_mid_trial(&s);
        !mid.is_empty()
    });
    // An old-style launcher: the terminal's SIGINT, then its own SIGTERM.
    w.signal(libc::SIGINT);
    w.signal(libc::SIGTERM);
    w.wait_ok(TIMEOUT);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("taken as the same request"), "{text}");
    assert!(json_stems(&s.join("running")).is_empty(), "{text}");
    assert_eq!(read_pending(&s, &mid[0]).attempt, 1, "{text}");
    m.signal(libc::SIGINT);
    m.wait_ok(TIMEOUT);
}
