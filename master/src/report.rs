//! The read-only inspection commands: `status`, `best` and `export`.
//!
//! They only read the study directory, so they are safe to run at any time,
//! from any host, while a master and its workers are running. A file that
//! cannot be parsed (a corrupt result, setting or heartbeat) is skipped with
//! a warning naming it; it never aborts the report.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use anyhow::{Context, Result};
use hps_common::files::unix_now;
use hps_common::{
    Direction, Heartbeat, Mode, SamplerSpec, Study, TrialResult, TrialSetting, TrialStatus,
    WorkerState,
};
use hps_shared_fs::dir::read_json;
use hps_shared_fs::{Claim, FsError, StudyDir, Sub};
use serde_json::Value;

/// Output format of `hps-master export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Jsonl,
}

/// `hps-master status DIR`: what the study is, how far it got, which
/// workers are alive and the best trial so far.
pub fn status(dir: &StudyDir, out: &mut dyn Write) -> Result<()> {
    let study = load_study(dir)?;
    let proposed = list(dir, Sub::Settings)?.len();
    let pending = list(dir, Sub::Pending)?.len();
    let paused = list(dir, Sub::Paused)?.len();
    let running = dir
        .list_running()
        .with_context(|| format!("failed to list `{}`", dir.sub(Sub::Running).display()))?
        .len();
    let results = load_results(dir)?;
    let done = results.len();
    let mut by_status: BTreeMap<TrialStatus, usize> = BTreeMap::new();
    for r in &results {
        *by_status.entry(r.status).or_default() += 1;
    }
    let planned = match study.total_trials() {
        Ok(n) => n.to_string(),
        Err(_) => "?".into(),
    };
    let breakdown = if by_status.is_empty() {
        String::new()
    } else {
        let parts: Vec<String> = by_status
            .iter()
            .map(|(s, n)| format!("{} {n}", s.as_str()))
            .collect();
        format!(" ({})", parts.join(", "))
    };

    writeln!(out, "study      {}", study.name)?;
    writeln!(out, "sampler    {}", sampler_text(&study.sampler))?;
    writeln!(out, "mode       {}", mode_text(&study.mode))?;
    writeln!(
        out,
        "objective  {} ({})",
        study.objective.metric,
        direction_text(study.objective.direction)
    )?;
    let paused_text = if paused > 0 {
        format!(", paused {paused}")
    } else {
        String::new()
    };
    writeln!(
        out,
        "trials     planned {planned}, proposed {proposed}, pending {pending}, running {running}{paused_text}, \
         done {done}{breakdown}"
    )?;
    writeln!(
        out,
        "finished   {}",
        if dir.is_finished() {
            "yes (finished.json present)"
        } else {
            "no"
        }
    )?;
    match ranked(&study, &results).first() {
        Some(best) => {
            let params: Vec<String> = best
                .params
                .iter()
                .map(|(k, v)| format!("{k}={}", value_text(v)))
                .collect();
            writeln!(
                out,
                "best       {}  {} {}  {}",
                best.trial_id,
                study.objective.metric,
                num_short(best.objective.unwrap_or(f64::NAN)),
                params.join(" ")
            )?;
        }
        None => writeln!(out, "best       - (no complete trial yet)")?,
    }

    let beats = load_heartbeats(dir)?;
    writeln!(out)?;
    if beats.is_empty() {
        writeln!(out, "workers    none has written a heartbeat yet")?;
        return Ok(());
    }
    let now = unix_now();
    let live = beats
        .iter()
        .filter(|hb| liveness(hb, now) == "live")
        .count();
    writeln!(
        out,
        "workers    {live} live of {} (beat ages are approximate: the worker's clock against this host's)",
        beats.len()
    )?;
    let mut t = Table::new(&[
        ("worker", false),
        ("host", false),
        ("device", false),
        ("state", false),
        ("trial", false),
        ("epoch", true),
        ("last beat", true),
        ("", false),
    ]);
    for hb in &beats {
        t.row(vec![
            hb.worker.clone(),
            hb.host.clone(),
            hb.device.clone(),
            hb.state.to_string(),
            hb.trial.clone().unwrap_or_else(|| "-".into()),
            hb.epoch
                .map(|e| e.to_string())
                .unwrap_or_else(|| "-".into()),
            format!("~{:.0}s ago", now - hb.written_at_unix),
            liveness(hb, now).to_string(),
        ]);
    }
    t.write(out, "  ")?;
    Ok(())
}

