//! `hps-master export --curves`: the long format, one row per trial and
//! step, as Optuna's `trials_dataframe` gives intermediate values. A cnn
//! trial's steps are its epochs, with the training instruments; an exec
//! trial's are its reports (the `step` or `epoch` key, else the line).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;

use hps_common::files::{report_step, report_values};
use hps_common::{EpochStat, TrialResult};
use hps_shared_fs::StudyDir;
use serde_json::Value;

use super::{load_results, metric_cell, value_full, ExportFormat};
use crate::error::MasterError;

/// One step of one trial: its number and its named values, in a stable
/// order (the cnn's fixed columns, or the report's keys as written).
struct Step {
    step: u32,
    values: Vec<(String, f64)>,
}

/// The steps of a result: its per-epoch curve, or else its exec reports.
fn steps(r: &TrialResult) -> Vec<Step> {
    if !r.curve.is_empty() {
        return r.curve.iter().map(epoch_step).collect();
    }
    r.reports
        .iter()
        .enumerate()
        .map(|(i, rep)| Step {
            step: report_step(i, rep),
            values: report_values(rep).map(|(k, v)| (k.clone(), v)).collect(),
        })
        .collect()
}

fn epoch_step(e: &EpochStat) -> Step {
    let mut values = vec![
        ("elapsed_s".to_string(), e.elapsed_s),
        ("train_loss".to_string(), e.train_loss),
        ("val_loss".to_string(), e.val_loss),
        ("val_error".to_string(), e.val_error),
    ];
    if let Some(i) = &e.instruments {
        values.extend([
            ("lr".to_string(), i.lr),
            ("grad_norm".to_string(), i.grad_norm),
            ("weight_norm".to_string(), i.weight_norm),
            ("update_ratio".to_string(), i.update_ratio),
        ]);
        for a in &i.activations {
            values.push((format!("act_{}_mean", a.layer), a.mean));
            values.push((format!("act_{}_std", a.layer), a.std));
        }
    }
    Step {
        step: e.epoch,
        values,
    }
}

/// Write every finished trial's steps, in trial order. Trials without a
/// result have no curve yet and are left out.
pub fn export_curves(
    dir: &StudyDir,
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<(), MasterError> {
    let mut results = load_results(dir)?;
    results.sort_by(|a, b| a.trial_id.cmp(&b.trial_id));
    let rows: Vec<(&TrialResult, Vec<Step>)> = results.iter().map(|r| (r, steps(r))).collect();
    let params: BTreeSet<&String> = results.iter().flat_map(|r| r.params.keys()).collect();
    // Columns in the order first met, so a cnn export reads like its curve.
    // A set beside the list keeps this linear in the steps of a big study.
    let mut columns: Vec<&str> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for (_, ss) in &rows {
        for s in ss {
            for (k, _) in &s.values {
                if seen.insert(k) {
                    columns.push(k);
                }
            }
        }
    }
    match format {
        ExportFormat::Csv => write_csv(&rows, &params, &columns, out),
        ExportFormat::Jsonl => write_jsonl(&rows, out),
    }
}

fn write_csv(
    rows: &[(&TrialResult, Vec<Step>)],
    params: &BTreeSet<&String>,
    columns: &[&str],
    out: &mut dyn Write,
) -> Result<(), MasterError> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(out);
    let mut header = vec!["trial_id".to_string(), "status".into()];
    header.extend(params.iter().map(|k| format!("param_{k}")));
    header.push("step".into());
    header.extend(columns.iter().map(|c| c.to_string()));
    w.write_record(&header)?;
    for (r, ss) in rows {
        for s in ss {
            let values: BTreeMap<&str, f64> =
                s.values.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            let mut cells = vec![r.trial_id.clone(), r.status.as_str().to_string()];
            cells.extend(
                params
                    .iter()
                    .map(|k| r.params.get(*k).map(value_full).unwrap_or_default()),
            );
            cells.push(s.step.to_string());
            cells.extend(
                columns
                    .iter()
                    .map(|c| values.get(c).map(|v| metric_cell(*v)).unwrap_or_default()),
            );
            w.write_record(&cells)?;
        }
    }
    w.flush()?;
    Ok(())
}

fn write_jsonl(rows: &[(&TrialResult, Vec<Step>)], out: &mut dyn Write) -> Result<(), MasterError> {
    for (r, ss) in rows {
        for s in ss {
            let mut line = serde_json::Map::new();
            line.insert("trial_id".into(), r.trial_id.clone().into());
            line.insert("status".into(), r.status.as_str().into());
            let params = r.params.iter().map(|(k, v)| (k.clone(), v.clone()));
            line.insert("params".into(), Value::Object(params.collect()));
            line.insert("step".into(), s.step.into());
            for (k, v) in &s.values {
                let v = serde_json::Number::from_f64(*v).map_or(Value::Null, Value::Number);
                line.insert(k.clone(), v);
            }
            writeln!(out, "{}", Value::Object(line))?;
        }
    }
    Ok(())
}
