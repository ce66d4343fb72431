//! The optimisation history, Scenario 5's reshuffle analysis, and the
//! comparison of several studies' best-so-far.

use hps_common::TrialStatus;

use super::trials::{decimate, hover, status_color, STATUSES};
use crate::chart::{palette, Axis, Color, Figure, Mark, Point, Series};
use crate::stats::{best_so_far, reshuffle, Reshuffle};
use crate::StudyData;

/// Random orders drawn as single runs, and permutations behind the median.
pub const RUNS: usize = 20;
pub const PERMUTATIONS: usize = 1000;
/// At most this many points along a best-so-far line (the line is a step
/// function, so thinning it changes nothing visible).
const MAX_STEPS: usize = 400;
/// At most this many trials drawn as points.
pub const MAX_POINTS: usize = 3000;

fn objective_label(d: &StudyData) -> String {
    let o = &d.study.objective;
    format!("{} ({})", o.metric, o.direction.as_str())
}

/// An axis for objective values: logarithmic when they are all positive
/// and span more than two decades (a regret, a loss far from its optimum),
/// so the end of the search is not squashed against the axis.
fn objective_axis(label: String, values: impl Iterator<Item = f64>) -> Axis {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if lo > 0.0 && hi / lo > 100.0 {
        Axis::log(format!("{label}, log scale"))
    } else {
        Axis::linear(label)
    }
}

/// The objective of each finished trial in proposal order, coloured by
/// status, with the best-so-far line over them.
pub fn history(d: &StudyData) -> Figure {
    let mut f = Figure::new(
        "history",
        "Optimisation history",
        Axis::linear("trial number (proposal order)"),
        objective_axis(objective_label(d), d.objectives().iter().map(|o| o.1)),
    );
    let objs = d.objectives();
    let (chosen, note) = decimate(objs.len(), MAX_POINTS, "trials");
    f.note = note;
    for status in STATUSES {
        let points: Vec<Point> = chosen
            .iter()
            .map(|&i| (i, objs[i]))
            .filter(|(_, (r, _))| r.status == status)
            .map(|(i, (r, v))| Point {
                x: (i + 1) as f64,
                y: v,
                hover: Some(hover(d, r)),
                color: None,
            })
            .collect();
        if points.is_empty() {
            continue;
        }
        f.series.push(Series {
            name: status.as_str().to_string(),
            legend: true,
            color: status_color(status),
            mark: Mark::Points {
                points,
                radius: 3.0,
                cross: status != TrialStatus::Complete,
            },
            hover: None,
            class: format!("status-{}", status.as_str()),
        });
    }
    let complete: Vec<f64> = objs
        .iter()
        .map(|(r, v)| {
            if r.status == TrialStatus::Complete {
                *v
            } else {
                f64::NAN
            }
        })
        .collect();
    let best = best_so_far(&complete, d.study.objective.direction);
    f.series.push(step_line(
        "best so far",
        &best,
        Color(0, 0, 0),
        2.0,
        "best-so-far",
    ));
    f
}

/// A best-so-far curve (index k = after k+1 evaluations) as a line,
/// thinned to at most [`MAX_STEPS`] vertices.
fn step_line(name: &str, ys: &[f64], color: Color, width: f64, class: &str) -> Series {
    Series {
        name: name.to_string(),
        legend: true,
        color,
        mark: Mark::Line {
            points: thin(ys.len())
                .into_iter()
                .map(|i| ((i + 1) as f64, ys[i]))
                .collect(),
            dashed: false,
            width,
        },
        hover: None,
        class: class.to_string(),
    }
}

/// Indices `0..n` thinned to at most [`MAX_STEPS`], keeping the last.
fn thin(n: usize) -> Vec<usize> {
    if n <= MAX_STEPS {
        return (0..n).collect();
    }
    let mut v: Vec<usize> = (0..MAX_STEPS)
        .map(|i| i * (n - 1) / (MAX_STEPS - 1))
        .collect();
    v.dedup();
    v
}