/// `hps-master best DIR -n N`: the `n` best complete trials.
pub fn best(dir: &StudyDir, n: usize, out: &mut dyn Write) -> Result<()> {
    let study = load_study(dir)?;
    let results = load_results(dir)?;
    let ranked = ranked(&study, &results);
    if ranked.is_empty() {
        writeln!(
            out,
            "no results yet: no complete trial with a `{}` objective in `{}`",
            study.objective.metric,
            dir.root().display()
        )?;
        return Ok(());
    }
    let mut cols: Vec<(&str, bool)> = vec![
        ("rank", true),
        ("trial", false),
        (&study.objective.metric, true),
    ];
    // The held-out error next to the objective, when the trainer reports
    // it and it is not the objective itself.
    let test_col = (study.objective.metric != "test_error"
        && ranked.iter().any(|r| r.metrics.contains_key("test_error")))
    .then_some("test_error");
    if let Some(c) = test_col {
        cols.push((c, true));
    }
    cols.extend(study.space.keys().map(|k| (k.as_str(), true)));
    cols.extend([
        ("seed", true),
        ("best_epoch", true),
        ("wall_time_s", true),
        ("worker", false),
    ]);
    let mut t = Table::new(&cols);
    for (i, r) in ranked.iter().take(n).enumerate() {
        let mut row = vec![
            (i + 1).to_string(),
            r.trial_id.clone(),
            num_short(r.objective.unwrap_or(f64::NAN)),
        ];
        if let Some(c) = test_col {
            row.push(
                r.metrics
                    .get(c)
                    .map(|v| num_short(*v))
                    .unwrap_or_else(|| "-".into()),
            );
        }
        row.extend(study.space.keys().map(|k| {
            r.params
                .get(k)
                .map(value_text)
                .unwrap_or_else(|| "-".into())
        }));
        row.extend([
            r.seed.to_string(),
            r.best_epoch
                .map(|e| e.to_string())
                .unwrap_or_else(|| "-".into()),
            format!("{:.1}", r.wall_time_s),
            r.worker.clone(),
        ]);
        t.row(row);
    }
    t.write(out, "")?;
    Ok(())
}

/// `hps-master export DIR --format csv|jsonl`: one row per proposed trial
/// (every file in `settings/`), in trial order, finished or not.
///
/// A trial without a result has status `pending` (in `pending/`), `running`
/// (claimed in `running/`) or `proposed` (recorded but not yet published).
pub fn export(dir: &StudyDir, format: ExportFormat, out: &mut dyn Write) -> Result<()> {
    let study = load_study(dir)?;
    let mut settings = load_settings(dir)?;
    settings.sort_by(|a, b| (a.index, &a.trial_id).cmp(&(b.index, &b.trial_id)));
    let results: BTreeMap<String, TrialResult> = load_results(dir)?
        .into_iter()
        .map(|r| (r.trial_id.clone(), r))
        .collect();
    let pending: BTreeSet<String> = list(dir, Sub::Pending)?.into_iter().collect();
    let paused: BTreeSet<String> = list(dir, Sub::Paused)?.into_iter().collect();
    let mut claims: BTreeMap<String, Claim> = BTreeMap::new();
    for c in dir
        .list_running()
        .with_context(|| format!("failed to list `{}`", dir.sub(Sub::Running).display()))?
    {
        claims.entry(c.trial_id.clone()).or_insert(c);
    }

    let param_keys: BTreeSet<String> = study
        .space
        .keys()
        .cloned()
        .chain(settings.iter().flat_map(|s| s.params.keys().cloned()))
        .collect();
    let metric_keys: BTreeSet<String> = results
        .values()
        .flat_map(|r| r.metrics.keys().cloned())
        .collect();

    let rows: Vec<Row> = settings
        .iter()
        .map(|s| {
            let result = results.get(&s.trial_id);
            let claim = claims.get(&s.trial_id);
            let (status, attempt, worker) = if let Some(r) = result {
                (
                    r.status.as_str().to_string(),
                    r.attempt,
                    Some(r.worker.clone()),
                )
            } else if let Some(c) = claim {
                // The claim file holds the current attempt (re-queues bump it).
                let attempt = dir.read_claim(c).map(|c| c.attempt).unwrap_or(s.attempt);
                ("running".to_string(), attempt, Some(c.worker.clone()))
            } else if pending.contains(&s.trial_id) {
                let attempt = dir
                    .pending_path(&s.trial_id)
                    .ok()
                    .and_then(|p| read_json::<TrialSetting>(&p).ok())
                    .map(|p| p.attempt)
                    .unwrap_or(s.attempt);
                ("pending".to_string(), attempt, None)
            } else if paused.contains(&s.trial_id) {
                ("paused".to_string(), s.attempt, None)
            } else {
                ("proposed".to_string(), s.attempt, None)
            };
            Row {
                setting: s,
                result,
                status,
                attempt,
                worker,
            }
        })
        .collect();

    match format {
        ExportFormat::Csv => write_csv(&rows, &param_keys, &metric_keys, out),
        ExportFormat::Jsonl => write_jsonl(&rows, out),
    }
}

