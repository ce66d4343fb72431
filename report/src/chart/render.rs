//! [`Figure::to_svg`]: layout, axes, series, legend.

use std::fmt::Write;

use super::marks::Ctx;
use super::svg::{self, esc, text, text_width, truncate, COLORBAR_W, N, TICK_FONT};
use super::ticks::{domain, ticks, Map, Ticks};
use super::{Axis, Figure, Mark, Scale, Series};

/// Category labels longer than this are cut with an ellipsis.
const CATEGORY_CHARS: usize = 20;
/// Legend names longer than this are cut with an ellipsis.
const LEGEND_CHARS: usize = 24;
/// At most this many legend rows (the last may be "+N more").
const LEGEND_ROWS: usize = 12;
/// Height of one legend row in px.
const LEGEND_ROW_H: f64 = 16.0;
/// Angle of rotated category labels on the x axis.
const ROTATE_DEG: f64 = 40.0;

/// Where everything goes, in px.
struct Layout {
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    /// Category labels on the x axis are rotated.
    x_rotated: bool,
    legend_w: f64,
}

impl Figure {
    /// The figure as a standalone SVG document (see the module doc for
    /// its classes, data attributes and counting rules).
    pub fn to_svg(&self) -> String {
        let (xs, ys) = self.extents();
        let xd = domain(&self.x, &xs);
        let yd = domain(&self.y, &ys);
        let (w, h) = (f64::from(self.width), f64::from(self.height));
        let xt = ticks(&self.x.scale, xd.0, xd.1, ((w / 90.0) as usize).max(2));
        let yt = ticks(&self.y.scale, yd.0, yd.1, ((h / 55.0) as usize).max(2));
        let lay = self.layout(&xt, &yt);
        let ctx = Ctx {
            xm: Map {
                log: is_log(&self.x),
                d0: xd.0,
                d1: xd.1,
                p0: lay.left,
                p1: lay.right,
            },
            ym: Map {
                log: is_log(&self.y),
                d0: yd.0,
                d1: yd.1,
                p0: lay.bottom,
                p1: lay.top,
            },
            horizontal_whiskers: matches!(self.y.scale, Scale::Category(_))
                && !matches!(self.x.scale, Scale::Category(_)),
        };

        let mut body = String::new();
        let mut points = 0;
        for s in &self.series {
            points += draw_series(&mut body, s, &ctx);
        }

        let mut out = String::with_capacity(body.len() + 8192);
        svg::open(
            &mut out,
            &self.id,
            self.series.len(),
            points,
            self.width,
            self.height,
        );
        svg::heading(&mut out, self.width, &self.title, self.note.as_deref());
        self.axes(&mut out, &lay, &ctx, &xt, &yt);
        let id = esc(&self.id);
        let _ = write!(
            out,
            "<defs><clipPath id=\"{id}-clip\"><rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/></clipPath></defs>\
             <g class=\"plot\" clip-path=\"url(#{id}-clip)\">{body}</g>",
            N(lay.left),
            N(lay.top),
            N(lay.right - lay.left),
            N(lay.bottom - lay.top)
        );
        if points == 0 {
            svg::no_data(
                &mut out,
                (lay.left + lay.right) / 2.0,
                (lay.top + lay.bottom) / 2.0,
            );
        }
        self.legend(&mut out, &lay);
        if let Some(cb) = &self.colorbar {
            let x = lay.right + 12.0 + lay.legend_w;
            let bottom = lay.bottom.min(lay.top + 220.0);
            svg::colorbar(&mut out, &self.id, cb, x, lay.top, bottom);
        }
        out.push_str("</svg>\n");
        out
    }

