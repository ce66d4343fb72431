//! The master's lease on the study directory: `master.json`, renewed by a
//! background thread. A second master refuses to start while the lease is
//! being renewed, and takes over once it has stopped changing — judged on
//! its own monotonic clock, never by comparing the lease's timestamp.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hps_common::files::unix_now;
use hps_common::{MasterLease, FORMAT_VERSION};
use hps_shared_fs::dir::MASTER_FILE;
use hps_shared_fs::{hostname, watch_beats, Periodic, StudyDir, Watched};
use tracing::{info, warn};

use crate::error::MasterError;

pub(crate) struct Lease {
    check: LeaseCheck,
    beat: Option<Periodic>,
}

/// Whether the lease is still ours: shared by the renewing thread and the
/// main loop, which asks before each batch of writes ([`LeaseCheck::verify`]).
#[derive(Clone)]
pub(super) struct LeaseCheck {
    dir: StudyDir,
    host: String,
    pid: u32,
    lost: Arc<AtomicBool>,
}

/// What a master finds in `master.json` when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    /// No lease, our own (same host and pid), or one whose process is gone
    /// from this host: take it at once.
    Free,
    /// Someone else's: watch it for a few of its intervals first.
    Watch,
}

fn judge(old: &MasterLease, host: &str, pid: u32, alive: impl Fn(u32) -> bool) -> Found {
    let same_host_dead = old.host == host && !alive(old.pid);
    let ours = old.host == host && old.pid == pid;
    if same_host_dead || ours {
        Found::Free
    } else {
        Found::Watch
    }
}

/// How a watched lease ended ([`wait_until_stale`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stale {
    /// It stood still for the whole grace: its master is presumed dead.
    Standing,
    /// `master.json` disappeared: its master released it.
    Gone,
}

impl Lease {
    pub(crate) fn acquire(
        dir: &StudyDir,
        interval: Duration,
        shutdown: &AtomicBool,
    ) -> Result<Lease, MasterError> {
        let host = hostname();
        let pid = std::process::id();
        let mut lease = MasterLease {
            format_version: FORMAT_VERSION,
            host: host.clone(),
            pid,
            seq: 0,
            interval_s: interval.as_secs_f64(),
            written_at_unix: unix_now(),
        };
        take(dir, &lease, shutdown)?;
        let check = LeaseCheck {
            dir: dir.clone(),
            host,
            pid,
            lost: Arc::new(AtomicBool::new(false)),
        };
        let beat = {
            let check = check.clone();
            Periodic::start("master lease", interval, move |seq| {
                renew(&check, &mut lease, seq)
            })
        };
        Ok(Lease {
            check,
            beat: Some(beat),
        })
    }

    /// An error once another master has taken the lease over (re-reads
    /// `master.json`).
    pub(crate) fn check(&self) -> Result<(), MasterError> {
        self.check.verify()
    }

    /// The check the main loop runs before its writes.
    pub(super) fn checker(&self) -> LeaseCheck {
        self.check.clone()
    }

    /// Stop renewing, and remove `master.json` unless it is someone else's.
    pub(crate) fn release(mut self) {
        if let Some(beat) = self.beat.take() {
            beat.stop();
        }
        if self.check.verify().is_ok() {
            let _ = std::fs::remove_file(self.check.dir.root().join(MASTER_FILE));
        }
    }
}

/// Write our first lease. Where there is none, it is created with
/// `link(2)`, so of two masters starting together one wins and the other
/// watches the winner's lease (and refuses, as it is renewed). A stale
/// lease is overwritten; two masters taking over the same stale lease at
/// the same instant both run until the renewals show one of them that it
/// lost (the settings they record stay exclusive, see `Master::record`).
fn take(dir: &StudyDir, lease: &MasterLease, shutdown: &AtomicBool) -> Result<(), MasterError> {
    let interval = Duration::from_secs_f64(lease.interval_s);
    loop {
        let found = match dir.read_lease() {
            Ok(found) => found,
            Err(e) if e.is_damaged() => {
                // Quarantined once it stood still (or gone): look again.
                wait_out_damaged(dir, &e, interval, shutdown)?;
                continue;
            }
            Err(source) => {
                return Err(MasterError::ReadLease {
                    file: dir.root().join(MASTER_FILE),
                    source,
                })
            }
        };
        let Some(old) = found else {
            if dir.create_lease(lease)? {
                return Ok(());
            }
            continue; // another master created it first: judge that one
        };
        if judge(&old, &lease.host, lease.pid, hps_shared_fs::host::pid_alive) == Found::Watch
            && wait_until_stale(dir, &old, shutdown)? == Stale::Gone
        {
            continue;
        }
        dir.write_lease(lease)?;
        return Ok(());
    }
}

