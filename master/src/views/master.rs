//! The master's line of `hps-master status`: whether a master holds a live
//! lease on the study, judged like the workers (see [`super::beats`]) by
//! watching `master.json`'s `seq` on this host's clock, never by the
//! master's; and, when none does, since when (from file times, shown only).

use std::io::Write;
use std::time::{Duration, SystemTime};

use hps_common::{Heartbeat, MasterLease, WorkerState};
use hps_shared_fs::dir::MASTER_FILE;
use hps_shared_fs::{StudyDir, Sub};

use super::beats::{self, BeatVerdict};
use crate::error::MasterError;
use crate::liveness::Clock;

/// The key of the lease among the watched beats: no worker id is empty.
const KEY: &str = "";

/// What `master.json` held when `status` began.
pub(super) enum Found {
    Lease(MasterLease),
    Absent,
    Unreadable(String),
}

pub(super) fn read(dir: &StudyDir) -> Found {
    match dir.read_lease() {
        Ok(Some(l)) => Found::Lease(l),
        Ok(None) => Found::Absent,
        Err(e) => Found::Unreadable(e.to_string()),
    }
}

/// The lease as a beat, so that it is watched in the workers' window.
pub(super) fn as_beat(l: &MasterLease) -> Heartbeat {
    Heartbeat {
        format_version: l.format_version,
        worker: KEY.into(),
        host: l.host.clone(),
        pid: l.pid,
        device: String::new(),
        seq: l.seq,
        state: WorkerState::Idle,
        trial: None,
        epoch: None,
        interval_s: l.interval_s,
        written_at_unix: l.written_at_unix,
        slurm: None,
    }
}

/// Watch the heartbeats `beats` and the lease `found` together (one window,
/// the longer of their needs). Returns the workers' verdicts, the lease's,
/// and the window.
pub(super) fn watch(
    dir: &StudyDir,
    beats: &[Heartbeat],
    found: &Found,
    clock: &dyn Clock,
    sleep: &mut dyn FnMut(Duration),
    reread_beats: &mut dyn FnMut() -> Vec<Heartbeat>,
) -> (Vec<BeatVerdict>, Option<BeatVerdict>, Duration) {
    let mut all = beats.to_vec();
    if let Found::Lease(l) = found {
        all.push(as_beat(l));
    }
    let Some(window) = beats::window(&all, beats::MAX_WINDOW) else {
        return (
            vec![BeatVerdict::Stopped; beats.len()],
            None,
            Duration::ZERO,
        );
    };
    let mut reread = || {
        let mut v = reread_beats();
        if let Ok(Some(l)) = dir.read_lease() {
            v.push(as_beat(&l));
        }
        v
    };
    let mut verdicts = beats::watch(&all, window, clock, sleep, &mut reread);
    let lease = matches!(found, Found::Lease(_)).then(|| verdicts.pop());
    (verdicts, lease.flatten(), window)
}

/// Seconds since `path` last changed, on this host's clock (display only).
fn age_s(path: &std::path::Path) -> Option<f64> {
    let m = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(SystemTime::now().duration_since(m).ok()?.as_secs_f64())
}

fn ago(age: Option<f64>) -> String {
    match age {
        Some(s) if s < 120.0 => format!("~{s:.0}s ago"),
        Some(s) if s < 7200.0 => format!("~{:.0}m ago", s / 60.0),
        Some(s) => format!("~{:.1}h ago", s / 3600.0),
        None => "at an unknown time".into(),
    }
}

/// The `master` line.
pub(super) fn write_line(
    dir: &StudyDir,
    found: &Found,
    verdict: Option<BeatVerdict>,
    window: Duration,
    out: &mut dyn Write,
) -> Result<(), MasterError> {
    let finished = dir.is_finished();
    let file = dir.root().join(MASTER_FILE);
    let text = match (found, verdict) {
        (Found::Lease(l), Some(BeatVerdict::Live)) => format!(
            "live: pid {} on {} (its lease in {MASTER_FILE} changed within {:.1}s)",
            l.pid,
            l.host,
            window.as_secs_f64()
        ),
        (Found::Lease(l), Some(BeatVerdict::Quiet)) => format!(
            "quiet: pid {} on {} did not renew its lease in the {:.1}s watched (it renews every \
             {:.0}s): it may be alive",
            l.pid,
            l.host,
            window.as_secs_f64(),
            l.interval_s
        ),
        (Found::Lease(l), _) => format!(
            "NONE running: the lease of pid {} on {} is not being renewed; it was last renewed {} \
             ({MASTER_FILE}'s time). {}",
            l.pid,
            l.host,
            ago(age_s(&file)),
            what_to_do(dir, finished)
        ),
        (Found::Absent, _) if never_ran(dir) => format!(
            "NONE running: none has run on this study yet (no {MASTER_FILE}, no trial proposed). \
             {}",
            what_to_do(dir, finished)
        ),
        (Found::Absent, _) => format!(
            "NONE running: no {MASTER_FILE}; the last master stopped {} (the study directory's \
             last change). {}",
            ago(age_s(dir.root())),
            what_to_do(dir, finished)
        ),
        (Found::Unreadable(e), _) => format!("unknown: {e}"),
    };
    writeln!(out, "master     {text}")?;
    Ok(())
}

/// No master has run: none proposed a trial (a master proposes at once).
fn never_ran(dir: &StudyDir) -> bool {
    dir.list(Sub::Settings).is_ok_and(|s| s.is_empty())
}

fn what_to_do(dir: &StudyDir, finished: bool) -> String {
    if finished {
        "The study is finished.".into()
    } else {
        format!(
            "Nothing proposes or prunes trials; start one with `hps-master run {}`",
            dir.root().display()
        )
    }
}
