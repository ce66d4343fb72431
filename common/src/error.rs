use std::path::PathBuf;

/// A file that could not be understood. Always names the file and, when it
/// is known, the field.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("{}: {}{message}", file.display(), field_prefix(field))]
    Json {
        file: PathBuf,
        field: String,
        message: String,
    },
    #[error("{}: {}{message}", file.display(), field_prefix(field))]
    Invalid {
        file: PathBuf,
        field: String,
        message: String,
    },
}

impl SchemaError {
    /// The JSON path of the offending field, empty when the whole file is bad.
    pub fn field(&self) -> &str {
        match self {
            SchemaError::Json { field, .. } | SchemaError::Invalid { field, .. } => field,
        }
    }
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("field `{field}`: ")
    }
}