/// The complete trials' objectives in proposal order: the sample the
/// reshuffle analysis permutes.
pub fn complete_objectives(d: &StudyData) -> Vec<f64> {
    d.objectives()
        .into_iter()
        .filter(|(r, _)| r.status == TrialStatus::Complete)
        .map(|(_, v)| v)
        .collect()
}

/// The reshuffle analysis of one study, seeded by its name so a report is
/// reproducible.
pub fn shuffled(d: &StudyData) -> Reshuffle {
    let seed = d
        .study
        .name
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
    reshuffle(
        &complete_objectives(d),
        d.study.objective.direction,
        RUNS,
        PERMUTATIONS,
        seed,
    )
}

/// Scenario 5: best-so-far of 20 random orders of the finished results,
/// and the median with its 25–75 % band over 1000 orders, against the
/// number of evaluations.
pub fn reshuffle_figure(d: &StudyData) -> Figure {
    let mut f = Figure::new(
        "reshuffle",
        "Reshuffle analysis: best so far over random orders of the results",
        Axis::linear("number of evaluations"),
        objective_axis(
            format!("best {} so far", d.study.objective.metric),
            complete_objectives(d).into_iter(),
        ),
    );
    let r = shuffled(d);
    f.note = Some(format!(
        "{} random orders drawn; median and 25–75 % band over {}",
        r.runs.len(),
        if r.exact {
            "all orders".to_string()
        } else {
            format!("{PERMUTATIONS} random orders")
        }
    ));
    add_reshuffle(&mut f, &r, "", Color(90, 90, 90), palette(0), true);
    let actual = best_so_far(&complete_objectives(d), d.study.objective.direction);
    f.series.push(step_line(
        "this study's order",
        &actual,
        palette(5),
        2.0,
        "actual",
    ));
    f
}

/// The band, the median and (when `runs`) the single random orders.
fn add_reshuffle(f: &mut Figure, r: &Reshuffle, prefix: &str, run: Color, med: Color, runs: bool) {
    let xs = thin(r.median.len());
    f.series.push(Series {
        name: format!("{prefix}25–75 % of orders"),
        legend: true,
        color: med,
        mark: Mark::Band {
            x: xs.iter().map(|&i| (i + 1) as f64).collect(),
            lo: xs.iter().map(|&i| r.q25[i]).collect(),
            hi: xs.iter().map(|&i| r.q75[i]).collect(),
        },
        hover: None,
        class: "band".into(),
    });
    if runs {
        for (k, ys) in r.runs.iter().enumerate() {
            let mut s = step_line("single random order", ys, run, 0.8, "single-run");
            s.legend = k == 0;
            s.hover = Some(format!("random order {}", k + 1));
            f.series.push(s);
        }
    }
    f.series.push(step_line(
        &format!("{prefix}median of orders"),
        &r.median,
        med,
        2.0,
        "median",
    ));
}

/// §3: the best-so-far of each study with its reshuffle band, on shared axes.
pub fn comparison(studies: &[StudyData], names: &[String]) -> Figure {
    let metric = &studies[0].study.objective.metric;
    let mut f = Figure::new(
        "compare-best",
        "Best so far of each study (median and 25–75 % band over random orders)",
        Axis::linear("number of evaluations"),
        objective_axis(
            format!("best {metric} so far"),
            studies.iter().flat_map(complete_objectives),
        ),
    );
    f.width = 900;
    f.height = 440;
    for (i, (d, name)) in studies.iter().zip(names).enumerate() {
        let r = shuffled(d);
        add_reshuffle(
            &mut f,
            &r,
            &format!("{name}: "),
            palette(i),
            palette(i),
            false,
        );
        let actual = best_so_far(&complete_objectives(d), d.study.objective.direction);
        let mut s = step_line(
            &format!("{name}: its order"),
            &actual,
            palette(i),
            1.0,
            "actual",
        );
        if let Mark::Line { dashed, .. } = &mut s.mark {
            *dashed = true;
        }
        f.series.push(s);
    }
    let first = &studies[0].study.objective;
    if studies.iter().any(|d| d.study.objective != *first) {
        f.note = Some("the studies do not share one objective: compare with care".into());
    }
    f
}
