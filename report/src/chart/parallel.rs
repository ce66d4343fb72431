//! [`Parallel::to_svg`]: parallel coordinates.

use std::fmt::Write;

use super::svg::{self, esc, text, text_width, title, truncate, N, COLORBAR_W};
use super::ticks::{domain, ticks, Map, Ticks};
use super::{Axis, Parallel, ParallelAxis, ParallelLine, Scale};

/// Tick labels on parallel axes are a little smaller than on x–y figures.
const FONT: f64 = 10.0;
/// Category labels longer than this are cut with an ellipsis.
const CATEGORY_CHARS: usize = 14;

impl Parallel {
    /// The figure as a standalone SVG document: one vertical axis per
    /// [`ParallelAxis`] (label on top, ticks on its left) and one
    /// `<path class="series {class}">` per line, broken where a value is
    /// missing (see the module doc for the counting rules).
    pub fn to_svg(&self) -> String {
        let (w, h) = (f64::from(self.width), f64::from(self.height));
        let top = if self.note.as_deref().is_some_and(|n| !n.is_empty()) { 46.0 } else { 30.0 } + 30.0;
        let bottom = (h - 20.0).max(top + 20.0);
        let target = ((bottom - top) / 50.0).max(2.0) as usize;
        let axes: Vec<(Map, Ticks)> = (0..self.axes.len())
            .map(|i| {
                let a = &self.axes[i];
                let (d0, d1) = domain(&self.axis(i), &self.column(i));
                let m = Map { log: matches!(a.scale, Scale::Log), d0, d1, p0: bottom, p1: top };
                (m, ticks(&a.scale, d0, d1, target))
            })
            .collect();
        let first_w = axes
            .first()
            .map_or(0.0, |(_, t)| t.major.iter().map(|(_, s)| text_width(&truncate(s, CATEGORY_CHARS), FONT)).fold(0.0, f64::max));
        let left = (first_w + 20.0).clamp(48.0, w * 0.3);
        let cb_w = if self.colorbar.is_some() { COLORBAR_W } else { 0.0 };
        let right = (w - 48.0 - cb_w).max(left + 10.0);
        let spacing = if self.axes.len() > 1 { (right - left) / (self.axes.len() - 1) as f64 } else { 0.0 };
        let xs: Vec<f64> = (0..self.axes.len())
            .map(|i| if self.axes.len() > 1 { left + i as f64 * spacing } else { (left + right) / 2.0 })
            .collect();

        let mut body = String::new();
        let mut points = 0;
        for line in &self.lines {
            points += draw_line(&mut body, line, &axes, &xs);
        }
        let mut out = String::with_capacity(body.len() + 8192);
        svg::open(&mut out, &self.id, self.lines.len(), points, self.width, self.height);
        svg::heading(&mut out, self.width, &self.title, self.note.as_deref());
        let id = esc(&self.id);
        let _ = write!(
            out,
            "<defs><clipPath id=\"{id}-clip\"><rect x=\"0\" y=\"{}\" width=\"{w}\" height=\"{}\"/></clipPath></defs>\
             <g class=\"plot\" clip-path=\"url(#{id}-clip)\" fill=\"none\" stroke-width=\"1.2\" stroke-opacity=\"0.6\" stroke-linejoin=\"round\">{body}</g>",
            N(top),
            N(bottom - top)
        );
        let label_w = if self.axes.len() > 1 { spacing - 6.0 } else { right - left };
        self.draw_axes(&mut out, &axes, &xs, top, bottom, label_w.min(2.0 * left - 8.0));
        if points == 0 {
            svg::no_data(&mut out, (left + right) / 2.0, (top + bottom) / 2.0);
        }
        if let Some(cb) = &self.colorbar {
            let x = right + 36.0;
            svg::colorbar(&mut out, &self.id, cb, x, top, bottom.min(top + 220.0));
        }
        out.push_str("</svg>\n");
        out
    }

    /// Axis `i` as an [`Axis`] with its range forced (ignored when the
    /// scale cannot show it, then the data are fitted).
    fn axis(&self, i: usize) -> Axis {
        let a: &ParallelAxis = &self.axes[i];
        let range = match a.scale {
            Scale::Category(_) => None,
            _ => Some((a.lo, a.hi)),
        };
        Axis { label: a.label.clone(), scale: a.scale.clone(), range }
    }

    /// All lines' values on axis `i`.
    fn column(&self, i: usize) -> Vec<f64> {
        self.lines.iter().filter_map(|l| l.values.get(i).copied()).collect()
    }

    /// Axis lines, ticks and labels, drawn over the lines.
    fn draw_axes(&self, out: &mut String, axes: &[(Map, Ticks)], xs: &[f64], top: f64, bottom: f64, label_w: f64) {
        let (mut marks, mut labels) = (String::new(), String::new());
        let max_chars = (label_w / (11.0 * svg::CHAR_W)).max(3.0) as usize;
        for ((a, (m, t)), &x) in self.axes.iter().zip(axes).zip(xs) {
            let _ = write!(marks, "M{} {}V{}", N(x), N(top), N(bottom));
            let step = match a.scale {
                Scale::Category(_) => ((t.major.len() as f64 * 12.0 / (bottom - top)).ceil() as usize).max(1),
                _ => 1,
            };
            for (j, (v, s)) in t.major.iter().enumerate() {
                let Some(y) = m.px(*v) else { continue };
                let _ = write!(marks, "M{} {}h-4", N(x), N(y));
                if j % step == 0 {
                    text(&mut labels, x - 6.0, y + 3.5, "text-anchor=\"end\"", &truncate(s, CATEGORY_CHARS));
                }
            }
            for v in &t.minor {
                if let Some(y) = m.px(*v) {
                    let _ = write!(marks, "M{} {}h-2", N(x), N(y));
                }
            }
            text(out, x, top - 10.0, "class=\"axis-label\" text-anchor=\"middle\" font-size=\"11\" font-weight=\"bold\"", &truncate(&a.label, max_chars));
        }
        let _ = write!(
            out,
            "<g class=\"axes\"><path d=\"{marks}\" stroke=\"#444\" fill=\"none\"/>\
             <g class=\"tick-labels\" font-size=\"{FONT}\" fill=\"#222\" stroke=\"#fff\" stroke-width=\"3\" stroke-linejoin=\"round\" paint-order=\"stroke\">{labels}</g></g>"
        );
    }
}

/// One line as a `<path class="series …">` (always written, so the paths
/// match `data-series`); returns its vertices drawn.
fn draw_line(out: &mut String, line: &ParallelLine, axes: &[(Map, Ticks)], xs: &[f64]) -> usize {
    let mut d = String::new();
    let (mut n, mut piece) = (0, 0);
    for ((v, (m, _)), &x) in line.values.iter().zip(axes).zip(xs) {
        match m.px(*v) {
            Some(y) => {
                let cmd = match piece {
                    0 => "M",
                    1 => "L",
                    _ => " ",
                };
                let _ = write!(d, "{cmd}{} {}", N(x), N(y));
                piece += 1;
                n += 1;
            }
            None => piece = 0,
        }
    }
    let class = line.class.trim();
    let _ = write!(
        out,
        "<path class=\"series{}{}\" d=\"{d}\" stroke=\"{}\">",
        if class.is_empty() { "" } else { " " },
        esc(class),
        line.color.css()
    );
    title(out, line.hover.as_deref());
    out.push_str("</path>");
    n
}
