//! The per-epoch figures: learning curves (Scenario 1–4), the instruments
//! of seed 002's Cockpit view, and the multi-fidelity view of pruning.

use std::collections::{BTreeMap, BTreeSet};

use hps_common::files::{points_from_curve, points_from_reports};
use hps_common::{EpochStat, TrialResult, TrialStatus};

use super::trials::{color_by, colorbar, decimate, hover, status_color, value_text};
use crate::chart::{palette, Axis, Color, Figure, Mark, Point, Series};
use crate::stats::summarize;
use crate::StudyData;

/// At most this many settings' curves per learning-curve figure.
const MAX_CURVES: usize = 150;
/// At most this many trials in the multi-fidelity figure.
const MAX_TRAJECTORIES: usize = 300;
/// Trials whose instruments the page offers.
pub const INSTRUMENTED: usize = 10;

/// A setting's repeats: its config, and its results.
pub struct Group<'a> {
    pub config: u64,
    pub runs: Vec<&'a TrialResult>,
    /// The mean objective of its complete runs (for ranking).
    pub score: f64,
}

/// The settings of the results that have a per-epoch curve, best first.
fn groups(d: &StudyData) -> Vec<Group<'_>> {
    groups_of(d, d.results.iter().filter(|r| !r.curve.is_empty()))
}

/// The settings of `results`, best mean objective first (then by config).
pub fn groups_of<'a>(
    d: &'a StudyData,
    results: impl Iterator<Item = &'a TrialResult>,
) -> Vec<Group<'a>> {
    let mut by: BTreeMap<u64, Vec<&TrialResult>> = BTreeMap::new();
    for r in results {
        let config = d.settings.get(&r.trial_id).map_or(u64::MAX, |s| s.config);
        by.entry(config).or_default().push(r);
    }
    let dir = d.study.objective.direction;
    let mut out: Vec<Group> = by
        .into_iter()
        .map(|(config, runs)| {
            let objs: Vec<f64> = runs
                .iter()
                .filter(|r| r.status == TrialStatus::Complete)
                .filter_map(|r| r.objective)
                .collect();
            let score = summarize(&objs).map_or(dir.worst(), |s| s.mean);
            Group {
                config,
                runs,
                score,
            }
        })
        .collect();
    out.sort_by(|a, b| dir.cmp(a.score, b.score).then(a.config.cmp(&b.config)));
    out
}

/// A learning-curve quantity: (id, title, y label, log y, value; NaN
/// where an epoch lacks it).
pub type Quantity = (
    &'static str,
    &'static str,
    &'static str,
    bool,
    fn(&EpochStat) -> f64,
);
/// The losses and the validation error, the curves every cnn study gets.
pub const QUANTITIES: [Quantity; 3] = [
    (
        "train-loss",
        "Training loss",
        "training loss (cross-entropy)",
        true,
        |e| e.train_loss,
    ),
    (
        "val-loss",
        "Validation loss",
        "validation loss (cross-entropy)",
        true,
        |e| e.val_loss,
    ),
    (
        "val-error",
        "Validation error",
        "validation error (fraction)",
        false,
        |e| e.val_error,
    ),
];

/// Training loss, validation loss and validation error against epoch and
/// against elapsed training time: one line per setting, coloured by
/// `param`; a setting with repeats is drawn as the mean of its runs with a
/// ± one std band, its single runs hidden behind a toggle.
pub fn learning_curves(d: &StudyData, param: Option<&str>) -> Vec<Figure> {
    curves_of(d, param, &QUANTITIES, &[EPOCH, TIME])
}

/// The x axes of learning curves: (id, label).
pub type Along = (&'static str, &'static str);
/// Curves against the epoch number.
pub const EPOCH: Along = ("epoch", "epoch");
/// Curves against the training time.
pub const TIME: Along = ("time", "training time (s)");