    /// All x and all y data values (for fitting the axes).
    fn extents(&self) -> (Vec<f64>, Vec<f64>) {
        let horizontal = matches!(self.y.scale, Scale::Category(_))
            && !matches!(self.x.scale, Scale::Category(_));
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for s in &self.series {
            match &s.mark {
                Mark::Line { points, .. } => {
                    xs.extend(points.iter().map(|p| p.0));
                    ys.extend(points.iter().map(|p| p.1));
                }
                Mark::Points { points, .. } => {
                    xs.extend(points.iter().map(|p| p.x));
                    ys.extend(points.iter().map(|p| p.y));
                }
                Mark::Band { x, lo, hi } => {
                    xs.extend(x);
                    ys.extend(lo.iter().chain(hi));
                }
                Mark::Bars(bars) => {
                    xs.extend(bars.iter().flat_map(|b| [b.x0, b.x1]));
                    ys.extend(bars.iter().flat_map(|b| [b.y0, b.y1]));
                }
                Mark::Whiskers(ws) => {
                    let (at, span) = if horizontal {
                        (&mut ys, &mut xs)
                    } else {
                        (&mut xs, &mut ys)
                    };
                    at.extend(ws.iter().map(|w| w.x));
                    span.extend(ws.iter().flat_map(|w| [w.lo, w.hi]));
                }
            }
        }
        (xs, ys)
    }

    /// Margins from the labels that must fit around the plot.
    fn layout(&self, xt: &Ticks, yt: &Ticks) -> Layout {
        let (w, h) = (f64::from(self.width), f64::from(self.height));
        let top = svg::heading_height(self.width, self.note.as_deref()) + 14.0;
        let y_label_w = yt
            .major
            .iter()
            .map(|(_, s)| text_width(&truncate(s, CATEGORY_CHARS), TICK_FONT))
            .fold(0.0, f64::max);
        let left = (y_label_w + 36.0).min(w * 0.4);
        let entries = self
            .series
            .iter()
            .filter(|s| s.legend)
            .map(|s| text_width(&truncate(&s.name, LEGEND_CHARS), TICK_FONT));
        let legend_w = entries.fold(None, |m: Option<f64>, e| Some(m.map_or(e, |m| m.max(e))));
        let legend_w = legend_w.map_or(0.0, |e| (e + 34.0).max(COLORBAR_W));
        let cb_w = if self.colorbar.is_some() {
            COLORBAR_W
        } else {
            0.0
        };
        let right = (w - 16.0 - legend_w - cb_w).max(left + w * 0.3);

        let x_label_w = xt
            .major
            .iter()
            .map(|(_, s)| text_width(&truncate(s, CATEGORY_CHARS), TICK_FONT))
            .fold(0.0, f64::max);
        let spacing = match &self.x.scale {
            Scale::Category(names) => (right - left) / names.len().max(1) as f64,
            _ => f64::INFINITY,
        };
        let x_rotated = x_label_w + 6.0 > spacing;
        let tick_h = if x_rotated {
            x_label_w * ROTATE_DEG.to_radians().sin() + 16.0
        } else {
            18.0
        };
        let bottom = (h - 30.0 - tick_h).max(top + h * 0.3);
        // The first rotated label reaches left of its tick: keep it inside.
        let left = if x_rotated {
            let reach = x_label_w * ROTATE_DEG.to_radians().cos() - spacing / 2.0 + 8.0;
            left.max(reach.min(right - w * 0.3))
        } else {
            left
        };
        Layout {
            left,
            right,
            top,
            bottom,
            x_rotated,
            legend_w,
        }
    }

