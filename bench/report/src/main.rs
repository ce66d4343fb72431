//! Report benchmark (issue 11 §4): writes synthetic cnn-like study
//! directories of 100, 1,000 and 10,000 trials through the real file
//! protocol (`hps_shared_fs::StudyDir`), then times
//! `hps-master report DIR -o FILE` on each and prints trials, seconds and
//! file size. Not a test: the issue's targets (10,000 trials in under 2 s
//! and 10 MB; 100 trials under 1 MB) are printed beside the numbers, never
//! asserted.
//!
//! ```text
//! bench-report [--bin PATH] [--sizes 100,1000,10000] [--keep DIR]
//! bench-report --generate-only DIR --sizes 100
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use hps_common::{
    EpochStat, Finished, Instruments, LayerStat, Params, TrialResult, TrialSetting, TrialStatus,
    FORMAT_VERSION,
};
use hps_shared_fs::StudyDir;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

/// The study every synthetic directory holds: 4 hyperparameters, one
/// log-scaled and one categorical, 20 epochs, ASHA (so one run per
/// setting: hps's pruners compare single runs).
const STUDY: &str = r#"{
  "format_version": 1,
  "name": "bench-report",
  "description": "Synthetic cnn-like study for bench/report.",
  "space": {
    "lr": {"type": "float", "low": 0.001, "high": 0.5, "log": true},
    "momentum": {"type": "float", "low": 0.0, "high": 0.95},
    "nf": {"type": "categorical", "choices": [4, 8, 16, 32]},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5}
  },
  "objective": {"metric": "val_error", "direction": "minimize"},
  "sampler": {"kind": "random", "seed": 1},
  "budget": {"trials": TRIALS, "epochs": 20},
  "mode": {"kind": "async", "queue": 8},
  "pruner": {"kind": "asha", "min_epochs": 1, "eta": 3},
  "trainer": {"kind": "cnn", "defaults": {"train_size": 5000, "val_size": 1000, "test_size": 1000}}
}"#;

const EPOCHS: u32 = 20;
const WORKERS: usize = 8;
const LAYERS: [&str; 3] = ["conv1", "conv2", "dense1"];

