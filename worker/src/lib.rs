//! The hps worker: claims settings from a study directory, trains them and
//! writes result files back.

pub mod device;
pub mod identity;
pub mod progress;
pub mod runner;
pub mod trainers;

pub use trainers::{cnn, exec, function};
