//! Workers on a FUSE view of the study directory while the master writes
//! through the backing directory: this is how the directory looks from
//! another host. `bindfs -o attr_timeout=5,entry_timeout=5` mirrors the
//! backing directory with cached attributes and directory entries, and
//! inotify on the view sees none of the master's writes. The workers must
//! notice the FUSE filesystem by themselves (no `--poll`) and poll.
//!
//! Skips (and says so) only when bindfs or /dev/fuse is missing or the
//! mount fails; everything after a successful mount is asserted.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hps_common::TrialStatus;
use hps_tests::{
    find_in_path, init_study, json_stems, read_results, runs_per_trial, spawn_master, spawn_worker,
    Cluster,
};
use hps_tests::{trial_file, trial_ids};

/// Unmounts on drop, so a failing test never leaves a mount behind.
struct Mount {
    point: PathBuf,
}

impl Mount {
    fn unmount(&self) -> bool {
        let p = self.point.as_os_str();
        let attempts: [(&str, &[&str]); 3] = [
            ("fusermount3", &["-u"]),
            ("fusermount", &["-u"]),
            ("umount", &[]),
        ];
        for (cmd, args) in attempts {
            let ok = Command::new(cmd)
                .args(args)
                .arg(p)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return true;
            }
        }
        false
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // A process may still hold the mount for a moment after being killed.
        for _ in 0..20 {
            if self.unmount() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("umount").arg("-l").arg(&self.point).status();
    }
}

/// `Some(reason)` when FUSE cannot be used here.
fn fuse_unavailable() -> Option<String> {
    if find_in_path("bindfs").is_none() {
        return Some("bindfs is not installed (Debian package `bindfs`)".into());
    }
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse does not exist".into());
    }
    None
}

#[test]
fn workers_on_a_fuse_view_complete_every_trial() {
    if let Some(reason) = fuse_unavailable() {
        eprintln!("SKIPPED: {reason}");
        return;
    }
    // Declared first, so dropped last: processes and the mount go first.
    let tmp = tempfile::tempdir().unwrap();
    let backing = tmp.path().join("backing");
    let view = tmp.path().join("view");
    std::fs::create_dir_all(&backing).unwrap();
    std::fs::create_dir_all(&view).unwrap();

    let study = backing.join("study");
    init_study(
        &study,
        r#"{"format_version":1,"name":"fuse",
            "space":{"x0":{"type":"float","low":-5,"high":10},"x1":{"type":"float","low":0,"high":15}},
            "objective":{"metric":"value","direction":"minimize"},
            "sampler":{"kind":"random","seed":3},
            "budget":{"trials":20},
            "mode":{"kind":"sync","batch":4},
            "trainer":{"kind":"function","name":"branin","sleep_s":0.2}}"#,
    );

    let mounted = Command::new("bindfs")
        .args(["-o", "attr_timeout=5,entry_timeout=5"])
        .arg(&backing)
        .arg(&view)
        .output();
    let mounted = match mounted {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            eprintln!(
                "SKIPPED: bindfs could not mount ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return;
        }
        Err(e) => {
            eprintln!("SKIPPED: could not run bindfs: {e}");
            return;
        }
    };
    let _mount = Mount {
        point: view.clone(),
    };
    drop(mounted);

    // From here on nothing is skipped: the view must really be FUSE.
    let view_study = view.join("study");
    assert_eq!(
        hps_shared_fs::detect_remote_fs(&view_study).map(|f| f.0),
        Some("fuse"),
        "bindfs succeeded but {} is not on a FUSE filesystem",
        view_study.display()
    );
    assert_eq!(
        hps_shared_fs::detect_remote_fs(&study),
        None,
        "the backing directory must be local"
    );
    assert!(
        view_study.join("study.json").is_file(),
        "the view does not show the study"
    );

    // The master on the backing directory, the workers on the view. No
    // --poll: a worker must find out by itself that it is on FUSE.
    let log = |id: &str| tmp.path().join(format!("{id}.log"));
    let cluster = Cluster {
        master: spawn_master(&study, &log("m"), &["--rescan", "0.5"]),
        workers: ["w0", "w1"]
            .map(|id| spawn_worker(&view_study, id, &log(id), &["--rescan", "0.5"]))
            .into(),
    };
    let master_log = cluster.finish(Duration::from_secs(90));
    for id in ["w0", "w1"] {
        let text = std::fs::read_to_string(log(id)).unwrap_or_default();
        assert!(
            text.contains("network/FUSE filesystem"),
            "{id} did not detect the FUSE view and switch to polling:\n{text}"
        );
    }
    assert!(
        !master_log.contains("network/FUSE filesystem"),
        "the master runs on the local backing directory"
    );

    // Everything checked through the backing directory, which is the truth.
    let settings = trial_ids(&study, "settings");
    let results = trial_ids(&study, "results");
    assert_eq!(settings.len(), 20, "the whole budget was proposed");
    assert_eq!(settings, results, "every trial has exactly one result");
    assert!(json_stems(&study.join("pending")).is_empty());
    assert!(json_stems(&study.join("running")).is_empty());
    let runs = runs_per_trial(&study);
    assert_eq!(runs.len(), 20, "a log for every trial: {runs:?}");
    assert!(
        runs.values().all(|&n| n == 1),
        "each trial ran once: {runs:?}"
    );
    let mut per_worker = std::collections::BTreeMap::new();
    for (r, id) in read_results(&study).into_iter().zip(&results) {
        assert_eq!(&r.trial_id, id);
        assert_eq!(r.status, TrialStatus::Complete, "{id}: {:?}", r.error);
        assert_eq!(r.attempt, 1, "{id} was re-queued");
        *per_worker.entry(r.worker).or_insert(0u32) += 1;
    }
    assert_eq!(
        per_worker.keys().map(String::as_str).collect::<Vec<_>>(),
        ["w0", "w1"],
        "both FUSE workers trained: {per_worker:?}"
    );
    // Sync mode: five batches of four, each published only after the last
    // batch's results were in, so the workers saw new pending files appear
    // through the FUSE view five times.
    for id in &results {
        let p = trial_file(&study, "settings", id);
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let index = v["index"].as_u64().unwrap();
        assert_eq!(v["batch"].as_u64(), Some(index / 4), "{id}");
    }
    eprintln!("fuse: 20 trials on a bindfs view, per worker {per_worker:?}");
}
