//! The study directory and the operations of the protocol on it.
//!
//! ```text
//! DIR/study.json                  the study file (only budget.trials may change after init)
//! DIR/study.recorded.json         the study as at init, to notice other edits
//! DIR/master.json                 the running master's lease
//! DIR/finished.json               written once the budget is spent
//! DIR/settings/<s>/<id>.json      every proposal, recorded before it is published
//! DIR/pending/<id>.json           the queue: settings waiting for a worker
//! DIR/running/<id>@<worker>.json  a claimed setting (claimed by rename)
//! DIR/results/<s>/<id>.json       one result per trial (published by link)
//! DIR/heartbeats/<worker>.json    worker liveness
//! DIR/logs/<s>/<id>.log           per-trial log: the seed's stat lines
//! DIR/weights/<s>/<id>.safetensors  final weights of finished cnn trials
//! DIR/quarantine/                 corrupt files moved out of the way
//! DIR/checkpoints/<id>/           per-epoch trainer state of unfinished trials
//! DIR/progress/<id>.json          a running trial's intermediate values (pruners)
//! DIR/decisions/<id>.json         the master's continue/stop verdict on a trial
//! DIR/paused/<id>.json            a trial parked at a successive-halving rung
//! ```
//!
//! `<s>/` is the trial's shard ([`shard_of`]: `t012345` → `t012/`) in a
//! directory of format 2; a directory of format 1 has no shards
//! (`results/<id>.json`). See [`crate::layout`].

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use hps_common::{
    to_pretty_json, validate_id, Decision, Finished, Heartbeat, MasterLease, Progress, Spent,
    Study, TrialResult, TrialSetting,
};

use crate::atomic::{write_atomic, write_new, TMP_PREFIX};
pub use crate::error::MAX_FILE_BYTES;
use crate::error::{FsError, Result};
use crate::layout::{self, make_dir, shard_of, Layout};
pub use crate::names::{
    Sub, CLAIM_SEP, FINISHED_FILE, MASTER_FILE, SPENT_FILE, STUDY_FILE, WEIGHTS_DIR,
};
use crate::read::check_study_file;
use crate::read::read_optional;
pub use crate::read::{is_not_found, read_json, read_study_file, read_text};

/// A setting this worker holds, as `running/<id>@<worker>.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub trial_id: String,
    pub worker: String,
    pub path: PathBuf,
}

/// A claim taken away from its holder (see [`StudyDir::take_claim`]).
#[derive(Debug)]
pub struct TakenClaim {
    pub trial_id: String,
    pub path: PathBuf,
}

/// A handle on a study directory.
#[derive(Debug, Clone)]
pub struct StudyDir {
    root: PathBuf,
    layout: Layout,
}

impl StudyDir {
    /// Create a new study directory holding `study`, with the sharded
    /// layout (directory format 2). Refuses to touch a directory that
    /// already holds a study.
    pub fn init(root: &Path, study: &Study) -> Result<StudyDir> {
        Self::init_with_layout(root, study, Layout::Sharded)
    }

    /// [`StudyDir::init`] with the layout given: [`Layout::Flat`] makes a
    /// directory as releases before format 2 did (for tests of them).
    pub fn init_with_layout(root: &Path, study: &Study, layout: Layout) -> Result<StudyDir> {
        fs::create_dir_all(root).map_err(|e| FsError::io("create directory", root, e))?;
        let dir = StudyDir {
            root: root.to_path_buf(),
            layout,
        };
        for sub in Sub::ALL {
            let p = dir.sub(sub);
            fs::create_dir_all(&p).map_err(|e| FsError::io("create directory", &p, e))?;
        }
        let created = write_new(&dir.root.join(STUDY_FILE), &to_pretty_json(study))?;
        if !created {
            return Err(FsError::AlreadyInitialized {
                path: root.to_path_buf(),
            });
        }
        // A crash before this line leaves an unrecorded study, which its
        // first run records (as a directory of the flat layout: nothing
        // else was written yet).
        dir.record_study(study)?;
        Ok(dir)
    }

    /// Open an existing study directory, creating any missing
    /// sub-directories (older layouts, or a user who tidied up). Its
    /// layout is the one it records ([`layout::detect`]); a directory in
    /// the middle of a migration is refused.
    pub fn open(root: &Path) -> Result<StudyDir> {
        check_study_file(root)?;
        let dir = StudyDir {
            root: root.to_path_buf(),
            layout: layout::detect(root)?,
        };
        for sub in Sub::ALL {
            let p = dir.sub(sub);
            if !p.is_dir() {
                fs::create_dir_all(&p).map_err(|e| FsError::io("create directory", &p, e))?;
            }
        }
        Ok(dir)
    }