/// [`learning_curves`] of the given `quantities` against the given x axes
/// (figure ids `curve-<quantity>-<axis>`), in quantity-major order.
pub fn curves_of(
    d: &StudyData,
    param: Option<&str>,
    quantities: &[Quantity],
    along: &[Along],
) -> Vec<Figure> {
    let groups = groups(d);
    if groups.is_empty() {
        return Vec::new();
    }
    let (chosen, note) = decimate(groups.len(), MAX_CURVES, "settings");
    let spec = param.and_then(|p| d.study.space.get(p).map(|s| (p, s)));
    let mut out = Vec::new();
    for &(qid, title, ylabel, log, get) in quantities {
        for &(xid, xlabel) in along {
            let y = if log {
                Axis::log(format!("{ylabel}, log scale"))
            } else {
                Axis::linear(ylabel)
            };
            let mut f = Figure::new(
                format!("curve-{qid}-{xid}"),
                format!("{title} against {xlabel}"),
                Axis::linear(xlabel),
                y,
            );
            f.note = note.clone();
            f.colorbar = spec.and_then(|(p, s)| colorbar(p, s));
            let x = |e: &EpochStat| {
                if xid == "epoch" {
                    f64::from(e.epoch)
                } else {
                    e.elapsed_s
                }
            };
            let mut named = BTreeSet::new();
            for &gi in &chosen {
                let g = &groups[gi];
                let color = spec.map_or(palette(0), |(p, s)| color_by(s, g.runs[0], p));
                let cfg = format!("cfg-{}{}{}", g.config, top(gi, 10), top(gi, 50));
                let from = f.series.len();
                group_series(d, g, &cfg, &mut f.series, color, &x, get);
                // A categorical colour-by has no colour bar: its values go
                // in the legend, on the first setting drawn with each.
                if let Some((p, hps_common::ParamSpec::Categorical { .. })) = spec {
                    let v = g.runs[0].params.get(p).map_or("-".into(), value_text);
                    if named.insert(v.clone()) {
                        if let Some(last) = f.series[from..].last_mut() {
                            last.legend = true;
                            last.name = format!("{p} = {v}");
                        }
                    }
                }
            }
            out.push(f);
        }
    }
    out
}

/// The class of a setting ranked `rank` (0 = best) among the best `k`.
fn top(rank: usize, k: usize) -> String {
    if rank < k {
        format!(" top-{k}")
    } else {
        String::new()
    }
}

/// The series of one setting: its single runs, and with repeats their mean
/// and band.
fn group_series(
    d: &StudyData,
    g: &Group,
    cfg: &str,
    out: &mut Vec<Series>,
    color: Color,
    x: &dyn Fn(&EpochStat) -> f64,
    get: fn(&EpochStat) -> f64,
) {
    let repeated = g.runs.len() > 1;
    for r in &g.runs {
        let points: Vec<(f64, f64)> = r.curve.iter().map(|e| (x(e), get(e))).collect();
        // A one-epoch run has no line to draw: a marker shows it.
        let mark = if points.len() == 1 {
            Mark::Points {
                points: vec![Point {
                    x: points[0].0,
                    y: points[0].1,
                    hover: None,
                    color: None,
                }],
                radius: 3.0,
                cross: r.status != TrialStatus::Complete,
            }
        } else {
            Mark::Line {
                points,
                dashed: r.status != TrialStatus::Complete,
                width: if repeated { 0.8 } else { 1.5 },
            }
        };
        out.push(Series {
            name: r.trial_id.clone(),
            legend: false,
            color,
            mark,
            hover: Some(hover(d, r)),
            class: format!(
                "trial {cfg} status-{}{}",
                r.status.as_str(),
                if repeated { " repeat-run" } else { "" }
            ),
        });
    }
    if !repeated {
        return;
    }
    // Mean and std over the runs, epoch by epoch, where at least two have it.
    let epochs = g.runs.iter().map(|r| r.curve.len()).max().unwrap_or(0);
    let (mut xs, mut mean, mut lo, mut hi) = (vec![], vec![], vec![], vec![]);
    for i in 0..epochs {
        let at: Vec<&EpochStat> = g.runs.iter().filter_map(|r| r.curve.get(i)).collect();
        let vals: Vec<f64> = at.iter().map(|e| get(e)).collect();
        let (Some(s), true) = (summarize(&vals), at.len() > 1) else {
            break;
        };
        xs.push(at.iter().map(|e| x(e)).sum::<f64>() / at.len() as f64);
        mean.push(s.mean);
        lo.push(s.mean - s.std);
        hi.push(s.mean + s.std);
    }
    let name = format!("setting {} (mean of {} runs)", g.config, g.runs.len());
    let params = hover(d, g.runs[0]);
    let params = params.split_once('\n').map_or("", |(_, p)| p);
    out.push(Series {
        name: name.clone(),
        legend: false,
        color,
        mark: Mark::Band {
            x: xs.clone(),
            lo,
            hi,
        },
        hover: None,
        class: format!("{cfg} band"),
    });
    out.push(Series {
        name: name.clone(),
        legend: false,
        color,
        mark: Mark::Line {
            points: xs.into_iter().zip(mean).collect(),
            dashed: false,
            width: 2.0,
        },
        hover: Some(format!("{name}, ± one std band\n{params}")),
        class: format!("{cfg} mean"),
    });
}

