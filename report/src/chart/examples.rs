//! Test fixtures: one figure of each kind the report draws, used by the
//! unit tests and by the ignored `write_examples` test, which writes them
//! as SVG and PNG to look at:
//! `CHART_EXAMPLES=/tmp/chart-examples cargo test -p hps-report chart::examples -- --ignored`.

use super::*;

fn point(x: f64, y: f64, hover: String, color: Option<Color>) -> Point {
    Point {
        x,
        y,
        hover: Some(hover),
        color,
    }
}

fn series(name: &str, i: usize, mark: Mark) -> Series {
    Series {
        name: name.into(),
        legend: true,
        color: palette(i),
        mark,
        hover: None,
        class: String::new(),
    }
}

/// Best-so-far curves on a log y axis, with a reshuffle band, the trials
/// as points and pruned trials as crosses.
pub(super) fn history() -> Figure {
    let mut f = Figure::new(
        "history",
        "Best validation error so far",
        Axis::linear("wall time (s)"),
        Axis::log("validation error (fraction)"),
    );
    f.note = Some("showing the best 200 and 300 random of 10,000 trials".into());
    let xs: Vec<f64> = (0..60).map(|i| f64::from(i) * 50.0).collect();
    let best: Vec<f64> = xs
        .iter()
        .map(|x| 0.5 * (-x / 800.0).exp() + 0.004)
        .collect();
    f.series.push(series(
        "reshuffle 90% band",
        0,
        Mark::Band {
            x: xs.clone(),
            lo: best.iter().map(|b| b * 0.7).collect(),
            hi: best.iter().map(|b| b * 1.5).collect(),
        },
    ));
    let mut line = series(
        "best so far",
        0,
        Mark::Line {
            points: xs.iter().copied().zip(best.iter().copied()).collect(),
            dashed: false,
            width: 2.0,
        },
    );
    line.hover = Some("best so far <study & 'a'>".into());
    f.series.push(line);
    let trials = (0..200)
        .map(|i| {
            let x = f64::from(i) * 15.0;
            let y = 0.5 * (-x / 900.0).exp() + 0.004 + 0.3 * ((f64::from(i) * 0.7).sin().abs());
            point(
                x,
                y,
                format!("t{i:06} lr={:.1e}", 1e-4 * f64::from(i + 1)),
                None,
            )
        })
        .collect();
    f.series.push(series(
        "completed",
        1,
        Mark::Points {
            points: trials,
            radius: 3.0,
            cross: false,
        },
    ));
    let pruned = (0..30)
        .map(|i| {
            point(
                f64::from(i) * 97.0,
                0.6 + 0.01 * f64::from(i),
                format!("t{i:06} pruned"),
                None,
            )
        })
        .collect();
    f.series.push(series(
        "pruned",
        3,
        Mark::Points {
            points: pruned,
            radius: 3.0,
            cross: true,
        },
    ));
    let mut other = series(
        "random search (dashed)",
        2,
        Mark::Line {
            points: xs
                .iter()
                .map(|&x| (x, 0.5 * (-x / 2000.0).exp() + 0.01))
                .collect(),
            dashed: true,
            width: 1.5,
        },
    );
    other.class = "single-run".into();
    f.series.push(other);
    f
}

/// A Gantt chart of trials per worker (category y axis).
pub(super) fn timeline() -> Figure {
    let workers: Vec<String> = (0..6)
        .map(|i| format!("worker-{i}@node{:02}.cluster.example", i * 3))
        .collect();
    let mut f = Figure::new(
        "timeline",
        "Trials per worker",
        Axis::linear("wall time (s)"),
        Axis::category("worker", workers),
    );
    for (k, status) in ["completed", "pruned", "failed"].iter().enumerate() {
        let bars = (0..6)
            .flat_map(|w: u32| (0..5u32).map(move |j| (w, j)))
            .filter(|(w, j)| (w + j) as usize % 3 == k)
            .map(|(w, j)| {
                let x0 = f64::from(j) * 120.0 + f64::from(w) * 7.0;
                Bar {
                    x0,
                    x1: x0 + 100.0,
                    y0: f64::from(w) - 0.35,
                    y1: f64::from(w) + 0.35,
                    hover: Some(format!("t{w}{j} on worker {w}")),
                    color: None,
                }
            })
            .collect();
        let mut s = series(status, k, Mark::Bars(bars));
        s.class = format!("status-{status}");
        f.series.push(s);
    }
    f
}

