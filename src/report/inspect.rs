//! The pictures of `berth inspect`: a grid of attention heatmaps per layer,
//! a line chart of each token's hidden-state norm through the layers, and
//! an `index.html` that shows them beside the tokens. Every cell and dot
//! carries its exact value (`data-v`, with `data-q`/`data-k` or
//! `data-token`/`data-layer`) and a tooltip, so a picture can be read back
//! against the dump.

use super::svg::{Anchor, PALETTE, PlotArea, Svg, blues, escape};

/// Heads per row of the heatmap grid.
const GRID_COLUMNS: usize = 4;

/// A token label short enough for an axis.
fn short(token: &str) -> String {
    if token.chars().count() > 12 { format!("{}…", token.chars().take(11).collect::<String>()) } else { token.to_string() }
}

/// probs (heads.len(), T, T), row-major: one heatmap per head, query
/// positions down, key positions across, shaded by probability.
pub fn attention_grid(tokens: &[String], probs: &[f64], heads: &[usize], layer: usize) -> String {
    let t = tokens.len().max(1);
    let cell = (320.0 / t as f64).clamp(2.0, 22.0);
    let side = cell * t as f64;
    let label_room = if cell >= 7.0 { 80.0 } else { 10.0 };
    let columns = heads.len().clamp(1, GRID_COLUMNS);
    let rows = heads.len().div_ceil(GRID_COLUMNS).max(1);
    let (pitch_x, pitch_y) = (side + label_room + 24.0, side + label_room + 40.0);
    let width = 20.0 + columns as f64 * pitch_x;
    let height = 60.0 + rows as f64 * pitch_y;
    let mut svg = Svg::new(width, height);
    svg.text(
        width / 2.0,
        24.0,
        15.0,
        Anchor::Middle,
        "#111",
        &format!("layer {layer}: attention probabilities (rows: query token, columns: key token)"),
    );
    svg.text(width / 2.0, 42.0, 11.0, Anchor::Middle, "#555", "darkest cell: the head's largest probability; hover a cell for its value");
    let font = (cell * 0.75).clamp(6.0, 11.0);
    for (slot, &head) in heads.iter().enumerate() {
        let left = 20.0 + (slot % GRID_COLUMNS) as f64 * pitch_x + label_room;
        let top = 60.0 + (slot / GRID_COLUMNS) as f64 * pitch_y + 16.0;
        svg.text(left + side / 2.0, top - 6.0, 12.0, Anchor::Middle, "#222", &format!("head {head}"));
        let block = &probs[slot * t * t..(slot + 1) * t * t];
        // Shaded against the head's largest probability, so a diffuse head is as readable as a sharp one.
        let largest = block.iter().copied().fold(1e-12, f64::max);
        for q in 0..t {
            for k in 0..t {
                let p = block[q * t + k];
                let title = format!("head {head}: {} → {}: {p:.4}", tokens[q], tokens[k]);
                let data = [("q", q.to_string()), ("k", k.to_string()), ("v", format!("{p}"))];
                svg.valued_rect(left + k as f64 * cell, top + q as f64 * cell, cell, cell, &blues(p / largest), &data, &title);
            }
        }
        svg.rect(left, top, side, side, "none", Some("#888"));
        if cell >= 7.0 {
            for (i, token) in tokens.iter().enumerate() {
                let y = top + (i as f64 + 0.5) * cell + font / 3.0;
                svg.text(left - 4.0, y, font, Anchor::End, "#222", &short(token));
                let x = left + (i as f64 + 0.5) * cell + font / 3.0;
                svg.rotated_text(x, top + side + 4.0, font, 90.0, Anchor::Start, &short(token));
            }
        }
    }
    svg.finish()
}