/// The instruments of a trial, per epoch: the learning rate used, the
/// gradient norm, the weight norm, the update/weight ratio, and every
/// layer's activation mean and std. Empty when the trial has none.
pub fn instruments(r: &TrialResult) -> Vec<Figure> {
    let rows: Vec<(f64, &hps_common::Instruments)> = r
        .curve
        .iter()
        .filter_map(|e| e.instruments.as_ref().map(|i| (f64::from(e.epoch), i)))
        .collect();
    if rows.is_empty() {
        return Vec::new();
    }
    type Scalar = (
        &'static str,
        &'static str,
        &'static str,
        bool,
        fn(&hps_common::Instruments) -> f64,
    );
    const SCALARS: [Scalar; 4] = [
        (
            "lr",
            "Learning rate at the epoch's last step",
            "learning rate",
            true,
            |i| i.lr,
        ),
        (
            "grad",
            "Gradient L2 norm, mean over steps",
            "gradient norm",
            true,
            |i| i.grad_norm,
        ),
        (
            "weight",
            "Weight L2 norm after the epoch",
            "weight norm",
            false,
            |i| i.weight_norm,
        ),
        (
            "update",
            "‖update‖ / ‖weights‖, mean over steps",
            "update/weight ratio",
            true,
            |i| i.update_ratio,
        ),
    ];
    let id = &r.trial_id;
    let mut out: Vec<Figure> = SCALARS
        .iter()
        .map(|(key, title, label, log, get)| {
            let y = if *log {
                Axis::log(*label)
            } else {
                Axis::linear(*label)
            };
            let mut f = Figure::new(
                format!("instr-{id}-{key}"),
                format!("{title} ({id})"),
                Axis::linear("epoch"),
                y,
            );
            f.width = 420;
            f.height = 280;
            f.series.push(Series {
                name: id.to_string(),
                legend: true,
                color: palette(0),
                mark: Mark::Line {
                    points: rows.iter().map(|(x, i)| (*x, get(i))).collect(),
                    dashed: false,
                    width: 2.0,
                },
                hover: Some(format!("{title} of {id}")),
                class: String::new(),
            });
            f
        })
        .collect();
    out.extend(activation_figures(id, &rows));
    out
}

/// A dashed vertical line at each epoch where the pruner decides, from
/// `lo` to `hi` (none when the figure has no finite value).
fn rung_lines(d: &StudyData, lo: f64, hi: f64) -> Vec<Series> {
    let mut out = Vec::new();
    let rungs: BTreeSet<u32> = d
        .settings
        .values()
        .flat_map(|s| s.decide_at.iter().copied())
        .collect();
    if lo.is_finite() && hi.is_finite() {
        for (k, rung) in rungs.iter().enumerate() {
            out.push(Series {
                name: "decision epoch (rung)".into(),
                legend: k == 0,
                color: Color(150, 150, 150),
                mark: Mark::Line {
                    points: vec![(f64::from(*rung), lo), (f64::from(*rung), hi)],
                    dashed: true,
                    width: 1.0,
                },
                hover: Some(format!("the pruner decides after epoch {rung}")),
                class: "rung".into(),
            });
        }
    }
    out
}

/// The cross where a pruned trial was stopped.
fn stopped_here(r: &TrialResult, last: (f64, f64), legend: bool) -> Series {
    Series {
        name: "stopped here".into(),
        legend,
        color: status_color(r.status),
        mark: Mark::Points {
            points: vec![Point {
                x: last.0,
                y: last.1,
                hover: Some(format!(
                    "{} pruned at step {}\n{}",
                    r.trial_id,
                    last.0,
                    r.error.as_deref().unwrap_or("")
                )),
                color: None,
            }],
            radius: 4.0,
            cross: true,
        },
        hover: None,
        class: format!("trial trial-{} status-pruned", r.trial_id),
    }
}

