//! [`Parallel::to_svg`]: parallel coordinates.

use std::fmt::Write;

use super::svg::{self, esc, text, text_width, title, truncate, COLORBAR_W, N};
use super::ticks::{domain, ticks, Map, Ticks};
use super::{Axis, Parallel, ParallelAxis, ParallelLine, Scale};

/// Tick labels on parallel axes are a little smaller than on x–y figures.
const FONT: f64 = 10.0;
/// Category labels longer than this are cut with an ellipsis.
const CATEGORY_CHARS: usize = 14;
/// Axis labels (bold) are estimated a little wider than plain text.
const LABEL_FONT: f64 = 12.0;

impl Parallel {
    /// The figure as a standalone SVG document: one vertical axis per
    /// [`ParallelAxis`] (label on top, ticks on its left) and one
    /// `<path class="series {class}">` per line, broken where a value is
    /// missing (see the module doc for the counting rules).
    pub fn to_svg(&self) -> String {
        let (w, h) = (f64::from(self.width), f64::from(self.height));
        let top = svg::heading_height(self.width, self.note.as_deref()) + 30.0;
        let bottom = (h - 20.0).max(top + 20.0);
        let target = ((bottom - top) / 50.0).max(2.0) as usize;
        let axes: Vec<(Map, Ticks)> = (0..self.axes.len())
            .map(|i| {
                let a = &self.axes[i];
                let (d0, d1) = domain(&self.axis(i), &self.column(i));
                let m = Map {
                    log: matches!(a.scale, Scale::Log),
                    d0,
                    d1,
                    p0: bottom,
                    p1: top,
                };
                (m, ticks(&a.scale, d0, d1, target))
            })
            .collect();
        let first_w = axes.first().map_or(0.0, |(_, t)| {
            t.major
                .iter()
                .map(|(_, s)| text_width(&truncate(s, CATEGORY_CHARS), FONT))
                .fold(0.0, f64::max)
        });
        // Room for the first and last axes' labels, centred on the axes.
        let half_label = |a: Option<&ParallelAxis>| {
            a.map_or(0.0, |a| text_width(&a.label, LABEL_FONT) / 2.0 + 6.0)
        };
        let left = (first_w + 20.0)
            .max(half_label(self.axes.first()))
            .clamp(48.0, w * 0.25);
        let cb_w = if self.colorbar.is_some() {
            COLORBAR_W
        } else {
            0.0
        };
        let right =
            (w - half_label(self.axes.last()).clamp(32.0, w * 0.25) - cb_w).max(left + 10.0);
        let spacing = if self.axes.len() > 1 {
            (right - left) / (self.axes.len() - 1) as f64
        } else {
            0.0
        };
        let xs: Vec<f64> = (0..self.axes.len())
            .map(|i| {
                if self.axes.len() > 1 {
                    left + i as f64 * spacing
                } else {
                    (left + right) / 2.0
                }
            })
            .collect();

        let mut body = String::new();
        let mut points = 0;
        for line in &self.lines {
            points += draw_line(&mut body, line, &axes, &xs);
        }
        let mut out = String::with_capacity(body.len() + 8192);
        svg::open(
            &mut out,
            &self.id,
            self.lines.len(),
            points,
            self.width,
            self.height,
        );
        svg::heading(&mut out, self.width, &self.title, self.note.as_deref());
        let id = esc(&self.id);
        let _ = write!(
            out,
            "<defs><clipPath id=\"{id}-clip\"><rect x=\"0\" y=\"{}\" width=\"{w}\" height=\"{}\"/></clipPath></defs>\
             <g class=\"plot\" clip-path=\"url(#{id}-clip)\" fill=\"none\" stroke-width=\"1.2\" stroke-opacity=\"0.6\" stroke-linejoin=\"round\">{body}</g>",
            N(top),
            N(bottom - top)
        );
        let label_w = if self.axes.len() > 1 {
            spacing - 8.0
        } else {
            right - left
        };
        self.draw_axes(&mut out, &axes, &xs, top, bottom, label_w);
        if points == 0 {
            svg::no_data(&mut out, (left + right) / 2.0, (top + bottom) / 2.0);
        }
        if let Some(cb) = &self.colorbar {
            let x = w - cb_w;
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
        Axis {
            label: a.label.clone(),
            scale: a.scale.clone(),
            range,
        }
    }

    /// All lines' values on axis `i`.
    fn column(&self, i: usize) -> Vec<f64> {
        self.lines
            .iter()
            .filter_map(|l| l.values.get(i).copied())
            .collect()
    }

    /// Axis lines, ticks and labels, drawn over the lines.
    fn draw_axes(
        &self,
        out: &mut String,
        axes: &[(Map, Ticks)],
        xs: &[f64],
        top: f64,
        bottom: f64,
        label_w: f64,
    ) {
        let (mut marks, mut labels) = (String::new(), String::new());
        let max_chars = (label_w / (LABEL_FONT * svg::CHAR_W)).max(3.0) as usize;
        for ((a, (m, t)), &x) in self.axes.iter().zip(axes).zip(xs) {
            let _ = write!(marks, "M{} {}V{}", N(x), N(top), N(bottom));
            let step = match a.scale {
                Scale::Category(_) => {
                    ((t.major.len() as f64 * 12.0 / (bottom - top)).ceil() as usize).max(1)
                }
                _ => 1,
            };
            for (j, (v, s)) in t.major.iter().enumerate() {
                let Some(y) = m.px(*v) else { continue };
                let _ = write!(marks, "M{} {}h-4", N(x), N(y));
                if j % step == 0 {
                    text(
                        &mut labels,
                        x - 6.0,
                        y + 3.5,
                        "text-anchor=\"end\"",
                        &truncate(s, CATEGORY_CHARS),
                    );
                }
            }
            for v in &t.minor {
                if let Some(y) = m.px(*v) {
                    let _ = write!(marks, "M{} {}h-2", N(x), N(y));
                }
            }
            text(
                out,
                x,
                top - 14.0,
                "class=\"axis-label\" text-anchor=\"middle\" font-size=\"11\" font-weight=\"bold\"",
                &truncate(&a.label, max_chars),
            );
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

#[cfg(test)]
mod tests {
    use super::super::examples;
    use super::super::*;

    fn attr(svg: &str, name: &str) -> usize {
        let doc = roxmltree::Document::parse(svg).unwrap();
        doc.root_element()
            .attribute(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(usize::MAX)
    }

    #[test]
    fn one_path_per_line_and_vertex_counts() {
        let p = examples::parallel();
        let svg = p.to_svg();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let lines: Vec<_> = doc
            .descendants()
            .filter(|n| {
                n.attribute("class")
                    .is_some_and(|c| c.starts_with("series "))
            })
            .collect();
        assert_eq!(lines.len(), 80);
        assert_eq!(attr(&svg, "data-series"), 80);
        // 5 values per line; every 17th line misses its second value.
        let missing = (0..80).filter(|i| i % 17 == 0).count();
        assert_eq!(attr(&svg, "data-points"), 80 * 5 - missing);
        assert_eq!(lines[0].attribute("class"), Some("series trial-t000000"));
        assert_eq!(
            lines[0].first_child().and_then(|t| t.text()),
            Some("t000000")
        );
        // The missing value breaks the line in two.
        assert_eq!(
            lines[0].attribute("d").map(|d| d.matches('M').count()),
            Some(2)
        );
        let labels: Vec<_> = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("axis-label"))
            .filter_map(|n| n.text())
            .collect();
        assert_eq!(
            labels,
            [
                "learning_rate",
                "dropout",
                "optimizer",
                "batch_size",
                "validation error"
            ]
        );
        assert!(svg.contains(">adam<") && svg.contains(">1e-4<"));
        assert!(svg.contains("class=\"colorbar\""));
    }

    #[test]
    fn bad_ranges_and_empty_input_do_not_fail() {
        let mut p = examples::parallel();
        p.axes[0].lo = -1.0; // invalid for a log axis: the data are fitted
        p.axes[1].lo = p.axes[1].hi; // degenerate
        p.lines[0].values.truncate(2); // short line
        let svg = p.to_svg();
        roxmltree::Document::parse(&svg).unwrap();
        let empty = Parallel {
            axes: Vec::new(),
            lines: Vec::new(),
            colorbar: None,
            note: None,
            ..p.clone()
        };
        let svg = empty.to_svg();
        assert!(svg.contains(">no data yet<"));
        assert_eq!(
            (attr(&svg, "data-series"), attr(&svg, "data-points")),
            (0, 0)
        );
        let no_lines = Parallel {
            lines: Vec::new(),
            ..p
        };
        assert!(no_lines.to_svg().contains(">no data yet<"));
    }

    #[test]
    fn ten_thousand_lines_stay_under_a_size_bound() {
        let mut p = examples::parallel();
        let template = p.lines[1].clone();
        p.lines = (0..10_000)
            .map(|i| ParallelLine {
                hover: Some(format!("t{i:06}")),
                class: format!("trial-t{i:06}"),
                ..template.clone()
            })
            .collect();
        let svg = p.to_svg();
        println!("10k-line parallel figure: {} bytes", svg.len());
        assert!(svg.len() < 2_400_000, "{} bytes", svg.len());
    }
}