struct Args {
    bin: PathBuf,
    sizes: Vec<u64>,
    keep: Option<PathBuf>,
    generate_only: Option<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        bin: PathBuf::from("target/release/hps-master"),
        sizes: vec![100, 1_000, 10_000],
        keep: None,
        generate_only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--bin" => a.bin = PathBuf::from(value()?),
            "--keep" => a.keep = Some(PathBuf::from(value()?)),
            "--generate-only" => a.generate_only = Some(PathBuf::from(value()?)),
            "--sizes" => {
                a.sizes = value()?
                    .split(',')
                    .map(|s| s.trim().replace('_', "").parse::<u64>())
                    .collect::<Result<_, _>>()
                    .context("--sizes takes numbers like 100,1000,10000")?
            }
            "-h" | "--help" => {
                println!("bench-report [--bin PATH] [--sizes 100,1000,10000] [--keep DIR] [--generate-only DIR]");
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}` (see --help)"),
        }
    }
    Ok(a)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    if let Some(dir) = &args.generate_only {
        for &n in &args.sizes {
            let d = dir.join(format!("study-{n}"));
            generate(&d, n)?;
            println!("{}", d.display());
        }
        return Ok(());
    }
    check_report_cli(&args.bin)?;
    let tmp = tempfile::tempdir()?;
    let root = args
        .keep
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    println!(
        "{:>8}  {:>9}  {:>9}  {:>12}",
        "trials", "seconds", "size MB", "generated in"
    );
    for &n in &args.sizes {
        let dir = root.join(format!("study-{n}"));
        let t = Instant::now();
        generate(&dir, n)?;
        let generated = t.elapsed().as_secs_f64();
        let out = root.join(format!("report-{n}.html"));
        let (secs, bytes) = time_report(&args.bin, &dir, &out)?;
        println!(
            "{n:>8}  {secs:>9.3}  {:>9.2}  {generated:>11.1}s",
            bytes as f64 / 1e6
        );
    }
    println!("targets (issue 11 §4): 10,000 trials in < 2 s and < 10 MB; 100 trials < 1 MB");
    Ok(())
}

/// Fail clearly when the binary is missing or has no `report` subcommand.
fn check_report_cli(bin: &Path) -> Result<()> {
    let out = Command::new(bin)
        .args(["report", "--help"])
        .output()
        .with_context(|| {
            format!(
                "cannot run `{}`; build it with `cargo build --release -p hps-master` or pass --bin",
                bin.display()
            )
        })?;
    if !out.status.success() {
        bail!(
            "`{} report` does not exist in this build (the subcommand of issue 11 §1); \
             build a hps-master that has it, or pass --bin. It said:\n{}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Run `bin report DIR -o OUT`; its wall time in seconds and the file's size.
fn time_report(bin: &Path, dir: &Path, out: &Path) -> Result<(f64, u64)> {
    let t = Instant::now();
    let o = Command::new(bin)
        .arg("report")
        .arg(dir)
        .arg("-o")
        .arg(out)
        .env("RUST_LOG", "warn")
        .output()
        .with_context(|| format!("failed to run `{}`", bin.display()))?;
    let secs = t.elapsed().as_secs_f64();
    if !o.status.success() {
        bail!(
            "`{} report {}` failed ({}):\n{}",
            bin.display(),
            dir.display(),
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let bytes = std::fs::metadata(out)
        .with_context(|| format!("the report `{}` was not written", out.display()))?
        .len();
    Ok((secs, bytes))
}

/// A finished study of `n` trials at `dir` (replaced if it exists).
fn generate(dir: &Path, n: u64) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("failed to clear `{}`", dir.display()))?;
    }
    let text = STUDY.replace("TRIALS", &n.to_string());
    let study = hps_common::parse_versioned(Path::new("study.json"), &text)?;
    let sd = StudyDir::init(dir, &study)?;
    let mut rng = ChaCha8Rng::seed_from_u64(n);
    let mut clock = [1_700_000_000.0_f64; WORKERS];
    for index in 0..n {
        let mut s = TrialSetting::new(index, sample_params(&mut rng), EPOCHS, "random");
        s.seed = 1;
        s.decide_at = vec![1, 3, 9];
        sd.record_setting(&s)?;
        let w = (index as usize) % WORKERS;
        let r = result(&s, &mut rng, w, &mut clock[w]);
        sd.submit_result(&r)?;
    }
    sd.mark_finished(&Finished {
        format_version: FORMAT_VERSION,
        trials: n,
        finished_at_unix: clock.iter().copied().fold(0.0, f64::max),
    })?;
    Ok(())
}

fn sample_params(rng: &mut ChaCha8Rng) -> Params {
    let lr = (rng.random_range(0.001f64.ln()..0.5f64.ln())).exp();
    let nf = [4, 8, 16, 32][rng.random_range(0..4)];
    Params::from([
        ("lr".to_string(), json!(lr)),
        ("momentum".to_string(), json!(rng.random_range(0.0..0.95))),
        ("nf".to_string(), json!(nf)),
        ("dropout".to_string(), json!(rng.random_range(0.0..0.5))),
    ])
}

/// How a synthetic trial ends: most complete, some pruned at a rung, a few
/// diverge (large learning rates) or fail.
fn fate(rng: &mut ChaCha8Rng, lr: f64) -> (TrialStatus, u32) {
    let u: f64 = rng.random();
    if u < 0.02 {
        (TrialStatus::Failed, 0)
    } else if lr > 0.3 && u < 0.3 {
        (TrialStatus::Diverged, rng.random_range(1..8))
    } else if u < 0.15 {
        (TrialStatus::Pruned, [1, 3, 9][rng.random_range(0..3)])
    } else {
        (TrialStatus::Complete, EPOCHS)
    }
}

/// The result of `s` on worker `w`, whose clock `now` it advances.
fn result(s: &TrialSetting, rng: &mut ChaCha8Rng, w: usize, now: &mut f64) -> TrialResult {
    let p = |k: &str| s.params[k].as_f64().unwrap_or(0.0);
    let (lr, momentum, nf, dropout) = (p("lr"), p("momentum"), p("nf"), p("dropout"));
    let (status, epochs) = fate(rng, lr);
    // The error this setting converges to: best near lr 0.05, more filters
    // help, a little dropout helps.
    let floor = 0.02
        + 0.05 * (lr / 0.05).ln().powi(2) / 10.0
        + 0.08 / nf.sqrt()
        + 0.1 * (dropout - 0.2).powi(2)
        + 0.01 * (1.0 - momentum);
    let speed = 0.15 + 2.0 * lr * (1.0 + momentum);
    let epoch_s = (2.0 + nf * 0.25) * rng.random_range(0.9..1.1);
    let mut curve = Vec::new();
    for e in 1..=epochs {
        let t = f64::from(e);
        let noise = 1.0 + 0.03 * (rng.random::<f64>() - 0.5);
        let val_error = (floor + (0.9 - floor) * (-speed * t).exp()) * noise;
        let mut train_loss = 2.3 * (-speed * t).exp() + floor * 0.8;
        let mut val_loss = train_loss * 1.1 + 0.01 * t * (1.0 - dropout);
        if status == TrialStatus::Diverged && e == epochs {
            train_loss = f64::NAN;
            val_loss = f64::NAN;
        }
        curve.push(EpochStat {
            train_error: None,
            epoch: e,
            elapsed_s: t * epoch_s,
            train_loss,
            val_loss,
            val_error: if val_loss.is_nan() {
                f64::NAN
            } else {
                val_error.min(0.9)
            },
            instruments: Some(instruments(rng, lr, t, nf)),
        });
    }
    let wall = f64::from(epochs) * epoch_s + 1.5;
    *now += wall + rng.random_range(0.0..3.0);
    let mut r = TrialResult::for_setting(s, &format!("w{w}"), "cpu");
    r.status = status;
    r.epochs_completed = epochs;
    r.wall_time_s = wall;
    r.finished_at_unix = *now;
    let best = curve
        .iter()
        .filter(|c| c.val_loss.is_finite())
        .min_by(|a, b| a.val_loss.total_cmp(&b.val_loss));
    if let Some(b) = best {
        r.best_epoch = Some(b.epoch);
        r.metrics = [
            ("train_loss", b.train_loss),
            ("val_loss", b.val_loss),
            ("val_error", b.val_error),
            ("test_error", b.val_error * 1.02),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if status != TrialStatus::Diverged {
            r.objective = Some(b.val_error);
        }
    }
    if status == TrialStatus::Failed {
        r.error = Some("synthetic failure: CUDA out of memory".into());
    }
    r.curve = curve;
    r
}

fn instruments(rng: &mut ChaCha8Rng, lr: f64, t: f64, nf: f64) -> Instruments {
    let activations = LAYERS
        .iter()
        .enumerate()
        .map(|(i, layer)| LayerStat {
            layer: (*layer).to_string(),
            mean: 0.1 * (i as f64 + 1.0) + 0.01 * rng.random::<f64>(),
            std: 0.5 + 0.1 * (t / 20.0) + 0.01 * nf.ln(),
        })
        .collect();
    Instruments {
        first_abs_weight: None,
        first_abs_grad: None,
        lr,
        grad_norm: 1.0 / (1.0 + 0.2 * t) + 0.05 * rng.random::<f64>(),
        weight_norm: 10.0 + lr * t * 5.0,
        update_ratio: lr * 0.01 / (1.0 + 0.1 * t),
        activations,
    }
}
