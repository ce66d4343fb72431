use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Parser;
use hps_worker::device::DeviceSpec;
use hps_worker::runner::{self, WorkerConfig};

/// hps worker: claims hyperparameter settings from a study directory,
/// trains them, and writes result files back. Run one per GPU.
#[derive(Parser)]
#[command(name = "hps-worker", version, about)]
struct Cli {
    /// The study directory (created by `hps-master init`).
    dir: PathBuf,
    /// Where to train: `cpu` or `cuda:N` (needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// This worker's name, unique within the study (default: HOST-PID).
    /// A worker restarted with the same name resumes the trials it held.
    #[arg(long)]
    id: Option<String>,
    /// Dataset directory with MNIST-format IDX files
    /// (default: the study's trainer.data, else /usr/share/datasets/fashion-mnist).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Exit after one trial.
    #[arg(long)]
    once: bool,
    /// Never use filesystem events; rescan every SECONDS
    /// (the default on NFS/FUSE/Ceph/Lustre, where events are unreliable).
    #[arg(long, value_name = "SECONDS")]
    poll: Option<f64>,
    /// Rescan at least every SECONDS even when events work.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    rescan: f64,
    /// Write the heartbeat every SECONDS.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    heartbeat: f64,
    /// CPU threads for training (default: all cores). With several CPU
    /// workers on one machine, give each cores / workers.
    #[arg(long)]
    threads: Option<usize>,
    /// More log output (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Must happen before any thread exists (candle's pools read it once).
    hps_worker::cnn::init_cpu_threads(cli.threads);
    init_tracing(cli.verbose);
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn seconds(name: &str, v: f64) -> Result<Duration> {
    if !v.is_finite() || v <= 0.0 {
        bail!("--{name} must be a positive number of seconds, got {v}");
    }
    Ok(Duration::from_secs_f64(v))
}

fn real_main(cli: Cli) -> Result<()> {
    let id = cli
        .id
        .unwrap_or_else(|| format!("{}-{}", hps_shared_fs::dir::hostname(), std::process::id()));
    let mut cfg = WorkerConfig::new(cli.dir, id);
    cfg.device = cli.device;
    cfg.data = cli.data;
    cfg.once = cli.once;
    cfg.poll = cli.poll.map(|p| seconds("poll", p)).transpose()?;
    cfg.rescan = seconds("rescan", cli.rescan)?;
    cfg.heartbeat_interval = seconds("heartbeat", cli.heartbeat)?;
    let shutdown = Arc::new(AtomicBool::new(false));
    on_signal(shutdown.clone());
    let summary = runner::run(&cfg, shutdown)?;
    if summary.interrupted {
        eprintln!("worker {} stopped after {} trials; its trial in hand went back to the queue", cfg.id, summary.trials);
    }
    Ok(())
}

/// SIGTERM / SIGINT (Slurm or Kubernetes preemption, Ctrl-C) set the flag;
/// the worker hands its trial back and exits 0. A second signal exits at once.
fn on_signal(flag: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        rt.block_on(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
                return;
            };
            loop {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                if flag.swap(true, Ordering::SeqCst) {
                    std::process::exit(130);
                }
                tracing::info!("signal received; handing the current trial back (again to exit at once)");
            }
        });
    });
}
