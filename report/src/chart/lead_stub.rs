//! TEMPORARY: minimal rendering so the page compiles until h11-chart lands.
use super::*;
impl Color {
    pub fn css(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }
}
pub fn palette(i: usize) -> Color {
    const P: [Color; 8] = [
        Color(0, 114, 178),
        Color(230, 159, 0),
        Color(0, 158, 115),
        Color(204, 121, 167),
        Color(86, 180, 233),
        Color(213, 94, 0),
        Color(240, 228, 66),
        Color(0, 0, 0),
    ];
    P[i % 8]
}
pub fn colormap(t: f64) -> Color {
    if t.is_nan() {
        return Color(150, 150, 150);
    }
    let t = t.clamp(0.0, 1.0);
    Color(
        (68.0 + t * 185.0) as u8,
        (1.0 + t * 230.0) as u8,
        (84.0 - t * 50.0) as u8,
    )
}
impl Axis {
    pub fn linear(label: impl Into<String>) -> Axis {
        Axis {
            label: label.into(),
            scale: Scale::Linear,
            range: None,
        }
    }
    pub fn log(label: impl Into<String>) -> Axis {
        Axis {
            label: label.into(),
            scale: Scale::Log,
            range: None,
        }
    }
    pub fn category(label: impl Into<String>, names: Vec<String>) -> Axis {
        Axis {
            label: label.into(),
            scale: Scale::Category(names),
            range: None,
        }
    }
}
impl Figure {
    pub fn new(id: impl Into<String>, title: impl Into<String>, x: Axis, y: Axis) -> Figure {
        Figure {
            id: id.into(),
            title: title.into(),
            x,
            y,
            series: vec![],
            colorbar: None,
            note: None,
            width: 640,
            height: 400,
        }
    }
    pub fn to_svg(&self) -> String {
        format!("<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"figure\" id=\"{}\" data-series=\"{}\"><text y=\"20\">{}</text></svg>", self.id, self.series.len(), self.title)
    }
}
impl Parallel {
    pub fn to_svg(&self) -> String {
        format!("<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"figure\" id=\"{}\" data-series=\"{}\"></svg>", self.id, self.lines.len())
    }
}
pub fn png(_svg: &str, _scale: f32) -> Result<Vec<u8>, String> {
    Err("stub".into())
}