    /// Grid, axis lines, ticks, tick labels and axis labels.
    fn axes(&self, out: &mut String, lay: &Layout, ctx: &Ctx, xt: &Ticks, yt: &Ticks) {
        let (mut grid, mut marks, mut labels) = (String::new(), String::new(), String::new());
        let x_step = label_step(
            &self.x,
            xt,
            if lay.x_rotated { 13.0 } else { f64::INFINITY },
            lay.right - lay.left,
        );
        for (i, (v, s)) in xt.major.iter().enumerate() {
            let Some(x) = ctx.xm.px(*v) else { continue };
            let _ = write!(grid, "M{} {}V{}", N(x), N(lay.top), N(lay.bottom));
            let _ = write!(marks, "M{} {}v5", N(x), N(lay.bottom));
            if i % x_step != 0 {
                continue;
            }
            let s = truncate(s, CATEGORY_CHARS);
            if lay.x_rotated {
                let (tx, ty) = (x + 3.0, lay.bottom + 12.0);
                let attrs = format!(
                    "text-anchor=\"end\" transform=\"rotate(-{ROTATE_DEG} {} {})\"",
                    N(tx),
                    N(ty)
                );
                text(&mut labels, tx, ty, &attrs, &s);
            } else {
                text(
                    &mut labels,
                    x,
                    lay.bottom + 18.0,
                    "text-anchor=\"middle\"",
                    &s,
                );
            }
        }
        let y_step = label_step(&self.y, yt, 13.0, lay.bottom - lay.top);
        for (i, (v, s)) in yt.major.iter().enumerate() {
            let Some(y) = ctx.ym.px(*v) else { continue };
            let _ = write!(grid, "M{} {}H{}", N(lay.left), N(y), N(lay.right));
            let _ = write!(marks, "M{} {}h-5", N(lay.left), N(y));
            if i % y_step == 0 {
                text(
                    &mut labels,
                    lay.left - 8.0,
                    y + 4.0,
                    "text-anchor=\"end\"",
                    &truncate(s, CATEGORY_CHARS),
                );
            }
        }
        for v in &xt.minor {
            if let Some(x) = ctx.xm.px(*v) {
                let _ = write!(marks, "M{} {}v3", N(x), N(lay.bottom));
            }
        }
        for v in &yt.minor {
            if let Some(y) = ctx.ym.px(*v) {
                let _ = write!(marks, "M{} {}h-3", N(lay.left), N(y));
            }
        }
        let _ = write!(
            out,
            "<g class=\"axes\"><path class=\"grid\" d=\"{grid}\" stroke=\"#ebebeb\" fill=\"none\"/>\
             <path d=\"{marks}M{l} {t}V{b}H{r}\" stroke=\"#444\" fill=\"none\"/>\
             <g class=\"tick-labels\" fill=\"#333\">{labels}</g>",
            l = N(lay.left),
            t = N(lay.top),
            b = N(lay.bottom),
            r = N(lay.right)
        );
        let h = f64::from(self.height);
        let cx = (lay.left + lay.right) / 2.0;
        let max = ((lay.right - lay.left) / (12.0 * svg::CHAR_W)) as usize;
        text(
            out,
            cx,
            h - 10.0,
            "class=\"x-label\" text-anchor=\"middle\" font-size=\"12\"",
            &truncate(&self.x.label, max),
        );
        let cy = (lay.top + lay.bottom) / 2.0;
        let max = ((lay.bottom - lay.top) / (12.0 * svg::CHAR_W)) as usize;
        let attrs = format!("class=\"y-label\" text-anchor=\"middle\" font-size=\"12\" transform=\"rotate(-90 14 {})\"", N(cy));
        text(out, 14.0, cy, &attrs, &truncate(&self.y.label, max));
        out.push_str("</g>");
    }

    /// The legend to the right of the plot: a swatch and a name per series
    /// with `legend`, then "+N more".
    fn legend(&self, out: &mut String, lay: &Layout) {
        let entries: Vec<&Series> = self.series.iter().filter(|s| s.legend).collect();
        if entries.is_empty() {
            return;
        }
        let fit = (((lay.bottom - lay.top) / LEGEND_ROW_H) as usize).clamp(1, LEGEND_ROWS);
        let shown = if entries.len() > fit {
            fit - 1
        } else {
            entries.len()
        };
        let x = lay.right + 12.0;
        out.push_str("<g class=\"legend\">");
        for (i, s) in entries.iter().take(shown).enumerate() {
            let y = lay.top + 8.0 + i as f64 * LEGEND_ROW_H;
            swatch(out, s, x, y);
            text(out, x + 22.0, y + 4.0, "", &truncate(&s.name, LEGEND_CHARS));
        }
        if shown < entries.len() {
            let y = lay.top + 8.0 + shown as f64 * LEGEND_ROW_H;
            let more = format!("+{} more", entries.len() - shown);
            text(out, x + 22.0, y + 4.0, "fill=\"#666\"", &more);
        }
        out.push_str("</g>");
    }
}

fn is_log(axis: &Axis) -> bool {
    matches!(axis.scale, Scale::Log)
}

/// Label every k-th tick of a category axis so labels `size` px tall (or
/// wide) fit in `avail` px; numeric axes label every tick.
fn label_step(axis: &Axis, t: &Ticks, size: f64, avail: f64) -> usize {
    if !matches!(axis.scale, Scale::Category(_)) || !size.is_finite() || avail <= 0.0 {
        return 1;
    }
    ((t.major.len() as f64 * size / avail).ceil() as usize).max(1)
}

