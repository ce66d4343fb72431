//! The study's hypothesis beside what was measured: the effect of each
//! other value of its parameter against the baseline, with its 95 % CI,
//! Welch's p and the verdict (seed 003's hypothesis workflow).

use hps_common::exercise::Hypothesis;
use hps_common::{Direction, TrialResult, TrialStatus};
use maud::{html, Markup};
use serde_json::Value;

use super::budget;
use super::tables::{fold_summary, p_text, SINGLE_RUN};
use super::trials::{num, value_text};
use crate::stats::{effect, summarize, Effect, Summary};
use crate::StudyData;

/// One value of the hypothesis' parameter and what it measured.
pub(crate) struct Compared {
    pub value: Value,
    /// The metric over this value's complete trials (None: no finite one).
    pub stats: Option<Summary>,
    /// Against the baseline; None for the baseline, or where either side
    /// has n < 2.
    pub effect: Option<Effect>,
}

/// A study's hypothesis and its measured effects.
pub(crate) struct Measured<'a> {
    pub hypothesis: &'a Hypothesis,
    /// The metric the effect is measured on.
    pub metric: String,
    pub baseline: Compared,
    /// Every other value of the parameter, in the space's order.
    pub others: Vec<Compared>,
}

/// Whether two parameter values are the same (numbers by value: a grid's
/// `64` and a sampler's `64.0`).
fn same(a: &Value, b: &Value) -> bool {
    a == b || matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y)
}

/// The metric's value in a result: the objective when it is the
/// objective's metric, else the result's metric of that name.
fn metric_value(d: &StudyData, r: &TrialResult, metric: &str) -> Option<f64> {
    let v = if metric == d.study.objective.metric {
        r.objective
    } else {
        r.metrics.get(metric).copied()
    };
    v.filter(|v| v.is_finite())
}

/// The summary of `metric` over the complete trials at `value`: one
/// observation per trial (a k-fold trial's mean when there are repeats),
/// or a single k-fold trial's folds.
fn summary_at(d: &StudyData, param: &str, value: &Value, metric: &str) -> Option<Summary> {
    let runs: Vec<(&TrialResult, f64)> = d
        .with_status(TrialStatus::Complete)
        .filter(|r| r.params.get(param).is_some_and(|v| same(v, value)))
        .filter_map(|r| metric_value(d, r, metric).map(|v| (r, v)))
        .collect();
    match runs.as_slice() {
        [] => None,
        [(r, v)] => Some(fold_summary(r, metric, *v).unwrap_or(Summary::from_parts(*v, 0.0, 1))),
        many => summarize(&many.iter().map(|(_, v)| *v).collect::<Vec<_>>()),
    }
}

/// The study's hypothesis with every compared value's effect; None when
/// the study states no hypothesis or its parameter is no longer in the
/// space.
pub(crate) fn measure(d: &StudyData) -> Option<Measured<'_>> {
    let h = d.study.hypothesis.as_ref()?;
    let spec = d.study.space.get(&h.param)?;
    let base_value = h.baseline_value(spec)?;
    let metric = h
        .metric
        .clone()
        .unwrap_or_else(|| d.study.objective.metric.clone());
    let base = summary_at(d, &h.param, &base_value, &metric);
    let others = spec
        .grid_values()
        .unwrap_or_default()
        .into_iter()
        .filter(|v| !same(v, &base_value))
        .map(|value| {
            let stats = summary_at(d, &h.param, &value, &metric);
            let effect = match (&stats, &base) {
                (Some(s), Some(b)) => effect(s, b, h.expect),
                _ => None,
            };
            Compared {
                value,
                stats,
                effect,
            }
        })
        .collect();
    Some(Measured {
        hypothesis: h,
        metric,
        baseline: Compared {
            value: base_value,
            stats: base,
            effect: None,
        },
        others,
    })
}

/// "−0.012 (−0.02 – −0.004)": an effect and its 95 % CI.
pub(crate) fn effect_text(e: &Effect) -> String {
    let (lo, hi) = e.welch.ci95;
    format!("{} ({} – {})", num(e.welch.diff), num(lo), num(hi))
}

/// The verdict cell: the verdict, or why there is none.
pub(crate) fn verdict_text(c: &Compared, expect_given: bool) -> String {
    match (&c.effect, &c.stats) {
        (Some(e), _) => e.verdict.map_or_else(
            || "no verdict: the hypothesis gives no expected direction".to_string(),
            |v| v.as_str().to_string(),
        ),
        (None, None) => "no complete run yet".into(),
        (None, Some(_)) if !expect_given => SINGLE_RUN.into(),
        (None, Some(_)) => format!("inconclusive: {SINGLE_RUN}"),
    }
}

fn n_text(s: &Option<Summary>) -> String {
    s.map_or("0".into(), |s| s.n.to_string())
}

