//! `hps-master report`: one self-contained HTML file per study (or per
//! comparison of studies) with the figures and statistics that answer the
//! seeds' questions. `docs/report.md` describes every figure.
//!
//! - [`load`]: a study directory read once;
//! - [`stats`]: the numbers behind the figures (reshuffle bands, confidence
//!   intervals, hyperparameter importance), each unit-tested on its own;
//! - [`chart`]: a small figure model rendered to SVG (inline in the page,
//!   or as files) and to PNG;
//! - [`page`]: the figures and tables of a study, and the HTML page.

pub mod chart;
mod error;
pub mod load;
pub mod page;
pub mod stats;

pub use error::ReportError;
pub use load::StudyData;
mod write;

pub use page::Options;
pub use write::{write, FigureFormat, Written};