/// norms (L + 1 layers, T tokens): each token's hidden-state norm, from the
/// embedding output (layer 0) to the last layer's output, one line per token.
pub fn hidden_norm_chart(tokens: &[String], norms: &[Vec<f64>]) -> String {
    let layers = norms.len();
    let top_value = norms.iter().flatten().copied().fold(0.0, f64::max);
    let legend_rows = tokens.len().div_ceil(6);
    let (width, plot_height) = (760.0, 360.0);
    let height = 90.0 + plot_height + 60.0 + legend_rows as f64 * 16.0;
    let mut svg = Svg::new(width, height);
    svg.text(width / 2.0, 24.0, 15.0, Anchor::Middle, "#111", "hidden-state norm of each token, through the layers");
    let area = PlotArea {
        left: 80.0,
        top: 50.0,
        width: width - 110.0,
        height: plot_height,
        x_range: (0.0, (layers.max(2) - 1) as f64),
        y_range: (0.0, top_value * 1.05 + 1e-12),
    };
    area.axes(&mut svg, "layer (0: embedding output)", "‖h‖");
    for (i, token) in tokens.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let points: Vec<(f64, f64)> = (0..layers).map(|l| (area.x(l as f64), area.y(norms[l][i]))).collect();
        svg.polyline(&points, colour, 1.5, i >= PALETTE.len());
        for (l, &(x, y)) in points.iter().enumerate() {
            let v = norms[l][i];
            let data = [("token", i.to_string()), ("layer", l.to_string()), ("v", format!("{v}"))];
            svg.valued_circle(x, y, 2.5, colour, &data, &format!("{token} (position {i}), layer {l}: {v:.4}"));
        }
    }
    let legend_top = area.top + area.height + 56.0;
    for (i, token) in tokens.iter().enumerate() {
        let (x, y) = (area.left + (i % 6) as f64 * 110.0, legend_top + (i / 6) as f64 * 16.0);
        svg.line(x, y - 4.0, x + 18.0, y - 4.0, PALETTE[i % PALETTE.len()], 2.0, i >= PALETTE.len());
        svg.text(x + 22.0, y, 11.0, Anchor::Start, "#222", &format!("{i} {}", short(token)));
    }
    svg.finish()
}

/// One inspected input, as the index page lists it.
pub struct IndexEntry {
    pub title: String,
    /// (position, piece, token type).
    pub tokens: Vec<(usize, String, u32)>,
    /// What the model outputs, as lines of text (empty for a bare encoder).
    pub outputs: Vec<String>,
    /// Relative paths of this input's pictures, with a caption each.
    pub pictures: Vec<(String, String)>,
}

/// The page that shows every input's tokens, outputs and pictures. The
/// pictures are embedded as objects, so their tooltips work in a browser.
pub fn index_html(model: &str, entries: &[IndexEntry]) -> String {
    let mut html = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>berth inspect</title>\n<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}figure{margin:1em 0}</style></head><body>\n",
    );
    html.push_str(&format!("<h1>berth inspect</h1>\n<p>model: <code>{}</code></p>\n", escape(model)));
    for (i, entry) in entries.iter().enumerate() {
        html.push_str(&format!("<h2 id=\"input-{i}\">{}</h2>\n", escape(&entry.title)));
        html.push_str("<table><tr><th>position</th>");
        for (p, _, _) in &entry.tokens {
            html.push_str(&format!("<td>{p}</td>"));
        }
        html.push_str("</tr><tr><th>piece</th>");
        for (_, piece, _) in &entry.tokens {
            html.push_str(&format!("<td>{}</td>", escape(piece)));
        }
        html.push_str("</tr><tr><th>type</th>");
        for (_, _, ty) in &entry.tokens {
            html.push_str(&format!("<td>{ty}</td>"));
        }
        html.push_str("</tr></table>\n");
        for line in &entry.outputs {
            html.push_str(&format!("<p>{}</p>\n", escape(line)));
        }
        for (path, caption) in &entry.pictures {
            html.push_str(&format!(
                "<figure><object type=\"image/svg+xml\" data=\"{}\"></object><figcaption>{}</figcaption></figure>\n",
                escape(path),
                escape(caption)
            ));
        }
    }
    html.push_str("</body></html>\n");
    html
}
