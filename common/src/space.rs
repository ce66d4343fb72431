//! Search-space parameters and how a point in the unit cube maps onto them.
//!
//! Samplers work in `[0, 1)^d`; [`ParamSpec::from_unit`] turns a coordinate
//! into a concrete value. That keeps every sampler scale-agnostic: log
//! scales, integers and categoricals are handled here, once.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::FieldError;

/// One dimension of the search space, as written in the study file:
/// `{"type": "float", "low": 1e-4, "high": 1, "log": true}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ParamSpec {
    /// A real number in `[low, high]`, uniform on a linear or log scale.
    Float {
        low: f64,
        high: f64,
        #[serde(default)]
        log: bool,
        /// Number of evenly spaced points when the grid sampler is used.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grid: Option<usize>,
    },
    /// An integer in `[low, high]` (both inclusive), linear or log scale.
    Int {
        low: i64,
        high: i64,
        #[serde(default)]
        log: bool,
    },
    /// One of a list of JSON values (numbers, strings, booleans).
    Categorical { choices: Vec<Value> },
    /// A constant: recorded with every trial, never searched.
    Fixed { value: Value },
    /// A value computed from a uniform draw `x ~ U[0, 1)`:
    /// `t = offset + scale * x`, then `base^t` when `base` is given, then
    /// truncated toward zero when `int` is true (Python's `int()`).
    ///
    /// Scenario 5 of the seed is written exactly this way, e.g.
    /// `batch = int(2^(4 + 4 x1))` is `{"offset": 4, "scale": 4, "base": 2, "int": true}`.
    Transform {
        #[serde(default)]
        offset: f64,
        #[serde(default = "one")]
        scale: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base: Option<f64>,
        #[serde(default)]
        int: bool,
        /// Number of evenly spaced `x` values in `[0, 1]` for the grid sampler.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grid: Option<usize>,
    },
}

fn one() -> f64 {
    1.0
}

/// Largest number of values an `int` parameter may contribute to a grid.
pub const MAX_INT_GRID: i64 = 100_000;

impl ParamSpec {
    /// Whether samplers search this dimension (everything but `fixed`).
    pub fn is_searched(&self) -> bool {
        !matches!(self, ParamSpec::Fixed { .. })
    }

    /// Map a unit coordinate `u` in `[0, 1)` onto a value of this parameter.
    /// `u` outside that range is clamped, so samplers cannot leave bounds.
    pub fn from_unit(&self, u: f64) -> Value {
        let u = if u.is_nan() { 0.0 } else { u.clamp(0.0, 1.0) };
        match self {
            ParamSpec::Float { low, high, log, .. } => {
                let v = if *log {
                    (low.ln() + u * (high.ln() - low.ln())).exp()
                } else {
                    low + u * (high - low)
                };
                float_value(v.clamp(*low, *high))
            }
            ParamSpec::Int { low, high, log } => {
                // Each integer gets an equal share of [0, 1) (or of the log
                // range [low - 0.5, high + 0.5) on a log scale).
                let v = if *log {
                    let (a, b) = ((*low as f64 - 0.5).max(0.5).ln(), (*high as f64 + 0.5).ln());
                    (a + u * (b - a)).exp().round()
                } else {
                    (*low as f64 + u * ((*high - *low + 1) as f64)).floor()
                };
                Value::from((v as i64).clamp(*low, *high))
            }
            ParamSpec::Categorical { choices } => {
                let i = ((u * choices.len() as f64) as usize).min(choices.len() - 1);
                choices[i].clone()
            }
            ParamSpec::Fixed { value } => value.clone(),
            ParamSpec::Transform {
                offset,
                scale,
                base,
                int,
                ..
            } => transform_value(*offset, *scale, *base, *int, u),
        }
    }

