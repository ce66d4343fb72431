//! Wake-ups for the master's and workers' scan loops.
//!
//! Native change events (inotify and friends) only *hint* that something
//! may have changed; the periodic rescan is the truth. On NFS, inotify never
//! sees writes made by other clients, so `WatchMode::Poll` turns events off
//! and relies on the scan alone.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecursiveMode, Watcher};

use crate::RemoteFs;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchMode {
    /// Native events as hints, plus a rescan at least every interval.
    Native(Duration),
    /// No events: rescan every interval.
    Poll(Duration),
}

impl WatchMode {
    /// The one place that picks how a scan loop over `dir` learns of
    /// changes: `poll` (the user's `--poll`) wins; otherwise polling every
    /// `default_interval` on a network/FUSE filesystem, where native events
    /// miss other clients' writes; otherwise native events plus a rescan
    /// every `default_interval`. The second value says why polling was
    /// chosen when it was chosen automatically, for the log.
    pub fn choose(
        dir: &Path,
        poll: Option<Duration>,
        default_interval: Duration,
    ) -> (WatchMode, Option<String>) {
        Self::choose_on(crate::detect_remote_fs(dir), poll, default_interval)
    }

    /// [`WatchMode::choose`] for a caller that has already detected the
    /// filesystem (and needs the answer for more than watching).
    pub fn choose_on(
        remote: Option<RemoteFs>,
        poll: Option<Duration>,
        default_interval: Duration,
    ) -> (WatchMode, Option<String>) {
        match (poll, remote) {
            (Some(d), _) => (WatchMode::Poll(d), None),
            (None, Some(fs)) => (
                WatchMode::Poll(default_interval),
                Some(format!(
                    "study directory is on a network/FUSE filesystem ({}): polling",
                    fs.0
                )),
            ),
            (None, None) => (WatchMode::Native(default_interval), None),
        }
    }

    pub fn interval(self) -> Duration {
        match self {
            WatchMode::Native(d) | WatchMode::Poll(d) => d,
        }
    }
}

/// The least time between two wake-ups by events: events that come in a
/// burst (a batch of results, a rename and its directory update) are
/// gathered into one rescan. The first event after a quiet spell wakes the
/// loop at once: the gap is kept from the previous wake-up, so a hand-over
/// between master and worker costs no fixed delay, while a steady stream
/// of events costs at most one rescan per gap.
pub const MIN_RESCAN_GAP: Duration = Duration::from_millis(10);

/// The first gap of the quick polls that follow [`Waker::busy`]; each next
/// gap doubles, up to the poll interval. On a network/FUSE filesystem,
/// where no event says that a file appeared, this is what keeps a short
/// trial from costing a whole poll interval of waiting per hand-over
/// (master publishes, worker claims, worker publishes, master reads), while
/// an idle process still scans only once per interval.
pub const QUICK_POLL: Duration = Duration::from_millis(100);

/// A native watcher and the directories it watches.
type Watching = (Box<dyn Watcher + Send>, Vec<PathBuf>);

/// Blocks a scan loop until something may have changed.
pub struct Waker {
    rx: Receiver<()>,
    tx: SyncSender<()>,
    interval: Duration,
    /// Polling (no native events): the next wait's gap, in nanoseconds.
    /// [`Waker::busy`] shortens it, each wait doubles it back up.
    next_gap_ns: Option<AtomicU64>,
    /// When [`Waker::wait`] last returned.
    last_wake: Mutex<Option<Instant>>,
    // Kept alive for as long as the Waker; dropping it stops the events.
    // With the directories it watches, for [`Waker::watch`].
    watcher: Mutex<Option<Watching>>,
    description: String,
    /// How many directories [`Waker::new`] was given.
    first: usize,
}

impl Waker {
    /// Watch `dirs` (non-recursively). If native watching cannot be set up
    /// (for example the inotify watch limit is reached), falls back to
    /// polling and says so in [`Waker::description`].
    pub fn new(dirs: &[PathBuf], mode: WatchMode) -> Waker {
        // Capacity 1: one pending hint is as good as a thousand.
        let (tx, rx) = sync_channel(1);
        let interval = mode.interval();
        let (watcher, description) = match mode {
            WatchMode::Poll(d) => (None, format!("polling every {}", fmt_dur(d))),
            WatchMode::Native(d) => match native(dirs, tx.clone()) {
                Ok(w) => (
                    Some(w),
                    format!("native events, rescan every {}", fmt_dur(d)),
                ),
                Err(e) => (
                    None,
                    format!(
                        "polling every {} (native watching failed: {e}; if the inotify limit \
                         is reached raise fs.inotify.max_user_watches or pass --poll)",
                        fmt_dur(d)
                    ),
                ),
            },
        };
        let next_gap_ns = watcher.is_none().then(|| AtomicU64::new(nanos(interval)));
        Waker {
            first: dirs.len(),
            rx,
            tx,
            interval,
            next_gap_ns,
            last_wake: Mutex::new(None),
            watcher: Mutex::new(watcher.map(|w| (w, dirs.to_vec()))),
            description,
        }
    }

