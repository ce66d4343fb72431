//! The read-only inspection commands: `status`, `best` and `export`.
//!
//! They only read the study directory, so they are safe to run at any time,
//! from any host, while a master and its workers are running. A file that
//! cannot be parsed (a corrupt result, setting or heartbeat) is skipped with
//! a warning naming it; it never aborts the report.

mod beats;
mod curves;
mod export;
mod master;
mod table;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use hps_common::files::unix_now;
use hps_common::{
    Heartbeat, Metric, Mode, ResultDigest, SamplerSpec, Study, TrialResult, TrialSetting,
    TrialStatus,
};
use hps_shared_fs::{FsError, StudyDir, Sub};
use serde_json::Value;

pub use beats::BeatVerdict;
pub use curves::export_curves;
pub use export::export;

use crate::error::MasterError;
use crate::liveness::{Clock, SystemClock};
use crate::run::cache::ResultsCache;
use crate::scan::Scan;
use table::Table;

type Result<T, E = MasterError> = std::result::Result<T, E>;

/// Output format of `hps-master export` (its `--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Csv,
    Jsonl,
}

/// `hps-master status DIR`: what the study is, how far it got, which
/// workers are alive and the best trial so far.
///
/// Liveness is judged by watching the heartbeats' `seq` for a few seconds
/// at most (see [`beats`]), never by the workers' clocks.
pub fn status(dir: &StudyDir, out: &mut dyn Write) -> Result<()> {
    status_watching(dir, out, &SystemClock, &mut std::thread::sleep)
}

/// [`status`] with the clock and the wait of the liveness window given.
pub fn status_watching(
    dir: &StudyDir,
    out: &mut dyn Write,
    clock: &dyn Clock,
    sleep: &mut dyn FnMut(Duration),
) -> Result<()> {
    let study = load_study(dir)?;
    let results = load_outcomes(dir)?;
    write_study(dir, &study, &results, out)?;
    let beats = load_heartbeats(dir)?;
    let lease = master::read(dir);
    let mut reread = || load_heartbeats(dir).unwrap_or_default();
    let (verdicts, lease_verdict, window) =
        master::watch(dir, &beats, &lease, clock, sleep, &mut reread);
    writeln!(out)?;
    master::write_line(dir, &lease, lease_verdict, window, out)?;
    if beats.is_empty() {
        writeln!(out, "workers    none has written a heartbeat yet")?;
        return Ok(());
    }
    write_workers(&beats, &verdicts, window, out)
}

/// The study, its trial counts and its best trial so far.
fn write_study(
    dir: &StudyDir,
    study: &Study,
    results: &[Outcome],
    out: &mut dyn Write,
) -> Result<()> {
    let proposed = list(dir, Sub::Settings)?.len();
    let scan = Scan::take(dir)?;
    let mut by_status: BTreeMap<TrialStatus, usize> = BTreeMap::new();
    for r in results {
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
        study.objective.direction.as_str()
    )?;
    let paused_text = if scan.paused.is_empty() {
        String::new()
    } else {
        format!(", paused {}", scan.paused.len())
    };
    writeln!(
        out,
        "trials     planned {planned}, proposed {proposed}, pending {}, running {}{paused_text}, \
         done {}{breakdown}",
        scan.pending.len(),
        scan.running.len(),
        results.len()
    )?;
    let finished = if dir.is_finished() {
        "yes (finished.json present)"
    } else {
        "no"
    };
    writeln!(out, "finished   {finished}")?;
    write_best_line(study, results, out)
}

