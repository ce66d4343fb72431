//! The worker's heartbeat: the first beat that claims its id, a beat every
//! interval while it works (saying which trial it trains), and the final
//! `stopped` beat.

use std::sync::{Arc, Mutex};

use hps_common::files::unix_now;
use hps_common::{Heartbeat, WorkerState, FORMAT_VERSION};
use hps_shared_fs::host::hostname;
use hps_shared_fs::{Periodic, StudyDir};
use tracing::warn;

use crate::config::WorkerConfig;

/// What the heartbeat thread reports.
#[derive(Debug, Clone, Default)]
pub(crate) struct Status {
    pub trial: Option<String>,
    pub epoch: Option<u32>,
}

/// The beat that claims a worker id at start (see [`identity`]).
pub(crate) fn first_beat(cfg: &WorkerConfig) -> Heartbeat {
    heartbeat(cfg, &Status::default(), 0, WorkerState::Idle)
}

/// The final beat: `stopped`, with the largest `seq`.
pub(crate) fn stop_beat(dir: &StudyDir, cfg: &WorkerConfig) {
    let hb = heartbeat(cfg, &Status::default(), u64::MAX, WorkerState::Stopped);
    if let Err(e) = dir.write_heartbeat(&hb) {
        warn!("{e}");
    }
}

fn heartbeat(cfg: &WorkerConfig, st: &Status, seq: u64, state: WorkerState) -> Heartbeat {
    Heartbeat {
        format_version: FORMAT_VERSION,
        worker: cfg.id.clone(),
        host: hostname(),
        pid: std::process::id(),
        device: cfg.device.to_string(),
        seq,
        state,
        trial: st.trial.clone(),
        epoch: st.epoch,
        interval_s: cfg.heartbeat_interval.as_secs_f64(),
        written_at_unix: unix_now(),
        slurm: cfg.slurm.clone(),
    }
}

/// The heartbeat thread: a beat every interval, `training` while a trial
/// is in hand.
pub(crate) fn spawn_heartbeat(
    dir: StudyDir,
    cfg: WorkerConfig,
    status: Arc<Mutex<Status>>,
) -> Periodic {
    let interval = cfg.heartbeat_interval;
    Periodic::start("heartbeat", interval, move |seq| {
        let st = status.lock().unwrap().clone();
        let state = if st.trial.is_some() {
            WorkerState::Training
        } else {
            WorkerState::Idle
        };
        dir.write_heartbeat(&heartbeat(&cfg, &st, seq, state))
    })
}
