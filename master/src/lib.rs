//! The hps master: proposes settings with the study's sampler, publishes
//! them through the shared directory, collects results, and reports.

pub mod error;
pub mod estimate;
pub mod liveness;
pub mod migrate;
pub mod presets;
pub mod pruners;
pub mod run;
pub mod samplers;
pub mod scan;
pub mod script_paths;
pub mod views;

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

/// For the `function` trainer: a warning when the function is not a
/// finite number somewhere on the corners of the searched box (a range
/// such as `x0 ∈ [-1e200, 1e200]` on branin overflows). Such trials end
/// `diverged` with the reason; the warning says so before any runs.
pub fn overflow_warning(study: &Study) -> Option<String> {
    let hps_common::TrainerSpec::Function { name, dim, .. } = &study.trainer else {
        return None;
    };
    let d = name.dimension(*dim).ok()?;
    let ends: Vec<[f64; 2]> = (0..d)
        .map(|i| {
            let spec = study.space.get(&format!("x{i}"))?;
            let at = |u: f64| spec.from_unit(u).as_f64();
            Some([at(0.0)?, at(1.0)?])
        })
        .collect::<Option<_>>()?;
    // Every corner for small dimensions; for larger ones the two extreme
    // corners and each single coordinate flipped from the low one.
    let corners: Vec<Vec<f64>> = if d <= 10 {
        (0..1u32 << d)
            .map(|m| (0..d).map(|i| ends[i][(m >> i & 1) as usize]).collect())
            .collect()
    } else {
        let mut c = vec![ends.iter().map(|e| e[0]).collect::<Vec<_>>()];
        c.push(ends.iter().map(|e| e[1]).collect());
        for i in 0..d {
            let mut x = c[0].clone();
            x[i] = ends[i][1];
            c.push(x);
        }
        c
    };
    let bad = corners.iter().find(|x| !name.evaluate(x).is_finite())?;
    let at: Vec<String> = bad
        .iter()
        .enumerate()
        .map(|(i, v)| format!("x{i} = {v}"))
        .collect();
    Some(format!(
        "{} is not a finite number at {} (a corner of the space): trials that land where it overflows end `diverged`; narrow the ranges in `space` if that is not what you want",
        name.as_str(),
        at.join(", ")
    ))
}
