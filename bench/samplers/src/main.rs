//! Runs hps's samplers on the analytic test functions, sequentially (batch
//! 1; CMA-ES with its default population, evaluated one by one), and prints
//! one line per (function, sampler, seed): `function sampler seed regret`.
//!
//! Usage: bench-samplers [TRIALS] [SEEDS]; `ONLY=tpe,branin` restricts the
//! run to the samplers and functions named.

use hps_common::functions::Function;
use hps_common::{Study, TrialStatus};
use hps_master::samplers::{build, Observation};

const FUNCTIONS: [(Function, usize, &str); 4] = [
    (Function::Branin, 2, "branin"),
    (Function::Hartmann6, 6, "hartmann6"),
    (Function::StyblinskiTang, 4, "styblinski_tang4"),
    (Function::Rosenbrock, 4, "rosenbrock4"),
];

const SAMPLERS: [&str; 4] = ["random", "quasi_random", "tpe", "cmaes"];

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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let trials: u64 = args.get(1).map_or(100, |a| a.parse().expect("TRIALS"));
    let seeds: u64 = args.get(2).map_or(10, |a| a.parse().expect("SEEDS"));
    let only: Vec<String> = std::env::var("ONLY").map(|v| v.split(',').map(String::from).collect()).unwrap_or_default();
    let wanted = |names: &[&str], x: &str| !names.iter().any(|n| only.iter().any(|o| o == n)) || only.iter().any(|o| o == x);
    for (f, dim, fname) in FUNCTIONS {
        if !wanted(&FUNCTIONS.map(|f| f.2), fname) {
            continue;
        }
        for kind in SAMPLERS {
            if !wanted(&SAMPLERS, kind) {
                continue;
            }
            let seed0: u64 = std::env::var("SEED0").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
            for seed in seed0..seed0 + seeds {
                let st = study(f, dim, kind, seed, trials);
                let mut sampler = build(&st, std::path::Path::new("bench-study.json")).expect("sampler");
                let mut history: Vec<Observation> = Vec::new();
                let mut best = f64::INFINITY;
                for c in 0..trials {
                    let p = sampler.propose(c, &history, &[]).params;
                    let x: Vec<f64> = (0..dim).map(|i| p[&format!("x{i}")].as_f64().expect("float")).collect();
                    let y = f.evaluate(&x);
                    best = best.min(y);
                    history.push(Observation { config: c, params: p, status: TrialStatus::Complete, loss: Some(y), last_intermediate: None });
                }
                println!("{fname} hps_{kind} {seed} {:e}", best - f.optimum(dim));
            }
        }
    }
}
