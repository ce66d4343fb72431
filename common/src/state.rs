//! Where a trial stands, as seen from the study directory.
//!
//! A trial is recorded in `settings/` and then found in exactly one of
//! `pending/`, `running/`, `paused/` or `results/` (or, for a moment or after
//! a lost file, in none of them). [`TrialState`] names those places; the
//! master, `status` and `export` all work it out the same way (see
//! `hps_master::scan`). Its text is the `status` column of `hps-master
//! export`: one of the four places, or the result's [`TrialStatus`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::TrialStatus;

/// The state of one recorded trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TrialState {
    /// Recorded in `settings/` but in no queue: not yet published, or lost
    /// (the master re-publishes it after its orphan grace).
    Proposed,
    /// Waiting in `pending/` for a worker.
    Pending,
    /// Claimed by a worker (`running/<id>@<worker>.json`).
    Running,
    /// Paused at a rung by successive halving / Hyperband (`paused/`).
    Paused,
    /// It has a result, with this status.
    Done(TrialStatus),
}

impl TrialState {
    /// The text used in exports: `proposed`, `pending`, `running`, `paused`,
    /// or the result's status (`complete`, `pruned`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            TrialState::Proposed => "proposed",
            TrialState::Pending => "pending",
            TrialState::Running => "running",
            TrialState::Paused => "paused",
            TrialState::Done(s) => s.as_str(),
        }
    }

    /// Every state, in the order a trial goes through them.
    pub const UNFINISHED: [TrialState; 4] = [
        TrialState::Proposed,
        TrialState::Pending,
        TrialState::Running,
        TrialState::Paused,
    ];

    pub fn is_done(self) -> bool {
        matches!(self, TrialState::Done(_))
    }
}

impl fmt::Display for TrialState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not a trial state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown trial state `{0}`; expected proposed, pending, running, paused, complete, diverged, failed, invalid or pruned")]
pub struct UnknownState(pub String);

impl FromStr for TrialState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unfinished = TrialState::UNFINISHED.into_iter().find(|t| t.as_str() == s);
        if let Some(t) = unfinished {
            return Ok(t);
        }
        // TrialStatus's serde names are its as_str texts.
        serde_json::from_value::<TrialStatus>(serde_json::Value::from(s))
            .map(TrialState::Done)
            .map_err(|_| UnknownState(s.to_string()))
    }
}

impl Serialize for TrialState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TrialState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_matches_the_export_strings() {
        let all = [
            (TrialState::Proposed, "proposed"),
            (TrialState::Pending, "pending"),
            (TrialState::Running, "running"),
            (TrialState::Paused, "paused"),
            (TrialState::Done(TrialStatus::Complete), "complete"),
            (TrialState::Done(TrialStatus::Diverged), "diverged"),
            (TrialState::Done(TrialStatus::Failed), "failed"),
            (TrialState::Done(TrialStatus::Invalid), "invalid"),
            (TrialState::Done(TrialStatus::Pruned), "pruned"),
        ];
        for (state, text) in all {
            assert_eq!(state.to_string(), text);
            assert_eq!(text.parse::<TrialState>().unwrap(), state);
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<TrialState>(&json).unwrap(), state);
        }
        assert!("done".parse::<TrialState>().is_err());
    }
}
