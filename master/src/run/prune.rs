//! Carrying out the pruners' decisions: stopping rules (ASHA, median) write
//! `decisions/`, bracket pruners (successive halving, Hyperband) promote or
//! prune the paused trials of a finished batch.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use hps_common::files::unix_now;
use hps_common::{Mode, Study, TrialResult, TrialSetting, FORMAT_VERSION};
use hps_shared_fs::dir::is_not_found;
use hps_shared_fs::Sub;
use tracing::{debug, info, warn};

use super::written::pruned_result;
use super::Master;
use crate::error::MasterError;
use crate::pruners::halving::{self, Bracket, BracketAction, PausedTrial};
use crate::pruners::{self, Curve, Shown, StopRule};

/// The pruners' state: a stopping rule (ASHA, the median rule) or the
/// brackets of successive halving / Hyperband, the decisions written, and
/// the curves of finished trials they compare with.
pub(super) struct Pruning {
    /// ASHA or the median rule, if the study has one.
    pub stop_rule: Option<Box<dyn StopRule>>,
    /// Successive halving / Hyperband brackets (empty otherwise).
    pub brackets: Vec<Bracket>,
    /// The last step a decision was written for, per running trial.
    pub decided: HashMap<String, u32>,
    /// Intermediate values of every trial with a result.
    pub finished_curves: BTreeMap<String, Curve>,
}

impl Pruning {
    pub fn new(study: &Study) -> Pruning {
        let shown = Shown {
            metric: study.objective.metric.clone(),
            direction: study.objective.direction,
        };
        let stop_rule = study
            .pruner
            .as_ref()
            .and_then(|p| pruners::stop_rule(p, shown));
        let brackets = match (&study.pruner, &study.mode) {
            (Some(p), Mode::Sync { batch }) => halving::brackets(p, *batch, study.budget.epochs),
            _ => Vec::new(),
        };
        Pruning {
            stop_rule,
            brackets,
            decided: HashMap::new(),
            finished_curves: BTreeMap::new(),
        }
    }
}

/// A paused trial read back for a bracket decision.
struct Read {
    setting: TrialSetting,
    progress: Option<hps_common::Progress>,
}

impl Master {
    /// The objective per step of a finished trial.
    pub(super) fn result_points(&self, r: &TrialResult) -> Vec<hps_common::ProgressPoint> {
        let metric = &self.study.objective.metric;
        if r.curve.is_empty() {
            hps_common::files::points_from_reports(metric, &r.reports)
        } else {
            hps_common::files::points_from_curve(metric, &r.curve)
        }
    }

    /// Stopping rules: judge every running trial that reported one of its
    /// `decide_at` epochs since the last decision, and write the verdict to
    /// `decisions/<id>.json` for its worker.
    pub(super) fn judge_running(&mut self) -> Result<(), MasterError> {
        if self.pruning.stop_rule.is_none() {
            return Ok(());
        }
        let live = self.live_curves()?;
        let mut decisions = Vec::new();
        for (id, curve) in &live {
            let Some(setting) = self.ledger.settings.get(id) else {
                continue;
            };
            let done = self.pruning.decided.get(id).copied().unwrap_or(0);
            let Some(step) = pruners::due_step(&setting.decide_at, curve, done) else {
                continue;
            };
            let others: Vec<&Curve> = self
                .pruning
                .finished_curves
                .iter()
                .filter(|(k, _)| *k != id)
                .map(|(_, c)| c)
                .chain(live.iter().filter(|(k, _)| k != id).map(|(_, c)| c))
                .collect();
            if let Some(rule) = &self.pruning.stop_rule {
                decisions.push((id.clone(), step, rule.decide(curve, step, &others)));
            }
        }
        for (id, step, verdict) in decisions {
            self.write_decision(id, step, verdict)?;
        }
        Ok(())
    }

    fn write_decision(
        &mut self,
        id: String,
        step: u32,
        verdict: pruners::Verdict,
    ) -> Result<(), MasterError> {
        let (action, reason) = match verdict {
            pruners::Verdict::Continue(r) => (hps_common::Action::Continue, r),
            pruners::Verdict::Stop(r) => (hps_common::Action::Stop, r),
        };
        match action {
            hps_common::Action::Stop => info!(trial = %id, step, "stop: {reason}"),
            hps_common::Action::Continue => debug!(trial = %id, step, "continue: {reason}"),
        }
        let pruner = self.pruning.stop_rule.as_ref().map_or("", |r| r.name());
        self.dir.write_decision(&hps_common::Decision {
            format_version: FORMAT_VERSION,
            trial_id: id.clone(),
            step,
            action,
            pruner: pruner.to_string(),
            reason,
            written_at_unix: unix_now(),
        })?;
        self.pruning.decided.insert(id, step);
        Ok(())
    }

