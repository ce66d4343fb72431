use std::path::{Path, PathBuf};

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

/// A value that fails a check serde cannot express: the JSON path of the
/// field (relative to the file, e.g. `space.lr.low`) and what is wrong.
/// [`FieldError::in_file`] turns it into a [`SchemaError`] naming the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error with `prefix.` put before the field path (for a
    /// check made relative to a sub-object, e.g. one parameter's spec).
    pub fn under(self, prefix: &str) -> FieldError {
        FieldError {
            field: format!("{prefix}.{}", self.field),
            message: self.message,
        }
    }

    /// The error as found in `file`.
    pub fn in_file(self, file: &Path) -> SchemaError {
        SchemaError::Invalid {
            file: file.to_path_buf(),
            field: self.field,
            message: self.message,
        }
    }
}

/// The one-line message a binary prints for `e`: its text, then each
/// source's, joined by `: `, leaving out a source whose text the message
/// already ends with (an error that shows its cause in its own text, as
/// `FsError::Io` does, would otherwise print it twice).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(cause) = cur {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_prints_a_cause_once() {
        let io = std::io::Error::from_raw_os_error(21);
        #[derive(Debug, thiserror::Error)]
        #[error("failed to remove `x`: {0}")]
        struct Shows(#[source] std::io::Error);
        #[derive(Debug, thiserror::Error)]
        #[error("reading the lease")]
        struct Hides(#[source] Shows);
        let text = error_chain(&Hides(Shows(io)));
        assert_eq!(text.matches("Is a directory").count(), 1, "{text}");
        assert!(
            text.starts_with("reading the lease: failed to remove `x`: Is a directory"),
            "{text}"
        );
    }

    #[test]
    fn field_error_display_and_file() {
        let e = FieldError::new("budget.epochs", "must be at least 1");
        assert_eq!(e.to_string(), "budget.epochs: must be at least 1");
        let e = FieldError::new("low", "x").under("space.lr");
        assert_eq!(e.field, "space.lr.low");
        let s = e.in_file(Path::new("study.json"));
        assert_eq!(s.field(), "space.lr.low");
        assert_eq!(s.to_string(), "study.json: field `space.lr.low`: x");
    }
}
