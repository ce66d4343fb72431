//! Rebuilding the master's view from the directory, and repairing it:
//! recorded settings, results, stray files, and trials that got lost.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use hps_common::ids::trial_id;
use hps_common::TrialSetting;
use hps_shared_fs::dir::is_not_found;
use hps_shared_fs::Sub;
use tracing::{debug, info, warn};

use super::Master;
use crate::error::MasterError;
use crate::samplers::Proposal;
use crate::scan::Scan;

impl Master {
    /// Read every recorded proposal. A corrupt record is quarantined and
    /// re-created from the sampler, which is deterministic per setting.
    /// Read `settings/`, except the settings of the trials in `done` (id →
    /// index: results read from the results cache).
    pub(super) fn load_settings(
        &mut self,
        done: &std::collections::HashMap<String, u64>,
    ) -> Result<(), MasterError> {
        let ids = self.dir.list(Sub::Settings)?;
        for id in ids {
            if let Some(&index) = done.get(&id) {
                self.next_index = self.next_index.max(index + 1);
                continue;
            }
            let Some(path) = self.named(Sub::Settings, &id) else {
                continue;
            };
            match self.dir.read_setting(&id) {
                Ok(s) => match self.implausible(&id, &s) {
                    Some(why) => {
                        warn!(file = %path.display(), "{why}; moving it to quarantine/");
                        self.quarantine(&path);
                    }
                    None => {
                        self.configs
                            .entry(s.config)
                            .or_insert_with(|| proposal_of(&s));
                        self.next_index = self.next_index.max(s.index + 1);
                        self.settings.insert(id, s);
                    }
                },
                Err(e) if e.is_damaged() => {
                    warn!("{e}; moving it to quarantine/ and re-creating the setting");
                    self.quarantine(&path);
                }
                Err(e) => return Err(e.into()),
            }
        }
        // Re-create any record missing below next_index (quarantined
        // above), exclusively: one another master re-created first is used.
        // Never beyond the budget: `next_index` may exceed it only when the
        // budget was lowered, and those records all exist.
        for index in 0..self.next_index.min(self.planned) {
            let id = trial_id(index);
            if !self.settings.contains_key(&id) && !done.contains_key(&id) {
                self.still_ours()?;
                let s = self.record(index)?;
                self.settings.insert(id, s);
            }
        }
        Ok(())
    }

    /// Make setting `index` and record it in `settings/` exclusively
    /// (`link(2)`); returns the record now in force. When another master
    /// recorded the trial first, its record wins: this master adopts it,
    /// parameters and all (its config's params too, so later repeats
    /// share them), and never publishes its own. A record in the way that
    /// cannot be read is quarantined and the recording tried again.
    pub(super) fn record(&mut self, index: u64) -> Result<TrialSetting, MasterError> {
        for _ in 0..3 {
            let ours = self.make_setting(index);
            if self.dir.record_setting(&ours)? {
                return Ok(ours);
            }
            let id = &ours.trial_id;
            match self.dir.read_setting(id) {
                Ok(theirs) => match self.implausible(id, &theirs) {
                    None => {
                        if theirs.params != ours.params {
                            info!(trial = %id, "another master recorded this trial first; using its setting");
                        }
                        self.configs.insert(theirs.config, proposal_of(&theirs));
                        return Ok(theirs);
                    }
                    Some(why) => {
                        warn!("{why}; it is in the way of recording the trial: moving it to quarantine/");
                        self.quarantine(&self.dir.setting_path(id)?);
                    }
                },
                Err(e) if e.is_damaged() => {
                    warn!("{e}; it is in the way of recording the trial: moving it to quarantine/");
                    self.quarantine(&self.dir.setting_path(id)?);
                }
                Err(e) if is_not_found(&e) => {} // quarantined meanwhile: try again
                Err(e) => return Err(e.into()),
            }
        }
        Err(MasterError::RecordInTheWay {
            file: self.dir.setting_path(&trial_id(index))?,
        })
    }

    /// Why a parsed record cannot be what this study's master wrote: its
    /// name and index disagree, or its index is beyond the budget with no
    /// result to show for it (a record from a budget since lowered has one,
    /// or is still queued). Obeying such an index would make the master
    /// re-create every record below it.
    fn implausible(&self, id: &str, s: &TrialSetting) -> Option<String> {
        if s.trial_id != id || trial_id(s.index) != id {
            return Some(format!(
                "settings/{id}.json says trial `{}` with index {}; a record's name, trial_id and index must agree",
                s.trial_id, s.index
            ));
        }
        if s.index < self.planned {
            return None;
        }
        let queued = self.dir.has_result(id)
            || self.dir.pending_path(id).is_ok_and(|p| p.is_file())
            || self
                .dir
                .list_running()
                .is_ok_and(|r| r.iter().any(|c| c.trial_id == id));
        if !queued {
            return Some(format!(
                "settings/{id}.json has index {}, beyond the budget of {} trials, and was never run",
                s.index, self.planned
            ));
        }
        None
    }

