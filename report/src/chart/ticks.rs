//! Axis domains, tick positions and tick labels.
//!
//! Domains are kept in "transformed" space: the value itself for linear and
//! category axes, its `log10` for log axes.

use super::{Axis, Scale};

/// A labelled tick at a data value, and unlabelled minor ticks.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ticks {
    pub major: Vec<(f64, String)>,
    pub minor: Vec<f64>,
}

/// How data maps to one pixel coordinate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Map {
    pub log: bool,
    /// Domain in transformed space (`d0 < d1`).
    pub d0: f64,
    pub d1: f64,
    /// Pixel positions of `d0` and `d1`.
    pub p0: f64,
    pub p1: f64,
}

/// Pixel coordinates are clamped this far outside the plot so that wild
/// values do not bloat the file (the clip path hides them anyway).
const PX_SLACK: f64 = 2000.0;

impl Map {
    /// The pixel of `v`; `None` when `v` cannot be drawn (non-finite, or
    /// ≤ 0 on a log axis).
    pub fn px(&self, v: f64) -> Option<f64> {
        let t = if self.log {
            if v.is_nan() || v <= 0.0 {
                return None;
            }
            v.log10()
        } else {
            v
        };
        if !t.is_finite() {
            return None;
        }
        let p = self.p0 + (t - self.d0) / (self.d1 - self.d0) * (self.p1 - self.p0);
        let (a, b) = (self.p0.min(self.p1), self.p0.max(self.p1));
        Some(p.clamp(a - PX_SLACK, b + PX_SLACK))
    }
}

/// Whether `v` can be placed on an axis of this scale.
pub(crate) fn drawable(scale: &Scale, v: f64) -> bool {
    v.is_finite() && (!matches!(scale, Scale::Log) || v > 0.0)
}

/// The axis's domain in transformed space, from its forced range or from
/// the data (with a 4% margin). Always finite with `d0 < d1`.
pub(crate) fn domain(axis: &Axis, values: &[f64]) -> (f64, f64) {
    let log = matches!(axis.scale, Scale::Log);
    let tf = |v: f64| if log { v.log10() } else { v };
    let forced = axis
        .range
        .filter(|&(a, b)| drawable(&axis.scale, a) && drawable(&axis.scale, b));
    if let Some((a, b)) = forced {
        return widen(tf(a.min(b)), tf(a.max(b)), log);
    }
    if let Scale::Category(names) = &axis.scale {
        let top = values
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .fold(-1.0, f64::max);
        let n = (names.len() as f64).max(top.floor() + 1.0).max(1.0);
        return (-0.5, n - 0.5);
    }
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for &v in values.iter().filter(|&&v| drawable(&axis.scale, v)) {
        lo = lo.min(tf(v));
        hi = hi.max(tf(v));
    }
    if lo > hi {
        return (0.0, 1.0);
    }
    let (lo, hi) = widen(lo, hi, log);
    let m = (hi - lo) * 0.04;
    (lo - m, hi + m)
}

/// Turns a degenerate range (`lo == hi`) into a usable one.
fn widen(lo: f64, hi: f64, log: bool) -> (f64, f64) {
    if hi > lo {
        return (lo, hi);
    }
    let half = if log {
        0.5
    } else if lo == 0.0 {
        1.0
    } else {
        lo.abs() * 0.1
    };
    (lo - half, hi + half)
}

/// The ticks of a domain `(d0, d1)` (transformed space) for this scale,
/// aiming at about `target` labelled ticks.
pub(crate) fn ticks(scale: &Scale, d0: f64, d1: f64, target: usize) -> Ticks {
    match scale {
        Scale::Linear => {
            let (values, step) = linear_ticks(d0, d1, target);
            let major = values
                .into_iter()
                .map(|v| (v, format_step(v, step)))
                .collect();
            Ticks {
                major,
                minor: Vec::new(),
            }
        }
        Scale::Log => log_ticks(d0, d1),
        Scale::Category(names) => {
            let first = d0.ceil().max(0.0) as usize;
            let last = d1.floor();
            let major = (first..)
                .take_while(|&i| (i as f64) <= last && i < names.len())
                .map(|i| (i as f64, names[i].clone()))
                .collect();
            Ticks {
                major,
                minor: Vec::new(),
            }
        }
    }
}

