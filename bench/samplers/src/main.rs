//! hps's side of the sampler benchmark. `run.sh` uses `serve` (below),
//! driven by `bench.py`, which runs Optuna's side through the same loop.
//!
//! Without a mode: hps's samplers on the analytic test functions, in
//! process, sequentially (batch 1; CMA-ES with its default population,
//! evaluated one by one), one line per (function, sampler, seed):
//! `function sampler seed regret` (the same regrets `serve` gives).
//!
//! Usage: bench-samplers [TRIALS] [SEEDS]; `ONLY=tpe,branin` restricts the
//! run to the samplers and functions named.
//!
//! `bench-samplers serve`: one sampler at a time driven over stdin/stdout
//! by `bench.py` (the BBOB functions and the mixed space live in Python,
//! so both sides evaluate the very same code). One command a line, one
//! answer a line:
//!
//! - `study {JSON}`: a new run; the study file as JSON on one line (its
//!   space, sampler, seed and mode). Answer `ok`.
//! - `ask`: the next setting; answer `{"config":C,"params":{…}}`. The
//!   sampler sees every told result as history and every setting asked and
//!   not yet told as pending, as the master passes them.
//! - `tell C VALUE`: the objective (minimised) of setting C. Answer `ok`.
//!
//! `bench-samplers cost N[,N…]`: the wall time of one proposal (the median
//! of 3) by TPE, CMA-ES, the GP and auto with N finished trials of
//! hartmann6 in the history, one line per (sampler, N):
//! `cost sampler N seconds`. The GP is skipped above `GP_MAX` (2000).

use hps_common::functions::Function;
use hps_common::{Study, TrialStatus};
use hps_master::samplers::{build, Observation};

const FUNCTIONS: [(Function, usize, &str); 4] = [
    (Function::Branin, 2, "branin"),
    (Function::Hartmann6, 6, "hartmann6"),
    (Function::StyblinskiTang, 4, "styblinski_tang4"),
    (Function::Rosenbrock, 4, "rosenbrock4"),
];

const SAMPLERS: [&str; 6] = ["random", "quasi_random", "tpe", "cmaes", "gp", "auto"];

fn study(f: Function, dim: usize, kind: &str, seed: u64, trials: u64) -> Study {
    let space: Vec<String> = f
        .domain(dim)
        .iter()
        .enumerate()
        .map(|(i, (lo, hi))| format!(r#""x{i}":{{"type":"float","low":{lo},"high":{hi}}}"#))
        .collect();
    let text = format!(
        r#"{{"format_version":1,"name":"bench","space":{{{}}},
          "objective":{{"metric":"value","direction":"minimize"}},
          "mode":{{"kind":"sync","batch":1}},
          "sampler":{{"kind":"{kind}","seed":{seed}}},"budget":{{"trials":{trials}}},
          "trainer":{{"kind":"function","name":"{}","dim":{dim}}}}}"#,
        space.join(","),
        f.as_str()
    );
    hps_common::parse_versioned(std::path::Path::new("bench.json"), &text).expect("valid study")
}

/// `cost sampler N seconds` per sampler and history size.
fn cost(sizes: &str) {
    let (f, dim) = (Function::Hartmann6, 6);
    for kind in ["tpe", "cmaes", "gp", "auto"] {
        for n in sizes.split(',').map(|s| s.parse::<u64>().expect("N")) {
            // The GP's posterior over N results is an N x N Cholesky: at
            // 10,000 that is minutes, which is why auto leaves it at 250.
            let gp_max: u64 = std::env::var("GP_MAX")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(2000);
            if kind == "gp" && n > gp_max {
                println!("cost {kind} {n} skipped(GP_MAX={gp_max})");
                continue;
            }
            let st = study(f, dim, kind, 0, n + 10);
            let mut random = build(
                &study(f, dim, "random", 1, n + 10),
                std::path::Path::new("r.json"),
            )
            .expect("random");
            let history: Vec<Observation> = (0..n)
                .map(|c| {
                    let p = random.propose(c, &[], &[]).params;
                    let x: Vec<f64> = (0..dim)
                        .map(|i| p[&format!("x{i}")].as_f64().expect("float"))
                        .collect();
                    Observation {
                        config: c,
                        params: p,
                        status: TrialStatus::Complete,
                        loss: Some(f.evaluate(&x)),
                        last_intermediate: None,
                    }
                })
                .collect();
            let mut sampler =
                build(&st, std::path::Path::new("bench-study.json")).expect("sampler");
            let mut times: Vec<f64> = (0..3)
                .map(|k| {
                    let t = std::time::Instant::now();
                    sampler.propose(n + k, &history, &[]);
                    t.elapsed().as_secs_f64()
                })
                .collect();
            times.sort_by(f64::total_cmp);
            println!("cost {kind} {n} {:.4}", times[1]);
        }
    }
}

