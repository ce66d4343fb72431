//! The report page: every figure and table of one study, or of several
//! studies with their comparison first, in one HTML file that needs no
//! network (inline SVG, style and script; the system's sans-serif font).

mod answers;
pub(crate) mod budget;
mod curves;
mod history;
pub(crate) mod hypothesis;
mod params;
pub(crate) mod tables;
mod timeline;
pub mod trials;

use std::collections::BTreeMap;

use hps_common::TrialStatus;
use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::chart::{Figure, Parallel};
use crate::StudyData;
use trials::{num, searched, STATUSES};

/// How often the page of a running study reloads itself, and the least
/// time between two rewrites of `report.html` by `hps-master run`.
pub const REFRESH_S: u32 = 60;

/// One rendered figure: its file stem and its SVG.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub id: String,
    pub svg: String,
}

/// The page and every figure on it.
#[derive(Debug, Clone)]
pub struct Report {
    pub html: String,
    pub figures: Vec<Rendered>,
}

/// Choices the user makes on the command line.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The parameter learning curves are coloured by (default: the first
    /// searched one); the page can switch to any other.
    pub color_by: Option<String>,
}

/// Builds the report of `studies` (one, or several to compare).
pub fn build(studies: &[StudyData], opts: &Options) -> Result<Report, crate::ReportError> {
    let names = display_names(studies);
    let mut figs = Vec::new();
    let mut body = Vec::new();
    if studies.len() > 1 {
        body.push(comparison(studies, &names, &mut figs));
    }
    for (i, d) in studies.iter().enumerate() {
        let prefix = if studies.len() > 1 {
            format!("s{}-", i + 1)
        } else {
            String::new()
        };
        let color = color_param(d, opts)?;
        body.push(study(d, &names[i], &prefix, color.as_deref(), &mut figs));
    }
    let running = studies.iter().any(|d| !d.finished);
    let title = format!("hps report: {}", names.join(" vs "));
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if running { meta http-equiv="refresh" content=(REFRESH_S); }
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body {
                h1 { (title) }
                p.meta {
                    "Written " (utc_now()) " by hps-master report. "
                    @if running { "Not every study is finished: this page reloads itself every " (REFRESH_S) " s." }
                    @else { "Every study is finished." }
                }
                (controls(studies, opts))
                @for b in &body { (b) }
                script type="application/json" id="hps-colors" { (PreEscaped(color_json(studies).replace("</", "<\\/"))) }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    };
    Ok(Report {
        html: page.into_string(),
        figures: figs,
    })
}

/// The studies' names, with the directory added where two share a name.
fn display_names(studies: &[StudyData]) -> Vec<String> {
    studies
        .iter()
        .map(|d| {
            let same = studies
                .iter()
                .filter(|o| o.study.name == d.study.name)
                .count();
            if same > 1 {
                format!("{} ({})", d.study.name, d.root.display())
            } else {
                d.study.name.clone()
            }
        })
        .collect()
}

fn color_param(d: &StudyData, opts: &Options) -> Result<Option<String>, crate::ReportError> {
    let params = searched(d);
    match &opts.color_by {
        Some(p) if params.iter().any(|(n, _)| n == p) => Ok(Some(p.clone())),
        Some(p) => Err(crate::ReportError::UnknownParam {
            name: p.clone(),
            known: params
                .iter()
                .map(|(n, _)| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", "),
        }),
        None => Ok(params.first().map(|(n, _)| n.to_string())),
    }
}

/// Renders `f` with its id prefixed, keeps it for `--figures`, and returns
/// its inline SVG. `budget` is added to the figure's note. `budget` is added to the figure's note.
fn put(figs: &mut Vec<Rendered>, prefix: &str, budget: &str, mut f: Figure, class: &str) -> Markup {
    f.id = format!("{prefix}{}", f.id);
    f.note = budget::with_note(f.note.take(), budget);
    let svg = f.to_svg();
    figs.push(Rendered {
        id: f.id.clone(),
        svg: svg.clone(),
    });
    html! { div class=(format!("fig {class}")) { (PreEscaped(svg)) } }
}

fn put_parallel(figs: &mut Vec<Rendered>, prefix: &str, budget: &str, mut p: Parallel) -> Markup {
    p.id = format!("{prefix}{}", p.id);
    p.note = budget::with_note(p.note.take(), budget);
    let svg = p.to_svg();
    figs.push(Rendered {
        id: p.id.clone(),
        svg: svg.clone(),
    });
    html! { div.fig.wide { (PreEscaped(svg)) } }
}