    /// The inverse of [`ParamSpec::from_unit`], up to the cell of discrete values.
    pub fn to_unit(&self, v: &Value) -> Option<f64> {
        let ratio = |num: f64, den: f64| if den > 0.0 { num / den } else { 0.5 };
        let u = match self {
            ParamSpec::Float { low, high, log, .. } => {
                let v = v.as_f64()?;
                if *log {
                    ratio(v.max(*low).ln() - low.ln(), high.ln() - low.ln())
                } else {
                    ratio(v - low, high - low)
                }
            }
            ParamSpec::Int { low, high, log } => {
                let v = v
                    .as_i64()
                    .or_else(|| v.as_f64().map(|f| f.round() as i64))?;
                let v = v.clamp(*low, *high) as f64;
                if *log {
                    let (a, b) = ((*low as f64 - 0.5).max(0.5).ln(), (*high as f64 + 0.5).ln());
                    let mid = 0.5 * ((v - 0.5).max(0.5).ln() + (v + 0.5).ln());
                    ratio(mid - a, b - a)
                } else {
                    ratio(v - *low as f64 + 0.5, (*high - *low + 1) as f64)
                }
            }
            ParamSpec::Categorical { choices } => {
                let i = choices.iter().position(|c| c == v || numbers_equal(c, v))?;
                (i as f64 + 0.5) / choices.len() as f64
            }
            ParamSpec::Fixed { .. } => return None,
            ParamSpec::Transform {
                offset,
                scale,
                base,
                int,
                ..
            } => {
                let mut v = v.as_f64()?;
                if *int {
                    // `int` truncates toward zero: aim at the middle of the cell.
                    v += if v >= 0.0 { 0.5 } else { -0.5 };
                }
                let t = match base {
                    Some(b) if *b != 1.0 && v > 0.0 => v.ln() / b.ln(),
                    Some(_) => return Some(0.5),
                    None => v,
                };
                ratio(t - offset, *scale)
            }
        };
        Some(if u.is_finite() {
            u.clamp(0.0, 1.0)
        } else {
            0.5
        })
    }

    /// All values this parameter takes in a grid search, in a fixed order.
    pub fn grid_values(&self) -> Result<Vec<Value>, GridError> {
        match self {
            ParamSpec::Float {
                low,
                high,
                log,
                grid,
            } => {
                let n = grid.ok_or(GridError::NoPoints("a float parameter"))?;
                Ok(spaced(n)
                    .into_iter()
                    .map(|u| {
                        let v = if *log {
                            (low.ln() + u * (high.ln() - low.ln())).exp()
                        } else {
                            low + u * (high - low)
                        };
                        float_value(v.clamp(*low, *high))
                    })
                    .collect())
            }
            ParamSpec::Int { low, high, .. } => {
                if high - low + 1 > MAX_INT_GRID {
                    return Err(GridError::TooLarge(high - low + 1));
                }
                Ok((*low..=*high).map(Value::from).collect())
            }
            ParamSpec::Categorical { choices } => Ok(choices.clone()),
            ParamSpec::Fixed { value } => Ok(vec![value.clone()]),
            ParamSpec::Transform {
                offset,
                scale,
                base,
                int,
                grid,
            } => {
                let n = grid.ok_or(GridError::NoPoints("a transform parameter"))?;
                Ok(spaced(n)
                    .into_iter()
                    .map(|u| transform_value(*offset, *scale, *base, *int, u))
                    .collect())
            }
        }
    }

    /// Checks serde cannot express. The field is relative to this
    /// parameter.
    pub fn validate(&self) -> Result<(), FieldError> {
        match self {
            ParamSpec::Float {
                low,
                high,
                log,
                grid,
            } => validate_float(*low, *high, *log, *grid),
            ParamSpec::Int { low, high, log } => validate_int(*low, *high, *log),
            ParamSpec::Categorical { choices } => validate_choices(choices),
            ParamSpec::Fixed { value } if value.is_null() => {
                bad("value", "must not be null".into())
            }
            ParamSpec::Fixed { .. } => Ok(()),
            ParamSpec::Transform {
                offset,
                scale,
                base,
                grid,
                ..
            } => validate_transform(*offset, *scale, *base, *grid),
        }
    }
}

fn bad(field: &str, message: String) -> Result<(), FieldError> {
    Err(FieldError::new(field, message))
}

fn validate_float(low: f64, high: f64, log: bool, grid: Option<usize>) -> Result<(), FieldError> {
    if !low.is_finite() || !high.is_finite() {
        return bad("low", "bounds must be finite numbers".into());
    }
    if low > high {
        return bad("high", format!("high ({high}) must be >= low ({low})"));
    }
    if low == high {
        return bad("high", one_value(low));
    }
    if !(high - low).is_finite() {
        return bad(
            "high",
            format!(
                "the range from {low} to {high} is wider than a 64-bit float can hold, \
                 so its values cannot be computed; narrow it (or use \"log\": true on a positive range)"
            ),
        );
    }
    if log && low <= 0.0 {
        return bad("low", format!("a log-scale range needs low > 0, got {low}"));
    }
    validate_grid(grid)
}

