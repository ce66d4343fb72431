//! The marks of one series, written inside its `<g>`; each returns the
//! number of marks counted in `data-points` (see the module doc).

use std::fmt::Write;

use super::svg::{title, N};
use super::ticks::Map;
use super::{Bar, Point, Series, Whisker};

/// What a series is drawn against.
pub(super) struct Ctx {
    pub xm: Map,
    pub ym: Map,
    /// Whiskers are horizontal (y is a category axis and x is numeric).
    pub horizontal_whiskers: bool,
}

/// A polyline broken at points that cannot be drawn; one `<path>` (with
/// the series' hover) for all pieces. Counts vertices.
pub(super) fn line(
    out: &mut String,
    s: &Series,
    pts: &[(f64, f64)],
    dashed: bool,
    width: f64,
    ctx: &Ctx,
) -> usize {
    let mut d = String::new();
    let (mut n, mut piece) = (0, 0);
    for &(x, y) in pts {
        match (ctx.xm.px(x), ctx.ym.px(y)) {
            (Some(px), Some(py)) => {
                let cmd = match piece {
                    0 => "M",
                    1 => "L",
                    _ => " ",
                };
                let _ = write!(d, "{cmd}{} {}", N(px), N(py));
                piece += 1;
                n += 1;
            }
            _ => {
                end_piece(&mut d, piece);
                piece = 0;
            }
        }
    }
    end_piece(&mut d, piece);
    if n == 0 {
        return 0;
    }
    let width = if width.is_finite() && width > 0.0 {
        width
    } else {
        1.5
    };
    let _ = write!(
        out,
        "<path d=\"{d}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{}\" stroke-linejoin=\"round\" stroke-linecap=\"round\"{}>",
        s.color.css(),
        N(width),
        if dashed { " stroke-dasharray=\"5 3\"" } else { "" }
    );
    title(out, s.hover.as_deref());
    out.push_str("</path>");
    n
}

/// A lone vertex gets a zero-length segment so its round cap shows a dot.
fn end_piece(d: &mut String, piece: usize) {
    if piece == 1 {
        d.push_str("h0");
    }
}

/// Discs or crosses, each with its own hover (or the series').
pub(super) fn points(
    out: &mut String,
    s: &Series,
    pts: &[Point],
    radius: f64,
    cross: bool,
    ctx: &Ctx,
) -> usize {
    let r = if radius.is_finite() && radius > 0.0 {
        radius
    } else {
        3.0
    };
    let mut n = 0;
    for p in pts {
        let (Some(x), Some(y)) = (ctx.xm.px(p.x), ctx.ym.px(p.y)) else {
            continue;
        };
        n += 1;
        let (tag, paint) = if cross {
            ("path", "stroke")
        } else {
            ("circle", "fill")
        };
        if cross {
            let _ = write!(
                out,
                "<path d=\"M{} {}l{d} {d}m0 -{d}l-{d} {d}\"",
                N(x - r),
                N(y - r),
                d = N(2.0 * r)
            );
        } else {
            let _ = write!(
                out,
                "<circle cx=\"{}\" cy=\"{}\" r=\"{}\"",
                N(x),
                N(y),
                N(r)
            );
        }
        if let Some(c) = p.color {
            let _ = write!(out, " {paint}=\"{}\"", c.css());
        }
        close(out, tag, p.hover.as_deref().or(s.hover.as_deref()));
    }
    n
}

/// Ends an element: `/>`, or `>` + `<title>` + `</tag>` with a hover.
fn close(out: &mut String, tag: &str, hover: Option<&str>) {
    match hover {
        Some(_) => {
            out.push('>');
            title(out, hover);
            let _ = write!(out, "</{tag}>");
        }
        None => out.push_str("/>"),
    }
}

/// A filled band between `lo` and `hi`, one closed polygon per run of
/// drawable samples (all in one `<path>`).
pub(super) fn band(out: &mut String, s: &Series, xs: &[f64], lo: &[f64], hi: &[f64], ctx: &Ctx) {
    let mut d = String::new();
    let mut run: Vec<(f64, f64, f64)> = Vec::new();
    let samples = xs.iter().zip(lo).zip(hi).map(|((&x, &l), &h)| (x, l, h));
    for sample in samples.map(Some).chain([None]) {
        let px = sample.and_then(|(x, l, h)| Some((ctx.xm.px(x)?, ctx.ym.px(l)?, ctx.ym.px(h)?)));
        match px {
            Some(p) => run.push(p),
            None => {
                polygon(&mut d, &run);
                run.clear();
            }
        }
    }
    if d.is_empty() {
        return;
    }
    let _ = write!(out, "<path d=\"{d}\">");
    title(out, s.hover.as_deref());
    out.push_str("</path>");
}

/// Appends `M … Z`: along `hi` forwards, back along `lo`.
fn polygon(d: &mut String, run: &[(f64, f64, f64)]) {
    if run.len() < 2 {
        return;
    }
    let forward = run.iter().map(|&(x, _, h)| (x, h));
    let back = run.iter().rev().map(|&(x, l, _)| (x, l));
    for (i, (x, y)) in forward.chain(back).enumerate() {
        let _ = write!(d, "{}{} {}", if i == 0 { "M" } else { "L" }, N(x), N(y));
    }
    d.push('Z');
}

/// Rectangles (at least 1 px in each direction, so a zero-length Gantt bar
/// stays visible).
pub(super) fn bars(out: &mut String, s: &Series, bars: &[Bar], ctx: &Ctx) -> usize {
    let mut n = 0;
    for b in bars {
        let (Some(x0), Some(x1), Some(y0), Some(y1)) = (
            ctx.xm.px(b.x0),
            ctx.xm.px(b.x1),
            ctx.ym.px(b.y0),
            ctx.ym.px(b.y1),
        ) else {
            continue;
        };
        n += 1;
        let _ = write!(
            out,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"",
            N(x0.min(x1)),
            N(y0.min(y1)),
            N((x1 - x0).abs().max(1.0)),
            N((y1 - y0).abs().max(1.0))
        );
        if let Some(c) = b.color {
            let _ = write!(out, " fill=\"{}\"", c.css());
        }
        close(out, "rect", b.hover.as_deref().or(s.hover.as_deref()));
    }
    n
}

/// Error bars with caps: vertical, or horizontal when the y axis is a
/// category axis (see [`Whisker`]).
pub(super) fn whiskers(out: &mut String, s: &Series, ws: &[Whisker], ctx: &Ctx) -> usize {
    let mut n = 0;
    for w in ws {
        let (at, span) = if ctx.horizontal_whiskers {
            (ctx.ym, ctx.xm)
        } else {
            (ctx.xm, ctx.ym)
        };
        let (Some(c), Some(lo), Some(hi)) = (at.px(w.x), span.px(w.lo), span.px(w.hi)) else {
            continue;
        };
        n += 1;
        let _ = if ctx.horizontal_whiskers {
            write!(
                out,
                "<path d=\"M{lo} {c}H{hi}M{lo} {c0}v8M{hi} {c0}v8\"",
                lo = N(lo),
                hi = N(hi),
                c = N(c),
                c0 = N(c - 4.0)
            )
        } else {
            write!(
                out,
                "<path d=\"M{c} {lo}V{hi}M{c0} {lo}h8M{c0} {hi}h8\"",
                lo = N(lo),
                hi = N(hi),
                c = N(c),
                c0 = N(c - 4.0)
            )
        };
        close(out, "path", s.hover.as_deref());
    }
    n
}
