//! The budget a study's trials were tuned and evaluated at: epochs,
//! training and validation examples, the time limit. Every figure's note
//! and every table's caption says it, because a setting tuned at one
//! budget says nothing about another (seed 000: a method tuned for 100
//! epochs says nothing about 80).

use hps_common::{CnnDefaults, ParamSpec, TrainerSpec};
use serde_json::Value;

use super::trials::num;
use crate::StudyData;

/// A budget quantity: one value, or searched over a range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Amount {
    Fixed(f64),
    Searched(f64, f64),
}

impl Amount {
    fn text(self, unit: &str) -> String {
        match self {
            Amount::Fixed(v) => format!("{} {unit}", count(v)),
            Amount::Searched(lo, hi) => format!("searched {}–{} {unit}", count(lo), count(hi)),
        }
    }
}

/// What trained each trial, for the budget's text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Training {
    /// The cnn trainer: `folds` > 1 is k-fold cross-validation over the
    /// `train` examples (then `val` is not used).
    Cnn {
        train: Amount,
        val: Amount,
        folds: Amount,
    },
    /// A command: it gets the epochs and decides the data itself.
    Exec,
    /// An analytic test function: no training.
    Function(String),
}

/// A study's budget.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Budget {
    pub epochs: Amount,
    pub training: Training,
    pub time_limit_s: Option<f64>,
}

/// The budget of the study `d`: the study file's `budget`, the trainer's
/// defaults, and any of them the space fixes or searches.
pub(crate) fn of(d: &StudyData) -> Budget {
    let s = &d.study;
    let param = |name: &str, default: f64| amount(s.space.get(name), default);
    let training = match &s.trainer {
        TrainerSpec::Cnn { defaults, .. } => cnn(defaults, &param),
        TrainerSpec::Exec(_) => Training::Exec,
        TrainerSpec::Function { name, .. } => Training::Function(name.as_str().to_string()),
    };
    Budget {
        epochs: param("epochs", f64::from(s.budget.epochs)),
        training,
        time_limit_s: s.budget.time_limit_s,
    }
}

fn cnn(defaults: &CnnDefaults, param: &dyn Fn(&str, f64) -> Amount) -> Training {
    Training::Cnn {
        train: param("train_size", defaults.train_size as f64),
        val: param("val_size", defaults.val_size as f64),
        folds: param("folds", defaults.folds as f64),
    }
}

/// The amount a parameter gives: its fixed value, the range it is
/// searched over, or `default` when the space does not have it (or gives
/// no number).
fn amount(spec: Option<&ParamSpec>, default: f64) -> Amount {
    let Some(spec) = spec else {
        return Amount::Fixed(default);
    };
    let nums: Vec<f64> = match spec {
        ParamSpec::Categorical { choices } => choices.iter().filter_map(Value::as_f64).collect(),
        ParamSpec::Fixed { value } => value.as_f64().into_iter().collect(),
        s => [0.0, 1.0]
            .iter()
            .filter_map(|&u| s.from_unit(u).as_f64())
            .collect(),
    };
    let lo = nums.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = nums.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    match (lo.is_finite() && hi.is_finite(), lo == hi) {
        (false, _) => Amount::Fixed(default),
        (true, true) => Amount::Fixed(lo),
        (true, false) => Amount::Searched(lo, hi),
    }
}

