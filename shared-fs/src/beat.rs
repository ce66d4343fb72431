//! Periodic writers: the worker's heartbeat and the master's lease are the
//! same mechanism, a thread that rewrites one file every interval until it
//! is stopped. Readers judge liveness by whether the file's `seq` changes,
//! on their own clock ([`watch_beats`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hps_common::{Heartbeat, MasterLease};

use crate::error::FsError;

/// A file rewritten by a [`Periodic`]: who writes it, how far it has
/// counted, and how often it is rewritten.
pub trait Beating {
    fn seq(&self) -> u64;
    fn writer(&self) -> (&str, u32);
    fn interval_s(&self) -> f64;
}

impl Beating for MasterLease {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn writer(&self) -> (&str, u32) {
        (&self.host, self.pid)
    }
    fn interval_s(&self) -> f64 {
        self.interval_s
    }
}

impl Beating for Heartbeat {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn writer(&self) -> (&str, u32) {
        (&self.host, self.pid)
    }
    fn interval_s(&self) -> f64 {
        self.interval_s
    }
}

/// What tells one write of a beating file from another: its `seq`, and the
/// host and pid of the process that wrote it. A writer is live while this
/// changes, judged on the reader's own clock: the one rule behind the
/// master's worker liveness, `hps-master status` and the lease watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeatId {
    pub host: String,
    pub pid: u32,
    pub seq: u64,
}

impl BeatId {
    pub fn of<T: Beating>(b: &T) -> BeatId {
        let (host, pid) = b.writer();
        BeatId {
            host: host.to_string(),
            pid,
            seq: b.seq(),
        }
    }
}

/// How watching a beating file ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Watched<T> {
    /// It stood still for three of its intervals: its writer is presumed
    /// dead.
    Standing,
    /// It disappeared: its writer released it.
    Gone,
    /// It changed (a later `seq`, or another writer): it is live.
    Beating(T),
    /// `shutdown` was set.
    Interrupted,
}

/// Watch the beating file `old` for three of its intervals, timed on this
/// process's monotonic clock, never by its timestamps. `reread` gives the
/// file now: `Some(None)` when it is gone, `None` when it cannot be read
/// (watched on).
pub fn watch_beats<T: Beating>(
    old: &T,
    shutdown: &AtomicBool,
    mut reread: impl FnMut() -> Option<Option<T>>,
) -> Watched<T> {
    let interval = match old.interval_s() {
        i if i.is_finite() => i.clamp(0.05, 600.0),
        _ => 2.0,
    };
    let window = Duration::from_secs_f64(interval * 3.0);
    let t = Instant::now();
    while t.elapsed() < window {
        if shutdown.load(Ordering::SeqCst) {
            return Watched::Interrupted;
        }
        std::thread::sleep(Duration::from_millis(50).min(window / 3));
        match reread() {
            Some(Some(now)) if BeatId::of(&now) != BeatId::of(old) => return Watched::Beating(now),
            Some(None) => return Watched::Gone,
            _ => {}
        }
    }
    Watched::Standing
}

/// A thread that calls a closure every interval until stopped (or dropped).
pub struct Periodic {
    name: &'static str,
    // Dropping (or sending on) it wakes the thread and ends it.
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Periodic {
    /// Start calling `beat(seq)` at once and then every `interval`, with
    /// `seq` = 1, 2, 3, … An error is logged (as a warning naming `name`)
    /// and the beat goes on: a missed beat is only a late one.
    pub fn start<F>(name: &'static str, interval: Duration, mut beat: F) -> Periodic
    where
        F: FnMut(u64) -> Result<(), FsError> + Send + 'static,
    {
        let (tx, rx) = channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let mut seq = 1u64;
                loop {
                    if let Err(e) = beat(seq) {
                        tracing::warn!(beat = name, "{e}");
                    }
                    seq += 1;
                    match rx.recv_timeout(interval) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })
            .expect("spawning a beat thread");
        Periodic {
            name,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// Stop beating and wait for the thread: once this returns, `beat` is
    /// not running and will not be called again.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        // A beat in progress finishes; the wait for the next one ends now.
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::warn!(beat = self.name, "the beat thread panicked");
            }
        }
    }
}

impl Drop for Periodic {
    fn drop(&mut self) {
        self.halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn beats_with_rising_seq_and_stops_promptly() {
        let last = Arc::new(AtomicU64::new(0));
        let seen = last.clone();
        let p = Periodic::start("test", Duration::from_millis(10), move |seq| {
            assert_eq!(seq, seen.load(Ordering::SeqCst) + 1);
            seen.store(seq, Ordering::SeqCst);
            Ok(())
        });
        let t = Instant::now();
        while last.load(Ordering::SeqCst) < 3 {
            assert!(t.elapsed() < Duration::from_secs(20), "no beats");
            std::thread::sleep(Duration::from_millis(5));
        }
        p.stop();
        let stopped_at = last.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(last.load(Ordering::SeqCst), stopped_at, "beat after stop");
    }

    #[test]
    fn first_beat_is_immediate_and_drop_stops_a_long_wait() {
        let count = Arc::new(AtomicU64::new(0));
        let c = count.clone();
        let p = Periodic::start("test", Duration::from_secs(3600), move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            Err(FsError::NotAStudy {
                path: "/nowhere".into(),
            })
        });
        let t = Instant::now();
        while count.load(Ordering::SeqCst) == 0 {
            assert!(t.elapsed() < Duration::from_secs(20), "no first beat");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(p);
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "drop waited an interval"
        );
        assert_eq!(
            count.load(Ordering::SeqCst),
            1,
            "errors do not stop or repeat beats"
        );
    }
}
