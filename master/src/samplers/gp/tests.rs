use super::*;
use hps_common::functions::Function;
use hps_common::TrialStatus;

fn study(space: &str, startup: u32) -> Study {
    let text = format!(
        r#"{{"format_version":1,"name":"t","space":{space},
        "objective":{{"metric":"val_error","direction":"minimize"}},
        "sampler":{{"kind":"gp","seed":1,"startup":{startup}}},"budget":{{"trials":40}},
        "trainer":{{"kind":"exec","argv":["true"]}}}}"#
    );
    hps_common::parse_versioned(std::path::Path::new("study.json"), &text).unwrap()
}

const BRANIN: &str =
    r#"{"x0":{"type":"float","low":-5,"high":10},"x1":{"type":"float","low":0,"high":15}}"#;

fn branin(p: &Params) -> f64 {
    Function::Branin.evaluate(&[p["x0"].as_f64().unwrap(), p["x1"].as_f64().unwrap()])
}

fn complete(config: u64, params: Params, loss: f64) -> Observation {
    Observation {
        config,
        params,
        status: TrialStatus::Complete,
        loss: Some(loss),
        last_intermediate: None,
    }
}

/// `n` sequential branin trials.
fn branin_history(s: &mut GpSampler, n: u64) -> Vec<Observation> {
    let mut history = Vec::new();
    for c in 0..n {
        let p = s.propose(c, &history, &[]).params;
        let y = branin(&p);
        history.push(complete(c, p, y));
    }
    history
}

fn dist(space: &UnitSpace, a: &Params, b: &Params) -> f64 {
    let (a, b) = (space.unit_of(a).unwrap(), space.unit_of(b).unwrap());
    a.iter()
        .zip(&b)
        .map(|(u, v)| (u - v).powi(2))
        .sum::<f64>()
        .sqrt()
}

#[test]
fn fantasies_keep_a_batch_of_four_apart() {
    let st = study(BRANIN, 10);
    let mut s = GpSampler::new(&st, 1, 10);
    let history = branin_history(&mut s, 20);
    // Without pending settings the same config gives the same point; with
    // the earlier members of the batch pending, each goes elsewhere.
    let lone = s.propose(20, &history, &[]).params;
    assert_eq!(s.propose(20, &history, &[]).params, lone);
    let mut batch: Vec<Params> = Vec::new();
    for c in 20..24 {
        let p = s.propose(c, &history, &batch);
        assert_eq!(p.source, Some(Source::Model));
        batch.push(p.params);
    }
    for i in 0..4 {
        for j in 0..i {
            let d = dist(&s.space, &batch[i], &batch[j]);
            assert!(d > 0.02, "settings {j} and {i} are {d} apart: {batch:?}");
        }
    }
}

#[test]
fn the_gp_finds_branins_minimum_quickly_without_near_repeats() {
    let st = study(BRANIN, 10);
    let mut s = GpSampler::new(&st, 1, 10);
    let history = branin_history(&mut s, 40);
    let best = history
        .iter()
        .filter_map(|o| o.loss)
        .fold(f64::INFINITY, f64::min);
    assert!(best - Function::Branin.optimum(2) < 1e-2, "best {best}");
    // Converging on the minimum, it still never evaluates next to a
    // finished setting, where it would learn nothing.
    for (i, a) in history.iter().enumerate() {
        for b in &history[..i] {
            let d = dist(&s.space, &a.params, &b.params);
            assert!(d >= MIN_GAP, "{} and {} are {d} apart", a.config, b.config);
        }
    }
}

