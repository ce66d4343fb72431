//! `Seconds`: a positive, finite number of seconds, as the command-line
//! flags of the master and the worker take them (`--poll 0.5`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A positive, finite number of seconds. Implements `FromStr`, so it serves
/// as a clap value parser: `#[arg(long)] poll: Option<Seconds>`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Seconds(f64);

/// Not a positive, finite number of seconds.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SecondsError {
    #[error("must be a positive number of seconds, got {0}")]
    NotPositive(f64),
    #[error("must be a positive number of seconds, got `{0}`")]
    NotANumber(String),
    #[error(
        "must be at least {min} seconds, got {got}: a shorter interval only adds file writes \
         and directory scans (each heartbeat or lease renewal is a synced write)"
    )]
    TooShort { got: f64, min: f64 },
}

/// A clap value parser for intervals: [`Seconds`] of at least `MS`
/// milliseconds (`#[arg(value_parser = at_least_ms::<100>)]`), so that
/// `--heartbeat 1e-9` is refused with its lower bound, not obeyed.
pub fn at_least_ms<const MS: u64>(s: &str) -> Result<Seconds, SecondsError> {
    let v: Seconds = s.parse()?;
    let min = MS as f64 / 1000.0;
    if v.0 < min {
        return Err(SecondsError::TooShort { got: v.0, min });
    }
    Ok(v)
}

impl Seconds {
    pub fn new(s: f64) -> Result<Seconds, SecondsError> {
        if s.is_finite() && s > 0.0 {
            Ok(Seconds(s))
        } else {
            Err(SecondsError::NotPositive(s))
        }
    }

    pub fn as_f64(self) -> f64 {
        self.0
    }

    pub fn duration(self) -> Duration {
        Duration::from_secs_f64(self.0)
    }
}

impl From<Seconds> for Duration {
    fn from(s: Seconds) -> Duration {
        s.duration()
    }
}

impl FromStr for Seconds {
    type Err = SecondsError;

    fn from_str(s: &str) -> Result<Seconds, SecondsError> {
        let v: f64 = s
            .trim()
            .parse()
            .map_err(|_| SecondsError::NotANumber(s.to_string()))?;
        Seconds::new(v)
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_positive_finite_seconds() {
        let s: Seconds = "0.5".parse().unwrap();
        assert_eq!(s.duration(), Duration::from_millis(500));
        assert_eq!(
            Duration::from("2".parse::<Seconds>().unwrap()),
            Duration::from_secs(2)
        );
        assert_eq!("2".parse::<Seconds>().unwrap().to_string(), "2");
        for bad in ["0", "-1", "inf", "NaN", "abc", ""] {
            let e = bad.parse::<Seconds>().unwrap_err().to_string();
            assert!(
                e.starts_with("must be a positive number of seconds"),
                "{bad}: {e}"
            );
        }
        assert_eq!(
            "-1".parse::<Seconds>().unwrap_err().to_string(),
            "must be a positive number of seconds, got -1"
        );
    }

    #[test]
    fn intervals_have_a_lower_bound() {
        assert_eq!(at_least_ms::<100>("0.1").unwrap().as_f64(), 0.1);
        assert_eq!(at_least_ms::<100>("2").unwrap().as_f64(), 2.0);
        let e = at_least_ms::<100>("1e-9").unwrap_err().to_string();
        assert!(
            e.starts_with("must be at least 0.1 seconds, got 0.000000001"),
            "{e}"
        );
        assert!(at_least_ms::<100>("-1").is_err());
    }
}
