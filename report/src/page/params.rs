//! The figures over the hyperparameters: slices (Scenario 5's
//! coordinate-wise analysis), final metrics against a swept parameter
//! (seed 004), parallel coordinates and importance.

use std::collections::BTreeMap;

use hps_common::TrialStatus;

use super::history::MAX_POINTS;
use super::trials::{classes, colorbar, decimate, hover, param_axis, param_coord, ranks, searched};
use crate::chart::{
    colormap, palette, Axis, Bar, ColorBar, Figure, Mark, Parallel, ParallelAxis, ParallelLine,
    Point, Scale, Series, Whisker,
};
use crate::stats::importance;
use crate::StudyData;

/// At most this many lines in the parallel-coordinates figure.
const MAX_LINES: usize = 500;
/// At most this many trials fitted by the importance forest.
const MAX_FIT: usize = 2000;
/// Trees of the importance forest.
const TREES: usize = 64;

/// One figure per searched parameter: the objective of every finished
/// trial against the parameter, coloured by trial number.
pub fn slices(d: &StudyData) -> Vec<Figure> {
    let objs = d.objectives();
    let (chosen, note) = decimate(objs.len(), MAX_POINTS, "trials");
    let n = objs.len().max(2) as f64;
    searched(d)
        .into_iter()
        .map(|(name, spec)| {
            let mut f = Figure::new(
                format!("slice-{name}"),
                format!("Slice: objective against {name}"),
                param_axis(name, spec),
                Axis::linear(format!(
                    "{} ({})",
                    d.study.objective.metric,
                    d.study.objective.direction.as_str()
                )),
            );
            f.note = note.clone();
            let points = chosen
                .iter()
                .map(|&i| {
                    let (r, v) = objs[i];
                    Point {
                        x: param_coord(spec, r.params.get(name)),
                        y: v,
                        hover: Some(hover(d, r)),
                        color: Some(colormap(i as f64 / (n - 1.0))),
                    }
                })
                .collect();
            f.series.push(Series {
                name: "finished trials".into(),
                legend: true,
                color: palette(0),
                mark: Mark::Points {
                    points,
                    radius: 3.0,
                    cross: false,
                },
                hover: None,
                class: "trials".into(),
            });
            f.colorbar = Some(ColorBar {
                label: "trial number".into(),
                log: false,
                lo: 1.0,
                hi: objs.len().max(1) as f64,
            });
            f
        })
        .collect()
}

/// The final metrics seed 004 plots against a swept hyperparameter, when
/// the trainer reports them.
const FINAL: [(&str, &str, &str); 3] = [
    ("last_train_loss", "training", "final loss (cross-entropy)"),
    ("last_val_loss", "validation", "final loss (cross-entropy)"),
    ("last_val_error", "validation", "final accuracy (fraction)"),
];

/// Seed 004: for each searched parameter, the final training and
/// validation loss, and the final validation accuracy, of the complete
/// trials; where the parameter was swept (a grid, or values that repeat),
/// with a line through the mean at each value.
pub fn final_metrics(d: &StudyData) -> Vec<Figure> {
    let complete: Vec<_> = d.with_status(TrialStatus::Complete).collect();
    if !complete.iter().any(|r| r.metrics.contains_key(FINAL[0].0)) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (name, spec) in searched(d) {
        for (unit, keys) in [("loss", &FINAL[..2]), ("accuracy", &FINAL[2..])] {
            let xs: Vec<u64> = complete
                .iter()
                .map(|r| param_coord(spec, r.params.get(name)).to_bits())
                .collect();
            let distinct = xs.iter().collect::<std::collections::BTreeSet<_>>().len();
            let swept = matches!(d.study.sampler, hps_common::SamplerSpec::Grid { .. })
                || distinct < xs.len();
            let mut f = Figure::new(
                format!("final-{unit}-{name}"),
                if swept {
                    format!("Final {unit} against {name} (line: mean over trials)")
                } else {
                    format!("Final {unit} against {name}")
                },
                param_axis(name, spec),
                Axis::linear(keys[0].2),
            );
            for (k, (key, label, _)) in keys.iter().enumerate() {
                let pts: Vec<(f64, f64, String)> = complete
                    .iter()
                    .filter_map(|r| {
                        let v = *r.metrics.get(*key)?;
                        let v = if *key == "last_val_error" { 1.0 - v } else { v };
                        Some((param_coord(spec, r.params.get(name)), v, hover(d, r)))
                    })
                    .collect();
                let color = palette(if keys.len() == 1 { 2 } else { k });
                if swept {
                    f.series.push(mean_line(label, &pts, color));
                }
                f.series.push(Series {
                    name: if swept {
                        format!("{label} (single trials)")
                    } else {
                        label.to_string()
                    },
                    legend: !swept,
                    color,
                    mark: Mark::Points {
                        points: pts
                            .into_iter()
                            .map(|(x, y, h)| Point {
                                x,
                                y,
                                hover: Some(h),
                                color: None,
                            })
                            .collect(),
                        radius: 2.5,
                        cross: false,
                    },
                    hover: None,
                    class: "single-run".into(),
                });
            }
            out.push(f);
        }
    }
    out
}

