//! The `function` trainer: analytic test objectives that cost no time
//! (or a configurable sleep), for tests and sampler benchmarks.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hps_common::functions::Function;
use hps_common::{Params, TrialStatus};

use super::{Outcome, Trainer, TrainerError, TrialContext, TrialEnd};

/// The `function` trainer of a study.
#[derive(Debug, Clone)]
pub struct FunctionTrainer {
    pub f: Function,
    pub dim: Option<usize>,
    pub sleep_s: f64,
}

impl Trainer for FunctionTrainer {
    fn run(&self, trial: &mut TrialContext<'_>) -> Result<Outcome, TrainerError> {
        let params = &trial.setting.params;
        Ok(evaluate(
            self.f,
            self.dim,
            self.sleep_s,
            params,
            trial.should_stop,
        ))
    }
}

/// Evaluate `f` at the point given by params `x0..x{d-1}`, after sleeping
/// `sleep_s` (in small steps, so `should_stop` is honoured).
pub fn evaluate(
    f: Function,
    dim: Option<usize>,
    sleep_s: f64,
    params: &Params,
    should_stop: &dyn Fn() -> bool,
) -> Outcome {
    let invalid = |m: String| Outcome::Finished(TrialEnd::invalid(m));
    let d = match f.dimension(dim) {
        Ok(d) => d,
        Err(m) => return invalid(m.to_string()),
    };
    let mut x = Vec::with_capacity(d);
    for i in 0..d {
        let key = format!("x{i}");
        match params.get(&key).and_then(|v| v.as_f64()) {
            Some(v) if v.is_finite() => x.push(v),
            Some(v) => return invalid(format!("{key} must be a finite number, got {v}")),
            None => {
                return invalid(format!(
                    "{} needs a number `{key}`, got {}",
                    f.as_str(),
                    params
                        .get(&key)
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "nothing".into())
                ))
            }
        }
    }
    if sleep_s > 0.0 {
        let until = Instant::now() + Duration::from_secs_f64(sleep_s);
        while Instant::now() < until {
            if should_stop() {
                return Outcome::Interrupted;
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
        }
    }
    let value = f.evaluate(&x);
    let mut metrics = BTreeMap::new();
    metrics.insert("value".to_string(), value);
    metrics.insert("regret".to_string(), value - f.optimum(d));
    Outcome::Finished(TrialEnd {
        metrics,
        epochs_completed: 1,
        ..TrialEnd::with_status(TrialStatus::Complete, None)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn params(xs: &[f64]) -> Params {
        xs.iter()
            .enumerate()
            .map(|(i, v)| (format!("x{i}"), Value::from(*v)))
            .collect()
    }

    #[test]
    fn branin_at_its_minimum_has_zero_regret() {
        let p = params(&[std::f64::consts::PI, 2.275]);
        let Outcome::Finished(f) = evaluate(Function::Branin, None, 0.0, &p, &|| false) else {
            panic!()
        };
        assert_eq!((f.status, f.epochs_completed), (TrialStatus::Complete, 1));
        assert!(f.metrics["regret"].abs() < 1e-5, "{:?}", f.metrics);
    }

    #[test]
    fn non_numeric_input_is_invalid() {
        let mut p = params(&[1.0]);
        p.insert("x1".into(), Value::from("a"));
        let out = evaluate(Function::Branin, None, 0.0, &p, &|| false);
        assert!(
            matches!(out, Outcome::Finished(TrialEnd { status: TrialStatus::Invalid, error: Some(m), .. }) if m.contains("x1"))
        );
    }

    #[test]
    fn sleep_is_interruptible() {
        let p = params(&[1.0, 1.0]);
        let t = Instant::now();
        let out = evaluate(Function::Branin, None, 30.0, &p, &|| true);
        assert_eq!(out, Outcome::Interrupted);
        assert!(t.elapsed() < Duration::from_secs(10));
    }
}
