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
const SANS: [&str; 6] = ["DejaVu Sans", "Liberation Sans", "Noto Sans", "Arial", "Helvetica", "FreeSans"];

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
        let query = fontdb::Query { families: &[family], ..Default::default() };
        db.query(&query).is_some()
    };
    if !resolves(&db, fontdb::Family::SansSerif) {
        let installed = SANS.iter().find(|f| resolves(&db, fontdb::Family::Name(f))).map(|f| f.to_string());
        let any = db.faces().find_map(|f| f.families.first().map(|(name, _)| name.clone()));
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
    let opt = usvg::Options { fontdb: fonts()?, ..Default::default() };
    let tree = usvg::Tree::from_str(svg, &opt)?;
    let size = tree.size();
    let bad = || ChartError::Size { width: size.width(), height: size.height(), scale };
    let (w, h) = (size.width() * scale, size.height() * scale);
    if !(w.is_finite() && h.is_finite() && w >= 1.0 && h >= 1.0 && w * h <= 1.0e8) {
        return Err(bad());
    }
    let mut pixmap = Pixmap::new(w.ceil() as u32, h.ceil() as u32).ok_or_else(bad)?;
    resvg::render(&tree, Transform::from_scale(scale, scale), &mut pixmap.as_mut());
    pixmap.encode_png().map_err(|e| ChartError::Encode(e.to_string()))
}