fn comparison(studies: &[StudyData], names: &[String], figs: &mut Vec<Rendered>) -> Markup {
    let budget = budget::comparison(studies, names);
    html! {
        section.part #compare {
            h2 { "Comparison of " (studies.len()) " studies" }
            p { "The best objective so far of each study against the number of evaluations, on shared axes: the solid line is the median over random orders of that study's results, the band their 25–75 % range, the dashed line the order the study actually ran in." }
            p.budget { (budget) }
            div.figs { (put(figs, "", &budget, history::comparison(studies, names), "wide")) }
            h3 { "Best setting and budget of each study" }
            (tables::comparison(studies, names))
            @if let Some(h) = hypothesis::comparison(studies, names) {
                h3 { "Hypotheses" }
                (h)
            }
        }
    }
}

fn study(
    d: &StudyData,
    name: &str,
    prefix: &str,
    color: Option<&str>,
    figs: &mut Vec<Rendered>,
) -> Markup {
    let s = &d.study;
    let by_status: BTreeMap<TrialStatus, usize> =
        d.results.iter().fold(BTreeMap::new(), |mut m, r| {
            *m.entry(r.status).or_default() += 1;
            m
        });
    let empty = d.results.is_empty();
    html! {
        section.study id=(format!("{prefix}study")) {
            h2 { "Study " (name) }
            div.part id=(format!("{prefix}part-summary")) { table.facts { tbody {
                tr { th { "directory" } td { (d.root.display()) } }
                @if let Some(desc) = &s.description { tr { th { "description" } td { (desc) } } }
                tr { th { "objective" } td { (s.objective.metric) " (" (s.objective.direction.as_str()) ")" } }
                tr { th { "sampler" } td { (s.sampler.name()) } }
                tr { th { "pruner" } td { (s.pruner.as_ref().map_or("none", |p| p.name())) } }
                tr { th { "trials" } td {
                    (d.planned().map_or("?".into(), |n| n.to_string())) " planned, "
                    (d.settings.len()) " proposed, " (d.pending) " pending, " (d.running.len()) " reporting progress, "
                    (d.results.len()) " finished"
                    @for (st, n) in &by_status { ", " (st.as_str()) " " (n) }
                } }
                tr { th { "state" } td { @if d.finished { "finished" } @else { "in progress (or stopped before its budget was spent)" } } }
            } } }
            @if empty {
                p.empty #empty { "No results yet: no trial of this study has finished, so there is nothing to plot. Start workers with `hps-worker`, and this page fills in as results arrive." }
            } @else {
                (sections(d, prefix, color, figs))
            }
        }
    }
}

