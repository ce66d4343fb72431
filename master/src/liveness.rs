//! Worker liveness, judged only on the master's own monotonic clock.
//!
//! A heartbeat file carries a sequence number that its worker increments on
//! every write. The master never compares the timestamp inside the file (or
//! the file's mtime) with its own clock — hosts' clocks differ. It notes
//! *when it saw the number change*, on its clock, and presumes the worker
//! dead once the number has not changed for the grace period. A worker
//! restarted under the same id starts its number again, and may write the
//! very number its dead predecessor wrote last; the writer's host and pid
//! in the beat tell the two apart ([`BeatId`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A source of monotonic time, injectable so tests can step it.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that only moves when told to.
pub struct ManualClock {
    base: Instant,
    offset: Mutex<Duration>,
}

impl ManualClock {
    pub fn new() -> Self {
        ManualClock {
            base: Instant::now(),
            offset: Mutex::new(Duration::ZERO),
        }
    }

    pub fn advance(&self, d: Duration) {
        *self.offset.lock().unwrap() += d;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + *self.offset.lock().unwrap()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Alive,
    /// No change for longer than the grace period, or no heartbeat at all
    /// since its claim was first seen that long ago.
    Dead,
    /// The worker wrote a final `stopped` heartbeat.
    Stopped,
}

/// What tells one heartbeat write from another ([`BeatId`], the rule of
/// shared-fs's `beat` module).
pub use hps_shared_fs::BeatId;

struct Seen {
    beat: BeatId,
    changed: Instant,
    stopped: bool,
    /// The trial its last beat says it trains.
    trial: Option<String>,
}

/// What the master knows about each worker's heartbeat.
pub struct Liveness {
    grace: Duration,
    seen: HashMap<String, Seen>,
    /// Workers known only from a claim (no heartbeat read yet), and when
    /// that claim was first seen.
    claimants: HashMap<String, Instant>,
}

impl Liveness {
    pub fn new(grace: Duration) -> Self {
        Liveness {
            grace,
            seen: HashMap::new(),
            claimants: HashMap::new(),
        }
    }

    /// A claim names `worker`. If its heartbeat has never been read, its
    /// grace period starts now: a new worker claims within milliseconds of
    /// starting, before (or, on NFS, visibly before) its first beat.
    pub fn saw_claim(&mut self, worker: &str, now: Instant) {
        if !self.seen.contains_key(worker) {
            self.claimants.entry(worker.to_string()).or_insert(now);
        }
    }

    /// Record a heartbeat read at `now`. A changed `seq` (in either
    /// direction: a restarted worker starts again from 0), or the same
    /// `seq` from another process, renews the lease.
    pub fn observe(&mut self, worker: &str, beat: BeatId, stopped: bool, now: Instant) {
        match self.seen.get_mut(worker) {
            Some(s) => {
                if s.beat != beat {
                    s.beat = beat;
                    s.changed = now;
                }
                s.stopped = stopped;
            }
            None => {
                // First sight: we cannot know how old the beat is, so the
                // worker gets the full grace period from now.
                self.seen.insert(
                    worker.to_string(),
                    Seen {
                        beat,
                        changed: now,
                        stopped,
                        trial: None,
                    },
                );
            }
        }
    }

    /// The trial `worker`'s last beat said it trains (after [`observe`]).
    ///
    /// [`observe`]: Liveness::observe
    pub fn note_trial(&mut self, worker: &str, trial: Option<String>) {
        if let Some(s) = self.seen.get_mut(worker) {
            s.trial = trial;
        }
    }

    /// Whether a live worker's heartbeat says it trains `trial`: then the
    /// trial is in flight even where its claim file cannot be seen (its
    /// `running/` file removed by hand), and must not be published again.
    pub fn training(&self, trial: &str, now: Instant) -> bool {
        self.seen.iter().any(|(w, s)| {
            s.trial.as_deref() == Some(trial) && self.verdict(w, now) == Verdict::Alive
        })
    }

    pub fn verdict(&self, worker: &str, now: Instant) -> Verdict {
        match self.seen.get(worker) {
            Some(s) if s.stopped => Verdict::Stopped,
            Some(s) if now.duration_since(s.changed) > self.grace => Verdict::Dead,
            Some(_) => Verdict::Alive,
            None => match self.claimants.get(worker) {
                Some(first) if now.duration_since(*first) > self.grace => Verdict::Dead,
                _ => Verdict::Alive,
            },
        }
    }

