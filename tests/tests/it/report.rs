//! The offline HTML report (issue 11) end to end: real studies run by the
//! real binaries, their reports written by `hps-master report` and opened
//! in headless Chromium, which must show every figure with the number of
//! series the study's files call for, and no console error.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use hps_common::{TrialResult, TrialStatus};
use hps_tests::browser::{chromium_or_skip, Loaded};
use hps_tests::{
    arg, cnn_args, hps_master, idx_data, init_study, read_results, run_study, stdout_ok,
};

/// `data-series` and `data-points` of every `<svg class="figure">`, by id.
fn figures(dom: &str) -> BTreeMap<String, (usize, usize)> {
    let mut out = BTreeMap::new();
    for tag in dom.split("<svg").skip(1) {
        let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
        if !attr(tag, "class").is_some_and(|c| c.split(' ').any(|w| w == "figure")) {
            continue;
        }
        let num = |name| attr(tag, name).and_then(|v| v.parse().ok()).unwrap_or(0);
        if let Some(id) = attr(tag, "id") {
            out.insert(id.to_string(), (num("data-series"), num("data-points")));
        }
    }
    out
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    Some(&tag[start..start + tag[start..].find('"')?])
}

/// Write the report of `dirs` to `out` with the real binary and open it.
fn report(dirs: &[&Path], out: &Path, shots: &Path, test: &str) -> Option<Loaded> {
    let chromium = chromium_or_skip(test)?;
    let mut args = vec!["report"];
    args.extend(dirs.iter().map(|d| arg(d)));
    args.extend(["-o", arg(out)]);
    let text = stdout_ok(hps_master(&args));
    assert!(text.contains(&*out.to_string_lossy()), "{text}");
    let loaded = chromium
        .load_sections(out, shots, Some(".part"))
        .expect("the browser loads the report");
    assert!(
        loaded.console_errors.is_empty(),
        "console errors in {}: {:?}",
        out.display(),
        loaded.console_errors
    );
    assert!(
        loaded.dom.contains("data-ready=\"1\""),
        "the page's script ran to its end"
    );
    assert!(std::fs::metadata(&loaded.screenshot).is_ok_and(|m| m.len() > 10_000));
    Some(loaded)
}

fn function_study(name: &str, sampler: &str) -> String {
    serde_json::json!({
        "format_version": 1, "name": name,
        "space": {
            "x0": {"type": "float", "low": -5, "high": 10},
            "x1": {"type": "float", "low": 0.01, "high": 15, "log": true}
        },
        "objective": {"metric": "value", "direction": "minimize"},
        "sampler": {"kind": sampler, "seed": 3},
        "budget": {"trials": 16},
        "mode": {"kind": "async", "queue": 2},
        "trainer": {"kind": "function", "name": "branin"}
    })
    .to_string()
}

/// A tiny cnn study over learning rates `lrs`: with `repeats`, or with
/// ASHA (pruners compare single runs) on one worker so the order is fixed
/// and the bad learning rate, reaching the first rung after the good one,
/// is stopped there.
fn cnn_study(name: &str, lrs: &[f64], repeats: u32, asha: bool) -> String {
    let mut s = serde_json::json!({
        "format_version": 1, "name": name,
        "space": {
            "lr": {"type": "categorical", "choices": lrs},
            "weight_decay": {"type": "fixed", "value": 0.0001},
            "nf": {"type": "fixed", "value": 3},
            "batch_size": {"type": "fixed", "value": 32}
        },
        "objective": {"metric": "val_error", "direction": "minimize"},
        "sampler": {"kind": "grid"},
        "repeats": repeats,
        "budget": {"epochs": 3},
        "mode": {"kind": "async", "queue": 1},
        "trainer": {"kind": "cnn", "defaults": {"train_size": 200, "val_size": 100, "test_size": 60}}
    });
    if asha {
        s["pruner"] = serde_json::json!({"kind": "asha", "min_epochs": 1, "eta": 2});
    }
    s.to_string()
}

fn objectives(results: &[TrialResult]) -> usize {
    results
        .iter()
        .filter(|r| r.objective.is_some_and(f64::is_finite))
        .count()
}

fn complete(results: &[TrialResult]) -> usize {
    results
        .iter()
        .filter(|r| r.status == TrialStatus::Complete)
        .count()
}

