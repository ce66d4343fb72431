//! What a study is for: the seed exercise it reproduces (so the report can
//! open with the answers to that exercise's questions) and the hypothesis it
//! tests (so the report can state a verdict beside the measured effect).
//! Both are optional fields of the study file; the reference is
//! `docs/study-file.md`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::space::ParamSpec;
use crate::FieldError;

/// The course exercise a study reproduces. The presets set it; the report
/// uses it to choose which questions to answer first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Exercise {
    /// Seed 001, scenario 1: SGD learning rate, with repeats.
    S1,
    /// Scenario 2: learning rate x batch size.
    S2,
    /// Scenario 3: learning rate x momentum.
    S3,
    /// Scenario 4: number of filters, against epochs and wall time.
    S4,
    /// Scenario 5: 4-D random search with reshuffled best-so-far curves.
    S5,
    /// Seed 004 §3.2: weight decay sweep (L2 in Adam, or AdamW).
    WeightDecay,
    /// Seed 004 §3.3: dropout sweep.
    Dropout,
    /// Seed 004 §3.4: early stopping (best-epoch tracking or patience).
    EarlyStopping,
    /// Seed 003: the base model (plain SGD, LR x batch size, k-fold error).
    BaseModel,
    /// Seed 003: one hypothesis about the model, with folds or repeats.
    Hypothesis,
    /// Seeds 000/002: training with deliberately bad settings, to find the
    /// problems in the instruments.
    Debugging,
}

impl Exercise {
    /// Every exercise, in the order of the course.
    pub const ALL: &'static [Exercise] = &[
        Exercise::S1,
        Exercise::S2,
        Exercise::S3,
        Exercise::S4,
        Exercise::S5,
        Exercise::WeightDecay,
        Exercise::Dropout,
        Exercise::EarlyStopping,
        Exercise::BaseModel,
        Exercise::Hypothesis,
        Exercise::Debugging,
    ];

    /// The name written in the study file (`s1`, `weight-decay`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Exercise::S1 => "s1",
            Exercise::S2 => "s2",
            Exercise::S3 => "s3",
            Exercise::S4 => "s4",
            Exercise::S5 => "s5",
            Exercise::WeightDecay => "weight-decay",
            Exercise::Dropout => "dropout",
            Exercise::EarlyStopping => "early-stopping",
            Exercise::BaseModel => "base-model",
            Exercise::Hypothesis => "hypothesis",
            Exercise::Debugging => "debugging",
        }
    }

    /// The seed document and section the exercise comes from.
    pub fn source(self) -> &'static str {
        match self {
            Exercise::S1 => "seed 001, scenario 1",
            Exercise::S2 => "seed 001, scenario 2",
            Exercise::S3 => "seed 001, scenario 3",
            Exercise::S4 => "seed 001, scenario 4",
            Exercise::S5 => "seed 001, scenario 5",
            Exercise::WeightDecay => "seed 004, §3.2 weight decay",
            Exercise::Dropout => "seed 004, §3.3 dropout",
            Exercise::EarlyStopping => "seed 004, §3.4 early stopping",
            Exercise::BaseModel => "seed 003, base model",
            Exercise::Hypothesis => "seed 003, hypotheses",
            Exercise::Debugging => "seeds 000 and 002, debugging",
        }
    }
}

impl std::fmt::Display for Exercise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The direction a hypothesis expects the metric to move, for the other
/// values of its parameter against the baseline value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    Lower,
    Higher,
}

/// A hypothesis a study tests: "batch norm lowers the validation error".
/// The effect is the mean of `metric` at each other value of `param` minus
/// its mean at `baseline`, over repeats or folds; the report shows it with
/// its 95% confidence interval and a verdict (supported, contradicted or
/// inconclusive) when `expect` is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hypothesis {
    /// The hypothesis in the user's words.
    pub text: String,
    /// The searched parameter whose effect is measured.
    pub param: String,
    /// The value the others are compared with; by default the first
    /// choice or grid point of `param`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Value>,
    /// The metric the effect is measured on; by default the objective's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// The expected direction of the effect; without it the report shows
    /// the effect and its interval but no verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
}

impl Hypothesis {
    /// The baseline value: the given one, else the parameter's first
    /// choice or grid point (`None` for a continuous parameter without
    /// grid points, which [`Hypothesis::validate`] refuses).
    pub fn baseline_value(&self, spec: &ParamSpec) -> Option<Value> {
        if let Some(b) = &self.baseline {
            return Some(b.clone());
        }
        spec.grid_values().ok().and_then(|v| v.into_iter().next())
    }

    /// Checks against the study's space; errors name `hypothesis.<field>`.
    pub fn validate(
        &self,
        space: &std::collections::BTreeMap<String, ParamSpec>,
    ) -> Result<(), FieldError> {
        if self.text.trim().is_empty() {
            return Err(FieldError::new(
                "hypothesis.text",
                "must state the hypothesis, e.g. \"batch norm lowers the validation error\"",
            ));
        }
        let Some(spec) = space.get(&self.param) else {
            return Err(FieldError::new(
                "hypothesis.param",
                format!(
                    "`{}` is not a parameter of `space` (it has {})",
                    self.param,
                    space.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        };
        let Ok(values) = spec.grid_values() else {
            return Err(FieldError::new(
                "hypothesis.param",
                format!(
                    "`{}` has no discrete values to compare; make it categorical or give it grid points",
                    self.param
                ),
            ));
        };
        let baseline = self.baseline_value(spec);
        if !baseline.as_ref().is_some_and(|b| values.contains(b)) {
            return Err(FieldError::new(
                "hypothesis.baseline",
                format!(
                    "must be one of the values of `{}`: {}",
                    self.param,
                    values
                        .iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if values.len() < 2 {
            return Err(FieldError::new(
                "hypothesis.param",
                format!(
                    "`{}` has one value; a hypothesis compares at least two",
                    self.param
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[test]
    fn exercise_names_round_trip() {
        for e in Exercise::ALL {
            let v = serde_json::to_value(e).unwrap();
            assert_eq!(v, json!(e.as_str()));
            let back: Exercise = serde_json::from_value(v).unwrap();
            assert_eq!(back, *e);
        }
    }

    #[test]
    fn hypothesis_is_checked_against_the_space() {
        let space: BTreeMap<String, ParamSpec> = serde_json::from_value(json!({
            "batchnorm": {"type": "categorical", "choices": [false, true]},
            "lr": {"type": "float", "low": 0.001, "high": 0.1, "log": true}
        }))
        .unwrap();
        let h: Hypothesis = serde_json::from_value(json!({
            "text": "batch norm lowers the validation error",
            "param": "batchnorm",
            "expect": "lower"
        }))
        .unwrap();
        h.validate(&space).unwrap();
        assert_eq!(h.baseline_value(&space["batchnorm"]), Some(json!(false)));
        let bad = Hypothesis {
            param: "lr".into(),
            ..h.clone()
        };
        assert_eq!(bad.validate(&space).unwrap_err().field, "hypothesis.param");
        let bad = Hypothesis {
            baseline: Some(json!(3)),
            ..h.clone()
        };
        assert_eq!(
            bad.validate(&space).unwrap_err().field,
            "hypothesis.baseline"
        );
        let bad = Hypothesis {
            param: "depth".into(),
            ..h
        };
        let e = bad.validate(&space).unwrap_err();
        assert!(e.to_string().contains("batchnorm, lr"), "{e}");
    }
}
