//! The hps master: proposes settings with the study's sampler, publishes
//! them through the shared directory, collects results, and reports.

pub mod error;
pub mod estimate;
pub mod liveness;
pub mod migrate;
pub mod presets;
pub mod pruners;
pub mod report;
pub mod run;
pub mod samplers;
pub mod scan;
pub mod script_paths;

use std::path::Path;

use hps_common::Study;
use hps_shared_fs::StudyDir;

pub use error::MasterError;

/// `hps-master init`: validate the study text and create the directory.
/// `source` names where the text came from, for error messages; when it is
/// a file (not a preset), the exec trainer's relative script paths are
/// read from its directory ([`script_paths`]).
pub fn init(dir: &Path, study_text: &str, source: &Path) -> Result<Study, MasterError> {
    let mut study: Study = hps_common::parse_versioned(source, study_text)?;
    let file = source.is_file().then_some(source);
    script_paths::resolve(&mut study, file, dir).map_err(|e| e.in_file(source))?;
    StudyDir::init(dir, &study).map_err(|source| MasterError::Init {
        dir: dir.to_path_buf(),
        source,
    })?;
    Ok(study)
}