/// A line through the mean of `y` at each distinct `x`.
fn mean_line(label: &str, pts: &[(f64, f64, String)], color: crate::chart::Color) -> Series {
    let mut by_x: BTreeMap<u64, (f64, f64, usize)> = BTreeMap::new();
    for (x, y, _) in pts.iter().filter(|p| p.0.is_finite() && p.1.is_finite()) {
        // Order-preserving key for finite floats.
        let key = if *x >= 0.0 {
            x.to_bits() ^ (1 << 63)
        } else {
            !x.to_bits()
        };
        let e = by_x.entry(key).or_insert((*x, 0.0, 0));
        e.1 += y;
        e.2 += 1;
    }
    Series {
        name: label.to_string(),
        legend: true,
        color,
        mark: Mark::Line {
            points: by_x.values().map(|(x, s, n)| (*x, s / *n as f64)).collect(),
            dashed: false,
            width: 2.0,
        },
        hover: Some(label.to_string()),
        class: "mean".into(),
    }
}

/// Every searched parameter and the objective, one line per complete
/// trial, coloured by the objective's rank (best: yellow).
pub fn parallel(d: &StudyData) -> Parallel {
    let params = searched(d);
    let ranked = d.ranked();
    let rank = ranks(d);
    let (chosen, note) = decimate(ranked.len(), MAX_LINES, "complete trials");
    let obj = &d.study.objective;
    let (lo, hi) = ranked
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (_, v)| {
            (a.min(*v), b.max(*v))
        });
    let mut axes: Vec<ParallelAxis> = params
        .iter()
        .map(|(name, spec)| {
            let a = param_axis(name, spec);
            let (lo, hi) = colorbar(name, spec).map_or((0.0, 1.0), |c| (c.lo, c.hi));
            ParallelAxis {
                label: name.to_string(),
                scale: a.scale,
                lo,
                hi,
            }
        })
        .collect();
    axes.push(ParallelAxis {
        label: format!("{} ({})", obj.metric, obj.direction.as_str()),
        scale: Scale::Linear,
        lo,
        hi,
    });
    let n = ranked.len().max(2) as f64;
    // Worst first, so the best lines are drawn on top.
    let lines = chosen
        .iter()
        .rev()
        .map(|&i| {
            let (r, v) = ranked[i];
            let mut values: Vec<f64> = params
                .iter()
                .map(|(name, spec)| param_coord(spec, r.params.get(*name)))
                .collect();
            values.push(v);
            ParallelLine {
                values,
                color: colormap(1.0 - i as f64 / (n - 1.0)),
                hover: Some(hover(d, r)),
                class: classes(r, rank.get(r.trial_id.as_str()).copied()),
            }
        })
        .collect();
    Parallel {
        id: "parallel".into(),
        title: "Parallel coordinates: every hyperparameter and the objective".into(),
        axes,
        lines,
        colorbar: Some(ColorBar {
            label: "rank (1 = best)".into(),
            log: false,
            lo: ranked.len().max(1) as f64,
            hi: 1.0,
        }),
        note,
        width: 900,
        height: 420,
    }
}

/// fANOVA importance of each searched parameter over the complete trials,
/// with its spread over the forest's trees; None with fewer than 4 trials
/// or no searched parameter.
pub fn importance_figure(d: &StudyData) -> Option<Figure> {
    let params = searched(d);
    let ranked = d.ranked();
    let (chosen, sub) = decimate(ranked.len(), MAX_FIT, "complete trials");
    let mut x = Vec::new();
    let mut y = Vec::new();
    for &i in &chosen {
        let (r, v) = ranked[i];
        let point: Option<Vec<f64>> = params
            .iter()
            .map(|(name, spec)| r.params.get(*name).and_then(|val| spec.to_unit(val)))
            .collect();
        if let Some(p) = point {
            x.push(p);
            y.push(v);
        }
    }
    let imp = importance(&x, &y, TREES, 0x1a9).ok()?;
    let mut order: Vec<usize> = (0..params.len()).collect();
    order.sort_by(|&a, &b| imp[a].mean.total_cmp(&imp[b].mean));
    let names: Vec<String> = order.iter().map(|&i| params[i].0.to_string()).collect();
    let mut f = Figure::new(
        "importance",
        "Hyperparameter importance (fANOVA on a random forest)",
        Axis {
            label: "share of the objective's variance explained (main effect)".into(),
            scale: Scale::Linear,
            range: Some((0.0, 1.0)),
        },
        Axis::category("hyperparameter", names),
    );
    f.note = Some(format!(
        "{} trees on bootstrap resamples of {} complete trials{}; whisker: ± 1 std over trees",
        TREES,
        y.len(),
        sub.map_or(String::new(), |_| " (a sample)".into())
    ));
    f.series.push(Series {
        name: "mean over trees".into(),
        legend: true,
        color: palette(0),
        mark: Mark::Bars(
            order
                .iter()
                .enumerate()
                .map(|(k, &i)| Bar {
                    x0: 0.0,
                    x1: imp[i].mean,
                    y0: k as f64 - 0.35,
                    y1: k as f64 + 0.35,
                    hover: Some(format!(
                        "{}: {:.3} ± {:.3}",
                        params[i].0, imp[i].mean, imp[i].std
                    )),
                    color: None,
                })
                .collect(),
        ),
        hover: None,
        class: "bars".into(),
    });
    f.series.push(Series {
        name: "± one std over trees".into(),
        legend: true,
        color: crate::chart::Color(0, 0, 0),
        mark: Mark::Whiskers(
            order
                .iter()
                .enumerate()
                .map(|(k, &i)| Whisker {
                    x: k as f64,
                    lo: (imp[i].mean - imp[i].std).max(0.0),
                    hi: imp[i].mean + imp[i].std,
                })
                .collect(),
        ),
        hover: None,
        class: "whiskers".into(),
    });
    Some(f)
}
