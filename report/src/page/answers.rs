//! The answers section: for a study whose study file names the seed
//! `exercise` it reproduces, the report opens with what that exercise asks,
//! one subsection per question, each answered by figures and tables
//! computed from the study's data. The prose of the answer is the user's;
//! where the seed asks "why", the section shows the evidence.
//!
//! The numbers come from [`crate::stats::diagnose`]; the figures are the
//! page's own builders (learning curves, reshuffle, slices, final metrics)
//! under `answers-` ids.

use hps_common::arch::CLASSES;
use hps_common::cnn::CnnHyper;
use hps_common::exercise::Exercise;
use hps_common::{EpochStat, TrialResult, TrialStatus};
use maud::{html, Markup};
use serde_json::Value;

use super::curves::{self, curves_of, groups_of, Group, Quantity, EPOCH, QUANTITIES, TIME};
use super::trials::{num, searched, value_text};
use super::{history, params, put, tables, Rendered};
use crate::chart::{Figure, Mark, Point, Series};
use crate::stats::diagnose::{self, Behaviour, Flag};
use crate::stats::summarize;
use crate::StudyData;

/// Where the list of run-to-run randomness lives, written as a path (a
/// link relative to the report file would break when the file moves).
pub const RANDOMNESS_DOC: &str = "docs/randomness.md";
/// Scenario 4's epoch budget and time budget.
const S4_EPOCHS: u32 = 50;
const S4_SECONDS: f64 = 10.0;

const TRAIN_LOSS: Quantity = QUANTITIES[0];
const VAL_LOSS: Quantity = QUANTITIES[1];
const VAL_ERROR: Quantity = QUANTITIES[2];
const TRAIN_ERROR: Quantity = (
    "train-error",
    "Training error",
    "training error (fraction, over the epoch's batches)",
    false,
    |e| e.train_error.unwrap_or(f64::NAN),
);
const FIRST_WEIGHT: Quantity = (
    "first-abs-weight",
    "First layer's mean |weight|",
    "mean |weight| of the first layer",
    false,
    |e| {
        e.instruments
            .as_ref()
            .and_then(|i| i.first_abs_weight)
            .unwrap_or(f64::NAN)
    },
);
const FIRST_GRAD: Quantity = (
    "first-abs-grad",
    "First layer's mean |gradient|",
    "mean |gradient| of the first layer",
    true,
    |e| {
        e.instruments
            .as_ref()
            .and_then(|i| i.first_abs_grad)
            .unwrap_or(f64::NAN)
    },
);

/// The figures of the section go to the page's list under `answers-` ids.
struct Ctx<'a> {
    d: &'a StudyData,
    prefix: &'a str,
    figs: &'a mut Vec<Rendered>,
    /// The parameter the section's curves are coloured by.
    color: Option<String>,
    /// The study's budget, stated on every figure.
    budget: String,
}

impl Ctx<'_> {
    fn fig(&mut self, mut f: Figure, class: &str) -> Markup {
        f.id = format!("answers-{}", f.id);
        put(self.figs, self.prefix, &self.budget, f, class)
    }

    fn figs(&mut self, fs: Vec<Figure>, class: &str) -> Markup {
        let inner: Vec<Markup> = fs.into_iter().map(|f| self.fig(f, class)).collect();
        html! { div.figs { @for m in &inner { (m) } } }
    }

    fn curves(&mut self, quantities: &[Quantity], along: &[curves::Along]) -> Markup {
        let fs = curves_of(self.d, self.color.as_deref(), quantities, along);
        self.figs(fs, "curves")
    }
}

/// The answers section of a study with an `exercise`; None without one.
pub(crate) fn answers(d: &StudyData, prefix: &str, figs: &mut Vec<Rendered>) -> Option<Markup> {
    let ex = d.study.exercise?;
    let mut c = Ctx {
        d,
        prefix,
        figs,
        color: color_param(d, key_params(ex)),
        budget: super::budget::text(d),
    };
    let body = match ex {
        Exercise::S1 => s1(&mut c),
        Exercise::S2 => s2(&mut c),
        Exercise::S3 => s3(&mut c),
        Exercise::S4 => s4(&mut c),
        Exercise::S5 => s5(&mut c),
        Exercise::WeightDecay | Exercise::Dropout => regularisation(&mut c, ex),
        Exercise::EarlyStopping => early_stopping(&mut c),
        Exercise::BaseModel => base_model(d),
        Exercise::Hypothesis => hypothesis(d),
        Exercise::Debugging => debugging(d),
    };
    Some(html! {
        div.part id=(format!("{prefix}part-answers")) {
            h3 { "What " (ex.source()) " asks" }
            p.note { "Each question of the exercise with the figures and numbers that answer it, computed from this study's results. The explanation is yours to write; where the exercise asks why, this shows the evidence." }
            (body)
        }
    })
}