fn validate_int(low: i64, high: i64, log: bool) -> Result<(), FieldError> {
    if low > high {
        return bad("high", format!("high ({high}) must be >= low ({low})"));
    }
    if high
        .checked_sub(low)
        .and_then(|w| w.checked_add(1))
        .is_none()
    {
        return bad(
            "high",
            format!("the range from {low} to {high} holds more integers than a 64-bit integer can count; narrow it"),
        );
    }
    if low == high {
        return bad("high", one_value(low));
    }
    if log && low <= 0 {
        return bad("low", format!("a log-scale range needs low > 0, got {low}"));
    }
    Ok(())
}

fn validate_choices(choices: &[Value]) -> Result<(), FieldError> {
    if choices.is_empty() {
        return bad("choices", "must hold at least one value".into());
    }
    match choices
        .iter()
        .find(|c| c.is_array() || c.is_object() || c.is_null())
    {
        Some(c) => bad(
            "choices",
            format!("choices must be numbers, strings or booleans, got {c}"),
        ),
        None => Ok(()),
    }
}

fn validate_transform(
    offset: f64,
    scale: f64,
    base: Option<f64>,
    grid: Option<usize>,
) -> Result<(), FieldError> {
    if !offset.is_finite() || !scale.is_finite() {
        return bad("scale", "offset and scale must be finite numbers".into());
    }
    if let Some(b) = base {
        if !b.is_finite() || b <= 0.0 {
            return bad("base", format!("must be a positive number, got {b}"));
        }
    }
    // Both ends of the map must be numbers (a value is made from them).
    let end = |x: f64| {
        let t = offset + scale * x;
        base.map_or(t, |b| b.powf(t))
    };
    if !(end(0.0).is_finite() && end(1.0).is_finite()) {
        return bad(
            "scale",
            format!(
                "offset {offset} and scale {scale}{} give values too large for a 64-bit float; make them smaller",
                base.map_or(String::new(), |b| format!(" with base {b}"))
            ),
        );
    }
    validate_grid(grid)
}

/// A `grid` of points per parameter: at least 1, at most [`MAX_INT_GRID`].
fn validate_grid(grid: Option<usize>) -> Result<(), FieldError> {
    if grid == Some(0) {
        return bad("grid", "must be at least 1".into());
    }
    if grid.is_some_and(|n| n as i64 > MAX_INT_GRID) {
        return bad(
            "grid",
            format!("at most {MAX_INT_GRID} points per parameter"),
        );
    }
    Ok(())
}

/// Why a parameter has no grid of values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GridError {
    #[error("{0} needs `grid: N` (number of points) for the grid sampler; or use a categorical")]
    NoPoints(&'static str),
    #[error(
        "an int range of {0} values is too large for a grid (max {MAX_INT_GRID}); use a \
         categorical with the values you want"
    )]
    TooLarge(i64),
}

fn transform_value(offset: f64, scale: f64, base: Option<f64>, int: bool, x: f64) -> Value {
    let t = offset + scale * x;
    let v = match base {
        Some(b) => b.powf(t),
        None => t,
    };
    if int {
        Value::from(v.trunc() as i64)
    } else {
        float_value(v)
    }
}

/// `n` evenly spaced points on `[0, 1]` including both ends (`[0]` for n=1).
/// The message for a range that holds a single value: almost always a
/// typo, and samplers that model a range cannot model an empty one.
fn numbers_equal(a: &Value, b: &Value) -> bool {
    matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y)
}

fn one_value(v: impl std::fmt::Display) -> String {
    format!(
        "low and high are both {v}, so the range holds one value; widen it, or write \
         {{\"type\": \"fixed\", \"value\": {v}}} to pass a constant"
    )
}

fn spaced(n: usize) -> Vec<f64> {
    if n <= 1 {
        return vec![0.0];
    }
    (0..n).map(|i| i as f64 / (n - 1) as f64).collect()
}