/// One line of the export: a setting and, when it has one, its result.
struct Row<'a> {
    setting: &'a TrialSetting,
    result: Option<&'a TrialResult>,
    status: String,
    attempt: u32,
    worker: Option<String>,
}

fn write_csv(
    rows: &[Row],
    param_keys: &BTreeSet<String>,
    metric_keys: &BTreeSet<String>,
    out: &mut dyn Write,
) -> Result<()> {
    let mut header: Vec<String> = [
        "trial_id",
        "index",
        "config",
        "repeat",
        "seed",
        "attempt",
        "status",
        "objective",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    header.extend(param_keys.iter().map(|k| format!("param_{k}")));
    header.extend(metric_keys.iter().map(|k| format!("metric_{k}")));
    header.extend(
        [
            "best_epoch",
            "epochs_completed",
            "wall_time_s",
            "worker",
            "device",
            "error",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    write_csv_line(out, &header)?;
    for row in rows {
        let s = row.setting;
        let r = row.result;
        let mut cells = vec![
            s.trial_id.clone(),
            s.index.to_string(),
            s.config.to_string(),
            s.repeat.to_string(),
            s.seed.to_string(),
            row.attempt.to_string(),
            row.status.clone(),
            r.and_then(|r| r.objective)
                .map(num_full)
                .unwrap_or_default(),
        ];
        cells.extend(
            param_keys
                .iter()
                .map(|k| s.params.get(k).map(value_full).unwrap_or_default()),
        );
        cells.extend(metric_keys.iter().map(|k| {
            r.and_then(|r| r.metrics.get(k))
                .copied()
                .map(num_full)
                .unwrap_or_default()
        }));
        cells.extend([
            r.and_then(|r| r.best_epoch)
                .map(|e| e.to_string())
                .unwrap_or_default(),
            r.map(|r| r.epochs_completed.to_string())
                .unwrap_or_default(),
            r.map(|r| num_full(r.wall_time_s)).unwrap_or_default(),
            row.worker.clone().unwrap_or_default(),
            r.map(|r| r.device.clone()).unwrap_or_default(),
            r.and_then(|r| r.error.clone()).unwrap_or_default(),
        ]);
        write_csv_line(out, &cells)?;
    }
    Ok(())
}

fn write_jsonl(rows: &[Row], out: &mut dyn Write) -> Result<()> {
    let opt_num = |v: Option<f64>| {
        v.and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    };
    for row in rows {
        let s = row.setting;
        let r = row.result;
        let params: serde_json::Map<String, Value> = s
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let metrics: serde_json::Map<String, Value> = r
            .map(|r| {
                r.metrics
                    .iter()
                    .filter_map(|(k, v)| {
                        Some((k.clone(), Value::Number(serde_json::Number::from_f64(*v)?)))
                    })
                    .collect()
            })
            .unwrap_or_default();
        // Written field by field so the keys keep the CSV's column order.
        let fields: [(&str, Value); 16] = [
            ("trial_id", s.trial_id.clone().into()),
            ("index", s.index.into()),
            ("config", s.config.into()),
            ("repeat", s.repeat.into()),
            ("seed", s.seed.into()),
            ("attempt", row.attempt.into()),
            ("status", row.status.clone().into()),
            ("objective", opt_num(r.and_then(|r| r.objective))),
            ("params", Value::Object(params)),
            ("metrics", Value::Object(metrics)),
            (
                "best_epoch",
                r.and_then(|r| r.best_epoch)
                    .map(Value::from)
                    .unwrap_or(Value::Null),
            ),
            (
                "epochs_completed",
                r.map(|r| Value::from(r.epochs_completed))
                    .unwrap_or(Value::Null),
            ),
            ("wall_time_s", opt_num(r.map(|r| r.wall_time_s))),
            (
                "worker",
                row.worker.clone().map(Value::from).unwrap_or(Value::Null),
            ),
            (
                "device",
                r.map(|r| Value::from(r.device.clone()))
                    .unwrap_or(Value::Null),
            ),
            (
                "error",
                r.and_then(|r| r.error.clone())
                    .map(Value::from)
                    .unwrap_or(Value::Null),
            ),
        ];
        let mut line = String::from("{");
        for (i, (k, v)) in fields.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            line.push_str(&Value::from(*k).to_string());
            line.push(':');
            line.push_str(&v.to_string());
        }
        line.push('}');
        writeln!(out, "{line}")?;
    }
    Ok(())
}

fn write_csv_line(out: &mut dyn Write, cells: &[String]) -> Result<()> {
    let line: Vec<String> = cells.iter().map(|c| csv_quote(c)).collect();
    writeln!(out, "{}", line.join(","))?;
    Ok(())
}

/// RFC 4180 quoting: a field holding a comma, a quote, a line break or
/// leading/trailing blanks is wrapped in quotes, with inner quotes doubled.
fn csv_quote(field: &str) -> String {
    let needs = field.contains([',', '"', '\n', '\r'])
        || field.starts_with([' ', '\t'])
        || field.ends_with([' ', '\t']);
    if needs {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

// ----- loading ------------------------------------------------------------

fn load_study(dir: &StudyDir) -> Result<Study> {
    dir.read_study().with_context(|| {
        format!(
            "failed to read the study file `{}`",
            dir.study_path().display()
        )
    })
}

fn list(dir: &StudyDir, sub: Sub) -> Result<Vec<String>> {
    dir.list(sub)
        .with_context(|| format!("failed to list `{}`", dir.sub(sub).display()))
}

/// Every readable file of `sub`; unreadable ones are skipped with a warning.
fn load_all<T>(
    dir: &StudyDir,
    sub: Sub,
    read: impl Fn(&str) -> Result<T, FsError>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for name in list(dir, sub)? {
        match read(&name) {
            Ok(v) => out.push(v),
            Err(e) => warn_skip(&dir.json_path(sub, &name), &e),
        }
    }
    Ok(out)
}

fn load_results(dir: &StudyDir) -> Result<Vec<TrialResult>> {
    load_all(dir, Sub::Results, |id| dir.read_result(id))
}

fn load_settings(dir: &StudyDir) -> Result<Vec<TrialSetting>> {
    load_all(dir, Sub::Settings, |id| dir.read_setting(id))
}

fn load_heartbeats(dir: &StudyDir) -> Result<Vec<Heartbeat>> {
    let mut out = load_all(dir, Sub::Heartbeats, |w| dir.read_heartbeat(w))?;
    out.sort_by(|a, b| a.worker.cmp(&b.worker));
    Ok(out)
}

fn warn_skip(path: &std::path::Path, e: &dyn std::fmt::Display) {
    // Schema and I/O errors already name the file; don't say it twice.
    let msg = e.to_string();
    if msg.contains(&*path.to_string_lossy()) {
        tracing::warn!("skipping unreadable file: {msg}");
    } else {
        tracing::warn!("skipping unreadable file `{}`: {msg}", path.display());
    }
}

// ----- ranking and formatting ---------------------------------------------

/// Complete trials with an objective, best first; ties broken by trial id.
fn ranked<'a>(study: &Study, results: &'a [TrialResult]) -> Vec<&'a TrialResult> {
    let mut v: Vec<&TrialResult> = results
        .iter()
        .filter(|r| r.status == TrialStatus::Complete && r.objective.is_some_and(f64::is_finite))
        .collect();
    let dir = study.objective.direction;
    v.sort_by(|a, b| {
        let (x, y) = (
            a.objective.unwrap_or_default(),
            b.objective.unwrap_or_default(),
        );
        let ord = match dir {
            Direction::Minimize => x.total_cmp(&y),
            Direction::Maximize => y.total_cmp(&x),
        };
        ord.then_with(|| a.trial_id.cmp(&b.trial_id))
    });
    v
}

/// `live` when the last beat is younger than three intervals and the worker
/// has not said it stopped; `stopped` after a clean exit; `stale` otherwise.
fn liveness(hb: &Heartbeat, now: f64) -> &'static str {
    if hb.state == WorkerState::Stopped {
        "stopped"
    } else if now - hb.written_at_unix < 3.0 * hb.interval_s {
        "live"
    } else {
        "stale"
    }
}

fn sampler_text(s: &SamplerSpec) -> String {
    match s {
        SamplerSpec::Grid { shuffle: false, .. } => "grid".into(),
        SamplerSpec::Grid {
            shuffle: true,
            seed,
        } => format!("grid (shuffled, seed {seed})"),
        SamplerSpec::Random { seed } => format!("random (seed {seed})"),
        SamplerSpec::QuasiRandom { seed, .. } => format!("quasi_random (seed {seed})"),
        SamplerSpec::Tpe { seed, .. } => format!("tpe (seed {seed})"),
        SamplerSpec::Cmaes { seed, .. } => format!("cmaes (seed {seed})"),
    }
}

fn mode_text(m: &Mode) -> String {
    match m {
        Mode::Sync { batch } => format!("sync (batches of {batch})"),
        Mode::Async { queue } => format!("async (queue {queue})"),
    }
}

fn direction_text(d: Direction) -> &'static str {
    match d {
        Direction::Minimize => "minimize",
        Direction::Maximize => "maximize",
    }
}

