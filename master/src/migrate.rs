//! `hps-master migrate DIR`: convert a study directory of the flat layout
//! (directory format 1) to the sharded one (format 2), offline.
//!
//! It holds the master lease while it works (taken as `run` takes it, so a
//! running master makes it refuse, and no master starts meanwhile), refuses
//! while a worker's heartbeat changes (watched as `status` watches it), and
//! then moves the files ([`hps_shared_fs::layout::migrate`]). A crash
//! leaves a directory every command refuses until `migrate` is run again.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use hps_shared_fs::layout::{self, Migrated};
use hps_shared_fs::StudyDir;

use crate::error::MasterError;
use crate::run::lease::Lease;

/// The lease interval while migrating: as `run`'s default.
const LEASE_INTERVAL: Duration = Duration::from_secs(2);

/// Migrate the study directory `root` and say what was done on `out`.
pub fn migrate(root: &Path, out: &mut dyn Write) -> Result<Migrated, MasterError> {
    let dir = StudyDir::open_for_migration(root)?;
    let lease = Lease::acquire(&dir, LEASE_INTERVAL, &AtomicBool::new(false))?;
    let done = (|| {
        let workers = crate::views::running_workers(&dir)?;
        if !workers.is_empty() {
            return Err(MasterError::WorkersRunning {
                dir: root.to_path_buf(),
                workers: workers.join(", "),
            });
        }
        let m = layout::migrate(root)?;
        lease.check()?;
        Ok(m)
    })();
    lease.release();
    let m = done?;
    if m.already {
        writeln!(
            out,
            "{} already has the sharded layout (directory format 2); nothing to do",
            root.display()
        )?;
    } else {
        writeln!(
            out,
            "{} now has the sharded layout (directory format 2): {} files moved into \
             their shards",
            root.display(),
            m.moved
        )?;
    }
    for q in &m.quarantined {
        writeln!(
            out,
            "moved aside (a flat copy of a file already in its shard): {}",
            q.display()
        )?;
    }
    Ok(m)
}