#[test]
fn trials_without_a_loss_are_imputed_as_the_worst() {
    // Lower is better up to x = 0.5; every trial beyond failed (or gave a
    // non-finite value). The GP must not extrapolate the slope into the
    // failed region.
    let st = study(r#"{"x":{"type":"float","low":0,"high":1}}"#, 0);
    let mut s = GpSampler::new(&st, 1, 0);
    let mut history = Vec::new();
    for (c, x) in [0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95]
        .into_iter()
        .enumerate()
    {
        let params: Params = [("x".to_string(), x.into())].into_iter().collect();
        let mut o = complete(c as u64, params, 1.0 - x);
        if x > 0.5 {
            if c % 2 == 0 {
                o.status = TrialStatus::Failed;
                o.loss = None;
            } else {
                o.loss = Some(f64::NAN);
            }
        }
        history.push(o);
    }
    let pts = canonical(&s.space, &history);
    let data = Data::new(&pts).unwrap();
    let worst = data.y[..5]
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    assert!(data.y[5..].iter().all(|y| *y == worst), "{:?}", data.y);
    let p = s.propose(10, &history, &[]);
    let x = p.params["x"].as_f64().unwrap();
    assert_eq!(p.source, Some(Source::Model));
    assert!((0.4..0.55).contains(&x), "proposed x = {x}");
    // With fewer than two losses: the start-up design.
    let failed: Vec<Observation> = history[5..].to_vec();
    assert_eq!(s.propose(10, &failed, &[]).source, Some(Source::Startup));
}

#[test]
fn the_fit_subset_keeps_the_best_and_a_spread() {
    let data = Data {
        x: (0..1000).map(|i| vec![i as f64 / 1000.0]).collect(),
        y: (0..1000).map(|i| ((i * 7919) % 1000) as f64).collect(),
    };
    let sub = data.fit_subset(200);
    assert_eq!(sub.len(), 200);
    let mut dedup = sub.clone();
    dedup.dedup();
    assert_eq!(dedup.len(), 200);
    let best = (0..1000)
        .min_by(|&a, &b| data.y[a].total_cmp(&data.y[b]))
        .unwrap();
    assert!(sub.contains(&best));
    assert_eq!(data.fit_subset(2000).len(), 1000);
}

#[test]
fn categoricals_and_ints_are_proposed_without_duplicates() {
    // A small discrete space: 3 x 4 = 12 settings; the GP never repeats a
    // finished or pending one while others are left.
    let st = study(
        r#"{"c":{"type":"categorical","choices":["a","b","c"]},"n":{"type":"int","low":1,"high":4}}"#,
        3,
    );
    let mut s = GpSampler::new(&st, 1, 3);
    let mut history: Vec<Observation> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for c in 0..12 {
        let p = s.propose(c, &history, &[]).params;
        assert!(
            seen.insert(serde_json::to_string(&p).unwrap()),
            "{p:?} twice"
        );
        let loss =
            (p["n"].as_i64().unwrap() as f64 - 3.0).powi(2) + if p["c"] == "b" { 0.0 } else { 1.0 };
        history.push(complete(c, p, loss));
    }
}

#[test]
fn a_pending_setting_believed_best_is_not_proposed_again() {
    // Hartmann6 in sync batches of 4, the batch's earlier members pending.
    // A pending setting believed below the best objective is the incumbent
    // of log EI: measured against the real best alone it kept an
    // improvement with no variance left, and the next member of the batch
    // landed next to it (within 1e-3 in the unit cube: settings 19, 22,
    // 23, 49 and 59 of these 60 before the fix).
    let space: Vec<String> = (0..6)
        .map(|i| format!(r#""x{i}":{{"type":"float","low":0,"high":1}}"#))
        .collect();
    let st = study(&format!("{{{}}}", space.join(",")), 10);
    let mut s = GpSampler::new(&st, 1, 10);
    let f = |p: &Params| {
        let x: Vec<f64> = (0..6)
            .map(|i| p[&format!("x{i}")].as_f64().unwrap())
            .collect();
        Function::Hartmann6.evaluate(&x)
    };
    let mut history = Vec::new();
    let mut near = Vec::new();
    for start in (0..60).step_by(4) {
        let mut batch: Vec<Params> = Vec::new();
        for c in start..start + 4 {
            let p = s.propose(c, &history, &batch).params;
            if batch.iter().any(|b| dist(&s.space, b, &p) < 1e-3) {
                near.push(c);
            }
            batch.push(p);
        }
        for (i, p) in batch.into_iter().enumerate() {
            let y = f(&p);
            history.push(complete(start + i as u64, p, y));
        }
    }
    assert!(
        near.is_empty(),
        "settings {near:?} were within 1e-3 of a pending one"
    );
}