/// "Nice" ticks (1, 2 or 5 × 10^k apart) inside `[lo, hi]`, and their step.
/// Empty for non-finite input; `[lo]` when `lo == hi`.
pub(crate) fn linear_ticks(lo: f64, hi: f64, target: usize) -> (Vec<f64>, f64) {
    if !lo.is_finite() || !hi.is_finite() {
        return (Vec::new(), 0.0);
    }
    let (lo, hi) = (lo.min(hi), lo.max(hi));
    if lo == hi {
        return (vec![lo], 0.0);
    }
    let step = nice_step((hi - lo) / target.max(1) as f64);
    // The epsilon keeps 3e-5 / 1e-5 = 2.9999… from losing its last tick.
    let (first, last) = ((lo / step - 1e-9).ceil(), (hi / step + 1e-9).floor());
    if !step.is_normal() || last - first > 1000.0 {
        return (Vec::new(), 0.0);
    }
    let values = (first as i64..=last as i64)
        .map(|k| {
            let v = k as f64 * step;
            if v == 0.0 {
                0.0
            } else {
                v
            }
        })
        .collect();
    (values, step)
}

/// The smallest 1, 2 or 5 × 10^k that is ≥ `raw`.
fn nice_step(raw: f64) -> f64 {
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// Log ticks for a domain in decades (`log10` of the data range).
///
/// Labelled ticks sit at decades (every k-th decade when more than 6 would
/// show) with minor ticks at 2…9 × 10^k when the span is at most 6
/// decades. A span holding fewer than 2 decades falls back to ticks at 1,
/// 2 and 5 × 10^k, or when those are fewer than 2 to nice linear ticks in
/// data space, so a narrow log axis still has labels.
pub(crate) fn log_ticks(d0: f64, d1: f64) -> Ticks {
    if !d0.is_finite() || !d1.is_finite() {
        return Ticks {
            major: Vec::new(),
            minor: Vec::new(),
        };
    }
    let (d0, d1) = (d0.min(d1), d0.max(d1));
    let (first, last) = ((d0 - 1e-9).ceil() as i64, (d1 + 1e-9).floor() as i64);
    if last - first < 1 {
        let (lo, hi) = (10f64.powf(d0), 10f64.powf(d1));
        let steps: Vec<f64> = ((d0.floor() as i64)..=last)
            .flat_map(|k| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(k as i32)))
            .filter(|&v| v >= lo * (1.0 - 1e-9) && v <= hi * (1.0 + 1e-9))
            .collect();
        if steps.len() >= 2 {
            let major = steps.into_iter().map(|v| (v, format_value(v))).collect();
            return Ticks {
                major,
                minor: Vec::new(),
            };
        }
        let (values, step) = linear_ticks(lo, hi, 4);
        let major = values
            .into_iter()
            .filter(|&v| v > 0.0)
            .map(|v| (v, format_step(v, step)))
            .collect();
        return Ticks {
            major,
            minor: Vec::new(),
        };
    }
    let span = last - first;
    let every = (span + 5) / 6;
    let major = (first..=last)
        .filter(|k| (k - first) % every == 0)
        .map(|k| (10f64.powi(k as i32), format_decade(k)))
        .collect();
    let mut minor = Vec::new();
    if every == 1 {
        for k in (d0.floor() as i64)..=last {
            for m in 2..=9 {
                let v = f64::from(m) * 10f64.powi(k as i32);
                let t = v.log10();
                if t >= d0 && t <= d1 {
                    minor.push(v);
                }
            }
        }
    }
    Ticks { major, minor }
}

/// `10^k` written compactly: plain decimals from 0.001 to 1000, `1eK`
/// outside.
pub(crate) fn format_decade(k: i64) -> String {
    match k {
        -3..=-1 => format!("{:.*}", k.unsigned_abs() as usize, 10f64.powi(k as i32)),
        0..=3 => format!("{}", 10i64.pow(k as u32)),
        _ => format!("1e{k}"),
    }
}

/// A tick value on a grid of `step`, with just the decimals the step
/// needs; scientific notation for very large or small values.
pub(crate) fn format_step(v: f64, step: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    if step == 0.0 || !step.is_finite() {
        return format_value(v);
    }
    let step_exp = step.log10().floor() as i32;
    if v.abs() >= 1e6 || step < 1e-4 {
        let v_exp = v.abs().log10().floor() as i32;
        let digits = (v_exp - step_exp).clamp(0, 6) as usize;
        return trim_exp(format!("{v:.digits$e}"));
    }
    let decimals = (-step_exp).max(0) as usize;
    format!("{v:.decimals$}")
}