/// The parameters an exercise varies, the first searched one colours its curves.
fn key_params(ex: Exercise) -> &'static [&'static str] {
    match ex {
        Exercise::S1 | Exercise::S2 | Exercise::EarlyStopping | Exercise::BaseModel => &["lr"],
        Exercise::S3 => &["momentum", "lr"],
        Exercise::S4 => &["nf"],
        Exercise::WeightDecay => &["weight_decay"],
        Exercise::Dropout => &["dropout"],
        _ => &[],
    }
}

fn color_param(d: &StudyData, want: &[&str]) -> Option<String> {
    let params = searched(d);
    want.iter()
        .find(|w| params.iter().any(|(n, _)| n == *w))
        .map(|w| w.to_string())
        .or_else(|| params.first().map(|(n, _)| n.to_string()))
}

fn question(q: &str, body: Markup) -> Markup {
    html! { div.question { h4 { (q) } (body) } }
}

/// A setting's searched parameters as text: `lr=0.1, batch_size=20`.
fn setting_text(d: &StudyData, r: &TrialResult) -> String {
    let s: Vec<String> = searched(d)
        .iter()
        .map(|(n, _)| format!("{n}={}", r.params.get(*n).map_or("-".into(), value_text)))
        .collect();
    if s.is_empty() {
        r.trial_id.clone()
    } else {
        s.join(", ")
    }
}

/// The settings of every finished result, in the order of their first
/// searched parameter's value (then config).
fn settings(d: &StudyData) -> Vec<Group<'_>> {
    let mut g = groups_of(d, d.results.iter());
    if let Some((name, spec)) = searched(d).first().copied() {
        let key = |g: &Group| super::trials::param_coord(spec, g.runs[0].params.get(name));
        g.sort_by(|a, b| key(a).total_cmp(&key(b)).then(a.config.cmp(&b.config)));
    }
    g
}

fn behaviour(r: &TrialResult) -> Option<Behaviour> {
    diagnose::classify(&r.curve, r.status == TrialStatus::Diverged, CLASSES)
}

/// "learns ×2, collapsed to chance ×1".
fn tally(labels: &[Behaviour]) -> String {
    let parts: Vec<String> = Behaviour::ALL
        .iter()
        .filter_map(|b| {
            let n = labels.iter().filter(|l| *l == b).count();
            (n > 0).then(|| format!("{} ×{n}", b.label()))
        })
        .collect();
    if parts.is_empty() {
        "no curve".into()
    } else {
        parts.join(", ")
    }
}

fn mean_of(runs: &[&TrialResult], get: impl Fn(&TrialResult) -> Option<f64>) -> String {
    let v: Vec<f64> = runs.iter().filter_map(|r| get(r)).collect();
    summarize(&v).map_or("-".into(), |s| num(s.mean))
}

/// Scenario 1's table: each setting's behaviour, with the evidence.
fn behaviour_table(d: &StudyData) -> Markup {
    let groups = settings(d);
    html! {
        table.behaviour {
            thead { tr {
                th { "setting" } th { "runs" } th { "behaviour" } th { "first train loss" }
                th { "last train loss" } th { "last val error" } th { "best val error" }
            } }
            tbody {
                @for g in &groups {
                    @let labels: Vec<Behaviour> = g.runs.iter().filter_map(|r| behaviour(r)).collect();
                    tr {
                        td { (setting_text(d, g.runs[0])) } td.num { (g.runs.len()) } td { (tally(&labels)) }
                        td.num { (mean_of(&g.runs, |r| r.curve.first().map(|e| e.train_loss))) }
                        td.num { (mean_of(&g.runs, |r| r.curve.last().map(|e| e.train_loss))) }
                        td.num { (mean_of(&g.runs, |r| r.curve.last().map(|e| e.val_error))) }
                        td.num { (mean_of(&g.runs, |r| r.curve.iter().map(|e| e.val_error).filter(|v| v.is_finite()).reduce(f64::min))) }
                    }
                }
            }
        }
        p.note {
            "Rules (means over the runs): diverged = a loss became non-finite or the last training loss exceeds "
            (diagnose::EXPLODED) " × ln " (CLASSES) "; collapsed to chance = last validation error ≥ "
            (num(diagnose::chance_error(CLASSES) - diagnose::CHANCE_TOLERANCE / CLASSES as f64))
            " (chance is 1 − 1/" (CLASSES) " = " (num(diagnose::chance_error(CLASSES))) "); plateau = the training loss fell by less than "
            (diagnose::PLATEAU_DROP * 100.0) " % of its first epoch's value; otherwise learns."
        }
    }
}

