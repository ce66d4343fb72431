//! Issue 15: no slowdown as a study grows. Zero-cost `function` trials
//! through the real binaries, as many as the test can afford: every trial
//! ends with exactly one result, the master's memory stays bounded (it
//! keeps statuses and digests, not results with their curves), and a
//! master restarted on the finished study resumes from the results cache.
//! The 5,000-trial run is part of `cargo test`; the 100,000-trial run with
//! 8 workers is `--ignored` (README: "Tests"). Nothing here asserts a
//! speed: the rates are printed for the reader.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use hps_tests::trial_ids;
use hps_tests::*;

fn study_json(trials: u64, workers: usize) -> String {
    format!(
        r#"{{"format_version":1,"name":"scale",
        "space":{{"x0":{{"type":"float","low":-5,"high":10}},"x1":{{"type":"float","low":0,"high":15}}}},
        "objective":{{"metric":"value","direction":"minimize"}},
        "sampler":{{"kind":"random","seed":3}},"budget":{{"trials":{trials}}},
        "mode":{{"kind":"async","queue":{workers}}},
        "trainer":{{"kind":"function","name":"branin"}}}}"#
    )
}

/// Resident memory of `pid` in MB, from /proc (0 once it has exited).
fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Run `trials` zero-cost trials on `workers` workers and check them; the
/// master's peak RSS must stay under `rss_limit_mb`.
fn zero_cost_study(trials: u64, workers: usize, rss_limit_mb: f64, timeout: Duration) {
    let (tmp, study) = temp_study(&study_json(trials, workers));
    let ids = worker_ids(workers);
    let specs: Vec<(&str, &[&str])> = ids.iter().map(|id| (id.as_str(), &[][..])).collect();
    let t = Instant::now();
    let mut cluster = Cluster::start(&study, tmp.path(), "2", &specs);
    let pid = cluster.master.pid();
    let mut peak: f64 = 0.0;
    let mut tenth = None;
    while cluster.master.try_wait().is_none() {
        assert!(
            t.elapsed() < timeout,
            "the study did not finish within {timeout:?}:\n{}",
            tail_lines(cluster.master.log_path(), 30)
        );
        peak = peak.max(rss_mb(pid));
        if tenth.is_none() && trial_ids(&study, "results").len() as u64 >= trials / 10 {
            tenth = Some((t.elapsed(), peak));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let wall = t.elapsed();
    let log = cluster.finish(Duration::from_secs(60));
    assert!(log.contains("study finished"), "{log}");

    // Exactly once: one result per trial, each complete, each run once.
    let results = trial_ids(&study, "results");
    let expected: BTreeSet<String> = (0..trials).map(hps_common::ids::trial_id).collect();
    assert_eq!(results.len() as u64, trials);
    assert_eq!(results.iter().cloned().collect::<BTreeSet<_>>(), expected);
    let runs = runs_per_trial(&study);
    assert_eq!(runs.len() as u64, trials);
    let twice: Vec<_> = runs.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        twice.is_empty(),
        "trials run more or less than once: {twice:?}"
    );
    for r in read_results(&study) {
        assert_eq!(
            r.status,
            hps_common::TrialStatus::Complete,
            "{}",
            r.trial_id
        );
    }
    assert!(json_stems(&study.join("pending")).is_empty());
    // No folder over about 1,000 entries: every trial file in its shard.
    assert_sharded(&study);

    assert!(
        peak > 0.0 && peak < rss_limit_mb,
        "master peak RSS {peak:.0} MB (limit {rss_limit_mb} MB)"
    );
    let lines = std::fs::read_to_string(study.join("cache/results.jsonl"))
        .expect("the results cache")
        .lines()
        .count();
    assert_eq!(lines as u64, trials, "one digest per result");

    // A restarted master finds the study finished, from the cache. Ready
    // = its state rebuilt ("recovered …"); it then writes the final report.
    std::fs::remove_file(study.join("finished.json")).unwrap();
    let t = Instant::now();
    let mut again = spawn_master(&study, &tmp.path().join("restart.log"), &[]);
    wait_until(
        Duration::from_secs(120),
        "the restarted master to recover",
        || again.log_text().contains("recovered "),
    );
    let restart = t.elapsed();
    again.wait_ok(Duration::from_secs(600));
    let text = again.log_text();
    assert!(
        text.contains(&format!("from_cache={trials}")),
        "every result came from the cache:\n{}",
        tail_lines_of(&text, 20)
    );
    let (at_tenth, peak_tenth) = tenth.unwrap_or_default();
    println!(
        "{trials} trials, {workers} workers: {:.1} s ({:.0} trials/s; the first 10% in {:.1} s); \
         master peak RSS {peak:.0} MB ({peak_tenth:.0} MB at 10%); a restarted master ready in {:.2} s",
        wall.as_secs_f64(),
        trials as f64 / wall.as_secs_f64(),
        at_tenth.as_secs_f64(),
        restart.as_secs_f64()
    );
}

fn tail_lines_of(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn five_thousand_zero_cost_trials_end_exactly_once_with_a_bounded_master() {
    // Alone among the heavy and the timing-sensitive tests.
    let _exclusive = hps_tests::exclusive();
    if !Path::new("/proc/self/status").exists() {
        println!("SKIPPED: no /proc to read the master's memory from");
        return;
    }
    zero_cost_study(5_000, 4, 128.0, Duration::from_secs(600));
}

/// `cargo test -p hps-tests --test it -- --ignored scale::` (README).
#[test]
#[ignore = "100,000 trials take about 10 minutes; run with --ignored"]
fn a_hundred_thousand_zero_cost_trials_on_8_workers_end_exactly_once_with_a_bounded_master() {
    // Alone among the heavy and the timing-sensitive tests.
    let _exclusive = hps_tests::exclusive();
    zero_cost_study(100_000, 8, 256.0, Duration::from_secs(3600));
}