/// A parameter value as a user wrote it: strings unquoted, numbers short.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => num_short(n.as_f64().unwrap_or(f64::NAN)),
        other => other.to_string(),
    }
}

/// A parameter value for export: strings unquoted, numbers exactly as
/// stored (pandas gets the value the trial ran with).
fn value_full(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => num_full(n.as_f64().unwrap_or(f64::NAN)),
        other => other.to_string(),
    }
}

/// Six significant digits, for tables.
fn num_short(x: f64) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    if x == 0.0 {
        return "0".into();
    }
    let mag = x.abs().log10().floor() as i32;
    if (-4..6).contains(&mag) {
        let decimals = (5 - mag).max(0) as usize;
        let s = format!("{x:.decimals$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    } else {
        format!("{x:.5e}")
    }
}

/// The shortest text that reads back as exactly `x`, for exports.
fn num_full(x: f64) -> String {
    serde_json::Number::from_f64(x)
        .map(|n| n.to_string())
        .unwrap_or_default()
}

/// A plain text table: a header row, then columns padded to their widest
/// cell; numeric columns right-aligned.
struct Table {
    header: Vec<String>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(cols: &[(&str, bool)]) -> Table {
        Table {
            header: cols.iter().map(|(h, _)| h.to_string()).collect(),
            right: cols.iter().map(|(_, r)| *r).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn write(&self, out: &mut dyn Write, indent: &str) -> Result<()> {
        let mut width: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        for r in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::from(indent);
            for (i, c) in r.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = " ".repeat(width[i].saturating_sub(c.chars().count()));
                if self.right[i] {
                    line.push_str(&pad);
                    line.push_str(c);
                } else {
                    line.push_str(c);
                    line.push_str(&pad);
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hps_common::{parse_versioned, FORMAT_VERSION};
    use std::path::Path;

    const PLAIN: &str = "plain";
    const COMMA: &str = "a,b";
    const QUOTE: &str = "say \"hi\"";

    fn study(direction: &str) -> Study {
        let text = format!(
            r#"{{"format_version":1,"name":"rep",
            "space":{{"x0":{{"type":"float","low":-5,"high":10}},
                     "x1":{{"type":"categorical","choices":["{PLAIN}","a,b","say \"hi\""]}}}},
            "objective":{{"metric":"value","direction":"{direction}"}},
            "sampler":{{"kind":"random","seed":0}},"budget":{{"trials":10}},
            "trainer":{{"kind":"function","name":"branin"}}}}"#
        );
        parse_versioned(Path::new("study.json"), &text).unwrap()
    }

    fn setting(i: u64, x1: &str) -> TrialSetting {
        TrialSetting {
            format_version: FORMAT_VERSION,
            trial_id: hps_common::ids::trial_id(i),
            index: i,
            config: i,
            repeat: 0,
            seed: 7,
            params: [
                ("x0".to_string(), Value::from(i as f64 * 0.5)),
                ("x1".to_string(), Value::from(x1)),
            ]
            .into_iter()
            .collect(),
            epochs: 1,
            time_limit_s: None,
            attempt: 1,
            batch: None,
            sampler: "random".into(),
            until_epoch: None,
            decide_at: Vec::new(),
        }
    }

    fn result(s: &TrialSetting, status: TrialStatus, objective: Option<f64>) -> TrialResult {
        TrialResult {
            format_version: FORMAT_VERSION,
            trial_id: s.trial_id.clone(),
            status,
            params: s.params.clone(),
            seed: s.seed,
            objective,
            metrics: objective
                .map(|v| [("value".to_string(), v), ("regret".to_string(), v - 0.4)].into())
                .unwrap_or_default(),
            curve: vec![],
            best_epoch: objective.map(|_| 1),
            epochs_completed: 1,
            wall_time_s: 0.25,
            device: "cpu".into(),
            worker: "w0".into(),
            attempt: 1,
            error: (status != TrialStatus::Complete).then(|| "boom, \"badly\"".to_string()),
            reports: Vec::new(),
            finished_at_unix: 0.0,
        }
    }

    fn heartbeat(worker: &str, state: &str, age_s: f64) -> Heartbeat {
        Heartbeat {
            format_version: FORMAT_VERSION,
            worker: worker.into(),
            host: "node1".into(),
            pid: 1,
            device: "cuda:0".into(),
            seq: 3,
            state: state.parse().unwrap(),
            trial: (state == "training").then(|| "t000003".to_string()),
            epoch: (state == "training").then_some(4),
            interval_s: 2.0,
            written_at_unix: unix_now() - age_s,
        }
    }

    /// t0..t2 complete with objectives `objs`, t3 diverged, t4 running,
    /// t5 pending, t6 recorded only; plus one corrupt result file.
    fn populated(direction: &str, objs: [f64; 3]) -> (tempfile::TempDir, StudyDir) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StudyDir::init(&tmp.path().join("study"), &study(direction)).unwrap();
        let x1 = [PLAIN, COMMA, QUOTE, PLAIN, PLAIN, COMMA, QUOTE];
        for (i, x) in x1.iter().enumerate() {
            let s = setting(i as u64, x);
            dir.record_setting(&s).unwrap();
            match i {
                0..=2 => assert!(dir
                    .submit_result(&result(&s, TrialStatus::Complete, Some(objs[i])))
                    .unwrap()),
                3 => assert!(dir
                    .submit_result(&result(&s, TrialStatus::Diverged, None))
                    .unwrap()),
                4 => {
                    let mut p = s.clone();
                    p.attempt = 2;
                    dir.publish(&p).unwrap();
                    dir.claim(&s.trial_id, "w1").unwrap().unwrap();
                }
                5 => dir.publish(&s).unwrap(),
                _ => {}
            }
        }
        std::fs::write(
            dir.sub(Sub::Results).join("t000009.json"),
            b"{\"format_version\": 1, \"trial",
        )
        .unwrap();
        std::fs::write(dir.sub(Sub::Heartbeats).join("w9.json"), b"not json").unwrap();
        dir.write_heartbeat(&heartbeat("w0", "training", 1.0))
            .unwrap();
        dir.write_heartbeat(&heartbeat("w1", "stopped", 1.0))
            .unwrap();
        dir.write_heartbeat(&heartbeat("w2", "idle", 600.0))
            .unwrap();
        (tmp, dir)
    }

    fn text(f: impl FnOnce(&mut dyn Write) -> Result<()>) -> String {
        let mut buf = Vec::new();
        f(&mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    /// The trial ids of a `best` table, in order.
    fn best_ids(dir: &StudyDir, n: usize) -> Vec<String> {
        let out = text(|o| best(dir, n, o));
        out.lines()
            .skip(1)
            .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
            .collect()
    }

    /// A minimal RFC 4180 reader, to check the writer against.
    fn parse_csv(text: &str) -> Vec<Vec<String>> {
        let mut rows = vec![];
        let mut row = vec![];
        let mut cell = String::new();
        let mut quoted = false;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    cell.push('"');
                }
                (true, '"') => quoted = false,
                (true, c) => cell.push(c),
                (false, '"') => quoted = true,
                (false, ',') => row.push(std::mem::take(&mut cell)),
                (false, '\n') => {
                    row.push(std::mem::take(&mut cell));
                    rows.push(std::mem::take(&mut row));
                }
                (false, c) => cell.push(c),
            }
        }
        rows
    }

