//! The hps master: proposes settings with the study's sampler, publishes
//! them through the shared directory, collects results, and reports.

pub mod error;
pub mod liveness;
pub mod presets;
pub mod pruners;
pub mod report;
pub mod run;
pub mod samplers;
pub mod scan;

use std::path::Path;

use hps_common::Study;
use hps_shared_fs::StudyDir;

pub use error::MasterError;

/// `hps-master init`: validate the study text and create the directory.
/// `source` names where the text came from, for error messages.
pub fn init(dir: &Path, study_text: &str, source: &Path) -> Result<Study, MasterError> {
    let study: Study = hps_common::parse_versioned(source, study_text)?;
    StudyDir::init(dir, &study).map_err(|source| MasterError::Init {
        dir: dir.to_path_buf(),
        source,
    })?;
    Ok(study)
}
