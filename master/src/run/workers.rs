//! Worker liveness in the run loop: read the heartbeats, and re-queue (or
//! give up on) the trials of workers presumed dead.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use hps_common::{Heartbeat, WorkerState};
use hps_shared_fs::dir::is_not_found;
use hps_shared_fs::{Claim, Sub};
use tracing::{debug, warn};

use super::written::lost_result;
use super::Master;
use crate::error::MasterError;
use crate::liveness::{BeatId, Liveness, Verdict};

/// The workers as the master sees them: their liveness, and the queues
/// of trials they claim from.
pub(super) struct Fleet {
    pub liveness: Liveness,
    /// When `heartbeats/` was last read.
    pub beats_read: Option<Instant>,
    /// Workers already warned about a too-short --worker-grace.
    pub warned_grace: BTreeSet<String>,
    /// Trials in `pending/` at the last scan, plus those published since.
    pub pending_count: usize,
    /// Trials in `running/` at the last scan.
    pub running_count: usize,
    /// Trials seen nowhere (not pending, running or done), and since when
    /// (on this process's clock).
    pub suspected_orphans: BTreeMap<String, Instant>,
}

impl Fleet {
    pub fn new(worker_grace: Duration) -> Fleet {
        Fleet {
            liveness: Liveness::new(worker_grace),
            beats_read: None,
            warned_grace: BTreeSet::new(),
            pending_count: 0,
            running_count: 0,
            suspected_orphans: BTreeMap::new(),
        }
    }
}

/// The least time between two readings of `heartbeats/`.
const BEATS_GAP: Duration = Duration::from_secs(1);

impl Master {
    /// Re-queue the trials of workers whose heartbeat stopped changing.
    /// Liveness is judged only on this process's monotonic clock.
    pub(super) fn check_workers(&mut self, running: &[Claim]) -> Result<(), MasterError> {
        let now = self.clock.now();
        // Liveness is judged over tens of seconds: reading every heartbeat
        // at every step (hundreds a second with short trials) buys nothing.
        let mut read = false;
        if self
            .fleet
            .beats_read
            .is_none_or(|t| now.duration_since(t) >= BEATS_GAP)
        {
            self.read_heartbeats(now)?;
            self.fleet.beats_read = Some(now);
            read = true;
        }
        for c in running {
            self.fleet.liveness.saw_claim(&c.worker, now);
        }
        // But a claim is never taken away on a view older than this step:
        // a worker that stopped and started again under its id (its last
        // beat said `stopped`) claims before the next regular reading.
        let doubtful = |m: &Self| {
            running.iter().any(|c| {
                !m.ledger.results.contains_key(&c.trial_id)
                    && m.fleet.liveness.verdict(&c.worker, now) != Verdict::Alive
            })
        };
        if !read && doubtful(self) {
            self.read_heartbeats(now)?;
            self.fleet.beats_read = Some(now);
        }
        for c in running {
            if self.ledger.results.contains_key(&c.trial_id) {
                continue;
            }
            if self.fleet.liveness.verdict(&c.worker, now) == Verdict::Alive {
                continue;
            }
            self.requeue_claim(c)?;
        }
        Ok(())
    }

    /// Feed every readable heartbeat to the liveness tracker; quarantine
    /// the corrupt ones.
    fn read_heartbeats(&mut self, now: Instant) -> Result<(), MasterError> {
        for w in self.dir.list(Sub::Heartbeats)? {
            match self.dir.read_heartbeat(&w) {
                Ok(hb) if hb.worker == w => {
                    self.warn_short_grace(&hb);
                    let stopped = hb.state == WorkerState::Stopped;
                    let beat = BeatId::of(&hb);
                    self.fleet.liveness.observe(&w, beat, stopped, now);
                    self.fleet.liveness.note_trial(&w, hb.trial);
                }
                Ok(hb) => {
                    warn!(
                        "heartbeats/{w}.json says worker `{}`; moving it to quarantine/",
                        hb.worker
                    );
                    self.quarantine(&self.dir.json_path(Sub::Heartbeats, &w));
                }
                Err(e) if e.is_damaged() => {
                    // A truncated beat from a crashed writer cannot happen
                    // (atomic writes), so this is real corruption.
                    warn!("{e}; moving it to quarantine/");
                    self.quarantine(&self.dir.json_path(Sub::Heartbeats, &w));
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => debug!("{e}"),
            }
        }
        Ok(())
    }

    /// A grace period shorter than a few beats would re-queue live
    /// workers' trials: say so, once per worker.
    fn warn_short_grace(&mut self, hb: &Heartbeat) {
        let min_grace = Duration::from_secs_f64(hb.interval_s.max(0.0) * 3.0);
        if self.cfg.worker_grace < min_grace && self.fleet.warned_grace.insert(hb.worker.clone()) {
            warn!(
                worker = %hb.worker,
                "--worker-grace {:?} is shorter than 3 heartbeats of this worker ({:.1}s each); \
                 its trials may be re-queued while it is alive. Raise --worker-grace or lower the worker's --heartbeat",
                self.cfg.worker_grace,
                hb.interval_s
            );
        }
    }

    /// Take the claim of a worker presumed dead, then re-queue its trial
    /// with the next attempt, or give it up after `max_attempts`.
    fn requeue_claim(&mut self, c: &Claim) -> Result<(), MasterError> {
        // Take the claim first: if the worker (restarted, or merely
        // late) takes or finishes it at the same moment, one of us wins.
        let Some(taken) = self.dir.take_claim(c)? else {
            return Ok(());
        };
        let mut setting = match self.dir.read_taken(&taken) {
            Ok(s) => s,
            Err(e) => {
                warn!("{e}; restoring the setting from settings/");
                match self.ledger.settings.get(&c.trial_id) {
                    Some(s) => s.clone(),
                    None => {
                        self.quarantine(&taken.path);
                        return Ok(());
                    }
                }
            }
        };
        if setting.attempt >= self.cfg.max_attempts {
            warn!(trial = %c.trial_id, worker = %c.worker, attempts = setting.attempt, "giving up on a trial whose workers keep dying");
            let r = lost_result(&setting, &c.worker, self.cfg.max_attempts);
            self.dir.submit_result(&r)?;
            self.dir.forget(taken)?;
            return Ok(());
        }
        setting.attempt += 1;
        warn!(trial = %c.trial_id, worker = %c.worker, attempt = setting.attempt, "worker presumed dead (no heartbeat for {:?}); re-queueing", self.cfg.worker_grace);
        self.dir.requeue(taken, &setting)?;
        Ok(())
    }
}