/// The "Hypothesis" section of a study's report.
pub(crate) fn section(d: &StudyData) -> Option<Markup> {
    let m = measure(d)?;
    let h = m.hypothesis;
    let expect = h.expect.map_or("no expected direction".into(), |e| {
        format!(
            "expected: {} {} than at the baseline",
            m.metric,
            match e {
                hps_common::exercise::Expect::Lower => "lower",
                hps_common::exercise::Expect::Higher => "higher",
            }
        )
    });
    Some(html! {
        blockquote.hypothesis { (h.text) }
        p { "Parameter " code { (h.param) } ", baseline " (value_text(&m.baseline.value))
            " (" (m.metric) " " (m.baseline.stats.map_or("-".into(), |s| num(s.mean))) ", n = " (n_text(&m.baseline.stats)) "); " (expect) "." }
        table.hypothesis {
            caption { (budget::text(d)) }
            thead { tr {
                th { (h.param) } th { "n" } th { "mean " (m.metric) }
                th { "effect against the baseline (95 % CI)" } th { "p (Welch)" } th { "verdict" }
            } }
            tbody {
                @for c in &m.others {
                    tr {
                        td { (value_text(&c.value)) } td.num { (n_text(&c.stats)) }
                        td.num { (c.stats.map_or("-".into(), |s| num(s.mean))) }
                        td.num { (c.effect.as_ref().map_or("-".into(), effect_text)) }
                        td.num { (c.effect.as_ref().map_or("-".into(), |e| p_text(e.welch.p))) }
                        td.verdict { (verdict_text(c, h.expect.is_some())) }
                    }
                }
            }
        }
        p.note { "Effect: the mean " (m.metric) " at the value minus at the baseline, over complete trials (one observation per trial; a single k-fold trial per value counts its folds). "
            "The verdict is supported when the whole 95 % interval lies on the expected side of 0, contradicted when it lies on the other side, inconclusive when it contains 0." }
    })
}

/// The best complete trial over all `studies` when they share an
/// objective: (study index, trial, value).
fn best_overall(studies: &[StudyData]) -> Option<(usize, &TrialResult, f64)> {
    let first = &studies.first()?.study.objective;
    if studies.iter().any(|d| d.study.objective != *first) {
        return None;
    }
    let dir: Direction = first.direction;
    studies
        .iter()
        .enumerate()
        .filter_map(|(i, d)| d.ranked().into_iter().next().map(|(r, v)| (i, r, v)))
        .min_by(|a, b| dir.cmp(a.2, b.2))
}

/// The comparison's hypotheses: one row per compared value of each study
/// that states a hypothesis, and the best model found over all studies.
/// None when no study states one.
pub(crate) fn comparison(studies: &[StudyData], names: &[String]) -> Option<Markup> {
    let measured: Vec<(&String, Measured)> = names
        .iter()
        .zip(studies)
        .filter_map(|(n, d)| measure(d).map(|m| (n, m)))
        .collect();
    if measured.is_empty() {
        return None;
    }
    let best = best_overall(studies);
    Some(html! {
        table.hypotheses {
            caption { (budget::comparison(studies, names)) }
            thead { tr {
                th { "study" } th { "hypothesis" } th { "compared value" }
                th { "effect against the baseline" } th { "95 % CI" } th { "verdict" }
            } }
            tbody {
                @for (name, m) in &measured {
                    @for c in &m.others {
                        tr {
                            td { (name) } td { (m.hypothesis.text) }
                            td { (m.hypothesis.param) " = " (value_text(&c.value)) " vs " (value_text(&m.baseline.value)) }
                            td.num { (c.effect.as_ref().map_or("-".into(), |e| num(e.welch.diff))) }
                            td.num { (c.effect.as_ref().map_or("-".into(), |e| format!("{} – {}", num(e.welch.ci95.0), num(e.welch.ci95.1)))) }
                            td.verdict { (verdict_text(c, m.hypothesis.expect.is_some())) }
                        }
                    }
                }
            }
        }
        @match best {
            Some((i, r, v)) => p.best-overall { "Best model found over all studies: " (names[i]) ", trial " (r.trial_id) ", "
                (studies[i].study.objective.metric) " = " (num(v)) " (" (budget::of(&studies[i]).short()) "), with "
                (r.params.iter().map(|(k, v)| format!("{k}={}", value_text(v))).collect::<Vec<_>>().join(", ")) "." },
            None => p.note { "The studies do not share one objective, so there is no best model over all of them; see each study's best trials." },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::tests::lr_study;
    use crate::stats::Verdict;

    /// One 5-fold trial per value: the folds' mean, std and count are the
    /// observations (the worker writes `folds` and `<metric>_std`).
    #[test]
    fn single_k_fold_trials_use_their_folds() {
        let mut d = lr_study("folds", 5, 1, &[(0.1, 0.30), (0.01, 0.20), (0.001, 0.29)]);
        for r in &mut d.results {
            r.metrics.insert("folds".into(), 5.0);
            r.metrics.insert("val_error_std".into(), 0.01);
        }
        let m = measure(&d).unwrap();
        assert_eq!(m.baseline.stats.unwrap().n, 5);
        let verdicts: Vec<_> = m
            .others
            .iter()
            .map(|c| c.effect.and_then(|e| e.verdict))
            .collect();
        assert_eq!(
            verdicts,
            [Some(Verdict::Supported), Some(Verdict::Inconclusive)]
        );
        // The settings table counts the folds too.
        let rows = super::super::tables::setting_rows(&d);
        assert!(rows.iter().all(|r| r.over == "folds" && r.stats.n == 5));
    }

    /// With repeats of k-fold trials, each trial's mean is one observation.
    #[test]
    fn repeated_k_fold_trials_count_each_trial_once() {
        let runs = [(0.1, 0.30), (0.1, 0.32), (0.01, 0.20), (0.01, 0.22)];
        let mut d = lr_study("rep", 5, 2, &runs);
        for r in &mut d.results {
            r.metrics.insert("folds".into(), 5.0);
            r.metrics.insert("val_error_std".into(), 0.01);
        }
        let m = measure(&d).unwrap();
        assert_eq!(m.baseline.stats.unwrap().n, 2);
        assert_eq!(m.others[0].stats.unwrap().n, 2);
        // No run of 0.001 yet.
        assert!(m.others[1].stats.is_none());
        assert_eq!(verdict_text(&m.others[1], true), "no complete run yet");
    }
}
