//! The hps worker: claims settings from a study directory, trains them and
//! writes result files back.

pub mod cnn;
pub mod device;
pub mod exec;
pub mod function;
pub mod progress;
pub mod runner;
