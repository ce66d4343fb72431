//! Periodic writers: the worker's heartbeat and the master's lease are the
//! same mechanism, a thread that rewrites one file every interval until it
//! is stopped. Readers judge liveness by whether the file's `seq` changes,
//! on their own clock.

use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::FsError;

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