impl LeaseCheck {
    fn is_ours(&self, l: &MasterLease) -> bool {
        l.host == self.host && l.pid == self.pid
    }

    /// Who holds the lease if not us: `master.json` names another master,
    /// or is gone (another master held it and released it, or someone
    /// removed it; either way this master no longer knows it is alone). A
    /// lease that cannot be read proves nothing and is not a loss.
    fn taken_by(&self) -> Option<String> {
        match self.dir.read_lease() {
            Ok(Some(l)) if !self.is_ours(&l) => Some(format!("host {}, pid {}", l.host, l.pid)),
            Ok(None) => Some("no master.json any more".into()),
            _ => None,
        }
    }

    /// `Err(LeaseLost)` once the lease is not ours any more, read now, not
    /// only at the last renewal: a master frozen past its lease must find
    /// out before its next write, not at its next beat.
    pub(super) fn verify(&self) -> Result<(), MasterError> {
        let by = self.taken_by();
        if by.is_none() && !self.lost.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.lost.store(true, Ordering::SeqCst);
        Err(MasterError::LeaseLost {
            dir: self.dir.root().to_path_buf(),
            by: by.unwrap_or_else(|| "see master.json".into()),
        })
    }
}

/// A `master.json` that cannot be read (truncated, garbage, a directory, a
/// newer version...) must never block a resume: it is treated as a stale
/// lease of unknown age. Watched for three of our own lease intervals, it
/// is moved to `quarantine/` if it stood still, and refused if it changed
/// (a live writer of some other version).
fn wait_out_damaged(
    dir: &StudyDir,
    damage: &hps_shared_fs::FsError,
    interval: Duration,
    shutdown: &AtomicBool,
) -> Result<(), MasterError> {
    let path = dir.root().join(MASTER_FILE);
    let grace = interval.max(Duration::from_millis(100)) * 3;
    warn!("{damage}; treating it as a stale lease: watching it for {grace:?} before taking over");
    let stamp = || {
        std::fs::symlink_metadata(&path)
            .ok()
            .map(|m| (m.len(), m.modified().ok()))
    };
    let first = stamp();
    let t = Instant::now();
    while t.elapsed() < grace {
        if shutdown.load(Ordering::SeqCst) {
            return Err(MasterError::LeaseInterrupted { file: path });
        }
        std::thread::sleep(Duration::from_millis(100));
        match stamp() {
            None => return Ok(()),
            now if now != first => {
                return Err(MasterError::LeaseDamagedButLive { file: path });
            }
            _ => {}
        }
    }
    let to = dir
        .quarantine(&path)
        .map_err(|source| MasterError::ReadLease {
            file: path.clone(),
            source,
        })?;
    info!(to = %to.display(), "moved the unreadable lease to quarantine/; taking over");
    Ok(())
}

/// Watch another master's lease on our own clock for three of its
/// intervals: an error if it changes (that master is alive), `Ok` once it
/// has stood still that long or disappeared.
fn wait_until_stale(
    dir: &StudyDir,
    old: &MasterLease,
    shutdown: &AtomicBool,
) -> Result<Stale, MasterError> {
    info!(host = %old.host, pid = old.pid, "a master lease exists; checking for three of its intervals whether it is live");
    match watch_beats(old, shutdown, || dir.read_lease().ok()) {
        Watched::Beating(now) => Err(MasterError::LeaseHeld {
            dir: dir.root().to_path_buf(),
            host: now.host,
            pid: now.pid,
        }),
        Watched::Interrupted => Err(MasterError::LeaseInterrupted {
            file: dir.root().join(MASTER_FILE),
        }),
        Watched::Gone => Ok(Stale::Gone),
        Watched::Standing => {
            info!("the previous master's lease is stale; taking over");
            Ok(Stale::Standing)
        }
    }
}