/// Any value with 3 significant digits, compactly (colour-bar ends).
pub(crate) fn format_value(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v == 0.0 {
        return "0".to_string();
    }
    let e = v.abs().log10().floor() as i32;
    if !(-3..6).contains(&e) {
        return trim_exp(format!("{v:.2e}"));
    }
    let decimals = (2 - e).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// `2.50e-5` -> `2.5e-5`, `1.00e6` -> `1e6`.
fn trim_exp(s: String) -> String {
    match s.split_once('e') {
        Some((m, e)) if m.contains('.') => {
            format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.'))
        }
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(t: &Ticks) -> Vec<&str> {
        t.major.iter().map(|(_, s)| s.as_str()).collect()
    }

    #[test]
    fn linear_ticks_are_nice() {
        let (v, step) = linear_ticks(0.0, 1.0, 5);
        assert_eq!(step, 0.2);
        assert_eq!(v.len(), 6);
        let t = ticks(&Scale::Linear, 0.03, 0.97, 5);
        assert_eq!(labels(&t), ["0.2", "0.4", "0.6", "0.8"]);
        let t = ticks(&Scale::Linear, -12.0, 130.0, 5);
        assert_eq!(labels(&t), ["0", "50", "100"]);
        let t = ticks(&Scale::Linear, 0.0, 3.0e6, 3);
        assert_eq!(labels(&t), ["0", "1e6", "2e6", "3e6"]);
        let t = ticks(&Scale::Linear, 0.0, 3.0e-5, 3);
        assert_eq!(labels(&t), ["0", "1e-5", "2e-5", "3e-5"]);
    }

    #[test]
    fn linear_ticks_degenerate_and_nan() {
        assert_eq!(linear_ticks(2.0, 2.0, 5).0, vec![2.0]);
        assert!(linear_ticks(f64::NAN, 1.0, 5).0.is_empty());
        assert!(linear_ticks(0.0, f64::INFINITY, 5).0.is_empty());
        // Reversed bounds are accepted.
        assert_eq!(linear_ticks(1.0, 0.0, 2).0, vec![0.0, 0.5, 1.0]);
    }

    #[test]
    fn log_ticks_at_decades_with_minors() {
        let t = log_ticks(-4.0, 1.0);
        assert_eq!(labels(&t), ["1e-4", "0.001", "0.01", "0.1", "1", "10"]);
        assert_eq!(t.minor.len(), 5 * 8);
        // A wide span labels every other decade and drops the minors.
        let t = log_ticks(-10.0, 2.0);
        assert_eq!(
            labels(&t),
            ["1e-10", "1e-8", "1e-6", "1e-4", "0.01", "1", "100"]
        );
        assert!(t.minor.is_empty());
    }

    #[test]
    fn narrow_log_axis_falls_back_to_linear_labels() {
        let t = log_ticks(16f64.log10(), 512f64.log10());
        assert_eq!(labels(&t), ["20", "50", "100", "200", "500"]);
        let t = log_ticks(2.5f64.log10(), 8f64.log10());
        assert_eq!(labels(&t), ["4", "6", "8"]);
        assert!(log_ticks(f64::NAN, 1.0).major.is_empty());
    }

    #[test]
    fn domains_fit_force_and_widen() {
        let lin = Axis::linear("x");
        let (a, b) = domain(&lin, &[0.0, 10.0, f64::NAN]);
        assert!(a < 0.0 && b > 10.0 && b < 11.0);
        assert_eq!(domain(&lin, &[]), (0.0, 1.0));
        let (a, b) = domain(&lin, &[5.0, 5.0]);
        assert!(a < 5.0 && b > 5.0);
        let (a, b) = domain(&lin, &[0.0]);
        assert!(a < 0.0 && b > 0.0);

        let mut log = Axis::log("y");
        let (a, b) = domain(&log, &[-1.0, 0.0, 0.01, 100.0]);
        assert!(a < -2.0 && b > 2.0);
        log.range = Some((1e-3, 1.0));
        assert_eq!(domain(&log, &[1e9]), (-3.0, 0.0));
        // A forced range that the scale cannot show is ignored.
        log.range = Some((-1.0, 1.0));
        let (a, b) = domain(&log, &[10.0]);
        assert!(a < 1.0 && b > 1.0);

        let cat = Axis::category("w", vec!["a".into(), "b".into()]);
        assert_eq!(domain(&cat, &[]), (-0.5, 1.5));
        assert_eq!(domain(&cat, &[3.0]), (-0.5, 3.5));
    }

    #[test]
    fn map_skips_undrawable_values() {
        let m = Map {
            log: true,
            d0: 0.0,
            d1: 2.0,
            p0: 100.0,
            p1: 0.0,
        };
        assert_eq!(m.px(10.0), Some(50.0));
        assert_eq!(m.px(0.0), None);
        assert_eq!(m.px(-1.0), None);
        assert_eq!(m.px(f64::NAN), None);
        assert_eq!(m.px(1e300), Some(-PX_SLACK));
    }

    #[test]
    fn value_formatting() {
        assert_eq!(format_value(0.00123), "0.00123");
        assert_eq!(format_value(1.5e-5), "1.5e-5");
        assert_eq!(format_value(12345.0), "12345");
        assert_eq!(format_value(2.0), "2");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_decade(-3), "0.001");
        assert_eq!(format_decade(3), "1000");
    }
}