/// Hyperparameter importance: horizontal bars with confidence whiskers.
pub(super) fn importance() -> Figure {
    let names: Vec<String> = [
        "learning_rate",
        "weight_decay",
        "batch_size",
        "dropout",
        "a_very_long_parameter_name_indeed",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let vals = [0.55, 0.2, 0.12, 0.08, 0.05];
    let mut f = Figure::new(
        "importance",
        "Hyperparameter importance (PED-ANOVA)",
        Axis::linear("importance (fraction of variance)"),
        Axis::category("parameter", names),
    );
    let bars = vals
        .iter()
        .enumerate()
        .map(|(i, &v)| Bar {
            x0: 0.0,
            x1: v,
            y0: i as f64 - 0.3,
            y1: i as f64 + 0.3,
            hover: Some(format!("{v}")),
            color: None,
        })
        .collect();
    f.series.push(Series {
        legend: false,
        ..series("importance", 0, Mark::Bars(bars))
    });
    let ws = vals
        .iter()
        .enumerate()
        .map(|(i, &v)| Whisker {
            x: i as f64,
            lo: v * 0.8,
            hi: v * 1.2,
        })
        .collect();
    f.series.push(Series {
        legend: false,
        ..series("95% CI", 6, Mark::Whiskers(ws))
    });
    f
}

/// Objective against a log-scaled parameter, points coloured by another
/// one, with a colour bar.
pub(super) fn scatter() -> Figure {
    let mut f = Figure::new(
        "scatter",
        "Validation error vs learning rate",
        Axis::log("learning rate"),
        Axis::linear("validation error (fraction)"),
    );
    let pts = (0..300)
        .map(|i| {
            let t = f64::from(i) / 300.0;
            let lr = 10f64.powf(-5.0 + 4.0 * ((f64::from(i) * 0.618).fract()));
            let y = 0.1 + (lr.log10() + 2.5).powi(2) * 0.05 + 0.05 * (f64::from(i) * 1.3).sin();
            point(lr, y, format!("t{i:06}"), Some(colormap(t)))
        })
        .collect();
    f.series.push(Series {
        legend: false,
        ..series(
            "trials",
            0,
            Mark::Points {
                points: pts,
                radius: 3.5,
                cross: false,
            },
        )
    });
    f.colorbar = Some(ColorBar {
        label: "weight decay".into(),
        log: true,
        lo: 1e-6,
        hi: 1e-2,
    });
    f
}

/// Many series: the legend overflows into "+N more".
pub(super) fn many() -> Figure {
    let mut f = Figure::new(
        "many",
        "Learning curves of 20 trials",
        Axis::linear("step"),
        Axis::linear("loss"),
    );
    for k in 0..20 {
        let pts = (0..50)
            .map(|i| {
                (
                    f64::from(i),
                    2.0 / (1.0 + f64::from(i) * 0.1 * (k + 1) as f64 / 10.0),
                )
            })
            .collect();
        f.series.push(series(
            &format!("trial t{k:06} with a long name"),
            k,
            Mark::Line {
                points: pts,
                dashed: false,
                width: 1.5,
            },
        ));
    }
    f
}

/// A category x axis with long names (rotated labels), big numbers on y,
/// a legend and a colour bar side by side.
pub(super) fn workers() -> Figure {
    let names: Vec<String> = (0..14)
        .map(|i| format!("gpu-node{i:02}.cluster.example.org"))
        .collect();
    let mut f = Figure::new(
        "workers",
        "Steps per worker",
        Axis::category("worker", names),
        Axis::linear("steps (count)"),
    );
    let bars = (0..14)
        .map(|i| {
            let v = 2.0e6 + 1.5e6 * (f64::from(i) * 0.9).sin();
            Bar {
                x0: f64::from(i) - 0.4,
                x1: f64::from(i) + 0.4,
                y0: 0.0,
                y1: v,
                hover: None,
                color: Some(colormap(f64::from(i) / 13.0)),
            }
        })
        .collect();
    f.series.push(series("steps", 0, Mark::Bars(bars)));
    let mean = (0..14).map(|i| (f64::from(i), 2.0e6)).collect();
    f.series.push(series(
        "mean",
        6,
        Mark::Line {
            points: mean,
            dashed: true,
            width: 1.5,
        },
    ));
    f.colorbar = Some(ColorBar {
        label: "utilisation (fraction)".into(),
        log: false,
        lo: 0.0,
        hi: 1.0,
    });
    f
}

/// An empty figure: axes and "no data yet".
pub(super) fn empty() -> Figure {
    Figure::new(
        "empty",
        "Nothing finished yet",
        Axis::linear("wall time (s)"),
        Axis::log("validation error"),
    )
}

/// Parallel coordinates over a log, a linear, a category axis and the
/// objective, with a colour bar.
pub(super) fn parallel() -> Parallel {
    let opts = vec![
        "adam".to_string(),
        "sgd".to_string(),
        "adamw_with_long_name".to_string(),
    ];
    let axes = vec![
        ParallelAxis {
            label: "learning_rate".into(),
            scale: Scale::Log,
            lo: 1e-5,
            hi: 1e-1,
        },
        ParallelAxis {
            label: "dropout".into(),
            scale: Scale::Linear,
            lo: 0.0,
            hi: 0.5,
        },
        ParallelAxis {
            label: "optimizer".into(),
            scale: Scale::Category(opts),
            lo: 0.0,
            hi: 0.0,
        },
        ParallelAxis {
            label: "batch_size".into(),
            scale: Scale::Log,
            lo: 16.0,
            hi: 512.0,
        },
        ParallelAxis {
            label: "validation error".into(),
            scale: Scale::Linear,
            lo: 0.0,
            hi: 1.0,
        },
    ];
    let lines = (0..80)
        .map(|i| {
            let u = |k: f64| (f64::from(i) * k).sin().abs();
            let err = 0.1 + 0.8 * u(0.37);
            let missing = if i % 17 == 0 { f64::NAN } else { 0.5 * u(1.1) };
            ParallelLine {
                values: vec![
                    10f64.powf(-5.0 + 4.0 * u(0.71)),
                    missing,
                    f64::from(i % 3),
                    2f64.powi(4 + (i % 6)),
                    err,
                ],
                color: colormap(1.0 - err),
                hover: Some(format!("t{i:06}")),
                class: format!("trial-t{i:06}"),
            }
        })
        .collect();
    Parallel {
        id: "parallel".into(),
        title: "Parallel coordinates".into(),
        axes,
        lines,
        colorbar: Some(ColorBar {
            label: "validation error".into(),
            log: false,
            lo: 0.1,
            hi: 0.9,
        }),
        note: Some("80 trials".into()),
        width: 800,
        height: 400,
    }
}

#[test]
#[ignore = "writes example figures for a person to look at"]
fn write_examples() {
    let dir = std::path::PathBuf::from(
        std::env::var("CHART_EXAMPLES").unwrap_or_else(|_| "/tmp/chart-examples".into()),
    );
    std::fs::create_dir_all(&dir).unwrap();
    let mut svgs: Vec<(String, String)> = [
        history(),
        timeline(),
        importance(),
        scatter(),
        many(),
        workers(),
        empty(),
    ]
    .iter()
    .map(|f| (f.id.clone(), f.to_svg()))
    .collect();
    svgs.push(("parallel".into(), parallel().to_svg()));
    for (id, svg) in svgs {
        std::fs::write(dir.join(format!("{id}.svg")), &svg).unwrap();
        std::fs::write(dir.join(format!("{id}.png")), png(&svg, 1.5).unwrap()).unwrap();
    }
}