fn s1(c: &mut Ctx) -> Markup {
    let d = c.d;
    let three = c.curves(&QUANTITIES, &[EPOCH]);
    html! {
        (question("Three plots of all runs: training loss, validation loss and validation error against epochs", html! {
            p { "One line per run; the runs of each learning rate as their mean with a ± one std band (tick \"single runs\" above to see each run)." }
            (three)
        }))
        (question("What happens at each learning rate, in particular at LR = 0.001 and LR = 2?", behaviour_table(d)))
        (question("All sources of run-to-run randomness", randomness()))
    }
}

/// The summary of docs/randomness.md.
fn randomness() -> Markup {
    html! {
        p { "Runs of one setting differ only in their training seed (" code { "seed + repeat" } "). From it the cnn worker derives independent ChaCha8 streams for:" }
        ul {
            li { "the initial weights (stream 1, drawn once);" }
            li { "the order of the training examples in each epoch (stream 2 with the epoch);" }
            li { "the dropout masks of each epoch (stream 3), when dropout > 0;" }
            li { "the augmentation draws (shifts, flips, rotations) of each batch (stream 4), when augmentation is on." }
        }
        p { "Deterministic given the seed: the train/validation/test split and the k-fold assignment (contiguous), evaluation, and the CPU arithmetic (fixed reduction order, independent of the thread count), so on the CPU a seed gives bit-identical curves. Not deterministic: wall-clock times (and so where a time limit stops training), and GPU kernels, whose reductions may run in any order." }
        p.note { "The full list, with which stream drives what: " code { (RANDOMNESS_DOC) } " in the hps sources." }
    }
}

fn hyper(d: &StudyData, r: &TrialResult) -> Option<CnnHyper> {
    match &d.study.trainer {
        hps_common::TrainerSpec::Cnn { defaults, .. } => defaults.with_params(&r.params).ok(),
        _ => None,
    }
}

/// Seconds per epoch of a run: the worker's own `epoch_time_s` (full epochs
/// only), else read from its curve.
fn epoch_seconds(r: &TrialResult) -> Option<f64> {
    r.metrics
        .get("epoch_time_s")
        .copied()
        .filter(|v| v.is_finite())
        .or_else(|| diagnose::time_per_epoch(&r.curve))
}

fn s2(c: &mut Ctx) -> Markup {
    let d = c.d;
    let curves = c.curves(&[TRAIN_LOSS], &[EPOCH, TIME]);
    // Per batch size: steps per epoch and the mean measured time per epoch.
    let mut by: std::collections::BTreeMap<usize, (usize, Vec<f64>)> = Default::default();
    for r in &d.results {
        let (Some(h), Some(s)) = (hyper(d, r), epoch_seconds(r)) else {
            continue;
        };
        let steps = diagnose::steps_per_epoch(h.train_size, h.batch_size);
        by.entry(h.batch_size).or_insert((steps, vec![])).1.push(s);
    }
    let items: Vec<(usize, usize, f64)> = by
        .iter()
        .filter_map(|(b, (steps, v))| Some((*b, *steps, summarize(v)?.mean)))
        .collect();
    let timings = diagnose::timings(&items);
    html! {
        (question("The 9 curves against epochs and against training time", curves))
        (question("SGD steps per epoch, and time per epoch against the naive expectation", html! {
            @if timings.is_empty() { p.empty { "No run of this study recorded its batch size and time per epoch." } }
            @else {
                table.timing {
                    thead { tr {
                        th { "batch size" } th { "steps per epoch" } th { "measured s per epoch (mean)" }
                        th { "measured ratio" } th { "naive ratio (steps)" } th { "ms per step" }
                    } }
                    tbody { @for t in &timings { tr {
                        td.num { (t.batch) } td.num { (t.steps) } td.num { (num(t.seconds)) }
                        td.num { (num(t.measured_ratio)) "×" } td.num { (num(t.naive_ratio)) "×" }
                        td.num { (num(1000.0 * t.seconds / t.steps.max(1) as f64)) }
                    } } }
                }
                p.note { "Ratios are to the largest batch. Steps per epoch = ceil(training examples / batch size). The times are this machine's (training only, evaluation excluded), averaged over every run with that batch size." }
            }
        }))
    }
}

