//! The computations behind the report's figures. Pure functions over
//! numbers: nothing here reads files or draws. How each is defined is
//! written up in docs/report.md, "How the statistics are computed".

pub mod diagnose;
mod hypothesis;
mod importance;
mod reshuffle;
mod summary;
mod tree;
mod welch;

pub use hypothesis::{effect, verdict, Effect, Verdict};
pub use importance::{importance, Importance, ImportanceError};
pub use reshuffle::{best_so_far, reshuffle, Reshuffle};
pub use summary::{summarize, t_interval, Summary};
pub use welch::{welch, Welch};
