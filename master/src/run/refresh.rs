//! `DIR/report.html` kept up to date by the master: written when the study
//! finishes or the master stops, and refreshed at most once a minute while
//! results come in (the open page reloads itself as often). Writing it reads
//! every result, so on a large study the gap grows with what the last write
//! took ([`COST_FACTOR`] times it): the report never takes more than a small
//! share of the master's time, however many trials there are. A report that
//! cannot be written is warned about; it never stops the search.

use std::path::PathBuf;
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
    /// Results at the last write: nothing new, nothing to redraw.
    results: u64,
    warned: bool,
}

impl Refresher {
    pub fn new(dir: PathBuf) -> Refresher {
        Refresher {
            dir,
            base: Duration::from_secs(u64::from(hps_report::page::REFRESH_S)),
            every: Duration::from_secs(u64::from(hps_report::page::REFRESH_S)),
            last: None,
            results: 0,
            warned: false,
        }
    }

    /// While the study runs: rewrite the report when there are new results
    /// and the last write is more than a minute old.
    pub fn tick(&mut self, results: u64) {
        let due = !matches!(self.last, Some(t) if t.elapsed() < self.every);
        if results > self.results && due {
            self.write(results, false);
        }
    }

    /// When the study finishes or the master stops.
    pub fn last(&mut self, results: u64) {
        self.write(results, true);
    }

    fn write(&mut self, results: u64, last: bool) {
        let out = self.dir.join(REPORT_FILE);
        let dirs = [self.dir.clone()];
        let started = Instant::now();
        match hps_report::write(&dirs, &out, &hps_report::Options::default(), None) {
            Ok(w) if last => info!(report = %w.html.display(), "report written"),
            Ok(_) => {}
            Err(e) if !self.warned || last => {
                self.warned = true;
                warn!("could not write the report `{}`: {e}", out.display());
            }
            Err(_) => {}
        }
        self.last = Some(Instant::now());
        self.every = self.base.max(started.elapsed() * COST_FACTOR);
        self.results = results;
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
        let mut r = Refresher::new(dir.root().to_path_buf());
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
