//! Names that become file names: trial ids and worker ids.
//!
//! They end up as path components in a shared directory, so anything that
//! could escape it (`/`, `..`) or hide from scanners (a leading `.`) is
//! rejected.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} `{value}`: {reason}")]
pub struct IdError {
    pub kind: &'static str,
    pub value: String,
    pub reason: &'static str,
}

/// Accepts 1–128 characters from `[A-Za-z0-9_.-]`, not starting with `.`,
/// and never containing `..`. `@` is reserved as the claim separator.
pub fn validate_id(kind: &'static str, value: &str) -> Result<(), IdError> {
    let err = |reason| {
        Err(IdError {
            kind,
            value: value.to_string(),
            reason,
        })
    };
    if value.is_empty() {
        return err("must not be empty");
    }
    if value.len() > 128 {
        return err("must be at most 128 characters");
    }
    if value.starts_with('.') {
        return err("must not start with `.`");
    }
    if value.contains("..") {
        return err("must not contain `..`");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return err("may only contain letters, digits, `_`, `-` and `.`");
    }
    Ok(())
}

/// The trial id for the `index`-th trial of a study: `t000042`.
pub fn trial_id(index: u64) -> String {
    format!("t{index:06}")
}

/// The inverse of [`trial_id`].
pub fn trial_index(id: &str) -> Option<u64> {
    id.strip_prefix('t')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        for ok in ["t000001", "gpu0", "node-3.gpu_1", "a"] {
            assert!(validate_id("worker id", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_traversal_and_hidden_names() {
        for bad in [
            "", "../x", "a/b", "..", ".hidden", "x..y", "a@b", "a b", "é",
        ] {
            assert!(validate_id("trial id", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn trial_ids_round_trip_and_sort() {
        assert_eq!(trial_id(42), "t000042");
        assert_eq!(trial_index("t000042"), Some(42));
        assert!(trial_id(9) < trial_id(10));
    }
}