/// A legend swatch for the series' mark, centred vertically on `y`.
fn swatch(out: &mut String, s: &Series, x: f64, y: f64) {
    let c = s.color.css();
    let _ = match &s.mark {
        Mark::Line { dashed, .. } => write!(
            out,
            "<path d=\"M{} {}h16\" stroke=\"{c}\" stroke-width=\"2\"{}/>",
            N(x),
            N(y),
            if *dashed { " stroke-dasharray=\"4 2\"" } else { "" }
        ),
        Mark::Points { cross: true, .. } => write!(
            out,
            "<path d=\"M{} {}l8 8m0 -8l-8 8\" stroke=\"{c}\" stroke-width=\"1.5\"/>",
            N(x + 4.0),
            N(y - 4.0)
        ),
        Mark::Points { .. } => write!(out, "<circle cx=\"{}\" cy=\"{}\" r=\"4\" fill=\"{c}\"/>", N(x + 8.0), N(y)),
        Mark::Band { .. } => write!(
            out,
            "<rect x=\"{}\" y=\"{}\" width=\"16\" height=\"10\" fill=\"{c}\" fill-opacity=\"0.25\"/>",
            N(x),
            N(y - 5.0)
        ),
        Mark::Bars(_) => write!(out, "<rect x=\"{}\" y=\"{}\" width=\"16\" height=\"10\" fill=\"{c}\"/>", N(x), N(y - 5.0)),
        Mark::Whiskers(_) => write!(
            out,
            "<path d=\"M{} {}v10M{} {}h8M{} {}h8\" stroke=\"{c}\" stroke-width=\"1.5\"/>",
            N(x + 8.0),
            N(y - 5.0),
            N(x + 4.0),
            N(y - 5.0),
            N(x + 4.0),
            N(y + 5.0)
        ),
    };
}

/// One series as its `<g class="series ...">`; returns the marks counted.
fn draw_series(out: &mut String, s: &Series, ctx: &Ctx) -> usize {
    let class = s.class.trim();
    let _ = write!(
        out,
        "<g class=\"series{}{}\" data-name=\"{}\"",
        if class.is_empty() { "" } else { " " },
        esc(class),
        esc(&s.name)
    );
    let c = s.color.css();
    let n = match &s.mark {
        Mark::Line {
            points,
            dashed,
            width,
        } => {
            out.push('>');
            super::marks::line(out, s, points, *dashed, *width, ctx)
        }
        Mark::Points {
            points,
            radius,
            cross,
        } => {
            if *cross {
                let _ = write!(out, " fill=\"none\" stroke=\"{c}\" stroke-width=\"1.5\">");
            } else {
                let _ = write!(
                    out,
                    " fill=\"{c}\" fill-opacity=\"0.85\" stroke=\"#fff\" stroke-width=\"0.5\">"
                );
            }
            super::marks::points(out, s, points, *radius, *cross, ctx)
        }
        Mark::Band { x, lo, hi } => {
            let _ = write!(out, " fill=\"{c}\" fill-opacity=\"0.2\">");
            super::marks::band(out, s, x, lo, hi, ctx);
            0
        }
        Mark::Bars(bars) => {
            let _ = write!(out, " fill=\"{c}\">");
            super::marks::bars(out, s, bars, ctx)
        }
        Mark::Whiskers(ws) => {
            let _ = write!(out, " fill=\"none\" stroke=\"{c}\" stroke-width=\"1.5\">");
            super::marks::whiskers(out, s, ws, ctx)
        }
    };
    out.push_str("</g>");
    n
}

#[cfg(test)]
mod tests {
    use super::super::examples;
    use super::super::*;

