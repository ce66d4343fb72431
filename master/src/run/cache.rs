//! `cache/results.jsonl`: a digest of every accepted result, one JSON line
//! each ([`ResultDigest`]), appended as the master accepts results. A
//! master resuming a 100,000-trial study reads this one file instead of
//! 100,000 results and 100,000 settings.
//!
//! It is derived and never the source of truth: a line counts only while
//! `results/<id>.json` exists (results are written once and only ever
//! removed, to quarantine), a line that does not parse is skipped, a later
//! line for the same trial wins, and a result without a line is read from
//! `results/` and appended. Deleting the file costs one slow start, nothing
//! else. It is not fsynced: a line lost in a crash is rebuilt the same way.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::PathBuf;

use hps_common::ResultDigest;
use hps_shared_fs::StudyDir;
use tracing::{debug, warn};

/// The folder of derived files, and the cache's name in it.
pub const CACHE_DIR: &str = "cache";
pub const RESULTS_CACHE: &str = "results.jsonl";

pub struct ResultsCache {
    path: PathBuf,
    file: Option<File>,
    /// Appending failed once: said once, then given up for this run.
    broken: bool,
}

impl ResultsCache {
    pub fn new(dir: &StudyDir) -> ResultsCache {
        ResultsCache {
            path: dir.root().join(CACHE_DIR).join(RESULTS_CACHE),
            file: None,
            broken: false,
        }
    }

    /// The digests in the file, the last line per trial; lines that do not
    /// parse (a line torn by a crash, another version) are skipped.
    pub fn load(&self) -> HashMap<String, ResultDigest> {
        let mut out = HashMap::new();
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return out,
            Err(e) => {
                warn!(file = %self.path.display(), "cannot read the results cache: {e}; reading every result instead");
                return out;
            }
        };
        let mut skipped = 0usize;
        for line in BufReader::new(file).lines() {
            let Ok(line) = line else {
                skipped += 1;
                break;
            };
            match serde_json::from_str::<ResultDigest>(&line) {
                Ok(d) if d.v == ResultDigest::VERSION => {
                    out.insert(d.trial_id.clone(), d);
                }
                _ => skipped += 1,
            }
        }
        if skipped > 0 {
            debug!(file = %self.path.display(), skipped, "skipped results-cache lines; those results are read from results/");
        }
        out
    }

    /// Add one digest. A failure is warned about once and then appending
    /// stops for this run: the cache only makes the next start faster.
    pub fn append(&mut self, d: &ResultDigest) {
        if self.broken {
            return;
        }
        if let Err(e) = self.try_append(d) {
            self.broken = true;
            warn!(file = %self.path.display(), "cannot append to the results cache: {e}; the next start reads every result instead");
        }
    }

    fn try_append(&mut self, d: &ResultDigest) -> io::Result<()> {
        if self.file.is_none() {
            if let Some(parent) = self.path.parent() {
                fs::create_dir_all(parent)?;
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.file = Some(f);
        }
        let mut line = serde_json::to_vec(d).map_err(io::Error::other)?;
        line.push(b'\n');
        // One write per line: with O_APPEND, lines from two masters racing
        // for a lease never interleave within a line.
        self.file.as_mut().expect("opened above").write_all(&line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hps_common::TrialStatus;

    fn digest(i: u64, objective: f64) -> ResultDigest {
        ResultDigest {
            v: ResultDigest::VERSION,
            trial_id: hps_common::ids::trial_id(i),
            index: i,
            config: i,
            status: TrialStatus::Complete,
            objective: Some(objective),
            params: Default::default(),
            wall_time_s: 0.5,
            points: vec![],
        }
    }

    #[test]
    fn digests_come_back_the_last_line_per_trial_winning_and_torn_lines_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = hps_shared_fs::testing::branin_study_dir(&tmp.path().join("s"), 4);
        let mut c = ResultsCache::new(&dir);
        assert!(c.load().is_empty(), "no file: nothing cached");
        c.append(&digest(0, 1.0));
        c.append(&digest(1, 2.0));
        c.append(&digest(0, 3.0));
        let path = dir.root().join(CACHE_DIR).join(RESULTS_CACHE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"v\":1,\"trial_id\":\"t0000").unwrap(); // torn by a crash
        let got = ResultsCache::new(&dir).load();
        assert_eq!(got.len(), 2);
        assert_eq!(got["t000000"].objective, Some(3.0));
        assert_eq!(got["t000001"], digest(1, 2.0));
    }
}
