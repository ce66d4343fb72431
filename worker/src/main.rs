use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Result;
use clap::Parser;
use hps_common::seconds::at_least_ms;
use hps_common::Seconds;
use hps_worker::device::DeviceSpec;
use hps_worker::runner::{self, WorkerConfig};

/// mimalloc keeps freed memory for reuse; with the system allocator the
/// multi-MB tensors of every training step were returned to the kernel
/// and faulted back in, page by page.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// This worker's name, unique within the study (default: HOST-PID-XXXX,
    /// XXXX random). A worker restarted with the same name hands the trials
    /// it held back to the queue at once (they resume from their
    /// checkpoints); a name whose heartbeat another worker is still writing
    /// is refused.
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
    #[arg(long, value_name = "SECONDS", value_parser = at_least_ms::<50>)]
    poll: Option<Seconds>,
    /// Rescan at least every SECONDS even when events work.
    #[arg(long, value_name = "SECONDS", default_value = "2", value_parser = at_least_ms::<50>)]
    rescan: Seconds,
    /// Write the heartbeat every SECONDS.
    #[arg(long, value_name = "SECONDS", default_value = "2", value_parser = at_least_ms::<100>)]
    heartbeat: Seconds,
    /// CPU threads for training (default: all cores). With several CPU
    /// workers on one machine, give each cores / workers.
    #[arg(long)]
    threads: Option<usize>,
    /// Run S trials at once in this process, sharing the loaded dataset and
    /// the device (small CNNs leave a big GPU mostly idle; see docs/gpu.md).
    /// Each slot appears as worker `<id>-s<k>`.
    #[arg(long, value_name = "S", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    slots: u16,
    /// How long a pruning decision may be due (the trial reached one of its
    /// decision epochs) before the worker trains on and says in its log
    /// that decisions stopped coming (no master running, or a slow one).
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = at_least_ms::<50>)]
    decision_wait: Seconds,
    /// More log output (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Must happen before any thread exists (candle's pools read it once).
    hps_worker::cnn::init_cpu_threads(cli.threads);
    hps_shared_fs::logging::init(cli.verbose);
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", hps_common::error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> Result<()> {
    let id = cli.id.unwrap_or_else(hps_worker::identity::default_id);
    let mut cfg = WorkerConfig::new(cli.dir, id);
    cfg.device = cli.device;
    cfg.data = cli.data;
    cfg.once = cli.once;
    cfg.slots = cli.slots as usize;
    cfg.poll = cli.poll.map(Seconds::duration);
    cfg.rescan = cli.rescan.duration();
    cfg.heartbeat_interval = cli.heartbeat.duration();
    cfg.decision_wait = cli.decision_wait.duration();
    cfg.slurm = hps_worker::identity::slurm_job_from_env();
    let shutdown = Arc::new(AtomicBool::new(false));
    hps_shared_fs::shutdown::set_on_signal(shutdown.clone(), "handing the current trial back");
    let summary = runner::run(&cfg, shutdown)?;
    if summary.interrupted {
        eprintln!(
            "worker {} stopped after {} trials; its trial in hand went back to the queue",
            cfg.id, summary.trials
        );
    }
    Ok(())
}
