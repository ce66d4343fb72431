//! A figure model and its SVG rendering.
//!
//! The page builders in `page` describe each figure as data ([`Figure`],
//! [`Parallel`]); this module alone turns that into SVG. The same SVG is
//! inlined in the HTML report and written to `--figures` files, and
//! rasterised for `--format png`, so a figure is drawn by one mechanism.
//!
//! The SVG carries what the page's script and the browser test need:
//! - the root `<svg>` has `class="figure"`, `id` = [`Figure::id`],
//!   `data-series` = the number of series drawn and `data-points` = the
//!   number of point, bar and line vertex marks drawn;
//! - every series is one `<g class="series ...">` with its
//!   [`Series::class`] added, and `data-name` = its name;
//! - hover text is a `<title>` child of the mark (native tooltips, no
//!   script needed).
//!
//! # Counting rules
//!
//! `data-series` is the number of `<g class="series ...">` groups, one per
//! [`Series`] of the figure (a series with nothing drawable still gets its
//! empty group, so the count always equals `Figure::series.len()`).
//!
//! `data-points` counts the marks written into the SVG:
//! - [`Mark::Points`]: one per disc or cross;
//! - [`Mark::Bars`]: one per rectangle;
//! - [`Mark::Line`]: one per vertex of its path(s);
//! - [`Mark::Whiskers`]: one per error bar;
//! - [`Mark::Band`]: nothing (an area, not marks).
//!
//! A value that cannot be drawn (non-finite, or ≤ 0 on a log axis) is
//! skipped and not counted. A mark outside a forced [`Axis::range`] is
//! written and counted; the plot area's clip path hides it.
//!
//! For a [`Parallel`] figure, `data-series` is the number of lines and
//! `data-points` the number of vertices drawn (values that are not NaN and
//! fit their axis's scale). Each line is one
//! `<path class="series {class}">` (no wrapping group, to keep big
//! studies small) with its hover as a `<title>` child.
//!
//! # Output
//!
//! The SVG is standalone (it carries `xmlns`, so it is a valid `.svg` file
//! and also inlines in HTML), uses only `font-family="sans-serif"` and has
//! no external references. Ids inside it (clip path, gradient) are prefixed
//! with the figure's id so several figures can share one page. Coordinates
//! have at most one decimal. A figure with no drawable data draws its axes
//! and a centred "no data yet".

mod color;
#[cfg(test)]
mod examples;
mod marks;
mod parallel;
mod png;
mod render;
mod svg;
mod ticks;

pub use color::{colormap, palette};
pub use png::{png, ChartError};

/// Default figure size in px.
pub const DEFAULT_WIDTH: u32 = 640;
/// Default figure size in px.
pub const DEFAULT_HEIGHT: u32 = 400;

/// An sRGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Color(pub u8, pub u8, pub u8);

/// How an axis maps data to position.
#[derive(Debug, Clone, PartialEq)]
pub enum Scale {
    Linear,
    /// Base-10 logarithmic; values ≤ 0 are not drawn.
    Log,
    /// Named positions `0, 1, …, n-1` (workers of a timeline, parameters of
    /// an importance chart); data coordinates are the indices.
    Category(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// The label, with its unit: "wall time (s)", "validation error (fraction)".
    pub label: String,
    pub scale: Scale,
    /// Force the range; `None`: fit the data (with a small margin).
    pub range: Option<(f64, f64)>,
}

/// One point of a [`Mark::Points`] series.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    /// Tooltip: trial id and hyperparameters.
    pub hover: Option<String>,
    /// Overrides the series' colour (points coloured by a parameter).
    pub color: Option<Color>,
}

/// A rectangle in data coordinates: a Gantt bar, an importance bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub x0: f64,
    pub x1: f64,
    pub y0: f64,
    pub y1: f64,
    pub hover: Option<String>,
    pub color: Option<Color>,
}

