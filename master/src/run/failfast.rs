//! Fail fast on a wrong setup: after `--max-consecutive-failures` failed
//! trials in a row the master stops proposing and exits with an error,
//! instead of spending the whole budget on a script that cannot run.
//!
//! - Only `failed` results count, whatever their error: a wrong setup
//!   fails with texts that differ from trial to trial (tracebacks name
//!   parameters and paths), so grouping by message would miss the case
//!   this is for. A worker that dies on every attempt counts too.
//! - Any other result (`complete`, `pruned`, `diverged`, `invalid`) ends
//!   the streak: the command ran and reported, so the setup works.
//! - The order is the order the master accepts results in, which is the
//!   order they finish in (up to one scan). In async mode the trials still
//!   running when the limit is reached go on; their results are collected
//!   by the next run.
//! - Results already in the directory when the master starts do not
//!   count: a master run again after the script was fixed must not stop
//!   at once on the failures that made the last one stop.

use hps_common::{TrialResult, TrialStatus};
use tracing::{debug, warn};

use super::Master;
use crate::error::MasterError;
use crate::scan::Scan;

/// Lines of the first failure's error shown when the master stops.
const ERROR_TAIL_LINES: usize = 25;

/// The failed trials since the last result that was not a failure.
#[derive(Debug, Clone, Default)]
pub(super) struct FailureStreak {
    /// Stop after this many in a row; 0 never stops.
    limit: u32,
    /// Off until the results found at start have been read.
    counting: bool,
    /// The trials of the streak, in the order they were accepted.
    trials: Vec<String>,
    /// The first one's error.
    first_error: String,
}

/// Why the master gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct GiveUp {
    pub trials: Vec<String>,
    /// The tail of the first failure's error.
    pub first_error: String,
}

impl FailureStreak {
    pub fn new(limit: u32) -> Self {
        FailureStreak {
            limit,
            ..Default::default()
        }
    }

    /// Whether the results found at start have been read.
    pub fn counting(&self) -> bool {
        self.counting
    }

    /// Count from now on (called after the first scan).
    pub fn start_counting(&mut self) {
        self.counting = true;
    }

    pub fn observe(&mut self, r: &TrialResult) {
        if !self.counting {
            return;
        }
        if r.status != TrialStatus::Failed {
            self.trials.clear();
            return;
        }
        if self.trials.is_empty() {
            self.first_error = r.error.clone().unwrap_or_default();
        }
        self.trials.push(r.trial_id.clone());
    }

    /// `Some` once the limit is reached.
    pub fn given_up(&self) -> Option<GiveUp> {
        if self.limit == 0 || self.trials.len() < self.limit as usize {
            return None;
        }
        Some(GiveUp {
            trials: self.trials.clone(),
            first_error: tail(&self.first_error, ERROR_TAIL_LINES),
        })
    }
}

impl Master {
    /// `Some(error)` once the streak reached the limit: the pending trials
    /// are withdrawn first, so that workers do not spend them on the same
    /// failure. They stay recorded in `settings/`, and the next master
    /// publishes them again (the orphan rule, protocol §4.4).
    pub(super) fn give_up(&mut self) -> Result<Option<MasterError>, MasterError> {
        let Some(g) = self.streak.given_up() else {
            return Ok(None);
        };
        self.still_ours()?;
        let scan = Scan::take(&self.dir)?;
        let mut withdrawn = 0;
        for id in scan
            .pending
            .iter()
            .filter(|id| !self.ledger.results.contains_key(*id))
        {
            let Ok(path) = self.dir.pending_path(id) else {
                continue;
            };
            // A worker that claims it at this instant wins the race and runs it.
            match std::fs::remove_file(&path) {
                Ok(()) => withdrawn += 1,
                Err(e) => debug!(file = %path.display(), "not withdrawn: {e}"),
            }
        }
        let running = scan
            .running
            .iter()
            .filter(|c| !self.ledger.results.contains_key(&c.trial_id))
            .count();
        warn!(
            withdrawn,
            running,
            "too many consecutive failures: proposing stopped; withdrew the pending trials \
             (published again when the master next runs); trials still running finish on their workers"
        );
        Ok(Some(MasterError::TooManyFailures {
            dir: self.dir.root().to_path_buf(),
            count: g.trials.len(),
            first: g.trials.first().cloned().unwrap_or_default(),
            trials: g.trials.join(", "),
            first_error: g.first_error,
        }))
    }
}

/// The last `n` lines of `text`, each indented, for the error message.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let skipped = lines.len().saturating_sub(n);
    let mut out = String::new();
    if skipped > 0 {
        out.push_str(&format!("  ({skipped} lines left out)\n"));
    }
    if lines.is_empty() {
        out.push_str("  (no error text)");
    }
    let shown: Vec<String> = lines[skipped..].iter().map(|l| format!("  {l}")).collect();
    out.push_str(&shown.join("\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hps_common::TrialSetting;

    fn result(i: u64, status: TrialStatus, error: &str) -> TrialResult {
        let mut r =
            TrialResult::for_setting(&TrialSetting::new(i, Default::default(), 1, "x"), "w", "");
        r.status = status;
        r.error = Some(error.to_string());
        r
    }

    #[test]
    fn three_failures_in_a_row_give_up_with_the_first_error() {
        let mut s = FailureStreak::new(3);
        s.start_counting();
        s.observe(&result(0, TrialStatus::Failed, "boom 0"));
        s.observe(&result(1, TrialStatus::Failed, "boom 1"));
        assert_eq!(s.given_up(), None);
        s.observe(&result(2, TrialStatus::Failed, "boom 2"));
        let g = s.given_up().unwrap();
        assert_eq!(g.trials, ["t000000", "t000001", "t000002"]);
        assert_eq!(g.first_error, "  boom 0");
    }

    #[test]
    fn any_other_result_ends_the_streak_pruned_included() {
        for other in [
            TrialStatus::Complete,
            TrialStatus::Pruned,
            TrialStatus::Diverged,
            TrialStatus::Invalid,
        ] {
            let mut s = FailureStreak::new(2);
            s.start_counting();
            s.observe(&result(0, TrialStatus::Failed, "a"));
            s.observe(&result(1, other, ""));
            s.observe(&result(2, TrialStatus::Failed, "b"));
            assert_eq!(s.given_up(), None, "{other:?}");
            s.observe(&result(3, TrialStatus::Failed, "c"));
            assert_eq!(s.given_up().unwrap().first_error, "  b");
        }
    }

    #[test]
    fn results_found_at_start_and_a_zero_limit_never_stop() {
        let mut s = FailureStreak::new(1);
        s.observe(&result(0, TrialStatus::Failed, "old"));
        assert_eq!(s.given_up(), None, "before counting");
        let mut never = FailureStreak::new(0);
        never.start_counting();
        for i in 0..10 {
            never.observe(&result(i, TrialStatus::Failed, "x"));
        }
        assert_eq!(never.given_up(), None);
    }

    #[test]
    fn a_long_error_is_cut_to_its_tail() {
        let text: Vec<String> = (0..40).map(|i| format!("line {i}")).collect();
        let t = tail(&text.join("\n"), 3);
        assert_eq!(t, "  (37 lines left out)\n  line 37\n  line 38\n  line 39");
    }
}
