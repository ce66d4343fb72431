//! The built-in metrics of the cnn trainer: the keys of its results'
//! `metrics` (and, for some, of its per-epoch curve). Other trainers
//! report metrics of any name, which stay plain strings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::files::EpochStat;

/// A metric the cnn trainer reports. The serde names are the keys written
/// into result files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    ValError,
    ValLoss,
    TrainLoss,
    TestError,
    ValAccuracy,
    TestAccuracy,
    TestLoss,
}

impl Metric {
    /// Every built-in metric.
    pub const ALL: &'static [Metric] = &[
        Metric::ValError,
        Metric::ValLoss,
        Metric::TrainLoss,
        Metric::TestError,
        Metric::ValAccuracy,
        Metric::TestAccuracy,
        Metric::TestLoss,
    ];

    /// The metrics with a value at every epoch (from [`EpochStat`]), which
    /// pruners can compare; test metrics are measured once, at the end.
    pub const PER_EPOCH: &'static [Metric] = &[
        Metric::ValError,
        Metric::ValLoss,
        Metric::ValAccuracy,
        Metric::TrainLoss,
    ];

    /// The metrics a cnn study may optimise (`objective.metric`).
    /// `test_loss` is reported but has never been an objective.
    pub const OBJECTIVES: &'static [Metric] = &[
        Metric::ValError,
        Metric::ValLoss,
        Metric::TrainLoss,
        Metric::TestError,
        Metric::ValAccuracy,
        Metric::TestAccuracy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::ValError => "val_error",
            Metric::ValLoss => "val_loss",
            Metric::TrainLoss => "train_loss",
            Metric::TestError => "test_error",
            Metric::ValAccuracy => "val_accuracy",
            Metric::TestAccuracy => "test_accuracy",
            Metric::TestLoss => "test_loss",
        }
    }

    /// Whether the metric has a per-epoch value (see [`Metric::PER_EPOCH`]).
    pub fn per_epoch(self) -> bool {
        Metric::PER_EPOCH.contains(&self)
    }

    /// `names` joined with `", "`, for messages.
    pub fn join(names: &[Metric]) -> String {
        names
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a built-in metric.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{name}` is not a built-in metric; they are {}",
    Metric::join(Metric::ALL)
)]
pub struct UnknownMetric {
    pub name: String,
}

impl FromStr for Metric {
    type Err = UnknownMetric;

    fn from_str(s: &str) -> Result<Metric, UnknownMetric> {
        Metric::ALL
            .iter()
            .copied()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| UnknownMetric {
                name: s.to_string(),
            })
    }
}

impl EpochStat {
    /// The value of `metric` at this epoch. `val_accuracy` is derived from
    /// `val_error`; metrics without a per-epoch value (the test metrics)
    /// are NaN.
    pub fn get(&self, metric: Metric) -> f64 {
        match metric {
            Metric::ValError => self.val_error,
            Metric::ValLoss => self.val_loss,
            Metric::TrainLoss => self.train_loss,
            Metric::ValAccuracy => 1.0 - self.val_error,
            Metric::TestError | Metric::TestAccuracy | Metric::TestLoss => f64::NAN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_equal_serde() {
        let names = [
            "val_error",
            "val_loss",
            "train_loss",
            "test_error",
            "val_accuracy",
            "test_accuracy",
            "test_loss",
        ];
        assert_eq!(Metric::ALL.len(), names.len());
        for (m, n) in Metric::ALL.iter().zip(names) {
            assert_eq!(m.as_str(), n);
            assert_eq!(n.parse::<Metric>().unwrap(), *m);
            assert_eq!(serde_json::to_value(m).unwrap(), serde_json::json!(n));
            let back: Metric = serde_json::from_value(serde_json::json!(n)).unwrap();
            assert_eq!(back, *m);
        }
        assert!("value".parse::<Metric>().is_err());
    }

    #[test]
    fn per_epoch_metrics_come_from_the_curve() {
        let s = EpochStat {
            train_error: None,
            epoch: 1,
            elapsed_s: 1.0,
            train_loss: 0.5,
            val_loss: 0.25,
            val_error: 0.125,
            instruments: None,
        };
        assert_eq!(s.get(Metric::ValError), 0.125);
        assert_eq!(s.get(Metric::ValLoss), 0.25);
        assert_eq!(s.get(Metric::TrainLoss), 0.5);
        assert_eq!(s.get(Metric::ValAccuracy), 1.0 - 0.125);
        assert!(s.get(Metric::TestError).is_nan());
        let per: Vec<_> = Metric::ALL.iter().filter(|m| m.per_epoch()).collect();
        assert_eq!(per.len(), Metric::PER_EPOCH.len());
        assert!(!Metric::TestAccuracy.per_epoch());
    }
}
