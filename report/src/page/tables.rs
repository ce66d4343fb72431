//! The report's tables: the best trials, one row per setting over its
//! repeats or folds, every trial (filterable by status), and the
//! comparison of several studies.

use std::collections::BTreeMap;

use hps_common::{TrialResult, TrialStatus};
use maud::{html, Markup};

use super::budget;
use super::trials::{num, searched, value_text};
use crate::stats::{summarize, welch, Summary, Welch};
use crate::StudyData;

/// At most this many rows in the trial table.
const MAX_ROWS: usize = 2000;

fn param_cells(d: &StudyData, r: &TrialResult) -> Markup {
    html! {
        @for (name, _) in searched(d) {
            td.num { (r.params.get(name).map_or("-".into(), value_text)) }
        }
    }
}

fn param_heads(d: &StudyData) -> Markup {
    html! { @for (name, _) in searched(d) { th { (name) } } }
}

/// The `n` best complete trials.
pub fn best(d: &StudyData, n: usize) -> Markup {
    let ranked = d.ranked();
    let metric = &d.study.objective.metric;
    let test = (metric != "test_error"
        && ranked
            .iter()
            .any(|(r, _)| r.metrics.contains_key("test_error")))
    .then_some("test_error");
    let single = single_runs(d);
    html! {
        table.best {
            caption { (budget::text(d)) }
            thead { tr {
                th { "rank" } th { "trial" } th { (metric) }
                @if let Some(t) = test { th { (t) } }
                (param_heads(d))
                th { "best epoch" } th { "wall time (s)" } th { "worker" }
            } }
            tbody {
                @for (i, (r, v)) in ranked.iter().take(n).enumerate() {
                    tr {
                        td.num { (i + 1) } td { (r.trial_id) } td.num { (num(*v)) }
                        @if let Some(t) = test { td.num { (r.metrics.get(t).map_or("-".into(), |v| num(*v))) } }
                        (param_cells(d, r))
                        td.num { (r.best_epoch.map_or("-".into(), |e| e.to_string())) }
                        td.num { (format!("{:.1}", r.wall_time_s)) }
                        td { (r.worker) }
                    }
                }
            }
        }
        @if single { p.note.single-run { "Each setting ran once (no repeats, no folds): " (SINGLE_RUN) "." } }
    }
}

/// Whether every setting of the study is a single run: repeats 1, no
/// folds, and a trainer with run-to-run noise (an analytic function gives
/// the same value every time).
fn single_runs(d: &StudyData) -> bool {
    let b = budget::of(d);
    let folds = match b.training {
        budget::Training::Cnn { folds, .. } => {
            !matches!(folds, budget::Amount::Fixed(k) if k <= 1.0)
        }
        budget::Training::Function(_) => return false,
        budget::Training::Exec => false,
    };
    d.study.repeats <= 1 && !folds
}

/// The warning beside any conclusion drawn from one run.
pub const SINGLE_RUN: &str = "a single run is not evidence";

/// Below this p-value a difference is called significant.
pub const ALPHA: f64 = 0.05;

/// A p-value as the page writes it: "p = 0.31", "p = 0.042",
/// "p < 0.001".
pub fn p_text(p: f64) -> String {
    if p.is_nan() {
        "p = -".into()
    } else if p < 0.001 {
        "p < 0.001".into()
    } else if p < 0.1 {
        format!("p = {p:.3}")
    } else {
        format!("p = {p:.2}")
    }
}

/// "significant (p = 0.012)" or "not significant (p = 0.31)": the label
/// of a difference with Welch p-value `p`.
pub fn significance(p: f64) -> String {
    let word = if p < ALPHA {
        "significant"
    } else {
        "not significant"
    };
    format!("{word} ({})", p_text(p))
}

/// One setting's statistics over its repeats (or, for a single k-fold
/// trial, its folds): n, mean, std and the 95 % confidence interval of the
/// mean, and its comparison with the best setting.
pub struct SettingRow<'a> {
    /// The setting's number (repeats share it).
    pub config: u64,
    /// Its first complete trial, for the parameter values.
    pub first: &'a TrialResult,
    /// Over the repeats, the folds, or the single run (n = 1).
    pub stats: Summary,
    /// "repeats", "folds" or "single run".
    pub over: &'static str,
    /// Welch's test of this setting's mean minus the best one's; None for
    /// the best itself and where either has n < 2.
    pub against_best: Option<Welch>,
}

