//! Writing the report: the HTML file, and each figure as its own file.

use std::path::{Path, PathBuf};

use crate::page::{self, Options};
use crate::{ReportError, StudyData};

/// The format of `--figures` files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FigureFormat {
    Svg,
    Png,
}

impl FigureFormat {
    pub fn extension(self) -> &'static str {
        match self {
            FigureFormat::Svg => "svg",
            FigureFormat::Png => "png",
        }
    }
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Written {
    pub html: PathBuf,
    pub bytes: usize,
    pub figures: usize,
    /// Every study is finished.
    pub finished: bool,
}

/// Reads the study directories `dirs`, writes the report to `out`
/// (atomically: a reader never sees half a page) and, when asked, every
/// figure to `figures` as its own file.
pub fn write(
    dirs: &[PathBuf],
    out: &Path,
    opts: &Options,
    figures: Option<(&Path, FigureFormat)>,
) -> Result<Written, ReportError> {
    let studies = dirs
        .iter()
        .map(|d| StudyData::load(d))
        .collect::<Result<Vec<_>, _>>()?;
    let report = page::build(&studies, opts)?;
    hps_shared_fs::write_atomic(out, report.html.as_bytes()).map_err(|e| ReportError::Write {
        path: out.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    if let Some((dir, format)) = figures {
        std::fs::create_dir_all(dir).map_err(|source| ReportError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        for f in &report.figures {
            let path = dir.join(format!("{}.{}", f.id, format.extension()));
            let bytes = match format {
                FigureFormat::Svg => f.svg.clone().into_bytes(),
                FigureFormat::Png => {
                    crate::chart::png(&f.svg, 2.0).map_err(|e| ReportError::Png {
                        path: path.clone(),
                        message: e.to_string(),
                    })?
                }
            };
            std::fs::write(&path, bytes).map_err(|source| ReportError::Write { path, source })?;
        }
    }
    Ok(Written {
        html: out.to_path_buf(),
        bytes: report.html.len(),
        figures: report.figures.len(),
        finished: studies.iter().all(|d| d.finished),
    })
}
