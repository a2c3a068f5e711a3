//! A small SVG writer: shapes and text in pixel coordinates, and a plot area
//! that maps data coordinates onto pixels with ticked axes. Enough for the
//! report's charts, with no drawing dependency.

use std::fmt::Write as _;

/// Escapes text for SVG character data and attribute values.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// An SVG document being written.
pub struct Svg {
    width: f64,
    height: f64,
    body: String,
}

/// Text anchoring: where x is relative to the text.
#[derive(Clone, Copy)]
pub enum Anchor {
    Start,
    Middle,
    End,
}

impl Anchor {
    fn name(self) -> &'static str {
        match self {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        }
    }
}

impl Svg {
    pub fn new(width: f64, height: f64) -> Svg {
        let mut svg = Svg { width, height, body: String::new() };
        svg.rect(0.0, 0.0, width, height, "#ffffff", None);
        svg
    }

    pub fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str, stroke: Option<&str>) {
        let stroke = stroke.map(|s| format!(r#" stroke="{s}" stroke-width="1""#)).unwrap_or_default();
        let _ = writeln!(
            self.body,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{fill}"{stroke}/>"#,
            w.max(0.0),
            h.max(0.0)
        );
    }

    /// A filled rectangle that carries a value: `data` become `data-*`
    /// attributes (for scripts and tests), `title` the tooltip a viewer shows.
    #[allow(clippy::too_many_arguments)]
    pub fn valued_rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str, data: &[(&str, String)], title: &str) {
        let attrs: String = data.iter().map(|(k, v)| format!(r#" data-{k}="{}""#, escape(v))).collect();
        let _ = writeln!(
            self.body,
            r#"<rect x="{x:.2}" y="{y:.2}" width="{:.2}" height="{:.2}" fill="{fill}"{attrs}><title>{}</title></rect>"#,
            w.max(0.0),
            h.max(0.0),
            escape(title)
        );
    }

    /// A dot that carries a value, as [`Svg::valued_rect`].
    pub fn valued_circle(&mut self, x: f64, y: f64, r: f64, fill: &str, data: &[(&str, String)], title: &str) {
        let attrs: String = data.iter().map(|(k, v)| format!(r#" data-{k}="{}""#, escape(v))).collect();
        let _ = writeln!(
            self.body,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="{r}" fill="{fill}"{attrs}><title>{}</title></circle>"#,
            escape(title)
        );
    }

    /// Text turned by `degrees` about its anchor point (x, y).
    pub fn rotated_text(&mut self, x: f64, y: f64, size: f64, degrees: f64, anchor: Anchor, text: &str) {
        let _ = writeln!(
            self.body,
            r##"<text x="{x:.1}" y="{y:.1}" font-size="{size}" text-anchor="{}" fill="#222" transform="rotate({degrees} {x:.1} {y:.1})">{}</text>"##,
            anchor.name(),
            escape(text)
        );
    }

    /// A filled rectangle drawn see-through (opacity in [0, 1]).
    pub fn translucent_rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str, opacity: f64) {
        let _ = writeln!(
            self.body,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{fill}" fill-opacity="{opacity:.2}"/>"#,
            w.max(0.0),
            h.max(0.0)
        );
    }

    pub fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, stroke: &str, width: f64, dashed: bool) {
        let dash = if dashed { r#" stroke-dasharray="5,4""# } else { "" };
        let _ = writeln!(
            self.body,
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{stroke}" stroke-width="{width}"{dash}/>"#
        );
    }

    /// A polyline through pixel points.
    pub fn polyline(&mut self, points: &[(f64, f64)], stroke: &str, width: f64, dashed: bool) {
        if points.is_empty() {
            return;
        }
        let pts: Vec<String> = points.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let dash = if dashed { r#" stroke-dasharray="6,4""# } else { "" };
        let _ = writeln!(
            self.body,
            r#"<polyline points="{}" fill="none" stroke="{stroke}" stroke-width="{width}" stroke-linejoin="round"{dash}/>"#,
            pts.join(" ")
        );
    }

    pub fn circle(&mut self, x: f64, y: f64, r: f64, fill: &str) {
        let _ = writeln!(self.body, r#"<circle cx="{x:.1}" cy="{y:.1}" r="{r}" fill="{fill}"/>"#);
    }

    pub fn text(&mut self, x: f64, y: f64, size: f64, anchor: Anchor, fill: &str, text: &str) {
        let _ = writeln!(
            self.body,
            r#"<text x="{x:.1}" y="{y:.1}" font-size="{size}" text-anchor="{}" fill="{fill}">{}</text>"#,
            anchor.name(),
            escape(text)
        );
    }

    /// Text turned 90° counter-clockwise about (x, y), for a y-axis title.
    pub fn vertical_text(&mut self, x: f64, y: f64, size: f64, text: &str) {
        let _ = writeln!(
            self.body,
            r##"<text x="{x:.1}" y="{y:.1}" font-size="{size}" text-anchor="middle" fill="#222" transform="rotate(-90 {x:.1} {y:.1})">{}</text>"##,
            escape(text)
        );
    }

    pub fn finish(self) -> String {
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n{}</svg>\n",
            self.body,
            w = self.width,
            h = self.height
        )
    }
}

/// A rectangle of the picture holding a chart, with the data ranges it shows.
#[derive(Clone, Copy)]
pub struct PlotArea {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
    pub x_range: (f64, f64),
    pub y_range: (f64, f64),
}

impl PlotArea {
    pub fn x(&self, v: f64) -> f64 {
        let (a, b) = self.x_range;
        self.left + (v - a) / (b - a).max(1e-300) * self.width
    }

    pub fn y(&self, v: f64) -> f64 {
        let (a, b) = self.y_range;
        self.top + self.height - (v - a) / (b - a).max(1e-300) * self.height
    }

    /// The frame, grid lines and tick labels, and the axis titles.
    pub fn axes(&self, svg: &mut Svg, x_title: &str, y_title: &str) {
        svg.rect(self.left, self.top, self.width, self.height, "#ffffff", Some("#888"));
        for v in ticks(self.x_range) {
            let x = self.x(v);
            svg.line(x, self.top, x, self.top + self.height, "#e6e6e6", 1.0, false);
            svg.text(x, self.top + self.height + 16.0, 11.0, Anchor::Middle, "#333", &tick_label(v, self.x_range));
        }
        let mut widest = 0;
        for v in ticks(self.y_range) {
            let y = self.y(v);
            let label = tick_label(v, self.y_range);
            widest = widest.max(label.chars().count());
            svg.line(self.left, y, self.left + self.width, y, "#e6e6e6", 1.0, false);
            svg.text(self.left - 6.0, y + 4.0, 11.0, Anchor::End, "#333", &label);
        }
        svg.rect(self.left, self.top, self.width, self.height, "none", Some("#888"));
        svg.text(self.left + self.width / 2.0, self.top + self.height + 36.0, 12.0, Anchor::Middle, "#222", x_title);
        // Clear of the widest tick label (about 6.2 px a character at 11 px).
        let title_x = self.left - (widest as f64 * 6.2 + 16.0).max(44.0);
        svg.vertical_text(title_x, self.top + self.height / 2.0, 12.0, y_title);
    }
}

/// Round tick values covering `range`: steps of 1, 2 or 5 times a power of ten, about 5 of them.
pub fn ticks(range: (f64, f64)) -> Vec<f64> {
    let (a, b) = range;
    if !(b > a) || !a.is_finite() || !b.is_finite() {
        return vec![a];
    }
    let raw = (b - a) / 5.0;
    let power = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * power).find(|s| *s >= raw).unwrap_or(10.0 * power);
    let mut v = (a / step).ceil() * step;
    let mut out = Vec::new();
    while v <= b + step * 1e-9 {
        out.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
        v += step;
    }
    out
}

fn tick_label(v: f64, range: (f64, f64)) -> String {
    let span = (range.1 - range.0).abs();
    if span >= 20.0 || v.fract() == 0.0 && span >= 5.0 {
        format!("{v:.0}")
    } else if span >= 2.0 {
        format!("{v:.1}")
    } else if span >= 0.2 {
        format!("{v:.2}")
    } else {
        // Enough decimals for the ticks' step (a fifth of the span) to show.
        let decimals = (-(span / 5.0).max(1e-12).log10().floor()).clamp(3.0, 12.0) as usize;
        format!("{v:.decimals$}")
    }
}

/// A colour between white and a blue, for a value in [0, 1].
pub fn blues(v: f64) -> String {
    let v = v.clamp(0.0, 1.0);
    let mix = |from: f64, to: f64| (from + (to - from) * v).round() as u8;
    format!("#{:02x}{:02x}{:02x}", mix(247.0, 8.0), mix(251.0, 69.0), mix(255.0, 148.0))
}

/// Distinct line colours (the Tableau 10 palette).
pub const PALETTE: [&str; 10] =
    ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_ranges_get_enough_decimals_to_tell_ticks_apart() {
        // Three decimals would print 0.001 for both 0.0005 and 0.0010.
        let range = (0.0, 0.0012);
        let labels: Vec<String> = ticks(range).iter().map(|&v| tick_label(v, range)).collect();
        assert_eq!(labels, vec!["0.0000", "0.0005", "0.0010"]);
        assert_eq!(tick_label(0.05, (0.0, 0.1)), "0.050");
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        let t = ticks((0.0, 1.0));
        let want = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0];
        assert!(t.len() == 6 && t.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12), "{t:?}");
        let t = ticks((3.0, 487.0));
        assert_eq!(t.first(), Some(&100.0));
        assert!(t.iter().all(|v| (3.0..=487.0).contains(v)));
    }

    #[test]
    fn text_is_escaped() {
        let mut svg = Svg::new(10.0, 10.0);
        svg.text(1.0, 1.0, 10.0, Anchor::Start, "#000", "a<b & \"c\"");
        let s = svg.finish();
        assert!(s.contains("a&lt;b &amp; &quot;c&quot;") && !s.contains("a<b"));
    }
}
