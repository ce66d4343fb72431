//! Worker liveness for `hps-master status`, judged without comparing
//! clocks across hosts.
//!
//! `status` may run on any host, so it cannot use the heartbeat's
//! `written_at_unix` (the worker's wall clock). Like the master, it watches
//! `seq`: it reads every heartbeat, then re-reads them for a short window
//! measured on its own monotonic clock — one and a half times the longest
//! beat interval among the workers that have not said `stopped`, capped at
//! [`MAX_WINDOW`] — and calls a worker live when its `seq` changed in the
//! window. It does not wait at all when every worker has said `stopped`,
//! and it stops early once every other worker has been seen beating.

use std::time::Duration;

use hps_common::{Heartbeat, WorkerState};

use crate::liveness::{BeatId, Clock};

/// The longest `status` watches heartbeats.
pub const MAX_WINDOW: Duration = Duration::from_secs(5);

/// How often heartbeats are re-read within the window.
pub const POLL: Duration = Duration::from_millis(100);

/// What `status` says about one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeatVerdict {
    /// Its `seq` changed while we watched.
    Live,
    /// It wrote its final `stopped` beat.
    Stopped,
    /// Its `seq` stood still for one and a half of its beat intervals.
    Stale,
    /// Its `seq` stood still, but we watched for less than one and a half
    /// of its beat intervals (capped window): it may be alive.
    Quiet,
}

impl BeatVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            BeatVerdict::Live => "live",
            BeatVerdict::Stopped => "stopped",
            BeatVerdict::Stale => "stale",
            BeatVerdict::Quiet => "quiet",
        }
    }
}

fn stopped(hb: &Heartbeat) -> bool {
    hb.state == WorkerState::Stopped
}

/// The window to watch `beats` for: 1.5 × the longest interval among the
/// workers that have not stopped, at most `max`; `None` when all stopped.
pub fn window(beats: &[Heartbeat], max: Duration) -> Option<Duration> {
    beats
        .iter()
        .filter(|hb| !stopped(hb))
        .map(|hb| hb.interval_s.max(0.0) * 1.5)
        .fold(None, |acc: Option<f64>, w| {
            Some(acc.map_or(w, |a| a.max(w)))
        })
        .map(|w| Duration::from_secs_f64(w.min(max.as_secs_f64())))
}

/// Watch `first` (the beats as first read, sorted by worker) for `window`
/// on `clock`: `sleep` waits between readings, `reread` reads the
/// heartbeats again. Returns one verdict per beat of `first`.
pub fn watch(
    first: &[Heartbeat],
    window: Duration,
    clock: &dyn Clock,
    sleep: &mut dyn FnMut(Duration),
    reread: &mut dyn FnMut() -> Vec<Heartbeat>,
) -> Vec<BeatVerdict> {
    let mut changed: Vec<bool> = vec![false; first.len()];
    let mut stop: Vec<bool> = first.iter().map(stopped).collect();
    let start = clock.now();
    let all_settled =
        |changed: &[bool], stop: &[bool]| changed.iter().zip(stop).all(|(c, s)| *c || *s);
    while !all_settled(&changed, &stop) && clock.now().duration_since(start) < window {
        sleep(POLL.min(window));
        for hb in reread() {
            let Some(i) = first.iter().position(|f| f.worker == hb.worker) else {
                continue;
            };
            stop[i] = stopped(&hb);
            if BeatId::of(&hb) != BeatId::of(&first[i]) {
                changed[i] = true;
            }
        }
    }
    let watched = clock.now().duration_since(start);
    first
        .iter()
        .enumerate()
        .map(|(i, hb)| {
            if stop[i] {
                BeatVerdict::Stopped
            } else if changed[i] {
                BeatVerdict::Live
            } else if watched.as_secs_f64() >= hb.interval_s.max(0.0) * 1.5 {
                BeatVerdict::Stale
            } else {
                BeatVerdict::Quiet
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::liveness::ManualClock;

    fn beat(worker: &str, state: &str, seq: u64, interval_s: f64) -> Heartbeat {
        Heartbeat {
            format_version: 1,
            worker: worker.into(),
            host: "h".into(),
            pid: 1,
            device: "cpu".into(),
            seq,
            state: state.parse().unwrap(),
            trial: None,
            epoch: None,
            interval_s,
            // Deliberately absurd: the worker's wall clock is never used.
            written_at_unix: -1e12,
            slurm: None,
        }
    }

    #[test]
    fn the_window_covers_the_slowest_beater_that_has_not_stopped() {
        let beats = [
            beat("a", "idle", 0, 2.0),
            beat("b", "training", 0, 1.0),
            beat("c", "stopped", 0, 60.0),
        ];
        assert_eq!(window(&beats, MAX_WINDOW), Some(Duration::from_secs(3)));
        let slow = [beat("a", "idle", 0, 60.0)];
        assert_eq!(window(&slow, MAX_WINDOW), Some(MAX_WINDOW));
        let done = [beat("c", "stopped", 0, 2.0)];
        assert_eq!(window(&done, MAX_WINDOW), None, "nothing to wait for");
    }

    #[test]
    fn a_changing_seq_is_live_and_a_standing_one_stale_whatever_the_timestamps() {
        let clock = ManualClock::new();
        let first = vec![
            beat("a", "training", 5, 2.0),
            beat("b", "idle", 9, 2.0),
            beat("c", "stopped", u64::MAX, 2.0),
            beat("d", "idle", 3, 60.0),
        ];
        let mut reads = 0;
        let verdicts = watch(
            &first,
            Duration::from_secs(3),
            &clock,
            &mut |d| clock.advance(d),
            &mut || {
                reads += 1;
                // `a` beats once after a second; nobody else moves.
                let a_seq = if reads >= 10 { 6 } else { 5 };
                vec![
                    beat("a", "training", a_seq, 2.0),
                    beat("b", "idle", 9, 2.0),
                    beat("c", "stopped", u64::MAX, 2.0),
                    beat("d", "idle", 3, 60.0),
                ]
            },
        );
        assert_eq!(
            verdicts,
            [
                BeatVerdict::Live,
                BeatVerdict::Stale,
                BeatVerdict::Stopped,
                BeatVerdict::Quiet
            ]
        );
        assert_eq!(reads, 30, "watched the whole window, 100 ms apart");
    }

    #[test]
    fn watching_ends_once_everyone_has_beaten_or_stopped() {
        let clock = ManualClock::new();
        let first = vec![beat("a", "idle", 0, 2.0), beat("b", "training", 0, 2.0)];
        let mut reads = 0;
        let verdicts = watch(
            &first,
            Duration::from_secs(3),
            &clock,
            &mut |d| clock.advance(d),
            &mut || {
                reads += 1;
                // a restarted worker: seq went down, pid changed
                vec![
                    beat("a", "idle", 0, 2.0),
                    beat("b", "stopped", u64::MAX, 2.0),
                ]
                .into_iter()
                .map(|mut hb| {
                    if hb.worker == "a" && reads >= 2 {
                        hb.pid = 2;
                    }
                    hb
                })
                .collect()
            },
        );
        assert_eq!(verdicts, [BeatVerdict::Live, BeatVerdict::Stopped]);
        assert_eq!(reads, 2);
    }
}
