//! A study directory read once, for the report: the study, every setting,
//! every result, and the progress of the trials still running.
//!
//! Like `status` and `export`, the report only reads, so it is safe while a
//! master and its workers run. A file that cannot be read is skipped with a
//! warning that names it; it never stops the report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hps_common::{ParamSpec, Progress, Study, TrialResult, TrialSetting, TrialStatus};
use hps_shared_fs::{StudyDir, Sub};

use crate::ReportError;

/// Everything the report shows of one study.
#[derive(Debug, Clone)]
pub struct StudyData {
    pub root: PathBuf,
    pub study: Study,
    /// The setting record of every proposed trial, by trial id.
    pub settings: BTreeMap<String, TrialSetting>,
    /// Every readable result, in proposal order (the settings' `index`,
    /// then trial id for results without a readable setting).
    pub results: Vec<TrialResult>,
    /// The latest progress of trials that have no result yet.
    pub running: Vec<Progress>,
    /// Trials waiting in `pending/` and `paused/`.
    pub pending: usize,
    pub paused: usize,
    /// `finished.json` is present: the master finished the study.
    pub finished: bool,
}

impl StudyData {
    /// Reads the study directory at `root`.
    pub fn load(root: &Path) -> Result<StudyData, ReportError> {
        let dir = StudyDir::open(root).map_err(|source| ReportError::Open {
            dir: root.to_path_buf(),
            source,
        })?;
        let study = dir.read_study().map_err(|source| ReportError::Study {
            file: dir.study_path(),
            source,
        })?;
        let settings: BTreeMap<String, TrialSetting> =
            load_all(&dir, Sub::Settings, |id| dir.read_setting(id))
                .map_err(ReportError::Fs)?
                .into_iter()
                .map(|s| (s.trial_id.clone(), s))
                .collect();
        let mut results =
            load_all(&dir, Sub::Results, |id| dir.read_result(id)).map_err(ReportError::Fs)?;
        let index = |r: &TrialResult| settings.get(&r.trial_id).map_or(u64::MAX, |s| s.index);
        results.sort_by(|a, b| {
            index(a)
                .cmp(&index(b))
                .then_with(|| a.trial_id.cmp(&b.trial_id))
        });
        let done: std::collections::BTreeSet<&str> =
            results.iter().map(|r| r.trial_id.as_str()).collect();
        let running = load_all(&dir, Sub::Progress, |id| dir.read_progress(id))
            .map_err(ReportError::Fs)?
            .into_iter()
            .flatten()
            .filter(|p| !done.contains(p.trial_id.as_str()))
            .collect();
        let mut study = study;
        keep_occurring_choices(&mut study, settings.values().map(|s| &s.params));
        Ok(StudyData {
            root: root.to_path_buf(),
            pending: count(&dir, Sub::Pending)?,
            paused: count(&dir, Sub::Paused)?,
            finished: dir.is_finished(),
            study,
            settings,
            results,
            running,
        })
    }

    /// The study's name as the report shows it: the study file's `name`,
    /// with the directory when two compared studies share a name.
    pub fn name(&self) -> &str {
        &self.study.name
    }

    /// Results with this status.
    pub fn with_status(&self, status: TrialStatus) -> impl Iterator<Item = &TrialResult> {
        self.results.iter().filter(move |r| r.status == status)
    }

    /// The objective of every finished trial that has a finite one, in
    /// proposal order, with its result.
    pub fn objectives(&self) -> Vec<(&TrialResult, f64)> {
        self.results
            .iter()
            .filter_map(|r| r.objective.filter(|v| v.is_finite()).map(|v| (r, v)))
            .collect()
    }

    /// Complete trials with a finite objective, best first.
    pub fn ranked(&self) -> Vec<(&TrialResult, f64)> {
        let dir = self.study.objective.direction;
        let mut v: Vec<_> = self
            .objectives()
            .into_iter()
            .filter(|(r, _)| r.status == TrialStatus::Complete)
            .collect();
        v.sort_by(|a, b| {
            dir.cmp(a.1, b.1)
                .then_with(|| a.0.trial_id.cmp(&b.0.trial_id))
        });
        v
    }

    /// The planned number of trials, when the study file determines it.
    pub fn planned(&self) -> Option<u64> {
        self.study.total_trials().ok()
    }
}

fn count(dir: &StudyDir, sub: Sub) -> Result<usize, ReportError> {
    Ok(dir.list(sub).map_err(ReportError::Fs)?.len())
}

pub use hps_shared_fs::tolerant::{load_all, load_some};

/// Above this many choices, the report's figures draw a categorical with
/// the choices that occur only.
pub const MAX_DRAWN_CHOICES: usize = 50;

/// A categorical of more than [`MAX_DRAWN_CHOICES`] choices is drawn with
/// the choices that some trial took, in the space's order: a slice plot or
/// a parallel-coordinates axis of a million choices would make the page
/// grow with the space instead of the trials.
fn keep_occurring_choices<'a>(
    study: &mut Study,
    params: impl Iterator<Item = &'a hps_common::Params>,
) {
    let big: Vec<String> = study
        .space
        .iter()
        .filter(|(_, s)| matches!(s, ParamSpec::Categorical { choices } if choices.len() > MAX_DRAWN_CHOICES))
        .map(|(k, _)| k.clone())
        .collect();
    if big.is_empty() {
        return;
    }
    let mut seen: BTreeMap<&str, Vec<&serde_json::Value>> = BTreeMap::new();
    for p in params {
        for name in &big {
            if let Some(v) = p.get(name) {
                seen.entry(name.as_str()).or_default().push(v);
            }
        }
    }
    let seen: BTreeMap<String, Vec<serde_json::Value>> = seen
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().cloned().collect()))
        .collect();
    for name in big {
        if let Some(ParamSpec::Categorical { choices }) = study.space.get_mut(&name) {
            let taken = seen.get(&name).map(Vec::as_slice).unwrap_or_default();
            let first = choices[0].clone();
            choices.retain(|c| taken.contains(c));
            if choices.is_empty() {
                choices.push(first); // nothing ran yet: an axis of one
            }
        }
    }
}
