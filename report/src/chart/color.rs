//! Colours: the categorical palette and the viridis colour map.

use super::Color;

impl Color {
    /// The colour as CSS `#rrggbb`.
    pub fn css(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }
}

/// The Okabe–Ito palette (colour-blind safe), ordered so the first colours
/// contrast most on white; yellow, the weakest on white, comes last.
const OKABE_ITO: [Color; 8] = [
    Color(0x00, 0x72, 0xb2), // blue
    Color(0xe6, 0x9f, 0x00), // orange
    Color(0x00, 0x9e, 0x73), // bluish green
    Color(0xd5, 0x5e, 0x00), // vermillion
    Color(0xcc, 0x79, 0xa7), // reddish purple
    Color(0x56, 0xb4, 0xe9), // sky blue
    Color(0x00, 0x00, 0x00), // black
    Color(0xf0, 0xe4, 0x42), // yellow
];

/// The `i`-th colour of a colour-blind-safe categorical palette
/// (Okabe–Ito), cycling after 8.
pub fn palette(i: usize) -> Color {
    OKABE_ITO[i % OKABE_ITO.len()]
}

/// Viridis sampled at `t = 0, 0.1, …, 1` (matplotlib's values).
const VIRIDIS: [Color; 11] = [
    Color(0x44, 0x01, 0x54),
    Color(0x48, 0x25, 0x76),
    Color(0x41, 0x44, 0x87),
    Color(0x35, 0x60, 0x8d),
    Color(0x2a, 0x78, 0x8e),
    Color(0x21, 0x90, 0x8c),
    Color(0x22, 0xa8, 0x84),
    Color(0x43, 0xbf, 0x71),
    Color(0x7a, 0xd1, 0x51),
    Color(0xbb, 0xdf, 0x27),
    Color(0xfd, 0xe7, 0x25),
];

/// The grey used for values that have no colour (NaN).
pub(crate) const MISSING: Color = Color(0x99, 0x99, 0x99);

/// Viridis at `t` in `[0, 1]` (clamped), interpolated linearly between 11
/// samples; NaN gives grey.
pub fn colormap(t: f64) -> Color {
    if t.is_nan() {
        return MISSING;
    }
    let pos = t.clamp(0.0, 1.0) * (VIRIDIS.len() - 1) as f64;
    let i = (pos.floor() as usize).min(VIRIDIS.len() - 2);
    let f = pos - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let mix = |x: u8, y: u8| (f64::from(x) + (f64::from(y) - f64::from(x)) * f).round() as u8;
    Color(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn css_is_lowercase_hex() {
        assert_eq!(Color(255, 0, 16).css(), "#ff0010");
    }

    #[test]
    fn palette_cycles() {
        assert_eq!(palette(0), palette(8));
        assert_ne!(palette(0), palette(1));
    }

    #[test]
    fn colormap_ends_clamps_and_nan() {
        assert_eq!(colormap(0.0), VIRIDIS[0]);
        assert_eq!(colormap(1.0), VIRIDIS[10]);
        assert_eq!(colormap(-3.0), VIRIDIS[0]);
        assert_eq!(colormap(7.0), VIRIDIS[10]);
        assert_eq!(colormap(f64::INFINITY), VIRIDIS[10]);
        assert_eq!(colormap(f64::NAN), MISSING);
        assert_eq!(colormap(0.5), VIRIDIS[5]);
    }
}
