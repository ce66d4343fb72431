//! Schemas shared by every hps component.
//!
//! Everything that crosses a process boundary lives here: the study file
//! ([`Study`]), the search space ([`ParamSpec`]), the files the master writes
//! ([`TrialSetting`]) and the files workers write back ([`TrialResult`],
//! [`Heartbeat`]). Every file carries a `format_version`; readers reject
//! versions they do not know instead of guessing.
//!
//! Maps are `BTreeMap` so every file is written in a stable order.

pub mod arch;
pub mod cnn;
pub mod error;
pub mod exec;
pub mod exercise;
pub mod files;
pub mod format;
pub mod functions;
pub mod ids;
pub mod metric;
pub mod seconds;
pub mod space;
pub mod state;
pub mod study;
pub mod suggest;

pub use error::{error_chain, FieldError, SchemaError};
pub use files::{
    Action, Decision, EpochStat, Finished, Heartbeat, Instruments, LayerStat, MasterLease, Params,
    Progress, ProgressPoint, ResultDigest, SlurmJob, Source, Spent, TrialResult, TrialSetting,
    TrialStatus, WorkerState,
};
pub use ids::{validate_id, IdError};
pub use metric::{Metric, UnknownMetric};
pub use seconds::{Seconds, SecondsError};
pub use space::ParamSpec;
pub use state::TrialState;
pub use study::{
    Budget, CnnDefaults, Direction, Mode, Objective, PrunerSpec, SamplerSpec, Study, TrainerSpec,
};

/// The version written into, and required of, every file hps reads or writes.
pub const FORMAT_VERSION: u32 = 1;

/// Parse `text` (the contents of `file`) as `T`, then check its
/// `format_version`.
///
/// Errors name the file and the JSON path of the offending field
/// (for example `space.lr.low`), so the user knows exactly what to fix.
pub fn parse_versioned<T>(file: &std::path::Path, text: &str) -> Result<T, SchemaError>
where
    T: serde::de::DeserializeOwned + Versioned,
{
    // Check the version first: an unknown version should be reported as
    // such, not as whichever field happened to change between versions.
    // Only the version is read here: the rest of the text is skipped, not
    // built into a `Value` (which cost as much as the parse below). Text
    // that is not a JSON object takes the full parse, whose error says why.
    #[derive(serde::Deserialize)]
    struct Head {
        format_version: Option<serde_json::Value>,
    }
    let version = match serde_json::from_str::<Head>(text) {
        Ok(head) => head.format_version,
        Err(_) => {
            let raw: serde_json::Value =
                serde_json::from_str(text).map_err(|e| SchemaError::Json {
                    file: file.to_path_buf(),
                    field: String::new(),
                    message: e.to_string(),
                })?;
            raw.get("format_version").cloned()
        }
    };
    match version.as_ref() {
        None => {
            return Err(SchemaError::Invalid {
                file: file.to_path_buf(),
                field: "format_version".into(),
                message: format!(
                    "missing; this hps writes and reads format_version {FORMAT_VERSION}"
                ),
            })
        }
        Some(v) if v.as_u64() != Some(FORMAT_VERSION as u64) => {
            return Err(SchemaError::Invalid {
                file: file.to_path_buf(),
                field: "format_version".into(),
                message: format!(
                    "unsupported version {v}; this hps reads format_version {FORMAT_VERSION} \
                     (was the file written by a newer hps?)"
                ),
            })
        }
        Some(_) => {}
    }
    let de = &mut serde_json::Deserializer::from_str(text);
    let value: T = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        SchemaError::Json {
            file: file.to_path_buf(),
            field: if field == "." { String::new() } else { field },
            message: suggest::explain_unknown(text, &e.into_inner().to_string()),
        }
    })?;
    value.validate().map_err(|e| e.in_file(file))?;
    Ok(value)
}

/// A file type with a `format_version` and semantic checks beyond serde's.
pub trait Versioned {
    /// Checks that serde cannot express; the error names the field path.
    fn validate(&self) -> Result<(), FieldError> {
        Ok(())
    }
}

/// Serialize a file for writing: pretty JSON with a trailing newline, so it
/// reads well with `cat` and diffs well.
pub fn to_pretty_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(value).expect("hps schema types always serialize");
    out.push(b'\n');
    out
}
