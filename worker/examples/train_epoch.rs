//! Train the seed's cnn for a few epochs on Fashion-MNIST and print one JSON
//! line with the training time per epoch, the throughput and the test
//! accuracy. `bench/train/run.sh` runs it beside `bench/train/train_torch.py`,
//! which prints the same fields for the same model in PyTorch.
//!
//! ```text
//! cargo run --release --example train_epoch -p hps-worker -- --nf 32 --threads 2
//! ```
//!
//! Timed: the training batches of each epoch (shuffle included), as the
//! trainer's `epoch_time_s` does; loading the data and evaluating are not.
//! `steady_epoch_time_s` and `samples_per_s` leave out the first epoch,
//! which carries the warm-up, when there is more than one.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use hps_common::{CnnDefaults, Params};
use hps_worker::cnn::{
    init_cpu_threads, train, CnnConfig, Dataset, EpochControl, Job, DEFAULT_DATA_DIR,
};
use hps_worker::device::DeviceSpec;
use serde_json::json;

/// Time training epochs of the hps cnn trainer.
#[derive(Parser)]
struct Args {
    /// Filters per conv layer.
    #[arg(long, default_value_t = 32)]
    nf: u64,
    #[arg(long, default_value_t = 128)]
    batch_size: u64,
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    #[arg(long, default_value_t = 1)]
    epochs: u32,
    /// Training examples, from the start of the training file.
    #[arg(long, default_value_t = 60000)]
    train_size: u64,
    /// Validation examples, from the end of the training file.
    #[arg(long, default_value_t = 0)]
    val_size: u64,
    /// Test examples, from the start of the test file; 0 = all.
    #[arg(long, default_value_t = 0)]
    test_size: u64,
    /// CPU threads (candle's rayon pool).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// `cpu` or `cuda:N` (needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Directory with the four MNIST-format IDX files.
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    data: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Before anything else starts a thread: it sets environment variables.
    let threads = init_cpu_threads(Some(args.threads));
    match run(&args, threads) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("train_epoch: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args, threads: usize) -> Result<()> {
    let device = args.device.open()?;
    let data = Dataset::load(&args.data, &device)
        .with_context(|| format!("failed to load `{}`", args.data.display()))?;
    let params: Params = [
        ("nf", json!(args.nf)),
        ("batch_size", json!(args.batch_size)),
        ("lr", json!(args.lr)),
        ("momentum", json!(args.momentum)),
        ("train_size", json!(args.train_size)),
        ("val_size", json!(args.val_size)),
        ("test_size", json!(args.test_size)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let cfg = CnnConfig::from_params(
        &params,
        &CnnDefaults::default(),
        args.epochs,
        None,
        args.seed,
    )?;

    // `elapsed_s` is cumulative training time; its steps are epoch times.
    let mut epoch_times = Vec::new();
    let mut last_elapsed = 0.0;
    let outcome = train(&Job::new(&cfg, &data, &device), &mut |s| {
        epoch_times.push(s.elapsed_s - last_elapsed);
        last_elapsed = s.elapsed_s;
        EpochControl::Continue
    })?;
    let m = &outcome.metrics;
    let metric = |k: &str| m.get(k).copied();
    let total: f64 = epoch_times.iter().sum();
    let mean = total / epoch_times.len().max(1) as f64;
    // The first epoch carries the warm-up; with one epoch it is all there is.
    let steady = if epoch_times.len() > 1 {
        &epoch_times[1..]
    } else {
        &epoch_times[..]
    };
    let steady_total: f64 = steady.iter().sum();
    let test_n = if cfg.hyper.test_size == 0 {
        data.test_len()
    } else {
        cfg.hyper.test_size
    };
    let line = json!({
        "impl": "hps",
        "framework": "candle 0.11",
        "device": args.device.to_string(),
        "threads": threads,
        "nf": cfg.hyper.nf,
        "batch_size": cfg.hyper.batch_size,
        "lr": cfg.hyper.lr,
        "momentum": cfg.hyper.momentum,
        "seed": cfg.seed,
        "epochs": outcome.epochs_completed,
        "train_size": cfg.hyper.train_size,
        "val_size": cfg.hyper.val_size,
        "test_size": test_n,
        "epoch_times_s": epoch_times,
        "epoch_time_s": mean,
        "steady_epoch_time_s": steady_total / steady.len().max(1) as f64,
        "samples_per_s": (cfg.hyper.train_size * steady.len()) as f64 / steady_total,
        "train_loss": metric("last_train_loss"),
        "val_accuracy": metric("last_val_error").map(|e| 1.0 - e),
        "test_accuracy": metric("last_test_error").map(|e| 1.0 - e),
        "steps": outcome.steps,
        "status": format!("{:?}", outcome.status).to_lowercase(),
    });
    println!("{line}");
    Ok(())
}