    #[test]
    fn status_counts_trials_and_workers() {
        let (_tmp, dir) = populated("minimize", [3.0, 1.0, 2.0]);
        let out = text(|o| status(&dir, o));
        assert!(out.contains("study      rep"), "{out}");
        assert!(out.contains("random (seed 0)"), "{out}");
        assert!(
            out.contains(
                "planned 10, proposed 7, pending 1, running 1, done 4 (complete 3, diverged 1)"
            ),
            "{out}"
        );
        assert!(out.contains("finished   no"), "{out}");
        assert!(
            out.contains("best       t000001  value 1  x0=0.5 x1=a,b"),
            "{out}"
        );
        assert!(out.contains("approximate"), "{out}");
        let worker_line = |w: &str| {
            out.lines()
                .find(|l| l.trim_start().starts_with(w))
                .unwrap()
                .to_string()
        };
        assert!(
            worker_line("w0").ends_with("live") && worker_line("w0").contains("t000003"),
            "{out}"
        );
        assert!(worker_line("w1").ends_with("stopped"), "{out}");
        assert!(worker_line("w2").ends_with("stale"), "{out}");
        assert!(
            !out.contains("w9"),
            "the corrupt heartbeat is skipped: {out}"
        );

        dir.mark_finished(&hps_common::Finished {
            format_version: 1,
            trials: 10,
            finished_at_unix: 0.0,
        })
        .unwrap();
        assert!(text(|o| status(&dir, o)).contains("finished   yes"));
    }

