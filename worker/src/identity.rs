//! One worker id, one running worker. Two workers with one id would each
//! take the other's claims for leftovers of an earlier life and run the
//! same trials twice, and their heartbeats would hide each other's death.
//!
//! At start a worker claims its id: it creates `heartbeats/<id>.json` with
//! `link(2)` (one of several starters wins), or takes over an existing
//! heartbeat that says `stopped`, whose process is gone from this host, or
//! whose `seq` stands still for three of its intervals on our own clock.
//! A heartbeat that changes while we watch belongs to a live worker: the
//! start is refused. A worker restarted with its own id after a crash
//! therefore always starts, at the latest after three beat intervals.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use hps_common::{Heartbeat, SlurmJob, WorkerState};
use hps_shared_fs::dir::is_not_found;
use hps_shared_fs::host::{hostname, pid_alive};
use hps_shared_fs::{watch_beats, StudyDir, Watched};
use tracing::{info, warn};

use crate::beat::{first_beat, stop_beat};
use crate::config::WorkerConfig;
use crate::error::RunnerError;

/// The Slurm job this process runs in, from the variables Slurm sets in a
/// job's environment; `None` outside Slurm.
pub fn slurm_job_from_env() -> Option<SlurmJob> {
    slurm_job(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
}

/// [`slurm_job_from_env`] over any variable lookup. An array task is named
/// `<array job>_<task>`, the id that stays the same across its requeues
/// (its `SLURM_JOB_ID` is its own, and Slurm documents no promise for it).
fn slurm_job(var: impl Fn(&str) -> Option<String>) -> Option<SlurmJob> {
    let job = match (var("SLURM_ARRAY_JOB_ID"), var("SLURM_ARRAY_TASK_ID")) {
        (Some(array), Some(task)) => format!("{array}_{task}"),
        _ => var("SLURM_JOB_ID")?,
    };
    let node = var("SLURMD_NODENAME").unwrap_or_else(hostname);
    Some(SlurmJob { job, node })
}

/// Claim rounds before giving up on an id that keeps being taken by
/// workers starting at the same moment.
const ROUNDS: usize = 4;

/// The default worker id, `HOST-PID-XXXX` with four random hex digits: two
/// hosts with the same name (containers, cloned VMs) can run processes with
/// the same pid, and `HOST-PID` alone then names two workers.
pub fn default_id() -> String {
    let host: String = hostname()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    let host = host.trim_start_matches('-');
    let host = if host.is_empty() { "worker" } else { host };
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

/// Claim the ids of `configs` (the worker, or each of its slots), writing
/// each one's first beat. On a refusal the ids already claimed say
/// `stopped` again.
pub(crate) fn claim_all(
    dir: &StudyDir,
    configs: &[WorkerConfig],
    shutdown: &AtomicBool,
) -> Result<(), RunnerError> {
    for (k, cfg) in configs.iter().enumerate() {
        if let Err(e) = claim(dir, cfg, shutdown) {
            for done in &configs[..k] {
                stop_beat(dir, done);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// What a starting worker makes of the heartbeat it finds under its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    /// `stopped`, or its process is gone from this host: take it over.
    Free,
    /// Someone else's, maybe live: watch it first.
    Watch,
}

fn judge(old: &Heartbeat, host: &str, pid: u32, alive: impl Fn(u32) -> bool) -> Found {
    let gone_from_here = old.host == host && old.pid != pid && !alive(old.pid);
    if old.state == WorkerState::Stopped || gone_from_here {
        Found::Free
    } else {
        // Our own pid under our host name is a twin (another container
        // with this host name) or an earlier life (a restarted container):
        // only watching tells them apart.
        Found::Watch
    }
}

fn claim(dir: &StudyDir, cfg: &WorkerConfig, shutdown: &AtomicBool) -> Result<(), RunnerError> {
    let first = first_beat(cfg);
    let path = dir.heartbeat_path(&cfg.id)?;
    let mut holder = "another worker starting at the same moment".to_string();
    for _ in 0..ROUNDS {
        let old = match dir.read_heartbeat(&cfg.id) {
            Ok(old) => old,
            Err(e) if is_not_found(&e) => {
                if dir.create_heartbeat(&first)? {
                    return Ok(());
                }
                continue;
            }
            Err(e) if !e.is_damaged() => return Err(e.into()),
            Err(e) => {
                // A damaged beat says nothing about a live worker (a live
                // one rewrites it within an interval).
                warn!("{e}; moving it to quarantine/");
                match dir.quarantine(&path) {
                    Err(e) if !is_not_found(&e) => return Err(e.into()),
                    _ => continue,
                }
            }
        };
        holder = format!("host {}, pid {}", old.host, old.pid);
        if judge(&old, &hostname(), std::process::id(), pid_alive) == Found::Watch {
            watch(&old, &path, cfg, shutdown, || {
                dir.read_heartbeat(&cfg.id).ok()
            })?;
        }
        if dir.replace_heartbeat(&old, &first)? {
            if old.state != WorkerState::Stopped {
                info!(worker = %cfg.id, "took over the id of a worker that stopped beating ({holder})");
            }
            return Ok(());
        }
    }
    Err(RunnerError::IdInUse {
        id: cfg.id.clone(),
        path,
        holder,
    })
}

/// Watch the heartbeat `old` for three of its intervals, measured on our
/// own clock: an error if it changes (a live worker beats under this id),
/// `Ok` once it stood still that long or disappeared.
fn watch(
    old: &Heartbeat,
    path: &std::path::Path,
    cfg: &WorkerConfig,
    shutdown: &AtomicBool,
    reread: impl Fn() -> Option<Heartbeat>,
) -> Result<(), RunnerError> {
    info!(worker = %cfg.id, host = %old.host, pid = old.pid, "a heartbeat with this worker id exists; checking for three of its intervals whether its worker is still running");
    // An unreadable or missing beat ends the watch: the take-over that
    // follows checks that the beat is still the one judged.
    match watch_beats(old, shutdown, || Some(reread())) {
        Watched::Beating(now) => Err(RunnerError::IdInUse {
            id: cfg.id.clone(),
            path: PathBuf::from(path),
            holder: format!("host {}, pid {}", now.host, now.pid),
        }),
        Watched::Interrupted => Err(RunnerError::Interrupted { id: cfg.id.clone() }),
        Watched::Gone | Watched::Standing => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hps_common::FORMAT_VERSION;

    fn beat(host: &str, pid: u32, state: WorkerState) -> Heartbeat {
        Heartbeat {
            format_version: FORMAT_VERSION,
            worker: "w".into(),
            host: host.into(),
            pid,
            device: "cpu".into(),
            seq: 3,
            state,
            trial: None,
            epoch: None,
            interval_s: 0.05,
            written_at_unix: 0.0,
            slurm: None,
        }
    }

    #[test]
    fn two_workers_with_the_same_id_are_told_apart_by_watching() {
        let (alive, dead) = (|_| true, |_| false);
        let idle = WorkerState::Idle;
        assert_eq!(
            judge(&beat("h", 8, idle), "h", 7, dead),
            Found::Free,
            "gone"
        );
        assert_eq!(
            judge(&beat("g", 8, WorkerState::Stopped), "h", 7, alive),
            Found::Free
        );
        assert_eq!(judge(&beat("h", 8, idle), "h", 7, alive), Found::Watch);
        // Another host's pid says nothing about this host's processes; our
        // own pid under our host name may be a twin container.
        assert_eq!(judge(&beat("g", 8, idle), "h", 7, dead), Found::Watch);
        assert_eq!(judge(&beat("h", 7, idle), "h", 7, dead), Found::Watch);
    }

    #[test]
    fn default_ids_differ_between_processes_with_one_host_name_and_pid() {
        let ids: std::collections::BTreeSet<String> = (0..64).map(|_| default_id()).collect();
        assert!(ids.len() > 32, "random suffixes: {ids:?}");
        for id in &ids {
            hps_common::validate_id("worker id", id).unwrap();
        }
    }

    #[test]
    fn the_slurm_job_names_an_array_task_by_its_array_id() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(slurm_job(env(&[])), None);
        let task = slurm_job(env(&[
            ("SLURM_JOB_ID", "15"),
            ("SLURM_ARRAY_JOB_ID", "12"),
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURMD_NODENAME", "gpu2"),
        ]))
        .unwrap();
        assert_eq!((task.job.as_str(), task.node.as_str()), ("12_1", "gpu2"));
        let plain = slurm_job(env(&[("SLURM_JOB_ID", "15"), ("SLURMD_NODENAME", "n")])).unwrap();
        assert_eq!(plain.job, "15");
    }

    #[test]
    fn a_beating_heartbeat_is_refused_and_a_standing_one_taken_over() {
        let cfg = WorkerConfig::new("/nowhere".into(), "w".into());
        let stop = AtomicBool::new(false);
        let old = beat("g", 8, WorkerState::Idle);
        let path = std::path::Path::new("/nowhere/heartbeats/w.json");
        watch(&old, path, &cfg, &stop, || Some(old.clone())).unwrap();
        let beating = Heartbeat {
            seq: 4,
            ..old.clone()
        };
        let e = watch(&old, path, &cfg, &stop, || Some(beating.clone()))
            .unwrap_err()
            .to_string();
        for part in ["`w`", "heartbeats/w.json", "host g, pid 8", "--id"] {
            assert!(e.contains(part), "`{part}` missing from: {e}");
        }
    }
}
