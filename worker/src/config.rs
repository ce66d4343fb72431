//! A worker's settings, validated by the binary: where, as whom and how
//! often it works.

use std::path::PathBuf;
use std::time::Duration;

use hps_common::SlurmJob;

use crate::device::DeviceSpec;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub dir: PathBuf,
    /// Unique among the study's workers; becomes a file name.
    pub id: String,
    pub device: DeviceSpec,
    /// Dataset directory; overrides the study's `trainer.data`.
    pub data: Option<PathBuf>,
    /// `Some(interval)`: scan only, no native events.
    pub poll: Option<Duration>,
    pub rescan: Duration,
    pub heartbeat_interval: Duration,
    /// Exit after one trial.
    pub once: bool,
    /// Trials run at once, sharing the loaded dataset and the device. Each
    /// slot is a worker of its own to the protocol, named `<id>-s<k>`.
    pub slots: usize,
    /// How long a pruning decision may be due before the worker trains on
    /// (cnn) and says that decisions stopped coming.
    pub decision_wait: Duration,
    /// The Slurm job this worker runs in (recorded in its heartbeat).
    pub slurm: Option<SlurmJob>,
}

impl WorkerConfig {
    pub fn new(dir: PathBuf, id: String) -> Self {
        WorkerConfig {
            dir,
            id,
            device: DeviceSpec::Cpu,
            data: None,
            poll: None,
            rescan: Duration::from_secs(2),
            heartbeat_interval: Duration::from_secs(2),
            once: false,
            slots: 1,
            decision_wait: crate::progress::DECISION_WAIT,
            slurm: None,
        }
    }
}