    /// Something just happened here (a trial ended, a result came in, a
    /// listed file was gone when claimed): the next change is likely soon.
    /// When polling, the next scans come after [`QUICK_POLL`], then twice
    /// that, and so on back up to the interval. No effect with native
    /// events, which wake the loop at once anyway.
    pub fn busy(&self) {
        if let Some(gap) = &self.next_gap_ns {
            gap.store(nanos(QUICK_POLL.min(self.interval)), Ordering::Relaxed);
        }
    }

    /// Watch `dir` too (non-recursively), from now on: a shard of a
    /// sharded folder, where the files the loop waits for are created. A
    /// directory already watched is not watched twice, and at most
    /// [`Waker::MAX_EXTRA`] are added (the oldest is dropped first). A
    /// failure is left to the rescan, which finds the files anyway. No
    /// effect when polling.
    pub fn watch(&self, dir: &Path) {
        let mut guard = self.watcher.lock().unwrap_or_else(|e| e.into_inner());
        let Some((w, dirs)) = guard.as_mut() else {
            return;
        };
        if dirs.iter().any(|d| d == dir) {
            return;
        }
        if w.watch(dir, RecursiveMode::NonRecursive).is_ok() {
            dirs.push(dir.to_path_buf());
        }
        if dirs.len() > self.first + Self::MAX_EXTRA {
            let old = dirs.remove(self.first);
            let _ = w.unwatch(&old);
        }
    }

    /// At most this many directories are added by [`Waker::watch`].
    pub const MAX_EXTRA: usize = 16;

    /// How long the next wait may last at most.
    fn next_timeout(&self) -> Duration {
        let Some(gap) = &self.next_gap_ns else {
            return self.interval;
        };
        let cap = nanos(self.interval);
        let now = gap.load(Ordering::Relaxed).min(cap);
        gap.store(now.saturating_mul(2).min(cap), Ordering::Relaxed);
        Duration::from_nanos(now)
    }

    /// How this waker learns of changes, for the log.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// A handle that wakes the loop from elsewhere (e.g. a signal handler).
    pub fn handle(&self) -> WakeHandle {
        WakeHandle(self.tx.clone())
    }

    /// Block until a hint arrives or the rescan (or poll) interval passes.
    /// Extra queued hints are drained: the caller rescans anyway.
    /// Wake-ups by events come at most every [`MIN_RESCAN_GAP`], so a burst
    /// of events costs one rescan, not one per event.
    pub fn wait(&self) {
        let mut last = self.last_wake.lock().unwrap_or_else(|e| e.into_inner());
        match self.rx.recv_timeout(self.next_timeout()) {
            Ok(()) => {
                let since = last.map_or(MIN_RESCAN_GAP, |t| t.elapsed());
                if since < MIN_RESCAN_GAP {
                    std::thread::sleep(MIN_RESCAN_GAP - since);
                }
            }
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {}
        }
        while self.rx.try_recv().is_ok() {}
        *last = Some(Instant::now());
    }
}

/// Wakes a [`Waker`] without blocking.
#[derive(Clone)]
pub struct WakeHandle(SyncSender<()>);

impl WakeHandle {
    pub fn wake(&self) {
        let _ = self.0.try_send(());
    }
}

fn native(dirs: &[PathBuf], tx: SyncSender<()>) -> notify::Result<Box<dyn Watcher + Send>> {
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // Never block inside the callback: a full channel already means
        // "rescan", so a failed try_send loses nothing.
        if res.is_ok_and(|e| is_a_change(&e.kind) && !only_hidden(&e.paths)) {
            match tx.try_send(()) {
                Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
            }
        }
    })?;
    for d in dirs {
        w.watch(d, RecursiveMode::NonRecursive)?;
    }
    Ok(Box::new(w))
}

/// Whether an event can mean that the directory's contents changed: a file
/// created, removed, renamed in or out, or closed after writing. Opening,
/// reading or listing (which the scan itself does) is not a change; waking
/// on those made an idle process rescan in a loop on its own events.
fn is_a_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Name(_)) => true,
        EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Modify(_) | EventKind::Other => false,
        EventKind::Any => true,
    }
}