fn sections(d: &StudyData, prefix: &str, color: Option<&str>, figs: &mut Vec<Rendered>) -> Markup {
    let ranked = d.ranked();
    let curves = curves::learning_curves(d, color);
    let instrumented: Vec<_> = ranked
        .iter()
        .map(|(r, _)| *r)
        .filter(|r| r.curve.iter().any(|e| e.instruments.is_some()))
        .take(curves::INSTRUMENTED)
        .collect();
    let part = |name: &str| format!("{prefix}part-{name}");
    let budget = budget::text(d);
    let answers = answers::answers(d, prefix, figs);
    html! {
        @if let Some(a) = answers { (a) }
        @if let Some(h) = hypothesis::section(d) {
            div.part id=(part("hypothesis")) {
                h3 { "Hypothesis" }
                (h)
            }
        }
        div.part id=(part("best")) {
            h3 { "Best trials" }
            @if ranked.is_empty() { p.empty { "No trial has completed with a finite objective yet." } }
            @else { (tables::best(d, 10)) }
        }
        div.part id=(part("history")) {
            h3 { "Optimisation history" }
            div.figs {
                (put(figs, prefix, &budget, history::history(d), ""))
                (put(figs, prefix, &budget, history::reshuffle_figure(d), ""))
            }
        }
        @if !curves.is_empty() {
            div.part id=(part("curves")) {
                h3 { "Learning curves" }
                p { "One line per setting, coloured by a hyperparameter (choose it above); a setting with repeats is drawn as the mean of its runs with a ± one std band (tick \"single runs\" to see them). Dashed: a trial that did not complete." }
                div.figs { @for f in curves { (put(figs, prefix, &budget, f, "curves")) } }
            }
        }
        div.part id=(part("params")) {
            h3 { "Hyperparameters" }
            div.figs {
                @for f in params::slices(d) { (put(figs, prefix, &budget, f, "")) }
                @for f in params::final_metrics(d) { (put(figs, prefix, &budget, f, "")) }
            }
            @if !ranked.is_empty() && !searched(d).is_empty() {
                div.figs { (put_parallel(figs, prefix, &budget, params::parallel(d))) }
            }
            @match params::importance_figure(d) {
                Some(f) => div.figs { (put(figs, prefix, &budget, f, "")) },
                None => p.empty { "Importance needs at least 4 complete trials." },
            }
        }
        div.part id=(part("settings")) {
            h3 { "Settings over their repeats or folds" }
            (tables::settings(d))
        }
        @if let Some(f) = curves::multi_fidelity(d) {
            div.part id=(part("fidelity")) {
                h3 { "Multi-fidelity: intermediate values" }
                div.figs { (put(figs, prefix, &budget, f, "")) }
            }
        }
        @if !instrumented.is_empty() {
            div.part id=(part("instruments")) {
                h3 { "Training instruments" }
                p { "Per epoch, as in Cockpit: the learning rate actually used, the gradient and weight norms, the update/weight ratio and each layer's activations. Trial: "
                    select.instr-select {
                        @for (k, r) in instrumented.iter().enumerate() {
                            option value=(r.trial_id) selected[k == 0] { (r.trial_id) " (rank " (k + 1) ", " (r.objective.map_or("-".into(), num)) ")" }
                        }
                    }
                }
                @for (k, r) in instrumented.iter().enumerate() {
                    div.figs.instr.shown[k == 0] data-trial=(r.trial_id) {
                        @for f in curves::instruments(r) { (put(figs, prefix, &budget, f, "small")) }
                    }
                }
            }
        }
        @if let Some(f) = timeline::timeline(d) {
            div.part id=(part("timeline")) {
                h3 { "Timeline" }
                div.figs { (put(figs, prefix, &budget, f, "wide")) }
            }
        }
        div.part id=(part("trials")) {
            h3 { "All trials" }
            (tables::trials(d))
        }
    }
}

fn controls(studies: &[StudyData], opts: &Options) -> Markup {
    let params: Vec<String> = studies
        .first()
        .map(|d| searched(d).iter().map(|(n, _)| n.to_string()).collect())
        .unwrap_or_default();
    let chosen = opts.color_by.clone().or_else(|| params.first().cloned());
    html! {
        div.controls {
            span { "Show: " }
            @for s in STATUSES {
                label { input.status-filter type="checkbox" value=(s.as_str()) checked; " " (s.as_str()) }
            }
            label { " curves: " select #top-k { option value="all" { "all" } option value="10" { "best 10" } option value="50" { "best 50" } } }
            label { input #show-repeats type="checkbox"; " single runs" }
            @if !params.is_empty() {
                label { " colour curves by " select #color-by {
                    @for p in &params { option value=(p) selected[Some(p) == chosen.as_ref()] { (p) } }
                } }
            }
        }
    }
}

/// Per parameter, the colour of each setting's curves, for the page's
/// colour-by choice.
fn color_json(studies: &[StudyData]) -> String {
    let mut all = serde_json::Map::new();
    for d in studies {
        for (name, spec) in searched(d) {
            let entry = all
                .entry(name.to_string())
                .or_insert_with(|| serde_json::json!({}));
            for r in &d.results {
                let config = d.settings.get(&r.trial_id).map_or(u64::MAX, |s| s.config);
                entry[config.to_string()] = trials::color_by(spec, r, name).css().into();
            }
        }
    }
    serde_json::Value::Object(all).to_string()
}

fn utc_now() -> String {
    let t = hps_common::files::unix_now() as i64;
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60
    )
}

