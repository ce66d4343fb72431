//! The computations behind the report's figures. Pure functions over
//! numbers: nothing here reads files or draws. How each is defined is
//! written up in docs/report.md, "How the statistics are computed".

pub mod diagnose;
mod importance;
mod reshuffle;
mod summary;
mod tree;

pub use importance::{importance, Importance, ImportanceError};
pub use reshuffle::{best_so_far, reshuffle, Reshuffle};
pub use summary::{summarize, t_interval, Summary};
