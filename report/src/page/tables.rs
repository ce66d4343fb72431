//! The report's tables: the best trials, one row per setting over its
//! repeats or folds, every trial (filterable by status), and the
//! comparison of several studies.

use std::collections::BTreeMap;

use hps_common::{TrialResult, TrialStatus};
use maud::{html, Markup};

use super::trials::{num, searched, value_text};
use crate::stats::summarize;
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
    html! {
        table.best {
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
    }
}

/// One setting's statistics over its repeats (or, for a k-fold trial, its
/// folds): n, mean, std and the 95 % confidence interval of the mean.
pub struct SettingRow<'a> {
    pub config: u64,
    pub first: &'a TrialResult,
    pub n: usize,
    pub mean: f64,
    pub std: f64,
    pub ci: Option<(f64, f64)>,
    pub over: &'static str,
}

/// The settings of the study with their statistics, best mean first.
/// Settings with a single run and no folds are left out: they have no
/// spread to show.
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
            let objs: Vec<f64> = runs.iter().filter_map(|r| r.objective).collect();
            if runs.len() > 1 {
                let s = summarize(&objs)?;
                return Some(SettingRow {
                    config,
                    first: runs[0],
                    n: s.n,
                    mean: s.mean,
                    std: s.std,
                    ci: s.ci95,
                    over: "repeats",
                });
            }
            // A k-fold trial: its objective is the mean over folds, with
            // the folds' std beside it.
            let r = runs[0];
            let folds = *r.metrics.get("folds")?;
            let std = *r.metrics.get(&format!("{metric}_std"))?;
            let mean = r.objective?;
            let n = folds as usize;
            let ci = crate::stats::t_interval(mean, std, n);
            Some(SettingRow {
                config,
                first: r,
                n,
                mean,
                std,
                ci,
                over: "folds",
            })
        })
        .collect();
    let dir = d.study.objective.direction;
    rows.sort_by(|a, b| dir.cmp(a.mean, b.mean));
    rows
}

pub fn settings(d: &StudyData) -> Markup {
    let rows = setting_rows(d);
    html! {
        @if rows.is_empty() {
            p.empty { "No setting has more than one run yet (set \"repeats\" in the study file, or use folds), so there is no spread to show." }
        } @else {
            table.settings {
                thead { tr {
                    th { "setting" } (param_heads(d)) th { "over" } th { "n" }
                    th { "mean " (d.study.objective.metric) } th { "std" } th { "95 % CI of the mean" }
                } }
                tbody {
                    @for s in &rows {
                        tr {
                            td.num { (s.config) } (param_cells(d, s.first)) td { (s.over) }
                            td.num { (s.n) } td.num { (num(s.mean)) } td.num { (num(s.std)) }
                            td.num { (s.ci.map_or("-".into(), |(lo, hi)| format!("{} – {}", num(lo), num(hi)))) }
                        }
                    }
                }
            }
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

/// §3: the best setting and the budget of each compared study.
pub fn comparison(studies: &[StudyData], names: &[String]) -> Markup {
    html! {
        table.compare {
            thead { tr {
                th { "study" } th { "sampler" } th { "pruner" } th { "finished trials" } th { "complete" }
                th { "epochs trained" } th { "training time (h)" } th { "best" } th { "best trial" } th { "its setting" }
            } }
            tbody {
                @for (d, name) in studies.iter().zip(names) {
                    @let best = d.ranked().into_iter().next();
                    tr {
                        td { (name) } td { (d.study.sampler.name()) }
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