/// A count with thousands separators ("5,000"); other numbers as the
/// page writes them.
fn count(v: f64) -> String {
    if v.fract() != 0.0 || v.abs() >= 1e15 {
        return num(v);
    }
    let digits = format!("{}", v.abs() as u64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 {
        out.insert(0, '-');
    }
    out
}

impl Budget {
    /// The data each trial trained and was evaluated on.
    fn data(&self, short: bool) -> Option<String> {
        let Training::Cnn { train, val, folds } = &self.training else {
            return None;
        };
        let kfold = match folds {
            Amount::Fixed(k) if *k <= 1.0 => None,
            f => Some(f.text("folds")),
        };
        Some(match (kfold, short) {
            (Some(k), _) => format!("{} in {k}", train.text("examples")),
            (None, true) => train.text("examples"),
            (None, false) => format!(
                "{}, {}",
                train.text("training examples"),
                val.text("validation examples")
            ),
        })
    }

    fn limit(&self) -> Option<String> {
        self.time_limit_s
            .map(|t| format!("time limit {} s per trial", num(t)))
    }

    /// The full text for figures and tables, starting "budget: ".
    pub(crate) fn text(&self) -> String {
        let mut parts = match &self.training {
            Training::Function(name) => {
                vec![format!("one evaluation of {name} per trial, no training")]
            }
            _ => {
                let epochs = self.epochs.text("epochs");
                vec![match self.data(false) {
                    Some(data) => format!("{epochs} × {data}"),
                    None => format!("{epochs} (data chosen by the command)"),
                }]
            }
        };
        parts.extend(self.limit());
        format!("budget: {}", parts.join(", "))
    }

    /// The short form for a comparison: "50 epochs × 5,000 examples".
    pub(crate) fn short(&self) -> String {
        let mut s = match &self.training {
            Training::Function(name) => format!("{name}, no training"),
            _ => {
                let epochs = self.epochs.text("epochs");
                match self.data(true) {
                    Some(data) => format!("{epochs} × {data}"),
                    None => epochs,
                }
            }
        };
        if let Some(t) = self.time_limit_s {
            s.push_str(&format!(", {} s limit", num(t)));
        }
        s
    }
}

/// The budget text of study `d` ("budget: 20 epochs × 5,000 training
/// examples, 1,000 validation examples"), for every figure's note and table caption.
pub(crate) fn text(d: &StudyData) -> String {
    of(d).text()
}

/// For a comparison: when the studies' budgets differ, the line that says
/// so ("at different budgets: A 50 epochs × 5,000 examples, B 20 epochs ×
/// 5,000 examples — not a like-for-like comparison"); otherwise the one
/// budget they share ("budget of every study: …").
pub(crate) fn comparison(studies: &[StudyData], names: &[String]) -> String {
    let budgets: Vec<Budget> = studies.iter().map(of).collect();
    if budgets.windows(2).all(|w| w[0] == w[1]) {
        return budgets.first().map_or(String::new(), |b| {
            b.text().replacen("budget:", "budget of every study:", 1)
        });
    }
    let each: Vec<String> = budgets
        .iter()
        .zip(names)
        .map(|(b, n)| format!("{n} {}", b.short()))
        .collect();
    format!(
        "at different budgets: {} — not a like-for-like comparison",
        each.join(", ")
    )
}

/// `note` with the budget line added under it (figure notes are drawn
/// one line per `\n`).
pub(crate) fn with_note(note: Option<String>, budget: &str) -> Option<String> {
    Some(match note {
        Some(n) if !n.is_empty() => format!("{n}\n{budget}"),
        _ => budget.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cnn_budget(epochs: Amount, folds: f64, limit: Option<f64>) -> Budget {
        Budget {
            epochs,
            training: Training::Cnn {
                train: Amount::Fixed(5000.0),
                val: Amount::Fixed(1000.0),
                folds: Amount::Fixed(folds),
            },
            time_limit_s: limit,
        }
    }

    #[test]
    fn texts_name_epochs_examples_and_the_limit() {
        let b = cnn_budget(Amount::Fixed(20.0), 1.0, None);
        assert_eq!(
            b.text(),
            "budget: 20 epochs × 5,000 training examples, 1,000 validation examples"
        );
        assert_eq!(b.short(), "20 epochs × 5,000 examples");
        let b = cnn_budget(Amount::Searched(10.0, 50.0), 5.0, Some(60.0));
        assert_eq!(
            b.text(),
            "budget: searched 10–50 epochs × 5,000 examples in 5 folds, time limit 60 s per trial"
        );
        assert_eq!(
            b.short(),
            "searched 10–50 epochs × 5,000 examples in 5 folds, 60 s limit"
        );
    }

    #[test]
    fn amounts_come_from_the_space() {
        let cat = ParamSpec::Categorical {
            choices: vec![Value::from(10), Value::from(50), Value::from(20)],
        };
        assert_eq!(amount(Some(&cat), 1.0), Amount::Searched(10.0, 50.0));
        let int = ParamSpec::Int {
            low: 2,
            high: 8,
            log: false,
        };
        assert_eq!(amount(Some(&int), 1.0), Amount::Searched(2.0, 8.0));
        let fixed = ParamSpec::Fixed {
            value: Value::from(30),
        };
        assert_eq!(amount(Some(&fixed), 1.0), Amount::Fixed(30.0));
        let text = ParamSpec::Fixed {
            value: Value::from("many"),
        };
        assert_eq!(amount(Some(&text), 7.0), Amount::Fixed(7.0));
        assert_eq!(amount(None, 7.0), Amount::Fixed(7.0));
    }

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(count(5000.0), "5,000");
        assert_eq!(count(60000.0), "60,000");
        assert_eq!(count(1234567.0), "1,234,567");
        assert_eq!(count(999.0), "999");
        assert_eq!(count(0.5), "0.5");
    }
}