#[test]
fn reports_of_real_studies_show_every_figure_in_a_browser() {
    let test = "report::reports_of_real_studies_show_every_figure_in_a_browser";
    if chromium_or_skip(test).is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let shots = t.join("shots");

    // Two cnn studies on generated data: one with repeats, one with pruning.
    let data = idx_data(t, 300, 60, 5);
    let args = cnn_args(&data);
    let (rep, asha) = (t.join("repeats"), t.join("asha"));
    // It reproduces Scenario 1, so its report opens with the answers.
    let mut s1: serde_json::Value =
        serde_json::from_str(&cnn_study("repeats", &[0.1, 0.02], 2, false)).unwrap();
    s1["exercise"] = "s1".into();
    init_study(&rep, &s1.to_string());
    init_study(
        &asha,
        &cnn_study("asha", &[0.1, 0.00001, 0.000001], 1, true),
    );
    for s in [&rep, &asha] {
        run_study(s, t, "0.2", &[("w0", &args)], Duration::from_secs(300));
        // The master wrote the report when the study finished.
        assert!(s.join("report.html").is_file());
    }

    let results = read_results(&rep);
    assert_eq!(results.len(), 4);
    let loaded = report(&[&rep], &t.join("repeats.html"), &shots, test).unwrap();
    let figs = figures(&loaded.dom);
    // History: one series per status with an objective, and best so far.
    assert!(figs["history"].0 >= 2, "{figs:?}");
    // Reshuffle: band, 20 orders, median, the study's order.
    assert_eq!(figs["reshuffle"].0, 23, "{figs:?}");
    // Learning curves: every trial's line, and mean and band per setting.
    for q in ["train-loss", "val-loss", "val-error"] {
        for x in ["epoch", "time"] {
            let id = format!("curve-{q}-{x}");
            assert_eq!(figs[&id].0, 4 + 2 * 2, "{id}: {figs:?}");
        }
    }
    // The answers to Scenario 1: the three plots of all runs, with the
    // same series, and one behaviour row per learning rate.
    assert!(loaded.dom.contains("id=\"part-answers\""));
    for q in ["train-loss", "val-loss", "val-error"] {
        let id = format!("answers-curve-{q}-epoch");
        assert_eq!(figs[&id].0, 4 + 2 * 2, "{id}: {figs:?}");
    }
    let table = loaded
        .dom
        .split("<table class=\"behaviour\">")
        .nth(1)
        .unwrap();
    let table = &table[..table.find("</table>").unwrap()];
    assert_eq!(table.matches("<tr>").count(), 1 + 2, "{table}");
    assert!(loaded.dom.contains("docs/randomness.md"));
    assert_eq!(
        figs["slice-lr"].1,
        objectives(&results),
        "one point per trial with an objective"
    );
    // Seed 004: final loss (train, val) and accuracy against lr: a mean
    // line and the single trials per metric.
    assert_eq!(figs["final-loss-lr"].0, 4, "{figs:?}");
    assert_eq!(figs["final-accuracy-lr"].0, 2, "{figs:?}");
    // Instruments of the best trial: 6 figures.
    let best = results
        .iter()
        .filter(|r| r.status == TrialStatus::Complete)
        .min_by(|a, b| a.objective.unwrap().total_cmp(&b.objective.unwrap()))
        .unwrap();
    for k in ["lr", "grad", "weight", "update", "act-mean", "act-std"] {
        let id = format!("instr-{}-{k}", best.trial_id);
        assert!(figs.get(&id).is_some_and(|f| f.0 >= 1), "{id}: {figs:?}");
    }
    assert!(figs["timeline"].0 >= 1);
    assert_eq!(figs["parallel"].0, complete(&results));
    // The settings table: n, mean and CI over each rate's two runs, and
    // the other rate against the best by Welch's test.
    assert_eq!(
        loaded.dom.matches("<td>repeats</td>").count(),
        2,
        "settings table"
    );
    assert!(loaded.dom.contains("significant (p"), "Welch's label");
    // Every figure and table states the budget.
    let budget = "budget: 3 epochs × 200 training examples, 100 validation examples";
    assert_eq!(
        loaded
            .dom
            .matches(&format!("<caption>{budget}</caption>"))
            .count(),
        3,
        "best, settings and trial tables"
    );
    for tag in loaded.dom.split("<svg").skip(1) {
        let svg = &tag[..tag.find("</svg>").unwrap_or(tag.len())];
        if svg[..svg.find('>').unwrap_or(0)].contains("class=\"figure\"") {
            assert!(svg.contains(budget), "a figure without the budget: {svg}");
        }
    }
    // The trial table: one row per trial, classed by status.
    assert_eq!(loaded.dom.matches("<tr class=\"trial status-").count(), 4);
    assert!(
        !loaded.dom.contains("http-equiv=\"refresh\""),
        "a finished study's page stays put"
    );

    // Every figure as its own file, SVG and PNG.
    for (format, magic) in [("svg", &b"<svg"[..]), ("png", &b"\x89PNG"[..])] {
        let out = t.join(format!("figs-{format}"));
        let page = t.join(format!("with-{format}.html"));
        let args = [
            "report",
            arg(&rep),
            "-o",
            arg(&page),
            "--figures",
            arg(&out),
            "--format",
            format,
        ];
        stdout_ok(hps_master(&args));
        for id in figs.keys() {
            let file = out.join(format!("{id}.{format}"));
            let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert!(bytes.starts_with(magic), "{}", file.display());
        }
    }

    let results = read_results(&asha);
    let pruned = results
        .iter()
        .filter(|r| r.status == TrialStatus::Pruned)
        .count();
    assert!(
        pruned >= 1,
        "a pruned trial: {:?}",
        results.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let loaded = report(&[&asha], &t.join("asha.html"), &shots, test).unwrap();
    let figs = figures(&loaded.dom);
    assert!(
        loaded.dom.contains("a single run is not evidence"),
        "one run per setting"
    );
    // Multi-fidelity: every trial, a cross where each pruned one stopped,
    // and the decision epoch(s).
    assert!(figs["fidelity"].0 > results.len() + pruned, "{figs:?}");
    assert_eq!(
        loaded
            .dom
            .matches("<tr class=\"trial status-pruned")
            .count(),
        pruned
    );

    // Two function studies, compared.
    let (a, b) = (t.join("random"), t.join("tpe"));
    init_study(&a, &function_study("random", "random"));
    init_study(&b, &function_study("tpe", "tpe"));
    for s in [&a, &b] {
        run_study(
            s,
            t,
            "0.2",
            &[("f0", &[]), ("f1", &[])],
            Duration::from_secs(120),
        );
    }
    let page = t.join("compare.html");
    let loaded = report(&[&a, &b], &page, &shots, test).unwrap();
    let figs = figures(&loaded.dom);
    // Per study: band, median and its own order.
    assert_eq!(figs["compare-best"].0, 6, "{figs:?}");
    for (i, s) in [&a, &b].iter().enumerate() {
        let results = read_results(s);
        let p = format!("s{}-", i + 1);
        assert_eq!(figs[&format!("{p}slice-x0")].1, objectives(&results));
        assert_eq!(figs[&format!("{p}slice-x1")].1, objectives(&results));
        assert_eq!(
            figs[&format!("{p}parallel")].0,
            complete(&results),
            "one line per complete trial"
        );
        assert_eq!(figs[&format!("{p}importance")].0, 2, "bars and whiskers");
        assert!(figs[&format!("{p}timeline")].0 >= 1);
    }
    assert!(loaded.dom.contains("Best setting and budget of each study"));
    assert!(loaded
        .dom
        .contains("budget of every study: one evaluation of branin per trial, no training"));

    // A study with no result yet says so.
    let empty = t.join("empty");
    init_study(&empty, &function_study("empty", "random"));
    let page = t.join("empty.html");
    let loaded = report(&[&empty], &page, &shots, test).unwrap();
    assert!(
        loaded.dom.contains("id=\"empty\""),
        "the empty study says so"
    );
    assert!(figures(&loaded.dom).is_empty());
    eprintln!("screenshots in {}", shots.display());
    // Keep the pages and screenshots when asked (to look at them).
    if let Some(keep) = std::env::var_os("HPS_KEEP_REPORT") {
        hps_tests::copy_dir(t, Path::new(&keep));
    }
}
