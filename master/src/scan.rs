//! One typed scan of the study directory's queues, shared by the master
//! loop, `status` and `export`.
//!
//! A trial moves `pending/ → running/ → (paused/ →) results/`, so the
//! queues are listed in that order: a trial in flight is then seen in at
//! least one of them, never in none.

use std::collections::BTreeSet;

use hps_common::{TrialState, TrialStatus};
use hps_shared_fs::{Claim, FsError, StudyDir, Sub};

/// The names found in `pending/`, `running/`, `paused/` and `results/`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    pub pending: BTreeSet<String>,
    /// Claims, in the order `running/` lists them.
    pub running: Vec<Claim>,
    pub paused: BTreeSet<String>,
    /// Trial ids with a file in `results/` (readable or not).
    pub results: Vec<String>,
}

impl Scan {
    /// List the queues, in the order trials move through them.
    pub fn take(dir: &StudyDir) -> Result<Scan, FsError> {
        let queues = Scan::queues(dir)?;
        Ok(Scan {
            results: dir.list(Sub::Results)?,
            ..queues
        })
    }

    /// The queues a trial in flight is in — `pending/`, `running/`,
    /// `paused/` — without listing `results/`: the master's loop, which
    /// looks for the results of the trials it has in flight by name
    /// instead, so that a step costs what is in flight, not what is done.
    pub fn queues(dir: &StudyDir) -> Result<Scan, FsError> {
        Ok(Scan {
            pending: dir.list(Sub::Pending)?.into_iter().collect(),
            running: dir.list_running()?,
            paused: dir.list(Sub::Paused)?.into_iter().collect(),
            results: Vec::new(),
        })
    }

    /// The first claim of trial `id` (a trial has at most one, except for a
    /// moment during a re-queue race).
    pub fn claim(&self, id: &str) -> Option<&Claim> {
        self.running.iter().find(|c| c.trial_id == id)
    }

    /// Where a recorded trial stands. `result` is the status of its result,
    /// when the caller has read one: a result wins over any queue, a claim
    /// over `pending/` (a re-queue writes pending first), and a trial in
    /// none of them is `Proposed` (not yet published, or lost).
    pub fn state(&self, id: &str, result: Option<TrialStatus>) -> TrialState {
        if let Some(status) = result {
            TrialState::Done(status)
        } else if self.claim(id).is_some() {
            TrialState::Running
        } else if self.pending.contains(id) {
            TrialState::Pending
        } else if self.paused.contains(id) {
            TrialState::Paused
        } else {
            TrialState::Proposed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hps_common::TrialSetting;

    fn study_dir(tmp: &std::path::Path) -> StudyDir {
        hps_shared_fs::testing::branin_study_dir(&tmp.join("s"), 10)
    }

    fn setting(i: u64) -> TrialSetting {
        TrialSetting::new(i, Default::default(), 1, "random")
    }

    #[test]
    fn every_trial_gets_the_state_of_the_queue_it_is_in() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = study_dir(tmp.path());
        let s: Vec<TrialSetting> = (0..5).map(setting).collect();
        for t in &s {
            dir.record_setting(t).unwrap();
        }
        dir.publish(&s[1]).unwrap();
        dir.publish(&s[2]).unwrap();
        let claim = dir.claim(&s[2].trial_id, "w0").unwrap().unwrap();
        dir.publish(&s[3]).unwrap();
        let c3 = dir.claim(&s[3].trial_id, "w0").unwrap().unwrap();
        assert!(dir.pause(&c3).unwrap());
        let mut r = hps_common::TrialResult::for_setting(&s[4], "w0", "cpu");
        r.status = TrialStatus::Pruned;
        dir.submit_result(&r).unwrap();

        let scan = Scan::take(&dir).unwrap();
        assert_eq!(scan.claim(&s[2].trial_id), Some(&claim));
        assert_eq!(scan.results, [s[4].trial_id.clone()]);
        let states: Vec<String> = s
            .iter()
            .map(|t| {
                let result = (t.index == 4).then_some(TrialStatus::Pruned);
                scan.state(&t.trial_id, result).to_string()
            })
            .collect();
        assert_eq!(
            states,
            ["proposed", "pending", "running", "paused", "pruned"]
        );
    }
}