/// The value of `name` in a result, as text.
fn param(r: &TrialResult, name: &str) -> String {
    r.params.get(name).map_or("-".into(), value_text)
}

fn s3(c: &mut Ctx) -> Markup {
    let d = c.d;
    let curves = c.curves(&[TRAIN_LOSS, VAL_ERROR], &[EPOCH]);
    let metric = &d.study.objective.metric;
    let items: Vec<(String, String, f64)> = settings(d)
        .iter()
        .map(|g| {
            (
                param(g.runs[0], "momentum"),
                param(g.runs[0], "lr"),
                g.score,
            )
        })
        .collect();
    let dir = d.study.objective.direction;
    let best = diagnose::best_per_group(&items, |a, b| dir.cmp(a, b));
    html! {
        (question("The 9 curves: training loss against epochs", curves))
        (question("The best learning rate for each momentum", html! {
            table.best-per {
                thead { tr { th { "momentum" } th { "best lr" } th { "mean " (metric) } } }
                tbody { @for (m, lr, v) in &best { tr { td.num { (m) } td.num { (lr) } td.num { (num(*v)) } } } }
            }
            p.note { "By the mean " (metric) " of each setting's complete runs." }
        }))
    }
}

fn s4(c: &mut Ctx) -> Markup {
    let d = c.d;
    let by_epoch = c.curves(&[TRAIN_LOSS], &[EPOCH, TIME]);
    let error_time = c.curves(&[VAL_ERROR], &[TIME]);
    let budget = d.study.budget.epochs.min(S4_EPOCHS);
    let groups = settings(d);
    let read = |f: &dyn Fn(&[EpochStat]) -> Option<&EpochStat>| -> Vec<(String, f64)> {
        groups
            .iter()
            .filter_map(|g| {
                let v: Vec<f64> = g
                    .runs
                    .iter()
                    .filter_map(|r| f(&r.curve).map(|e| e.val_error))
                    .collect();
                Some((setting_text(d, g.runs[0]), summarize(&v)?.mean))
            })
            .collect()
    };
    let at_budget = read(&|c| diagnose::at_epoch(c, budget));
    let in_time = read(&|c| diagnose::within_time(c, S4_SECONDS));
    let unbound = d
        .results
        .iter()
        .all(|r| r.curve.last().is_none_or(|e| e.elapsed_s <= S4_SECONDS));
    let min = |v: &[(String, f64)]| {
        diagnose::best_per_group(
            &v.iter()
                .map(|(k, e)| ((), k.clone(), *e))
                .collect::<Vec<_>>(),
            |a, b| a.total_cmp(&b),
        )
        .into_iter()
        .next()
        .map(|(_, k, e)| (k, e))
    };
    let label = if budget == S4_EPOCHS {
        format!("after {S4_EPOCHS} epochs")
    } else {
        format!("after {budget} epochs: the study's budget, a different budget from the seed's {S4_EPOCHS}")
    };
    html! {
        (question("Training loss against epochs and against training time", by_epoch))
        (question(&format!("The best number of filters if trained for {S4_EPOCHS} epochs"), budget_answer(&at_budget, min(&at_budget), &label)))
        (question(&format!("The best number of filters within a {S4_SECONDS} s budget"), budget_answer(&in_time, min(&in_time),
            &format!("at the last epoch that ended within {S4_SECONDS} s of training, on this machine (settings whose first epoch took longer are left out)"))))
        @if unbound { p.note { "Every run finished within " (S4_SECONDS) " s of training, so this budget did not bind: the answer equals the one at the study's epoch budget." } }
        (question("Validation error against training time", error_time))
    }
}

fn budget_answer(rows: &[(String, f64)], best: Option<(String, f64)>, label: &str) -> Markup {
    html! {
        @match best {
            Some((k, e)) => p { "Best " (label) ": " strong { (k) } " (validation error " (num(e)) ")." },
            None => p.empty { "No run has an epoch within this budget." },
        }
        table.budget {
            thead { tr { th { "setting" } th { "validation error (mean over runs)" } } }
            tbody { @for (k, e) in rows { tr { td { (k) } td.num { (num(*e)) } } } }
        }
    }
}

