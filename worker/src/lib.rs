//! The hps worker: claims settings from a study directory, trains them and
//! writes result files back.

/// Append one line to a trial's log in a single `write(2)`: `writeln!` on a
/// `File` makes one system call per formatted piece, a dozen for a header
/// line. Errors are ignored, as for every log line: the log is for people.
#[macro_export]
macro_rules! logln {
    ($log:expr, $($arg:tt)*) => {{
        let line = format!("{}\n", format_args!($($arg)*));
        use std::io::Write as _;
        let _ = $log.write_all(line.as_bytes());
    }};
}

mod beat;
pub mod config;
pub mod device;
pub mod error;
pub mod identity;
pub mod progress;
pub mod runner;
pub mod trainers;

pub use trainers::{cnn, exec, function};