fn float_value(v: f64) -> Value {
    serde_json::Number::from_f64(v)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s5() -> [ParamSpec; 4] {
        [
            ParamSpec::Transform {
                offset: 10.0,
                scale: 90.0,
                base: None,
                int: true,
                grid: None,
            },
            ParamSpec::Transform {
                offset: 4.0,
                scale: 4.0,
                base: Some(2.0),
                int: true,
                grid: None,
            },
            ParamSpec::Transform {
                offset: 0.0,
                scale: 1.0,
                base: None,
                int: false,
                grid: None,
            },
            ParamSpec::Transform {
                offset: -2.0,
                scale: 1.5,
                base: Some(10.0),
                int: false,
                grid: None,
            },
        ]
    }

    #[test]
    fn scenario5_midpoint_matches_the_seed() {
        let [nf, batch, momentum, lr] = s5();
        assert_eq!(nf.from_unit(0.5), Value::from(55));
        assert_eq!(batch.from_unit(0.5), Value::from(64));
        assert_eq!(momentum.from_unit(0.5).as_f64(), Some(0.5));
        let lr = lr.from_unit(0.5).as_f64().unwrap();
        assert!((lr - 10f64.powf(-1.25)).abs() < 1e-15, "{lr}");
    }

    #[test]
    fn scenario5_extremes() {
        let [nf, batch, _, lr] = s5();
        assert_eq!(nf.from_unit(0.0), Value::from(10));
        assert_eq!(nf.from_unit(0.9999), Value::from(99));
        assert_eq!(batch.from_unit(0.0), Value::from(16));
        assert_eq!(batch.from_unit(0.9999), Value::from(255));
        assert!((lr.from_unit(0.0).as_f64().unwrap() - 0.01).abs() < 1e-15);
    }

    #[test]
    fn grid_values_cover_ranges() {
        let f = ParamSpec::Float {
            low: 1e-3,
            high: 1e-1,
            log: true,
            grid: Some(3),
        };
        let v: Vec<f64> = f
            .grid_values()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert!(
            (v[0] - 1e-3).abs() < 1e-12
                && (v[1] - 1e-2).abs() < 1e-12
                && (v[2] - 1e-1).abs() < 1e-12
        );
        let i = ParamSpec::Int {
            low: 2,
            high: 5,
            log: false,
        };
        assert_eq!(
            i.grid_values().unwrap(),
            vec![2, 3, 4, 5]
                .into_iter()
                .map(Value::from)
                .collect::<Vec<_>>()
        );
        let g = ParamSpec::Float {
            low: 0.0,
            high: 1.0,
            log: false,
            grid: None,
        };
        assert!(g.grid_values().unwrap_err().to_string().contains("grid"));
    }

    #[test]
    fn validation_names_the_field() {
        let p = ParamSpec::Float {
            low: 0.0,
            high: 1.0,
            log: true,
            grid: None,
        };
        assert_eq!(p.validate().unwrap_err().field, "low");
        let p = ParamSpec::Int {
            low: 5,
            high: 1,
            log: false,
        };
        assert_eq!(p.validate().unwrap_err().field, "high");
        let p = ParamSpec::Categorical { choices: vec![] };
        assert_eq!(p.validate().unwrap_err().field, "choices");
    }

    proptest! {
        #[test]
        fn float_stays_in_bounds(low in -1e3f64..1e3, width in 0f64..1e3, u in 0f64..1.0, log in any::<bool>()) {
            let low = if log { low.abs() + 1e-6 } else { low };
            let p = ParamSpec::Float { low, high: low + width, log, grid: None };
            let v = p.from_unit(u).as_f64().unwrap();
            prop_assert!(v >= low && v <= low + width, "{v} not in [{low}, {}]", low + width);
        }

        #[test]
        fn int_stays_in_bounds(low in -1000i64..1000, width in 0i64..1000, u in 0f64..1.0, log in any::<bool>()) {
            let low = if log { low.abs() + 1 } else { low };
            let p = ParamSpec::Int { low, high: low + width, log };
            let v = p.from_unit(u).as_i64().unwrap();
            prop_assert!(v >= low && v <= low + width);
        }

        #[test]
        fn log_scale_is_uniform_in_log_space(u in 0f64..1.0) {
            // On a log scale the unit coordinate maps linearly onto log10(value).
            let p = ParamSpec::Float { low: 1e-4, high: 1.0, log: true, grid: None };
            let v = p.from_unit(u).as_f64().unwrap();
            prop_assert!((v.log10() - (-4.0 + 4.0 * u)).abs() < 1e-9);
        }

        #[test]
        fn every_int_is_reachable(low in 0i64..50, width in 0i64..20) {
            let p = ParamSpec::Int { low, high: low + width, log: false };
            let n = (width + 1) as usize;
            let seen: std::collections::BTreeSet<i64> = (0..n)
                .map(|k| p.from_unit((k as f64 + 0.5) / n as f64).as_i64().unwrap())
                .collect();
            prop_assert_eq!(seen.len(), n);
        }
    }
}