    /// The document, parsed (panics on XML that does not parse).
    fn parse(svg: &str) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("{e}\n{svg}"))
    }

    fn root_count(doc: &roxmltree::Document<'_>, attr: &str) -> usize {
        doc.root_element()
            .attribute(attr)
            .and_then(|v| v.parse().ok())
            .unwrap_or(usize::MAX)
    }

    fn series_groups<'a>(doc: &'a roxmltree::Document<'a>) -> Vec<roxmltree::Node<'a, 'a>> {
        doc.descendants()
            .filter(|n| {
                n.attribute("class")
                    .is_some_and(|c| c.split(' ').any(|c| c == "series"))
            })
            .collect()
    }

    /// The `d` of the first path of the series named `name`.
    fn series_path(svg: &str, name: &str) -> String {
        let doc = parse(svg);
        let g = series_groups(&doc)
            .into_iter()
            .find(|n| n.attribute("data-name") == Some(name))
            .unwrap();
        g.children()
            .find(|n| n.has_tag_name("path"))
            .and_then(|p| p.attribute("d"))
            .unwrap()
            .to_string()
    }

    fn plain(name: &str, mark: Mark) -> Series {
        Series {
            name: name.into(),
            legend: true,
            color: palette(0),
            mark,
            hover: None,
            class: String::new(),
        }
    }

    fn pt(x: f64, y: f64) -> Point {
        Point {
            x,
            y,
            hover: None,
            color: None,
        }
    }

    /// One series of each mark, with undrawable values sprinkled in.
    fn mixed(y: Axis) -> Figure {
        let mut f = Figure::new("mixed", "Mixed", Axis::linear("x"), y);
        let line = vec![
            (0.0, 1.0),
            (1.0, 2.0),
            (2.0, f64::NAN),
            (3.0, 3.0),
            (4.0, 4.0),
        ];
        f.series.push(plain(
            "line",
            Mark::Line {
                points: line,
                dashed: false,
                width: 1.5,
            },
        ));
        let points = vec![
            pt(0.0, 1.0),
            pt(f64::INFINITY, 1.0),
            pt(1.0, 0.0),
            pt(2.0, -1.0),
        ];
        f.series.push(plain(
            "points",
            Mark::Points {
                points,
                radius: 3.0,
                cross: false,
            },
        ));
        let bar = |y0, y1| Bar {
            x0: 0.0,
            x1: 1.0,
            y0,
            y1,
            hover: None,
            color: None,
        };
        f.series.push(plain(
            "bars",
            Mark::Bars(vec![bar(1.0, 2.0), bar(f64::NAN, 2.0)]),
        ));
        let ws = vec![
            Whisker {
                x: 1.0,
                lo: 1.0,
                hi: 2.0,
            },
            Whisker {
                x: 2.0,
                lo: 1.0,
                hi: 3.0,
            },
        ];
        f.series.push(plain("whiskers", Mark::Whiskers(ws)));
        f.series.push(plain(
            "band",
            Mark::Band {
                x: vec![0.0, 1.0],
                lo: vec![1.0, 1.0],
                hi: vec![2.0, 2.0],
            },
        ));
        f
    }

    #[test]
    fn counts_series_and_marks() {
        // Linear y: 4 line vertices + 3 points (one is infinite) + 1 bar
        // + 2 whiskers; the band is not counted.
        let svg = mixed(Axis::linear("y")).to_svg();
        let doc = parse(&svg);
        assert_eq!(root_count(&doc, "data-series"), 5);
        assert_eq!(series_groups(&doc).len(), 5);
        assert_eq!(root_count(&doc, "data-points"), 4 + 3 + 1 + 2);
        let in_series = |n: &roxmltree::Node<'_, '_>| {
            n.parent()
                .is_some_and(|p| p.attribute("data-name").is_some())
        };
        assert_eq!(
            doc.descendants()
                .filter(|n| n.has_tag_name("circle") && in_series(n))
                .count(),
            3
        );
        // Log y: the points at y = 0 and y = -1 are skipped.
        let doc_svg = mixed(Axis::log("y")).to_svg();
        assert_eq!(root_count(&parse(&doc_svg), "data-points"), 4 + 1 + 1 + 2);
    }

    #[test]
    fn root_carries_id_class_and_namespace() {
        let svg = examples::history().to_svg();
        let doc = parse(&svg);
        let root = doc.root_element();
        assert_eq!(
            root.tag_name().namespace(),
            Some("http://www.w3.org/2000/svg")
        );
        assert_eq!(root.attribute("class"), Some("figure"));
        assert_eq!(root.attribute("id"), Some("history"));
        assert_eq!(root.attribute("viewBox"), Some("0 0 640 400"));
        let names: Vec<_> = series_groups(&doc)
            .iter()
            .filter_map(|n| n.attribute("data-name"))
            .collect();
        assert_eq!(
            names,
            [
                "reshuffle 90% band",
                "best so far",
                "completed",
                "pruned",
                "random search (dashed)"
            ]
        );
        assert!(svg.contains("class=\"series single-run\""));
    }

    #[test]
    fn broken_line_is_one_path_in_pieces() {
        let d = series_path(&mixed(Axis::linear("y")).to_svg(), "line");
        assert_eq!(d.matches('M').count(), 2, "{d}");
        // A lone vertex between two gaps still shows as a dot.
        let mut f = Figure::new("dot", "t", Axis::linear("x"), Axis::linear("y"));
        let pts = vec![
            (0.0, 0.0),
            (1.0, 1.0),
            (2.0, f64::NAN),
            (3.0, 2.0),
            (4.0, f64::NAN),
        ];
        f.series.push(plain(
            "l",
            Mark::Line {
                points: pts,
                dashed: true,
                width: 1.0,
            },
        ));
        let svg = f.to_svg();
        assert!(svg.contains("h0\""), "{svg}");
        assert!(svg.contains("stroke-dasharray"));
    }

    #[test]
    fn text_is_escaped() {
        let nasty = "a<b & \"c\" 'd'>\u{1}";
        let mut f = Figure::new(
            "esc",
            nasty,
            Axis::linear(nasty),
            Axis::category(nasty, vec![nasty.into()]),
        );
        f.note = Some(nasty.into());
        let mut s = plain(
            nasty,
            Mark::Points {
                points: vec![Point {
                    hover: Some(nasty.into()),
                    ..pt(0.0, 0.0)
                }],
                radius: 2.0,
                cross: true,
            },
        );
        s.class = "status-<x>".into();
        f.series.push(s);
        let svg = f.to_svg();
        let doc = parse(&svg);
        let titles: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("title"))
            .filter_map(|n| n.text())
            .collect();
        assert_eq!(titles, ["a<b & \"c\" 'd'>\u{fffd}"]);
        let g = &series_groups(&doc)[0];
        assert_eq!(g.attribute("data-name"), Some("a<b & \"c\" 'd'>\u{fffd}"));
    }

    #[test]
    fn hover_goes_on_the_marks() {
        let svg = examples::history().to_svg();
        let doc = parse(&svg);
        let line = series_groups(&doc)
            .into_iter()
            .find(|n| n.attribute("data-name") == Some("best so far"))
            .unwrap();
        let path = line.children().find(|n| n.has_tag_name("path")).unwrap();
        assert_eq!(
            path.children()
                .find(|n| n.has_tag_name("title"))
                .and_then(|t| t.text()),
            Some("best so far <study & 'a'>")
        );
        let circle = doc
            .descendants()
            .find(|n| n.has_tag_name("circle") && n.first_child().is_some())
            .unwrap();
        assert_eq!(
            circle.first_child().and_then(|t| t.text()),
            Some("t000000 lr=1.0e-4")
        );
    }

    #[test]
    fn every_example_parses_with_usvg() {
        let opt = resvg::usvg::Options::default();
        let mut svgs: Vec<String> = [
            examples::history(),
            examples::timeline(),
            examples::importance(),
            examples::scatter(),
            examples::many(),
            examples::empty(),
        ]
        .iter()
        .map(Figure::to_svg)
        .collect();
        svgs.push(examples::parallel().to_svg());
        for svg in &svgs {
            resvg::usvg::Tree::from_str(svg, &opt).unwrap_or_else(|e| panic!("{e}\n{svg}"));
            parse(svg);
            // No external references: no links, images, fonts or imports.
            for bad in ["href", "<image", "@import", "@font-face", "url(http", "<a "] {
                assert!(!svg.contains(bad), "{bad} in {svg}");
            }
            assert!(svg.split("url(").skip(1).all(|rest| rest.starts_with('#')));
        }
    }

    #[test]
    fn empty_figures_say_no_data() {
        let svg = examples::empty().to_svg();
        assert!(svg.contains(">no data yet<"));
        assert_eq!(root_count(&parse(&svg), "data-points"), 0);
        let mut f = Figure::new("nan", "t", Axis::log("x"), Axis::linear("y"));
        f.series.push(plain(
            "nan",
            Mark::Line {
                points: vec![(f64::NAN, 1.0), (-1.0, 2.0)],
                dashed: false,
                width: f64::NAN,
            },
        ));
        let svg = f.to_svg();
        let doc = parse(&svg);
        assert!(svg.contains(">no data yet<"));
        assert_eq!(
            (
                root_count(&doc, "data-series"),
                root_count(&doc, "data-points")
            ),
            (1, 0)
        );
        // Degenerate sizes and ranges do not panic either.
        f.width = 0;
        f.height = 0;
        f.x.range = Some((3.0, 3.0));
        parse(&f.to_svg());
    }

    #[test]
    fn forced_range_clips_but_counts() {
        let mut f = Figure::new("clip", "t", Axis::linear("x"), Axis::linear("y"));
        f.x.range = Some((0.0, 1.0));
        f.series.push(plain(
            "p",
            Mark::Points {
                points: vec![pt(0.5, 0.0), pt(50.0, 0.0)],
                radius: 3.0,
                cross: false,
            },
        ));
        let svg = f.to_svg();
        assert_eq!(root_count(&parse(&svg), "data-points"), 2);
        assert!(svg.contains("<clipPath id=\"clip-clip\">"));
        assert!(svg.contains("clip-path=\"url(#clip-clip)\""));
    }

    #[test]
    fn legend_overflows_into_more() {
        let svg = examples::many().to_svg();
        let doc = parse(&svg);
        let legend = doc
            .descendants()
            .find(|n| n.attribute("class") == Some("legend"))
            .unwrap();
        let texts: Vec<_> = legend
            .children()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .collect();
        assert_eq!(texts.len(), 12);
        assert_eq!(texts.last(), Some(&"+9 more"));
    }

    #[test]
    fn whiskers_turn_horizontal_on_a_category_y_axis() {
        let d = series_path(&examples::importance().to_svg(), "95% CI");
        assert!(d.contains('H') && !d.contains('V'), "{d}");
    }

    #[test]
    fn long_category_labels_rotate_and_truncate() {
        let names: Vec<String> = (0..12)
            .map(|i| format!("worker-{i}-on-a-long-host-name"))
            .collect();
        let mut f = Figure::new(
            "cat",
            "t",
            Axis::category("worker", names),
            Axis::linear("y"),
        );
        f.series.push(plain(
            "p",
            Mark::Points {
                points: vec![pt(0.0, 1.0)],
                radius: 3.0,
                cross: false,
            },
        ));
        let svg = f.to_svg();
        assert!(svg.contains("transform=\"rotate(-40"));
        assert!(svg.contains(">worker-0-on-a-long-…<"));
    }

    #[test]
    fn coordinates_have_at_most_one_decimal() {
        let svg = examples::history().to_svg();
        let doc = parse(&svg);
        for n in doc.descendants().filter(|n| n.has_tag_name("circle")) {
            for a in ["cx", "cy"] {
                let v = n.attribute(a).unwrap();
                assert!(
                    v.split_once('.').is_none_or(|(_, d)| d.len() == 1),
                    "{a}={v}"
                );
            }
        }
    }

    #[test]
    fn ten_thousand_points_stay_under_a_size_bound() {
        let mut f = Figure::new(
            "big",
            "10k",
            Axis::log("learning rate"),
            Axis::linear("validation error (fraction)"),
        );
        let points = (0..10_000)
            .map(|i| {
                let x = 10f64.powf(-5.0 + 4.0 * (f64::from(i) * 0.618).fract());
                let hover = format!("t{i:06} lr={x:.2e} wd=3.4e-5 batch=128");
                Point {
                    x,
                    y: (f64::from(i) * 0.37).sin().abs(),
                    hover: Some(hover),
                    color: Some(colormap(f64::from(i) / 1e4)),
                }
            })
            .collect();
        f.series.push(plain(
            "trials",
            Mark::Points {
                points,
                radius: 3.0,
                cross: false,
            },
        ));
        let svg = f.to_svg();
        assert_eq!(root_count(&parse(&svg), "data-points"), 10_000);
        println!("10k-point figure: {} bytes", svg.len());
        assert!(svg.len() < 1_200_000, "{} bytes", svg.len());
    }
}