const CSS: &str = r#"
body { font-family: sans-serif; margin: 0 2em 4em; color: #222; }
h1 { font-size: 1.5em; margin-top: 0.8em; }
h2 { border-bottom: 2px solid #ccc; margin-top: 1.6em; }
h3 { margin: 1.4em 0 0.4em; }
p.meta, p.note { color: #666; font-size: 0.9em; }
p.empty { color: #a33; }
.controls { position: sticky; top: 0; background: #f7f7f7; border: 1px solid #ddd; padding: 6px 10px; z-index: 1; font-size: 0.9em; }
.controls label { margin-right: 0.8em; }
.figs { display: flex; flex-wrap: wrap; gap: 12px; }
.fig { flex: 0 1 560px; }
.fig.small { flex-basis: 380px; }
.fig.wide { flex-basis: 100%; max-width: 1100px; }
.fig svg { background: #fff; border: 1px solid #e3e3e3; width: 100%; height: auto; }
table { border-collapse: collapse; font-size: 13px; margin: 0.4em 0; }
th, td { padding: 2px 8px; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.err { color: #666; max-width: 40em; }
table.facts th { color: #666; font-weight: normal; }
caption { caption-side: top; text-align: left; color: #666; font-size: 0.9em; padding: 2px 0; }
p.budget { color: #666; font-size: 0.9em; }
blockquote.hypothesis { font-style: italic; margin: 0.4em 0 0.4em 1em; }
.instr { display: none; }
.instr.shown { display: flex; }
svg .repeat-run { display: none; }
.show-repeats svg .repeat-run { display: inline; }
.hide-complete .status-complete, .hide-pruned .status-pruned, .hide-diverged .status-diverged,
.hide-failed .status-failed, .hide-invalid .status-invalid { display: none; }
.only-top-10 .curves g.series:not(.top-10), .only-top-50 .curves g.series:not(.top-50) { display: none; }
"#;

const SCRIPT: &str = r#"
(function () {
  var body = document.body;
  document.querySelectorAll('input.status-filter').forEach(function (cb) {
    cb.addEventListener('change', function () { body.classList.toggle('hide-' + cb.value, !cb.checked); });
  });
  var top = document.getElementById('top-k');
  if (top) top.addEventListener('change', function () {
    body.classList.remove('only-top-10', 'only-top-50');
    if (top.value !== 'all') body.classList.add('only-top-' + top.value);
  });
  var rep = document.getElementById('show-repeats');
  if (rep) rep.addEventListener('change', function () { body.classList.toggle('show-repeats', rep.checked); });
  var colors = JSON.parse(document.getElementById('hps-colors').textContent);
  var by = document.getElementById('color-by');
  if (by) by.addEventListener('change', function () {
    var map = colors[by.value] || {};
    document.querySelectorAll('.curves g.series').forEach(function (g) {
      var cfg = null;
      g.classList.forEach(function (c) { if (c.indexOf('cfg-') === 0) cfg = c.slice(4); });
      var c = cfg === null ? undefined : map[cfg];
      if (!c) return;
      g.querySelectorAll('path, polygon, polyline').forEach(function (e) {
        if (e.getAttribute('stroke') && e.getAttribute('stroke') !== 'none') e.setAttribute('stroke', c);
        if (e.getAttribute('fill') && e.getAttribute('fill') !== 'none') e.setAttribute('fill', c);
      });
    });
    document.querySelectorAll('.curves .colorbar').forEach(function (e) { e.style.display = 'none'; });
  });
  document.querySelectorAll('select.instr-select').forEach(function (sel) {
    sel.addEventListener('change', function () {
      var section = sel.closest('section');
      section.querySelectorAll('.instr').forEach(function (d) {
        d.classList.toggle('shown', d.getAttribute('data-trial') === sel.value);
      });
    });
  });
  body.setAttribute('data-ready', '1');
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use hps_common::{EpochStat, Progress, ProgressPoint, TrialResult, TrialSetting};
    use hps_shared_fs::testing::branin_study_dir;

    fn epoch(e: u32, v: f64) -> EpochStat {
        EpochStat {
            train_error: None,
            epoch: e,
            elapsed_s: f64::from(e),
            train_loss: v,
            val_loss: v,
            val_error: v,
            instruments: None,
        }
    }

    /// A study in progress with every status, a curve, a running trial and
    /// a non-finite objective: the page has every section it can draw.
    #[test]
    fn a_study_in_progress_with_every_status_gets_a_full_page() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = branin_study_dir(&tmp.path().join("s"), 20);
        let statuses = [
            (TrialStatus::Complete, Some(3.0)),
            (TrialStatus::Complete, Some(1.5)),
            (TrialStatus::Complete, Some(f64::NAN)),
            (TrialStatus::Complete, Some(7.0)),
            (TrialStatus::Complete, Some(2.0)),
            (TrialStatus::Pruned, None),
            (TrialStatus::Diverged, None),
            (TrialStatus::Failed, None),
            (TrialStatus::Invalid, None),
        ];
        for (i, (status, objective)) in statuses.iter().enumerate() {
            let params = [
                ("x0".to_string(), serde_json::json!(i as f64 - 4.0)),
                ("x1".to_string(), serde_json::json!(i as f64)),
            ]
            .into_iter()
            .collect();
            let s = TrialSetting::new(i as u64, params, 3, "random");
            dir.record_setting(&s).unwrap();
            let mut r = TrialResult::for_setting(&s, &format!("w{}", i % 2), "cpu");
            r.status = *status;
            r.objective = *objective;
            r.wall_time_s = 1.0 + i as f64;
            r.finished_at_unix = 1000.0 + 3.0 * i as f64;
            r.curve = (1..=3)
                .map(|e| epoch(e, 1.0 / f64::from(e) + i as f64))
                .collect();
            r.attempt = if i == 3 { 2 } else { 1 };
            dir.submit_result(&r).unwrap();
        }
        let running = TrialSetting::new(9, Default::default(), 3, "random");
        dir.record_setting(&running).unwrap();
        dir.write_progress(&Progress {
            format_version: 1,
            trial_id: running.trial_id.clone(),
            worker: "w0".into(),
            attempt: 1,
            points: vec![ProgressPoint {
                step: 1,
                value: 0.5,
            }],
            curve: vec![epoch(1, 0.5)],
            reports: vec![],
            updated_at_unix: 1030.0,
        })
        .unwrap();
        let d = StudyData::load(dir.root()).unwrap();
        assert_eq!(d.running.len(), 1);
        let r = build(&[d], &Options::default()).unwrap();
        for id in [
            "history",
            "reshuffle",
            "curve-val-error-epoch",
            "slice-x0",
            "parallel",
            "importance",
            "fidelity",
            "timeline",
        ] {
            assert!(r.figures.iter().any(|f| f.id == id), "{id} is drawn");
        }
        assert!(
            r.html.contains(r#"http-equiv="refresh""#),
            "a study in progress reloads"
        );
        for s in STATUSES {
            let row = format!(r#"<tr class="trial status-{}">"#, s.as_str());
            assert!(r.html.contains(&row), "{row}");
        }
        // The timeline shows the running trial and the re-queued one.
        for f in &r.figures {
            assert!(
                f.svg
                    .contains("budget: one evaluation of branin per trial, no training"),
                "{}",
                f.id
            );
        }
        let timeline = &r.figures.iter().find(|f| f.id == "timeline").unwrap().svg;
        assert!(
            timeline.contains("running") && timeline.contains("re-queued"),
            "{timeline}"
        );
    }

    /// A cnn study over `lr` in memory: `runs` are (lr, objective) of
    /// complete trials; trials of one lr share a setting.
    pub(super) fn lr_study(
        name: &str,
        epochs: u32,
        repeats: u32,
        runs: &[(f64, f64)],
    ) -> StudyData {
        let study: hps_common::Study = serde_json::from_value(serde_json::json!({
            "format_version": 1, "name": name,
            "space": {"lr": {"type": "categorical", "choices": [0.1, 0.01, 0.001]}},
            "objective": {"metric": "val_error", "direction": "minimize"},
            "sampler": {"kind": "grid"}, "repeats": repeats,
            "budget": {"epochs": epochs},
            "trainer": {"kind": "cnn"},
            "hypothesis": {"text": "a smaller learning rate lowers the error", "param": "lr",
                           "baseline": 0.1, "expect": "lower"}
        }))
        .unwrap();
        let mut settings = BTreeMap::new();
        let mut results = Vec::new();
        for (i, &(lr, objective)) in runs.iter().enumerate() {
            let params = [("lr".to_string(), serde_json::json!(lr))]
                .into_iter()
                .collect();
            let mut s = TrialSetting::new(i as u64, params, epochs, "grid");
            s.config = [0.1, 0.01, 0.001].iter().position(|&v| v == lr).unwrap() as u64;
            let mut r = TrialResult::for_setting(&s, "w0", "cpu");
            r.status = TrialStatus::Complete;
            r.objective = Some(objective);
            r.curve = (1..=3)
                .map(|e| epoch(e, objective + 1.0 / f64::from(e)))
                .collect();
            settings.insert(s.trial_id.clone(), s);
            results.push(r);
        }
        StudyData {
            root: std::path::PathBuf::from(name),
            study,
            settings,
            results,
            running: Vec::new(),
            pending: 0,
            paused: 0,
            finished: true,
        }
    }

    const REPEATED: &[(f64, f64)] = &[
        (0.1, 0.30),
        (0.1, 0.31),
        (0.1, 0.29),
        (0.01, 0.20),
        (0.01, 0.21),
        (0.01, 0.19),
        (0.001, 0.21),
        (0.001, 0.17),
        (0.001, 0.25),
    ];

    /// Seeds 000/002/003: with repeats, each setting is tested against the
    /// best, the hypothesis gets a verdict per value, and every figure and
    /// table states the budget.
    #[test]
    fn a_study_with_repeats_states_significance_verdicts_and_its_budget() {
        let d = lr_study("lr", 20, 3, REPEATED);
        let r = build(&[d], &Options::default()).unwrap();
        let budget = "budget: 20 epochs × 5,000 training examples, 1,000 validation examples";
        for f in &r.figures {
            assert!(f.svg.contains(budget), "{}: {}", f.id, f.svg);
        }
        // Best, settings and trial tables carry it as their caption.
        assert!(
            r.html
                .matches(&format!("<caption>{budget}</caption>"))
                .count()
                >= 4
        );
        // lr 0.1 is clearly worse than the best (0.01); 0.001 is not.
        assert!(r.html.contains(">significant (p"), "{}", r.html);
        assert!(r.html.contains(">not significant (p = "), "{}", r.html);
        assert!(!r.html.contains(tables::SINGLE_RUN));
        // The hypothesis section comes before the best trials.
        let h = r
            .html
            .find("<h3>Hypothesis</h3>")
            .expect("a hypothesis section");
        assert!(h < r.html.find("<h3>Best trials</h3>").unwrap());
        assert!(r.html.contains("a smaller learning rate lowers the error"));
        assert!(r.html.contains(">supported<") && r.html.contains(">inconclusive<"));
    }

    #[test]
    fn a_single_run_study_says_a_single_run_is_not_evidence() {
        let runs = [(0.1, 0.3), (0.01, 0.2), (0.001, 0.25)];
        let d = lr_study("lr", 20, 1, &runs);
        let r = build(&[d], &Options::default()).unwrap();
        // Under the best trials, in the settings part, and for each value
        // of the hypothesis.
        assert!(
            r.html.matches(tables::SINGLE_RUN).count() >= 3,
            "{}",
            r.html
        );
        assert!(!r.html.contains("significant (p"));
    }

    #[test]
    fn a_comparison_at_different_budgets_says_so() {
        let a = lr_study("long", 50, 3, REPEATED);
        let b = lr_study("short", 20, 3, REPEATED);
        let r = build(&[a, b], &Options::default()).unwrap();
        let text = "at different budgets: long 50 epochs × 5,000 examples, \
                    short 20 epochs × 5,000 examples — not a like-for-like comparison";
        let fig = r.figures.iter().find(|f| f.id == "compare-best").unwrap();
        assert!(fig.svg.contains(text), "{}", fig.svg);
        assert!(
            r.html.contains(&format!("<caption>{text}</caption>")),
            "{}",
            r.html
        );
        // One row per compared value of each study, and the best model.
        assert!(r.html.contains("<h3>Hypotheses</h3>"));
        assert!(r
            .html
            .contains("Best model found over all studies: long, trial t0000"));
        // The same budget is said once for all.
        let a = lr_study("a", 20, 3, REPEATED);
        let b = lr_study("b", 20, 3, REPEATED);
        let r = build(&[a, b], &Options::default()).unwrap();
        assert!(!r.html.contains("at different budgets"));
        assert!(r.html.contains("budget of every study: 20 epochs"));
    }

    #[test]
    fn an_unknown_colour_parameter_is_refused_with_the_known_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = branin_study_dir(&tmp.path().join("s"), 2);
        let d = StudyData::load(dir.root()).unwrap();
        let opts = Options {
            color_by: Some("lr".into()),
        };
        let e = build(&[d], &opts).unwrap_err().to_string();
        assert!(e.contains("`lr`") && e.contains("`x0`, `x1`"), "{e}");
    }
}