    pub fn live_count(&self, now: Instant) -> usize {
        self.seen
            .keys()
            .filter(|w| self.verdict(w, now) == Verdict::Alive)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(30);

    /// Beat `seq` of one worker process.
    fn beat(seq: u64) -> BeatId {
        BeatId {
            host: "h".into(),
            pid: 100,
            seq,
        }
    }

    /// Regression (found by the sshfs test): a worker killed a moment after
    /// it started and restarted under the same id writes the same first
    /// `seq` again. The restart is a change: its claims are not re-queued.
    #[test]
    fn a_restarted_worker_that_repeats_the_last_seq_is_alive() {
        let clock = ManualClock::new();
        let mut l = Liveness::new(GRACE);
        l.observe("w0", beat(0), false, clock.now());
        clock.advance(GRACE + Duration::from_secs(5));
        assert_eq!(l.verdict("w0", clock.now()), Verdict::Dead);
        let restarted = BeatId {
            pid: 101,
            ..beat(0)
        };
        l.observe("w0", restarted.clone(), false, clock.now());
        assert_eq!(l.verdict("w0", clock.now()), Verdict::Alive);
        clock.advance(GRACE + Duration::from_secs(1));
        l.observe("w0", restarted, false, clock.now());
        assert_eq!(
            l.verdict("w0", clock.now()),
            Verdict::Dead,
            "then it must beat"
        );
        let other_host = BeatId {
            host: "h2".into(),
            ..beat(0)
        };
        l.observe("w0", other_host, false, clock.now());
        assert_eq!(l.verdict("w0", clock.now()), Verdict::Alive);
    }

    #[test]
    fn a_slow_but_beating_worker_is_never_dead() {
        let clock = ManualClock::new();
        let mut l = Liveness::new(GRACE);
        // A trial that takes an hour, heartbeats every 2 s.
        for seq in 0..1800 {
            l.observe("w0", beat(seq), false, clock.now());
            clock.advance(Duration::from_secs(2));
            assert_eq!(
                l.verdict("w0", clock.now()),
                Verdict::Alive,
                "at beat {seq}"
            );
        }
    }

    #[test]
    fn a_silent_worker_dies_after_the_grace_period_and_not_before() {
        let clock = ManualClock::new();
        let mut l = Liveness::new(GRACE);
        l.observe("w0", beat(7), false, clock.now());
        clock.advance(GRACE);
        l.observe("w0", beat(7), false, clock.now());
        assert_eq!(l.verdict("w0", clock.now()), Verdict::Alive);
        clock.advance(Duration::from_secs(1));
        assert_eq!(l.verdict("w0", clock.now()), Verdict::Dead);
    }

    #[test]
    fn the_timestamp_in_the_file_is_irrelevant() {
        // A worker whose wall clock is a day behind, or whose beat we first
        // read long after it was written, gets the full grace from first sight.
        let clock = ManualClock::new();
        let mut l = Liveness::new(GRACE);
        clock.advance(Duration::from_secs(3600));
        l.observe("w0", beat(1), false, clock.now());
        assert_eq!(l.verdict("w0", clock.now()), Verdict::Alive);
    }

    #[test]
    fn a_restarted_worker_renews_its_lease_even_though_seq_went_down() {
        let clock = ManualClock::new();
        let mut l = Liveness::new(GRACE);
        l.observe("w0", beat(500), false, clock.now());
        clock.advance(GRACE + Duration::from_secs(5));
        assert_eq!(l.verdict("w0", clock.now()), Verdict::Dead);
        l.observe("w0", beat(0), false, clock.now());
        assert_eq!(l.verdict("w0", clock.now()), Verdict::Alive);
    }

    #[test]
    fn a_claimant_without_heartbeat_gets_the_grace_from_first_sight_of_its_claim() {
        // Regression (found by the chaos test): a worker that joins a study
        // whose master has run longer than the grace period claims before
        // its first heartbeat is visible; that claim must not be re-queued.
        let clock = ManualClock::new();
        let mut l = Liveness::new(GRACE);
        clock.advance(GRACE * 10);
        l.saw_claim("newbie", clock.now());
        assert_eq!(l.verdict("newbie", clock.now()), Verdict::Alive);
        clock.advance(GRACE);
        l.saw_claim("newbie", clock.now());
        assert_eq!(l.verdict("newbie", clock.now()), Verdict::Alive);
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            l.verdict("newbie", clock.now()),
            Verdict::Dead,
            "a claim whose worker never beats dies after the grace"
        );
        assert_eq!(
            l.live_count(clock.now()),
            0,
            "claimants are not counted as live workers"
        );
    }

    #[test]
    fn stopped_is_final_until_it_beats_again() {
        let clock = ManualClock::new();
        let mut l = Liveness::new(GRACE);
        l.observe("w0", beat(3), true, clock.now());
        assert_eq!(l.verdict("w0", clock.now()), Verdict::Stopped);
        assert_eq!(l.live_count(clock.now()), 0);
        l.observe("w0", beat(0), false, clock.now());
        assert_eq!(l.verdict("w0", clock.now()), Verdict::Alive);
        assert_eq!(l.live_count(clock.now()), 1);
    }
}
