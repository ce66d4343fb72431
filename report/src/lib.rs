//! `hps-master report`: one self-contained HTML file per study (or per
//! comparison of studies) with the figures and statistics that answer the
//! seeds' questions.
//!
//! - [`stats`]: the numbers behind the figures (reshuffle bands, confidence
//!   intervals, hyperparameter importance), each unit-tested on its own.
//! - [`chart`]: a small figure model rendered to SVG (inline in the page,
//!   or as files) and to PNG.
//! - `load` and `page`: a study directory read once, and the page built
//!   from it.

pub mod chart;
pub mod stats;
