//! `DIR/report.html` kept up to date by the master: written when the study
//! finishes or the master stops, and refreshed at most once a minute while
//! results come in (the open page reloads itself as often). Writing it reads
//! every result, so on a large study the gap grows with what the last write
//! took ([`COST_FACTOR`] times it): the report never takes more than a small
//! share of the master's time, however many trials there are. A report that
//! cannot be written is warned about; it never stops the search.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tracing::{info, warn};

/// The file name of the study's report inside its directory.
pub const REPORT_FILE: &str = "report.html";

/// The gap after a write is at least this many times what the write took.
pub const COST_FACTOR: u32 = 20;

pub struct Refresher {
    dir: PathBuf,
    /// The least gap between two writes.
    base: Duration,
    /// The gap after the last write: `base`, or longer after a slow write.
    every: Duration,
    last: Option<Instant>,
    results: u64,
    warned: bool,
    /// Write the report in a child process (`EXE report DIR`): the loop
    /// goes on while it is written, and the memory that reading every
    /// result takes is the child's, not the master's. `None`: in this
    /// process (the loop waits).
    exe: Option<PathBuf>,
    /// A child writing the report now, and since when.
    child: Option<(Child, Instant)>,
}

impl Refresher {
    pub fn new(dir: PathBuf, exe: Option<PathBuf>) -> Refresher {
        let base = Duration::from_secs(u64::from(hps_report::page::REFRESH_S));
        Refresher {
            dir,
            base,
            every: base,
            last: None,
            results: 0,
            warned: false,
            exe,
            child: None,
        }
    }

    /// While the study runs: rewrite the report when there are new results
    /// and the last write is more than a minute old (or more than
    /// [`COST_FACTOR`] times what it took), and none is being written.
    pub fn tick(&mut self, results: u64) {
        if !self.child_done(false) {
            return;
        }
        let due = !matches!(self.last, Some(t) if t.elapsed() < self.every);
        if results > self.results && due {
            self.write(results, false);
        }
    }

    /// When the study finishes or the master stops: always written, and
    /// waited for.
    pub fn last(&mut self, results: u64) {
        self.child_done(true);
        self.write(results, true);
        self.child_done(true);
    }

    fn write(&mut self, results: u64, last: bool) {
        self.results = results;
        let started = Instant::now();
        if let Some(exe) = &self.exe {
            let child = Command::new(exe)
                .arg("report")
                .arg(&self.dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn();
            match child {
                Ok(c) => self.child = Some((c, started)),
                Err(e) => self.failed(&format!("could not start `{}`: {e}", exe.display()), last),
            }
            return;
        }
        let out = self.dir.join(REPORT_FILE);
        match hps_report::write(
            std::slice::from_ref(&self.dir),
            &out,
            &hps_report::Options::default(),
            None,
        ) {
            Ok(w) if last => info!(report = %w.html.display(), "report written"),
            Ok(_) => {}
            Err(e) => self.failed(&e.to_string(), last),
        }
        self.written(started);
    }

    /// Whether no child is writing the report (any that was has ended and
    /// been accounted for). `wait`: wait for it.
    fn child_done(&mut self, wait: bool) -> bool {
        let Some((child, started)) = &mut self.child else {
            return true;
        };
        let status = match wait {
            true => child.wait().map(Some),
            false => child.try_wait(),
        };
        let ok = match status {
            Ok(None) => return false,
            Ok(Some(s)) => s.success().then_some(()).ok_or_else(|| {
                let mut err = String::new();
                if let Some(e) = child.stderr.as_mut() {
                    let _ = e.read_to_string(&mut err);
                }
                let err = err.trim();
                match err.strip_prefix("Error: ") {
                    Some(e) => e.to_string(),
                    None if err.is_empty() => format!("the report writer exited with {s}"),
                    None => err.to_string(),
                }
            }),
            Err(e) => Err(e.to_string()),
        };
        let started = *started;
        self.child = None;
        match ok {
            Ok(()) if wait => {
                info!(report = %self.dir.join(REPORT_FILE).display(), "report written")
            }
            Ok(()) => {}
            Err(e) => self.failed(&e, wait),
        }
        self.written(started);
        true
    }

    fn written(&mut self, started: Instant) {
        self.last = Some(Instant::now());
        self.every = self.base.max(started.elapsed() * COST_FACTOR);
    }

    /// Warned once while the study runs, and again at the end.
    fn failed(&mut self, e: &str, last: bool) {
        if !self.warned || last {
            self.warned = true;
            let out = self.dir.join(REPORT_FILE);
            warn!("could not write the report `{}`: {e}", out.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hps_shared_fs::testing::branin_study_dir;

    /// Written on the first new results, then not again within `every`,
    /// however many results come in; always at the end.
    #[test]
    fn the_report_is_refreshed_at_most_once_per_interval() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = branin_study_dir(&tmp.path().join("s"), 4);
        let file = dir.root().join(REPORT_FILE);
        let mut r = Refresher::new(dir.root().to_path_buf(), None);
        r.tick(0);
        assert!(!file.exists(), "nothing new: nothing written");
        r.tick(1);
        assert!(file.exists(), "the first result writes it");
        std::fs::remove_file(&file).unwrap();
        r.tick(2);
        r.tick(3);
        assert!(!file.exists(), "not again within the interval");
        r.every = Duration::ZERO;
        r.tick(3);
        assert!(file.exists(), "rewritten once the interval has passed");
        std::fs::remove_file(&file).unwrap();
        r.tick(3);
        assert!(!file.exists(), "no new result: not rewritten");
        r.every = Duration::from_secs(3600);
        r.last(4);
        assert!(file.exists(), "always written at the end");
    }
}