fn s5(c: &mut Ctx) -> Markup {
    let d = c.d;
    let reshuffle = c.fig(history::reshuffle_figure(d), "");
    let slices = c.figs(params::slices(d), "");
    let labels: Vec<Behaviour> = d.results.iter().filter_map(behaviour).collect();
    let share = diagnose::broken_share(&labels);
    html! {
        (question("Simulated runs of random search: the best validation error so far against evaluations", html! { div.figs { (reshuffle) } }))
        (question("Which settings lead to better validation errors, one hyperparameter at a time", slices))
        (question("The best settings", tables::best(d, 10)))
        (question("How many settings diverged or collapsed", html! {
            @match share {
                Some(s) => p { strong { (num(100.0 * s)) " %" } " of the " (labels.len()) " judged runs diverged or collapsed to chance: " (tally(&labels)) "." },
                None => p.empty { "No run has a curve to judge yet." },
            }
            p.note { "Judged by the same rules as Scenario 1 (see docs/report.md, \"The answers section\")." }
        }))
    }
}

fn regularisation(c: &mut Ctx, ex: Exercise) -> Markup {
    let d = c.d;
    let p = c.color.clone().unwrap_or_default();
    let has_train_error = d
        .results
        .iter()
        .any(|r| r.curve.iter().any(|e| e.train_error.is_some()));
    let has_first = d.results.iter().any(|r| {
        r.curve.iter().any(|e| {
            e.instruments
                .as_ref()
                .is_some_and(|i| i.first_abs_weight.is_some())
        })
    });
    let mut qs = vec![TRAIN_LOSS, VAL_LOSS, VAL_ERROR];
    if has_train_error {
        qs.push(TRAIN_ERROR);
    }
    let curves = c.curves(&qs, &[EPOCH]);
    let finals: Vec<Figure> = params::final_metrics(d)
        .into_iter()
        .filter(|f| f.id.ends_with(&format!("-{p}")))
        .collect();
    let finals = c.figs(finals, "");
    let first = has_first.then(|| c.curves(&[FIRST_WEIGHT, FIRST_GRAD], &[EPOCH]));
    let what = if ex == Exercise::Dropout {
        "dropout"
    } else {
        "weight decay"
    };
    html! {
        (question(&format!("Learning curves over {what}"), html! { (curves) (finals) }))
        (question("The overfitting gap: training accuracy minus validation accuracy", gap_table(d)))
        (question("The first layer's mean |weight| and mean |gradient| over epochs", html! {
            @match first {
                Some(m) => (m),
                None => p.empty { "first-layer weights not recorded (older worker)" },
            }
        }))
    }
}

fn gap_table(d: &StudyData) -> Markup {
    let groups = settings(d);
    html! {
        table.gap {
            thead { tr { th { "setting" } th { "epoch" } th { "train accuracy" } th { "validation accuracy" } th { "gap" } } }
            tbody {
                @for g in &groups { @for r in &g.runs {
                    @if let Some(e) = r.curve.last() {
                        tr {
                            td { (setting_text(d, r)) } td.num { (e.epoch) }
                            @match diagnose::overfitting_gap(e) {
                                Some(gap) => {
                                    td.num { (num(1.0 - e.train_error.unwrap_or(f64::NAN))) }
                                    td.num { (num(1.0 - e.val_error)) } td.num { (num(gap)) }
                                }
                                None => { td colspan="3" { "train accuracy not recorded (older worker)" } }
                            }
                        }
                    }
                } }
            }
        }
        p.note { "At each run's last epoch, as the seed's table. Training accuracy is measured over the epoch's batches while the weights move (with dropout on), validation accuracy after the epoch." }
    }
}

fn early_stopping(c: &mut Ctx) -> Markup {
    let d = c.d;
    let mut figs = curves_of(d, c.color.as_deref(), &[VAL_LOSS, TRAIN_LOSS], &[EPOCH]);
    if let Some(f) = figs.first_mut() {
        mark_best_epochs(d, f);
    }
    let curves = c.figs(figs, "curves");
    let metric = |r: &TrialResult, k: &str| r.metrics.get(k).map_or("-".into(), |v| num(*v));
    html! {
        (question("The curves, with each run's best epoch marked", curves))
        (question("The best epoch, and the test metric there", html! {
            table.early {
                thead { tr {
                    th { "setting" } th { "trial" } th { "best epoch" } th { "epochs run" }
                    th { "val loss at best" } th { "test loss at best" } th { "val error at best" } th { "test error at best" } th { "last val loss" }
                } }
                tbody { @for g in settings(d) { @for r in &g.runs { tr {
                    td { (setting_text(d, r)) } td { (r.trial_id) }
                    td.num { (r.best_epoch.map_or("-".into(), |e| e.to_string())) } td.num { (r.epochs_completed) }
                    td.num { (metric(r, "val_loss")) } td.num { (metric(r, "test_loss")) }
                    td.num { (metric(r, "val_error")) } td.num { (metric(r, "test_error")) } td.num { (metric(r, "last_val_loss")) }
                } } } }
            }
            p { strong { "The validation loss at the best epoch is optimistically biased:" } " the same validation set chose the epoch, so it is the minimum of a noisy curve. The test metric at that epoch, beside it, was not used for any choice; compare runs with and without early stopping on it, not on the validation loss." }
        }))
    }
}