fn write_best_line(study: &Study, results: &[Outcome], out: &mut dyn Write) -> Result<()> {
    match ranked(study, results).first() {
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
    Ok(())
}

/// The workers table, with each worker's liveness verdict.
fn write_workers(
    beats: &[Heartbeat],
    verdicts: &[BeatVerdict],
    window: Duration,
    out: &mut dyn Write,
) -> Result<()> {
    let live = verdicts.iter().filter(|v| **v == BeatVerdict::Live).count();
    let how = if window.is_zero() {
        "every worker said it stopped, so none was watched".to_string()
    } else {
        format!(
            "live: its heartbeat changed within {:.1}s on this host's clock",
            window.as_secs_f64()
        )
    };
    writeln!(
        out,
        "workers    {live} live of {} ({how}; beat ages are approximate: the worker's clock \
         against this host's)",
        beats.len(),
    )?;
    // The Slurm job holding each trial, when any worker runs under Slurm.
    let slurm = beats.iter().any(|hb| hb.slurm.is_some());
    let mut columns = vec![("worker", false), ("host", false)];
    if slurm {
        columns.push(("slurm job", false));
    }
    columns.extend([
        ("device", false),
        ("state", false),
        ("trial", false),
        ("epoch", true),
        ("last beat", true),
        ("", false),
    ]);
    let mut t = Table::new(&columns);
    let now = unix_now();
    for (hb, verdict) in beats.iter().zip(verdicts) {
        let mut row = vec![hb.worker.clone(), hb.host.clone()];
        if slurm {
            row.push(hb.slurm.as_ref().map_or_else(
                || "-".into(),
                |j| {
                    if j.node == hb.host {
                        j.job.clone()
                    } else {
                        format!("{} on {}", j.job, j.node)
                    }
                },
            ));
        }
        row.extend([
            hb.device.clone(),
            hb.state.to_string(),
            hb.trial.clone().unwrap_or_else(|| "-".into()),
            hb.epoch
                .map(|e| e.to_string())
                .unwrap_or_else(|| "-".into()),
            // Shown only, never judged on: the two clocks may differ.
            format!("~{:.0}s ago", now - hb.written_at_unix),
            verdict.as_str().to_string(),
        ]);
        t.row(row);
    }
    t.write(out, "  ")?;
    Ok(())
}

/// `hps-master best DIR -n N`: the `n` best complete trials.
///
/// Ranked through the results cache ([`load_outcomes`]); only the result
/// files of the trials shown are read.
pub fn best(dir: &StudyDir, n: usize, out: &mut dyn Write) -> Result<()> {
    let study = load_study(dir)?;
    let outcomes = load_outcomes(dir)?;
    // The best `n` that can be read, in rank order (an unreadable file is
    // skipped with a warning, and the next trial takes its place).
    let mut shown: Vec<TrialResult> = Vec::new();
    for chunk in ranked(&study, &outcomes).chunks(n.max(1)) {
        if shown.len() >= n {
            break;
        }
        let ids: Vec<String> = chunk.iter().map(|o| o.trial_id.clone()).collect();
        let read =
            hps_shared_fs::tolerant::load_some(dir, Sub::Results, &ids, |id| dir.read_result(id));
        shown.extend(read.into_iter().take(n - shown.len()));
    }
    if shown.is_empty() {
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
    // it (for a trial shown) and it is not the objective itself.
    let test_col = (study.objective.metric != Metric::TestError.as_str()
        && shown
            .iter()
            .any(|r| r.metrics.contains_key(Metric::TestError.as_str())))
    .then_some(Metric::TestError.as_str());
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
    for (i, r) in shown.iter().enumerate() {
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

// ----- loading ------------------------------------------------------------

pub(super) fn load_study(dir: &StudyDir) -> Result<Study> {
    dir.read_study().map_err(|source| MasterError::ReadStudy {
        file: dir.study_path(),
        source,
    })
}

fn list(dir: &StudyDir, sub: Sub) -> Result<Vec<String>> {
    Ok(dir.list(sub)?)
}

/// Every readable file of `sub` (one mechanism with the HTML report's).
fn load_all<T: Send>(
    dir: &StudyDir,
    sub: Sub,
    read: impl Fn(&str) -> Result<T, FsError> + Sync,
) -> Result<Vec<T>> {
    Ok(hps_shared_fs::tolerant::load_all(dir, sub, read)?)
}

pub(super) fn load_results(dir: &StudyDir) -> Result<Vec<TrialResult>> {
    load_all(dir, Sub::Results, |id| dir.read_result(id))
}

/// What `status` needs of one result.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Outcome {
    trial_id: String,
    status: TrialStatus,
    objective: Option<f64>,
    params: hps_common::Params,
}

impl From<ResultDigest> for Outcome {
    fn from(d: ResultDigest) -> Self {
        Outcome {
            trial_id: d.trial_id,
            status: d.status,
            objective: d.objective,
            params: d.params,
        }
    }
}

impl From<TrialResult> for Outcome {
    fn from(r: TrialResult) -> Self {
        Outcome {
            trial_id: r.trial_id,
            status: r.status,
            objective: r.objective,
            params: r.params,
        }
    }
}

/// The outcome of every result in `results/`, read through the results
/// cache (`cache/results.jsonl`, the master's digest of each result it
/// accepted): a cached digest stands for a result that is listed, and only
/// the listed results the cache lacks are read. The listing is the truth,
/// the cache only saves reading files: a digest of a result no longer
/// there counts for nothing, and without the cache every result is read.
/// (A result is written once and never changed, only moved to
/// quarantine/; a trial re-run after that shows its earlier digest until
/// the master accepts the new result and appends its line.)
pub(super) fn load_outcomes(dir: &StudyDir) -> Result<Vec<Outcome>> {
    let listed = dir.list(Sub::Results)?;
    let mut cached = ResultsCache::new(dir).load();
    let mut out = Vec::with_capacity(listed.len());
    let mut unread = Vec::new();
    for id in listed {
        match cached.remove(&id) {
            Some(d) => out.push(Outcome::from(d)),
            None => unread.push(id),
        }
    }
    let read =
        hps_shared_fs::tolerant::load_some(dir, Sub::Results, &unread, |id| dir.read_result(id));
    out.extend(read.into_iter().map(Outcome::from));
    Ok(out)
}

pub(super) fn load_settings(dir: &StudyDir) -> Result<Vec<TrialSetting>> {
    load_all(dir, Sub::Settings, |id| dir.read_setting(id))
}

/// The workers that may be running on `dir`: those whose heartbeat
/// changed while watched as `status` watches them (`live`), or stood still
/// for less than their beat allows (`quiet`). Stopped and stale ones are
/// not counted.
pub(crate) fn running_workers(dir: &StudyDir) -> Result<Vec<String>> {
    let beats = load_heartbeats(dir)?;
    let Some(window) = beats::window(&beats, beats::MAX_WINDOW) else {
        return Ok(Vec::new());
    };
    let mut reread = || load_heartbeats(dir).unwrap_or_default();
    let verdicts = beats::watch(
        &beats,
        window,
        &SystemClock,
        &mut std::thread::sleep,
        &mut reread,
    );
    Ok(beats
        .iter()
        .zip(verdicts)
        .filter(|(_, v)| matches!(v, BeatVerdict::Live | BeatVerdict::Quiet))
        .map(|(hb, v)| format!("{} {}", hb.worker, v.as_str()))
        .collect())
}

fn load_heartbeats(dir: &StudyDir) -> Result<Vec<Heartbeat>> {
    let mut out = load_all(dir, Sub::Heartbeats, |w| dir.read_heartbeat(w))?;
    out.sort_by(|a, b| a.worker.cmp(&b.worker));
    Ok(out)
}

// ----- ranking and formatting ---------------------------------------------

/// Complete trials with an objective, best first; ties broken by trial id.
fn ranked<'a>(study: &Study, results: &'a [Outcome]) -> Vec<&'a Outcome> {
    let mut v: Vec<&Outcome> = results
        .iter()
        .filter(|r| r.status == TrialStatus::Complete && r.objective.is_some_and(f64::is_finite))
        .collect();
    let dir = study.objective.direction;
    v.sort_by(|a, b| {
        let (x, y) = (
            a.objective.unwrap_or_default(),
            b.objective.unwrap_or_default(),
        );
        dir.cmp(x, y).then_with(|| a.trial_id.cmp(&b.trial_id))
    });
    v
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
        SamplerSpec::Gp { seed, .. } => format!("gp (seed {seed})"),
        SamplerSpec::Auto { seed, .. } => format!("auto (seed {seed})"),
    }
}