    /// The path of `sub/<name>.json`, or `None` (after moving the file to
    /// quarantine/) when the name is not a valid trial id — one stray file
    /// must not stop the master.
    pub(super) fn named(&self, sub: Sub, name: &str) -> Option<PathBuf> {
        let path = self.dir.json_path(sub, name);
        match hps_common::validate_id("trial id", name) {
            Ok(()) => Some(path),
            Err(e) => {
                warn!(file = %path.display(), "{e}; moving it to quarantine/");
                self.quarantine(&path);
                None
            }
        }
    }

    pub(super) fn quarantine(&self, path: &Path) {
        match self.dir.quarantine(path) {
            Ok(to) => info!(from = %path.display(), to = %to.display(), "quarantined"),
            Err(e) => self.warn_once(e.to_string()),
        }
    }

    /// Log `message` as a warning the first time only: a file that stays
    /// unreadable must not flood the log at every scan.
    pub(super) fn warn_once(&self, message: String) {
        if self.warned.borrow_mut().insert(message.clone()) {
            warn!("{message} (reported once)");
        }
    }

    /// Read the results not seen yet. A result that names another trial or
    /// cannot be parsed is quarantined (the trial is then re-run); other
    /// read errors may be transient and are retried next scan.
    pub(super) fn collect_results(&mut self, ids: &[String], scan: &Scan) {
        for id in ids {
            if self.results.contains_key(id) {
                continue;
            }
            let Some(path) = self.named(Sub::Results, id) else {
                continue;
            };
            match self.dir.read_result(id) {
                Ok(r) if &r.trial_id == id => self.accept(r),
                Ok(r) => {
                    warn!(file = %path.display(), "result file says trial `{}`; moving it to quarantine/", r.trial_id);
                    self.quarantine(&path);
                    self.rerun(id, scan);
                }
                Err(e) if e.is_damaged() => {
                    warn!("{e}; moving it to quarantine/ and re-running the trial");
                    self.quarantine(&path);
                    self.rerun(id, scan);
                }
                Err(e) if is_not_found(&e) => {}
                // EIO, ESTALE…: maybe transient; try again next scan.
                Err(e) => self.warn_once(e.to_string()),
            }
        }
    }

    /// Publish trial `id` again at once when its result was just
    /// quarantined and `scan` saw it in no queue: waiting out the orphan
    /// grace would only delay it. Anything else is left to the orphan rule.
    fn rerun(&mut self, id: &str, scan: &Scan) {
        if scan.state(id, None) != hps_common::TrialState::Proposed {
            return;
        }
        let Some(s) = self.settings.get(id) else {
            return;
        };
        match self.dir.publish(s) {
            Ok(()) => self.pending_count += 1,
            Err(e) => self.warn_once(e.to_string()),
        }
    }

    /// Remove queue files of trials that already have a result.
    pub(super) fn drop_finished_copies(&self, scan: &Scan) -> Result<(), MasterError> {
        // A pending copy of a finished trial (a late result won the race
        // with a re-queue): remove it so nobody runs the trial again.
        for id in &scan.pending {
            if self.results.contains_key(id) {
                if let Ok(p) = self.dir.pending_path(id) {
                    debug!(trial = %id, "removing the pending copy of a finished trial");
                    let _ = std::fs::remove_file(p);
                }
            }
        }
        // Claims whose result is already in: the worker died between
        // publishing the result and dropping its claim.
        for c in &scan.running {
            if self.results.contains_key(&c.trial_id) {
                debug!(trial = %c.trial_id, "dropping the claim of a finished trial");
                self.dir.drop_claim(c)?;
            }
        }
        Ok(())
    }

    /// Recorded but nowhere else: the master died between recording and
    /// publishing, or a file was lost. Re-publish once the trial has been
    /// seen nowhere for the orphan grace, on this process's clock.
    pub(super) fn publish_orphans(&mut self, scan: &Scan) -> Result<(), MasterError> {
        let orphans: BTreeSet<String> = self
            .settings
            .keys()
            .filter(|id| {
                let result = self.results.get(*id).copied();
                scan.state(id, result) == hps_common::TrialState::Proposed
            })
            .cloned()
            .collect();
        let now = self.clock.now();
        self.suspected_orphans.retain(|id, _| orphans.contains(id));
        for id in &orphans {
            self.suspected_orphans.entry(id.clone()).or_insert(now);
        }
        let grace = self.cfg.orphan_grace;
        let confirmed: Vec<String> = self
            .suspected_orphans
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= grace)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &confirmed {
            self.suspected_orphans.remove(id);
            if self.dir.has_result(id) {
                continue;
            }
            info!(trial = %id, "publishing a recorded setting that was never published");
            self.still_ours()?;
            self.dir.publish(&self.settings[id])?;
            self.pending_count += 1;
        }
        Ok(())
    }
}

/// A recorded setting's parameters and source, as its config's proposal:
/// later repeats share both.
fn proposal_of(s: &TrialSetting) -> Proposal {
    Proposal {
        params: s.params.clone(),
        source: s.source,
    }
}