/// Marks each run's best epoch on a validation-loss-against-epoch figure.
fn mark_best_epochs(d: &StudyData, f: &mut Figure) {
    let points: Vec<Point> = d
        .results
        .iter()
        .filter_map(|r| {
            let e = r.curve.iter().find(|e| Some(e.epoch) == r.best_epoch)?;
            Some(Point {
                x: f64::from(e.epoch),
                y: e.val_loss,
                hover: Some(format!(
                    "{} best epoch {}\n{}",
                    r.trial_id,
                    e.epoch,
                    setting_text(d, r)
                )),
                color: None,
            })
        })
        .collect();
    if points.is_empty() {
        return;
    }
    f.series.push(Series {
        name: "best epoch".into(),
        legend: true,
        color: crate::chart::Color(0, 0, 0),
        mark: Mark::Points {
            points,
            radius: 4.0,
            cross: false,
        },
        hover: None,
        class: "best-epoch".into(),
    });
}

fn base_model(d: &StudyData) -> Markup {
    let rows = tables::setting_rows(d);
    let names = searched(d);
    let has = |p: &str| names.iter().any(|(n, _)| *n == p);
    if !(has("lr") && has("batch_size")) || rows.is_empty() {
        return question(
            "Learning rate × batch size, cross-validated",
            tables::settings(d),
        );
    }
    let mut lrs: Vec<&Value> = Vec::new();
    let mut batches: Vec<&Value> = Vec::new();
    for r in &rows {
        let (Some(l), Some(b)) = (r.first.params.get("lr"), r.first.params.get("batch_size"))
        else {
            continue;
        };
        if !lrs.contains(&l) {
            lrs.push(l);
        }
        if !batches.contains(&b) {
            batches.push(b);
        }
    }
    let key = |v: &&Value| v.as_f64().unwrap_or(f64::NAN);
    lrs.sort_by(|a, b| key(a).total_cmp(&key(b)));
    batches.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let cell = |l: &Value, b: &Value| {
        rows.iter()
            .find(|r| {
                r.first.params.get("lr") == Some(l) && r.first.params.get("batch_size") == Some(b)
            })
            .map_or("-".into(), |r| {
                let ci = r.stats.ci95.map_or(String::new(), |(lo, hi)| {
                    format!(" [{} – {}]", num(lo), num(hi))
                });
                format!("{}{ci} (n = {} {})", num(r.stats.mean), r.stats.n, r.over)
            })
    };
    let metric = &d.study.objective.metric;
    html! {
        (question("Learning rate × batch size, cross-validated", html! {
            table.grid {
                thead { tr { th { "lr \\ batch size" } @for b in &batches { th { (value_text(b)) } } } }
                tbody { @for l in &lrs { tr { th { (value_text(l)) } @for b in &batches { td.num { (cell(l, b)) } } } } }
            }
            p.note { "Each cell: mean " (metric) " over the folds (or repeats), its 95 % confidence interval, and n." }
        }))
        (question("The base model", tables::best(d, 1)))
    }
}

fn hypothesis(d: &StudyData) -> Markup {
    html! {
        (question("The hypothesis, its measured effect and verdict", html! {
            @match &d.study.hypothesis {
                Some(h) => p { "“" (h.text) "” — the effect of " code { (h.param) } " with its confidence interval is in the settings and hypothesis tables below." },
                None => p.empty { "The study file states no hypothesis." },
            }
        }))
        (question("The best model found", tables::best(d, 1)))
    }
}