/// Whether every path of an event is a hidden name: a temp file being
/// written (`.tmp.*`) before it is renamed or linked into place, which
/// makes an event of its own under the real name. Without this each
/// publish woke every watcher three or four times.
fn only_hidden(paths: &[PathBuf]) -> bool {
    !paths.is_empty()
        && paths.iter().all(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn fmt_dur(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn native_event_wakes_before_the_rescan_interval() {
        let dir = tempfile::tempdir().unwrap();
        let w = Waker::new(
            &[dir.path().to_path_buf()],
            WatchMode::Native(Duration::from_secs(30)),
        );
        assert!(w.description().starts_with("native"), "{}", w.description());
        assert_woken_by_write(&w, dir.path().join("x"));
    }

    /// Write `p` from another thread while `w` waits: the write's event
    /// must wake it well before its 30 s fallback.
    fn assert_woken_by_write(w: &Waker, p: std::path::PathBuf) {
        let t = Instant::now();
        let shown = p.display().to_string();
        let writer = std::thread::spawn(move || std::fs::write(p, b"x").unwrap());
        w.wait();
        writer.join().unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "writing {shown} should have woken the waiter"
        );
    }

    #[test]
    fn a_directory_watched_later_wakes_too_and_old_extras_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let shard = dir.path().join("t000");
        std::fs::create_dir(&shard).unwrap();
        let w = Waker::new(
            &[dir.path().to_path_buf()],
            WatchMode::Native(Duration::from_secs(30)),
        );
        w.watch(&shard);
        w.watch(&shard);
        assert_woken_by_write(&w, shard.join("x"));
        for i in 0..Waker::MAX_EXTRA + 3 {
            let d = dir.path().join(format!("d{i}"));
            std::fs::create_dir(&d).unwrap();
            w.watch(&d);
        }
        let watched = w.watcher.lock().unwrap().as_ref().unwrap().1.clone();
        assert_eq!(watched.len(), 1 + Waker::MAX_EXTRA, "{watched:?}");
        assert_eq!(watched[0], dir.path(), "the first directories stay");
        assert!(!watched.contains(&shard), "the oldest extra went first");
    }

    #[test]
    fn events_on_temp_files_alone_do_not_wake() {
        let p = |s: &str| PathBuf::from(s);
        assert!(only_hidden(&[p("/d/pending/.tmp.t000001.json.1.2.3")]));
        assert!(!only_hidden(&[
            p("/d/pending/.tmp.t1.json.1"),
            p("/d/pending/t1.json")
        ]));
        assert!(!only_hidden(&[p("/d/results/t000001.json")]));
        assert!(!only_hidden(&[]), "an event without paths may be anything");
    }

    #[test]
    fn choose_poll_given_or_not() {
        let (s2, s5) = (Duration::from_secs(2), Duration::from_secs(5));
        assert_eq!(
            WatchMode::choose_on(None, Some(s5), s2),
            (WatchMode::Poll(s5), None)
        );
        assert_eq!(
            WatchMode::choose_on(Some(RemoteFs("nfs")), Some(s5), s2),
            (WatchMode::Poll(s5), None)
        );
        let (mode, why) = WatchMode::choose_on(Some(RemoteFs("nfs")), None, s2);
        assert_eq!(mode, WatchMode::Poll(s2));
        assert!(why.unwrap().contains("nfs"));
        assert_eq!(
            WatchMode::choose_on(None, None, s2),
            (WatchMode::Native(s2), None)
        );
        // On this machine's temp directory: whatever it is, --poll wins.
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            WatchMode::choose(dir.path(), Some(s5), s2).0,
            WatchMode::Poll(s5)
        );
        let (mode, why) = WatchMode::choose(dir.path(), None, s2);
        assert_eq!(mode.interval(), s2);
        assert_eq!(why.is_some(), matches!(mode, WatchMode::Poll(_)));
    }

    #[test]
    fn a_busy_poller_looks_again_soon_then_backs_off_to_its_interval() {
        let w = Waker::new(&[], WatchMode::Poll(Duration::from_secs(2)));
        assert_eq!(
            w.next_timeout(),
            Duration::from_secs(2),
            "idle: the interval"
        );
        w.busy();
        let gaps: Vec<u64> = (0..7)
            .map(|_| w.next_timeout().as_millis() as u64)
            .collect();
        assert_eq!(gaps, [100, 200, 400, 800, 1600, 2000, 2000]);
        // Native events need no quick polls.
        let dir = tempfile::tempdir().unwrap();
        let n = Waker::new(
            &[dir.path().to_path_buf()],
            WatchMode::Native(Duration::from_secs(2)),
        );
        n.busy();
        assert_eq!(n.next_timeout(), Duration::from_secs(2));
    }

    #[test]
    fn handle_wakes_a_polling_waiter() {
        let w = Waker::new(&[], WatchMode::Poll(Duration::from_secs(30)));
        let h = w.handle();
        h.wake();
        let t = Instant::now();
        w.wait();
        assert!(t.elapsed() < Duration::from_secs(20));
    }
}