    /// A handle on the study directory at `root` whatever its layout and
    /// however far a migration got, for `hps-master migrate` alone: it
    /// reaches the master lease and the heartbeats (flat in every layout),
    /// never a per-trial file.
    pub fn open_for_migration(root: &Path) -> Result<StudyDir> {
        check_study_file(root)?;
        Ok(StudyDir {
            root: root.to_path_buf(),
            layout: Layout::Flat,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How this directory lays out its per-trial folders.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The folder that holds trial `id`'s file in `folder` (a path under
    /// the root): its shard in the sharded layout, `folder` itself in the
    /// flat one.
    fn trial_folder(&self, folder: PathBuf, sharded: bool, id: &str) -> PathBuf {
        match self.layout {
            Layout::Sharded if sharded => folder.join(shard_of(id)),
            _ => folder,
        }
    }

    /// The shard of `sub` that holds trial `id`'s file, or `None` where the
    /// folder is not sharded (another layout, or a flat `sub`).
    pub fn shard_dir(&self, sub: Sub, id: &str) -> Option<PathBuf> {
        (self.layout == Layout::Sharded && sub.is_sharded())
            .then(|| self.sub(sub).join(shard_of(id)))
    }

    /// Create the shard of `sub` for trial `id` where missing (nothing for
    /// a folder without shards). Writers call it before creating a file
    /// there; the master also for the trials it publishes, so that it can
    /// watch their results' shard before the first result arrives.
    pub fn make_shard(&self, sub: Sub, id: &str) -> Result<Option<PathBuf>> {
        match self.shard_dir(sub, id) {
            Some(d) => {
                make_dir(&d)?;
                Ok(Some(d))
            }
            None => Ok(None),
        }
    }

    /// Create the parent of `path` where missing, in the sharded layout
    /// (a flat folder exists from `open`).
    fn ready(&self, path: &Path) -> Result<()> {
        match (self.layout, path.parent()) {
            (Layout::Sharded, Some(p)) if p != self.root => make_dir(p),
            _ => Ok(()),
        }
    }

    pub fn sub(&self, sub: Sub) -> PathBuf {
        self.root.join(sub.name())
    }

    /// Run `op`, which writes into the protocol folder `sub`; when it fails
    /// because the folder itself is gone (`rm -rf pending/` under a running
    /// study), create the folder again, say so, and run `op` once more. The
    /// folders are part of the layout: losing one must not stop a master or
    /// a worker (what was in it is recovered by the protocol's own rules:
    /// the orphan rule re-publishes lost settings, workers beat again).
    fn in_sub<T>(&self, sub: Sub, op: impl Fn() -> Result<T>) -> Result<T> {
        match op() {
            Err(e) if is_not_found(&e) && !self.sub(sub).is_dir() => {
                let folder = self.sub(sub);
                fs::create_dir_all(&folder)
                    .map_err(|e| FsError::io("create directory", &folder, e))?;
                tracing::warn!(
                    folder = %folder.display(),
                    "the study's `{}/` folder was gone (removed by hand?); created it again",
                    sub.name()
                );
                op()
            }
            other => other,
        }
    }

    pub fn study_path(&self) -> PathBuf {
        self.root.join(STUDY_FILE)
    }

    pub fn read_study(&self) -> Result<Study> {
        read_json(&self.study_path())
    }

    /// `sub/<name>.json`, without checking the name: for messages and for
    /// moving a badly named file out of the way.
    pub fn json_path(&self, sub: Sub, name: &str) -> PathBuf {
        self.trial_folder(self.sub(sub), sub.is_sharded(), name)
            .join(format!("{name}.json"))
    }

    fn file(&self, sub: Sub, id: &str) -> Result<PathBuf> {
        validate_id("trial id", id).map_err(|e| FsError::BadName {
            dir: self.sub(sub),
            name: id.to_string(),
            reason: e.to_string(),
        })?;
        Ok(self.json_path(sub, id))
    }

    pub fn setting_path(&self, id: &str) -> Result<PathBuf> {
        self.file(Sub::Settings, id)
    }

    pub fn pending_path(&self, id: &str) -> Result<PathBuf> {
        self.file(Sub::Pending, id)
    }

    pub fn result_path(&self, id: &str) -> Result<PathBuf> {
        self.file(Sub::Results, id)
    }

    /// `checkpoints/<id>/`: the trainer's per-epoch state, so a re-queued
    /// trial resumes where it stopped. Removed once the trial has a result.
    pub fn checkpoint_dir(&self, id: &str) -> Result<PathBuf> {
        validate_id("trial id", id).map_err(|e| FsError::BadName {
            dir: self.sub(Sub::Checkpoints),
            name: id.to_string(),
            reason: e.to_string(),
        })?;
        Ok(self.sub(Sub::Checkpoints).join(id))
    }

    /// `weights/<shard>/<id>.safetensors` (`weights/<id>.safetensors` in
    /// the flat layout): the final weights of a finished cnn
    /// trial (those its metrics are reported at), which other trials can
    /// start from (transfer learning). Kept for good.
    pub fn weights_path(&self, id: &str) -> Result<PathBuf> {
        let dir = self.root.join(WEIGHTS_DIR);
        validate_id("trial id", id).map_err(|e| FsError::BadName {
            dir: dir.clone(),
            name: id.to_string(),
            reason: e.to_string(),
        })?;
        Ok(self
            .trial_folder(dir, true, id)
            .join(format!("{id}.safetensors")))
    }

    /// Write `bytes` as trial `id`'s final weights (see
    /// [`StudyDir::weights_path`]) with the atomic write, creating
    /// `weights/` on first use.
    pub fn write_weights(&self, id: &str, bytes: &[u8]) -> Result<PathBuf> {
        let path = self.weights_path(id)?;
        let dir = self.root.join(WEIGHTS_DIR);
        fs::create_dir_all(&dir).map_err(|e| FsError::io("create directory", &dir, e))?;
        self.ready(&path)?;
        write_atomic(&path, bytes)?;
        Ok(path)
    }

    pub fn log_path(&self, id: &str) -> Result<PathBuf> {
        validate_id("trial id", id).map_err(|e| FsError::BadName {
            dir: self.sub(Sub::Logs),
            name: id.to_string(),
            reason: e.to_string(),
        })?;
        Ok(self
            .trial_folder(self.sub(Sub::Logs), true, id)
            .join(format!("{id}.log")))
    }

    /// [`StudyDir::log_path`], its shard created where missing.
    pub(crate) fn log_path_ready(&self, id: &str) -> Result<PathBuf> {
        let path = self.log_path(id)?;
        self.ready(&path)?;
        Ok(path)
    }

    // ----- master side ---------------------------------------------------

    /// Record a proposal in `settings/`, exclusively: the record is created
    /// with `link(2)` ([`write_new`]), so of two masters recording the same
    /// trial the first wins and the other gets `Ok(false)`, writes nothing,
    /// and must read the record and use it. This happens before publishing,
    /// so a master that crashes in between finds the proposal on restart
    /// and publishes exactly that setting instead of sampling a new one.
    pub fn record_setting(&self, s: &TrialSetting) -> Result<bool> {
        let path = self.setting_path(&s.trial_id)?;
        self.ready(&path)?;
        write_new(&path, &to_pretty_json(s))
    }

    /// Rewrite an existing record, for fields the master changes after
    /// proposing (successive halving's `until_epoch`); never its params.
    pub fn update_setting(&self, s: &TrialSetting) -> Result<()> {
        write_atomic(&self.setting_path(&s.trial_id)?, &to_pretty_json(s))
    }

    /// Publish a setting to `pending/` so workers can claim it.
    pub fn publish(&self, s: &TrialSetting) -> Result<()> {
        let path = self.pending_path(&s.trial_id)?;
        self.in_sub(Sub::Pending, || write_atomic(&path, &to_pretty_json(s)))
    }

    pub fn read_setting(&self, id: &str) -> Result<TrialSetting> {
        read_json(&self.setting_path(id)?)
    }

    /// Rewrite `master.json` (renewal, or taking over a stale lease).
    pub fn write_lease(&self, lease: &MasterLease) -> Result<()> {
        let path = self.root.join(MASTER_FILE);
        self.clear_non_file(&path)?;
        write_atomic(&path, &to_pretty_json(lease))
    }

    /// Create `master.json` where there is none, with `link(2)`: of two
    /// masters starting at once the first gets `Ok(true)`, the other
    /// `Ok(false)` and nothing written.
    pub fn create_lease(&self, lease: &MasterLease) -> Result<bool> {
        write_new(&self.root.join(MASTER_FILE), &to_pretty_json(lease))
    }

    pub fn read_lease(&self) -> Result<Option<MasterLease>> {
        read_optional(&self.root.join(MASTER_FILE))
    }

    pub fn mark_finished(&self, f: &Finished) -> Result<()> {
        let path = self.root.join(FINISHED_FILE);
        self.clear_non_file(&path)?;
        write_atomic(&path, &to_pretty_json(f))
    }

    pub fn is_finished(&self) -> bool {
        fs::symlink_metadata(self.root.join(FINISHED_FILE)).is_ok_and(|m| m.is_file())
    }

    pub fn read_finished(&self) -> Result<Option<Finished>> {
        read_optional(&self.root.join(FINISHED_FILE))
    }

    /// Remove `finished.json`, e.g. when the budget of a finished study is
    /// raised and the search continues.
    pub fn clear_finished(&self) -> Result<()> {
        self.remove_entry(&self.root.join(FINISHED_FILE), "remove")
    }

    // ----- scanning ------------------------------------------------------

    /// The names (without `.json`) of the files in `sub`, sorted.
    /// Temp files and other dot-files are skipped. A sharded folder is
    /// listed shard by shard; a file in a shard that is not its own (put
    /// there by hand) is not listed, as hps would look for it elsewhere.
    pub fn list(&self, sub: Sub) -> Result<Vec<String>> {
        if self.layout == Layout::Sharded && sub.is_sharded() {
            let mut out = Vec::new();
            for shard in self.shards(sub)? {
                let names = list_json(&self.sub(sub).join(&shard))?;
                out.extend(names.into_iter().filter(|id| shard_of(id) == shard));
            }
            out.sort();
            return Ok(out);
        }
        list_json(&self.sub(sub))
    }

    /// The names (without `.json`) of the files of `sub` that
    /// [`StudyDir::quarantine`] moved to `quarantine/`, read back from the
    /// names it gives them (`settings-t000-t000042.json-<pid>-<time>-<seq>`
    /// for a file of a shard, `settings-t000042.json-…` for a flat one).
    pub fn quarantined(&self, sub: Sub) -> Result<Vec<String>> {
        let dir = self.sub(Sub::Quarantine);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(FsError::io("list", dir, e)),
        };
        let prefix = format!("{}-", sub.name());
        let mut out: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| {
                let rest = n.strip_prefix(&prefix)?;
                let rest = match rest.split_once('-') {
                    Some((shard, tail))
                        if layout::is_shard_name(shard) && tail.contains(".json-") =>
                    {
                        tail
                    }
                    _ => rest,
                };
                Some(rest.split_once(".json-")?.0.to_string())
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// The shards of a sharded folder, sorted (none in the flat layout).
    pub fn shards(&self, sub: Sub) -> Result<Vec<String>> {
        if self.layout != Layout::Sharded || !sub.is_sharded() {
            return Ok(Vec::new());
        }
        let dir = self.sub(sub);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(FsError::io("list", dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| FsError::io("list", &dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if layout::is_shard_name(name) && entry.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(name.to_string());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Claimed settings as `(trial id, worker id)`, sorted.
    pub fn list_running(&self) -> Result<Vec<Claim>> {
        let dir = self.sub(Sub::Running);
        Ok(self
            .list(Sub::Running)?
            .into_iter()
            .filter_map(|stem| {
                let (t, w) = stem.split_once(CLAIM_SEP)?;
                Some(Claim {
                    trial_id: t.to_string(),
                    worker: w.to_string(),
                    path: dir.join(format!("{stem}.json")),
                })
            })
            .collect())
    }

    // ----- worker side ---------------------------------------------------

    /// Try to claim the pending setting `id` for `worker`. Exactly one of
    /// several concurrent callers gets `Some`; the others get `None`.
    pub fn claim(&self, id: &str, worker: &str) -> Result<Option<Claim>> {
        validate_id("worker id", worker).map_err(|e| FsError::BadName {
            dir: self.sub(Sub::Running),
            name: worker.to_string(),
            reason: e.to_string(),
        })?;
        let from = self.pending_path(id)?;
        let to = self
            .sub(Sub::Running)
            .join(format!("{id}{CLAIM_SEP}{worker}.json"));
        // ENOENT is either the pending file taken by another worker (the
        // usual race) or `running/` gone, which `in_sub` creates again.
        let claimed = self.in_sub(Sub::Running, || {
            fs::rename(&from, &to).map_err(|e| FsError::io("claim", &from, e))
        });
        match claimed {
            Ok(()) => Ok(Some(Claim {
                trial_id: id.to_string(),
                worker: worker.to_string(),
                path: to,
            })),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn read_claim(&self, claim: &Claim) -> Result<TrialSetting> {
        read_json(&claim.path)
    }

    /// Publish a result. The first result for a trial wins; later ones are
    /// not written and `Ok(false)` is returned.
    pub fn submit_result(&self, r: &TrialResult) -> Result<bool> {
        let path = self.result_path(&r.trial_id)?;
        self.ready(&path)?;
        write_new(&path, &to_pretty_json(r))
    }

    pub fn read_result(&self, id: &str) -> Result<TrialResult> {
        read_json(&self.result_path(id)?)
    }

    pub fn has_result(&self, id: &str) -> bool {
        self.result_path(id).map(|p| p.is_file()).unwrap_or(false)
    }

    /// Drop a claim once its result is published (or given up).
    pub fn drop_claim(&self, claim: &Claim) -> Result<()> {
        self.remove_entry(&claim.path, "remove claim")
    }

    /// Take a claim away from its holder before handing it back to the
    /// queue: `rename` it to a hidden name. Like claiming, exactly one of
    /// several racing takers (the master re-queueing a dead worker's trial,
    /// the worker itself on preemption or after a restart) wins; the others
    /// get `None`. The holder's final `drop_claim` then finds nothing, and a
    /// trial is never handed back twice.
    pub fn take_claim(&self, claim: &Claim) -> Result<Option<TakenClaim>> {
        Ok(take(&claim.path)?.map(|hidden| TakenClaim {
            trial_id: claim.trial_id.clone(),
            path: hidden,
        }))
    }

    /// Read the setting of a taken claim.
    pub fn read_taken(&self, taken: &TakenClaim) -> Result<TrialSetting> {
        read_json(&taken.path)
    }

    /// Publish `setting` (its attempt as the caller decided) back to
    /// `pending/`, then forget the taken claim. A crash in between leaves
    /// only the hidden file; the trial is then nowhere visible and the
    /// master's orphan rule re-publishes it from `settings/`.
    pub fn requeue(&self, taken: TakenClaim, setting: &TrialSetting) -> Result<()> {
        self.publish(setting)?;
        self.forget(taken)
    }

    /// Remove a taken claim without re-queueing (its result is in, or the
    /// master wrote a `failed` result for it).
    pub fn forget(&self, taken: TakenClaim) -> Result<()> {
        self.remove_entry(&taken.path, "remove")
    }

    // ----- multi-fidelity --------------------------------------------------

    /// Rewrite `progress/<id>.json` (worker, after each epoch or report).
    pub fn write_progress(&self, p: &Progress) -> Result<()> {
        let path = self.file(Sub::Progress, &p.trial_id)?;
        self.in_sub(Sub::Progress, || write_atomic(&path, &to_pretty_json(p)))
    }

    pub fn read_progress(&self, id: &str) -> Result<Option<Progress>> {
        read_optional(&self.file(Sub::Progress, id)?)
    }

    /// Rewrite `decisions/<id>.json` (master, after each decision).
    pub fn write_decision(&self, d: &Decision) -> Result<()> {
        let path = self.file(Sub::Decisions, &d.trial_id)?;
        self.in_sub(Sub::Decisions, || write_atomic(&path, &to_pretty_json(d)))
    }

    pub fn read_decision(&self, id: &str) -> Result<Option<Decision>> {
        read_optional(&self.file(Sub::Decisions, id)?)
    }

    /// Remove a finished trial's progress and decision files (its result
    /// holds the curve). Missing files are fine.
    pub fn clear_trial_state(&self, id: &str) -> Result<()> {
        for sub in [Sub::Progress, Sub::Decisions] {
            self.remove_entry(&self.file(sub, id)?, "remove")?;
        }
        Ok(())
    }

    /// `paused/<id>.json`.
    pub fn paused_path(&self, id: &str) -> Result<PathBuf> {
        self.file(Sub::Paused, id)
    }

    /// Park a claimed trial that reached its `until_epoch`: `rename` the
    /// claim to `paused/<id>.json` (its checkpoint stays). `Ok(false)` when
    /// the claim was taken from us meanwhile (the master presumed us dead).
    pub fn pause(&self, claim: &Claim) -> Result<bool> {
        let to = self.paused_path(&claim.trial_id)?;
        let paused = self.in_sub(Sub::Paused, || {
            fs::rename(&claim.path, &to).map_err(|e| FsError::io("pause", &claim.path, e))
        });
        match paused {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn read_paused(&self, id: &str) -> Result<TrialSetting> {
        read_json(&self.paused_path(id)?)
    }

    /// Resume a paused trial with `setting` (a later `until_epoch`): the
    /// new setting is written over the paused file, which is then renamed
    /// into `pending/`. A crash in between leaves the paused file with the
    /// new setting, and doing it again is harmless.
    pub fn promote(&self, setting: &TrialSetting) -> Result<()> {
        let from = self.paused_path(&setting.trial_id)?;
        write_atomic(&from, &to_pretty_json(setting))?;
        let to = self.pending_path(&setting.trial_id)?;
        self.in_sub(Sub::Pending, || {
            fs::rename(&from, &to).map_err(|e| FsError::io("promote", &from, e))
        })
    }

    /// Drop a paused file (its trial has a result now).
    pub fn remove_paused(&self, id: &str) -> Result<()> {
        self.remove_entry(&self.paused_path(id)?, "remove")
    }

    pub fn write_heartbeat(&self, hb: &Heartbeat) -> Result<()> {
        let p = self.file(Sub::Heartbeats, &hb.worker)?;
        self.in_sub(Sub::Heartbeats, || write_atomic(&p, &to_pretty_json(hb)))
    }

    pub fn read_heartbeat(&self, worker: &str) -> Result<Heartbeat> {
        read_json(&self.file(Sub::Heartbeats, worker)?)
    }

    pub fn heartbeat_path(&self, worker: &str) -> Result<PathBuf> {
        self.file(Sub::Heartbeats, worker)
    }

    /// Claim a worker id that has no heartbeat: create its first beat with
    /// `link(2)`. Of several workers starting with one id, one gets `true`.
    pub fn create_heartbeat(&self, hb: &Heartbeat) -> Result<bool> {
        let path = self.heartbeat_path(&hb.worker)?;
        self.in_sub(Sub::Heartbeats, || write_new(&path, &to_pretty_json(hb)))
    }

    /// Claim a worker id whose heartbeat `old` the caller judged stale or
    /// stopped: take the file (`rename`, one taker wins) and, if it still
    /// holds `old`, create `first` in its place as [`Self::create_heartbeat`]
    /// does. `false` when another process took or rewrote it meanwhile (a
    /// rewritten beat is put back).
    pub fn replace_heartbeat(&self, old: &Heartbeat, first: &Heartbeat) -> Result<bool> {
        let path = self.heartbeat_path(&first.worker)?;
        let Some(hidden) = take(&path)? else {
            return Ok(false);
        };
        let unchanged = read_json::<Heartbeat>(&hidden).is_ok_and(|hb| hb == *old);
        if !unchanged {
            // Put the newer beat back, unless its writer already did.
            let _ = fs::hard_link(&hidden, &path);
        }
        let _ = fs::remove_file(&hidden);
        Ok(unchanged && self.create_heartbeat(first)?)
    }

    /// `checkpoints/<id>/spent.json`: what earlier runs of the trial spent
    /// (nothing when missing; an unreadable one is quarantined and counts
    /// as nothing, as it only feeds the reported wall time).
    pub fn read_spent(&self, id: &str) -> Spent {
        let Ok(path) = self.checkpoint_dir(id).map(|d| d.join(SPENT_FILE)) else {
            return Spent::default();
        };
        match read_optional::<Spent>(&path) {
            Ok(s) => s.unwrap_or_default(),
            Err(e) => {
                tracing::warn!("{e}; the trial's earlier runs are not counted in its wall time");
                if e.is_damaged() {
                    let _ = self.quarantine(&path);
                }
                Spent::default()
            }
        }
    }

    /// Record what the runs of trial `id` spent so far (see [`Spent`]).
    pub fn write_spent(&self, id: &str, spent: &Spent) -> Result<()> {
        let dir = self.prepare_checkpoint_dir(id)?;
        write_atomic(&dir.join(SPENT_FILE), &to_pretty_json(spent))
    }

    /// Move a corrupt file into `quarantine/` (with a unique name) so it
    /// stops tripping scanners but is kept for inspection.
    pub fn quarantine(&self, path: &Path) -> Result<PathBuf> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // `results`, or `results-t012` for a file in a shard.
        let parent = path
            .parent()
            .map(|p| match p.strip_prefix(&self.root) {
                Ok(rel) if rel.components().count() == 2 => rel.to_string_lossy().replace('/', "-"),
                _ => p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            })
            .unwrap_or_default();
        // Unique per process and call: a rename must never replace an
        // earlier quarantined file.
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let to = self.sub(Sub::Quarantine).join(format!(
            "{parent}-{name}-{}-{}-{seq}",
            std::process::id(),
            hps_common::files::unix_now() as u64
        ));
        self.in_sub(Sub::Quarantine, || {
            fs::rename(path, &to).map_err(|e| FsError::io("quarantine", path, e))
        })?;
        Ok(to)
    }

    /// Remove temp files older than `age` left behind by crashed writers.
    /// Their age is measured on the filesystem's clock (the mtime of a
    /// file created just now), never this host's: a master whose clock is
    /// ahead must not take another host's fresh temp file for an old one.
    pub fn sweep_temp_files(&self, age: std::time::Duration) -> usize {
        let Some(now) = self.fs_now() else {
            return 0;
        };
        let mut removed = 0;
        let mut dirs: Vec<PathBuf> = Sub::ALL.iter().map(|s| self.sub(*s)).collect();
        dirs.push(self.root.clone());
        // Every shard too: a writer crashes in the shard of its trial.
        let weights = self.root.join(WEIGHTS_DIR);
        if self.layout == Layout::Sharded {
            for sub in Sub::ALL {
                for shard in self.shards(sub).unwrap_or_default() {
                    dirs.push(self.sub(sub).join(shard));
                }
            }
            if let Ok(entries) = fs::read_dir(&weights) {
                dirs.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
            }
        }
        dirs.push(weights);
        for dir in dirs {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if !name.starts_with(TMP_PREFIX) && !name.starts_with(".taken.") {
                    continue;
                }
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| now.duration_since(t).ok())
                    .is_some_and(|el| el >= age);
                if old && fs::remove_file(e.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }
}

impl StudyDir {
    /// The filesystem's clock: the mtime of a temp file created in the
    /// study directory now (`None` when none can be created). On a network
    /// filesystem the server sets it, so it agrees with the mtimes of
    /// other clients' files whatever this host's clock says.
    fn fs_now(&self) -> Option<std::time::SystemTime> {
        let probe = self
            .root
            .join(format!("{TMP_PREFIX}clock.{}", std::process::id()));
        let made = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&probe)
            .and_then(|f| f.metadata())
            .and_then(|m| m.modified());
        let _ = fs::remove_file(&probe);
        made.ok()
    }
}

/// The names (without `.json`) of the files in `dir`, sorted; temp files
/// and other dot-files are skipped.
fn list_json(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(FsError::io("list", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| FsError::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') {
            continue;
        }
        if let Some(stem) = name.strip_suffix(".json") {
            out.push(stem.to_string());
        }
    }
    out.sort();
    Ok(out)
}

/// Take `path` away from whoever else might take it: `rename` it to a
/// hidden `.taken.<pid>.<name>` beside it. Exactly one of several racing
/// takers gets `Some`; a master at start sweeps hidden files left by a crash.
fn take(path: &Path) -> Result<Option<PathBuf>> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let hidden = path.with_file_name(format!(".taken.{}.{name}", std::process::id()));
    match fs::rename(path, &hidden) {
        Ok(()) => Ok(Some(hidden)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FsError::io("take", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn study() -> Study {
        crate::testing::branin_study(5)
    }

    fn setting(i: u64) -> TrialSetting {
        TrialSetting::new(i, Default::default(), 1, "random")
    }

    #[test]
    fn init_refuses_an_existing_study() {
        let tmp = tempfile::tempdir().unwrap();
        StudyDir::init(tmp.path(), &study()).unwrap();
        let e = StudyDir::init(tmp.path(), &study()).unwrap_err();
        assert!(matches!(e, FsError::AlreadyInitialized { .. }), "{e}");
        assert_eq!(
            StudyDir::open(tmp.path()).unwrap().read_study().unwrap(),
            study()
        );
    }

    #[test]
    fn open_names_the_missing_study() {
        let tmp = tempfile::tempdir().unwrap();
        let e = StudyDir::open(tmp.path()).unwrap_err().to_string();
        assert!(
            e.contains("not an hps study directory") && e.contains("hps-master init"),
            "{e}"
        );
    }

    #[test]
    fn exactly_one_of_many_claimers_wins() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StudyDir::init(tmp.path(), &study()).unwrap();
        for i in 0..50 {
            dir.publish(&setting(i)).unwrap();
        }
        let claimed: Vec<Vec<String>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|w| {
                    let dir = dir.clone();
                    s.spawn(move || {
                        let mut mine = Vec::new();
                        for id in dir.list(Sub::Pending).unwrap() {
                            if let Some(c) = dir.claim(&id, &format!("w{w}")).unwrap() {
                                mine.push(c.trial_id);
                            }
                        }
                        mine
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all: Vec<String> = claimed.into_iter().flatten().collect();
        all.sort();
        let n = all.len();
        all.dedup();
        assert_eq!(
            (n, all.len()),
            (50, 50),
            "every setting claimed exactly once"
        );
        assert_eq!(dir.list_running().unwrap().len(), 50);
        assert!(dir.list(Sub::Pending).unwrap().is_empty());
    }

    #[test]
    fn requeue_returns_the_setting_to_pending() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StudyDir::init(tmp.path(), &study()).unwrap();
        dir.publish(&setting(0)).unwrap();
        let c = dir.claim("t000000", "w0").unwrap().unwrap();
        let taken = dir.take_claim(&c).unwrap().unwrap();
        assert!(
            dir.take_claim(&c).unwrap().is_none(),
            "a claim is taken once"
        );
        let mut s = dir.read_taken(&taken).unwrap();
        s.attempt += 1;
        dir.requeue(taken, &s).unwrap();
        assert!(
            dir.list(Sub::Running).unwrap().is_empty(),
            "no hidden file is listed or left"
        );
        assert_eq!(std::fs::read_dir(dir.sub(Sub::Running)).unwrap().count(), 0);
        assert_eq!(dir.list(Sub::Pending).unwrap(), vec!["t000000"]);
        assert!(dir.list_running().unwrap().is_empty());
        let c = dir.claim("t000000", "w1").unwrap().unwrap();
        assert_eq!(dir.read_claim(&c).unwrap().attempt, 2);
    }

    #[test]
    fn the_first_record_of_a_setting_wins_and_is_never_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StudyDir::init(tmp.path(), &study()).unwrap();
        let mut ours = setting(3);
        ours.params
            .insert("x0".into(), serde_json::Value::from(1.0));
        let mut theirs = setting(3);
        theirs
            .params
            .insert("x0".into(), serde_json::Value::from(2.0));
        assert!(dir.record_setting(&ours).unwrap());
        assert!(
            !dir.record_setting(&theirs).unwrap(),
            "a second record loses"
        );
        assert_eq!(dir.read_setting("t000003").unwrap(), ours);
        // Racing recorders: exactly one creates it.
        let won: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    let dir = dir.clone();
                    s.spawn(move || dir.record_setting(&setting(10 + i % 2)).unwrap() as usize)
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(won, 2, "one winner per trial id");
        // The one sanctioned rewrite.
        ours.until_epoch = Some(4);
        dir.update_setting(&ours).unwrap();
        assert_eq!(dir.read_setting("t000003").unwrap().until_epoch, Some(4));
    }

    #[test]
    fn a_lease_is_created_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StudyDir::init(tmp.path(), &study()).unwrap();
        let lease = |pid| MasterLease {
            format_version: 1,
            host: "h".into(),
            pid,
            seq: 0,
            interval_s: 1.0,
            written_at_unix: 0.0,
        };
        assert!(dir.create_lease(&lease(1)).unwrap());
        assert!(!dir.create_lease(&lease(2)).unwrap());
        assert_eq!(dir.read_lease().unwrap().unwrap().pid, 1);
    }

    #[test]
    fn scanners_skip_temp_files_and_bad_names_are_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StudyDir::init(tmp.path(), &study()).unwrap();
        fs::write(dir.sub(Sub::Pending).join(".tmp.t000001.json.1.2.3"), b"{").unwrap();
        assert!(dir.list(Sub::Pending).unwrap().is_empty());
        assert!(dir.claim("../study", "w0").is_err());
        assert!(dir.claim("t000001", "../w").is_err());
    }
}

#[cfg(test)]
mod damage_tests {
    use super::*;
    use crate::error::Damage;
    use std::os::unix::fs::PermissionsExt;

    fn damage_of(path: &Path) -> Damage {
        match read_text(path) {
            Err(FsError::Damaged { path: p, damage }) => {
                assert_eq!(p, path);
                damage
            }
            other => panic!("{}: expected damage, got {other:?}", path.display()),
        }
    }

    #[test]
    fn unreadable_files_are_damage_not_io_errors_and_are_never_followed_or_read_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let p = |n: &str| tmp.path().join(n);

        let outside = tmp.path().join("outside.json");
        fs::write(&outside, "{}").unwrap();
        std::os::unix::fs::symlink(&outside, p("link.json")).unwrap();
        assert_eq!(damage_of(&p("link.json")), Damage::Symlink);

        fs::create_dir(p("dir.json")).unwrap();
        assert_eq!(damage_of(&p("dir.json")), Damage::NotAFile("a directory"));

        // A FIFO would block a plain open forever.
        let fifo = std::ffi::CString::new(p("fifo.json").to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert_eq!(
            damage_of(&p("fifo.json")),
            Damage::NotAFile("a socket or FIFO")
        );

        // Sparse: costs no disk, and must not be read.
        let big = fs::File::create(p("big.json")).unwrap();
        big.set_len(MAX_FILE_BYTES + 1).unwrap();
        assert_eq!(
            damage_of(&p("big.json")),
            Damage::TooLarge(MAX_FILE_BYTES + 1)
        );

        fs::write(p("latin1.json"), b"{\"x\": \"caf\xe9\"}").unwrap();
        assert_eq!(damage_of(&p("latin1.json")), Damage::NotUtf8(10));

        fs::write(p("secret.json"), "{}").unwrap();
        fs::set_permissions(p("secret.json"), fs::Permissions::from_mode(0o000)).unwrap();
        // root reads anything; the check only means something for others.
        if unsafe { libc::geteuid() } != 0 {
            assert!(matches!(
                damage_of(&p("secret.json")),
                Damage::Unreadable(_)
            ));
        }

        let e = read_text(&p("missing.json")).unwrap_err();
        assert!(is_not_found(&e) && !e.is_damaged(), "{e:?}");
        assert_eq!(read_text(&outside).unwrap(), "{}");
        let msg = FsError::Damaged {
            path: p("big.json"),
            damage: Damage::TooLarge(MAX_FILE_BYTES + 1),
        }
        .to_string();
        assert!(
            msg.contains("big.json") && msg.contains("64 MiB cap"),
            "{msg}"
        );
    }

    #[test]
    fn a_directory_where_a_protocol_file_belongs_is_moved_aside_not_fatal() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = crate::testing::branin_study_dir(&tmp.path().join("s"), 1);
        fs::create_dir(dir.root().join(FINISHED_FILE)).unwrap();
        assert!(!dir.is_finished());
        dir.mark_finished(&Finished {
            format_version: 1,
            trials: 1,
            finished_at_unix: 0.0,
        })
        .unwrap();
        assert!(dir.is_finished());
        let claim = Claim {
            trial_id: "t000000".into(),
            worker: "w".into(),
            path: dir.sub(Sub::Running).join("t000000@w.json"),
        };
        fs::create_dir(&claim.path).unwrap();
        dir.drop_claim(&claim).unwrap();
        assert!(!claim.path.exists());
        assert_eq!(
            dir.list(Sub::Quarantine).unwrap().len(),
            0,
            "names keep no .json"
        );
        assert_eq!(fs::read_dir(dir.sub(Sub::Quarantine)).unwrap().count(), 2);
    }

    /// Issue 25, edge 7: temp files are aged on the filesystem's clock, so
    /// a fresh one stays whatever this host's clock says, and one whose
    /// mtime is two hours behind the filesystem's goes.
    #[test]
    fn the_temp_sweep_ages_files_on_the_filesystems_clock() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = crate::testing::branin_study_dir(&tmp.path().join("s"), 1);
        let fresh = dir.sub(Sub::Heartbeats).join(".tmp.w.json.1.2.3");
        let old = dir.sub(Sub::Pending).join(".tmp.t000000.json.1.2.3");
        fs::write(&fresh, b"{").unwrap();
        fs::write(&old, b"{").unwrap();
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
        assert_eq!(dir.sweep_temp_files(std::time::Duration::from_secs(600)), 1);
        assert!(fresh.exists() && !old.exists());
        let probes = fs::read_dir(dir.root()).unwrap().flatten();
        assert!(probes
            .into_iter()
            .all(|e| !e.file_name().to_string_lossy().contains("clock")));
    }

    /// Issue 25, edge 4: a protocol folder removed by hand is created again
    /// by the next write into it.
    #[test]
    fn a_removed_protocol_folder_is_created_again_on_write() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = crate::testing::branin_study_dir(&tmp.path().join("s"), 1);
        for sub in [Sub::Pending, Sub::Running, Sub::Heartbeats, Sub::Quarantine] {
            fs::remove_dir_all(dir.sub(sub)).unwrap();
        }
        dir.publish(&TrialSetting::new(0, Default::default(), 1, "random"))
            .unwrap();
        assert!(!dir.sub(Sub::Running).exists());
        assert!(dir.claim("t000000", "w").unwrap().is_some());
        let gone = dir.root().join("gone.json");
        fs::write(&gone, "{").unwrap();
        dir.quarantine(&gone).unwrap();
        assert_eq!(fs::read_dir(dir.sub(Sub::Quarantine)).unwrap().count(), 1);
    }

    /// Issue 25, edge 9: a shard that is a link out of the study is refused
    /// before anything is written through it.
    #[test]
    fn a_shard_that_is_a_link_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = crate::testing::branin_study_dir(&tmp.path().join("s"), 1);
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, dir.sub(Sub::Results).join("t000")).unwrap();
        let mut r = TrialResult::for_setting(
            &TrialSetting::new(0, Default::default(), 1, "random"),
            "w",
            "cpu",
        );
        r.status = hps_common::TrialStatus::Complete;
        let e = dir.submit_result(&r).unwrap_err();
        assert!(matches!(e, FsError::ForeignFolder { .. }), "{e}");
        assert!(e.to_string().contains("a symbolic link to"), "{e}");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    }

    /// Issue 25, edge 5: study.json that is not a regular file is named for
    /// what it is, never "no study.json".
    #[test]
    fn a_study_file_that_is_a_device_link_is_named_for_what_it_is() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = crate::testing::branin_study_dir(&tmp.path().join("s"), 1);
        fs::remove_file(dir.study_path()).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.study_path()).unwrap();
        let e = StudyDir::open(dir.root()).unwrap_err().to_string();
        assert!(
            e.contains("a symbolic link to `/dev/zero`, which is a device"),
            "{e}"
        );
        fs::remove_file(dir.study_path()).unwrap();
        let e = StudyDir::open(dir.root()).unwrap_err();
        assert!(matches!(e, FsError::NotAStudy { .. }), "{e}");
        let e = read_study_file(Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a device, not a study file"), "{e}");
    }

    /// `quarantined` reads back the trial ids from the names `quarantine`
    /// gives, in a shard and in a flat folder.
    #[test]
    fn quarantined_names_give_back_their_trial_ids() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = crate::testing::branin_study_dir(&tmp.path().join("s"), 1);
        let s = TrialSetting::new(42, Default::default(), 1, "random");
        dir.record_setting(&s).unwrap();
        dir.quarantine(&dir.setting_path("t000042").unwrap()).unwrap();
        dir.publish(&s).unwrap();
        dir.quarantine(&dir.pending_path("t000042").unwrap()).unwrap();
        assert_eq!(dir.quarantined(Sub::Settings).unwrap(), ["t000042"]);
        assert_eq!(dir.quarantined(Sub::Pending).unwrap(), ["t000042"]);
        assert!(dir.quarantined(Sub::Results).unwrap().is_empty());
    }
}