/// The state of one run in `serve` mode.
struct Run {
    sampler: Box<dyn hps_master::samplers::Sampler>,
    history: Vec<Observation>,
    /// Settings asked and not yet told, by config.
    pending: std::collections::BTreeMap<u64, hps_common::Params>,
    next: u64,
}

fn serve() -> Result<(), String> {
    use std::io::{BufRead, Write};
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    let mut run: Option<Run> = None;
    for line in stdin.lock().lines() {
        let line = line.map_err(|e| format!("reading stdin: {e}"))?;
        let (cmd, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let answer = match cmd {
            "study" => {
                let st: Study =
                    hps_common::parse_versioned(std::path::Path::new("bench.json"), rest)
                        .map_err(|e| format!("study: {e}"))?;
                let sampler = build(&st, std::path::Path::new("bench.json"))
                    .map_err(|e| format!("sampler: {e}"))?;
                run = Some(Run {
                    sampler,
                    history: Vec::new(),
                    pending: Default::default(),
                    next: 0,
                });
                "ok".to_string()
            }
            "ask" => {
                let r = run.as_mut().ok_or("ask before study")?;
                let pending: Vec<hps_common::Params> = r.pending.values().cloned().collect();
                let p = r.sampler.propose(r.next, &r.history, &pending).params;
                let answer = serde_json::json!({"config": r.next, "params": p}).to_string();
                r.pending.insert(r.next, p);
                r.next += 1;
                answer
            }
            "tell" => {
                let r = run.as_mut().ok_or("tell before study")?;
                let (c, v) = rest.split_once(' ').ok_or("tell needs CONFIG VALUE")?;
                let c: u64 = c.parse().map_err(|_| format!("tell: bad config {c:?}"))?;
                let v: f64 = v.parse().map_err(|_| format!("tell: bad value {v:?}"))?;
                let params = r
                    .pending
                    .remove(&c)
                    .ok_or(format!("tell: setting {c} is not pending"))?;
                let ok = v.is_finite();
                r.history.push(Observation {
                    config: c,
                    params,
                    status: if ok {
                        TrialStatus::Complete
                    } else {
                        TrialStatus::Diverged
                    },
                    loss: ok.then_some(v),
                    last_intermediate: None,
                });
                "ok".to_string()
            }
            other => return Err(format!("unknown command {other:?} (study, ask, tell)")),
        };
        writeln!(out, "{answer}")
            .and_then(|()| out.flush())
            .map_err(|e| format!("writing stdout: {e}"))?;
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        if let Err(e) = serve() {
            eprintln!("bench-samplers serve: {e}");
            std::process::exit(2);
        }
        return;
    }
    if args.get(1).map(String::as_str) == Some("cost") {
        return cost(args.get(2).map_or("100,1000,10000", String::as_str));
    }
    let trials: u64 = args.get(1).map_or(100, |a| a.parse().expect("TRIALS"));
    let seeds: u64 = args.get(2).map_or(10, |a| a.parse().expect("SEEDS"));
    let only: Vec<String> = std::env::var("ONLY")
        .map(|v| v.split(',').map(String::from).collect())
        .unwrap_or_default();
    let wanted = |names: &[&str], x: &str| {
        !names.iter().any(|n| only.iter().any(|o| o == n)) || only.iter().any(|o| o == x)
    };
    for (f, dim, fname) in FUNCTIONS {
        if !wanted(&FUNCTIONS.map(|f| f.2), fname) {
            continue;
        }
        for kind in SAMPLERS {
            if !wanted(&SAMPLERS, kind) {
                continue;
            }
            let seed0: u64 = std::env::var("SEED0")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            for seed in seed0..seed0 + seeds {
                let st = study(f, dim, kind, seed, trials);
                let mut sampler =
                    build(&st, std::path::Path::new("bench-study.json")).expect("sampler");
                let mut history: Vec<Observation> = Vec::new();
                let mut best = f64::INFINITY;
                for c in 0..trials {
                    let p = sampler.propose(c, &history, &[]).params;
                    let x: Vec<f64> = (0..dim)
                        .map(|i| p[&format!("x{i}")].as_f64().expect("float"))
                        .collect();
                    let y = f.evaluate(&x);
                    best = best.min(y);
                    history.push(Observation {
                        config: c,
                        params: p,
                        status: TrialStatus::Complete,
                        loss: Some(y),
                        last_intermediate: None,
                    });
                }
                println!("{fname} hps_{kind} {seed} {:e}", best - f.optimum(dim));
            }
        }
    }
}