fn mode_text(m: &Mode) -> String {
    match m {
        Mode::Sync { batch } => format!("sync (batches of {batch})"),
        Mode::Async { queue } => format!("async (queue {queue})"),
    }
}

/// A parameter value as a user wrote it: strings unquoted, numbers short.
fn value_text(v: &Value) -> String {
    hps_common::format::value_text_with(v, 6)
}

/// A parameter value for export: strings unquoted, numbers exactly as
/// stored (pandas gets the value the trial ran with).
pub(super) fn value_full(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => num_full(n.as_f64().unwrap_or(f64::NAN)),
        other => other.to_string(),
    }
}

/// A metric in a CSV cell: [`num_full`], except that a whole number reads
/// as one (a count such as `steps` as 400, not 400.0), so that pandas takes
/// a column of them as integers. Below 2^53 the integer is exact.
pub(super) fn metric_cell(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 9.007_199_254_740_992e15 {
        return format!("{}", x as i64);
    }
    num_full(x)
}

/// Six significant digits, for tables.
fn num_short(x: f64) -> String {
    hps_common::format::significant(x, 6)
}

/// The shortest text that reads back as exactly `x`, for exports.
pub(super) fn num_full(x: f64) -> String {
    serde_json::Number::from_f64(x)
        .map(|n| n.to_string())
        .unwrap_or_default()
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
        let params = [
            ("x0".to_string(), Value::from(i as f64 * 0.5)),
            ("x1".to_string(), Value::from(x1)),
        ]
        .into_iter()
        .collect();
        TrialSetting {
            seed: 7,
            ..TrialSetting::new(i, params, 1, "random")
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
            last_run_wall_time_s: None,
            device: "cpu".into(),
            worker: "w0".into(),
            attempt: 1,
            error: (status != TrialStatus::Complete).then(|| "boom, \"badly\"".to_string()),
            collapsed: false,
            reports: Vec::new(),
            finished_at_unix: 0.0,
        }
    }

    fn heartbeat(worker: &str, state: &str, age_s: f64) -> Heartbeat {
        // Stopped workers say so with the largest seq.
        let seq = if state == "stopped" { u64::MAX } else { 3 };
        Heartbeat {
            format_version: FORMAT_VERSION,
            worker: worker.into(),
            host: "node1".into(),
            pid: 1,
            device: "cuda:0".into(),
            seq,
            state: state.parse().unwrap(),
            trial: (state == "training").then(|| "t000003".to_string()),
            epoch: (state == "training").then_some(4),
            interval_s: 2.0,
            written_at_unix: unix_now() - age_s,
            slurm: None,
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
            dir.result_path("t000009").unwrap(),
            b"{\"format_version\": 1, \"trial",
        )
        .unwrap();
        std::fs::write(dir.sub(Sub::Heartbeats).join("w9.json"), b"not json").unwrap();
        dir.write_heartbeat(&heartbeat("w0", "training", 1.0))
            .unwrap();
        dir.write_heartbeat(&heartbeat("w1", "stopped", 1.0))
            .unwrap();
        dir.write_heartbeat(&heartbeat("w2", "idle", 1.0)).unwrap();
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
        // w0 beats while status watches; w2 does not (its timestamp says
        // it beat a second ago, which must not matter).
        let clock = crate::liveness::ManualClock::new();
        let mut seq = 3;
        let out = text(|o| {
            status_watching(&dir, o, &clock, &mut |d| {
                clock.advance(d);
                seq += 1;
                let mut hb = heartbeat("w0", "training", 1.0);
                hb.seq = seq;
                dir.write_heartbeat(&hb).unwrap();
            })
        });
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
        assert!(
            text(|o| status_watching(&dir, o, &clock, &mut |d| clock.advance(d)))
                .contains("finished   yes")
        );
    }

    /// Under Slurm, the workers table says which job holds which trial.
    #[test]
    fn status_reads_listed_results_through_the_cache_and_the_rest_from_files() {
        let (_tmp, dir) = populated("minimize", [3.0, 1.0, 2.0]);
        let from_files = load_outcomes(&dir).unwrap();
        assert_eq!(from_files.len(), 4, "{from_files:?}");
        // A digest for a listed result stands for it (the file is not
        // read: its objective here differs on purpose); one for a result
        // not listed counts for nothing.
        let digest = |id: &str, objective| ResultDigest {
            v: ResultDigest::VERSION,
            trial_id: id.into(),
            index: 0,
            config: 0,
            status: TrialStatus::Complete,
            objective: Some(objective),
            params: Default::default(),
            wall_time_s: 0.0,
            points: vec![],
        };
        let mut cache = ResultsCache::new(&dir);
        cache.append(&digest("t000001", 0.25));
        cache.append(&digest("t000008", 0.0));
        drop(cache);
        let mut got = load_outcomes(&dir).unwrap();
        got.sort_by(|a, b| a.trial_id.cmp(&b.trial_id));
        let mut want = from_files.clone();
        want.sort_by(|a, b| a.trial_id.cmp(&b.trial_id));
        want[1] = Outcome::from(digest("t000001", 0.25));
        assert_eq!(got, want);
        let mut text = Vec::new();
        write_best_line(&dir.read_study().unwrap(), &got, &mut text).unwrap();
        assert!(String::from_utf8(text)
            .unwrap()
            .starts_with("best       t000001  value 0.25"));
        // Without the cache, the files again.
        std::fs::remove_dir_all(dir.root().join("cache")).unwrap();
        let mut again = load_outcomes(&dir).unwrap();
        again.sort_by(|a, b| a.trial_id.cmp(&b.trial_id));
        let mut files = from_files;
        files.sort_by(|a, b| a.trial_id.cmp(&b.trial_id));
        assert_eq!(again, files);
    }

    #[test]
    fn status_shows_the_slurm_job_of_each_worker() {
        let (_tmp, dir) = populated("minimize", [3.0, 1.0, 2.0]);
        let mut hb = heartbeat("w0", "training", 1.0);
        hb.slurm = Some(hps_common::SlurmJob {
            job: "12_0".into(),
            node: "node1".into(),
        });
        dir.write_heartbeat(&hb).unwrap();
        let clock = crate::liveness::ManualClock::new();
        let out = text(|o| {
            status_watching(&dir, o, &clock, &mut |d| {
                clock.advance(d);
                hb.seq += 1;
                dir.write_heartbeat(&hb).unwrap();
            })
        });
        let header = out.lines().find(|l| l.contains("slurm job")).unwrap();
        assert!(header.contains("host   slurm job  device"), "{out}");
        let w0 = out
            .lines()
            .find(|l| l.trim_start().starts_with("w0"))
            .unwrap();
        assert!(w0.contains(" 12_0 ") && w0.contains("t000003"), "{out}");
        let w2 = out
            .lines()
            .find(|l| l.trim_start().starts_with("w2"))
            .unwrap();
        assert!(w2.contains(" - "), "{out}");
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
                "source",
                "param_x0",
                "param_x1",
                "metric_regret",
                "metric_value",
                "best_epoch",
                "epochs_completed",
                "wall_time_s",
                "worker",
                "device",
                "error",
                "collapsed"
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
            assert_eq!(o.len(), 18, "{o:?}");
            assert_eq!(o["source"], Value::Null, "random search has no model");
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
        assert_eq!(num_short(1.5e-7), "1.5e-7");
        assert_eq!(num_short(0.001), "0.001");
    }
}
