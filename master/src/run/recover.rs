//! Rebuilding the master's view from the directory, and repairing it:
//! recorded settings, results, stray files, and trials that got lost.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use hps_common::ids::{trial_id, trial_index};
use hps_common::{ResultDigest, TrialResult, TrialSetting};
use hps_shared_fs::dir::is_not_found;
use hps_shared_fs::{Claim, Sub};
use tracing::{debug, info, warn};

use super::Master;
use crate::error::MasterError;
use crate::samplers::Proposal;
use crate::scan::Scan;

impl Master {
    /// Rebuild the view from the directory at start: the results cache
    /// (digests of results still in `results/`, whose settings and results
    /// are not read again), every other recorded setting, the decisions
    /// written, and a finished study whose budget was raised.
    pub(super) fn recover(&mut self) -> Result<(), MasterError> {
        // The cached digests of results still in results/: their settings
        // and results are not read again.
        // This listing is also the first step's: `results/` is listed once
        // at start, not twice (on a parallel filesystem each costs seconds).
        let started = Instant::now();
        let listed: BTreeSet<String> = self.dir.list(Sub::Results)?.into_iter().collect();
        self.ledger
            .listing
            .done(self.clock.now(), started.elapsed());
        let mut cached: Vec<ResultDigest> = self
            .ledger
            .cache
            .load()
            .into_values()
            .filter(|d| listed.contains(&d.trial_id))
            .collect();
        cached.sort_by_key(|d| d.index);
        let done: HashMap<String, u64> = cached
            .iter()
            .map(|d| (d.trial_id.clone(), d.index))
            .collect();
        self.load_settings(&done, &listed)?;
        let from_cache = cached.len();
        for d in cached {
            self.take(d, true);
        }
        self.ledger.listing.at_start = Some(listed.into_iter().collect());
        for id in self.dir.list(Sub::Decisions)? {
            if let Ok(Some(d)) = self.dir.read_decision(&id) {
                self.pruning.decided.insert(id, d.step);
            }
        }
        if self.dir.is_finished() && self.ledger.next_index < self.planned {
            // The budget was raised after the study finished: continue it.
            info!(
                planned = self.planned,
                proposed = self.ledger.next_index,
                "budget raised; continuing a finished study"
            );
            self.dir.clear_finished()?;
        }
        info!(
            proposed = self.ledger.next_index,
            from_cache,
            "recovered {} recorded settings ({} with a result)",
            self.ledger.settings.len() + from_cache,
            from_cache
        );
        Ok(())
    }

