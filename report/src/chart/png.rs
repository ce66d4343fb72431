//! PNG output: the figure's SVG rasterised with `resvg`.

use std::sync::{Arc, OnceLock};

use resvg::tiny_skia::{Pixmap, Transform};
use resvg::usvg::{self, fontdb};

/// Why a figure could not be rasterised.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// No usable font on this machine: text cannot be drawn.
    #[error("no system font found to draw the figure's text; install a font package such as fonts-dejavu-core (apt-get install fonts-dejavu-core)")]
    NoFont,
    /// The SVG did not parse (a bug in this module).
    #[error("figure SVG does not parse: {0}")]
    Svg(#[from] usvg::Error),
    /// The scaled size is zero or too large for a pixmap.
    #[error("figure size {width}x{height} px at scale {scale} cannot be rasterised")]
    Size { width: f32, height: f32, scale: f32 },
    /// PNG encoding failed.
    #[error("PNG encoding failed: {0}")]
    Encode(String),
}

/// Families tried for `sans-serif` when fontconfig names none that is
/// installed.
const SANS: [&str; 6] = [
    "DejaVu Sans",
    "Liberation Sans",
    "Noto Sans",
    "Arial",
    "Helvetica",
    "FreeSans",
];

/// The system fonts, loaded once per process (loading takes tens of ms).
fn fonts() -> Result<Arc<fontdb::Database>, ChartError> {
    static DB: OnceLock<Option<Arc<fontdb::Database>>> = OnceLock::new();
    DB.get_or_init(load_fonts).clone().ok_or(ChartError::NoFont)
}

/// Loads the system fonts and makes `sans-serif` (and the `serif`
/// fallback usvg uses) resolve to an installed face; `None` without fonts.
fn load_fonts() -> Option<Arc<fontdb::Database>> {
    let mut db = fontdb::Database::new();
    db.load_system_fonts();
    if db.is_empty() {
        return None;
    }
    let resolves = |db: &fontdb::Database, family| {
        let query = fontdb::Query {
            families: &[family],
            ..Default::default()
        };
        db.query(&query).is_some()
    };
    if !resolves(&db, fontdb::Family::SansSerif) {
        let installed = SANS
            .iter()
            .find(|f| resolves(&db, fontdb::Family::Name(f)))
            .map(|f| f.to_string());
        let any = db
            .faces()
            .find_map(|f| f.families.first().map(|(name, _)| name.clone()));
        let family = installed.or(any)?;
        db.set_sans_serif_family(family.clone());
        if !resolves(&db, fontdb::Family::Serif) {
            db.set_serif_family(family);
        }
    }
    Some(Arc::new(db))
}

/// Rasterises `svg` (as written by [`Figure::to_svg`](super::Figure::to_svg)
/// or [`Parallel::to_svg`](super::Parallel::to_svg)) to PNG bytes at
/// `scale` × its size (2.0 for crisp figures on high-DPI screens).
pub fn png(svg: &str, scale: f32) -> Result<Vec<u8>, ChartError> {
    let opt = usvg::Options {
        fontdb: fonts()?,
        ..Default::default()
    };
    let tree = usvg::Tree::from_str(svg, &opt)?;
    let size = tree.size();
    let bad = || ChartError::Size {
        width: size.width(),
        height: size.height(),
        scale,
    };
    let (w, h) = (size.width() * scale, size.height() * scale);
    if !(w.is_finite() && h.is_finite() && w >= 1.0 && h >= 1.0 && w * h <= 1.0e8) {
        return Err(bad());
    }
    let mut pixmap = Pixmap::new(w.ceil() as u32, h.ceil() as u32).ok_or_else(bad)?;
    resvg::render(
        &tree,
        Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|e| ChartError::Encode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::super::examples;
    use super::*;

    #[test]
    fn png_output_has_the_png_signature() {
        let svg = examples::history().to_svg();
        match png(&svg, 1.0) {
            Ok(bytes) => assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n")),
            Err(ChartError::NoFont) => println!("SKIPPED: no system font"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        if fonts().is_err() {
            println!("SKIPPED: no system font");
            return;
        }
        assert!(matches!(png("<svg", 1.0), Err(ChartError::Svg(_))));
        let svg = examples::empty().to_svg();
        assert!(matches!(png(&svg, 0.0), Err(ChartError::Size { .. })));
        assert!(matches!(png(&svg, f32::NAN), Err(ChartError::Size { .. })));
        assert!(matches!(png(&svg, 1e6), Err(ChartError::Size { .. })));
    }

    #[test]
    fn no_font_message_names_a_package() {
        assert!(ChartError::NoFont.to_string().contains("fonts-dejavu-core"));
    }
}