    /// The running trials' curves, from their progress files.
    fn live_curves(&self) -> Result<Vec<(String, Curve)>, MasterError> {
        let direction = self.study.objective.direction;
        let mut live = Vec::new();
        for id in self.dir.list(Sub::Progress)? {
            if self.ledger.results.contains_key(&id) || self.named(Sub::Progress, &id).is_none() {
                continue;
            }
            match self.dir.read_progress(&id) {
                Ok(Some(p)) if p.trial_id == id => {
                    live.push((id, Curve::from_points(&p.points, direction, false)))
                }
                Ok(_) => {}
                Err(e) if e.is_damaged() => {
                    warn!("{e}; moving it to quarantine/");
                    self.quarantine(&self.dir.json_path(Sub::Progress, &id));
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => debug!("{e}"),
            }
        }
        Ok(live)
    }

    /// Successive halving / Hyperband: once no trial of a batch is pending
    /// or running, let the policy ([`halving::decide_batch`]) promote the
    /// best of those paused at the rung and prune the rest.
    pub(super) fn advance_brackets(
        &mut self,
        paused: &BTreeSet<String>,
    ) -> Result<(), MasterError> {
        if self.pruning.brackets.is_empty() || paused.is_empty() {
            return Ok(());
        }
        for (b, ids) in self.paused_by_batch(paused)? {
            let in_flight = self.ledger.settings.values().any(|s| {
                s.batch == Some(b)
                    && !self.ledger.results.contains_key(&s.trial_id)
                    && !paused.contains(&s.trial_id)
            });
            if in_flight {
                continue;
            }
            let (mut read, unreadable) = self.read_paused(&ids)?;
            let direction = self.study.objective.direction;
            let trials: Vec<PausedTrial> = read
                .iter()
                .map(|(id, r)| {
                    PausedTrial::new(id, r.setting.until_epoch, r.progress.as_ref(), direction)
                })
                .collect();
            let shown = Shown {
                metric: self.study.objective.metric.clone(),
                direction,
            };
            let bracket = halving::bracket_of(&self.pruning.brackets, b);
            let actions =
                halving::decide_batch(bracket, b, &trials, unreadable, &shown, self.pruner_name());
            for action in actions {
                self.carry_out(action, &mut read)?;
            }
        }
        Ok(())
    }

    /// The paused trials without a result, by batch. Paused files of
    /// finished trials are removed; stray ones quarantined.
    fn paused_by_batch(
        &mut self,
        paused: &BTreeSet<String>,
    ) -> Result<BTreeMap<u64, Vec<String>>, MasterError> {
        let mut by_batch: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for id in paused {
            if self.ledger.results.contains_key(id) {
                // Pruned (or finished) and the paused file left behind.
                self.dir.remove_paused(id)?;
                continue;
            }
            if self.named(Sub::Paused, id).is_none() {
                continue;
            }
            match self.ledger.settings.get(id) {
                Some(s) => by_batch
                    .entry(s.batch.unwrap_or(0))
                    .or_default()
                    .push(id.clone()),
                None => {
                    warn!(trial = %id, "paused trial with no record in settings/; moving it to quarantine/");
                    self.quarantine(&self.dir.json_path(Sub::Paused, id));
                }
            }
        }
        Ok(by_batch)
    }

    /// Read the paused settings and progress of a batch, in id order. The
    /// flag says one could not be parsed (it went to quarantine; the orphan
    /// rule re-publishes it from `settings/`).
    fn read_paused(&self, ids: &[String]) -> Result<(BTreeMap<String, Read>, bool), MasterError> {
        let mut read = BTreeMap::new();
        let mut unreadable = false;
        for id in ids {
            let setting = match self.dir.read_paused(id) {
                Ok(s) => s,
                Err(e) if e.is_damaged() => {
                    warn!("{e}; moving it to quarantine/");
                    self.quarantine(&self.dir.json_path(Sub::Paused, id));
                    unreadable = true;
                    continue;
                }
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(e.into()),
            };
            let progress = self.dir.read_progress(id).ok().flatten();
            read.insert(id.clone(), Read { setting, progress });
        }
        Ok((read, unreadable))
    }

    fn carry_out(
        &mut self,
        action: BracketAction,
        read: &mut BTreeMap<String, Read>,
    ) -> Result<(), MasterError> {
        match action {
            BracketAction::Resume { id } => {
                // Promoted before a crash, not yet renamed into pending/.
                self.dir.promote(&read[&id].setting)?;
            }
            BracketAction::Promote {
                id,
                until_epoch,
                why,
            } => {
                let Some(Read { mut setting, .. }) = read.remove(&id) else {
                    return Ok(());
                };
                setting.until_epoch = until_epoch;
                info!(trial = %id, until_epoch = setting.until_epoch, "promoted: {why}");
                self.dir.update_setting(&setting)?;
                self.dir.promote(&setting)?;
                self.ledger.settings.insert(id, setting);
                self.fleet.pending_count += 1;
            }
            BracketAction::Prune { id, reason } => {
                let Some(r) = read.remove(&id) else {
                    return Ok(());
                };
                info!(trial = %id, "{reason}");
                let result = pruned_result(&r.setting, r.progress.as_ref(), reason);
                if self.dir.submit_result(&result)? {
                    self.accept(result);
                }
                self.dir.remove_paused(&id)?;
                self.remove_checkpoint(&id)?;
            }
        }
        Ok(())
    }

    fn remove_checkpoint(&self, id: &str) -> Result<(), MasterError> {
        if let Err(e) = self.dir.remove_checkpoint(id) {
            warn!("{e} (a pruned trial's)");
        }
        Ok(())
    }

    fn pruner_name(&self) -> &'static str {
        self.study.pruner.as_ref().map_or("", |p| p.name())
    }
}