fn debugging(d: &StudyData) -> Markup {
    let best = d
        .results
        .iter()
        .filter_map(|r| r.curve.last().map(|e| e.val_error))
        .filter(|v| v.is_finite())
        .fold(f64::INFINITY, f64::min);
    html! {
        (question("What the instruments show for each run", html! {
            table.flags {
                thead { tr { th { "trial" } th { "setting" } th { "status" } th { "last val error" } th { "flags" } } }
                tbody { @for r in &d.results {
                    @let flags: Vec<Flag> = diagnose::flags(&r.curve, best);
                    tr {
                        td { (r.trial_id) } td { (setting_text(d, r)) } td { (r.status.as_str()) }
                        td.num { (r.curve.last().map_or("-".into(), |e| num(e.val_error))) }
                        td { @if flags.is_empty() { "none" } @else { (flags.iter().map(|f| f.label()).collect::<Vec<_>>().join("; ")) } }
                    }
                } }
            }
            p.note {
                "Flags: the learning rate instrument still grows in the second half of training; the mean update/weight ratio is below "
                (num(diagnose::TINY_UPDATE)) " (healthy training is near 1e-3); the last validation error is " (diagnose::HIGH_ERROR_MARGIN)
                " or more above the study's best. Wrong inputs (e.g. rotated digits) do not show in the instruments: only the validation error stays high. The per-epoch instruments are in the Training instruments section."
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::{build, Options};
    use hps_common::{Study, TrialSetting};
    use std::collections::BTreeMap;

    fn epoch(e: u32, loss: f64, err: f64) -> EpochStat {
        EpochStat {
            epoch: e,
            elapsed_s: f64::from(e),
            train_loss: loss,
            val_loss: loss,
            val_error: err,
            train_error: Some(err / 2.0),
            instruments: None,
        }
    }

    /// A study of `exercise` over `lr` with two runs per value; each run's
    /// curve is given by `curve(lr)`.
    fn study(exercise: &str, lrs: &[f64], curve: impl Fn(f64) -> Vec<EpochStat>) -> StudyData {
        let study: Study = serde_json::from_value(serde_json::json!({
            "format_version": 1, "name": "s1", "exercise": exercise,
            "space": {"lr": {"type": "categorical", "choices": lrs}},
            "objective": {"metric": "val_error", "direction": "minimize"},
            "sampler": {"kind": "grid"}, "repeats": 2, "budget": {"epochs": 3},
            "trainer": {"kind": "cnn", "defaults": {"train_size": 100, "batch_size": 20}}
        }))
        .unwrap();
        let (mut settings, mut results) = (BTreeMap::new(), Vec::new());
        for (i, lr) in lrs.iter().enumerate() {
            for rep in 0..2u32 {
                let params = [("lr".to_string(), serde_json::json!(lr))]
                    .into_iter()
                    .collect();
                let mut s = TrialSetting::new((2 * i) as u64 + u64::from(rep), params, 3, "grid");
                s.config = i as u64;
                s.repeat = rep;
                let mut r = TrialResult::for_setting(&s, "w0", "cpu");
                r.status = TrialStatus::Complete;
                r.curve = curve(*lr);
                r.objective = r.curve.last().map(|e| e.val_error);
                r.best_epoch = Some(2);
                r.metrics.insert("test_loss".into(), 0.7);
                settings.insert(s.trial_id.clone(), s);
                results.push(r);
            }
        }
        StudyData {
            root: "s1".into(),
            study,
            settings,
            results,
            running: vec![],
            pending: 0,
            paused: 0,
            finished: true,
        }
    }

    /// LR 2 ends at chance, LR 0.001 barely moves, LR 0.1 learns.
    fn s1_curve(lr: f64) -> Vec<EpochStat> {
        match lr {
            x if x >= 2.0 => vec![
                epoch(1, 3.0, 0.9),
                epoch(2, 2.303, 0.9),
                epoch(3, 2.302, 0.9),
            ],
            x if x <= 0.001 => vec![
                epoch(1, 2.3, 0.7),
                epoch(2, 2.28, 0.65),
                epoch(3, 2.25, 0.6),
            ],
            _ => vec![epoch(1, 1.0, 0.3), epoch(2, 0.5, 0.2), epoch(3, 0.3, 0.15)],
        }
    }

    fn answers_html(d: StudyData) -> (String, Vec<String>) {
        let r = build(&[d], &Options::default()).unwrap();
        let start = r
            .html
            .find("id=\"part-answers\"")
            .expect("an answers section");
        let end = r.html[start..]
            .find("id=\"part-best\"")
            .expect("before the best trials")
            + start;
        let ids = r
            .figures
            .iter()
            .map(|f| f.id.clone())
            .filter(|i| i.starts_with("answers-"))
            .collect();
        (r.html[start..end].to_string(), ids)
    }

    #[test]
    fn s1_labels_a_chance_level_setting_collapsed() {
        let (html, ids) = answers_html(study("s1", &[0.001, 0.1, 2.0], s1_curve));
        assert!(html.contains("What seed 001, scenario 1 asks"), "{html}");
        assert!(
            html.contains("lr=2</td><td class=\"num\">2</td><td>collapsed to chance ×2"),
            "{html}"
        );
        assert!(
            html.contains(
                "lr=0.001</td><td class=\"num\">2</td><td>plateau (loss barely moves) ×2"
            ),
            "{html}"
        );
        assert!(
            html.contains("lr=0.1</td><td class=\"num\">2</td><td>learns ×2"),
            "{html}"
        );
        assert!(html.contains(RANDOMNESS_DOC));
        for q in ["train-loss", "val-loss", "val-error"] {
            assert!(ids.contains(&format!("answers-curve-{q}-epoch")), "{ids:?}");
        }
    }

    #[test]
    fn a_study_without_an_exercise_has_no_answers() {
        let mut d = study("s1", &[0.1], s1_curve);
        d.study.exercise = None;
        let r = build(&[d], &Options::default()).unwrap();
        assert!(!r.html.contains("part-answers"));
    }

    #[test]
    fn every_exercise_gets_a_section() {
        for ex in Exercise::ALL {
            let (html, _) = answers_html(study(ex.as_str(), &[0.001, 0.1, 2.0], s1_curve));
            assert!(html.contains(&format!("What {} asks", ex.source())), "{ex}");
        }
    }

    #[test]
    fn weight_decay_shows_the_gap_or_says_it_is_missing() {
        let (html, ids) = answers_html(study("weight-decay", &[0.1], s1_curve));
        // val error 0.15, train error 0.075: train accuracy 0.925, gap 0.075.
        assert!(html.contains("<td class=\"num\">0.925</td><td class=\"num\">0.85</td><td class=\"num\">0.075</td>"), "{html}");
        assert!(
            ids.contains(&"answers-curve-train-error-epoch".to_string()),
            "{ids:?}"
        );
        assert!(html.contains("first-layer weights not recorded"));
        let older = |lr| {
            s1_curve(lr)
                .into_iter()
                .map(|mut e| {
                    e.train_error = None;
                    e
                })
                .collect()
        };
        let (html, _) = answers_html(study("weight-decay", &[0.1], older));
        assert!(html.contains("train accuracy not recorded (older worker)"));
    }

    #[test]
    fn s4_labels_a_smaller_budget_and_a_time_budget_that_did_not_bind() {
        let (html, ids) = answers_html(study("s4", &[0.1, 2.0], s1_curve));
        assert!(html.contains("after 3 epochs: the study's budget, a different budget from the seed's 50: <strong>lr=0.1</strong>"), "{html}");
        assert!(html.contains("this budget did not bind"), "{html}");
        for id in ["train-loss-epoch", "train-loss-time", "val-error-time"] {
            assert!(ids.contains(&format!("answers-curve-{id}")), "{ids:?}");
        }
    }

    #[test]
    fn early_stopping_marks_the_best_epoch_and_the_bias() {
        let d = study("early-stopping", &[0.1, 2.0], s1_curve);
        let r = build(&[d], &Options::default()).unwrap();
        let f = r
            .figures
            .iter()
            .find(|f| f.id == "answers-curve-val-loss-epoch")
            .unwrap();
        assert!(f.svg.contains("best-epoch"), "the best epochs are marked");
        assert!(r.html.contains("optimistically biased"));
        assert!(
            r.html.contains("<td class=\"num\">0.7</td>"),
            "the test loss at the best epoch"
        );
    }

    #[test]
    fn s2_compares_measured_and_naive_times() {
        let study_s2 = |lrs: &[f64]| {
            let mut d = study("s2", lrs, s1_curve);
            for r in &mut d.results {
                r.params.insert(
                    "batch_size".into(),
                    serde_json::json!(if r.params["lr"] == 0.1 { 100 } else { 20 }),
                );
                r.metrics.insert(
                    "epoch_time_s".into(),
                    if r.params["lr"] == 0.1 { 1.0 } else { 3.0 },
                );
            }
            d
        };
        let (html, _) = answers_html(study_s2(&[0.1, 2.0]));
        // 100 examples: 5 steps of 20, 1 of 100; 3x the time for 5x the steps.
        assert!(html.contains("<td class=\"num\">20</td><td class=\"num\">5</td><td class=\"num\">3</td><td class=\"num\">3×</td><td class=\"num\">5×</td>"), "{html}");
    }
}