/// One setting's summary over its complete trials' objectives: over the
/// repeats when there are several, else over a k-fold trial's folds, else
/// the single run.
fn setting_summary(metric: &str, runs: &[&TrialResult]) -> Option<(Summary, &'static str)> {
    if runs.len() > 1 {
        let objs: Vec<f64> = runs.iter().filter_map(|r| r.objective).collect();
        return Some((summarize(&objs)?, "repeats"));
    }
    let r = runs.first()?;
    let mean = r.objective.filter(|v| v.is_finite())?;
    match fold_summary(r, metric, mean) {
        Some(s) => Some((s, "folds")),
        None => Some((Summary::from_parts(mean, 0.0, 1), "single run")),
    }
}

/// A k-fold trial's summary of `metric` over its folds: `mean` with the
/// `<metric>_std` and `folds` the trial wrote; None for a trial without
/// folds.
pub fn fold_summary(r: &TrialResult, metric: &str, mean: f64) -> Option<Summary> {
    let folds = *r.metrics.get("folds")?;
    let std = *r.metrics.get(&format!("{metric}_std"))?;
    (folds >= 2.0 && folds.is_finite()).then(|| Summary::from_parts(mean, std, folds as usize))
}

/// The settings of the study with their statistics, best mean first, each
/// compared with the best setting that has n ≥ 2.
pub fn setting_rows(d: &StudyData) -> Vec<SettingRow<'_>> {
    let mut by: BTreeMap<u64, Vec<&TrialResult>> = BTreeMap::new();
    for r in d.with_status(TrialStatus::Complete) {
        let config = d.settings.get(&r.trial_id).map_or(u64::MAX, |s| s.config);
        by.entry(config).or_default().push(r);
    }
    let metric = &d.study.objective.metric;
    let mut rows: Vec<SettingRow> = by
        .into_iter()
        .filter_map(|(config, runs)| {
            let (stats, over) = setting_summary(metric, &runs)?;
            Some(SettingRow {
                config,
                first: runs[0],
                stats,
                over,
                against_best: None,
            })
        })
        .collect();
    let dir = d.study.objective.direction;
    rows.sort_by(|a, b| dir.cmp(a.stats.mean, b.stats.mean));
    if let Some(best) = rows.iter().position(|r| r.stats.n >= 2) {
        let reference = rows[best].stats;
        for (i, row) in rows.iter_mut().enumerate() {
            if i != best {
                row.against_best = welch(&row.stats, &reference);
            }
        }
    }
    rows
}

/// The last column of a settings row: how it compares with the best.
fn against_best_text(row: &SettingRow, is_best: bool) -> String {
    if row.stats.n < 2 {
        return SINGLE_RUN.into();
    }
    if is_best {
        return "the best".into();
    }
    row.against_best.map_or("-".into(), |w| significance(w.p))
}

fn interval(ci: Option<(f64, f64)>) -> String {
    ci.map_or("-".into(), |(lo, hi)| format!("{} – {}", num(lo), num(hi)))
}

/// The settings table: each setting's statistics and its comparison with
/// the best, captioned with the budget.
pub fn settings(d: &StudyData) -> Markup {
    let rows = setting_rows(d);
    let best = rows.iter().position(|r| r.stats.n >= 2);
    let budget = budget::text(d);
    html! {
        @if best.is_none() {
            p.empty { "No setting has more than one run yet (set \"repeats\" in the study file, or use folds), so there is no spread to show: " (SINGLE_RUN) "." }
        } @else {
            table.settings {
                caption { (budget) }
                thead { tr {
                    th { "setting" } (param_heads(d)) th { "over" } th { "n" }
                    th { "mean " (d.study.objective.metric) } th { "std" } th { "95 % CI of the mean" }
                    th { "difference from the best (95 % CI)" } th { "against the best (Welch)" }
                } }
                tbody {
                    @for (i, s) in rows.iter().enumerate() {
                        tr {
                            td.num { (s.config) } (param_cells(d, s.first)) td { (s.over) }
                            td.num { (s.stats.n) } td.num { (num(s.stats.mean)) } td.num { (num(s.stats.std)) }
                            td.num { (interval(s.stats.ci95)) }
                            td.num { (s.against_best.map_or("-".into(), |w| format!("{} ({})", num(w.diff), interval(Some(w.ci95))))) }
                            td.verdict { (against_best_text(s, Some(i) == best)) }
                        }
                    }
                }
            }
            p.note { "Each setting's mean is compared with the best mean that has at least two runs by Welch's t-test (unequal variances); "
                "a difference with p ≥ " (ALPHA) " is labelled not significant. The best was picked after seeing these same runs and the "
                "p-values are not corrected for the number of comparisons, so a \"significant\" is a hint, not a proof." }
        }
    }
}

