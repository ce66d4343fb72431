//! Small helpers to write SVG text: numbers, escaping, text elements and
//! the pieces shared by [`Figure`](super::Figure) and
//! [`Parallel`](super::Parallel) (frame, title, colour bar, "no data").

use std::borrow::Cow;
use std::fmt::{self, Display, Write};

use super::color::colormap;
use super::ticks::{format_value, log_ticks, Map};
use super::ColorBar;

/// Average advance of a sans-serif character, as a fraction of the font
/// size; used to reserve room for labels.
pub(crate) const CHAR_W: f64 = 0.6;
/// Tick-label font size in px.
pub(crate) const TICK_FONT: f64 = 11.0;
/// Width reserved for a colour bar, its labels and its rotated title.
pub(crate) const COLORBAR_W: f64 = 84.0;

/// A coordinate with at most one decimal (`12`, `12.5`, never `-0`).
#[derive(Clone, Copy)]
pub(crate) struct N(pub f64);

impl Display for N {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenths = (self.0 * 10.0).round();
        if tenths == 0.0 || !tenths.is_finite() {
            return f.write_str("0");
        }
        if tenths % 10.0 == 0.0 {
            write!(f, "{}", tenths / 10.0)
        } else {
            write!(f, "{:.1}", tenths / 10.0)
        }
    }
}

