//! The hps master: proposes settings with the study's sampler, publishes
//! them through the shared directory, collects results, and reports.

pub mod liveness;
pub mod presets;
pub mod pruners;
pub mod report;
pub mod run;
pub mod samplers;

use std::path::Path;

use anyhow::{Context, Result};
use hps_common::Study;
use hps_shared_fs::StudyDir;

/// `hps-master init`: validate the study text and create the directory.
/// `source` names where the text came from, for error messages.
pub fn init(dir: &Path, study_text: &str, source: &Path) -> Result<Study> {
    let study: Study = hps_common::parse_versioned(source, study_text)?;
    StudyDir::init(dir, &study)
        .with_context(|| format!("failed to create the study directory `{}`", dir.display()))?;
    Ok(study)
}
