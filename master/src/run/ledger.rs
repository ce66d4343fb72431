//! The master's ledger: the settings in flight, the results accepted and
//! what the sampler learns from them, the next index to propose, and the
//! results cache. What the loop knows of the study's trials lives here.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use hps_common::{TrialSetting, TrialStatus};
use hps_shared_fs::StudyDir;

use super::cache::ResultsCache;
use crate::samplers::{Observation, Proposal};

/// The settings in flight and the results accepted.
pub(super) struct Ledger {
    /// The recorded settings of the trials without a result, by trial id.
    /// A setting is dropped once its result is accepted, so that memory
    /// and the work of a step follow the trials in flight, not the study.
    pub settings: BTreeMap<String, TrialSetting>,
    /// Parameters of each config, and how they were proposed, so repeats
    /// share them. Only configs with repeats still to propose are kept.
    pub configs: HashMap<u64, Proposal>,
    /// The status of each trial with a result. The results themselves are
    /// not kept (every curve of a 100,000-trial study would be).
    pub results: HashMap<String, TrialStatus>,
    /// Totals over the accepted results, kept as they come in.
    pub tally: Tally,
    /// When `results/` is next listed whole (see [`FullListing`]).
    pub listing: FullListing,
    /// `cache/results.jsonl`, read at start and appended to.
    pub cache: ResultsCache,
    /// What the sampler learns from: every accepted result of a trial
    /// this study proposed.
    pub observations: Vec<Observation>,
    /// The index of the next trial to propose.
    pub next_index: u64,
}

impl Ledger {
    pub fn new(dir: &StudyDir) -> Ledger {
        Ledger {
            settings: BTreeMap::new(),
            configs: HashMap::new(),
            results: HashMap::new(),
            tally: Tally::default(),
            listing: FullListing::default(),
            cache: ResultsCache::new(dir),
            observations: Vec::new(),
            next_index: 0,
        }
    }

    /// Whether every recorded setting has its result.
    pub fn all_in(&self) -> bool {
        self.settings.keys().all(|id| self.results.contains_key(id))
    }
}

/// Totals over the accepted results, updated as each comes in, so that
/// the progress line and the final log line never walk every result.
#[derive(Debug, Default)]
pub(super) struct Tally {
    /// Sum of the results' wall times.
    pub wall_s: f64,
    /// The best completed trial and its objective.
    pub best: Option<(String, f64)>,
}

impl Tally {
    pub fn add(
        &mut self,
        id: &str,
        status: TrialStatus,
        objective: Option<f64>,
        wall_s: f64,
        direction: hps_common::Direction,
    ) {
        self.wall_s += wall_s;
        if status != TrialStatus::Complete {
            return;
        }
        if let Some(v) = objective {
            match &self.best {
                Some((_, b)) if !direction.better(v, *b) => {}
                _ => self.best = Some((id.to_string(), v)),
            }
        }
    }
}

/// The safety net under looking results up by name: `results/` is listed
/// whole at start (for the results cache and the first step) and then now
/// and then, to find a result the
/// master has no setting for in flight (a foreign file, a trial recorded by
/// a master it lost a race to). The gap between listings is
/// [`FullListing::MIN_GAP`], or [`FullListing::COST_FACTOR`] times what the
/// last listing took, whichever is longer: on a 100,000-entry directory of
/// a parallel filesystem, where a listing costs seconds, listings stay a
/// small share of the master's time.
#[derive(Debug, Default)]
pub(super) struct FullListing {
    next: Option<Instant>,
    /// The listing taken at start, for the first step.
    pub at_start: Option<Vec<String>>,
}

impl FullListing {
    const MIN_GAP: Duration = Duration::from_secs(30);
    const COST_FACTOR: u32 = 50;

    pub fn due(&self, now: Instant) -> bool {
        self.next.is_none_or(|t| now >= t)
    }

    pub fn done(&mut self, now: Instant, took: Duration) {
        self.next = Some(now + Self::MIN_GAP.max(took * Self::COST_FACTOR));
    }
}
