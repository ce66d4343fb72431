//! Time one CPU training epoch of the CNN trainer.
//!
//! `cargo run --release -p hps-worker --example cnn_epoch_profile -- \
//!   [train_size=10000] [nf=32] [batch=128] [threads=2] [epochs=1]`
//!
//! Trains on real Fashion-MNIST (`DEFAULT_DATA_DIR`) with lr 0.01 and
//! momentum 0.9, and prints the mean epoch time and the final train loss
//! (bit patterns, to compare runs for identical results).

use std::path::Path;

use candle_core::Device;
use hps_common::{CnnDefaults, Params};
use hps_worker::cnn::{
    init_cpu_threads, train, CnnConfig, Dataset, EpochControl, Job, DEFAULT_DATA_DIR,
};
use serde_json::json;

/// As in the `hps-worker` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let arg = |i: usize, default: usize| -> usize {
        std::env::args()
            .nth(i)
            .map_or(default, |s| s.parse().expect("numeric argument"))
    };
    let (train_size, nf, batch, threads, epochs) = (
        arg(1, 10_000),
        arg(2, 32),
        arg(3, 128),
        arg(4, 2),
        arg(5, 1),
    );
    init_cpu_threads(Some(threads));
    let data = Dataset::load(Path::new(DEFAULT_DATA_DIR), &Device::Cpu)?;
    let mut params = Params::new();
    params.insert("nf".into(), json!(nf));
    params.insert("batch_size".into(), json!(batch));
    params.insert("lr".into(), json!(0.01));
    params.insert("momentum".into(), json!(0.9));
    let defaults = CnnDefaults {
        train_size,
        val_size: 0,
        test_size: 100,
        ..CnnDefaults::default()
    };
    let cfg = CnnConfig::from_params(&params, &defaults, epochs as u32, None, 7)?;
    let out = train(&Job::new(&cfg, &data, &Device::Cpu), &mut |_| {
        EpochControl::Continue
    })?;
    let last = out.curve.last().expect("one epoch");
    println!(
        "train_size={train_size} nf={nf} batch={batch} threads={threads} epoch_time_s={:.3} train_loss={:.6} bits={:016x} test_loss={:016x}",
        out.metrics["epoch_time_s"],
        last.train_loss,
        last.train_loss.to_bits(),
        out.metrics.get("test_loss").copied().unwrap_or(f64::NAN).to_bits(),
    );
    Ok(())
}