/// Every finished trial, each row classed by its status for the filters.
pub fn trials(d: &StudyData) -> Markup {
    let n = d.results.len();
    html! {
        @if n > MAX_ROWS {
            p.note { "showing the first " (MAX_ROWS) " of " (n) " trials; `hps-master export` has them all" }
        }
        table.trials {
            caption { (budget::text(d)) }
            thead { tr {
                th { "trial" } th { "status" } th { (d.study.objective.metric) } (param_heads(d))
                th { "epochs" } th { "wall time (s)" } th { "worker" } th { "attempt" } th { "note" }
            } }
            tbody {
                @for r in d.results.iter().take(MAX_ROWS) {
                    tr class=(format!("trial status-{}", r.status.as_str())) {
                        td { (r.trial_id) } td { (r.status.as_str()) (if r.collapsed { " (collapsed)" } else { "" }) }
                        td.num { (r.objective.map_or("-".into(), num)) } (param_cells(d, r))
                        td.num { (r.epochs_completed) } td.num { (format!("{:.1}", r.wall_time_s)) }
                        td { (r.worker) } td.num { (r.attempt) }
                        td.err { (r.error.as_deref().map(short).unwrap_or_default()) }
                    }
                }
            }
        }
    }
}

fn short(s: &str) -> String {
    let first = s.lines().next().unwrap_or("");
    if first.chars().count() > 120 {
        format!("{}…", first.chars().take(120).collect::<String>())
    } else {
        first.to_string()
    }
}

/// §3: the best setting and the budget of each compared study; the
/// caption says when the studies' budgets differ.
pub fn comparison(studies: &[StudyData], names: &[String]) -> Markup {
    html! {
        table.compare {
            caption { (budget::comparison(studies, names)) }
            thead { tr {
                th { "study" } th { "budget" } th { "sampler" } th { "pruner" } th { "finished trials" } th { "complete" }
                th { "epochs trained" } th { "training time (h)" } th { "best" } th { "best trial" } th { "its setting" }
            } }
            tbody {
                @for (d, name) in studies.iter().zip(names) {
                    @let best = d.ranked().into_iter().next();
                    tr {
                        td { (name) } td { (budget::of(d).short()) } td { (d.study.sampler.name()) }
                        td { (d.study.pruner.as_ref().map_or("none", |p| p.name())) }
                        td.num { (d.results.len()) }
                        td.num { (d.with_status(TrialStatus::Complete).count()) }
                        td.num { (d.results.iter().map(|r| u64::from(r.epochs_completed)).sum::<u64>()) }
                        td.num { (format!("{:.2}", d.results.iter().map(|r| r.wall_time_s).sum::<f64>() / 3600.0)) }
                        td.num { (best.map_or("-".into(), |(_, v)| num(v))) }
                        td { (best.map_or("-".into(), |(r, _)| r.trial_id.clone())) }
                        td { (best.map_or("-".into(), |(r, _)| r.params.iter().map(|(k, v)| format!("{k}={}", value_text(v))).collect::<Vec<_>>().join(", "))) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p_values_and_labels() {
        assert_eq!(significance(0.3123), "not significant (p = 0.31)");
        assert_eq!(significance(0.0531), "not significant (p = 0.053)");
        assert_eq!(significance(0.012), "significant (p = 0.012)");
        assert_eq!(significance(1e-5), "significant (p < 0.001)");
        assert_eq!(significance(1.0), "not significant (p = 1.00)");
    }
}