/// `s` escaped for XML text and attribute values.
pub(crate) fn esc(s: &str) -> Cow<'_, str> {
    if !s.contains(['&', '<', '>', '"', '\'']) && !s.chars().any(is_bad_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if is_bad_char(c) => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Characters XML 1.0 forbids (control characters other than tab and
/// newlines).
fn is_bad_char(c: char) -> bool {
    (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{fffe}' | '\u{ffff}')
}

/// `s` cut to `max` characters, with an ellipsis when cut.
pub(crate) fn truncate(s: &str, max: usize) -> Cow<'_, str> {
    if s.chars().count() <= max {
        return Cow::Borrowed(s);
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    Cow::Owned(out)
}

/// The estimated width in px of `s` at `size`.
pub(crate) fn text_width(s: &str, size: f64) -> f64 {
    s.chars().count() as f64 * size * CHAR_W
}

/// Writes `<title>` for hover text when there is one.
pub(crate) fn title(out: &mut String, hover: Option<&str>) {
    if let Some(h) = hover {
        let _ = write!(out, "<title>{}</title>", esc(h));
    }
}

/// Writes a text element; `attrs` is raw extra attributes (already escaped).
pub(crate) fn text(out: &mut String, x: f64, y: f64, attrs: &str, content: &str) {
    let _ = write!(
        out,
        "<text x=\"{}\" y=\"{}\"{}{attrs}>{}</text>",
        N(x),
        N(y),
        if attrs.is_empty() { "" } else { " " },
        esc(content)
    );
}

/// The opening `<svg>` tag (with a white background), for a figure of
/// `w` × `h` px.
pub(crate) fn open(out: &mut String, id: &str, series: usize, points: usize, w: u32, h: u32) {
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"figure\" id=\"{id}\" \
         data-series=\"{series}\" data-points=\"{points}\" viewBox=\"0 0 {w} {h}\" \
         width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\
         <rect width=\"{w}\" height=\"{h}\" fill=\"#fff\"/>",
        id = esc(id)
    );
}

/// At most this many lines of a figure's note are drawn.
const NOTE_LINES: usize = 4;

/// The most characters of a note line in a figure `w` px wide.
fn note_chars(w: u32) -> usize {
    (f64::from(w) / (11.0 * CHAR_W)) as usize
}

/// The lines of a figure's note: one per `\n`, each wrapped at spaces to
/// the figure's width, empty ones left out, at most [`NOTE_LINES`].
fn note_lines(w: u32, note: Option<&str>) -> Vec<String> {
    let max = note_chars(w).max(10);
    let mut out: Vec<String> = Vec::new();
    for line in note.unwrap_or("").lines() {
        let mut cur = String::new();
        for word in line.split_whitespace() {
            if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > max {
                out.push(std::mem::take(&mut cur));
            }
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(word);
        }
        if !cur.is_empty() {
            out.push(cur);
        }
    }
    if out.len() > NOTE_LINES {
        out.truncate(NOTE_LINES);
        if let Some(last) = out.last_mut() {
            last.push('…');
        }
    }
    out.into_iter()
        .map(|l| truncate(&l, max).into_owned())
        .collect()
}

/// The y below a figure's title and note (the top of what follows).
pub(crate) fn heading_height(w: u32, note: Option<&str>) -> f64 {
    match note_lines(w, note).len() {
        0 => 30.0,
        n => 32.0 + 14.0 * n as f64,
    }
}

/// Writes the title and the note under it (one line per `\n`, wrapped to
/// the width), and the whole note as the figure's `<desc>`; returns the y
/// below them.
pub(crate) fn heading(out: &mut String, w: u32, title: &str, note: Option<&str>) -> f64 {
    if let Some(n) = note.filter(|n| !n.trim().is_empty()) {
        let _ = write!(out, "<desc>{}</desc>", esc(n));
    }
    let cx = f64::from(w) / 2.0;
    let max = (f64::from(w) / (14.0 * CHAR_W)) as usize;
    text(
        out,
        cx,
        20.0,
        "text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\"",
        &truncate(title, max),
    );
    for (i, line) in note_lines(w, note).iter().enumerate() {
        text(
            out,
            cx,
            36.0 + 14.0 * i as f64,
            "text-anchor=\"middle\" fill=\"#666\"",
            line,
        );
    }
    heading_height(w, note)
}

/// The grey "no data yet" in the middle of a plot area.
pub(crate) fn no_data(out: &mut String, cx: f64, cy: f64) {
    text(
        out,
        cx,
        cy,
        "class=\"no-data\" text-anchor=\"middle\" font-size=\"14\" fill=\"#888\"",
        "no data yet",
    );
}

/// A vertical colour bar with its left edge at `x`, spanning `top..bottom`:
/// the viridis gradient (bottom = `lo`), labels at its ends (and decades
/// between on a log bar) and its title rotated beside it.
pub(crate) fn colorbar(out: &mut String, id: &str, cb: &ColorBar, x: f64, top: f64, bottom: f64) {
    let grad = format!("{}-colorbar", esc(id));
    let _ = write!(out, "<g class=\"colorbar\"><defs><linearGradient id=\"{grad}\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">");
    for i in 0..=10 {
        let t = f64::from(i) / 10.0;
        let _ = write!(
            out,
            "<stop offset=\"{t}\" stop-color=\"{}\"/>",
            colormap(t).css()
        );
    }
    let (bw, h) = (12.0, bottom - top);
    let _ = write!(
        out,
        "</linearGradient></defs><rect x=\"{}\" y=\"{}\" width=\"{bw}\" height=\"{}\" fill=\"url(#{grad})\" stroke=\"#999\" stroke-width=\"0.5\"/>",
        N(x),
        N(top),
        N(h)
    );
    let valid = cb.lo.is_finite() && cb.hi.is_finite() && (!cb.log || (cb.lo > 0.0 && cb.hi > 0.0));
    let mut labels = vec![(0.0, format_value(cb.lo)), (1.0, format_value(cb.hi))];
    if valid && cb.log && cb.hi > cb.lo {
        let (d0, d1) = (cb.lo.log10(), cb.hi.log10());
        let map = Map {
            log: true,
            d0,
            d1,
            p0: 0.0,
            p1: 1.0,
        };
        for (v, s) in log_ticks(d0, d1).major {
            if let Some(t) = map.px(v).filter(|t| *t > 0.12 && *t < 0.88) {
                labels.push((t, s));
            }
        }
    }
    for (t, s) in labels {
        let y = bottom - t * h;
        let _ = write!(
            out,
            "<path d=\"M{} {}h3\" stroke=\"#333\"/>",
            N(x + bw),
            N(y)
        );
        text(out, x + bw + 5.0, y + 4.0, "", &s);
    }
    let max = (h / (TICK_FONT * CHAR_W)) as usize;
    let (lx, ly) = (x + COLORBAR_W - 12.0, (top + bottom) / 2.0);
    let attrs = format!(
        "text-anchor=\"middle\" transform=\"rotate(-90 {} {})\"",
        N(lx),
        N(ly)
    );
    text(out, lx, ly, &attrs, &truncate(&cb.label, max));
    out.push_str("</g>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_have_at_most_one_decimal() {
        assert_eq!(N(12.0).to_string(), "12");
        assert_eq!(N(12.34).to_string(), "12.3");
        assert_eq!(N(-0.04).to_string(), "0");
        assert_eq!(N(-2.96).to_string(), "-3");
        assert_eq!(N(f64::NAN).to_string(), "0");
    }

    #[test]
    fn escaping() {
        assert_eq!(esc("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
        assert_eq!(esc("plain"), "plain");
        assert_eq!(esc("bell\u{7}"), "bell\u{fffd}");
    }

    #[test]
    fn notes_wrap_to_the_width_and_keep_every_word() {
        let note = "showing 150 of 400 settings\nbudget: 3 epochs × 200 training examples, 100 validation examples";
        let lines = note_lines(420, Some(note));
        assert!(lines.len() >= 3, "{lines:?}");
        assert!(lines.iter().all(|l| l.chars().count() <= note_chars(420)));
        assert_eq!(lines.join(" "), note.replace('\n', " "));
        assert_eq!(
            heading_height(420, Some(note)),
            32.0 + 14.0 * lines.len() as f64
        );
        assert_eq!(note_lines(900, Some(note)).len(), 2);
        assert!(note_lines(900, Some("")).is_empty());
        let mut out = String::new();
        heading(&mut out, 420, "t", Some("a < b"));
        assert!(out.contains("<desc>a &lt; b</desc>"), "{out}");
    }

    #[test]
    fn truncation() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }
}
