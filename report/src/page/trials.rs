//! What the figure builders share about trials and parameters: hover text,
//! each parameter's axis and plotted value, colour by a parameter, and the
//! choice of which trials to draw when a study is too big to draw them all.

use hps_common::{ParamSpec, TrialResult, TrialStatus};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::chart::{colormap, palette, Axis, Color, ColorBar};
use crate::StudyData;

/// Tooltip of a trial: its id, status, objective and hyperparameters.
pub fn hover(d: &StudyData, r: &TrialResult) -> String {
    let mut s = format!("{} ({})", r.trial_id, r.status.as_str());
    if let Some(v) = r.objective {
        s.push_str(&format!("\n{} = {}", d.study.objective.metric, num(v)));
    }
    for (k, v) in &r.params {
        if d.study.space.get(k).is_some_and(ParamSpec::is_searched) {
            s.push_str(&format!("\n{k} = {}", value_text(v)));
        }
    }
    if r.attempt > 1 {
        s.push_str(&format!("\nattempt {}", r.attempt));
    }
    s
}

/// A number with 4 significant digits, compact (the page's figures and
/// tables).
pub fn num(v: f64) -> String {
    significant(v, 4)
}

pub use hps_common::format::{significant, value_text, value_text_with};

/// The study's searched parameters, in name order.
pub fn searched(d: &StudyData) -> Vec<(&str, &ParamSpec)> {
    d.study
        .space
        .iter()
        .filter(|(_, s)| s.is_searched())
        .map(|(k, s)| (k.as_str(), s))
        .collect()
}

/// Whether the parameter is searched on a log scale.
pub fn is_log(spec: &ParamSpec) -> bool {
    match spec {
        ParamSpec::Float { log, .. } | ParamSpec::Int { log, .. } => *log,
        ParamSpec::Transform { base, .. } => base.is_some(),
        _ => false,
    }
}

/// The axis a parameter is drawn on: log where it is searched on a log
/// scale, named positions for a categorical.
pub fn param_axis(name: &str, spec: &ParamSpec) -> Axis {
    match spec {
        ParamSpec::Categorical { choices } => {
            Axis::category(name, choices.iter().map(value_text).collect())
        }
        s if is_log(s) => Axis::log(format!("{name} (log scale)")),
        _ => Axis::linear(name),
    }
}

/// The plotted coordinate of a parameter's value: the number itself, or a
/// categorical's index. NaN when missing.
pub fn param_coord(spec: &ParamSpec, v: Option<&Value>) -> f64 {
    let Some(v) = v else { return f64::NAN };
    match spec {
        ParamSpec::Categorical { choices } => choices
            .iter()
            .position(|c| {
                c == v || matches!((c.as_f64(), v.as_f64()), (Some(a), Some(b)) if a == b)
            })
            .map_or(f64::NAN, |i| i as f64),
        _ => match v {
            Value::Bool(b) => f64::from(u8::from(*b)),
            v => v.as_f64().unwrap_or(f64::NAN),
        },
    }
}

/// Colour of a trial when colouring by `param`: its position in the
/// parameter's search range, through the colour map.
pub fn color_by(spec: &ParamSpec, r: &TrialResult, param: &str) -> Color {
    match spec {
        ParamSpec::Categorical { choices } => {
            let i = param_coord(spec, r.params.get(param));
            if i.is_nan() {
                Color(150, 150, 150)
            } else {
                colormap(if choices.len() > 1 {
                    i / (choices.len() - 1) as f64
                } else {
                    0.5
                })
            }
        }
        _ => colormap(
            r.params
                .get(param)
                .and_then(|v| spec.to_unit(v))
                .unwrap_or(f64::NAN),
        ),
    }
}

/// The colour bar of a numeric parameter (None for a categorical, whose
/// legend is its choices).
pub fn colorbar(name: &str, spec: &ParamSpec) -> Option<ColorBar> {
    let (lo, hi) = match spec {
        ParamSpec::Float { low, high, .. } => (*low, *high),
        ParamSpec::Int { low, high, .. } => (*low as f64, *high as f64),
        ParamSpec::Transform { .. } => {
            let a = spec.from_unit(0.0).as_f64()?;
            let b = spec.from_unit(1.0).as_f64()?;
            (a.min(b), a.max(b))
        }
        _ => return None,
    };
    Some(ColorBar {
        label: name.to_string(),
        log: is_log(spec),
        lo,
        hi,
    })
}

/// The colour of a status, the same in every figure.
pub fn status_color(s: TrialStatus) -> Color {
    match s {
        TrialStatus::Complete => palette(0),
        TrialStatus::Pruned => palette(1),
        TrialStatus::Diverged => palette(5),
        TrialStatus::Failed => Color(120, 120, 120),
        TrialStatus::Invalid => Color(180, 180, 180),
    }
}

/// Every status, in the order the page lists them.
pub const STATUSES: [TrialStatus; 5] = [
    TrialStatus::Complete,
    TrialStatus::Pruned,
    TrialStatus::Diverged,
    TrialStatus::Failed,
    TrialStatus::Invalid,
];

/// The CSS classes of a trial's marks: its status, its id, and whether it
/// is among the best 10 or 50 (for the page's filters).
pub fn classes(r: &TrialResult, rank: Option<usize>) -> String {
    let mut c = format!("trial trial-{} status-{}", r.trial_id, r.status.as_str());
    if let Some(k) = rank {
        if k < 10 {
            c.push_str(" top-10");
        }
        if k < 50 {
            c.push_str(" top-50");
        }
    }
    c
}

/// Which of `n` items (ranked best first) to draw when at most `max` fit:
/// the best `max / 2`, and the rest drawn evenly at random from the others
/// (seeded, so a report is reproducible). Returns the chosen indices in
/// increasing order, and a note saying what was left out (None when all fit).
pub fn decimate(n: usize, max: usize, what: &str) -> (Vec<usize>, Option<String>) {
    if n <= max {
        return ((0..n).collect(), None);
    }
    let best = max / 2;
    let mut rest: Vec<usize> = (best..n).collect();
    rest.shuffle(&mut ChaCha8Rng::seed_from_u64(0x5eed));
    let mut chosen: Vec<usize> = (0..best).chain(rest.into_iter().take(max - best)).collect();
    chosen.sort_unstable();
    let note = format!(
        "showing {max} of {n} {what} (the best {best} and {} at random), so the page stays fast; \
         `hps-master export` has them all",
        max - best
    );
    (chosen, Some(note))
}

/// Ranks of the complete trials (0 = best), by trial id.
pub fn ranks(d: &StudyData) -> std::collections::HashMap<&str, usize> {
    d.ranked()
        .iter()
        .enumerate()
        .map(|(i, (r, _))| (r.trial_id.as_str(), i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short() {
        assert_eq!(num(0.23146), "0.2315");
        assert_eq!(num(12.0), "12");
        assert_eq!(num(1.5e-5), "1.5e-5");
        assert_eq!(num(0.001), "0.001");
        assert_eq!(num(1e-4), "0.0001");
        assert_eq!(num(f64::NAN), "-");
    }

    #[test]
    fn decimate_keeps_the_best_and_says_so() {
        let (all, note) = decimate(10, 20, "trials");
        assert_eq!(all.len(), 10);
        assert!(note.is_none());
        let (some, note) = decimate(1000, 100, "trials");
        assert_eq!(some.len(), 100);
        assert!((0..50).all(|i| some.contains(&i)));
        assert!(note.unwrap().contains("showing 100 of 1000 trials"));
    }
}