/// One beat of the renewing thread: rewrite the lease with `seq`, unless
/// it is not ours any more (another master's, or gone: we were presumed
/// dead): then say so through `lost` and write nothing any more.
fn renew(
    check: &LeaseCheck,
    lease: &mut MasterLease,
    seq: u64,
) -> Result<(), hps_shared_fs::FsError> {
    if check.lost.load(Ordering::SeqCst) {
        return Ok(());
    }
    if check.taken_by().is_some() {
        check.lost.store(true, Ordering::SeqCst);
        return Ok(());
    }
    lease.seq = seq;
    lease.written_at_unix = unix_now();
    check.dir.write_lease(lease)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(host: &str, pid: u32) -> MasterLease {
        MasterLease {
            format_version: FORMAT_VERSION,
            host: host.into(),
            pid,
            seq: 4,
            interval_s: 0.05,
            written_at_unix: 0.0,
        }
    }

    #[test]
    fn only_a_lease_of_another_live_process_is_watched() {
        let alive = |_| true;
        let dead = |_| false;
        assert_eq!(judge(&lease("h", 7), "h", 7, alive), Found::Free, "ours");
        assert_eq!(judge(&lease("h", 8), "h", 7, dead), Found::Free);
        assert_eq!(judge(&lease("h", 8), "h", 7, alive), Found::Watch);
        // Another host's pid says nothing about this host's processes.
        assert_eq!(judge(&lease("g", 8), "h", 7, dead), Found::Watch);
    }

    fn study_dir(tmp: &std::path::Path) -> StudyDir {
        hps_shared_fs::testing::branin_study_dir(&tmp.join("s"), 1)
    }

    #[test]
    fn a_renewed_lease_is_refused_and_a_standing_one_taken_over() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = study_dir(tmp.path());
        let stop = AtomicBool::new(false);
        // Nobody renews it: stale after three intervals.
        let old = lease("elsewhere", 1);
        dir.write_lease(&old).unwrap();
        assert_eq!(
            wait_until_stale(&dir, &old, &stop).unwrap(),
            Stale::Standing
        );

        // A live master renews it: refused.
        let first = Lease::acquire(&dir, Duration::from_millis(20), &stop).unwrap();
        let mut theirs = dir.read_lease().unwrap().unwrap();
        theirs.host = "elsewhere".into();
        theirs.interval_s = 1.0;
        let e = wait_until_stale(&dir, &theirs, &stop).unwrap_err();
        assert!(matches!(e, MasterError::LeaseHeld { .. }), "{e}");
        first.check().unwrap();
        first.release();
        assert!(dir.read_lease().unwrap().is_none(), "released");
    }

    #[test]
    fn a_master_whose_lease_was_taken_over_notices() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = study_dir(tmp.path());
        let stop = AtomicBool::new(false);
        let ours = Lease::acquire(&dir, Duration::from_millis(10), &stop).unwrap();
        // Written again until noticed: a beat that read our lease just
        // before may overwrite the first write (the protocol's read-then-
        // write is not atomic; the newcomer's own beats win in the end).
        let t = Instant::now();
        while ours.check().is_ok() {
            dir.write_lease(&lease("elsewhere", 1)).unwrap();
            assert!(t.elapsed() < Duration::from_secs(30), "never noticed");
            std::thread::sleep(Duration::from_millis(10));
        }
        ours.release();
        assert_eq!(
            dir.read_lease().unwrap().unwrap().host,
            "elsewhere",
            "the new master's lease is left alone"
        );
    }

    #[test]
    fn a_master_whose_lease_disappeared_counts_it_as_lost() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = study_dir(tmp.path());
        let stop = AtomicBool::new(false);
        let ours = Lease::acquire(&dir, Duration::from_secs(60), &stop).unwrap();
        ours.check().unwrap();
        // Let the immediate first beat (seq 1) finish: removing the file
        // between its read and its write would race with it.
        let t = Instant::now();
        while dir.read_lease().unwrap().map_or(0, |l| l.seq) < 1 {
            assert!(t.elapsed() < Duration::from_secs(30), "no first beat");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::fs::remove_file(dir.root().join(MASTER_FILE)).unwrap();
        let e = ours.check().unwrap_err().to_string();
        assert!(e.contains("no master.json any more"), "{e}");
        ours.release();
        assert!(dir.read_lease().unwrap().is_none(), "not written again");
    }
}
