//! `hps-master export`: one row per recorded trial, as CSV or JSON lines.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use hps_common::{TrialResult, TrialSetting, TrialState};
use hps_shared_fs::dir::read_json;
use hps_shared_fs::StudyDir;
use serde_json::Value;

use super::{
    load_results, load_settings, load_study, metric_cell, num_full, value_full, ExportFormat,
};
use crate::error::MasterError;
use crate::scan::Scan;

/// `hps-master export DIR --format csv|jsonl`: one row per proposed trial
/// (every file in `settings/`), in trial order, finished or not.
///
/// A trial without a result has status `pending` (in `pending/`), `running`
/// (claimed in `running/`), `paused` or `proposed` (recorded but not yet
/// published): its [`hps_common::TrialState`].
pub fn export(
    dir: &StudyDir,
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<(), MasterError> {
    let study = load_study(dir)?;
    let mut settings = load_settings(dir)?;
    settings.sort_by(|a, b| (a.index, &a.trial_id).cmp(&(b.index, &b.trial_id)));
    let results: BTreeMap<String, TrialResult> = load_results(dir)?
        .into_iter()
        .map(|r| (r.trial_id.clone(), r))
        .collect();
    let scan = Scan::take(dir)?;

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
        .map(|s| row(dir, &scan, s, results.get(&s.trial_id)))
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
    state: TrialState,
    attempt: u32,
    worker: Option<String>,
}

/// The export line of setting `s`: its state, its current attempt (a
/// re-queue bumps it in the queue file) and who runs or ran it.
fn row<'a>(
    dir: &StudyDir,
    scan: &Scan,
    s: &'a TrialSetting,
    result: Option<&'a TrialResult>,
) -> Row<'a> {
    let state = scan.state(&s.trial_id, result.map(|r| r.status));
    let (attempt, worker) = match state {
        TrialState::Done(_) => {
            result.map_or((s.attempt, None), |r| (r.attempt, Some(r.worker.clone())))
        }
        TrialState::Running => match scan.claim(&s.trial_id) {
            Some(c) => (
                dir.read_claim(c).map(|c| c.attempt).unwrap_or(s.attempt),
                Some(c.worker.clone()),
            ),
            None => (s.attempt, None),
        },
        TrialState::Pending => {
            let attempt = dir
                .pending_path(&s.trial_id)
                .ok()
                .and_then(|p| read_json::<TrialSetting>(&p).ok())
                .map(|p| p.attempt)
                .unwrap_or(s.attempt);
            (attempt, None)
        }
        TrialState::Paused | TrialState::Proposed => (s.attempt, None),
    };
    Row {
        setting: s,
        result,
        state,
        attempt,
        worker,
    }
}

fn write_csv(
    rows: &[Row],
    param_keys: &BTreeSet<String>,
    metric_keys: &BTreeSet<String>,
    out: &mut dyn Write,
) -> Result<(), MasterError> {
    let mut header: Vec<String> = [
        "trial_id",
        "index",
        "config",
        "repeat",
        "seed",
        "attempt",
        "status",
        "objective",
        "source",
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
            "collapsed",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(out);
    w.write_record(&header)?;
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
            row.state.to_string(),
            r.and_then(|r| r.objective)
                .map(num_full)
                .unwrap_or_default(),
            s.source.map(|x| x.as_str().to_string()).unwrap_or_default(),
        ];
        cells.extend(
            param_keys
                .iter()
                .map(|k| s.params.get(k).map(value_full).unwrap_or_default()),
        );
        cells.extend(metric_keys.iter().map(|k| {
            r.and_then(|r| r.metrics.get(k))
                .copied()
                .map(metric_cell)
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
            r.map(|r| r.collapsed.to_string()).unwrap_or_default(),
        ]);
        w.write_record(&cells)?;
    }
    w.flush()?;
    Ok(())
}

fn write_jsonl(rows: &[Row], out: &mut dyn Write) -> Result<(), MasterError> {
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
        let fields: [(&str, Value); 18] = [
            ("trial_id", s.trial_id.clone().into()),
            ("index", s.index.into()),
            ("config", s.config.into()),
            ("repeat", s.repeat.into()),
            ("seed", s.seed.into()),
            ("attempt", row.attempt.into()),
            ("status", row.state.as_str().into()),
            ("objective", opt_num(r.and_then(|r| r.objective))),
            (
                "source",
                s.source.map_or(Value::Null, |x| x.as_str().into()),
            ),
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
            ("collapsed", r.map_or(Value::Null, |r| r.collapsed.into())),
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
