//! Each worker's trials over wall time, as a Gantt chart: where a GPU sat
//! idle, which trials failed, which were re-queued or paused.

use std::collections::BTreeMap;

use super::trials::{hover, status_color, STATUSES};
use crate::chart::{Axis, Bar, Color, Figure, Mark, Series};
use crate::StudyData;

/// At most this many bars; past it, the latest are drawn.
const MAX_BARS: usize = 4000;
/// A gap between two runs on one worker longer than this is drawn as idle.
const IDLE_S: f64 = 1.0;

/// One run on a worker: [start, end] in Unix seconds.
struct Run<'a> {
    worker: &'a str,
    start: f64,
    end: f64,
    status: &'static str,
    color: Color,
    hover: String,
}

fn runs(d: &StudyData) -> Vec<Run<'_>> {
    let mut out: Vec<Run> = d
        .results
        .iter()
        .filter(|r| r.finished_at_unix > 0.0 && r.wall_time_s.is_finite())
        .map(|r| {
            // The bar is the last run; earlier runs of a re-queued or
            // paused trial happened elsewhere and are not recorded.
            let last = r.last_run_wall_time_s.unwrap_or(r.wall_time_s).max(0.0);
            let requeued = r.attempt > 1 || r.last_run_wall_time_s.is_some();
            let mut h = hover(d, r);
            h.push_str(&format!("\nworker {}, {:.1} s", r.worker, last));
            if requeued {
                h.push_str(&format!(
                    "\nran before: {:.1} s in earlier runs",
                    r.wall_time_s - last
                ));
            }
            Run {
                worker: r.worker.as_str(),
                start: r.finished_at_unix - last,
                end: r.finished_at_unix,
                status: if requeued {
                    "re-queued or resumed"
                } else {
                    r.status.as_str()
                },
                color: if requeued {
                    Color(204, 121, 167)
                } else {
                    status_color(r.status)
                },
                hover: h,
            }
        })
        .collect();
    for p in &d.running {
        let elapsed = p.curve.last().map_or(0.0, |e| e.elapsed_s);
        out.push(Run {
            worker: p.worker.as_str(),
            start: p.updated_at_unix - elapsed,
            end: p.updated_at_unix,
            status: "running",
            color: Color(0, 0, 0),
            hover: format!("{} (running on {}, last report)", p.trial_id, p.worker),
        });
    }
    out.sort_by(|a, b| a.start.total_cmp(&b.start));
    out
}

/// The Gantt chart; None when nothing has run yet.
pub fn timeline(d: &StudyData) -> Option<Figure> {
    let mut runs = runs(d);
    if runs.is_empty() {
        return None;
    }
    let mut note =
        "times are the workers' clocks; idle: no trial on the worker for more than 1 s".to_string();
    if runs.len() > MAX_BARS {
        note = format!(
            "showing the latest {MAX_BARS} of {} runs; {note}",
            runs.len()
        );
        runs.drain(..runs.len() - MAX_BARS);
    }
    let t0 = runs.iter().map(|r| r.start).fold(f64::INFINITY, f64::min);
    let workers: Vec<&str> = {
        let mut w: Vec<&str> = runs.iter().map(|r| r.worker).collect();
        w.sort_unstable();
        w.dedup();
        w
    };
    let row: BTreeMap<&str, usize> = workers.iter().enumerate().map(|(i, w)| (*w, i)).collect();
    let mut f = Figure::new(
        "timeline",
        "Timeline: each worker's trials over wall time",
        Axis::linear("wall time since the first trial started (s)"),
        Axis::category("worker", workers.iter().map(|w| w.to_string()).collect()),
    );
    f.width = 900;
    f.height = (120 + 28 * workers.len()).min(900) as u32;
    f.note = Some(note);
    let bar = |r: &Run, k: usize| Bar {
        x0: r.start - t0,
        x1: r.end - t0,
        y0: k as f64 - 0.35,
        y1: k as f64 + 0.35,
        hover: Some(r.hover.clone()),
        color: None,
    };
    let kinds: Vec<&str> = STATUSES
        .iter()
        .map(|s| s.as_str())
        .chain(["re-queued or resumed", "running"])
        .collect();
    for kind in kinds {
        let bars: Vec<Bar> = runs
            .iter()
            .filter(|r| r.status == kind)
            .map(|r| bar(r, row[r.worker]))
            .collect();
        let Some(color) = runs.iter().find(|r| r.status == kind).map(|r| r.color) else {
            continue;
        };
        f.series.push(Series {
            name: kind.to_string(),
            legend: true,
            color,
            mark: Mark::Bars(bars),
            hover: None,
            class: format!("status-{}", kind.split(' ').next().unwrap_or(kind)),
        });
    }
    let idle = idle_gaps(&runs, &row, t0);
    if !idle.is_empty() {
        f.series.push(Series {
            name: "idle".into(),
            legend: true,
            color: Color(230, 230, 230),
            mark: Mark::Bars(idle),
            hover: None,
            class: "idle".into(),
        });
    }
    Some(f)
}

/// The gaps between consecutive runs of each worker.
fn idle_gaps(runs: &[Run], row: &BTreeMap<&str, usize>, t0: f64) -> Vec<Bar> {
    let mut last_end: BTreeMap<&str, f64> = BTreeMap::new();
    let mut out = Vec::new();
    for r in runs {
        if let Some(end) = last_end.get(r.worker) {
            if r.start - end > IDLE_S {
                let k = row[r.worker] as f64;
                out.push(Bar {
                    x0: end - t0,
                    x1: r.start - t0,
                    y0: k - 0.15,
                    y1: k + 0.15,
                    hover: Some(format!("{} idle for {:.1} s", r.worker, r.start - end)),
                    color: None,
                });
            }
        }
        let e = last_end.entry(r.worker).or_insert(r.end);
        *e = e.max(r.end);
    }
    out
}