    /// Read every recorded proposal. A corrupt record is quarantined and
    /// re-created from the sampler, which is deterministic per setting.
    /// Read `settings/`, except the settings of the trials in `done` (id →
    /// index: results read from the results cache).
    pub(super) fn load_settings(
        &mut self,
        done: &HashMap<String, u64>,
        results: &BTreeSet<String>,
    ) -> Result<(), MasterError> {
        let ids = self.dir.list(Sub::Settings)?;
        // The next index comes from every name a trial was ever given, not
        // from the readable records alone: a damaged record of the newest
        // trial, quarantined below, must not let the next proposal take
        // its index while the trial is queued or running.
        let named = self.names_ever_used(&ids, results)?;
        self.ledger.next_index = self.ledger.next_index.max(named);
        for id in ids {
            if let Some(&index) = done.get(&id) {
                self.ledger.next_index = self.ledger.next_index.max(index + 1);
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
                        self.ledger
                            .configs
                            .entry(s.config)
                            .or_insert_with(|| proposal_of(&s));
                        self.ledger.next_index = self.ledger.next_index.max(s.index + 1);
                        self.ledger.settings.insert(id, s);
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
        let mut claims = None;
        for index in 0..self.ledger.next_index.min(self.planned) {
            let id = trial_id(index);
            if !self.ledger.settings.contains_key(&id) && !done.contains_key(&id) {
                self.still_ours()?;
                // Listed once, and only when a record is missing.
                let claims =
                    claims.get_or_insert_with(|| self.dir.list_running().unwrap_or_default());
                let s = match self.copy_of(&id, claims) {
                    Some(copy) => self.restore(copy)?,
                    None => self.record(index)?,
                };
                self.ledger.settings.insert(id, s);
            }
        }
        Ok(())
    }

    /// One past the highest trial index below the budget that any file
    /// names: a record (readable or not), a quarantined record, a queued,
    /// running or paused copy, a result. Names beyond the budget count
    /// only through a readable record ([`Master::implausible`] judges it):
    /// a planted `pending/t50000000.json` must not make the master
    /// re-create fifty million records.
    fn names_ever_used(
        &self,
        settings: &[String],
        results: &BTreeSet<String>,
    ) -> Result<u64, MasterError> {
        let running: Vec<String> = self
            .dir
            .list_running()?
            .into_iter()
            .map(|c| c.trial_id)
            .collect();
        let quarantined = self.dir.quarantined(Sub::Settings)?;
        let pending = self.dir.list(Sub::Pending)?;
        let paused = self.dir.list(Sub::Paused)?;
        let names = settings
            .iter()
            .chain(results)
            .chain(&pending)
            .chain(&paused)
            .chain(&running)
            .chain(&quarantined);
        Ok(names
            .filter_map(|id| trial_index(id).filter(|_| trial_id_is_canonical(id)))
            .filter(|&i| i < self.planned)
            .map(|i| i + 1)
            .max()
            .unwrap_or(0))
    }

    /// A readable queued, running or paused copy of trial `id`'s setting,
    /// or its result, to restore a lost record from: the record is what
    /// the copy was published from, and a result says what ran.
    fn copy_of(&self, id: &str, claims: &[Claim]) -> Option<TrialSetting> {
        let fits = |s: &TrialSetting| s.trial_id == id && trial_id(s.index) == id;
        let queued = self
            .dir
            .pending_path(id)
            .ok()
            .and_then(|p| hps_shared_fs::dir::read_json::<TrialSetting>(&p).ok())
            .into_iter()
            .chain(self.dir.read_paused(id).ok())
            .chain(
                claims
                    .iter()
                    .filter(|c| c.trial_id == id)
                    .filter_map(|c| self.dir.read_claim(c).ok()),
            )
            .find(fits);
        if let Some(mut s) = queued {
            s.attempt = 1;
            return Some(s);
        }
        let r = self.dir.read_result(id).ok().filter(|r| r.trial_id == id)?;
        let index = trial_index(id)?;
        let repeats = self.study.repeats.max(1) as u64;
        Some(TrialSetting {
            config: index / repeats,
            repeat: (index % repeats) as u32,
            seed: r.seed,
            ..TrialSetting::new(
                index,
                r.params,
                self.study.budget.epochs,
                self.study.sampler.name(),
            )
        })
    }

    /// Record `copy` as trial's record again (exclusively, as
    /// [`Master::record`] does: a record another master wrote first wins).
    fn restore(&mut self, copy: TrialSetting) -> Result<TrialSetting, MasterError> {
        let id = copy.trial_id.clone();
        if self.dir.record_setting(&copy)? {
            warn!(trial = %id, "restored the trial's lost record from its queued copy or result");
            self.ledger
                .configs
                .entry(copy.config)
                .or_insert_with(|| proposal_of(&copy));
            return Ok(copy);
        }
        match self.dir.read_setting(&id) {
            Ok(theirs) => {
                self.ledger
                    .configs
                    .insert(theirs.config, proposal_of(&theirs));
                Ok(theirs)
            }
            Err(_) => self.record(copy.index),
        }
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
                        self.ledger
                            .configs
                            .insert(theirs.config, proposal_of(&theirs));
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
            if self.ledger.results.contains_key(id) {
                continue;
            }
            let Some(path) = self.named(Sub::Results, id) else {
                continue;
            };
            match self.dir.read_result(id) {
                Ok(r) if &r.trial_id == id && self.ran_as_recorded(&r) => self.accept(r),
                Ok(r) if &r.trial_id == id => {
                    warn!(
                        file = %path.display(),
                        ran = %serde_json::to_string(&r.params).unwrap_or_default(),
                        "the result's parameters differ from the trial's record in settings/ (its queued copy was edited?); moving it to quarantine/ and re-running the trial as recorded"
                    );
                    self.quarantine(&path);
                    self.rerun(id, scan);
                }
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

    /// Whether a result ran the parameters its trial was recorded with:
    /// the record is the truth, and a result of other parameters (a hand-
    /// edited queue file) would pair one setting with another's objective.
    /// A result for no trial in flight is not judged here.
    fn ran_as_recorded(&self, r: &TrialResult) -> bool {
        self.ledger
            .settings
            .get(&r.trial_id)
            .is_none_or(|s| s.params == r.params)
    }

    /// Publish trial `id` again at once when its result was just
    /// quarantined and `scan` saw it in no queue: waiting out the orphan
    /// grace would only delay it. Anything else is left to the orphan rule.
    fn rerun(&mut self, id: &str, scan: &Scan) {
        if scan.state(id, None) != hps_common::TrialState::Proposed {
            return;
        }
        let Some(s) = self.ledger.settings.get(id) else {
            return;
        };
        match self.dir.publish(s) {
            Ok(()) => self.fleet.pending_count += 1,
            Err(e) => self.warn_once(e.to_string()),
        }
    }

    /// Remove queue files of trials that already have a result.
    pub(super) fn drop_finished_copies(&self, scan: &Scan) -> Result<(), MasterError> {
        // A pending copy of a finished trial (a late result won the race
        // with a re-queue): remove it so nobody runs the trial again.
        for id in &scan.pending {
            if self.ledger.results.contains_key(id) {
                if let Ok(p) = self.dir.pending_path(id) {
                    debug!(trial = %id, "removing the pending copy of a finished trial");
                    let _ = std::fs::remove_file(p);
                }
            }
        }
        // Claims whose result is already in: the worker died between
        // publishing the result and dropping its claim.
        for c in &scan.running {
            if self.ledger.results.contains_key(&c.trial_id) {
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
        let now = self.clock.now();
        let orphans: BTreeSet<String> = self
            .ledger
            .settings
            .keys()
            .filter(|id| {
                let result = self.ledger.results.get(*id).copied();
                scan.state(id, result) == hps_common::TrialState::Proposed
                    && !self.fleet.liveness.training(id, now)
            })
            .cloned()
            .collect();
        self.fleet
            .suspected_orphans
            .retain(|id, _| orphans.contains(id));
        for id in &orphans {
            self.fleet
                .suspected_orphans
                .entry(id.clone())
                .or_insert(now);
        }
        let grace = self.cfg.orphan_grace;
        let confirmed: Vec<String> = self
            .fleet
            .suspected_orphans
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= grace)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &confirmed {
            self.fleet.suspected_orphans.remove(id);
            if self.dir.has_result(id) {
                continue;
            }
            info!(trial = %id, "publishing a recorded setting that was never published");
            self.still_ours()?;
            self.dir.publish(&self.ledger.settings[id])?;
            self.fleet.pending_count += 1;
        }
        Ok(())
    }
}

/// Whether `id` is exactly the id of its index (`t000042`, not `t42`),
/// as the master names its trials.
fn trial_id_is_canonical(id: &str) -> bool {
    trial_index(id).is_some_and(|i| trial_id(i) == id)
}

/// A recorded setting's parameters and source, as its config's proposal:
/// later repeats share both.
fn proposal_of(s: &TrialSetting) -> Proposal {
    Proposal {
        params: s.params.clone(),
        source: s.source,
    }
}