/// The mean and the std of each layer's output per epoch, one figure
/// each, a line per layer.
fn activation_figures(id: &str, rows: &[(f64, &hps_common::Instruments)]) -> Vec<Figure> {
    let mut out = Vec::new();
    let layers: BTreeSet<&str> = rows
        .iter()
        .flat_map(|(_, i)| i.activations.iter().map(|l| l.layer.as_str()))
        .collect();
    for (key, title, get) in [
        (
            "act-mean",
            "Mean of each layer's output",
            (|l: &hps_common::LayerStat| l.mean) as fn(&hps_common::LayerStat) -> f64,
        ),
        (
            "act-std",
            "Std of each layer's output",
            |l: &hps_common::LayerStat| l.std,
        ),
    ] {
        let mut f = Figure::new(
            format!("instr-{id}-{key}"),
            format!("{title} ({id})"),
            Axis::linear("epoch"),
            Axis::linear(if key == "act-mean" {
                "activation mean"
            } else {
                "activation std"
            }),
        );
        f.width = 420;
        f.height = 280;
        for (k, layer) in layers.iter().enumerate() {
            let pts = rows
                .iter()
                .map(|(x, i)| {
                    let v = i
                        .activations
                        .iter()
                        .find(|l| l.layer == *layer)
                        .map_or(f64::NAN, get);
                    (*x, v)
                })
                .collect();
            f.series.push(Series {
                name: (*layer).to_string(),
                legend: true,
                color: palette(k),
                mark: Mark::Line {
                    points: pts,
                    dashed: false,
                    width: 1.5,
                },
                hover: Some(format!("{layer} of {id}")),
                class: String::new(),
            });
        }
        out.push(f);
    }
    out
}

/// The objective's intermediate values of every trial (finished and
/// running), pruned trials in their own colour and marked where they were
/// stopped, the epochs where the pruner decides drawn as dashed lines.
pub fn multi_fidelity(d: &StudyData) -> Option<Figure> {
    let metric = &d.study.objective.metric;
    let mut traj: Vec<(&TrialResult, Vec<(f64, f64)>)> = d
        .results
        .iter()
        .map(|r| {
            let pts = if r.curve.is_empty() {
                points_from_reports(metric, &r.reports)
            } else {
                points_from_curve(metric, &r.curve)
            };
            (
                r,
                pts.into_iter()
                    .map(|p| (f64::from(p.step), p.value))
                    .collect::<Vec<_>>(),
            )
        })
        .filter(|(_, p)| p.len() > 1 || d.study.pruner.is_some() && !p.is_empty())
        .collect();
    if traj.is_empty() && d.running.iter().all(|p| p.points.is_empty()) {
        return None;
    }
    let mut f = Figure::new(
        "fidelity",
        "Intermediate values (multi-fidelity)",
        Axis::linear("epoch (or report step)"),
        Axis::linear(format!("{metric} at that step")),
    );
    // Best final value first, so decimation keeps the interesting ones.
    let dir = d.study.objective.direction;
    traj.sort_by(|a, b| {
        let last = |t: &Vec<(f64, f64)>| t.last().map_or(dir.worst(), |p| p.1);
        dir.cmp(last(&a.1), last(&b.1))
    });
    let (chosen, note) = decimate(traj.len(), MAX_TRAJECTORIES, "trials");
    f.note = note;
    let mut legend_done = BTreeSet::new();
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for &i in &chosen {
        let (r, pts) = &traj[i];
        for p in pts.iter().filter(|p| p.1.is_finite()) {
            lo = lo.min(p.1);
            hi = hi.max(p.1);
        }
        let pruned = r.status == TrialStatus::Pruned;
        let label = if pruned { "pruned" } else { r.status.as_str() };
        f.series.push(Series {
            name: label.to_string(),
            legend: legend_done.insert(label),
            color: status_color(r.status),
            mark: Mark::Line {
                points: pts.clone(),
                dashed: false,
                width: 1.0,
            },
            hover: Some(hover(d, r)),
            class: format!("trial trial-{} status-{}", r.trial_id, r.status.as_str()),
        });
        if pruned {
            let last = *pts.last().unwrap_or(&(f64::NAN, f64::NAN));
            let first = legend_done.insert("stopped here");
            f.series.push(stopped_here(r, last, first));
        }
    }
    for p in &d.running {
        let pts: Vec<(f64, f64)> = p
            .points
            .iter()
            .map(|q| (f64::from(q.step), q.value))
            .collect();
        f.series.push(Series {
            name: "running".into(),
            legend: legend_done.insert("running"),
            color: Color(0, 0, 0),
            mark: Mark::Line {
                points: pts,
                dashed: true,
                width: 1.0,
            },
            hover: Some(format!("{} (running, on {})", p.trial_id, p.worker)),
            class: format!("trial trial-{} status-running", p.trial_id),
        });
    }
    f.series.extend(rung_lines(d, lo, hi));
    Some(f)
}