    #[test]
    fn best_orders_by_direction_then_trial_id() {
        let (_tmp, dir) = populated("minimize", [0.5, 0.2, 0.2]);
        assert_eq!(best_ids(&dir, 10), ["t000001", "t000002", "t000000"]);
        assert_eq!(best_ids(&dir, 2), ["t000001", "t000002"]);
        let out = text(|o| best(&dir, 10, o));
        let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            [
                "rank",
                "trial",
                "value",
                "x0",
                "x1",
                "seed",
                "best_epoch",
                "wall_time_s",
                "worker"
            ]
        );

        let (_tmp, dir) = populated("maximize", [0.5, 0.2, 0.9]);
        assert_eq!(best_ids(&dir, 10), ["t000002", "t000000", "t000001"]);
        let (_tmp, dir) = populated("maximize", [0.5, 0.9, 0.9]);
        assert_eq!(best_ids(&dir, 10), ["t000001", "t000002", "t000000"]);
    }

    #[test]
    fn best_on_an_empty_study_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StudyDir::init(tmp.path(), &study("minimize")).unwrap();
        let out = text(|o| best(&dir, 5, o));
        assert!(out.starts_with("no results yet"), "{out}");
        let out = text(|o| status(&dir, o));
        assert!(
            out.contains("proposed 0") && out.contains("no complete trial yet"),
            "{out}"
        );
        let csv = text(|o| export(&dir, ExportFormat::Csv, o));
        assert_eq!(csv.lines().count(), 1, "header only: {csv}");
        assert!(text(|o| export(&dir, ExportFormat::Jsonl, o)).is_empty());
    }

    #[test]
    fn csv_export_quotes_and_includes_unfinished_trials() {
        let (_tmp, dir) = populated("minimize", [3.0, 1.0, 2.0]);
        let out = text(|o| export(&dir, ExportFormat::Csv, o));
        assert!(
            out.contains(",\"a,b\",") && out.contains(",\"say \"\"hi\"\"\","),
            "{out}"
        );
        let rows = parse_csv(&out);
        assert_eq!(
            rows[0],
            [
                "trial_id",
                "index",
                "config",
                "repeat",
                "seed",
                "attempt",
                "status",
                "objective",
                "param_x0",
                "param_x1",
                "metric_regret",
                "metric_value",
                "best_epoch",
                "epochs_completed",
                "wall_time_s",
                "worker",
                "device",
                "error"
            ]
        );
        assert_eq!(rows.len(), 8, "header + 7 settings");
        assert!(rows.iter().all(|r| r.len() == rows[0].len()));
        let col = |name: &str| rows[0].iter().position(|h| h == name).unwrap();
        let ids: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
        assert_eq!(
            ids,
            ["t000000", "t000001", "t000002", "t000003", "t000004", "t000005", "t000006"]
        );
        let status: Vec<&str> = rows[1..]
            .iter()
            .map(|r| r[col("status")].as_str())
            .collect();
        assert_eq!(
            status,
            ["complete", "complete", "complete", "diverged", "running", "pending", "proposed"]
        );
        assert_eq!(rows[2][col("param_x1")], COMMA);
        assert_eq!(rows[3][col("param_x1")], QUOTE);
        assert_eq!(rows[2][col("objective")], "1.0");
        assert_eq!(rows[4][col("error")], "boom, \"badly\"");
        // The running trial: claimed by w1 with the re-queued attempt.
        assert_eq!(
            (
                rows[5][col("worker")].as_str(),
                rows[5][col("attempt")].as_str()
            ),
            ("w1", "2")
        );
        for r in &rows[5..] {
            assert_eq!(r[col("objective")], "");
            assert_eq!(r[col("metric_value")], "");
        }
    }

    #[test]
    fn jsonl_export_is_one_object_per_trial() {
        let (_tmp, dir) = populated("minimize", [3.0, 1.0, 2.0]);
        let out = text(|o| export(&dir, ExportFormat::Jsonl, o));
        let objs: Vec<serde_json::Map<String, Value>> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(objs.len(), 7);
        for o in &objs {
            assert_eq!(o.len(), 16, "{o:?}");
            assert!(o["params"].is_object() && o["metrics"].is_object());
        }
        assert_eq!(objs[1]["objective"], Value::from(1.0));
        assert_eq!(objs[1]["metrics"]["value"], Value::from(1.0));
        assert_eq!(objs[2]["params"]["x1"], Value::from(QUOTE));
        assert_eq!(objs[5]["status"], "pending");
        assert_eq!(objs[5]["objective"], Value::Null);
        assert_eq!(objs[5]["metrics"], serde_json::json!({}));
        assert_eq!(objs[4]["status"], "running");
        let first_key = out.lines().next().unwrap().split(':').next().unwrap();
        assert_eq!(first_key, "{\"trial_id\"");
    }

    #[test]
    fn unreadable_study_names_the_path() {
        let (_tmp, dir) = populated("minimize", [3.0, 1.0, 2.0]);
        std::fs::write(dir.study_path(), b"{").unwrap();
        let e = format!("{:#}", status(&dir, &mut Vec::new()).unwrap_err());
        assert!(e.contains("study.json"), "{e}");
    }

    #[test]
    fn numbers_are_short_in_tables() {
        assert_eq!(num_short(0.123456789), "0.123457");
        assert_eq!(num_short(1.0), "1");
        assert_eq!(num_short(10f64.powf(-1.25)), "0.0562341");
        assert_eq!(num_short(1.5e-7), "1.50000e-7");
        assert_eq!(csv_quote("plain"), "plain");
        assert_eq!(csv_quote(" x"), "\" x\"");
    }
}