/// A vertical error bar at `x` from `lo` to `hi` (or horizontal when the
/// figure's y axis is a [`Scale::Category`] and x is numeric: then `x` is
/// the category index and `lo`/`hi` are on the x axis).
#[derive(Debug, Clone, PartialEq)]
pub struct Whisker {
    pub x: f64,
    pub lo: f64,
    pub hi: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Mark {
    /// A polyline; non-finite points break it into pieces.
    Line {
        points: Vec<(f64, f64)>,
        dashed: bool,
        /// Stroke width in px (1.5 is a good default).
        width: f64,
    },
    Points {
        points: Vec<Point>,
        /// Radius in px.
        radius: f64,
        /// Drawn as crosses instead of discs (pruned trials, failures).
        cross: bool,
    },
    /// A translucent filled band between `lo` and `hi` at each `x`.
    Band {
        x: Vec<f64>,
        lo: Vec<f64>,
        hi: Vec<f64>,
    },
    Bars(Vec<Bar>),
    Whiskers(Vec<Whisker>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The legend entry (and `data-name`).
    pub name: String,
    /// Listed in the legend. Many per-trial lines share one legend entry
    /// instead (e.g. the first line of each status).
    pub legend: bool,
    pub color: Color,
    pub mark: Mark,
    /// Tooltip of the whole series (a trial's line: its id and parameters).
    pub hover: Option<String>,
    /// Extra CSS classes, space-separated, for the page's filters:
    /// `status-pruned`, `trial-t000012`, `single-run`.
    pub class: String,
}

/// A colour scale shown beside the plot when series are coloured by a
/// hyperparameter.
#[derive(Debug, Clone, PartialEq)]
pub struct ColorBar {
    pub label: String,
    pub log: bool,
    pub lo: f64,
    pub hi: f64,
}

/// An x–y figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// HTML id and `--figures` file stem, e.g. `history`.
    pub id: String,
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
    pub colorbar: Option<ColorBar>,
    /// Shown under the title, one line per `\n`, e.g. "showing the best
    /// 200 and 300 random of 10,000 trials\nbudget: 20 epochs × …".
    pub note: Option<String>,
    /// Size in px.
    pub width: u32,
    pub height: u32,
}

/// One vertical axis of a parallel-coordinates figure.
#[derive(Debug, Clone, PartialEq)]
pub struct ParallelAxis {
    pub label: String,
    pub scale: Scale,
    /// The axis's range (for a category axis: ignored).
    pub lo: f64,
    pub hi: f64,
}

/// One polyline across all axes (one trial).
#[derive(Debug, Clone, PartialEq)]
pub struct ParallelLine {
    /// One value per axis (a category's index for category axes); NaN: missing.
    pub values: Vec<f64>,
    pub color: Color,
    pub hover: Option<String>,
    pub class: String,
}

/// A parallel-coordinates figure: every hyperparameter and the objective.
#[derive(Debug, Clone, PartialEq)]
pub struct Parallel {
    pub id: String,
    pub title: String,
    pub axes: Vec<ParallelAxis>,
    pub lines: Vec<ParallelLine>,
    pub colorbar: Option<ColorBar>,
    /// Shown under the title, one line per `\n`.
    pub note: Option<String>,
    pub width: u32,
    pub height: u32,
}

impl Figure {
    /// An empty figure of the default size ([`DEFAULT_WIDTH`] ×
    /// [`DEFAULT_HEIGHT`]): no series, no colour bar, no note.
    pub fn new(id: impl Into<String>, title: impl Into<String>, x: Axis, y: Axis) -> Figure {
        Figure {
            id: id.into(),
            title: title.into(),
            x,
            y,
            series: Vec::new(),
            colorbar: None,
            note: None,
            width: DEFAULT_WIDTH,
            height: DEFAULT_HEIGHT,
        }
    }
}

impl Axis {
    /// A linear axis fitted to the data.
    pub fn linear(label: impl Into<String>) -> Axis {
        Axis {
            label: label.into(),
            scale: Scale::Linear,
            range: None,
        }
    }

    /// A base-10 log axis fitted to the (positive) data.
    pub fn log(label: impl Into<String>) -> Axis {
        Axis {
            label: label.into(),
            scale: Scale::Log,
            range: None,
        }
    }

    /// A category axis: position `i` is labelled `names[i]`.
    pub fn category(label: impl Into<String>, names: Vec<String>) -> Axis {
        Axis {
            label: label.into(),
            scale: Scale::Category(names),
            range: None,
        }
    }
}
